// GgufWeights: a llama, qwen2 or qwen3 model in a GGUF file (gguf.h) as the forward pass sees it:
// its configuration, read from the architecture's metadata keys, and a typed view of each tensor by
// its role, pointing into the file's mapping. Nothing is copied or converted: every worker
// computes from the one read-only mapping.
//
//   CH_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Parse(mapping.bytes(), path));
//   CH_ASSIGN_OR_RETURN(GgufWeights w, LoadGgufWeights(gguf, {.max_context = 4096}));
//   const WeightMatrix& wq = w.layers[0].wq;   // [q_dim][dim], wq.type e.g. TensorType::kQ4_K
//
// What is checked, with the tensor or key named in every refusal: the architecture is one of
// llama, qwen2, qwen3 (any other is refused with that list); the keys the architecture needs are
// present with numeric values in range; every tensor a role needs is present with exactly the
// shape the configuration implies, the norms, biases and RoPE factors in f32; the vocabulary (when
// the file has one) has a token per embedding row. Mixture-of-experts files and RoPE scaling other
// than linear are refused. Tensors no role uses are ignored.
//
// Roles, as llama.cpp names them: token_embd, output_norm, output (absent: the classifier is
// token_embd, "tied"), rope_freqs (Llama 3.1's per-frequency divisors), and per layer blk.N.
// attn_norm, attn_q, attn_k, attn_v, attn_output, attn_q.bias/attn_k.bias/attn_v.bias (qwen2;
// optional for llama), attn_q_norm/attn_k_norm (qwen3: RMSNorm of each head before RoPE),
// ffn_norm, ffn_gate, ffn_up, ffn_down.
#ifndef CELLHOUSE_ENGINE_FORMATS_GGUF_MODEL_H_
#define CELLHOUSE_ENGINE_FORMATS_GGUF_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/formats/gguf.h"
#include "engine/formats/model_config.h"
#include "engine/kernels/tensor_type.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine {

enum class GgufArchitecture { kLlama, kQwen2, kQwen3 };
std::string_view GgufArchitectureName(GgufArchitecture arch);  // "llama", "qwen2", "qwen3"
// "llama, qwen2, qwen3", for refusals.
std::string_view SupportedGgufArchitectures();

// One weight matrix: `rows` rows of `cols` values of `type`, in the file's layout.
struct WeightMatrix {
  std::string_view name;  // the tensor's, for messages
  TensorType type = TensorType::kF32;
  // The order in which llama.cpp accumulates this tensor's products (ReferenceDotOrder).
  DotOrder order = DotOrder::kVecDot;
  int64_t rows = 0;
  int64_t cols = 0;
  size_t row_bytes = 0;
  const std::byte* data = nullptr;

  const std::byte* Row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

struct GgufLayer {
  std::span<const float> attn_norm;  // [dim]
  WeightMatrix wq;                   // [q_dim][dim]
  WeightMatrix wk;                   // [kv_dim][dim]
  WeightMatrix wv;                   // [kv_dim][dim]
  WeightMatrix wo;                   // [dim][q_dim]
  std::span<const float> bq;         // [q_dim] (qwen2), else empty
  std::span<const float> bk;         // [kv_dim] (qwen2), else empty
  std::span<const float> bv;         // [kv_dim] (qwen2), else empty
  std::span<const float> q_norm;     // [head_size] (qwen3), else empty
  std::span<const float> k_norm;     // [head_size] (qwen3), else empty
  std::span<const float> ffn_norm;   // [dim]
  WeightMatrix w_gate;               // [hidden][dim]
  WeightMatrix w_up;                 // [hidden][dim]
  WeightMatrix w_down;               // [dim][hidden]
};

struct GgufWeights {
  ModelConfig config;  // seq_len already capped (GgufLoadOptions)
  GgufArchitecture architecture = GgufArchitecture::kLlama;
  WeightMatrix token_embedding;        // [vocab][dim]
  std::vector<GgufLayer> layers;       // [n_layers]
  std::span<const float> output_norm;  // [dim]
  WeightMatrix classifier;             // [vocab][dim]: token_embedding when tied
  // Llama 3.1's rope_freqs: the angle of pair i is divided by rope_freqs[i]. Empty: none.
  std::span<const float> rope_freqs;  // [rotated_dims / 2]
  float rope_freq_scale = 1.0F;       // linear RoPE scaling: 1 / factor
  uint32_t file_context_length = 0;   // <arch>.context_length, before any cap
  uint64_t parameters = 0;            // values in every tensor of the file
};

struct GgufLoadOptions {
  // The context a session may use, at most: the file's context length is lowered to it (0: the
  // file's own).
  int32_t max_context = 0;
};

// The weights of a parsed file. `gguf` must outlive them (and the mapping under it).
Result<GgufWeights> LoadGgufWeights(const GgufFile& gguf, const GgufLoadOptions& options);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_GGUF_MODEL_H_
