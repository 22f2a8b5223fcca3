// RunState: the mutable memory of one session's forward passes — KV cache and activations —
// kept apart from the immutable weights. Sized from the model's config and a context length,
// allocated once as anonymous memory (mmap), so the KV pages of positions never reached are
// never touched and cost nothing; nothing is allocated per token.
//
//   CH_ASSIGN_OR_RETURN(RunState state,
//                       RunState::Create(model.config(), 512, model.kv_precision()));
//   // admission control, before creating anything:
//   uint64_t bytes = StateFixedBytes(config) + 512 * KvCacheBytesPerToken(config, precision);
//
// The KV cache holds fp32 for an fp32 model, so that its arithmetic stays llama2.c's exactly,
// and fp16 for an int8 one: half the bytes attention reads per token and half the memory a
// conversation costs, for an error far below what the int8 weights already bring.
#ifndef CELLHOUSE_ENGINE_RUN_STATE_H_
#define CELLHOUSE_ENGINE_RUN_STATE_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "base/mapping.h"
#include "base/result.h"
#include "engine/formats/model_config.h"
#include "engine/kernels/q8_matrix.h"

namespace cellhouse::engine {

// The prompt is processed in chunks of at most this many tokens, so the activation buffers
// (and their cost per session) are bounded whatever the prompt length.
inline constexpr int32_t kMaxBatch = 128;

// The KV cache holds whole multiples of this many positions, as llama.cpp pads its cache and the
// stretch of it attention reads: a GGUF model's attention sums over that padded stretch, and the
// rounding depends on its length (gguf_forward.cc).
inline constexpr int32_t kKvPadding = 32;
// GGUF attention: a prompt's tokens whose padded lengths agree read a head's keys and value rows
// together, this many at a time (gguf_forward.cc's Attend).
inline constexpr int32_t kPromptQueries = 4;
constexpr int64_t PadToKv(int64_t positions) {
  return (positions + kKvPadding - 1) / kKvPadding * kKvPadding;
}

// The positions whose KV cache pages a step writing positions [pos, pos + n) faults in together
// (PopulateForWrite, base/mapping.h) before it writes them: from pos to the end of the last one's
// kKvPadding block (at most `capacity`), or none (from == to) for a decode token inside a block,
// whose pages its block's first token faulted in. A first write faults a page in on its own at
// 11-12 us on these VMs, PopulateForWrite at about 1 us a page.
struct PositionRange {
  int32_t from = 0;
  int32_t to = 0;
};
constexpr PositionRange PositionsToPopulate(int32_t pos, int32_t n, int32_t capacity) {
  if (n == 1 && pos % kKvPadding != 0) {
    return {pos, pos};
  }
  return {pos, static_cast<int32_t>(std::min<int64_t>(capacity, PadToKv(int64_t{pos} + n)))};
}

enum class KvPrecision {
  kF32,
  kF16,  // IEEE half (half.h)
};
std::string_view KvPrecisionName(KvPrecision precision);  // "f32", "f16"

// Bytes of KV cache one context position takes: keys and values, every layer.
uint64_t KvCacheBytesPerToken(const ModelConfig& config, KvPrecision precision);
// Bytes of the buffers that do not grow with the context length (activations for a batch of
// kMaxBatch tokens, their int8 form for quantized checkpoints or their partner-type form for GGUF
// ones, new keys and values on their way into an fp16 cache, logits, attention scores, one kv
// head's value rows for GGUF attention, the sampler's workspace, and the KV cache's padding to
// kKvPadding positions). The same for every
// format: every buffer is reserved for all, and a model never touches the pages of those it does
// not use.
uint64_t StateFixedBytes(const ModelConfig& config);

class RunState {
 public:
  // context_length must be in 1..config.seq_len.
  static Result<RunState> Create(const ModelConfig& config, int32_t context_length,
                                 KvPrecision precision);

  RunState(RunState&&) noexcept = default;
  RunState& operator=(RunState&&) noexcept = default;

  int32_t context_length() const { return context_length_; }
  // Positions the KV cache has room for: context_length padded to kKvPadding.
  int32_t kv_capacity() const { return static_cast<int32_t>(PadToKv(context_length_)); }
  KvPrecision kv_precision() const {
    return key_cache != nullptr ? KvPrecision::kF32 : KvPrecision::kF16;
  }
  // Bytes of this state actually in memory (mincore(2)): the buffers in use and the KV pages of
  // the positions reached, not the whole reservation.
  Result<uint64_t> ResidentBytes() const;
  // Bytes reserved (address space), resident or not.
  uint64_t ReservedBytes() const { return memory_.size(); }

  // Activations of up to kMaxBatch tokens; row b belongs to the b-th token of the batch. Rows of
  // xb and q are max(dim, q_dim) wide (q_dim: ModelConfig::q_dim(), dim unless a GGUF model's
  // heads have a size of their own); their row stride is dim for llama2.c models.
  float* x = nullptr;         // [kMaxBatch][dim] residual stream
  float* xb = nullptr;        // [kMaxBatch][max(dim, q_dim)] normalised input / attention output
  float* xb2 = nullptr;       // [kMaxBatch][dim] projection output
  float* q = nullptr;         // [kMaxBatch][max(dim, q_dim)] queries
  float* hb = nullptr;        // [kMaxBatch][hidden] gate, then SwiGLU output
  float* hb2 = nullptr;       // [kMaxBatch][hidden] up projection
  float* rope_cos = nullptr;  // [kMaxBatch][head_size / 2]
  float* rope_sin = nullptr;  // [kMaxBatch][head_size / 2]
  // [max(n_heads, kPromptQueries)][PadToKv(seq_len)] attention weights of one token (a row per
  // head), or of a GGUF prompt's group of tokens for one head (a row per token)
  float* scores = nullptr;
  float* logits = nullptr;  // [vocab]
  // GGUF attention: one head's weights and query rounded to half precision, as floats, for one
  // token or a prompt's group of kPromptQueries:
  // [kPromptQueries][PadToKv(seq_len)] + [max(q_dim, kPromptQueries * head_size)].
  float* attention_half = nullptr;
  // GGUF attention: a prompt chunk's copy of one kv head's values gathered from their blocks
  // (below) into rows, [head_size][positions padded to kKvPadding]; a decode token's scratch row
  // for DotsF16Blocks where there is no AVX-512.
  uint16_t* value_rows_half = nullptr;  // [head_size][PadToKv(seq_len)]
  // GGUF matrix products: the input rows rounded to the weights' partner type (kernels/
  // type_kernels.h), at most 4 bytes a value: [kMaxBatch][max(dim, hidden_dim, q_dim)] x 4 bytes.
  std::byte* typed_input = nullptr;
  // The KV cache in one precision (the other pair is null), [layers][kv_capacity][kv_dim] for
  // llama2.c and int8 models. GGUF ones (gguf_forward.cc) keep keys by kv head ([layers][kv
  // heads][kv_capacity][head_size]) and values by dimension in blocks of kKvPadding positions
  // ([layers][kv heads][kv_capacity / kKvPadding][head_size][kKvPadding]): attention reads each
  // head's keys and values for the positions so far as one contiguous run, at the memory's
  // streaming speed (values one row per dimension across the whole capacity read at a quarter of
  // it), and either cache's pages are reached as the conversation grows.
  float* key_cache = nullptr;
  float* value_cache = nullptr;
  uint16_t* key_cache_half = nullptr;
  uint16_t* value_cache_half = nullptr;
  // With an fp16 cache, the keys ([kMaxBatch][kv_dim]) and values (the same, after them) of the
  // tokens being processed, in fp32 until they are rounded into the cache.
  float* kv_new = nullptr;
  // The input of an int8 matrix product, quantized: kMaxBatch vectors of up to
  // max(dim, hidden_dim) values (Q8ActivationBytes).
  Q8ActivationBuffer q8_input;

 private:
  RunState() = default;
  Mapping memory_;
  int32_t context_length_ = 0;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_RUN_STATE_H_
