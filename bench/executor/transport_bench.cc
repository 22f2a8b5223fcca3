// transport_bench: the shared executor's transport alone — slots, the batch loop, the workers'
// SlotClient — with a compute that only writes its outputs, so what is timed is what a layer-step
// costs besides the arithmetic: copying rows in and out, waking and being woken.
//
//   build/bin/transport_bench [--slots 1,4,16,64] [--steps 100] [--work-us 0] [--quick]
//
// One executor process (threads = CPUs) and N worker processes, none sandboxed. Each worker runs
// `steps` decode steps of a 110m-shaped slot (13 rounds: 12 layers and the classifier; rows of
// 1536 floats in, 3072 out, 32000 logits), spinning --work-us per round for its attention, and
// times every exchange (send → answer). Prints, per slot count: the round-trip latency per
// layer-step (p50, p99 over all exchanges of all workers), exchanges per second for all workers
// together, and how many slots the executor batched on average. Figures only.
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/mapping.h"
#include "base/print.h"
#include "base/process.h"
#include "base/strings.h"
#include "bench/sessions/bench_common.h"
#include "executor/batch_loop.h"
#include "executor/compute.h"
#include "executor/futex.h"
#include "executor/slot_client.h"
#include "executor/slot_memory.h"
#include "executor/thread_pool.h"

namespace cellhouse::bench {
namespace {

using executor::SlotShape;

constexpr SlotShape kShape{.max_rows = 16,
                           .rounds = 13,
                           .input_row_floats = 1536,
                           .output_row_floats = 3072,
                           .final_floats = 32000};

// Writes every output (as the real compute does) and computes nothing.
class CopyCompute final : public executor::StepCompute {
 public:
  SlotShape shape() const override { return kShape; }
  void Run(const executor::Batch& batch, executor::ThreadPool& pool) override {
    pool.ForEachPart([&](int part, int parts) {
      auto [begin, end] =
          executor::PartRange(static_cast<int64_t>(batch.entries.size()), part, parts);
      for (int64_t e = begin; e < end; ++e) {
        const executor::BatchEntry& entry = batch.entries[static_cast<size_t>(e)];
        const float* in = batch.input + size_t{entry.first_row} * kShape.input_row_floats;
        if (batch.final_round) {
          std::fill_n(entry.output, kShape.final_floats, in[0]);
          continue;
        }
        for (uint32_t r = 0; r < entry.rows; ++r) {
          float* out = entry.output + size_t{r} * entry.output_stride_floats;
          std::memcpy(out, in + size_t{r} * kShape.input_row_floats,
                      kShape.input_row_floats * sizeof(float));
          std::memcpy(out + kShape.input_row_floats, in + size_t{r} * kShape.input_row_floats,
                      (kShape.output_row_floats - kShape.input_row_floats) * sizeof(float));
        }
      }
    });
  }
};

struct ExecutorFigures {
  uint64_t batches = 0;
  uint64_t rows = 0;
};

void Spin(int64_t ns) {
  const int64_t end = MonotonicNanos() + ns;
  while (ns > 0 && MonotonicNanos() < end) {
  }
}

[[noreturn]] void ExecutorChild(std::vector<executor::SlotMemory>& slots,
                                std::atomic<uint32_t>* stop, int pipe) {
  CopyCompute compute;
  auto pool = executor::ThreadPool::Start(cellhouse::CpusAllowed());
  if (!pool) ::_exit(2);
  auto loop = executor::BatchLoop::Create(compute, **pool, executor::ExecutorOptions{});
  if (!loop || !(*loop)->RegisterLiveness()) ::_exit(3);
  for (size_t i = 0; i < slots.size(); ++i) {
    UniqueFd copy(::fcntl(slots[i].fd().get(), F_DUPFD_CLOEXEC, 0));
    if (!(*loop)->AddSlot(i, std::move(copy))) ::_exit(4);
  }
  while (stop->load(std::memory_order_acquire) == 0) {
    const executor::FutexWaiter waiter{stop, 0};
    if (!(*loop)->RunOnce({&waiter, 1}, -1)) ::_exit(6);  // its sleep failed
  }
  ExecutorFigures f{(*loop)->totals().batches, (*loop)->totals().rows};
  if (::write(pipe, &f, sizeof(f)) != sizeof(f)) ::_exit(5);
  ::_exit(0);
}

[[noreturn]] void WorkerChild(executor::WorkerSlot slot, int64_t steps, int64_t work_ns, int pipe) {
  executor::SlotClient client(slot);
  std::vector<float> samples;
  samples.reserve(static_cast<size_t>(steps) * kShape.rounds);
  for (int64_t step = 0; step < steps; ++step) {
    for (uint32_t round = 0; round < kShape.rounds; ++round) {
      Spin(work_ns);
      std::fill_n(client.row(0), kShape.input_row_floats, static_cast<float>(step));
      const int64_t start = MonotonicNanos();
      if (client.Exchange(round, 1, executor::RowKind::kDecode) != executor::SlotOutcome::kOk) {
        ::_exit(6);
      }
      samples.push_back(static_cast<float>(MonotonicNanos() - start));
    }
  }
  client.Idle();
  const uint64_t n = samples.size();
  if (::write(pipe, &n, sizeof(n)) != sizeof(n)) ::_exit(5);
  if (!WriteFull(pipe, std::as_bytes(std::span<const float>(samples)), "samples")) ::_exit(5);
  ::_exit(0);
}

struct Row {
  int slots = 0;
  Summary latency_us;
  double exchanges_per_second = 0;
  double slots_per_batch = 0;
};

Result<Row> Measure(int slot_count, int64_t steps, int64_t work_ns) {
  std::vector<executor::SlotMemory> slots;
  for (int i = 0; i < slot_count; ++i) {
    CH_ASSIGN_OR_RETURN(executor::SlotMemory slot, executor::SlotMemory::Create(kShape));
    slots.push_back(std::move(slot));
  }
  CH_ASSIGN_OR_RETURN(Mapping stop_page, Mapping::AnonymousShared(4096, "the stop word"));
  auto* stop = reinterpret_cast<std::atomic<uint32_t>*>(stop_page.mutable_data());
  CH_ASSIGN_OR_RETURN(FdPair exec_pipe, MakePipe());
  pid_t executor = ::fork();
  if (executor < 0) return Error::FromErrno(errno, "fork");
  if (executor == 0) ExecutorChild(slots, stop, exec_pipe.second.get());
  exec_pipe.second.reset();
  std::vector<pid_t> workers;
  std::vector<UniqueFd> pipes;
  const int64_t start = MonotonicNanos();
  for (int i = 0; i < slot_count; ++i) {
    CH_ASSIGN_OR_RETURN(FdPair pipe, MakePipe());
    pid_t pid = ::fork();
    if (pid < 0) return Error::FromErrno(errno, "fork");
    if (pid == 0) {
      WorkerChild(slots[static_cast<size_t>(i)].worker_view(), steps, work_ns, pipe.second.get());
    }
    workers.push_back(pid);
    pipes.push_back(std::move(pipe.first));
  }
  std::vector<double> samples;
  for (size_t i = 0; i < workers.size(); ++i) {
    uint64_t n = 0;
    CH_RETURN_IF_ERROR(
        ReadFull(pipes[i].get(), std::as_writable_bytes(std::span<uint64_t>(&n, 1)), "count"));
    std::vector<float> mine(n);
    CH_RETURN_IF_ERROR(
        ReadFull(pipes[i].get(), std::as_writable_bytes(std::span<float>(mine)), "samples"));
    int status = 0;
    ::waitpid(workers[i], &status, 0);
    if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
      return Error("a worker failed (status " + std::to_string(status) + ")");
    }
    for (float s : mine) samples.push_back(s / 1e3);
  }
  const int64_t wall = MonotonicNanos() - start;
  stop->store(1, std::memory_order_release);
  executor::FutexWake(stop);
  ExecutorFigures f;
  CH_RETURN_IF_ERROR(ReadFull(
      exec_pipe.first.get(), std::as_writable_bytes(std::span<ExecutorFigures>(&f, 1)), "figures"));
  ::waitpid(executor, nullptr, 0);
  Row row;
  row.slots = slot_count;
  row.exchanges_per_second =
      static_cast<double>(samples.size()) / (static_cast<double>(wall) / 1e9);
  row.slots_per_batch =
      f.batches > 0 ? static_cast<double>(f.rows) / static_cast<double>(f.batches) : 0;
  row.latency_us = Summarize(std::move(samples));
  return row;
}

int Main(int argc, char** argv) {
  BenchFlags common;
  std::string slots_text = "1,4,16,64";
  int64_t steps = 100;
  int64_t work_us = 0;
  FlagSet flags("transport_bench [--slots 1,4,16,64] [--steps N] [--work-us N] [--quick]",
                "Round-trip latency per layer-step of the shared executor's transport, with a "
                "compute that only writes its outputs. Prints figures; asserts nothing.");
  AddBenchFlags(flags, &common);
  flags.String("slots", &slots_text, "LIST", "worker counts (default 1,4,16,64)");
  flags.Int("steps", &steps, "N", "decode steps per worker (default 100; --quick 20)");
  flags.Int("work-us", &work_us, "N", "microseconds each worker spins per round (attention)");
  if (std::optional<int> done = ParseBenchFlags(flags, "transport_bench", argc, argv)) {
    return *done;
  }
  if (common.quick && !flags.IsSet("steps")) steps = 20;
  std::vector<int> counts;
  for (std::string_view part : Split(slots_text, ',')) {
    Result<int64_t> n = ParseInt64(part, "--slots");
    if (!n || *n < 1 || *n > 127) {
      Printf(stderr, "transport_bench: --slots takes numbers from 1 to 127\n");
      return 2;
    }
    counts.push_back(static_cast<int>(*n));
  }
  if (steps < 1 || work_us < 0) {
    Printf(stderr, "transport_bench: --steps must be positive, --work-us not negative\n");
    return 2;
  }
  Printf(stdout,
         "transport_bench: %lld decode steps x %u rounds per worker, slot of %llu bytes, "
         "%d executor threads, %lld us of work per round\n",
         static_cast<long long>(steps), kShape.rounds,
         static_cast<unsigned long long>(executor::SlotBytes(kShape)), cellhouse::CpusAllowed(),
         static_cast<long long>(work_us));
  Table table({"slots", "p50 us/round", "p99 us/round", "max us", "exchanges/s", "slots/batch"});
  for (int n : counts) {
    Result<Row> row = Measure(n, steps, work_us * 1000);
    if (!row) {
      Printf(stderr, "transport_bench: %s\n", row.error().message().c_str());
      return 1;
    }
    table.AddRow({std::to_string(n), Format("%.1f", row->latency_us.p50),
                  Format("%.1f", row->latency_us.p99), Format("%.0f", row->latency_us.max),
                  Format("%.0f", row->exchanges_per_second), Format("%.1f", row->slots_per_batch)});
  }
  table.Print(stdout);
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
