#include "engine/executor_compute.h"

#include <algorithm>
#include <cstring>

#include "base/str_cat.h"
#include "engine/run_state.h"

namespace cellhouse::engine {

namespace {

// Entries whose logits are computed in one product: the classifier is read once for them all.
constexpr uint32_t kLogitRows = 16;

// The executor's threads as gguf_steps see them.
class PoolParallel final : public gguf_steps::RowParallel {
 public:
  explicit PoolParallel(executor::ThreadPool& pool) : pool_(pool) {}
  int parts() const override { return pool_.parts(); }
  void Run(void (*fn)(void* context, int part, int parts), void* context) override {
    pool_.ForEachPart([fn, context](int part, int parts) { fn(context, part, parts); });
  }

 private:
  executor::ThreadPool& pool_;
};

size_t Floats(uint32_t rows, int64_t width) {
  return static_cast<size_t>(rows) * static_cast<size_t>(width);
}

}  // namespace

executor::SlotShape GgufSlotShape(const ModelConfig& c, uint32_t max_rows) {
  return {.max_rows = max_rows,
          .rounds = static_cast<uint32_t>(c.n_layers) + 1,
          .input_row_floats = static_cast<uint32_t>(c.dim + c.q_dim()),
          .output_row_floats = static_cast<uint32_t>(c.dim + c.q_dim() + 2 * c.kv_dim()),
          .final_floats = static_cast<uint32_t>(c.vocab_size)};
}

uint64_t GgufExecutorSlotBytes(const ModelConfig& c) {
  const executor::SlotShape shape = GgufSlotShape(c, kGgufSlotRows);
  return executor::ValidateShape(shape) ? executor::SlotBytes(shape) : 0;
}

Result<std::unique_ptr<GgufStepCompute>> GgufStepCompute::Create(const GgufWeights& weights,
                                                                 KernelIsa isa, uint32_t max_rows,
                                                                 uint32_t max_batch_rows,
                                                                 uint32_t max_entries) {
  if (max_rows < 1 || max_rows > static_cast<uint32_t>(kMaxBatch)) {
    return Error(StrCat("executor rows per slot must be 1..", kMaxBatch,
                        " (the worker's batch), not ", max_rows));
  }
  if (max_batch_rows < max_rows) {
    return Error(StrCat("executor batch rows (", max_batch_rows, ") must hold at least one slot's ",
                        max_rows, " rows"));
  }
  CH_RETURN_IF_ERROR(executor::ValidateShape(GgufSlotShape(weights.config, max_rows)));
  if (max_entries < 1) {
    return Error("executor batches expect at least one entry");
  }
  const uint32_t logit_rows = std::min({kLogitRows, max_entries, max_batch_rows});
  return std::unique_ptr<GgufStepCompute>(
      new GgufStepCompute(weights, isa, max_rows, max_batch_rows, logit_rows));
}

GgufStepCompute::GgufStepCompute(const GgufWeights& weights, KernelIsa isa, uint32_t max_rows,
                                 uint32_t max_batch_rows, uint32_t logit_rows)
    : w_(weights),
      isa_(isa),
      shape_(GgufSlotShape(weights.config, max_rows)),
      max_batch_rows_(max_batch_rows),
      logit_rows_(logit_rows) {
  const ModelConfig& c = w_.config;
  const uint32_t n = max_batch_rows;
  const int64_t wide = std::max(c.dim, c.q_dim());
  x_.resize(Floats(n, c.dim));
  h_.resize(Floats(n, wide));
  h2_.resize(Floats(n, c.dim));
  q_.resize(Floats(n, c.q_dim()));
  k_.resize(Floats(n, c.kv_dim()));
  v_.resize(Floats(n, c.kv_dim()));
  gate_.resize(Floats(n, c.hidden_dim));
  up_.resize(Floats(n, c.hidden_dim));
  // Every partner type takes at most 4 bytes a value (RunState::typed_input).
  typed_.resize(Floats(n, std::max<int64_t>(wide, c.hidden_dim)) * 4);
  at_.resize(n);
  prompt_row_.resize(n);
  last_rows_.resize(Floats(logit_rows_, c.dim));
  logits_.resize(Floats(logit_rows_, c.vocab_size));
}

gguf_steps::Buffers GgufStepCompute::Scratch() {
  return {.x = x_.data(),
          .h = h_.data(),
          .h2 = h2_.data(),
          .q = q_.data(),
          .k = k_.data(),
          .v = v_.data(),
          .gate = gate_.data(),
          .up = up_.data(),
          .typed_input = typed_.data()};
}

void GgufStepCompute::Run(const executor::Batch& batch, executor::ThreadPool& pool) {
  const ModelConfig& c = w_.config;
  const uint32_t n = std::min(batch.total_rows, max_batch_rows_);
  // A prompt's rows first, each group in batch order.
  std::fill_n(prompt_row_.begin(), n, uint8_t{0});
  for (const executor::BatchEntry& e : batch.entries) {
    if (e.kind != executor::RowKind::kPrefill) continue;
    for (uint32_t r = 0; r < e.rows && e.first_row + r < n; ++r) prompt_row_[e.first_row + r] = 1;
  }
  uint32_t next = 0;
  for (uint8_t prompt : {uint8_t{1}, uint8_t{0}}) {
    for (uint32_t i = 0; i < n; ++i) {
      if (prompt_row_[i] == prompt) at_[i] = next++;
    }
  }
  // The rows in: x, and (after round 0) the attention output a. Copied, so the products never
  // read the batch input again.
  uint32_t prompt_rows = 0;
  for (uint32_t i = 0; i < n; ++i) {
    const float* in = batch.input + Floats(i, shape_.input_row_floats);
    std::memcpy(x_.data() + Floats(at_[i], c.dim), in, sizeof(float) * static_cast<size_t>(c.dim));
    if (batch.round > 0) {
      // The attention output's rows are q_dim apart, as Attend writes them and the output
      // projection reads them.
      std::memcpy(h_.data() + Floats(at_[i], c.q_dim()), in + c.dim,
                  sizeof(float) * static_cast<size_t>(c.q_dim()));
    }
    prompt_rows += prompt_row_[i];
  }
  PoolParallel parallel(pool);
  gguf_steps::Buffers b = Scratch();
  b.parallel = &parallel;
  b.prompt_rows = static_cast<int32_t>(prompt_rows);
  if (batch.round > 0) {
    gguf_steps::AttentionOutputAndFeedForward(w_, isa_, static_cast<int32_t>(batch.round) - 1,
                                              static_cast<int32_t>(n), b);
  }
  if (batch.final_round) {
    WriteLogits(batch, b);
    return;
  }
  gguf_steps::AttentionInputs(w_, isa_, static_cast<int32_t>(batch.round), static_cast<int32_t>(n),
                              b);
  WriteRows(batch);
}

void GgufStepCompute::WriteRows(const executor::Batch& batch) {
  const ModelConfig& c = w_.config;
  const auto put = [](float*& out, const float* from, int64_t count) {
    std::memcpy(out, from, sizeof(float) * static_cast<size_t>(count));
    out += count;
  };
  for (const executor::BatchEntry& e : batch.entries) {
    for (uint32_t r = 0; r < e.rows; ++r) {
      if (e.first_row + r >= max_batch_rows_) {
        return;
      }
      const uint32_t i = at_[e.first_row + r];
      float* out = e.output + Floats(r, e.output_stride_floats);
      put(out, x_.data() + Floats(i, c.dim), c.dim);
      put(out, q_.data() + Floats(i, c.q_dim()), c.q_dim());
      put(out, k_.data() + Floats(i, c.kv_dim()), c.kv_dim());
      put(out, v_.data() + Floats(i, c.kv_dim()), c.kv_dim());
    }
  }
}

void GgufStepCompute::WriteLogits(const executor::Batch& batch, const gguf_steps::Buffers& b) {
  const ModelConfig& c = w_.config;
  for (size_t begin = 0; begin < batch.entries.size(); begin += logit_rows_) {
    const size_t count = std::min<size_t>(logit_rows_, batch.entries.size() - begin);
    for (size_t j = 0; j < count; ++j) {
      const executor::BatchEntry& e = batch.entries[begin + j];
      if (e.rows == 0) {
        continue;  // the batch loop never sends one; its logits would be stale, not a crash
      }
      const uint32_t last = at_[std::min(e.first_row + e.rows, max_batch_rows_) - 1];
      std::memcpy(last_rows_.data() + Floats(static_cast<uint32_t>(j), c.dim),
                  x_.data() + Floats(last, c.dim), sizeof(float) * static_cast<size_t>(c.dim));
    }
    gguf_steps::Logits(w_, isa_, last_rows_.data(), static_cast<int32_t>(count), b, logits_.data());
    for (size_t j = 0; j < count; ++j) {
      std::memcpy(batch.entries[begin + j].output,
                  logits_.data() + Floats(static_cast<uint32_t>(j), c.vocab_size),
                  sizeof(float) * static_cast<size_t>(c.vocab_size));
    }
  }
}

}  // namespace cellhouse::engine
