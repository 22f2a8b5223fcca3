// The vocabulary of a GGUF file: what kind it is (for `cellmodel info`), its tokenizer.ggml.*
// keys read into a VocabularySpec, and the Tokenizer built from it. The one place that knows
// those key names.
//
//   GgufVocabularyInfo info = DescribeGgufVocabulary(gguf);   // kind, size, chat template
//   CH_ASSIGN_OR_RETURN(Tokenizer tokenizer, TokenizerFromGguf(gguf));
//   tokenizer.chat_template();   // tokenizer.chat_template, "" when absent
#ifndef CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_
#define CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_

#include <cstdint>
#include <string>

#include "base/result.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/vocabulary.h"

namespace cellhouse::engine {

enum class VocabularyKind {
  kNone,           // the file has no tokenizer.ggml.model
  kSentencePiece,  // "llama"
  kByteLevelBpe,   // "gpt2"
  kOther,          // anything else ("bert", "t5", "rwkv", ...)
};

struct GgufVocabularyInfo {
  VocabularyKind kind = VocabularyKind::kNone;
  std::string model;           // tokenizer.ggml.model as written
  std::string pre;             // tokenizer.ggml.pre (BPE pre-tokenizer), "" when absent
  uint64_t size = 0;           // tokens
  bool chat_template = false;  // tokenizer.chat_template present
  // "SentencePiece (llama), 32000 tokens" / "byte-level BPE (gpt2, pre llama-bpe), 128256 tokens"
  std::string Describe() const;
};

GgufVocabularyInfo DescribeGgufVocabulary(const GgufFile& gguf);

// Reads the keys; a missing tokenizer.ggml.model or tokens, or a key of the wrong type, is an
// error naming the file and the key.
Result<VocabularySpec> VocabularyFromGguf(const GgufFile& gguf);
Result<Tokenizer> TokenizerFromGguf(const GgufFile& gguf);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_
