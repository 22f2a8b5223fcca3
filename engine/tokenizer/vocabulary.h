// A model's vocabulary as its file describes it (GGUF's tokenizer.ggml.* keys), before a
// Tokenizer is built from it: pieces, scores, token types, merges and the special ids, with the
// defaults llama.cpp applies when a key is absent. The GGUF loader fills one in
// (gguf_vocabulary.h); tests build small ones by hand.
//
//   VocabularySpec spec;
//   spec.model = "gpt2"; spec.pre = "qwen2";
//   spec.tokens = {...}; spec.token_types = {...}; spec.merges = {"Ġ t", ...};
//   spec.eos = 151645;
//   CH_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::FromVocabulary(std::move(spec)));
#ifndef CELLHOUSE_ENGINE_TOKENIZER_VOCABULARY_H_
#define CELLHOUSE_ENGINE_TOKENIZER_VOCABULARY_H_

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace cellhouse::engine {

// tokenizer.ggml.token_type values (llama.cpp's llama_token_type).
enum class TokenType : int32_t {
  kUndefined = 0,
  kNormal = 1,
  kUnknown = 2,
  kControl = 3,
  kUserDefined = 4,
  kUnused = 5,
  kByte = 6,
};

struct VocabularySpec {
  std::string name;   // for messages: the model file
  std::string model;  // tokenizer.ggml.model: "llama" (SentencePiece) or "gpt2" (byte-level BPE)
  std::string pre;    // tokenizer.ggml.pre (BPE only; absent means "default")
  std::vector<std::string> tokens;
  std::vector<float> scores;             // may be empty (BPE)
  std::vector<int32_t> token_types;      // may be empty (all normal)
  std::vector<std::string> merges;       // "left right", in rank order (BPE)
  std::optional<int32_t> bos;            // tokenizer.ggml.bos_token_id
  std::optional<int32_t> eos;            // tokenizer.ggml.eos_token_id
  std::optional<int32_t> eot;            // tokenizer.ggml.eot_token_id
  std::optional<int32_t> eom;            // tokenizer.ggml.eom_token_id
  std::optional<int32_t> unk;            // tokenizer.ggml.unknown_token_id
  std::optional<bool> add_bos;           // tokenizer.ggml.add_bos_token
  std::optional<bool> add_eos;           // tokenizer.ggml.add_eos_token
  std::optional<bool> add_space_prefix;  // tokenizer.ggml.add_space_prefix (SentencePiece)
  std::string chat_template;             // tokenizer.chat_template, "" when absent
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_VOCABULARY_H_
