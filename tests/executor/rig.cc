#include "tests/executor/rig.h"

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

SessionResult RunFakeSession(SlotClient& client, const SessionPlan& plan) {
  const executor::SlotShape& shape = plan.shape;
  const uint32_t in_floats = shape.input_row_floats;
  const uint32_t out_floats = shape.output_row_floats;
  std::vector<float> x(size_t{shape.max_rows} * in_floats);
  std::vector<float> expected(
      std::max<size_t>(size_t{shape.max_rows} * out_floats, shape.final_floats));
  SessionResult result;
  for (uint32_t step = 0; step < plan.steps; ++step) {
    const bool prefill = plan.prefill && step % 3 == 1;
    const uint32_t rows = prefill ? 1 + (plan.seed + step) % shape.max_rows : 1;
    const RowKind kind = prefill ? RowKind::kPrefill : RowKind::kDecode;
    const uint32_t flags = prefill && step % 2 == 0 ? executor::kStepSkipsFinal : 0;
    const uint32_t last_round = flags != 0 ? shape.rounds - 2 : shape.rounds - 1;
    for (uint32_t r = 0; r < rows; ++r) {
      for (uint32_t i = 0; i < in_floats; ++i) {
        x[size_t{r} * in_floats + i] = InitialInput(plan.seed, step, r, i);
      }
    }
    for (uint32_t round = 0; round <= last_round; ++round) {
      const bool final = round + 1 == shape.rounds;
      // The local computation: what failover runs, and the reference for every answer.
      if (final) {
        FakeFinalOutput(shape, &x[size_t{rows - 1} * in_floats], expected.data());
      } else {
        for (uint32_t r = 0; r < rows; ++r) {
          FakeRowOutput(shape, round, &x[size_t{r} * in_floats], &expected[size_t{r} * out_floats]);
        }
      }
      if (client.active()) {
        for (uint32_t r = 0; r < rows; ++r) {
          std::memcpy(client.row(r), &x[size_t{r} * in_floats], in_floats * sizeof(float));
        }
        const int64_t start = MonotonicNanos();
        const SlotOutcome outcome = client.Exchange(round, rows, kind, flags);
        result.max_exchange_ns = std::max(result.max_exchange_ns, MonotonicNanos() - start);
        if (outcome == SlotOutcome::kOk) {
          ++result.exchanges;
          if (final) {
            if (std::memcmp(client.final_output(), expected.data(),
                            shape.final_floats * sizeof(float)) != 0) {
              ++result.mismatches;
            }
          } else {
            for (uint32_t r = 0; r < rows; ++r) {
              if (std::memcmp(client.row(r), &expected[size_t{r} * out_floats],
                              out_floats * sizeof(float)) != 0) {
                ++result.mismatches;
              }
            }
          }
        }
      }
      if (!client.active() && result.failover_step == kNoFailover) {
        // The step restarts from round 0 on the worker's own path (here: the same values).
        result.failover_step = step;
        result.failover_reason = static_cast<uint32_t>(client.failover_reason());
      }
      if (!final) {
        for (uint32_t r = 0; r < rows; ++r) {
          for (uint32_t i = 0; i < in_floats; ++i) {
            x[size_t{r} * in_floats + i] =
                expected[size_t{r} * out_floats + (i * 3) % out_floats] * 0.0625F;
          }
        }
      }
      if (plan.after_round) plan.after_round(step, round, client);
    }
    ++result.steps_done;
  }
  if (plan.idle_at_end && client.active()) client.Idle();
  return result;
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
      static_cast<void>((*loop)->AddSlot(i, UniqueFd(::dup(slots_[i].fd().get()))));
    }
    while (stop->load(std::memory_order_acquire) == 0) {
      const executor::FutexWaiter waiter{stop, 0};
      (*loop)->RunOnce({&waiter, 1}, MonotonicNanos() + 50 * kNanosPerMilli);
      record();
    }
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

void ExecutorRig::StartWorker(int slot, std::function<SessionResult(executor::SlotClient&)> body,
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
