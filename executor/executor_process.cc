#include "executor/executor_process.h"

#include <algorithm>
#include <utility>
#include <vector>

#include "base/clock.h"
#include "base/io.h"
#include "base/process.h"
#include "ipc/executor.pb.h"
#include "ipc/packet.h"

namespace cellhouse::executor {
namespace {

// How often the executor looks at celld's channel when nothing else wakes it.
constexpr int64_t kHousekeepingNs = 100 * kNanosPerMilli;

void FillUsage(const SlotUsage& u, executor_ipc::SlotUsage* out) {
  out->set_slot_id(u.slot_id);
  out->set_rounds(u.rounds);
  out->set_rows(u.rows);
  out->set_steps(u.steps);
  out->set_cpu_ns(static_cast<uint64_t>(u.cpu_ns));
  out->set_late(u.late);
  out->set_paused_ns(static_cast<uint64_t>(std::max<int64_t>(u.paused_ns, 0)));
}

executor_ipc::SlotEvent::Kind KindOf(SlotEvent::Kind kind) {
  switch (kind) {
    case SlotEvent::Kind::kAttached:
      return executor_ipc::SlotEvent::ATTACHED;
    case SlotEvent::Kind::kRefused:
      return executor_ipc::SlotEvent::REFUSED;
    case SlotEvent::Kind::kLeft:
      return executor_ipc::SlotEvent::LEFT;
    case SlotEvent::Kind::kTimedOut:
      return executor_ipc::SlotEvent::TIMED_OUT;
    case SlotEvent::Kind::kViolation:
      return executor_ipc::SlotEvent::VIOLATION;
    case SlotEvent::Kind::kRemoved:
      return executor_ipc::SlotEvent::REMOVED;
  }
  return executor_ipc::SlotEvent::KIND_UNSPECIFIED;
}

class ExecutorProcess {
 public:
  ExecutorProcess(ExecutorChannels channels, const ExecutorOptions& options, BatchLoop& loop,
                  int threads)
      : channels_(std::move(channels)), options_(options), loop_(loop), threads_(threads) {}

  ExecutorExit Serve() {
    uint32_t bell = channels_.doorbell->load(std::memory_order_acquire);
    int64_t next_housekeeping = 0;
    int64_t next_report = MonotonicNanos() + options_.report_interval_ns;
    bool first = true;
    for (;;) {
      const uint32_t now_bell = channels_.doorbell->load(std::memory_order_acquire);
      if (first || now_bell != bell) {
        first = false;
        bell = now_bell;
        if (std::optional<ExecutorExit> exit = DrainZygote()) return *exit;
      }
      int64_t now = MonotonicNanos();
      if (now >= next_housekeeping) {
        if (std::optional<ExecutorExit> exit = DrainControl()) return *exit;
        next_housekeeping = now + kHousekeepingNs;
      }
      for (SlotEvent& e : loop_.TakeEvents()) events_.push_back(std::move(e));
      // A dropped slot is reported at once: celld ends a worker that broke the protocol.
      bool urgent = false;
      for (const SlotEvent& e : events_) urgent = urgent || e.kind != SlotEvent::Kind::kAttached;
      // After a failed send (celld not reading), wait for the next interval before trying again.
      if ((urgent && !report_failed_) || now >= next_report) {
        report_failed_ = !SendReport();
        next_report = now + options_.report_interval_ns;
      }
      const FutexWaiter doorbell{channels_.doorbell, bell};
      if (!loop_.RunOnce({&doorbell, 1}, std::min(next_housekeeping, next_report))) {
        return ExecutorExit::kWaitFailed;
      }
    }
  }

 private:
  std::optional<ExecutorExit> DrainZygote() {
    for (;;) {
      auto m = ipc::ReceiveMessage<executor_ipc::ExecutorCommand>(
          channels_.zygote.get(), {.max_bytes = 4096, .max_fds = 1, .nonblocking = true});
      if (!m) return ExecutorExit::kChannelError;
      if (m->end_of_stream) return ExecutorExit::kZygoteGone;
      if (m->would_block) return std::nullopt;
      if (!m->message.has_add_slot() || m->fds.size() != 1) return ExecutorExit::kChannelError;
      // A refused slot is an event for celld, not the end of the executor.
      static_cast<void>(loop_.AddSlot(m->message.add_slot().slot_id(), std::move(m->fds[0])));
    }
  }

  std::optional<ExecutorExit> DrainControl() {
    for (;;) {
      auto m = ipc::ReceiveMessage<executor_ipc::ExecutorControl>(
          channels_.control.get(), {.max_bytes = 4096, .max_fds = 0, .nonblocking = true});
      if (!m) return ExecutorExit::kChannelError;
      if (m->end_of_stream) return ExecutorExit::kSupervisorGone;
      if (m->would_block) return std::nullopt;
      if (m->message.has_stop()) return ExecutorExit::kStopped;
      if (m->message.has_remove_slot()) loop_.RemoveSlot(m->message.remove_slot().slot_id());
      if (m->message.has_pause_slot()) {
        const executor_ipc::PauseSlot& p = m->message.pause_slot();
        loop_.PauseSlot(p.slot_id(), MonotonicNanos() + int64_t{p.duration_ms()} * kNanosPerMilli);
      }
    }
  }

  bool SendReport() {
    executor_ipc::ExecutorReport report;
    for (const SlotUsage& u : loop_.Usage()) FillUsage(u, report.add_slots());
    for (const SlotEvent& e : events_) {
      executor_ipc::SlotEvent* out = report.add_events();
      out->set_slot_id(e.slot_id);
      out->set_kind(KindOf(e.kind));
      out->set_detail(e.detail);
      FillUsage(e.usage, out->mutable_usage());
    }
    const LoopTotals& t = loop_.totals();
    report.set_batches(t.batches);
    report.set_rows(t.rows);
    report.set_cpu_ns(static_cast<uint64_t>(t.cpu_ns));
    report.set_threads(static_cast<uint32_t>(threads_));
    report.set_slots_in_use(static_cast<uint32_t>(loop_.slot_count()));
    report.set_slot_capacity(static_cast<uint32_t>(loop_.slot_capacity()));
    report.set_gathers_cut_short(t.gathers_cut_short);
    report.set_gather_window_us(static_cast<uint64_t>(loop_.gather_window_ns() / 1000));
    for (uint64_t n : t.batch_rows) report.add_batch_rows_buckets(n);
    // Non-blocking: a celld that does not read loses reports, never the executor's time. Events
    // stay queued until one report carrying them went out.
    if (!ipc::SendMessage(channels_.control.get(), report)) return false;
    events_.clear();
    return true;
  }

  ExecutorChannels channels_;
  const ExecutorOptions options_;
  BatchLoop& loop_;
  const int threads_;
  std::vector<SlotEvent> events_;
  bool report_failed_ = false;
};

}  // namespace

ExecutorOptions OptionsFromSpec(const zygote::ExecutorSpec& spec) {
  ExecutorOptions o;
  if (spec.max_slots() != 0) o.max_slots = spec.max_slots();
  if (spec.threads() != 0) o.threads = static_cast<int>(spec.threads());
  if (spec.max_threads() != 0) o.max_threads = static_cast<int>(spec.max_threads());
  if (spec.gather_window_max_us() != 0) {
    o.gather_window_max_ns = int64_t{spec.gather_window_max_us()} * 1000;
    o.gather_window_min_ns = std::min(o.gather_window_min_ns, o.gather_window_max_ns);
  }
  if (spec.slot_timeout_ms() != 0) {
    o.slot_timeout_ns = int64_t{spec.slot_timeout_ms()} * kNanosPerMilli;
  }
  if (spec.report_interval_ms() != 0) {
    o.report_interval_ns = int64_t{spec.report_interval_ms()} * kNanosPerMilli;
  }
  if (spec.max_batch_rows() != 0) o.max_batch_rows = spec.max_batch_rows();
  if (spec.has_solo()) o.solo = spec.solo();
  return o;
}

int RunExecutor(ExecutorChannels channels, const ExecutorOptions& options, StepCompute& compute) {
  auto setup_failed = static_cast<int>(ExecutorExit::kSetupFailed);
  if (channels.doorbell == nullptr || !channels.control || !channels.zygote) return setup_failed;
  if (!SetNonBlocking(channels.control.get())) return setup_failed;
  // Its own CPUs, within what its sandbox's thread limits were sized for (celld counted its own
  // affinity, which may since have changed).
  const int threads = options.threads > 0       ? options.threads
                      : options.max_threads > 0 ? std::min(CpusAllowed(), options.max_threads)
                                                : CpusAllowed();
  Result<std::unique_ptr<ThreadPool>> pool = ThreadPool::Start(threads);
  if (!pool) return setup_failed;
  Result<std::unique_ptr<BatchLoop>> loop = BatchLoop::Create(compute, **pool, options);
  if (!loop || !(*loop)->RegisterLiveness()) return setup_failed;
  ExecutorProcess process(std::move(channels), options, **loop, threads);
  return static_cast<int>(process.Serve());
}

int RunExecutorWith(ExecutorChannels channels, const zygote::ExecutorSpec& spec,
                    const ComputeFactory& factory) {
  Result<std::unique_ptr<StepCompute>> compute = factory();
  if (!compute) return static_cast<int>(ExecutorExit::kSetupFailed);
  return RunExecutor(std::move(channels), OptionsFromSpec(spec), **compute);
}

}  // namespace cellhouse::executor
