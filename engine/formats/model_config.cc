#include "engine/formats/model_config.h"

#include <climits>
#include <cstdint>
#include <string>

#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

Status ModelConfig::Validate() const {
  struct Field {
    const char* name;
    int32_t value;
  };
  for (Field f : {Field{"dim", dim}, Field{"hidden_dim", hidden_dim}, Field{"n_layers", n_layers},
                  Field{"n_heads", n_heads}, Field{"n_kv_heads", n_kv_heads},
                  Field{"vocab_size", vocab_size}, Field{"seq_len", seq_len}}) {
    if (f.value <= 0) {
      return Error(std::string(f.name) + " is " + std::to_string(f.value) + ", must be positive");
    }
  }
  if (head_dim < 0 || rope_dims < 0) {
    return Error("head_dim and rope_dims must not be negative");
  }
  if (head_dim == 0 && dim % n_heads != 0) {
    return Error("dim " + std::to_string(dim) + " is not a multiple of n_heads " +
                 std::to_string(n_heads));
  }
  if (head_size() % 2 != 0) {
    return Error("head size " + std::to_string(head_size()) +
                 " is odd; RoPE rotates pairs of dimensions");
  }
  if (rotated_dims() % 2 != 0 || rotated_dims() > head_size()) {
    return Error("RoPE rotates " + std::to_string(rotated_dims()) + " dimensions of a head of " +
                 std::to_string(head_size()) + "; must be even and at most the head size");
  }
  // Heads of their own size (GGUF) make a query width other than dim; it must fit as dim does.
  if (head_dim != 0 && static_cast<int64_t>(head_dim) * n_heads > INT32_MAX / 4) {
    return Error("n_heads x head size " + std::to_string(n_heads) + " x " +
                 std::to_string(head_size()) + " is too large");
  }
  if (!(rms_eps > 0.0F) || !(rope_base > 0.0F) || rms_eps > 1.0F) {
    return Error("rms_eps must be in (0, 1] and rope_base positive");
  }
  if (n_kv_heads > n_heads || n_heads % n_kv_heads != 0) {
    return Error("n_kv_heads " + std::to_string(n_kv_heads) + " does not divide n_heads " +
                 std::to_string(n_heads));
  }
  return Ok();
}

uint64_t ModelConfig::ParameterCount() const {
  const auto d = static_cast<uint64_t>(dim);
  const auto h = static_cast<uint64_t>(hidden_dim);
  const auto kv = static_cast<uint64_t>(kv_dim());
  const auto v = static_cast<uint64_t>(vocab_size);
  // Per layer: two RMSNorm weight vectors, wq and wo (dim x dim), wk and wv (kv_dim x dim),
  // w1, w2 and w3 (hidden x dim).
  std::optional<uint64_t> per_layer = CheckedMul({d, 2 + 2 * d + 2 * kv + 3 * h});
  std::optional<uint64_t> layers =
      per_layer ? CheckedMul({*per_layer, static_cast<uint64_t>(n_layers)}) : std::nullopt;
  std::optional<uint64_t> embedding = CheckedMul({v, d, shared_classifier ? 1U : 2U});
  if (!layers || !embedding) {
    return UINT64_MAX;
  }
  std::optional<uint64_t> total = CheckedAdd(*layers, *embedding);
  total = total ? CheckedAdd(*total, d) : std::nullopt;
  return total.value_or(UINT64_MAX);
}

std::string ModelConfig::Describe() const {
  return "dim " + std::to_string(dim) + ", hidden " + std::to_string(hidden_dim) + ", " +
         std::to_string(n_layers) + " layers, " + std::to_string(n_heads) + " heads (" +
         std::to_string(n_kv_heads) + " kv), vocab " + std::to_string(vocab_size) + ", seq " +
         std::to_string(seq_len) + ", " +
         (shared_classifier ? "shared classifier" : "separate classifier");
}

}  // namespace cellhouse::engine
