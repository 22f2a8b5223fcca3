#include "executor/thread_pool.h"

#include <sched.h>

#include <cerrno>

#include "base/str_cat.h"
#include "executor/futex.h"

namespace cellhouse::executor {

int CpusAllowed() {
  cpu_set_t set;
  CPU_ZERO(&set);
  if (::sched_getaffinity(0, sizeof(set), &set) != 0) return 1;
  int n = CPU_COUNT(&set);
  return n > 0 ? n : 1;
}

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
  shared_.fn = fn;
  shared_.context = context;
  shared_.pending.store(static_cast<uint32_t>(threads_.size()), std::memory_order_relaxed);
  shared_.generation.fetch_add(1, std::memory_order_acq_rel);  // publishes fn and context
  FutexWake(&shared_.generation, 1 << 30);
  fn(context, 0, parts());
  for (;;) {
    uint32_t left = shared_.pending.load(std::memory_order_acquire);
    if (left == 0) break;
    FutexWaitOne(&shared_.pending, left, -1);
  }
}

void* ThreadPool::ThreadMain(void* arg) {
  const ThreadStart start = *static_cast<ThreadStart*>(arg);
  Shared& s = *start.shared;
  uint32_t seen = 0;
  for (;;) {
    uint32_t now;
    while ((now = s.generation.load(std::memory_order_acquire)) == seen) {
      FutexWaitOne(&s.generation, seen, -1);
    }
    seen = now;
    if (s.stop.load(std::memory_order_acquire)) return nullptr;
    s.fn(s.context, start.part, s.parts);
    if (s.pending.fetch_sub(1, std::memory_order_acq_rel) == 1) FutexWake(&s.pending);
  }
}

}  // namespace cellhouse::executor
