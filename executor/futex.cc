#include "executor/futex.h"

#include <linux/futex.h>
#include <sys/syscall.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>

#include "base/clock.h"

namespace cellhouse::executor {
namespace {

static_assert(sizeof(std::atomic<uint32_t>) == sizeof(uint32_t) &&
                  std::atomic<uint32_t>::is_always_lock_free,
              "a futex word is a plain 32-bit integer in memory");

timespec ToTimespec(int64_t ns) {
  return timespec{static_cast<time_t>(ns / kNanosPerSecond),
                  static_cast<long>(ns % kNanosPerSecond)};
}

FutexWaitResult FromReturn(long rc) {
  if (rc >= 0) return FutexWaitResult::kWoken;
  switch (errno) {
    case EAGAIN:
    case EINTR:
      return FutexWaitResult::kWoken;
    case ETIMEDOUT:
      return FutexWaitResult::kTimedOut;
    default:
      return FutexWaitResult::kError;
  }
}

}  // namespace

int FutexWake(std::atomic<uint32_t>* word, int count) {
  long rc = ::syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE, count, nullptr,
                      nullptr, 0);
  return rc < 0 ? 0 : static_cast<int>(rc);
}

FutexWaitResult FutexWaitAny(std::span<const FutexWaiter> waiters, int64_t deadline_ns) {
  if (waiters.empty() || waiters.size() > kFutexWaitMax) {
    errno = EINVAL;
    return FutexWaitResult::kError;
  }
  futex_waitv v[kFutexWaitMax] = {};
  for (size_t i = 0; i < waiters.size(); ++i) {
    v[i].val = waiters[i].expected;
    v[i].uaddr = reinterpret_cast<uint64_t>(waiters[i].word);
    v[i].flags = FUTEX_32;  // shared: no FUTEX2_PRIVATE
  }
  timespec deadline = ToTimespec(deadline_ns);
  long rc = ::syscall(SYS_futex_waitv, v, static_cast<unsigned>(waiters.size()), 0,
                      deadline_ns < 0 ? nullptr : &deadline, CLOCK_MONOTONIC);
  return FromReturn(rc);
}

FutexWaitResult FutexWaitOne(const std::atomic<uint32_t>* word, uint32_t expected,
                             int64_t deadline_ns) {
  timespec deadline = ToTimespec(deadline_ns);
  // FUTEX_WAIT_BITSET takes an absolute CLOCK_MONOTONIC time; FUTEX_WAIT a relative one.
  long rc =
      ::syscall(SYS_futex, reinterpret_cast<const uint32_t*>(word), FUTEX_WAIT_BITSET, expected,
                deadline_ns < 0 ? nullptr : &deadline, nullptr, FUTEX_BITSET_MATCH_ANY);
  return FromReturn(rc);
}

}  // namespace cellhouse::executor
