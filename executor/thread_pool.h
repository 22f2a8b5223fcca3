// The executor's threads: one per CPU of its cpuset, parked on a futex between batches. A batch's
// compute splits its work into `parts()` parts, one per thread, the caller's thread doing part 0.
//
//   // CpusAllowed(): base/process.h
//   CH_ASSIGN_OR_RETURN(std::unique_ptr<ThreadPool> pool, ThreadPool::Start(CpusAllowed()));
//   pool->ForEachPart([&](int part, int parts) {
//     auto [begin, end] = PartRange(rows, part, parts);   // deterministic split
//     for (int64_t r = begin; r < end; ++r) ...
//   });
//
// Between dispatches a thread spins briefly (kSpinNs) before it parks, and a dispatch or the
// last part's end makes a futex call only for a thread that parked: the products of one round
// follow each other closer than a futex wake takes in a virtual machine, while between rounds
// (the workers' attention) the threads sleep.
//
// The split is static and by output: any split gives the same bits as long as each output
// element is computed by one thread with the same operations (see compute.h). Threads are
// started after the executor's seccomp filter is in place (it allows clone for threads only);
// waking and joining them takes only futex.
#ifndef CELLHOUSE_EXECUTOR_THREAD_POOL_H_
#define CELLHOUSE_EXECUTOR_THREAD_POOL_H_

#include <pthread.h>

#include <atomic>
#include <cstdint>
#include <memory>
#include <utility>
#include <vector>

#include "base/result.h"

namespace cellhouse::executor {

// [begin, end) of part `part` when `count` items are split into `parts` nearly equal parts.
inline std::pair<int64_t, int64_t> PartRange(int64_t count, int part, int parts) {
  return {count * part / parts, count * (part + 1) / parts};
}

class ThreadPool {
 public:
  // How long a thread waits for the next dispatch (or the caller for the last part) before it
  // parks on the futex.
  static constexpr int64_t kSpinNs = 50'000;

  // `threads` counts the caller: Start(1) starts no thread.
  static Result<std::unique_ptr<ThreadPool>> Start(int threads);
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;
  // Stops and joins the threads.
  ~ThreadPool();

  int parts() const { return static_cast<int>(threads_.size()) + 1; }

  // The dispatches are over for a while (a batch is done, the workers attend): the threads park
  // at once instead of spinning, leaving the CPUs to the workers. The next dispatch wakes them.
  void Rest() { shared_.resting.store(true, std::memory_order_release); }

  // Runs fn(part, parts()) once per part, part 0 on the calling thread; returns when all are done.
  template <typename F>
  void ForEachPart(F&& fn) {
    Run([](void* context, int part, int parts) { (*static_cast<F*>(context))(part, parts); }, &fn);
  }

 private:
  using PartFn = void (*)(void* context, int part, int parts);
  struct Shared {
    std::atomic<uint32_t> generation{0};     // futex: bumped once per Run (and to stop)
    std::atomic<uint32_t> pending{0};        // futex: parts still running
    std::atomic<uint32_t> parked{0};         // threads asleep (or about to be) on generation
    std::atomic<uint32_t> caller_parked{0};  // the caller is asleep (or about to be) on pending
    std::atomic<bool> stop{false};
    std::atomic<bool> resting{false};  // Rest() since the last dispatch: park, do not spin
    PartFn fn = nullptr;
    void* context = nullptr;
    int parts = 1;
  };
  struct ThreadStart {
    Shared* shared;
    int part;
  };

  ThreadPool() = default;
  void Run(PartFn fn, void* context);
  static void* ThreadMain(void* arg);

  Shared shared_;
  std::vector<ThreadStart> starts_;
  std::vector<pthread_t> threads_;
};

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_THREAD_POOL_H_
