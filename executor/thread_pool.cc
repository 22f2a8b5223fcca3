#include "executor/thread_pool.h"

#include <immintrin.h>
#include <sched.h>

#include <cerrno>

#include "base/clock.h"
#include "base/str_cat.h"
#include "executor/futex.h"

namespace cellhouse::executor {

namespace {

// Spins up to ThreadPool::kSpinNs until ready() holds; says whether it does.
template <typename Ready>
bool SpinUntil(Ready ready) {
  // The clock is read every 64 pauses: a pause is tens of cycles, the clock (vDSO) about as many.
  const int64_t until = MonotonicNanos() + ThreadPool::kSpinNs;
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      if (ready()) return true;
      _mm_pause();
    }
    if (MonotonicNanos() >= until) return ready();
  }
}

}  // namespace

Result<std::unique_ptr<ThreadPool>> ThreadPool::Start(int threads) {
  if (threads < 1 || threads > 1024) {
    return Error(StrCat("thread pool: ", threads, " threads (1 to 1024)"));
  }
  std::unique_ptr<ThreadPool> pool(new ThreadPool());
  pool->shared_.parts = threads;
  pool->starts_.resize(static_cast<size_t>(threads - 1));
  pool->threads_.reserve(static_cast<size_t>(threads - 1));
  for (int part = 1; part < threads; ++part) {
    ThreadStart& start = pool->starts_[static_cast<size_t>(part - 1)];
    start = {&pool->shared_, part};
    pthread_t thread;
    int err = ::pthread_create(&thread, nullptr, &ThreadMain, &start);
    if (err != 0) {
      pool->shared_.parts = static_cast<int>(pool->threads_.size()) + 1;
      return Error::FromErrno(err, StrCat("starting executor thread ", part, " of ", threads));
    }
    pool->threads_.push_back(thread);
  }
  return pool;
}

ThreadPool::~ThreadPool() {
  shared_.stop.store(true, std::memory_order_release);
  shared_.generation.fetch_add(1, std::memory_order_acq_rel);
  FutexWake(&shared_.generation, 1 << 30);
  for (pthread_t t : threads_) ::pthread_join(t, nullptr);
}

void ThreadPool::Run(PartFn fn, void* context) {
  if (threads_.empty()) {
    fn(context, 0, 1);
    return;
  }
  shared_.resting.store(false, std::memory_order_relaxed);
  shared_.fn = fn;
  shared_.context = context;
  shared_.pending.store(static_cast<uint32_t>(threads_.size()), std::memory_order_relaxed);
  // Sequentially consistent: a thread that counts itself parked after this bump finds the new
  // generation in its futex call; one counted before is woken.
  shared_.generation.fetch_add(1, std::memory_order_seq_cst);  // publishes fn and context
  if (shared_.parked.load(std::memory_order_seq_cst) != 0) FutexWake(&shared_.generation, 1 << 30);
  fn(context, 0, parts());
  auto done = [this] { return shared_.pending.load(std::memory_order_acquire) == 0; };
  if (SpinUntil(done)) return;
  for (;;) {
    shared_.caller_parked.store(1, std::memory_order_seq_cst);
    const uint32_t left = shared_.pending.load(std::memory_order_seq_cst);
    if (left == 0) break;
    FutexWaitOne(&shared_.pending, left, -1);
  }
  shared_.caller_parked.store(0, std::memory_order_relaxed);
}

void* ThreadPool::ThreadMain(void* arg) {
  const ThreadStart start = *static_cast<ThreadStart*>(arg);
  Shared& s = *start.shared;
  uint32_t seen = 0;
  for (;;) {
    auto dispatched = [&] { return s.generation.load(std::memory_order_acquire) != seen; };
    auto resting = [&] { return s.resting.load(std::memory_order_acquire); };
    if (!SpinUntil([&] { return dispatched() || resting(); }) || !dispatched()) {
      s.parked.fetch_add(1, std::memory_order_seq_cst);
      while (s.generation.load(std::memory_order_seq_cst) == seen) {
        FutexWaitOne(&s.generation, seen, -1);
      }
      s.parked.fetch_sub(1, std::memory_order_relaxed);
    }
    seen = s.generation.load(std::memory_order_acquire);
    if (s.stop.load(std::memory_order_acquire)) return nullptr;
    s.fn(s.context, start.part, s.parts);
    // The same handshake as the dispatch's: the caller parks only after counting itself.
    if (s.pending.fetch_sub(1, std::memory_order_seq_cst) == 1 &&
        s.caller_parked.load(std::memory_order_seq_cst) != 0) {
      FutexWake(&s.pending);
    }
  }
}

}  // namespace cellhouse::executor
