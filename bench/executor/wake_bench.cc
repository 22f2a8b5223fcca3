// wake_bench: the measurement behind the executor's choice of wake-up mechanism
// (docs/EXECUTOR.md, "Synchronisation"). N worker processes and one executor (this process)
// exchange rounds as the shared executor does: each worker announces its round, the executor
// waits until every worker has, answers them all, and the workers wait for the answer. Two
// mechanisms, same protocol:
//
//   futex    a request and a response word per slot in shared memory; workers FUTEX_WAKE the
//            request word and FUTEX_WAIT on the response; the executor waits on every pending
//            request word at once with futex_waitv(2) and finds the ready ones by reading memory
//   eventfd  a request and a response eventfd per slot; the executor waits in epoll_wait(2) on
//            every request eventfd, reads each ready one, and writes each response eventfd
//
//   build/bin/wake_bench [--slots 1,4,16,64] [--rounds 3000] [--work-us 0,20] [--quick]
//
// Each worker may spin --work-us microseconds per round (its attention), so that with 64 slots
// dozens of processes are runnable at once on a small machine. Prints wall time per round and
// CPU time per round (executor, and all workers together, minus their spinning). Figures only.
#include <linux/futex.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/mman.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdio>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "bench/sessions/bench_common.h"
#include "executor/futex.h"

namespace cellhouse::bench {
namespace {

using executor::FutexWaiter;

struct alignas(64) SharedSlot {
  std::atomic<uint32_t> request{0};
  alignas(32) std::atomic<uint32_t> response{0};
};

enum class Mechanism { kFutex, kEventfd };

struct Config {
  Mechanism mechanism = Mechanism::kFutex;
  int slots = 1;
  int64_t rounds = 3000;
  int64_t work_ns = 0;
};

struct Figures {
  double wall_us_per_round = 0;
  double executor_cpu_us_per_round = 0;
  double worker_cpu_us_per_slot_round = 0;  // without the spinning
};

void Spin(int64_t ns) {
  if (ns <= 0) return;
  int64_t end = MonotonicNanos() + ns;
  while (MonotonicNanos() < end) {
  }
}

int64_t CpuNanos(int who) {
  rusage u{};
  ::getrusage(who, &u);
  auto ns = [](const timeval& t) {
    return static_cast<int64_t>(t.tv_sec) * kNanosPerSecond + t.tv_usec * 1000;
  };
  return ns(u.ru_utime) + ns(u.ru_stime);
}

// ---- futex ----

[[noreturn]] void FutexWorker(SharedSlot* slot, const Config& c) {
  for (uint32_t seq = 1; seq <= static_cast<uint32_t>(c.rounds); ++seq) {
    Spin(c.work_ns);
    slot->request.store(seq, std::memory_order_release);
    executor::FutexWake(&slot->request);
    uint32_t seen;
    while ((seen = slot->response.load(std::memory_order_acquire)) != seq) {
      executor::FutexWaitOne(&slot->response, seen, -1);
    }
  }
  ::_exit(0);
}

void FutexExecutor(SharedSlot* slots, const Config& c) {
  std::vector<FutexWaiter> waiting;
  for (uint32_t seq = 1; seq <= static_cast<uint32_t>(c.rounds); ++seq) {
    for (;;) {
      waiting.clear();
      for (int i = 0; i < c.slots; ++i) {
        uint32_t r = slots[i].request.load(std::memory_order_acquire);
        if (r != seq) waiting.push_back({&slots[i].request, r});
      }
      if (waiting.empty()) break;
      executor::FutexWaitAny(waiting, -1);
    }
    for (int i = 0; i < c.slots; ++i) {
      slots[i].response.store(seq, std::memory_order_release);
      executor::FutexWake(&slots[i].response);
    }
  }
}

// ---- eventfd ----

struct EventSlot {
  UniqueFd request;
  UniqueFd response;
};

[[noreturn]] void EventfdWorker(const EventSlot& slot, const Config& c) {
  for (int64_t round = 0; round < c.rounds; ++round) {
    Spin(c.work_ns);
    uint64_t one = 1;
    if (::write(slot.request.get(), &one, sizeof(one)) != sizeof(one)) ::_exit(1);
    uint64_t got = 0;
    if (::read(slot.response.get(), &got, sizeof(got)) != sizeof(got)) ::_exit(1);
  }
  ::_exit(0);
}

void EventfdExecutor(std::vector<EventSlot>& slots, int epoll, const Config& c) {
  epoll_event events[128];
  for (int64_t round = 0; round < c.rounds; ++round) {
    int ready = 0;
    while (ready < c.slots) {
      int n = ::epoll_wait(epoll, events, 128, -1);
      for (int e = 0; e < n; ++e) {
        uint64_t got = 0;
        if (::read(slots[events[e].data.u32].request.get(), &got, sizeof(got)) == sizeof(got)) {
          ++ready;
        }
      }
    }
    for (EventSlot& s : slots) {
      uint64_t one = 1;
      if (::write(s.response.get(), &one, sizeof(one)) != sizeof(one)) return;
    }
  }
}

Result<Figures> Measure(const Config& c) {
  const size_t bytes = sizeof(SharedSlot) * static_cast<size_t>(c.slots);
  void* shared = ::mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  if (shared == MAP_FAILED) return Error::FromErrno(errno, "mmap of the shared slots");
  auto* slots = new (shared) SharedSlot[static_cast<size_t>(c.slots)];
  std::vector<EventSlot> events(static_cast<size_t>(c.slots));
  UniqueFd epoll(::epoll_create1(EPOLL_CLOEXEC));
  for (int i = 0; i < c.slots && c.mechanism == Mechanism::kEventfd; ++i) {
    events[i].request.reset(::eventfd(0, EFD_CLOEXEC));
    events[i].response.reset(::eventfd(0, EFD_CLOEXEC));
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u32 = static_cast<uint32_t>(i);
    if (!events[i].request || !events[i].response ||
        ::epoll_ctl(epoll.get(), EPOLL_CTL_ADD, events[i].request.get(), &ev) != 0) {
      return Error::FromErrno(errno, "eventfd/epoll set-up");
    }
  }
  const int64_t children_cpu_before = CpuNanos(RUSAGE_CHILDREN);
  std::vector<pid_t> pids;
  for (int i = 0; i < c.slots; ++i) {
    pid_t pid = ::fork();
    if (pid < 0) return Error::FromErrno(errno, "fork");
    if (pid == 0) {
      if (c.mechanism == Mechanism::kFutex) FutexWorker(&slots[i], c);
      EventfdWorker(events[i], c);
    }
    pids.push_back(pid);
  }
  const int64_t self_cpu_before = CpuNanos(RUSAGE_SELF);
  const int64_t start = MonotonicNanos();
  if (c.mechanism == Mechanism::kFutex) {
    FutexExecutor(slots, c);
  } else {
    EventfdExecutor(events, epoll.get(), c);
  }
  const int64_t wall = MonotonicNanos() - start;
  const int64_t self_cpu = CpuNanos(RUSAGE_SELF) - self_cpu_before;
  for (pid_t pid : pids) ::waitpid(pid, nullptr, 0);
  const int64_t workers_cpu = CpuNanos(RUSAGE_CHILDREN) - children_cpu_before;
  ::munmap(shared, bytes);
  Figures f;
  const auto rounds = static_cast<double>(c.rounds);
  f.wall_us_per_round = static_cast<double>(wall) / rounds / 1e3;
  f.executor_cpu_us_per_round = static_cast<double>(self_cpu) / rounds / 1e3;
  f.worker_cpu_us_per_slot_round =
      (static_cast<double>(workers_cpu) / rounds / c.slots - static_cast<double>(c.work_ns)) / 1e3;
  return f;
}

Result<std::vector<int64_t>> ParseList(const std::string& text) {
  std::vector<int64_t> out;
  for (std::string_view part : Split(text, ',')) {
    Result<int64_t> v = ParseInt64(part, "a list element");
    if (!v || *v < 0) return Error("'" + text + "' is not a list of non-negative numbers");
    out.push_back(*v);
  }
  return out;
}

int Main(int argc, char** argv) {
  BenchFlags common;
  std::string slots_text = "1,4,16,64", work_text = "0,20";
  int64_t rounds = 3000;
  FlagSet flags("wake_bench [--slots 1,4,16,64] [--rounds N] [--work-us 0,20] [--quick]",
                "Round trips between one executor and N worker processes, with futex_waitv and "
                "with eventfds in one epoll set. Prints figures; asserts nothing about time.");
  AddBenchFlags(flags, &common);
  flags.String("slots", &slots_text, "LIST", "worker counts (default 1,4,16,64)");
  flags.String("work-us", &work_text, "LIST", "microseconds each worker spins per round");
  flags.Int("rounds", &rounds, "N", "rounds per measurement (default 3000; --quick 500)");
  if (std::optional<int> done = ParseBenchFlags(flags, "wake_bench", argc, argv)) return *done;
  if (common.quick && !flags.IsSet("rounds")) rounds = 500;
  auto slot_counts = ParseList(slots_text);
  auto works = ParseList(work_text);
  if (!slot_counts || !works || rounds < 1) {
    Printf(stderr, "wake_bench: bad --slots, --work-us or --rounds\n");
    return 2;
  }
  Printf(stdout, "wake_bench: %lld rounds per row, %ld CPUs online\n",
         static_cast<long long>(rounds), ::sysconf(_SC_NPROCESSORS_ONLN));
  Table table({"mechanism", "slots", "work us", "wall us/round", "executor cpu us/round",
               "worker cpu us/slot-round"});
  for (int64_t work : *works) {
    for (int64_t n : *slot_counts) {
      for (Mechanism m : {Mechanism::kFutex, Mechanism::kEventfd}) {
        Config c{
            .mechanism = m, .slots = static_cast<int>(n), .rounds = rounds, .work_ns = work * 1000};
        Result<Figures> f = Measure(c);
        if (!f) {
          Printf(stderr, "wake_bench: %s\n", f.error().message().c_str());
          return 1;
        }
        table.AddRow({m == Mechanism::kFutex ? "futex_waitv" : "eventfd+epoll", std::to_string(n),
                      std::to_string(work), Format("%.1f", f->wall_us_per_round),
                      Format("%.1f", f->executor_cpu_us_per_round),
                      Format("%.1f", f->worker_cpu_us_per_slot_round)});
      }
    }
  }
  table.Print(stdout);
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
