// EventLoop: celld's single-threaded loop — epoll for descriptors, one timerfd armed to the
// earliest deadline for timers, signalfd for signals. Nothing in celld blocks outside RunOnce.
//
//   CH_ASSIGN_OR_RETURN(std::unique_ptr<EventLoop> loop, EventLoop::Create(clock));
//   CH_RETURN_IF_ERROR(loop->Add(listener.get(), EPOLLIN, [&](uint32_t) { Accept(); }));
//   TimerId t = loop->AddTimer(clock.NowNanos() + 5 * kNanosPerSecond, [&] { Expire(); });
//   CH_RETURN_IF_ERROR(loop->HandleSignals({SIGTERM, SIGHUP}, [&](int sig) { ... }));
//   while (!done) CH_RETURN_IF_ERROR(loop->RunOnce(-1));
//
// Callbacks may add or remove any descriptor or timer, including their own: events already
// fetched for a removed descriptor are dropped (each registration has its own token).
// Timers are checked against the injected Clock, so tests can step time (FakeClock) and call
// RunOnce(0).
#ifndef CELLHOUSE_SUPERVISOR_EVENT_LOOP_H_
#define CELLHOUSE_SUPERVISOR_EVENT_LOOP_H_

#include <sys/epoll.h>

#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <unordered_map>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::supervisor {

using TimerId = uint64_t;

class EventLoop {
 public:
  using FdCallback = std::function<void(uint32_t events)>;
  using TimerCallback = std::function<void()>;
  using SignalCallback = std::function<void(int signal)>;

  static Result<std::unique_ptr<EventLoop>> Create(const Clock& clock);
  EventLoop(const EventLoop&) = delete;
  EventLoop& operator=(const EventLoop&) = delete;
  ~EventLoop();

  // Watches `fd` (owned by the caller; Remove before closing it).
  Status Add(int fd, uint32_t events, FdCallback callback);
  Status Modify(int fd, uint32_t events);
  void Remove(int fd);
  bool Watching(int fd) const { return by_fd_.count(fd) != 0; }

  TimerId AddTimer(int64_t deadline_ns, TimerCallback callback);
  void CancelTimer(TimerId id);

  // Blocks `signals` (sigprocmask) and delivers them through a signalfd. Children started later
  // must unblock them (SpawnProgram does).
  Status HandleSignals(std::initializer_list<int> signals, SignalCallback callback);

  // Waits up to `max_wait_ms` (-1: until something happens, 0: poll), then runs every callback
  // that is due.
  Status RunOnce(int max_wait_ms);

  const Clock& clock() const { return clock_; }
  size_t watched() const { return by_fd_.size(); }
  size_t timers() const { return timers_.size(); }

 private:
  EventLoop(const Clock& clock, UniqueFd epoll, UniqueFd timer)
      : clock_(clock), epoll_(std::move(epoll)), timer_(std::move(timer)) {}
  Status ArmTimerFd();
  void RunDueTimers();

  struct Watch {
    int fd;
    FdCallback callback;
  };
  const Clock& clock_;
  UniqueFd epoll_;
  UniqueFd timer_;
  UniqueFd signal_fd_;
  SignalCallback signal_callback_;
  uint64_t next_token_ = 1;
  std::unordered_map<uint64_t, Watch> by_token_;
  std::unordered_map<int, uint64_t> by_fd_;
  TimerId next_timer_ = 1;
  std::multimap<int64_t, TimerId> deadlines_;
  std::unordered_map<TimerId, std::pair<int64_t, TimerCallback>> timers_;
  int64_t armed_for_ = -1;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_EVENT_LOOP_H_
