// Futexes on shared memory (futex(2), futex_waitv(2)): how a worker and the executor wake each
// other without busy-waiting. Every word here lives in a MAP_SHARED mapping seen by two
// processes, so none of these calls use FUTEX_PRIVATE_FLAG (the kernel keys a shared futex by
// the page and offset, not by the address).
//
//   std::atomic<uint32_t>& word = header->request;
//   word.store(seq, std::memory_order_release);
//   FutexWake(&word);
//   ...
//   FutexWaitResult r = FutexWaitAny(words, deadline_ns);   // up to kFutexWaitMax words
//
// No function allocates; all are async-signal-safe system call wrappers.
#ifndef CELLHOUSE_EXECUTOR_FUTEX_H_
#define CELLHOUSE_EXECUTOR_FUTEX_H_

#include <atomic>
#include <cstdint>
#include <span>

namespace cellhouse::executor {

// FUTEX_WAITV_MAX: the kernel refuses more words in one futex_waitv call.
inline constexpr size_t kFutexWaitMax = 128;

// One word to wait on: sleep while *word == expected.
struct FutexWaiter {
  const std::atomic<uint32_t>* word = nullptr;
  uint32_t expected = 0;
};

enum class FutexWaitResult {
  kWoken,     // woken, or a word no longer held its expected value (EAGAIN): look again
  kTimedOut,  // the deadline passed
  kError,     // an argument the kernel refused (a bug): errno says which
};

// Wakes up to `count` waiters of `word` (FUTEX_WAKE). Returns how many were woken.
int FutexWake(std::atomic<uint32_t>* word, int count = 1);

// Sleeps until one of `waiters` is woken or changed, or CLOCK_MONOTONIC passes `deadline_ns`
// (negative: no deadline). At most kFutexWaitMax waiters (futex_waitv(2)). A signal that
// interrupts the wait returns kWoken: callers re-examine state on every return anyway.
FutexWaitResult FutexWaitAny(std::span<const FutexWaiter> waiters, int64_t deadline_ns);

// The same for one word with the older FUTEX_WAIT_BITSET (absolute CLOCK_MONOTONIC deadline),
// which any seccomp list that allows `futex` permits.
FutexWaitResult FutexWaitOne(const std::atomic<uint32_t>* word, uint32_t expected,
                             int64_t deadline_ns);

}  // namespace cellhouse::executor

#endif  // CELLHOUSE_EXECUTOR_FUTEX_H_
