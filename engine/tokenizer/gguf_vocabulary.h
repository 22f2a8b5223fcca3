// The vocabulary of a GGUF file, from its tokenizer.ggml.* keys: what kind it is (for `cellmodel
// info`), and a Tokenizer for the kinds the engine can encode today. A SentencePiece-style
// vocabulary (tokenizer.ggml.model = llama: tokens, scores, token types, BOS/EOS ids,
// add_bos_token) runs with the tokenizer llama2.c models use, its pieces' U+2581 read as spaces.
// A byte-level BPE one (gpt2: Llama 3, Qwen) is described but refused for generation until its
// tokenizer exists (issue 15).
//
//   GgufVocabularyInfo info = DescribeGgufVocabulary(gguf);   // kind, size, chat template
//   CH_ASSIGN_OR_RETURN(Tokenizer tok, TokenizerFromGguf(gguf));
#ifndef CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_
#define CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_

#include <cstdint>
#include <string>

#include "base/result.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/tokenizer.h"

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

// The tokenizer of a SentencePiece-style vocabulary; any other kind is refused, naming it.
Result<Tokenizer> TokenizerFromGguf(const GgufFile& gguf);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_GGUF_VOCABULARY_H_
