#include "tests/executor/rig.h"

#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <algorithm>
#include <cstring>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "executor/futex.h"
#include "executor/thread_pool.h"
#include "tests/executor/fake_compute.h"

namespace cellhouse::testing {
namespace {

void WriteAll(int fd, const void* data, size_t size) {
  ssize_t ignored = ::write(fd, data, size);
  static_cast<void>(ignored);
}

template <typename T>
std::optional<T> ReadStruct(int fd) {
  T value{};
  Status st = ReadFull(fd, std::as_writable_bytes(std::span<T>(&value, 1)), "a rig result");
  if (!st) return std::nullopt;
  return value;
}

}  // namespace

ExecutorRig::ExecutorRig(const executor::SlotShape& shape, const executor::ExecutorOptions& options,
                         int slots)
    : shape_(shape), options_(options) {
  EXPECT_LE(slots, kRigMaxSlots);
  for (int i = 0; i < slots; ++i) {
    auto slot = executor::SlotMemory::Create(shape);
    EXPECT_TRUE(slot) << slot.error().message();
    if (slot) slots_.push_back(std::move(*slot));
  }
  auto stop = Mapping::AnonymousShared(4096, "the rig's stop word");
  EXPECT_TRUE(stop);
  if (stop) stop_ = std::move(*stop);
  workers_.resize(slots_.size());
  worker_pipes_.resize(slots_.size());
}

ExecutorRig::~ExecutorRig() {
  // Whatever a failing test left running.
  for (ChildProcess& w : workers_) {
    if (w.valid() && !w.reaped()) {
      static_cast<void>(w.Kill(SIGKILL));
      static_cast<void>(w.Wait());
    }
  }
  if (executor_.valid() && !executor_.reaped()) {
    static_cast<void>(executor_.Kill(SIGKILL));
    static_cast<void>(executor_.Wait());
  }
}

void ExecutorRig::StartExecutor(int threads) {
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe);
  auto* stop = reinterpret_cast<std::atomic<uint32_t>*>(stop_.mutable_data());
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    pipe->first.reset();
    FakeCompute compute(shape_);
    auto pool = executor::ThreadPool::Start(threads);
    if (!pool) ::_exit(2);
    auto loop = executor::BatchLoop::Create(compute, **pool, options_);
    if (!loop || !(*loop)->RegisterLiveness()) ::_exit(3);
    ExecutorSummary summary;
    auto record = [&] {
      for (const executor::SlotEvent& e : (*loop)->TakeEvents()) {
        if (e.slot_id >= kRigMaxSlots) continue;
        summary.events[e.slot_id] |= 1U << static_cast<unsigned>(e.kind);
        if (e.kind != executor::SlotEvent::Kind::kAttached &&
            e.kind != executor::SlotEvent::Kind::kRefused) {
          summary.late[e.slot_id] = e.usage.late;
          summary.slot_rows[e.slot_id] = e.usage.rows;
        }
      }
    };
    for (size_t i = 0; i < slots_.size(); ++i) {
      static_cast<void>(
          (*loop)->AddSlot(i, UniqueFd(::fcntl(slots_[i].fd().get(), F_DUPFD_CLOEXEC, 0))));
    }
    uint32_t pauses_seen = 0;
    while (stop->load(std::memory_order_acquire) == 0) {
      const uint32_t pauses = stop[1].load(std::memory_order_acquire);
      if (pauses != pauses_seen) {
        pauses_seen = pauses;
        const int64_t duration = (int64_t{stop[4].load()} << 32) | stop[3].load();
        (*loop)->PauseSlot(stop[2].load(), MonotonicNanos() + duration);
      }
      const executor::FutexWaiter waiters[2] = {{stop, 0}, {&stop[1], pauses_seen}};
      if (!(*loop)->RunOnce(waiters, MonotonicNanos() + 50 * kNanosPerMilli)) {
        summary.wait_failed = true;
        break;
      }
      record();
    }
    // One last turn without sleeping: a message a worker sent just before the stop (a Leave, say)
    // is taken even if the stop woke the loop first.
    if (!(*loop)->RunOnce({}, MonotonicNanos())) summary.wait_failed = true;
    record();
    for (const executor::SlotUsage& u : (*loop)->Usage()) {
      if (u.slot_id < kRigMaxSlots) {
        summary.late[u.slot_id] = u.late;
        summary.slot_rows[u.slot_id] = u.rows;
        summary.slot_paused_ns[u.slot_id] = u.paused_ns;
      }
    }
    summary.batches = (*loop)->totals().batches;
    summary.rows = (*loop)->totals().rows;
    summary.cut_short = (*loop)->totals().gathers_cut_short;
    summary.sleeps = (*loop)->totals().sleeps;
    summary.naps = (*loop)->totals().naps;
    WriteAll(pipe->second.get(), &summary, sizeof(summary));
    ::_exit(0);
  }
  pipe->second.reset();
  executor_pipe_ = std::move(pipe->first);
  auto child = ChildProcess::FromPid(pid);
  ASSERT_TRUE(child);
  executor_ = std::move(*child);
}

void ExecutorRig::StartWorker(int slot,
                              const std::function<SessionResult(executor::SlotClient&)>& body,
                              executor::SlotClientOptions client_options) {
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe);
  const executor::WorkerSlot view = slots_[static_cast<size_t>(slot)].worker_view();
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    pipe->first.reset();
    executor::SlotClient client(view, client_options);
    SessionResult result = body(client);
    WriteAll(pipe->second.get(), &result, sizeof(result));
    ::_exit(0);
  }
  pipe->second.reset();
  worker_pipes_[static_cast<size_t>(slot)] = std::move(pipe->first);
  auto child = ChildProcess::FromPid(pid);
  ASSERT_TRUE(child);
  workers_[static_cast<size_t>(slot)] = std::move(*child);
}

SessionResult ExecutorRig::WaitWorker(int slot) {
  std::optional<SessionResult> result =
      ReadStruct<SessionResult>(worker_pipes_[static_cast<size_t>(slot)].get());
  auto st = workers_[static_cast<size_t>(slot)].Wait();
  EXPECT_TRUE(st);
  EXPECT_TRUE(result) << "worker " << slot << " ended without a result"
                      << (st ? " (" + st->ToString() + ")" : "");
  return result.value_or(SessionResult{});
}

void ExecutorRig::PauseSlot(int slot, int64_t duration_ns) {
  auto* words = reinterpret_cast<std::atomic<uint32_t>*>(stop_.mutable_data());
  words[2].store(static_cast<uint32_t>(slot));
  words[3].store(static_cast<uint32_t>(duration_ns & 0xffffffff));
  words[4].store(static_cast<uint32_t>(duration_ns >> 32));
  words[1].fetch_add(1, std::memory_order_release);
  executor::FutexWake(&words[1]);
}

ExecutorSummary ExecutorRig::StopExecutor() {
  auto* stop = reinterpret_cast<std::atomic<uint32_t>*>(stop_.mutable_data());
  stop->store(1, std::memory_order_release);
  executor::FutexWake(stop);
  std::optional<ExecutorSummary> summary = ReadStruct<ExecutorSummary>(executor_pipe_.get());
  auto st = executor_.Wait();
  EXPECT_TRUE(st && st->Success()) << (st ? st->ToString() : st.error().message());
  EXPECT_TRUE(summary) << "the executor ended without a summary";
  EXPECT_FALSE(summary && summary->wait_failed) << "the executor's loop could not sleep";
  return summary.value_or(ExecutorSummary{});
}

}  // namespace cellhouse::testing
