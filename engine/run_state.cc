#include "engine/run_state.h"

#include <algorithm>
#include <climits>
#include <cstdint>
#include <string>

#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

namespace {

constexpr uint64_t kAlign = 64;  // a cache line, and enough for any SIMD load

uint64_t AlignUp(uint64_t n) { return (n + kAlign - 1) / kAlign * kAlign; }

// The floats of every fixed buffer, in the order Create() carves them.
struct FixedSizes {
  explicit FixedSizes(const ModelConfig& c)
      : row(static_cast<uint64_t>(kMaxBatch) * static_cast<uint64_t>(c.dim)),
        wide_row(static_cast<uint64_t>(kMaxBatch) *
                 static_cast<uint64_t>(std::max(c.dim, c.q_dim()))),
        hidden(static_cast<uint64_t>(kMaxBatch) * static_cast<uint64_t>(c.hidden_dim)),
        rope(static_cast<uint64_t>(kMaxBatch) * static_cast<uint64_t>(c.head_size() / 2)),
        scores(static_cast<uint64_t>(std::max(c.n_heads, kPromptQueries)) *
               static_cast<uint64_t>(PadToKv(c.seq_len))),
        logits(static_cast<uint64_t>(c.vocab_size)),
        kv_new(2 * static_cast<uint64_t>(kMaxBatch) * static_cast<uint64_t>(c.kv_dim())),
        attention_half(static_cast<uint64_t>(kPromptQueries) *
                           static_cast<uint64_t>(PadToKv(c.seq_len)) +
                       static_cast<uint64_t>(std::max(c.q_dim(), kPromptQueries * c.head_size()))),
        value_rows(static_cast<uint64_t>(c.head_size()) *
                   static_cast<uint64_t>(PadToKv(c.seq_len))),
        typed_input(4 * static_cast<uint64_t>(kMaxBatch) *
                    static_cast<uint64_t>(std::max({c.dim, c.hidden_dim, c.q_dim()}))),
        q8(Q8ActivationBytes(kMaxBatch, std::max(c.dim, c.hidden_dim))) {}
  uint64_t Bytes() const {
    return 2 * AlignUp(row * 4) + 2 * AlignUp(wide_row * 4) + 2 * AlignUp(hidden * 4) +
           2 * AlignUp(rope * 4) + AlignUp(scores * 4) + AlignUp(logits * 4) + AlignUp(kv_new * 4) +
           AlignUp(attention_half * 4) + AlignUp(value_rows * 2) + AlignUp(typed_input) +
           AlignUp(q8.q_bytes) + 2 * AlignUp(q8.groups * 4);
  }
  uint64_t row, wide_row, hidden, rope, scores, logits, kv_new, attention_half, value_rows,
      typed_input;
  Q8ActivationCapacity q8;
};

// What Sampler allocates beside the state: one (probability, index) pair per vocabulary entry.
constexpr uint64_t kSamplerBytesPerPiece = 8;

uint64_t BytesPerValue(KvPrecision precision) {
  return precision == KvPrecision::kF16 ? sizeof(uint16_t) : sizeof(float);
}

}  // namespace

std::string_view KvPrecisionName(KvPrecision precision) {
  return precision == KvPrecision::kF16 ? "f16" : "f32";
}

uint64_t KvCacheBytesPerToken(const ModelConfig& config, KvPrecision precision) {
  return 2 * static_cast<uint64_t>(config.n_layers) * static_cast<uint64_t>(config.kv_dim()) *
         BytesPerValue(precision);
}

uint64_t StateFixedBytes(const ModelConfig& config) {
  // The cache's padding: at most kKvPadding - 1 positions beyond the context, at the widest
  // precision.
  return FixedSizes(config).Bytes() +
         kSamplerBytesPerPiece * static_cast<uint64_t>(config.vocab_size) +
         (kKvPadding - 1) * KvCacheBytesPerToken(config, KvPrecision::kF32);
}

Result<RunState> RunState::Create(const ModelConfig& config, int32_t context_length,
                                  KvPrecision precision) {
  if (context_length < 1 || context_length > config.seq_len ||
      context_length > INT32_MAX - kKvPadding) {
    return Error("creating run state: context length " + std::to_string(context_length) +
                 " is outside 1.." + std::to_string(config.seq_len) + " (the model's seq_len)");
  }
  FixedSizes fixed(config);
  const uint64_t cache_values = static_cast<uint64_t>(config.n_layers) *
                                static_cast<uint64_t>(PadToKv(context_length)) *
                                static_cast<uint64_t>(config.kv_dim());
  std::optional<uint64_t> cache_bytes = CheckedMul({cache_values, BytesPerValue(precision)});
  std::optional<uint64_t> total =
      cache_bytes ? CheckedAdd(fixed.Bytes(), 2 * AlignUp(*cache_bytes)) : std::nullopt;
  if (!total || *total > SIZE_MAX) {
    return Error("creating run state: size overflows");
  }
  RunState s;
  CH_ASSIGN_OR_RETURN(s.memory_, Mapping::Anonymous(*total, "a session's KV cache and buffers"));
  s.context_length_ = context_length;
  std::byte* next = s.memory_.mutable_data();
  auto carve_bytes = [&next](uint64_t bytes) {
    std::byte* p = next;
    next += AlignUp(bytes);
    return p;
  };
  auto carve = [&carve_bytes](uint64_t floats) {
    return reinterpret_cast<float*>(carve_bytes(floats * sizeof(float)));
  };
  s.x = carve(fixed.row);
  s.xb = carve(fixed.wide_row);
  s.xb2 = carve(fixed.row);
  s.q = carve(fixed.wide_row);
  s.hb = carve(fixed.hidden);
  s.hb2 = carve(fixed.hidden);
  s.rope_cos = carve(fixed.rope);
  s.rope_sin = carve(fixed.rope);
  s.scores = carve(fixed.scores);
  s.logits = carve(fixed.logits);
  s.kv_new = carve(fixed.kv_new);
  s.attention_half = carve(fixed.attention_half);
  s.value_rows_half = reinterpret_cast<uint16_t*>(carve_bytes(fixed.value_rows * 2));
  s.typed_input = carve_bytes(fixed.typed_input);
  s.q8_input.q = reinterpret_cast<int8_t*>(carve_bytes(fixed.q8.q_bytes));
  s.q8_input.scale = carve(fixed.q8.groups);
  s.q8_input.offset_sum = reinterpret_cast<int32_t*>(carve_bytes(fixed.q8.groups * 4));
  // The caches come last, so the pages of unreached positions stay untouched.
  std::byte* keys = carve_bytes(*cache_bytes);
  std::byte* value_bytes = carve_bytes(*cache_bytes);
  if (precision == KvPrecision::kF16) {
    s.key_cache_half = reinterpret_cast<uint16_t*>(keys);
    s.value_cache_half = reinterpret_cast<uint16_t*>(value_bytes);
  } else {
    s.key_cache = reinterpret_cast<float*>(keys);
    s.value_cache = reinterpret_cast<float*>(value_bytes);
  }
  return s;
}

Result<uint64_t> RunState::ResidentBytes() const {
  Result<uint64_t> resident = memory_.ResidentBytes();
  if (!resident) return std::move(resident).error().Context("a session's run state");
  return resident;
}

}  // namespace cellhouse::engine
