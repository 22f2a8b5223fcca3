#include "engine/executor_rounds.h"

#include <algorithm>
#include <cstring>

namespace cellhouse::engine {

namespace {

void Copy(float* to, const float* from, int64_t count) {
  std::memcpy(to, from, sizeof(float) * static_cast<size_t>(count));
}

float* Row(float* base, uint32_t row, int64_t width) {
  return base + static_cast<size_t>(row) * static_cast<size_t>(width);
}

// The session's buffers in its RunState (as ForwardGguf uses them).
struct SessionRows {
  float* x;
  float* h;
  float* q;
  float* k;
  float* v;
};

SessionRows RowsOf(const ModelConfig& c, RunState& s) {
  return {.x = s.x,
          .h = s.xb,
          .q = s.q,
          .k = s.kv_new,
          .v = s.kv_new + static_cast<size_t>(kMaxBatch) * static_cast<size_t>(c.kv_dim())};
}

// Reads a round's answer: [x | q | k | v] per row.
void ReadAnswer(const ModelConfig& c, StepTransport& t, uint32_t n, const SessionRows& s) {
  for (uint32_t r = 0; r < n; ++r) {
    const float* in = t.row(r);
    Copy(Row(s.x, r, c.dim), in, c.dim);
    in += c.dim;
    Copy(Row(s.q, r, c.q_dim()), in, c.q_dim());
    in += c.q_dim();
    Copy(Row(s.k, r, c.kv_dim()), in, c.kv_dim());
    in += c.kv_dim();
    Copy(Row(s.v, r, c.kv_dim()), in, c.kv_dim());
  }
}

// One chunk of n tokens through `t`. False: `t` failed (nothing of the chunk is final).
bool Chunk(const GgufWeights& w, KernelIsa isa, RunState& state, std::span<const int32_t> tokens,
           int32_t at, StepKind step, bool last, StepTransport& t) {
  const ModelConfig& c = w.config;
  const auto n = static_cast<uint32_t>(tokens.size());
  const SessionRows s = RowsOf(c, state);
  const executor::RowKind kind =
      step == StepKind::kDecode ? executor::RowKind::kDecode : executor::RowKind::kPrefill;
  const uint32_t flags = last ? 0 : executor::kStepSkipsFinal;
  gguf_steps::Embed(w, isa, tokens, s.x);
  for (uint32_t r = 0; r < n; ++r) {
    Copy(t.row(r), Row(s.x, r, c.dim), c.dim);
    std::fill_n(t.row(r) + c.dim, c.q_dim(), 0.0F);
  }
  if (!t.Exchange(0, n, kind, flags)) {
    return false;
  }
  ReadAnswer(c, t, n, s);
  const auto layers = static_cast<uint32_t>(c.n_layers);
  for (uint32_t l = 0; l < layers; ++l) {
    gguf_steps::RotateQueriesAndKeys(w, isa, at, static_cast<int32_t>(n), s.q, s.k, state.rope_cos);
    gguf_steps::Attend(w, isa, state, static_cast<int32_t>(l), at, static_cast<int32_t>(n), step,
                       s.q, s.k, s.v, s.h);
    if (l + 1 == layers && !last) {
      return true;  // a prompt's earlier chunk: its keys and values are all it leaves
    }
    for (uint32_t r = 0; r < n; ++r) {
      Copy(t.row(r), Row(s.x, r, c.dim), c.dim);
      Copy(t.row(r) + c.dim, Row(s.h, r, c.q_dim()), c.q_dim());  // Attend's rows: q_dim apart
    }
    if (!t.Exchange(l + 1, n, kind, flags)) {
      return false;
    }
    if (l + 1 < layers) {
      ReadAnswer(c, t, n, s);
    }
  }
  Copy(state.logits, t.final_output(), c.vocab_size);
  return true;
}

}  // namespace

Result<std::unique_ptr<LocalRounds>> LocalRounds::Create(const GgufWeights& weights, KernelIsa isa,
                                                         uint32_t max_rows) {
  CH_ASSIGN_OR_RETURN(std::unique_ptr<GgufStepCompute> compute,
                      GgufStepCompute::Create(weights, isa, max_rows, max_rows,
                                              /*max_entries=*/1));
  CH_ASSIGN_OR_RETURN(std::unique_ptr<executor::ThreadPool> pool, executor::ThreadPool::Start(1));
  const executor::SlotShape shape = compute->shape();
  std::vector<float> input(static_cast<size_t>(shape.max_rows) * shape.input_row_floats);
  return std::unique_ptr<LocalRounds>(
      new LocalRounds(std::move(compute), std::move(pool), std::move(input)));
}

LocalRounds::LocalRounds(std::unique_ptr<GgufStepCompute> compute,
                         std::unique_ptr<executor::ThreadPool> pool, std::vector<float> input)
    : compute_(std::move(compute)),
      pool_(std::move(pool)),
      rows_(compute_->shape()),
      input_(std::move(input)) {}

bool LocalRounds::Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                           uint32_t step_flags) {
  const executor::SlotShape& shape = rows_.shape();
  rows = std::min(rows, shape.max_rows);
  for (uint32_t r = 0; r < rows; ++r) {
    Copy(input_.data() + size_t{r} * shape.input_row_floats, row(r), shape.input_row_floats);
  }
  const executor::BatchEntry entry{.first_row = 0,
                                   .rows = rows,
                                   .kind = kind,
                                   .step_flags = step_flags,
                                   .output = rows_.data(),
                                   .output_stride_floats = executor::RowStrideFloats(shape)};
  compute_->Run({.round = round,
                 .final_round = round + 1 == shape.rounds,
                 .entries = std::span<const executor::BatchEntry>(&entry, 1),
                 .total_rows = rows,
                 .input = input_.data()},
                *pool_);
  return true;
}

const float* ForwardGgufRounds(const GgufWeights& weights, KernelIsa isa, RunState& state,
                               std::span<const int32_t> tokens, int32_t pos, StepKind kind,
                               StepTransport& rounds, StepTransport* fallback) {
  // The slot's shape comes from elsewhere: never more rows than this state's buffers hold, or
  // than the fallback takes (a chunk may have to be redone there).
  size_t max_rows = std::clamp<size_t>(rounds.shape().max_rows, 1, kMaxBatch);
  if (fallback != nullptr) {
    max_rows = std::clamp<size_t>(fallback->shape().max_rows, 1, max_rows);
  }
  const size_t chunks = (tokens.size() + max_rows - 1) / max_rows;
  StepTransport* t = &rounds;
  size_t start = 0;
  for (size_t i = 0; i < chunks; ++i) {
    // Even chunks: the first tokens.size() % chunks take one token more.
    const size_t count = tokens.size() / chunks + (i < tokens.size() % chunks ? 1 : 0);
    const std::span<const int32_t> part = tokens.subspan(start, count);
    const int32_t at = pos + static_cast<int32_t>(start);
    const bool last = i + 1 == chunks;
    if (!Chunk(weights, isa, state, part, at, kind, last, *t)) {
      if (fallback == nullptr || t == fallback) {
        return nullptr;
      }
      t = fallback;
      if (!Chunk(weights, isa, state, part, at, kind, last, *t)) {
        return nullptr;
      }
    }
    start += count;
  }
  return state.logits;
}

}  // namespace cellhouse::engine
