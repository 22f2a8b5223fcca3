// Time as the project uses it: monotonic nanoseconds. Code that makes decisions on time (idle
// timeouts, heartbeats) takes a Clock so tests can step it instead of sleeping.
//
//   RealClock clock;
//   int64_t start = clock.NowNanos();
#ifndef CELLHOUSE_BASE_CLOCK_H_
#define CELLHOUSE_BASE_CLOCK_H_

#include <time.h>

#include <cstdint>

namespace cellhouse {

inline constexpr int64_t kNanosPerMilli = 1'000'000;
inline constexpr int64_t kNanosPerSecond = 1'000'000'000;

// CLOCK_MONOTONIC in nanoseconds (vDSO: no system call, allowed under any seccomp filter).
inline int64_t MonotonicNanos() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

// The calling thread's CPU time (CLOCK_THREAD_CPUTIME_ID) in nanoseconds: what a benchmark on a
// shared machine times, since the wall clock also counts the time other processes held the core.
inline int64_t ThreadCpuNanos() {
  timespec ts{};
  clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
  return static_cast<int64_t>(ts.tv_sec) * kNanosPerSecond + ts.tv_nsec;
}

// ThreadCpuNanos in seconds.
inline double ThreadCpuSeconds() { return static_cast<double>(ThreadCpuNanos()) / 1e9; }

class Clock {
 public:
  virtual ~Clock() = default;
  virtual int64_t NowNanos() const = 0;
};

class RealClock final : public Clock {
 public:
  int64_t NowNanos() const override { return MonotonicNanos(); }
};

// A clock that moves only when told; for tests.
class FakeClock final : public Clock {
 public:
  explicit FakeClock(int64_t start = 0) : now_(start) {}
  int64_t NowNanos() const override { return now_; }
  void Advance(int64_t nanos) { now_ += nanos; }

 private:
  int64_t now_;
};

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_CLOCK_H_
