// RunState: the mutable memory of one session's forward passes — KV cache and activations —
// kept apart from the immutable weights. Sized from the model's config and a context length,
// allocated once as anonymous memory (mmap), so the KV pages of positions never reached are
// never touched and cost nothing; nothing is allocated per token.
//
//   CH_ASSIGN_OR_RETURN(RunState state, RunState::Create(model.config(), 512));
//   // admission control, before creating anything:
//   uint64_t bytes = StateFixedBytes(config) + 512 * KvCacheBytesPerToken(config);
#ifndef CELLHOUSE_WORKER_ENGINE_RUN_STATE_H_
#define CELLHOUSE_WORKER_ENGINE_RUN_STATE_H_

#include <cstddef>
#include <cstdint>

#include "base/mapping.h"
#include "base/result.h"
#include "worker/engine/model_config.h"
#include "worker/engine/q8_matrix.h"

namespace cellhouse::engine {

// The prompt is processed in chunks of at most this many tokens, so the activation buffers
// (and their cost per session) are bounded whatever the prompt length.
inline constexpr int32_t kMaxBatch = 128;

// Bytes of KV cache one context position takes: keys and values, every layer.
uint64_t KvCacheBytesPerToken(const ModelConfig& config);
// Bytes of the buffers that do not grow with the context length (activations for a batch of
// kMaxBatch tokens, their int8 form for quantized checkpoints, logits, attention scores, the
// sampler's workspace). The same for either checkpoint format: the int8 buffers are reserved
// for both, and an fp32 model never touches their pages.
uint64_t StateFixedBytes(const ModelConfig& config);

class RunState {
 public:
  // context_length must be in 1..config.seq_len.
  static Result<RunState> Create(const ModelConfig& config, int32_t context_length);

  RunState(RunState&&) noexcept = default;
  RunState& operator=(RunState&&) noexcept = default;

  int32_t context_length() const { return context_length_; }
  // Bytes of this state actually in memory (mincore(2)): the buffers in use and the KV pages of
  // the positions reached, not the whole reservation.
  Result<uint64_t> ResidentBytes() const;
  // Bytes reserved (address space), resident or not.
  uint64_t ReservedBytes() const { return memory_.size(); }

  // Activations of up to kMaxBatch tokens; row b belongs to the b-th token of the batch.
  float* x = nullptr;            // [kMaxBatch][dim] residual stream
  float* xb = nullptr;           // [kMaxBatch][dim] normalised input / attention output
  float* xb2 = nullptr;          // [kMaxBatch][dim] projection output
  float* q = nullptr;            // [kMaxBatch][dim] queries
  float* hb = nullptr;           // [kMaxBatch][hidden] gate, then SwiGLU output
  float* hb2 = nullptr;          // [kMaxBatch][hidden] up projection
  float* rope_cos = nullptr;     // [kMaxBatch][head_size / 2]
  float* rope_sin = nullptr;     // [kMaxBatch][head_size / 2]
  float* scores = nullptr;       // [n_heads][seq_len] attention weights of one token
  float* logits = nullptr;       // [vocab]
  float* key_cache = nullptr;    // [layers][context_length][kv_dim]
  float* value_cache = nullptr;  // [layers][context_length][kv_dim]
  // The input of an int8 matrix product, quantized: kMaxBatch vectors of up to
  // max(dim, hidden_dim) values (Q8ActivationBytes).
  Q8ActivationBuffer q8_input;

 private:
  RunState() = default;
  Mapping memory_;
  int32_t context_length_ = 0;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_WORKER_ENGINE_RUN_STATE_H_
