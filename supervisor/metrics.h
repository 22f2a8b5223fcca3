// celld's metrics, rendered in the Prometheus text exposition format (version 0.0.4): prefix
// cellhouse_, base units (seconds, bytes), counters end in _total, and never a session id as a
// label (unbounded cardinality; per-session detail is `cellctl sessions`).
//
//   Metrics m;
//   m.sessions_started.Inc({"default"});
//   m.open_latency.Observe(0.0012);
//   std::string text = m.Render(gauges);   // what a scrape of /metrics returns
#ifndef CELLHOUSE_SUPERVISOR_METRICS_H_
#define CELLHOUSE_SUPERVISOR_METRICS_H_

#include <cstdint>
#include <map>
#include <string>
#include <vector>

namespace cellhouse::supervisor {

class LabeledCounter {
 public:
  // `scale`: what one unit counted is in the rendered unit (1e-9 counts nanoseconds and renders
  // seconds, the base unit).
  LabeledCounter(std::string name, std::string help, std::vector<std::string> label_names,
                 double scale = 1.0)
      : name_(std::move(name)),
        help_(std::move(help)),
        label_names_(std::move(label_names)),
        scale_(scale) {}
  void Inc(const std::vector<std::string>& labels, uint64_t by = 1) { values_[labels] += by; }
  uint64_t Get(const std::vector<std::string>& labels) const;
  void Render(std::string* out) const;

 private:
  std::string name_;
  std::string help_;
  std::vector<std::string> label_names_;
  double scale_;
  std::map<std::vector<std::string>, uint64_t> values_;
};

class Histogram {
 public:
  Histogram(std::string name, std::string help, std::vector<double> bounds);
  void Observe(double value);
  uint64_t count() const { return count_; }
  void Render(std::string* out) const;

 private:
  std::string name_;
  std::string help_;
  std::vector<double> bounds_;
  std::vector<uint64_t> buckets_;  // per bound, not cumulative; rendered cumulative
  double sum_ = 0;
  uint64_t count_ = 0;
};

// Values celld computes at scrape time.
struct GaugeSnapshot {
  std::map<std::string, uint64_t> sessions_active;      // by policy
  std::map<std::string, uint64_t> policy_memory_bytes;  // charged to sessions, by policy
  uint64_t weights_mapped_bytes = 0;
  uint64_t weights_resident_bytes = 0;
  uint64_t memory_budget_bytes = 0;
  uint64_t memory_committed_bytes = 0;
  uint64_t connections_pending = 0;
};

struct Metrics {
  LabeledCounter sessions_started{
      "cellhouse_sessions_started_total", "Sessions whose worker started, by policy.", {"policy"}};
  LabeledCounter sessions_ended{"cellhouse_sessions_ended_total",
                                "Sessions that ended, by policy and reason (closed, idle, oom, "
                                "seccomp, limit, killed, error).",
                                {"policy", "reason"}};
  LabeledCounter admission_refusals{"cellhouse_admission_refusals_total",
                                    "Session opens refused before a worker was started, by "
                                    "reason.",
                                    {"reason"}};
  LabeledCounter tokens_generated{"cellhouse_tokens_generated_total",
                                  "Tokens generated, as reported by workers, by policy.",
                                  {"policy"}};
  LabeledCounter seccomp_violations{"cellhouse_seccomp_violations_total",
                                    "Workers killed by their seccomp filter, by system call.",
                                    {"syscall"}};
  LabeledCounter worker_reports_dropped{"cellhouse_worker_reports_dropped_total",
                                        "Worker messages celld refused as implausible, by kind.",
                                        {"kind"}};
  LabeledCounter executor_rows{"cellhouse_executor_rows_total",
                               "Rows the shared executor computed for sessions, by policy.",
                               {"policy"}};
  LabeledCounter executor_cpu{"cellhouse_executor_cpu_seconds_total",
                              "The shared executor's CPU time, shared out by rows, by policy.",
                              {"policy"},
                              1e-9};
  LabeledCounter executor_batches{
      "cellhouse_executor_batches_total", "Batches the shared executors ran.", {}};
  LabeledCounter executor_gathers_cut_short{
      "cellhouse_executor_gathers_cut_short_total",
      "Batches the shared executors ran without a session that was expected but late.",
      {}};
  LabeledCounter executor_late{"cellhouse_executor_late_total",
                               "Batches that went on without a session of the policy because it "
                               "was late (its worker slow, stopped or starved of CPU), by policy.",
                               {"policy"}};
  LabeledCounter executor_slot_events{"cellhouse_executor_slot_events_total",
                                      "Executor slot events (attached, refused, left, timed_out, "
                                      "violation, removed).",
                                      {"kind"}};
  LabeledCounter executor_pauses{"cellhouse_executor_pauses_total",
                                 "Executor slots paused for using more than their policy's CPU "
                                 "quota, by policy.",
                                 {"policy"}};
  LabeledCounter executor_exits{"cellhouse_executor_exits_total",
                                "Shared executors that ended, by reason (stopped, silent, "
                                "seccomp, oom, killed, crashed, exited, spawn_failed).",
                                {"reason"}};
  Histogram open_latency{"cellhouse_session_open_duration_seconds",
                         "From accepting an open request to the worker being ready.",
                         {0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5}};
  Histogram time_to_first_token{"cellhouse_time_to_first_token_seconds",
                                "Time to first token per generation, reported by workers.",
                                {0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30}};
  Histogram inter_token_latency{"cellhouse_inter_token_latency_seconds",
                                "Time between consecutive tokens, reported by workers.",
                                {0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1}};

  std::string Render(const GaugeSnapshot& gauges, const std::string& version) const;
};

// Escapes a label value for the text format (backslash, double quote, newline).
std::string EscapeLabelValue(const std::string& value);

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_METRICS_H_
