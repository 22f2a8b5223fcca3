#include "policy/validate.h"

#include <sys/resource.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>
#include <map>
#include <set>

#include "base/str_cat.h"
#include "base/strings.h"
#include "ipc/worker_contract.h"
#include "policy/policy.h"
#include "policy/syscall_groups.h"

namespace cellhouse::policy {
namespace {

constexpr uint64_t kMiB = uint64_t{1} << 20;
constexpr uint64_t kInfinity = std::numeric_limits<uint64_t>::max();  // RLIM_INFINITY
constexpr size_t kMaxNameLength = 63;
constexpr size_t kMaxDescriptionLength = 512;
// (uid_t)-1 means "no change" to setresuid(2); 65534 is the kernel's overflowuid, what
// unmapped ids show as inside user namespaces (user_namespaces(7)).
constexpr uint32_t kInvalidId = 0xFFFFFFFF;
constexpr uint32_t kOverflowId = 65534;
// A worker cannot even start below this, whatever the model.
constexpr uint64_t kMinMemoryMax = 4 * kMiB;
// PID_MAX_LIMIT on 64-bit (include/linux/threads.h).
constexpr uint64_t kMaxPids = 4194304;
constexpr uint64_t kNrOpen = 1048576;  // fs.nr_open's default: setrlimit(NOFILE) refuses more
constexpr uint32_t kMaxCpuPercent = 102400;
constexpr uint64_t kMinCpuPeriodUs = 1000;
constexpr uint64_t kMaxCpuPeriodUs = 1000000;

// Defaults for the budgets (documented in policy.proto).
constexpr uint64_t kDefaultIdleTimeoutSeconds = 600;
constexpr uint64_t kDefaultMaxLifetimeSeconds = 86400;
constexpr uint64_t kDefaultDetachedGraceSeconds = 60;
constexpr uint32_t kDefaultMaxSessions = 64;
constexpr uint32_t kDefaultMaxSessionsPerTenant = 4;
constexpr uint64_t kDefaultPidsMax = 4;
constexpr uint32_t kDefaultCpuWeight = 100;

struct RlimitDefault {
  Rlimit::Resource resource;
  uint64_t value;
};
// Set even when the policy does not name them: each closes a way out of the sandbox or a way
// to exhaust the host (see Rlimit.Resource in policy.proto).
constexpr RlimitDefault kRlimitDefaults[] = {
    {Rlimit::CORE, 0},    {Rlimit::FSIZE, 0}, {Rlimit::MEMLOCK, 0},
    {Rlimit::NOFILE, 32}, {Rlimit::NPROC, 1},
};

class Validator {
 public:
  Validator(Policy* policy, const ModelFacts* facts, std::vector<Problem>* problems)
      : p_(*policy), facts_(facts), problems_(problems) {}

  void Run() {
    Identity();
    Namespaces();
    HostIds();
    Rlimits();
    Cgroup();
    Gpu();
    SeccompSettings();
    Budgets();
    Gateway();
    if (!p_.has_shared_executor()) {
      p_.set_shared_executor(true);
    }
    MemoryAgainstModel();
  }

 private:
  void Refuse(std::string field, const std::string& message) {
    problems_->push_back({.field = std::move(field), .message = StrCat(message, " Refusing.")});
  }

  void Identity() {
    const std::string& name = p_.name();
    if (name.empty()) {
      Refuse("name", "the policy has no name. Write name: \"...\" equal to the file's name.");
    } else {
      bool ok = name.size() <= kMaxNameLength && std::isalnum(static_cast<unsigned char>(name[0]));
      for (char c : name) {
        ok &= std::isalnum(static_cast<unsigned char>(c)) != 0 || c == '_' || c == '-';
      }
      if (!ok) {
        Refuse("name", StrCat("name ", Quote(name),
                              " is not 1 to 63 of [A-Za-z0-9_-] starting "
                              "with a letter or digit."));
      }
    }
    if (p_.description().size() > kMaxDescriptionLength) {
      Refuse("description", "description is longer than 512 bytes.");
    } else if (std::any_of(p_.description().begin(), p_.description().end(),
                           [](char c) { return static_cast<unsigned char>(c) < 0x20; })) {
      Refuse("description", "description contains control characters (one line, please).");
    }
    if (p_.uids_size() == 0 && p_.gids_size() == 0 && p_.gateway_tenants_size() == 0) {
      Refuse("uids",
             "neither uids nor gids (nor gateway_tenants) are listed: nobody could use this "
             "policy. "
             "List who may (uids: 1000, gids: 100), or delete the file to retire the policy.");
    }
    for (const std::string& t : p_.gateway_tenants()) {
      if (!ValidGatewayTenant(t)) {
        Refuse("gateway_tenants", "gateway tenant '" + t +
                                      "' is not 1 to 64 of [A-Za-z0-9_.@-] (the gateway's "
                                      "tenant names).");
      }
    }
    for (const std::string& m : p_.models()) {
      if (!ValidModelName(m)) {
        Refuse("models", "model '" + m +
                             "' is not 1 to 64 of [A-Za-z0-9._:-], not starting with '.' or '-' "
                             "(celld's model names).");
      }
    }
  }

  void Namespaces() {
    cellhouse::policy::Namespaces* ns = p_.mutable_namespaces();
    if (ns->has_user() && !ns->user()) {
      Refuse("namespaces.user",
             "the sandbox needs a user namespace: it maps the session's root to an "
             "unprivileged host uid and mounts the worker's empty root without host privileges.");
    }
    if (ns->has_mount() && !ns->mount()) {
      Refuse("namespaces.mount",
             "the sandbox needs a mount namespace: the worker's empty root file system "
             "(pivot_root) must not change the host's mounts.");
    }
    if (!ns->has_user()) {
      ns->set_user(true);
    }
    if (!ns->has_pid()) {
      ns->set_pid(true);
    }
    if (!ns->has_mount()) {
      ns->set_mount(true);
    }
    if (!ns->has_uts()) {
      ns->set_uts(true);
    }
    if (!ns->has_ipc()) {
      ns->set_ipc(true);
    }
    if (!ns->has_net()) {
      ns->set_net(true);
    }
    if (!ns->has_cgroup()) {
      ns->set_cgroup(false);
    }
  }

  void IdRangeCheck(const std::string& field, const IdRange& range) {
    if (range.count() == 0) {
      Refuse(StrCat(field, ".count"), "the range is empty: sessions need two ids each.");
      return;
    }
    const uint64_t last = uint64_t{range.first()} + range.count() - 1;
    if (last >= kInvalidId) {
      Refuse(field, StrCat("the range [", range.first(), ", ", last,
                           "] runs past 4294967294 ((uid_t)-1 is not an id)."));
    } else if (range.first() == 0) {
      Refuse(StrCat(field, ".first"),
             "the range includes 0: a session's root must never be the host's root.");
    } else if (range.first() <= kOverflowId && kOverflowId <= last) {
      Refuse(field, StrCat("the range [", range.first(), ", ", last,
                           "] includes 65534, the kernel's overflow id for unmapped ids."));
    }
  }

  void HostIds() {
    if (!p_.has_host_uids()) {
      Refuse("host_uids",
             "no host uid range: each session's root maps to a host uid of its own from it. "
             "Give a range no account on this machine uses, e.g. host_uids { first: 1879048192 "
             "count: 65536 }.");
      return;
    }
    IdRangeCheck("host_uids", p_.host_uids());
    if (!p_.has_host_gids()) {
      *p_.mutable_host_gids() = p_.host_uids();
    } else {
      IdRangeCheck("host_gids", p_.host_gids());
    }
  }

  void Rlimits() {
    std::map<int, Rlimit> by_resource;
    for (int i = 0; i < p_.rlimits_size(); ++i) {
      Rlimit r = p_.rlimits(i);
      const std::string field = StrCat("rlimits[", i, "]");
      const std::string name = Rlimit::Resource_Name(r.resource());
      if (r.resource() == Rlimit::RESOURCE_UNSPECIFIED) {
        Refuse(StrCat(field, ".resource"), "resource is missing (NOFILE, NPROC, CORE, ...).");
        continue;
      }
      if (by_resource.count(r.resource()) != 0) {
        Refuse(field, StrCat(name, " is listed twice. Keep one."));
        continue;
      }
      if (!r.has_soft() && !r.has_hard()) {
        Refuse(field, StrCat(name, " gives neither soft nor hard."));
        continue;
      }
      if (!r.has_soft()) {
        r.set_soft(r.hard());
      }
      if (!r.has_hard()) {
        r.set_hard(r.soft());
      }
      if (r.soft() > r.hard()) {
        Refuse(StrCat(field, ".soft"),
               StrCat(name, " soft limit ", r.soft(), " is above the hard limit ", r.hard(), "."));
      }
      RlimitValueCheck(field, name, r);
      by_resource[r.resource()] = r;
    }
    for (const RlimitDefault& d : kRlimitDefaults) {
      if (by_resource.count(d.resource) != 0) {
        continue;
      }
      Rlimit r;
      r.set_resource(d.resource);
      r.set_soft(d.value);
      r.set_hard(d.value);
      by_resource[d.resource] = r;
    }
    p_.clear_rlimits();
    for (auto& [resource, r] : by_resource) {
      *p_.add_rlimits() = r;
    }
  }

  void RlimitValueCheck(const std::string& field, const std::string& name, const Rlimit& r) {
    switch (r.resource()) {
      case Rlimit::CORE:
        if (r.hard() != 0) {
          Refuse(field,
                 "CORE must be 0: a core dump would copy the session's memory (a "
                 "tenant's conversation) out of the sandbox through core_pattern.");
        }
        break;
      case Rlimit::NOFILE:
        if (r.soft() < 8 || r.hard() > kNrOpen) {
          Refuse(field,
                 "NOFILE must be between 8 (the worker's sockets and standard "
                 "descriptors) and 1048576 (fs.nr_open).");
        }
        break;
      case Rlimit::NPROC:
        if (r.soft() == 0 || r.hard() == kInfinity) {
          Refuse(field, "NPROC must be at least 1 (the worker itself) and finite.");
        }
        break;
      default:
        static_cast<void>(name);
        break;
    }
  }

  void Cgroup() {
    cellhouse::policy::Cgroup* cg = p_.mutable_cgroup();
    if (!cg->has_memory_max_bytes()) {
      Refuse("cgroup.memory_max_bytes",
             "memory_max_bytes is not set: every session needs a memory cap, or one session "
             "could take the host's memory. Write cgroup { memory_max_bytes: ... }.");
    } else if (cg->memory_max_bytes() < kMinMemoryMax) {
      Refuse("cgroup.memory_max_bytes", StrCat("memory_max_bytes ", cg->memory_max_bytes(), " (",
                                               FormatBytes(cg->memory_max_bytes()),
                                               ") is below 4 MiB: no worker can start in that."));
    }
    if (cg->has_memory_high_bytes()) {
      if (cg->memory_high_bytes() == 0) {
        Refuse("cgroup.memory_high_bytes",
               "memory_high_bytes 0 would throttle the session "
               "from its first page. Leave it out for no throttling.");
      } else if (cg->has_memory_max_bytes() && cg->memory_high_bytes() > cg->memory_max_bytes()) {
        Refuse("cgroup.memory_high_bytes",
               StrCat("memory_high_bytes (", FormatBytes(cg->memory_high_bytes()),
                      ") is above memory_max_bytes (", FormatBytes(cg->memory_max_bytes()),
                      "): memory.high must not exceed memory.max. Lower memory_high_bytes or "
                      "leave it out."));
      }
    }
    if (!cg->has_memory_swap_max_bytes()) {
      cg->set_memory_swap_max_bytes(0);
    }
    if (!cg->has_pids_max()) {
      cg->set_pids_max(kDefaultPidsMax);
    }
    if (cg->pids_max() == 0 || cg->pids_max() > kMaxPids) {
      Refuse("cgroup.pids_max", "pids_max must be 1 to 4194304 (the worker is one task).");
    }
    if (cg->cpu_max_case() == Cgroup::kCpuPercent) {
      const uint32_t percent = cg->cpu_percent();
      if (percent == 0 || percent > kMaxCpuPercent) {
        Refuse("cgroup.cpu_percent", "cpu_percent must be 1 to 102400 (percent of one CPU).");
      } else {
        CpuQuota* q = cg->mutable_cpu_quota();  // clears cpu_percent: one form in the effective
        q->set_period_us(100000);
        q->set_quota_us(uint64_t{percent} * 1000);
      }
    } else if (cg->cpu_max_case() == Cgroup::kCpuQuota) {
      const CpuQuota& q = cg->cpu_quota();
      if (q.period_us() < kMinCpuPeriodUs || q.period_us() > kMaxCpuPeriodUs) {
        Refuse("cgroup.cpu_quota.period_us",
               "period_us must be 1000 to 1000000 (the kernel's bounds for cpu.max).");
      }
      if (q.quota_us() < kMinCpuPeriodUs || q.quota_us() > kMaxCpuPeriodUs * kMaxCpuPercent / 100) {
        Refuse("cgroup.cpu_quota.quota_us", "quota_us must be 1000 to 1024000000.");
      }
    }
    if (!cg->has_cpu_weight()) {
      cg->set_cpu_weight(kDefaultCpuWeight);
    }
    if (cg->cpu_weight() < 1 || cg->cpu_weight() > 10000) {
      Refuse("cgroup.cpu_weight", "cpu_weight must be 1 to 10000 (cpu.weight's range).");
    }
  }

  void Gpu() {
    if (!p_.has_gpu()) {
      return;
    }
    const GpuShare& g = p_.gpu();
    if (!(g.compute_fraction() > 0.0 && g.compute_fraction() <= 1.0)) {  // also refuses NaN
      Refuse("gpu.compute_fraction",
             StrCat("compute_fraction must be in (0, 1], a share of one device; got ",
                    std::to_string(g.compute_fraction()), "."));
    }
    if (g.device_memory_bytes() < kMiB) {
      Refuse("gpu.device_memory_bytes",
             "device_memory_bytes must be at least 1 MiB: a GPU share without a device memory "
             "cap would let one session take the whole device.");
    }
  }

  void SeccompSettings() {
    Seccomp* s = p_.mutable_seccomp();
    if (!s->has_use_builtin_allowlist()) {
      s->set_use_builtin_allowlist(true);
    }
    const Seccomp::Action d = s->default_action();
    if (d == Seccomp::ALLOW || d == Seccomp::LOG) {
      Refuse("seccomp.default_action",
             StrCat("default_action ", Seccomp::Action_Name(d),
                    " lets every call no rule names through: the worker would not be confined. "
                    "Use KILL_PROCESS (the default), KILL_THREAD, TRAP or ERRNO."));
    }
    // Unset means KILL_PROCESS, with or without an imported profile: a profile's own
    // defaultAction never turns the kill the audit record names into a quiet errno.
    if (d != Seccomp::ERRNO && d != Seccomp::ACTION_UNSPECIFIED && !s->default_error().empty()) {
      Refuse("seccomp.default_error", "default_error is set but default_action is not ERRNO.");
    }
    if (d == Seccomp::ERRNO) {
      if (s->default_error().empty()) {
        s->set_default_error("EPERM");
      }
      Result<uint16_t> e = ParseErrno(s->default_error());
      if (!e) {
        Refuse("seccomp.default_error", StrCat(e.error().message(), "."));
      }
    }
    if (d == Seccomp::ACTION_UNSPECIFIED) {
      s->set_default_action(Seccomp::KILL_PROCESS);
    }
    for (int i = 0; i < s->rules_size(); ++i) {
      RuleCheck(s->mutable_rules(i), i);
    }
  }

  void RuleCheck(SeccompRule* rule, int i) {
    const std::string field = StrCat("seccomp.rules[", i, "]");
    if (rule->syscalls_size() == 0) {
      Refuse(StrCat(field, ".syscalls"), "the rule names no system call (syscalls: \"...\").");
    }
    if (rule->action() == Seccomp::ACTION_UNSPECIFIED) {
      Refuse(StrCat(field, ".action"),
             "action is missing (KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, LOG or ALLOW).");
    }
    if (rule->action() == Seccomp::ERRNO) {
      if (rule->error().empty()) {
        rule->set_error("EPERM");
      }
      Result<uint16_t> e = ParseErrno(rule->error());
      if (!e) {
        Refuse(StrCat(field, ".error"), StrCat(e.error().message(), "."));
      }
    } else if (!rule->error().empty()) {
      Refuse(StrCat(field, ".error"), "error is set but the action is not ERRNO.");
    }
    std::set<uint32_t> indexes;
    for (int k = 0; k < rule->args_size(); ++k) {
      const ArgCondition& a = rule->args(k);
      const std::string arg = StrCat(field, ".args[", k, "]");
      if (a.index() > 5) {
        Refuse(StrCat(arg, ".index"), "index must be 0 to 5.");
      }
      if (!indexes.insert(a.index()).second) {
        Refuse(StrCat(arg, ".index"), StrCat("argument ", a.index(),
                                             " is compared twice in one rule; libseccomp "
                                             "cannot. Split it into two rules."));
      }
      if (a.op() == ArgCondition::OP_UNSPECIFIED) {
        Refuse(StrCat(arg, ".op"), "op is missing (EQ, NE, LT, LE, GT, GE, MASKED_EQ).");
      } else if (a.op() == ArgCondition::MASKED_EQ) {
        if (a.mask() == 0) {
          Refuse(StrCat(arg, ".mask"), "MASKED_EQ needs a non-zero mask.");
        }
        if ((a.value() & ~a.mask()) != 0) {
          Refuse(StrCat(arg, ".value"),
                 "value has bits outside mask: the condition could never hold.");
        }
      } else if (a.mask() != 0) {
        Refuse(StrCat(arg, ".mask"), "mask is only meaningful with op MASKED_EQ.");
      }
    }
  }

  void Gateway() {
    const GatewayLimits& g = p_.gateway();
    auto range = [this](bool has, uint64_t v, uint64_t lo, uint64_t hi, const std::string& field) {
      if (has && (v < lo || v > hi)) {
        Refuse("gateway." + field,
               StrCat("gateway.", field, " ", v, " is outside ", lo, " to ", hi, "."));
      }
    };
    range(g.has_max_body_bytes(), g.max_body_bytes(), 1024, uint64_t{64} << 20, "max_body_bytes");
    range(g.has_max_messages(), g.max_messages(), 1, 4096, "max_messages");
    range(g.has_max_concurrent_requests(), g.max_concurrent_requests(), 1, 1024,
          "max_concurrent_requests");
    range(g.has_max_idle_sessions(), g.max_idle_sessions(), 0, 64, "max_idle_sessions");
  }

  void Budgets() {
    cellhouse::policy::Budgets* b = p_.mutable_budgets();
    if (b->has_context_length() && b->context_length() == 0) {
      Refuse("budgets.context_length", "context_length 0 leaves no room for a conversation.");
    }
    if (facts_ != nullptr) {
      if (!b->has_context_length()) {
        b->set_context_length(facts_->seq_len);
      }
      if (b->context_length() > facts_->seq_len) {
        Refuse("budgets.context_length",
               StrCat("context_length ", b->context_length(), " is above the model's seq_len ",
                      facts_->seq_len, ": the model cannot attend that far. Lower it to at most ",
                      facts_->seq_len, "."));
      }
    }
    if (b->has_max_new_tokens() && b->max_new_tokens() == 0) {
      Refuse("budgets.max_new_tokens", "max_new_tokens 0 would let no request generate.");
    }
    if (b->has_context_length() && b->context_length() > 0) {
      if (!b->has_max_new_tokens()) {
        b->set_max_new_tokens(b->context_length());
      }
      if (b->max_new_tokens() > b->context_length()) {
        Refuse("budgets.max_new_tokens",
               StrCat("max_new_tokens ", b->max_new_tokens(), " is above context_length ",
                      b->context_length(), ": a request can never produce more than fits."));
      }
    }
    if (!b->has_idle_timeout_seconds()) {
      b->set_idle_timeout_seconds(kDefaultIdleTimeoutSeconds);
    }
    if (!b->has_max_lifetime_seconds()) {
      b->set_max_lifetime_seconds(kDefaultMaxLifetimeSeconds);
    }
    if (b->idle_timeout_seconds() == 0) {
      Refuse("budgets.idle_timeout_seconds", "idle_timeout_seconds must be at least 1.");
    }
    if (b->max_lifetime_seconds() == 0) {
      Refuse("budgets.max_lifetime_seconds", "max_lifetime_seconds must be at least 1.");
    }
    if (b->idle_timeout_seconds() > b->max_lifetime_seconds()) {
      Refuse("budgets.idle_timeout_seconds",
             StrCat("idle_timeout_seconds ", b->idle_timeout_seconds(),
                    " is longer than max_lifetime_seconds ", b->max_lifetime_seconds(),
                    ": the idle timeout could never apply."));
    }
    if (!b->has_detached_grace_seconds()) {
      b->set_detached_grace_seconds(
          std::min(kDefaultDetachedGraceSeconds, std::max<uint64_t>(b->idle_timeout_seconds(), 1)));
    }
    if (b->detached_grace_seconds() == 0) {
      Refuse("budgets.detached_grace_seconds",
             "detached_grace_seconds must be at least 1: a client whose connection drops for a "
             "moment must be able to re-attach.");
    } else if (b->detached_grace_seconds() > b->idle_timeout_seconds()) {
      Refuse("budgets.detached_grace_seconds",
             StrCat("detached_grace_seconds ", b->detached_grace_seconds(),
                    " is longer than idle_timeout_seconds ", b->idle_timeout_seconds(),
                    ": a detached session is idle, so it would end at the idle timeout first."));
    }
    SessionCaps(b);
  }

  void SessionCaps(cellhouse::policy::Budgets* b) {
    if (!b->has_max_sessions()) {
      // No more than there are host uid blocks: each live session needs kIdsPerSession.
      uint32_t blocks = p_.has_host_uids() ? p_.host_uids().count() / ipc::kIdsPerSession : 0;
      b->set_max_sessions(blocks > 0 ? std::min(kDefaultMaxSessions, blocks) : kDefaultMaxSessions);
    }
    if (b->max_sessions() == 0) {
      Refuse("budgets.max_sessions",
             "max_sessions 0 admits no session; delete the file to retire the policy.");
    }
    if (!b->has_max_sessions_per_tenant()) {
      b->set_max_sessions_per_tenant(std::min(kDefaultMaxSessionsPerTenant, b->max_sessions()));
    }
    if (b->max_sessions_per_tenant() == 0) {
      Refuse("budgets.max_sessions_per_tenant", "max_sessions_per_tenant must be at least 1.");
    }
    if (b->max_sessions_per_tenant() > b->max_sessions()) {
      Refuse("budgets.max_sessions_per_tenant",
             StrCat("max_sessions_per_tenant ", b->max_sessions_per_tenant(),
                    " is above max_sessions ", b->max_sessions(), "."));
    }
    if (p_.has_host_uids() && p_.host_uids().count() > 0 &&
        uint64_t{b->max_sessions()} * ipc::kIdsPerSession > p_.host_uids().count()) {
      Refuse("budgets.max_sessions",
             StrCat("max_sessions ", b->max_sessions(), " needs ",
                    uint64_t{b->max_sessions()} * ipc::kIdsPerSession,
                    " host uids but host_uids.count is ", p_.host_uids().count(),
                    ": every live session needs ", ipc::kIdsPerSession,
                    " host uids of its own (root and the worker's unprivileged id). "
                    "Widen the range or lower max_sessions."));
    }
  }

  void MemoryAgainstModel() {
    if (facts_ == nullptr || !p_.cgroup().has_memory_max_bytes()) {
      return;
    }
    const uint32_t context = p_.budgets().context_length();
    if (context == 0 || context > facts_->seq_len) {
      return;  // already refused
    }
    const uint64_t need = PolicySessionBytes(p_, *facts_, context);
    const uint64_t max = p_.cgroup().memory_max_bytes();
    if (need <= max) {
      return;
    }
    // The largest context that fits, to say what to change.
    const uint64_t fixed = PolicySessionBytes(p_, *facts_, 0);
    const uint64_t slot = fixed - SessionBytes(*facts_, 0);
    std::string fits = "no context at all fits";
    if (fixed < max && facts_->kv_bytes_per_token > 0) {
      fits =
          StrCat("a context_length of at most ",
                 std::min<uint64_t>((max - fixed) / facts_->kv_bytes_per_token, context), " fits");
    }
    Refuse("cgroup.memory_max_bytes",
           StrCat("memory_max_bytes ", max, " (", FormatBytes(max), ") is below the ", need, " (",
                  FormatBytes(need), ") a session needs at context_length ", context, " (KV ",
                  FormatBytes(need - fixed), " + state ", FormatBytes(facts_->state_fixed_bytes),
                  " + worker ", FormatBytes(facts_->worker_overhead_bytes),
                  slot > 0 ? StrCat(" + executor slot ", FormatBytes(slot)) : std::string(),
                  "): the worker would be OOM-killed. Raise memory_max_bytes to at least ", need,
                  ", or lower budgets.context_length (", fits, ")."));
  }

  Policy& p_;
  const ModelFacts* facts_;
  std::vector<Problem>* problems_;
};

// Calls the built-in list allows only with argument conditions (mmap without PROT_EXEC).
std::map<std::string, std::string> ConditionalBuiltins() {
  std::map<std::string, std::string> out;
  Result<std::vector<ExpandedSyscall>> calls = ExpandSyscallName("@worker");
  if (!calls) {
    return out;
  }
  for (const ExpandedSyscall& c : *calls) {
    if (c.check) {
      out[c.name] = DescribeCondition({.index = c.check->index,
                                       .op = c.check->op,
                                       .value = c.check->value,
                                       .mask = c.check->mask});
    }
  }
  return out;
}

std::string JoinNames(const std::set<std::string>& names) {
  std::string out;
  for (const std::string& n : names) {
    out += StrCat(out.empty() ? "" : " ", n);
  }
  return out;
}

// How an imported profile joins the filter (policy.proto, message Seccomp, says it for admins).
// With the built-in worker list, the profile can only make it stricter: its rules that would let
// through a call the list does not allow, or answer such a call more softly than the default
// action (an errno instead of the kill the audit record names), are dropped; its rules that let
// through a call the list allows are dropped too, so the list's own conditions stay (mmap never
// executable); what is left (calls the list allows and the profile denies) joins at the profile
// level. Without the built-in list the profile is the allow-list, and its rules apply as written.
void AddProfileRules(const Seccomp& s, const OciImport& profile, FilterSpec* spec,
                     std::vector<std::string>* notes) {
  const std::string name = Quote(s.oci_profile());
  if (!(profile.default_action == spec->default_action)) {
    std::string adopt =
        profile.default_action.action == Seccomp::ERRNO
            ? StrCat("default_action: ERRNO default_error: \"",
                     ErrnoName(profile.default_action.errno_value), "\"")
            : StrCat("default_action: ", Seccomp::Action_Name(profile.default_action.action));
    notes->push_back(
        StrCat("the profile's defaultAction ", DescribeAction(profile.default_action),
               " is not used: a call no rule allows gets the policy's default_action, ",
               DescribeAction(spec->default_action),
               " (a kill is reported with the call's name). To take the profile's, "
               "write ",
               adopt, " in the policy's seccomp block"));
  }
  if (!s.use_builtin_allowlist()) {
    spec->rules.insert(spec->rules.end(), profile.rules.begin(), profile.rules.end());
    notes->push_back(StrCat("the profile ", name,
                            " replaces the built-in worker list (use_builtin_allowlist: false): "
                            "its rules apply as written"));
    return;
  }
  std::set<std::string> worker;  // calls the worker list allows, maybe only with some arguments
  for (const FilterRule& r : spec->rules) {
    if (r.level == RuleLevel::kAllowList && r.action.action == Seccomp::ALLOW) {
      worker.insert(r.syscall);
    }
  }
  const int floor = ActionStrictness(spec->default_action.action);
  std::set<std::string> not_widened;   // the profile would allow, the list does not
  std::set<std::string> not_softened;  // the profile would answer more softly than the default
  std::set<std::string> denied;        // the list allows, the profile denies: these join
  size_t joined = 0;
  for (const FilterRule& r : profile.rules) {
    const bool lets_through = r.action.action == Seccomp::ALLOW || r.action.action == Seccomp::LOG;
    if (worker.count(r.syscall) == 0) {
      if (ActionStrictness(r.action.action) < floor) {
        (lets_through ? not_widened : not_softened).insert(r.syscall);
        continue;
      }
    } else if (lets_through) {
      continue;  // the worker list's own rule stays, with its conditions
    } else {
      denied.insert(r.syscall);
    }
    spec->rules.push_back(r);
    ++joined;
  }
  notes->push_back(StrCat("the profile ", name,
                          " can only make the built-in worker list stricter; of its ",
                          profile.rules.size(), " rules, ", joined, " join the filter",
                          joined == 0 ? " (it denies nothing the list allows)" : ""));
  if (!denied.empty()) {
    notes->push_back(
        StrCat("calls the worker list allows and the profile denies: ", JoinNames(denied)));
  }
  if (!not_widened.empty()) {
    notes->push_back(
        StrCat("profile rules dropped because the worker list does not allow the call "
               "(it stays ",
               DescribeAction(spec->default_action), "): ", JoinNames(not_widened)));
  }
  if (!not_softened.empty()) {
    notes->push_back(
        StrCat("profile rules dropped because they would answer a call more softly "
               "than ",
               DescribeAction(spec->default_action), ": ", JoinNames(not_softened)));
  }
}

}  // namespace

uint64_t PolicySessionBytes(const Policy& policy, const ModelFacts& facts,
                            uint32_t context_length) {
  const uint64_t bytes = SessionBytes(facts, context_length);
  // An unset field is the default, true (an effective policy always has it set).
  const bool shares = !policy.has_shared_executor() || policy.shared_executor();
  if (!shares || facts.executor_slot_bytes == 0) {
    return bytes;
  }
  return bytes > std::numeric_limits<uint64_t>::max() - facts.executor_slot_bytes
             ? std::numeric_limits<uint64_t>::max()
             : bytes + facts.executor_slot_bytes;
}

uint64_t SessionBytes(const ModelFacts& facts, uint32_t context_length) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  uint64_t total = 0;
  if (facts.kv_bytes_per_token != 0 && context_length > kMax / facts.kv_bytes_per_token) {
    return kMax;
  }
  total = facts.kv_bytes_per_token * context_length;
  for (uint64_t part : {facts.state_fixed_bytes, facts.worker_overhead_bytes}) {
    if (total > kMax - part) {
      return kMax;
    }
    total += part;
  }
  return total;
}

void ApplyDefaultsAndValidate(Policy* policy, const ModelFacts* facts,
                              std::vector<Problem>* problems) {
  Validator(policy, facts, problems).Run();
}

FilterSpec BuildFilterSpec(const Policy& policy, const OciImport* profile,
                           std::vector<Problem>* problems, std::vector<std::string>* notes) {
  const Seccomp& s = policy.seccomp();
  FilterSpec spec;
  if (s.default_action() != Seccomp::ACTION_UNSPECIFIED) {
    spec.default_action.action = s.default_action();
    if (s.default_action() == Seccomp::ERRNO) {
      Result<uint16_t> e = ParseErrno(s.default_error());
      spec.default_action.errno_value = e ? *e : static_cast<uint16_t>(EPERM);
    }
  }
  auto refuse = [&](std::string field, const std::string& message) {
    problems->push_back({.field = std::move(field), .message = StrCat(message, ". Refusing.")});
  };
  if (s.use_builtin_allowlist()) {
    FilterRule builtin{.action = {Seccomp::ALLOW, 0},
                       .level = RuleLevel::kAllowList,
                       .origin = "built-in",
                       .field = "seccomp.use_builtin_allowlist"};
    Status st = AddNamedRules("@worker", builtin, &spec.rules);
    if (!st) {
      refuse("seccomp", st.error().message());  // a broken table: tests catch it
    }
  }
  const std::map<std::string, std::string> conditional =
      s.use_builtin_allowlist() ? ConditionalBuiltins() : std::map<std::string, std::string>{};
  for (int i = 0; i < s.allow_size(); ++i) {
    const std::string field = StrCat("seccomp.allow[", i, "]");
    FilterRule added{.action = {Seccomp::ALLOW, 0},
                     .level = RuleLevel::kAllowList,
                     .origin = "seccomp.allow",
                     .field = field};
    std::vector<FilterRule> rules;
    Status st = AddNamedRules(s.allow(i), added, &rules);
    if (!st) {
      refuse(field, st.error().message());
      continue;
    }
    for (const FilterRule& r : rules) {
      auto it = conditional.find(r.syscall);
      if (it != conditional.end() && r.conditions.empty()) {
        refuse(field,
               StrCat("'", r.syscall, "' is allowed by the built-in list only if ", it->second,
                      "; allowing it outright would lift that. To mean it, "
                      "write a rule { syscalls: \"",
                      r.syscall, "\" action: ALLOW }"));
      }
    }
    spec.rules.insert(spec.rules.end(), rules.begin(), rules.end());
  }
  if (profile != nullptr) {
    AddProfileRules(s, *profile, &spec, notes);
  }
  for (int i = 0; i < s.rules_size(); ++i) {
    const SeccompRule& rule = s.rules(i);
    FilterRule prototype{.action = {rule.action(), 0},
                         .level = RuleLevel::kPolicyRule,
                         .origin = StrCat("seccomp.rules[", i, "]"),
                         .comment = rule.comment()};
    if (rule.action() == Seccomp::ERRNO) {
      Result<uint16_t> e = ParseErrno(rule.error());
      prototype.action.errno_value = e ? *e : static_cast<uint16_t>(EPERM);
    }
    for (const ArgCondition& a : rule.args()) {
      prototype.conditions.push_back(
          {.index = a.index(), .op = a.op(), .value = a.value(), .mask = a.mask()});
    }
    for (int k = 0; k < rule.syscalls_size(); ++k) {
      prototype.field = StrCat("seccomp.rules[", i, "].syscalls[", k, "]");
      Status st = AddNamedRules(rule.syscalls(k), prototype, &spec.rules);
      if (!st) {
        refuse(prototype.field, st.error().message());
      }
    }
  }
  return spec;
}

}  // namespace cellhouse::policy
