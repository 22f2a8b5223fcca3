#include "supervisor/executor_slots.h"

namespace cellhouse::supervisor {
namespace {

// How much a cumulative counter moved; a counter that went backwards (a lying or restarted
// executor) moved by nothing, and `now` becomes the new baseline.
uint64_t Moved(uint64_t before, uint64_t now) { return now >= before ? now - before : 0; }

}  // namespace

std::optional<uint64_t> ExecutorSlots::Reserve(const std::string& session_id,
                                               const std::string& policy) {
  if (records_.size() >= capacity_) return std::nullopt;
  const uint64_t id = next_id_++;
  Record record;
  record.session_id = session_id;
  record.policy = policy;
  record.last.set_slot_id(id);
  records_.emplace(id, std::move(record));
  return id;
}

void ExecutorSlots::Forget(uint64_t slot_id) { records_.erase(slot_id); }

void ExecutorSlots::Detach(uint64_t slot_id) {
  auto it = records_.find(slot_id);
  if (it != records_.end()) it->second.session_id.clear();
}

std::vector<std::string> ExecutorSlots::Reset() {
  std::vector<std::string> sessions;
  for (const auto& [id, record] : records_) {
    if (!record.session_id.empty()) sessions.push_back(record.session_id);
  }
  records_.clear();
  last_totals_.Clear();
  return sessions;
}

SlotDelta ExecutorSlots::Advance(uint64_t slot_id, Record& record,
                                 const executor_ipc::SlotUsage& now) {
  const executor_ipc::SlotUsage& was = record.last;
  SlotDelta d;
  d.slot_id = slot_id;
  d.session_id = record.session_id;
  d.policy = record.policy;
  d.rounds = Moved(was.rounds(), now.rounds());
  d.rows = Moved(was.rows(), now.rows());
  d.steps = Moved(was.steps(), now.steps());
  d.late = Moved(was.late(), now.late());
  d.cpu_ns = Moved(was.cpu_ns(), now.cpu_ns());
  d.paused_ns = Moved(was.paused_ns(), now.paused_ns());
  record.last = now;
  return d;
}

ReportDigest ExecutorSlots::Apply(const executor_ipc::ExecutorReport& report) {
  ReportDigest digest;
  auto add = [&digest](const SlotDelta& d) {
    if (d.rounds | d.rows | d.steps | d.late | d.cpu_ns | d.paused_ns) digest.deltas.push_back(d);
  };
  for (const executor_ipc::SlotUsage& usage : report.slots()) {
    auto it = records_.find(usage.slot_id());
    if (it == records_.end()) continue;  // not one celld handed out, or gone already
    add(Advance(usage.slot_id(), it->second, usage));
  }
  for (const executor_ipc::SlotEvent& event : report.events()) {
    auto it = records_.find(event.slot_id());
    if (it == records_.end()) continue;
    SlotNews news;
    news.slot_id = event.slot_id();
    news.session_id = it->second.session_id;
    news.policy = it->second.policy;
    news.kind = event.kind();
    news.detail = event.detail();
    if (event.kind() != executor_ipc::SlotEvent::ATTACHED) {
      // Gone from the executor: its final counters, then the record.
      if (event.has_usage() && event.usage().slot_id() == event.slot_id()) {
        add(Advance(event.slot_id(), it->second, event.usage()));
      }
      records_.erase(it);
    }
    digest.events.push_back(std::move(news));
  }
  digest.batches = Moved(last_totals_.batches(), report.batches());
  digest.rows = Moved(last_totals_.rows(), report.rows());
  digest.cpu_ns = Moved(last_totals_.cpu_ns(), report.cpu_ns());
  digest.gathers_cut_short = Moved(last_totals_.gathers_cut_short(), report.gathers_cut_short());
  for (size_t i = 0; i < kExecutorBatchRowsBuckets; ++i) {
    const int index = static_cast<int>(i);
    const uint64_t before =
        index < last_totals_.batch_rows_buckets_size() ? last_totals_.batch_rows_buckets(index) : 0;
    const uint64_t now =
        index < report.batch_rows_buckets_size() ? report.batch_rows_buckets(index) : 0;
    digest.batch_rows[i] = Moved(before, now);
  }
  digest.threads = report.threads();
  digest.slots_in_use = report.slots_in_use();
  // The totals to measure the next report against (the per-slot parts are kept in records_).
  last_totals_ = report;
  last_totals_.clear_slots();
  last_totals_.clear_events();
  return digest;
}

}  // namespace cellhouse::supervisor
