#include "gateway/confine.h"

#include <fcntl.h>
#include <grp.h>
#include <linux/capability.h>
#include <linux/seccomp.h>
#include <pwd.h>
#include <sys/capability.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <string_view>

#include "base/strings.h"

namespace cellhouse::gateway {
namespace {

using policy::ArgCondition;
using policy::FilterCondition;
using policy::FilterRule;
using policy::Seccomp;

// ---- The allow-list: one row per group of calls and why the gateway needs it. ----
struct AllowRow {
  std::string_view name;  // a system call or an "@group" of policy/syscall_groups.cc
  std::string_view why;
};

constexpr AllowRow kAllowed[] = {
    {"@io", "reading and writing its sockets and standard error"},
    {"@exit", "ending"},
    {"@signal-return", "signal masks (the loop's signalfd) and restarted calls"},
    {"@memory", "heap and anonymous mappings, never executable"},
    {"@sync", "glibc's locks"},
    {"@time", "clocks"},
    {"@self", "its own ids, for logs"},
    {"@socket-io", "sending and receiving on its sockets"},
    {"@random", "response ids"},
    {"accept4", "taking HTTP connections"},
    {"connect", "reaching celld's Unix socket (socket() is limited to AF_UNIX)"},
    {"getsockopt", "libmicrohttpd's socket options"},
    {"setsockopt", "libmicrohttpd's socket options (TCP_NODELAY, TCP_CORK)"},
    {"getsockname", "the listener's address"},
    {"getpeername", "a client's address"},
    {"epoll_wait", "the event loop"},
    {"epoll_pwait", "the event loop"},
    {"epoll_ctl", "the event loop and libmicrohttpd's epoll set"},
    {"timerfd_settime", "the event loop's timers"},
    {"pread64", "reading the keys file on SIGHUP"},
    {"fstatfs", "glibc's stdio"},
};

FilterRule Prototype(std::string_view origin) {
  FilterRule rule;
  rule.action = policy::FilterAction{Seccomp::ALLOW, 0};
  rule.origin = std::string(origin);
  return rule;
}

Status AddConditional(std::string_view name, FilterCondition condition, std::string_view why,
                      std::vector<FilterRule>* rules) {
  FilterRule rule = Prototype(why);
  rule.conditions.push_back(condition);
  return policy::AddNamedRules(name, rule, rules);
}

Result<std::vector<gid_t>> GroupsOf(const passwd& pw) {
  int count = 64;
  std::vector<gid_t> groups(static_cast<size_t>(count));
  if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &count) < 0) {
    groups.resize(static_cast<size_t>(count));
    if (::getgrouplist(pw.pw_name, pw.pw_gid, groups.data(), &count) < 0) {
      return Error("the groups of user " + Quote(pw.pw_name) + " could not be read");
    }
  }
  groups.resize(static_cast<size_t>(count));
  return groups;
}

// Drops every capability; with a uid to switch to, switches in between (P and E are cleared
// by the kernel on the switch from root, capabilities(7)).
Status DropPrivileges(const ConfinementPlan& plan) {
  int last = static_cast<int>(cap_max_bits()) - 1;
  bool can_drop_bounding = CAP_IS_SUPPORTED(CAP_SETPCAP);
  cap_flag_value_t setpcap = CAP_CLEAR;
  cap_t current = cap_get_proc();
  if (current != nullptr) {
    static_cast<void>(cap_get_flag(current, CAP_SETPCAP, CAP_EFFECTIVE, &setpcap));
    cap_free(current);
  }
  can_drop_bounding = can_drop_bounding && setpcap == CAP_SET;
  for (int cap = 0; cap <= last && can_drop_bounding; ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) <= 0) continue;
    if (cap_drop_bound(static_cast<cap_value_t>(cap)) != 0) {
      return Error::FromErrno(
          errno, "dropping capability " + std::to_string(cap) + " from the bounding set");
    }
  }
  if (cap_reset_ambient() != 0 && errno != EINVAL) {
    return Error::FromErrno(errno, "clearing the ambient capabilities");
  }
  if (plan.uid) {
    if (::setgroups(plan.groups.size(), plan.groups.data()) != 0) {
      return Error::FromErrno(errno, "setgroups");
    }
    if (::setresgid(plan.gid, plan.gid, plan.gid) != 0) {
      return Error::FromErrno(errno, "setresgid(" + std::to_string(plan.gid) + ")");
    }
    if (::setresuid(*plan.uid, *plan.uid, *plan.uid) != 0) {
      return Error::FromErrno(errno, "setresuid(" + std::to_string(*plan.uid) + ")");
    }
  }
  cap_t none = cap_init();
  if (none == nullptr) return Error::FromErrno(errno, "cap_init");
  // Under systemd with no capabilities and ~@privileged, capset(2) itself is refused (EPERM):
  // that is fine as long as the check below finds every set empty.
  static_cast<void>(cap_set_proc(none));
  cap_free(none);
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return Error::FromErrno(errno, "capget");
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) {
      return Error("a capability survived the drop; refusing to serve");
    }
  }
  return Ok();
}

}  // namespace

policy::FilterSpec GatewayFilterSpec() {
  policy::FilterSpec spec;
  spec.default_action = policy::FilterAction{Seccomp::KILL_PROCESS, 0};
  for (const AllowRow& row : kAllowed) {
    // The table holds names libseccomp knows on every architecture the project builds for.
    static_cast<void>(policy::AddNamedRules(row.name, Prototype(row.why), &spec.rules));
  }
  // socket(2) for Unix sockets only: the gateway makes no network connection of its own.
  static_cast<void>(AddConditional(
      "socket", FilterCondition{.index = 0, .op = ArgCondition::EQ, .value = AF_UNIX},
      "connections to celld", &spec.rules));
  // openat(2) only without O_WRONLY, O_RDWR, O_CREAT, O_TRUNC or O_APPEND: the gateway reads
  // its keys file on SIGHUP and writes nothing anywhere.
  constexpr uint64_t kWriteFlags = O_WRONLY | O_RDWR | O_CREAT | O_TRUNC | O_APPEND;
  static_cast<void>(AddConditional(
      "openat",
      FilterCondition{.index = 2, .op = ArgCondition::MASKED_EQ, .value = 0, .mask = kWriteFlags},
      "reading the keys file", &spec.rules));
  return spec;
}

Result<ConfinementPlan> PlanConfinement(const ConfineOptions& options) {
  ConfinementPlan plan;
  if (!options.user.empty()) {
    passwd pw{};
    passwd* found = nullptr;
    std::vector<char> buf(16384);
    Result<uint64_t> numeric = ParseUint64(options.user, "--user");
    int rc = numeric
                 ? ::getpwuid_r(static_cast<uid_t>(*numeric), &pw, buf.data(), buf.size(), &found)
                 : ::getpwnam_r(options.user.c_str(), &pw, buf.data(), buf.size(), &found);
    if (rc != 0 || found == nullptr) {
      return Error("--user " + Quote(options.user) + ": no such user");
    }
    if (pw.pw_uid == 0) return Error("--user " + Quote(options.user) + " is root. Refusing.");
    plan.uid = pw.pw_uid;
    plan.gid = pw.pw_gid;
    CH_ASSIGN_OR_RETURN(plan.groups, GroupsOf(pw));
  } else if (::geteuid() == 0) {
    return Error(
        "cellgate started as root needs --user NAME (an unprivileged user of its own); "
        "it does not serve as root. Refusing.");
  }
  std::vector<policy::Problem> problems;
  std::optional<policy::CompiledFilter> filter =
      policy::CompileFilter(GatewayFilterSpec(), &problems);
  if (!filter) {
    std::string why = problems.empty() ? "unknown" : problems.front().message;
    return Error("compiling the gateway's seccomp filter: " + why);
  }
  plan.filter = std::move(*filter);
  return plan;
}

Status Confine(const ConfinementPlan& plan) {
  CH_RETURN_IF_ERROR(DropPrivileges(plan));
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return Error::FromErrno(errno, "PR_SET_DUMPABLE");
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) {
    return Error::FromErrno(errno, "PR_SET_NO_NEW_PRIVS");
  }
  if (plan.filter.program.empty()) return Error("the seccomp program is empty; refusing");
  sock_fprog program{static_cast<unsigned short>(plan.filter.program.size()),
                     const_cast<sock_filter*>(plan.filter.program.data())};
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) {
    return Error::FromErrno(errno, "installing the seccomp filter");
  }
  return Ok();
}

}  // namespace cellhouse::gateway
