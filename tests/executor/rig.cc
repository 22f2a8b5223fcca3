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

using executor::RowKind;
using executor::SlotClient;
using executor::SlotOutcome;

float InitialInput(uint32_t seed, uint32_t step, uint32_t row, uint32_t i) {
  return static_cast<float>((seed * 31 + step * 17 + row * 7 + i) % 23) * 0.25F - 2.75F;
}

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

namespace {

// One fake session's state: the rows of the current step and the worker's own answer to them.
class FakeSession {
 public:
  FakeSession(SlotClient& client, const SessionPlan& plan)
      : client_(client),
        plan_(plan),
        shape_(plan.shape),
        x_(size_t{shape_.max_rows} * shape_.input_row_floats),
        expected_(std::max<size_t>(size_t{shape_.max_rows} * shape_.output_row_floats,
                                   shape_.final_floats)) {}

  SessionResult Run() {
    for (uint32_t step = 0; step < plan_.steps; ++step) {
      BeginStep(step);
      const uint32_t last_round = flags_ != 0 ? shape_.rounds - 2 : shape_.rounds - 1;
      for (uint32_t round = 0; round <= last_round; ++round) {
        ComputeLocally(round);
        if (client_.active()) ExchangeAndCompare(round);
        if (!client_.active() && result_.failover_step == kNoFailover) {
          // The step restarts from round 0 on the worker's own path (here: the same values).
          result_.failover_step = step;
          result_.failover_reason = static_cast<uint32_t>(client_.failover_reason());
        }
        if (!Final(round)) NextInput();
        if (plan_.after_round) plan_.after_round(step, round, client_);
      }
      ++result_.steps_done;
    }
    if (plan_.idle_at_end && client_.active()) client_.Idle();
    return result_;
  }

 private:
  bool Final(uint32_t round) const { return round + 1 == shape_.rounds; }
  float* X(uint32_t r) { return &x_[size_t{r} * shape_.input_row_floats]; }
  float* Expected(uint32_t r) { return &expected_[size_t{r} * shape_.output_row_floats]; }

  void BeginStep(uint32_t step) {
    const bool prefill = plan_.prefill && step % 3 == 1;
    rows_ = prefill ? 1 + (plan_.seed + step) % shape_.max_rows : 1;
    kind_ = prefill ? RowKind::kPrefill : RowKind::kDecode;
    flags_ = prefill && step % 2 == 0 ? executor::kStepSkipsFinal : 0;
    for (uint32_t r = 0; r < rows_; ++r) {
      for (uint32_t i = 0; i < shape_.input_row_floats; ++i) {
        X(r)[i] = InitialInput(plan_.seed, step, r, i);
      }
    }
  }

  // What failover runs, and the reference for every answer.
  void ComputeLocally(uint32_t round) {
    if (Final(round)) {
      FakeFinalOutput(shape_, X(rows_ - 1), expected_.data());
      return;
    }
    for (uint32_t r = 0; r < rows_; ++r) FakeRowOutput(shape_, round, X(r), Expected(r));
  }

  void ExchangeAndCompare(uint32_t round) {
    for (uint32_t r = 0; r < rows_; ++r) {
      std::memcpy(client_.row(r), X(r), shape_.input_row_floats * sizeof(float));
    }
    const int64_t start = MonotonicNanos();
    const SlotOutcome outcome = client_.Exchange(round, rows_, kind_, flags_);
    result_.max_exchange_ns = std::max(result_.max_exchange_ns, MonotonicNanos() - start);
    if (outcome != SlotOutcome::kOk) return;
    ++result_.exchanges;
    if (Final(round)) {
      const size_t bytes = shape_.final_floats * sizeof(float);
      result_.mismatches += std::memcmp(client_.final_output(), expected_.data(), bytes) != 0;
      return;
    }
    for (uint32_t r = 0; r < rows_; ++r) {
      const size_t bytes = shape_.output_row_floats * sizeof(float);
      result_.mismatches += std::memcmp(client_.row(r), Expected(r), bytes) != 0;
    }
  }

  void NextInput() {
    const uint32_t out = shape_.output_row_floats;
    for (uint32_t r = 0; r < rows_; ++r) {
      for (uint32_t i = 0; i < shape_.input_row_floats; ++i) {
        X(r)[i] = Expected(r)[(i * 3) % out] * 0.0625F;
      }
    }
  }

  SlotClient& client_;
  const SessionPlan& plan_;
  const executor::SlotShape& shape_;
  std::vector<float> x_;
  std::vector<float> expected_;
  uint32_t rows_ = 1;
  RowKind kind_ = RowKind::kDecode;
  uint32_t flags_ = 0;
  SessionResult result_;
};

}  // namespace

SessionResult RunFakeSession(SlotClient& client, const SessionPlan& plan) {
  return FakeSession(client, plan).Run();
}

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
    while (stop->load(std::memory_order_acquire) == 0) {
      const executor::FutexWaiter waiter{stop, 0};
      (*loop)->RunOnce({&waiter, 1}, MonotonicNanos() + 50 * kNanosPerMilli);
      record();
    }
    // One last turn without sleeping: a message a worker sent just before the stop (a Leave, say)
    // is taken even if the stop woke the loop first.
    (*loop)->RunOnce({}, MonotonicNanos());
    record();
    for (const executor::SlotUsage& u : (*loop)->Usage()) {
      if (u.slot_id < kRigMaxSlots) {
        summary.late[u.slot_id] = u.late;
        summary.slot_rows[u.slot_id] = u.rows;
      }
    }
    summary.batches = (*loop)->totals().batches;
    summary.rows = (*loop)->totals().rows;
    summary.cut_short = (*loop)->totals().gathers_cut_short;
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

ExecutorSummary ExecutorRig::StopExecutor() {
  auto* stop = reinterpret_cast<std::atomic<uint32_t>*>(stop_.mutable_data());
  stop->store(1, std::memory_order_release);
  executor::FutexWake(stop);
  std::optional<ExecutorSummary> summary = ReadStruct<ExecutorSummary>(executor_pipe_.get());
  auto st = executor_.Wait();
  EXPECT_TRUE(st && st->Success()) << (st ? st->ToString() : st.error().message());
  EXPECT_TRUE(summary) << "the executor ended without a summary";
  return summary.value_or(ExecutorSummary{});
}

}  // namespace cellhouse::testing
