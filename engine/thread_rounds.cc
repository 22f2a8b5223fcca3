#include "engine/thread_rounds.h"

#include <algorithm>
#include <cmath>
#include <cstring>

namespace cellhouse::engine {

ThreadRounds::ThreadRounds(GgufStepCompute& compute, executor::ThreadPool& pool, int sessions,
                           uint32_t garbage_rows)
    : compute_(compute),
      pool_(pool),
      shape_(compute.shape()),
      garbage_rows_(garbage_rows),
      live_(sessions),
      garbage_out_(executor::PayloadFloats(shape_)) {}

ThreadRounds::Session::Session(ThreadRounds& rounds) : rounds_(rounds), payload_(rounds.shape_) {}

bool ThreadRounds::Session::Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                                     uint32_t step_flags) {
  round_ = round;
  rows_ = std::min(rows, payload_.shape().max_rows);
  kind_ = kind;
  flags_ = step_flags;
  rounds_.Wait(this);
  return true;
}

void ThreadRounds::Done() {
  std::lock_guard lock(mu_);
  --live_;
  MaybeRun();
}

uint64_t ThreadRounds::batches() const {
  std::lock_guard lock(mu_);
  return batches_;
}

uint32_t ThreadRounds::widest() const {
  std::lock_guard lock(mu_);
  return widest_;
}

void ThreadRounds::Wait(Session* s) {
  std::unique_lock lock(mu_);
  s->waiting_ = true;
  waiters_.push_back(s);
  MaybeRun();
  cv_.wait(lock, [s] { return !s->waiting_; });
}

void ThreadRounds::MaybeRun() {
  if (waiters_.empty() || static_cast<int>(waiters_.size()) < live_) {
    return;
  }
  uint32_t round = waiters_.front()->round_;
  for (const Session* s : waiters_) {
    round = std::min(round, s->round_);
  }
  const uint32_t stride = executor::RowStrideFloats(shape_);
  // The sessions at that round, as many as the compute's batch holds; the others wait for the
  // next batch.
  std::vector<Session*> now;
  std::vector<Session*> later;
  uint32_t total = garbage_rows_;
  for (Session* s : waiters_) {
    if (s->round_ == round && total + s->rows_ <= compute_.max_batch_rows()) {
      now.push_back(s);
      total += s->rows_;
    } else {
      later.push_back(s);
    }
  }
  input_.resize(size_t{total} * shape_.input_row_floats);
  entries_.clear();
  if (garbage_rows_ > 0) {
    constexpr float kJunk[] = {NAN, INFINITY, -1e30F, 3.0F, -0.0F};
    for (size_t i = 0; i < size_t{garbage_rows_} * shape_.input_row_floats; ++i) {
      input_[i] = kJunk[i % 5];
    }
    entries_.push_back({.first_row = 0,
                        .rows = garbage_rows_,
                        .kind = executor::RowKind::kPrefill,
                        .output = garbage_out_.data(),
                        .output_stride_floats = stride});
  }
  uint32_t first = garbage_rows_;
  for (Session* s : now) {
    for (uint32_t r = 0; r < s->rows_; ++r) {
      std::memcpy(input_.data() + size_t{first + r} * shape_.input_row_floats, s->row(r),
                  sizeof(float) * shape_.input_row_floats);
    }
    entries_.push_back({.first_row = first,
                        .rows = s->rows_,
                        .kind = s->kind_,
                        .step_flags = s->flags_,
                        .output = s->payload_.data(),
                        .output_stride_floats = stride});
    first += s->rows_;
  }
  compute_.Run({.round = round,
                .final_round = round + 1 == shape_.rounds,
                .entries = entries_,
                .total_rows = total,
                .input = input_.data()},
               pool_);
  ++batches_;
  widest_ = std::max(widest_, static_cast<uint32_t>(now.size()));
  for (Session* s : now) {
    s->waiting_ = false;
  }
  waiters_ = std::move(later);
  cv_.notify_all();
}

}  // namespace cellhouse::engine
