// Sessions on threads of one process sharing one GgufStepCompute: an in-process stand-in for the
// executor's batch loop (executor/batch_loop.h), without slots, sandbox or timeouts. The tests
// use it to check batch invariance and the benchmarks to measure what batching the rounds gains
// before any process boundary.
//
//   ThreadRounds rounds(*compute, *pool, /*sessions=*/16);
//   // on each session's thread:
//   ThreadRounds::Session mine(rounds);
//   ForwardGgufRounds(weights, isa, state, tokens, pos, mine, nullptr);
//   ...
//   rounds.Done();                     // this session sends no more rounds
//
// A batch runs when every live session waits, over those at the lowest round waited for (a
// prompt's chunk that skips its last round, or a session a step ahead, waits for the next
// batch). With `garbage_rows`, every batch also carries that many rows of NaNs, infinities and
// huge values, as a hostile neighbour would send.
#ifndef CELLHOUSE_ENGINE_THREAD_ROUNDS_H_
#define CELLHOUSE_ENGINE_THREAD_ROUNDS_H_

#include <condition_variable>
#include <cstdint>
#include <mutex>
#include <vector>

#include "engine/executor_compute.h"
#include "engine/executor_rounds.h"
#include "executor/thread_pool.h"

namespace cellhouse::engine {

class ThreadRounds {
 public:
  ThreadRounds(GgufStepCompute& compute, executor::ThreadPool& pool, int sessions,
               uint32_t garbage_rows = 0);
  ThreadRounds(const ThreadRounds&) = delete;
  ThreadRounds& operator=(const ThreadRounds&) = delete;

  class Session final : public StepTransport {
   public:
    explicit Session(ThreadRounds& rounds);
    const executor::SlotShape& shape() const override { return payload_.shape(); }
    float* row(uint32_t r) override { return payload_.row(r); }
    const float* final_output() const override { return payload_.data(); }
    bool Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                  uint32_t step_flags) override;

   private:
    friend class ThreadRounds;
    ThreadRounds& rounds_;
    PayloadRows payload_;
    bool waiting_ = false;
    uint32_t round_ = 0;
    uint32_t rows_ = 0;
    executor::RowKind kind_ = executor::RowKind::kDecode;
    uint32_t flags_ = 0;
  };

  // A session ends: batches no longer wait for it.
  void Done();

  uint64_t batches() const;
  // The most sessions one batch held.
  uint32_t widest() const;

 private:
  void Wait(Session* s);
  // With mu_ held: runs a batch if every live session waits.
  void MaybeRun();

  GgufStepCompute& compute_;
  executor::ThreadPool& pool_;
  const executor::SlotShape shape_;
  const uint32_t garbage_rows_;
  mutable std::mutex mu_;
  std::condition_variable cv_;
  std::vector<Session*> waiters_;
  int live_;
  uint64_t batches_ = 0;
  uint32_t widest_ = 0;
  // Reused from batch to batch.
  std::vector<float> input_;
  std::vector<float> garbage_out_;
  std::vector<executor::BatchEntry> entries_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_THREAD_ROUNDS_H_
