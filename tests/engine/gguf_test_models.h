// Small GGUF models for tests, written with the project's own GgufWriter: any of the three
// architectures, deterministic pseudo-random weights in a chosen tensor type, and a SentencePiece
// vocabulary (<unk>, <s>, </s>, the 256 byte pieces, then "▁a".."▁z" and letter pairs), so that a
// Conversation can run on them. The weights are also returned as floats (as written, before any
// quantization) for reference implementations written in the tests.
//
//   GgufSpec spec{.arch = "qwen3", .head_dim = 24};
//   GgufFloats floats;
//   std::vector<std::byte> file = *MakeGgufModel(spec, &floats).Serialize();
#ifndef CELLHOUSE_TESTS_ENGINE_GGUF_TEST_MODELS_H_
#define CELLHOUSE_TESTS_ENGINE_GGUF_TEST_MODELS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

#include "engine/formats/gguf_writer.h"
#include "engine/kernels/tensor_type.h"

namespace cellhouse::engine::testing {

struct GgufSpec {
  std::string arch = "llama";  // llama, qwen2, qwen3
  int32_t dim = 64;
  int32_t hidden = 96;
  int32_t layers = 2;
  int32_t heads = 4;
  int32_t kv_heads = 2;
  int32_t head_dim = 0;  // 0: dim / heads (no attention.key_length key)
  int32_t vocab = 300;   // at least 259
  int32_t context = 96;
  float rope_base = 10000.0F;
  float rms_eps = 1e-5F;
  TensorType matrices = TensorType::kF32;   // every projection
  TensorType embedding = TensorType::kF32;  // token_embd (and output when separate)
  bool tied = true;                         // no output.weight
  bool biases = false;                      // attn_q/k/v.bias (qwen2 needs them)
  bool qk_norm = false;                     // attn_q_norm/attn_k_norm (qwen3 needs them)
  bool rope_freqs = false;                  // rope_freqs.weight (Llama 3.1)
  uint64_t seed = 1;
};

// Every tensor's values as written (rows of dims[0] values), by tensor name.
using GgufFloats = std::map<std::string, std::vector<float>>;

// The file's writer; `floats` (if not null) receives the weights.
GgufWriter MakeGgufModel(const GgufSpec& spec, GgufFloats* floats = nullptr);

// Writes the model to `path`; fails the test on error.
void WriteGgufModelFile(const GgufSpec& spec, const std::string& path);

}  // namespace cellhouse::engine::testing

#endif  // CELLHOUSE_TESTS_ENGINE_GGUF_TEST_MODELS_H_
