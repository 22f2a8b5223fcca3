#include "supervisor/executor_fairness.h"

#include <algorithm>
#include <cmath>

namespace cellhouse::supervisor {

void FairShare::Track(const std::string& session_id, std::optional<double> cpus, int64_t now_ns,
                      uint32_t weight) {
  Account account;
  account.weight = std::clamp(weight, cgroup::kCpuWeightMin, cgroup::kCpuWeightMax);
  if (cpus && *cpus > 0) account.cpus = *cpus;
  account.balance_ns = account.cpus ? *account.cpus * static_cast<double>(window_ns_) : 0;
  account.charged_ns = now_ns;
  sessions_[session_id] = account;
}

void FairShare::Untrack(const std::string& session_id) { sessions_.erase(session_id); }

int64_t FairShare::Charge(const std::string& session_id, uint64_t cpu_ns, int64_t now_ns) {
  auto it = sessions_.find(session_id);
  if (it == sessions_.end()) return 0;
  Account& a = it->second;
  const int64_t elapsed = std::max<int64_t>(now_ns - a.charged_ns, 0);
  a.charged_ns = now_ns;
  const double used = static_cast<double>(cpu_ns);
  // An exponential average over about one window: what `cellctl sessions` shows.
  if (elapsed > 0) {
    const double weight = std::exp(-static_cast<double>(elapsed) / static_cast<double>(window_ns_));
    a.recent_cpus = a.recent_cpus * weight + (used / static_cast<double>(elapsed)) * (1 - weight);
  }
  if (!a.cpus) return 0;
  const double depth = *a.cpus * static_cast<double>(window_ns_);
  a.balance_ns = std::min(depth, a.balance_ns + *a.cpus * static_cast<double>(elapsed)) - used;
  if (a.balance_ns >= 0 || now_ns < a.paused_until_ns) return 0;
  // The time the refill takes to pay the debt back.
  const double repay = -a.balance_ns / *a.cpus;
  if (repay < static_cast<double>(kMinExecutorPauseNs)) return 0;
  const int64_t pause = repay >= static_cast<double>(kMaxExecutorPauseNs)
                            ? kMaxExecutorPauseNs
                            : static_cast<int64_t>(repay);
  a.paused_until_ns = now_ns + pause;
  return pause;
}

double FairShare::RecentCpus(const std::string& session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? 0 : it->second.recent_cpus;
}

int64_t FairShare::Balance(const std::string& session_id) const {
  auto it = sessions_.find(session_id);
  return it == sessions_.end() ? 0 : static_cast<int64_t>(it->second.balance_ns);
}

uint32_t FairShare::CgroupWeight() const {
  if (sessions_.empty()) return cgroup::kCpuWeightDefault;
  uint64_t sum = 0;
  for (const auto& [id, account] : sessions_) sum += account.weight;
  return static_cast<uint32_t>(std::min<uint64_t>(sum, cgroup::kCpuWeightMax));
}

}  // namespace cellhouse::supervisor
