// Fairness for the shared executor (docs/EXECUTOR.md, "Accounting and fairness"): the CPU the
// executor spends on a session counts against the session's policy, as its own worker's CPU
// counts against its cgroup's cpu.max, so moving the matrix products out of the workers' cgroups
// does not let one tenant take the machine.
//
// Each session whose policy has a CPU quota (cgroup.cpu_max: `cpus` = quota / period CPUs) has a
// token bucket of executor CPU time, refilled at `cpus` seconds per second and holding at most
// `cpus` x window (the burst a session may take at once). The executor reports what it spent on
// each slot (its share of every batch, by rows); each report is charged. A session in debt is
// paused — its slot not served, neither run nor waited for by the others' batches — for as long as
// the refill takes to pay the debt back (at most kMaxExecutorPauseNs; celld pauses it again if
// the debt remains). Over any long stretch, a session gets at most its share plus one window's
// burst, whatever it sends; a session without a quota is never paused (cpu.weight shares what is
// contended, and the executor's cgroup weight is the sum of its sessions').
//
//   FairShare fair(kNanosPerSecond);
//   fair.Track(id, 0.25, now);                              // cpu_percent: 25
//   int64_t pause_ns = fair.Charge(id, delta.cpu_ns, now);  // per report
//   if (pause_ns > 0) send PauseSlot{slot, pause_ns / 1e6} ...
//   double cpus = fair.RecentCpus(id);                      // for `cellctl sessions`
#ifndef CELLHOUSE_SUPERVISOR_EXECUTOR_FAIRNESS_H_
#define CELLHOUSE_SUPERVISOR_EXECUTOR_FAIRNESS_H_

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "supervisor/cgroup/limits.h"

namespace cellhouse::supervisor {

// The longest pause celld orders at once: the executor's own bound (executor/batch_loop.h
// kMaxPauseNs), below a worker's 10 s response timeout.
inline constexpr int64_t kMaxExecutorPauseNs = 2'000'000'000;
// Pauses shorter than this are not worth a command (the executor looks at celld's channel
// every 100 ms): the debt is carried to the next report instead.
inline constexpr int64_t kMinExecutorPauseNs = 10'000'000;

class FairShare {
 public:
  // `window_ns`: how far back the recent-CPU figure looks, and the bucket's depth in time.
  explicit FairShare(int64_t window_ns) : window_ns_(window_ns) {}

  // Starts accounting a session; `cpus` is its policy's quota in CPUs (nullopt: no quota, never
  // paused), `weight` its policy's CPU weight (cgroup.cpu_weight, 1..10000). Starts with a full
  // bucket.
  void Track(const std::string& session_id, std::optional<double> cpus, int64_t now_ns,
             uint32_t weight = cgroup::kCpuWeightDefault);
  void Untrack(const std::string& session_id);
  bool Tracks(const std::string& session_id) const { return sessions_.count(session_id) != 0; }

  // Charges executor CPU the session used since its last charge. Returns how long to pause its
  // slot from now, 0 for not at all (within its share, no quota, or already paused long enough).
  int64_t Charge(const std::string& session_id, uint64_t cpu_ns, int64_t now_ns);

  // Executor CPU the session used recently, in CPUs (0.5: half of one CPU), averaged over about
  // one window.
  double RecentCpus(const std::string& session_id) const;
  // What the bucket holds now, in ns of CPU (negative: debt); 0 for an untracked session.
  int64_t Balance(const std::string& session_id) const;

  // The executor cgroup's CPU weight: the sum of its sessions' weights, so that where the CPUs
  // are contended it gets what their workers would have got (one weight-100 cgroup competing with
  // N other workers would starve the N sessions it serves); the default when it serves none;
  // within 1..10000.
  uint32_t CgroupWeight() const;

 private:
  struct Account {
    std::optional<double> cpus;
    double balance_ns = 0;  // of executor CPU time; negative when in debt
    int64_t charged_ns = 0;
    int64_t paused_until_ns = 0;
    double recent_cpus = 0;
    uint32_t weight = cgroup::kCpuWeightDefault;
  };
  int64_t window_ns_;
  std::map<std::string, Account> sessions_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_EXECUTOR_FAIRNESS_H_
