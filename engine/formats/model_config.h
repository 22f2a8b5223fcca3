// ModelConfig: the shape of a Llama-architecture model, as the seven int32 fields of a llama2.c
// checkpoint header describe it, plus the sizes every other part of the engine derives from it.
// A GGUF file says more (gguf_model.h): a head size of its own, RMSNorm's epsilon, RoPE's base,
// rotated dimensions and pair layout; their defaults are what llama2.c hard-codes.
//
//   ModelConfig c{.dim = 288, .hidden_dim = 768, .n_layers = 6, .n_heads = 6, .n_kv_heads = 6,
//                 .vocab_size = 32000, .seq_len = 256, .shared_classifier = true};
//   CH_RETURN_IF_ERROR(c.Validate());
//   uint64_t params = c.ParameterCount();   // 15,191,712 for this shape
#ifndef CELLHOUSE_ENGINE_FORMATS_MODEL_CONFIG_H_
#define CELLHOUSE_ENGINE_FORMATS_MODEL_CONFIG_H_

#include <cstdint>
#include <string>

#include "base/result.h"

namespace cellhouse::engine {

// Which dimensions RoPE rotates together within a head (ggml's rope modes).
enum class RopeStyle {
  kInterleaved,  // pairs (2i, 2i + 1): llama2.c, Llama ("NORM")
  kNeox,         // pairs (i, i + rope_dims / 2): Qwen2, Qwen3 ("NEOX")
};

struct ModelConfig {
  int32_t dim = 0;         // width of the residual stream
  int32_t hidden_dim = 0;  // width of the SwiGLU feed-forward layer
  int32_t n_layers = 0;
  int32_t n_heads = 0;            // query heads
  int32_t n_kv_heads = 0;         // key/value heads (< n_heads: grouped-query attention)
  int32_t vocab_size = 0;         // always positive here; the file stores it negated when separate
  int32_t seq_len = 0;            // the longest context the model was built for
  bool shared_classifier = true;  // the classifier is the token embedding table
  // GGUF's hyperparameters (llama2.c's fixed values by default).
  int32_t head_dim = 0;   // values per attention head; 0: dim / n_heads
  int32_t rope_dims = 0;  // dimensions of a head RoPE rotates (the rest pass through); 0: all
  float rope_base = 10000.0F;
  float rms_eps = 1e-5F;
  RopeStyle rope_style = RopeStyle::kInterleaved;

  int32_t head_size() const { return head_dim != 0 ? head_dim : dim / n_heads; }
  int32_t rotated_dims() const { return rope_dims != 0 ? rope_dims : head_size(); }
  // Width of the queries (and of the attention output): dim, unless heads have a size of their own.
  int32_t q_dim() const { return head_size() * n_heads; }
  int32_t kv_dim() const { return head_size() * n_kv_heads; }
  // Query heads that share one key/value head.
  int32_t kv_mul() const { return n_heads / n_kv_heads; }

  // Every field positive, the heads dividing the width evenly (unless head_dim says otherwise),
  // an even head size and rotated width (RoPE rotates pairs), n_kv_heads dividing n_heads, a
  // positive epsilon and base. Says which rule is broken.
  Status Validate() const;

  // Learned parameters (the unused RoPE tables of the file are not parameters). Saturates at
  // UINT64_MAX, which no valid file reaches, so callers need no overflow check of their own.
  uint64_t ParameterCount() const;

  // "dim 768, hidden 2048, 12 layers, 12 heads (12 kv), vocab 32000, seq 1024, shared classifier"
  std::string Describe() const;

  bool operator==(const ModelConfig&) const = default;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_MODEL_CONFIG_H_
