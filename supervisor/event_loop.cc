#include "supervisor/event_loop.h"

#include <signal.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <unistd.h>

#include <cerrno>
#include <vector>

namespace cellhouse::supervisor {
namespace {
// Tokens below this are reserved for the loop's own descriptors.
constexpr uint64_t kTimerToken = 0;
constexpr uint64_t kSignalToken = ~uint64_t{0};
}  // namespace

Result<std::unique_ptr<EventLoop>> EventLoop::Create(const Clock& clock) {
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  if (!epoll.valid()) return Error::FromErrno(errno, "epoll_create1");
  UniqueFd timer(::timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK));
  if (!timer.valid()) return Error::FromErrno(errno, "timerfd_create");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kTimerToken;
  if (::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, timer.get(), &ev) != 0) {
    return Error::FromErrno(errno, "epoll_ctl(ADD timerfd)");
  }
  return std::unique_ptr<EventLoop>(new EventLoop(clock, std::move(epoll), std::move(timer)));
}

EventLoop::~EventLoop() = default;

Status EventLoop::Add(int fd, uint32_t events, FdCallback callback) {
  if (by_fd_.count(fd) != 0) return Error("event loop: fd " + std::to_string(fd) + " is watched");
  uint64_t token = next_token_++;
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = token;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd, &ev) != 0) {
    return Error::FromErrno(errno, "epoll_ctl(ADD fd " + std::to_string(fd) + ")");
  }
  by_token_.emplace(token, Watch{fd, std::move(callback)});
  by_fd_.emplace(fd, token);
  return Ok();
}

Status EventLoop::Modify(int fd, uint32_t events) {
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return Error("event loop: fd " + std::to_string(fd) + " not watched");
  epoll_event ev{};
  ev.events = events;
  ev.data.u64 = it->second;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev) != 0) {
    return Error::FromErrno(errno, "epoll_ctl(MOD fd " + std::to_string(fd) + ")");
  }
  return Ok();
}

void EventLoop::Remove(int fd) {
  auto it = by_fd_.find(fd);
  if (it == by_fd_.end()) return;
  // Failure means the fd is already gone from the set (e.g. closed); nothing else to undo.
  static_cast<void>(::epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr));
  by_token_.erase(it->second);
  by_fd_.erase(it);
}

TimerId EventLoop::AddTimer(int64_t deadline_ns, TimerCallback callback) {
  TimerId id = next_timer_++;
  deadlines_.emplace(deadline_ns, id);
  timers_.emplace(id, std::make_pair(deadline_ns, std::move(callback)));
  return id;
}

void EventLoop::CancelTimer(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return;
  auto range = deadlines_.equal_range(it->second.first);
  for (auto d = range.first; d != range.second; ++d) {
    if (d->second == id) {
      deadlines_.erase(d);
      break;
    }
  }
  timers_.erase(it);
}

Status EventLoop::HandleSignals(std::initializer_list<int> signals, SignalCallback callback) {
  sigset_t set;
  sigemptyset(&set);
  for (int s : signals) sigaddset(&set, s);
  int err = ::pthread_sigmask(SIG_BLOCK, &set, nullptr);
  if (err != 0) return Error::FromErrno(err, "pthread_sigmask");
  UniqueFd fd(::signalfd(-1, &set, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd.valid()) return Error::FromErrno(errno, "signalfd");
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.u64 = kSignalToken;
  if (::epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, fd.get(), &ev) != 0) {
    return Error::FromErrno(errno, "epoll_ctl(ADD signalfd)");
  }
  signal_fd_ = std::move(fd);
  signal_callback_ = std::move(callback);
  return Ok();
}

Status EventLoop::ArmTimerFd() {
  int64_t next = deadlines_.empty() ? 0 : deadlines_.begin()->first;
  if (next == armed_for_) return Ok();
  itimerspec spec{};
  if (next != 0) {
    // The injected clock may differ from CLOCK_MONOTONIC (tests); arm relative to it.
    int64_t delta = std::max<int64_t>(next - clock_.NowNanos(), 1);
    spec.it_value.tv_sec = delta / kNanosPerSecond;
    spec.it_value.tv_nsec = delta % kNanosPerSecond;
  }
  if (::timerfd_settime(timer_.get(), 0, &spec, nullptr) != 0) {
    return Error::FromErrno(errno, "timerfd_settime");
  }
  armed_for_ = next;
  return Ok();
}

void EventLoop::RunDueTimers() {
  int64_t now = clock_.NowNanos();
  while (!deadlines_.empty() && deadlines_.begin()->first <= now) {
    TimerId id = deadlines_.begin()->second;
    deadlines_.erase(deadlines_.begin());
    auto it = timers_.find(id);
    if (it == timers_.end()) continue;
    TimerCallback callback = std::move(it->second.second);
    timers_.erase(it);
    callback();
  }
}

Status EventLoop::RunOnce(int max_wait_ms) {
  RunDueTimers();
  CH_RETURN_IF_ERROR(ArmTimerFd());
  epoll_event events[64];
  int n = ::epoll_wait(epoll_.get(), events, 64, max_wait_ms);
  if (n < 0) {
    if (errno == EINTR) return Ok();
    return Error::FromErrno(errno, "epoll_wait");
  }
  for (int i = 0; i < n; ++i) {
    uint64_t token = events[i].data.u64;
    if (token == kTimerToken) {
      uint64_t expirations = 0;
      ssize_t r = ::read(timer_.get(), &expirations, sizeof(expirations));
      static_cast<void>(r);
      armed_for_ = -1;
      continue;
    }
    if (token == kSignalToken) {
      signalfd_siginfo info{};
      while (::read(signal_fd_.get(), &info, sizeof(info)) == sizeof(info)) {
        if (signal_callback_) signal_callback_(static_cast<int>(info.ssi_signo));
      }
      continue;
    }
    auto it = by_token_.find(token);
    if (it == by_token_.end()) continue;  // removed by an earlier callback in this batch
    // Copy: the callback may remove its own registration.
    FdCallback callback = it->second.callback;
    callback(events[i].events);
  }
  RunDueTimers();
  return ArmTimerFd();
}

}  // namespace cellhouse::supervisor
