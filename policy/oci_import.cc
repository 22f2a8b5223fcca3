#include "policy/oci_import.h"

#include <seccomp.h>
#include <sys/utsname.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdio>
#include <map>
#include <utility>

#include "base/io.h"
#include "base/str_cat.h"
#include "base/strings.h"
#include "policy/oci_seccomp.pb.h"
#include "policy/parse.h"

namespace cellhouse::policy {
namespace {

struct NamedAction {
  std::string_view name;
  Seccomp::Action action;
};
constexpr std::array kActions = {
    NamedAction{"SCMP_ACT_KILL", Seccomp::KILL_THREAD},  // libseccomp: KILL is KILL_THREAD
    NamedAction{"SCMP_ACT_KILL_THREAD", Seccomp::KILL_THREAD},
    NamedAction{"SCMP_ACT_KILL_PROCESS", Seccomp::KILL_PROCESS},
    NamedAction{"SCMP_ACT_TRAP", Seccomp::TRAP},
    NamedAction{"SCMP_ACT_ERRNO", Seccomp::ERRNO},
    NamedAction{"SCMP_ACT_LOG", Seccomp::LOG},
    NamedAction{"SCMP_ACT_ALLOW", Seccomp::ALLOW},
};

struct NamedOp {
  std::string_view name;
  ArgCondition::Op op;
};
constexpr std::array kOps = {
    NamedOp{"SCMP_CMP_EQ", ArgCondition::EQ},
    NamedOp{"SCMP_CMP_NE", ArgCondition::NE},
    NamedOp{"SCMP_CMP_LT", ArgCondition::LT},
    NamedOp{"SCMP_CMP_LE", ArgCondition::LE},
    NamedOp{"SCMP_CMP_GT", ArgCondition::GT},
    NamedOp{"SCMP_CMP_GE", ArgCondition::GE},
    NamedOp{"SCMP_CMP_MASKED_EQ", ArgCondition::MASKED_EQ},
};

// Docker's `includes.arches` use Go's GOARCH names.
struct GoArch {
  std::string_view go_name;
  uint32_t token;
};
constexpr std::array kGoArches = {
    GoArch{"amd64", SCMP_ARCH_X86_64},
    GoArch{"386", SCMP_ARCH_X86},
    GoArch{"x86", SCMP_ARCH_X86},  // what Docker's and Podman's own profiles write for 32-bit x86
    GoArch{"x32", SCMP_ARCH_X32},
    GoArch{"arm64", SCMP_ARCH_AARCH64},
    GoArch{"arm", SCMP_ARCH_ARM},
    GoArch{"ppc64le", SCMP_ARCH_PPC64LE},
    GoArch{"ppc64", SCMP_ARCH_PPC64},
    GoArch{"s390x", SCMP_ARCH_S390X},
    GoArch{"s390", SCMP_ARCH_S390},
    GoArch{"riscv64", SCMP_ARCH_RISCV64},
    GoArch{"mips", SCMP_ARCH_MIPS},
    GoArch{"mipsle", SCMP_ARCH_MIPSEL},
    GoArch{"mips64", SCMP_ARCH_MIPS64},
    GoArch{"mips64le", SCMP_ARCH_MIPSEL64},
    GoArch{"mips64n32", SCMP_ARCH_MIPS64N32},
    GoArch{"mips64len32", SCMP_ARCH_MIPSEL64N32},
};

// The libseccomp token of "SCMP_ARCH_X86_64" or of a Go name ("amd64"), or 0 when unknown.
uint32_t ArchToken(std::string_view name) {
  constexpr std::string_view kPrefix = "SCMP_ARCH_";
  if (StartsWith(name, kPrefix)) {
    std::string lower(name.substr(kPrefix.size()));
    for (char& c : lower) {
      c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    }
    return seccomp_arch_resolve_name(lower.c_str());
  }
  for (const GoArch& a : kGoArches) {
    if (a.go_name == name) {
      return a.token;
    }
  }
  return 0;
}

// (major, minor) of the running kernel (uname(2) release "6.1.0-18-amd64").
std::pair<int, int> RunningKernel() {
  utsname u{};
  if (uname(&u) != 0) {
    return {0, 0};
  }
  int major = 0;
  int minor = 0;
  if (std::sscanf(u.release, "%d.%d", &major, &minor) < 2) {
    return {0, 0};  // NOLINT(cert-err34-c)
  }
  return {major, minor};
}

class Importer {
 public:
  Importer(const std::string& path, const SourceMap& map, std::vector<Problem>* problems)
      : path_(path), map_(map), problems_(problems) {}

  std::optional<OciImport> Run(const oci::Profile& profile) {
    const size_t before = problems_->size();
    OciImport out;
    // Docker and runc: an ERRNO rule without an errno of its own returns the default's, else
    // EPERM.
    default_errno_ = ErrnoOfRule(profile.has_default_errno_ret(), profile.default_errno_ret(),
                                 profile.default_errno(), "default")
                         .value_or(static_cast<uint16_t>(EPERM));
    out.default_action = DefaultAction(profile);
    CheckArchitectures(profile);
    CheckFlags(profile);
    if (!profile.listener_path().empty()) {
      Add("listener_path",
          "SCMP_ACT_NOTIFY agents are not supported: a worker's calls are decided by the "
          "filter alone. Remove listenerPath. Refusing.");
    }
    for (int i = 0; i < profile.syscalls_size(); ++i) {
      ImportRule(profile, i, &out);
    }
    KeepStrictestUnconditional(&out);
    if (problems_->size() != before) {
      return std::nullopt;
    }
    std::sort(out.skipped_syscalls.begin(), out.skipped_syscalls.end());
    out.skipped_syscalls.erase(
        std::unique(out.skipped_syscalls.begin(), out.skipped_syscalls.end()),
        out.skipped_syscalls.end());
    return out;
  }

 private:
  void Add(const std::string& field, std::string message) {
    problems_->push_back(Problem{.file = path_,
                                 .position = map_.Find(field),
                                 .field = field,
                                 .message = std::move(message)});
  }

  // Parses an action name; false (with a problem) when it is unknown or unsupported.
  bool ParseAction(std::string_view name, const std::string& field, Seccomp::Action* action) {
    for (const NamedAction& a : kActions) {
      if (a.name == name) {
        *action = a.action;
        return true;
      }
    }
    if (name == "SCMP_ACT_TRACE" || name == "SCMP_ACT_NOTIFY") {
      Add(field, StrCat(name,
                        " is not supported: a worker has no tracer and no notification "
                        "agent. Use SCMP_ACT_ERRNO or SCMP_ACT_KILL_PROCESS. Refusing."));
    } else {
      std::string known;
      for (const NamedAction& a : kActions) {
        known += StrCat(known.empty() ? "" : ", ", a.name);
      }
      Add(field, StrCat("unknown action ", Quote(name), ". Expected one of: ", known, "."));
    }
    return false;
  }

  FilterAction DefaultAction(const oci::Profile& profile) {
    FilterAction out{Seccomp::KILL_PROCESS, 0};
    if (profile.default_action().empty()) {
      Add("default_action",
          "defaultAction is missing. Write \"defaultAction\": "
          "\"SCMP_ACT_KILL_PROCESS\" (or SCMP_ACT_ERRNO). Refusing.");
      return out;
    }
    if (!ParseAction(profile.default_action(), "default_action", &out.action)) {
      return out;
    }
    if (out.action == Seccomp::ALLOW || out.action == Seccomp::LOG) {
      Add("default_action",
          StrCat("defaultAction ", profile.default_action(),
                 " lets every call no rule names through: the worker would not be confined. "
                 "Use SCMP_ACT_KILL_PROCESS or SCMP_ACT_ERRNO. Refusing."));
      return out;
    }
    if (out.action == Seccomp::ERRNO) {
      out.errno_value = default_errno_;
    }
    return out;
  }

  // The errno a rule (or the default, `field` "default") names: as a number (errnoRet), as a name
  // (Podman's errno), or both, which must agree. nullopt when it names none.
  std::optional<uint16_t> ErrnoOfRule(bool has_number, uint32_t number, const std::string& name,
                                      const std::string& field) {
    const std::string number_field =
        field == "default" ? "default_errno_ret" : StrCat(field, ".errno_ret");
    const std::string name_field = field == "default" ? "default_errno" : StrCat(field, ".errno");
    std::optional<uint16_t> from_number;
    if (has_number) {
      from_number = ErrnoOf(number, number_field);
    }
    if (name.empty()) {
      return from_number;
    }
    Result<uint16_t> from_name = ParseErrno(name);
    if (!from_name) {
      Add(name_field, StrCat(from_name.error().message(), ". Refusing."));
      return from_number;
    }
    if (from_number && *from_number != *from_name) {
      Add(name_field, StrCat("errno ", Quote(name), " and errnoRet ", number,
                             " name different errors. Keep one. Refusing."));
    }
    return *from_name;
  }

  uint16_t ErrnoOf(uint32_t value, const std::string& field) {
    Result<uint16_t> e = ParseErrno(std::to_string(value));
    if (!e) {
      Add(field, StrCat(e.error().message(), ". Refusing."));
      return EPERM;
    }
    return *e;
  }

  void CheckArchitectures(const oci::Profile& profile) {
    for (int i = 0; i < profile.architectures_size(); ++i) {
      if (ArchToken(profile.architectures(i)) == 0) {
        Add(StrCat("architectures[", i, "]"),
            StrCat("unknown architecture ", Quote(profile.architectures(i)),
                   " (expected SCMP_ARCH_X86_64, SCMP_ARCH_AARCH64, ...)"));
      }
    }
    for (int i = 0; i < profile.arch_map_size(); ++i) {
      const oci::ArchMap& m = profile.arch_map(i);
      if (ArchToken(m.architecture()) == 0) {
        Add(StrCat("arch_map[", i, "].architecture"),
            StrCat("unknown architecture ", Quote(m.architecture())));
      }
      for (int j = 0; j < m.sub_architectures_size(); ++j) {
        if (ArchToken(m.sub_architectures(j)) == 0) {
          Add(StrCat("arch_map[", i, "].sub_architectures[", j, "]"),
              StrCat("unknown architecture ", Quote(m.sub_architectures(j))));
        }
      }
    }
  }

  void CheckFlags(const oci::Profile& profile) {
    for (int i = 0; i < profile.flags_size(); ++i) {
      const std::string& f = profile.flags(i);
      if (f == "SECCOMP_FILTER_FLAG_TSYNC" || f == "SECCOMP_FILTER_FLAG_LOG") {
        continue;
      }
      const std::string field = StrCat("flags[", i, "]");
      if (f == "SECCOMP_FILTER_FLAG_SPEC_ALLOW") {
        Add(field,
            "SECCOMP_FILTER_FLAG_SPEC_ALLOW turns off the Speculative Store Bypass "
            "mitigation for the worker, which runs untrusted prompts. Remove it. Refusing.");
      } else {
        Add(field, StrCat("unknown flag ", Quote(f),
                          " (known: SECCOMP_FILTER_FLAG_TSYNC, SECCOMP_FILTER_FLAG_LOG)"));
      }
    }
  }

  // Podman's profile gives setns two unconditional rules that both apply to a worker without
  // capabilities (ALLOW in its main list, ERRNO unless CAP_SYS_ADMIN): libseccomp would keep one
  // by the order of adding. The stricter is kept here, and a note says so.
  static void KeepStrictestUnconditional(OciImport* out) {
    std::map<std::string, size_t> strictest;  // call -> its strictest unconditional rule
    for (size_t i = 0; i < out->rules.size(); ++i) {
      const FilterRule& r = out->rules[i];
      if (!r.conditions.empty()) {
        continue;
      }
      auto [it, inserted] = strictest.emplace(r.syscall, i);
      if (!inserted && ActionStrictness(r.action.action) >
                           ActionStrictness(out->rules[it->second].action.action)) {
        it->second = i;
      }
    }
    std::vector<FilterRule> kept;
    for (size_t i = 0; i < out->rules.size(); ++i) {
      const FilterRule& r = out->rules[i];
      const size_t winner = r.conditions.empty() ? strictest.at(r.syscall) : i;
      if (winner == i) {
        kept.push_back(r);  // a copy: a later loser still reads the winner for its note
        continue;
      }
      const FilterRule& w = out->rules[winner];
      if (!(w.action == r.action)) {
        out->resolved.push_back(StrCat(r.syscall, ": ", r.field, " says ", DescribeAction(r.action),
                                       " and ", w.field, " says ", DescribeAction(w.action),
                                       "; the stricter, ", DescribeAction(w.action), ", is kept"));
      }
    }
    out->rules = std::move(kept);
  }

  // Whether Docker's includes/excludes let rule `i` apply on this machine to a worker with no
  // capabilities; the reason it does not otherwise.
  std::optional<std::string> SkipReason(const oci::Syscall& rule, const std::string& field) {
    const uint32_t native = seccomp_arch_native();
    auto arches_match = [&](const oci::Filter& f, const std::string& which) {
      bool any = false;
      for (int i = 0; i < f.arches_size(); ++i) {
        uint32_t token = ArchToken(f.arches(i));
        if (token == 0) {
          Add(StrCat(field, ".", which, ".arches[", i, "]"),
              StrCat("unknown architecture ", Quote(f.arches(i))));
        }
        any |= token == native;
      }
      return any;
    };
    auto kernel_at_least = [&](const oci::Filter& f, const std::string& which) {
      int major = 0;
      int minor = 0;
      // NOLINTNEXTLINE(cert-err34-c): the count of converted fields is checked.
      if (std::sscanf(f.min_kernel().c_str(), "%d.%d", &major, &minor) < 2) {
        Add(StrCat(field, ".", which, ".min_kernel"),
            StrCat("minKernel ", Quote(f.min_kernel()), " is not a version like \"5.8\""));
        return true;
      }
      return RunningKernel() >= std::make_pair(major, minor);
    };
    if (rule.has_includes()) {
      const oci::Filter& in = rule.includes();
      if (in.caps_size() > 0) {
        return StrCat("includes caps ", in.caps(0), " (a worker has none)");
      }
      if (in.arches_size() > 0 && !arches_match(in, "includes")) {
        return "includes other arches";
      }
      if (!in.min_kernel().empty() && !kernel_at_least(in, "includes")) {
        return StrCat("needs kernel ", in.min_kernel());
      }
    }
    if (rule.has_excludes()) {
      const oci::Filter& ex = rule.excludes();
      if (ex.arches_size() > 0 && arches_match(ex, "excludes")) {
        return "excludes this arch";
      }
      if (!ex.min_kernel().empty() && kernel_at_least(ex, "excludes")) {
        return StrCat("excluded from kernel ", ex.min_kernel());
      }
    }
    return std::nullopt;
  }

  // The rule's conditions: one set (AND) when every arg has its own index; one set per arg
  // (OR) when two share an index, as runc does.
  std::vector<std::vector<FilterCondition>> ConditionSets(const oci::Syscall& rule,
                                                          const std::string& field) {
    std::vector<FilterCondition> all;
    bool shared_index = false;
    for (int i = 0; i < rule.args_size(); ++i) {
      const oci::Arg& a = rule.args(i);
      const std::string arg_field = StrCat(field, ".args[", i, "]");
      if (a.index() > 5) {
        Add(arg_field, StrCat("argument index ", a.index(), " is out of range 0..5"));
        continue;
      }
      const NamedOp* op = nullptr;
      for (const NamedOp& o : kOps) {
        if (o.name == a.op()) {
          op = &o;
        }
      }
      if (op == nullptr) {
        Add(arg_field, StrCat("unknown operator ", Quote(a.op()),
                              " (expected SCMP_CMP_EQ, SCMP_CMP_NE, SCMP_CMP_LT, SCMP_CMP_LE, "
                              "SCMP_CMP_GT, SCMP_CMP_GE or SCMP_CMP_MASKED_EQ)"));
        continue;
      }
      FilterCondition c{.index = a.index(), .op = op->op, .value = a.value()};
      if (op->op == ArgCondition::MASKED_EQ) {
        c.mask = a.value();
        c.value = a.value_two();
        if ((c.value & ~c.mask) != 0) {
          Add(arg_field,
              "valueTwo has bits outside value (the mask): the rule could never "
              "match. Refusing.");
        }
      }
      for (const FilterCondition& seen : all) {
        shared_index |= seen.index == c.index;
      }
      all.push_back(c);
    }
    if (!shared_index) {
      return {all};
    }
    std::vector<std::vector<FilterCondition>> sets;
    sets.reserve(all.size());
    for (const FilterCondition& c : all) {
      sets.push_back({c});
    }
    return sets;
  }

  void ImportRule(const oci::Profile& profile, int i, OciImport* out) {
    const oci::Syscall& rule = profile.syscalls(i);
    const std::string field = StrCat("syscalls[", i, "]");
    FilterRule prototype;
    prototype.level = RuleLevel::kProfile;
    prototype.origin = StrCat("profile ", field);
    prototype.file = path_;
    prototype.field = field;
    prototype.position = map_.Find(field);
    prototype.comment = rule.comment();
    if (!ParseAction(rule.action(), StrCat(field, ".action"), &prototype.action.action)) {
      return;
    }
    if (prototype.action.action == Seccomp::ERRNO) {
      std::optional<uint16_t> own =
          ErrnoOfRule(rule.has_errno_ret(), rule.errno_ret(), rule.errno_name(), field);
      prototype.action.errno_value = own.value_or(default_errno_);
    }
    std::vector<std::string> names(rule.names().begin(), rule.names().end());
    if (!rule.name().empty()) {
      names.push_back(rule.name());
    }
    if (names.empty()) {
      Add(field, "the rule names no system call (give \"names\": [...])");
      return;
    }
    std::vector<std::vector<FilterCondition>> sets = ConditionSets(rule, field);
    if (std::optional<std::string> why = SkipReason(rule, field)) {
      out->skipped_rules.push_back(StrCat(field, ": ", *why));
      return;
    }
    for (size_t n = 0; n < names.size(); ++n) {
      const std::string name_field = n < static_cast<size_t>(rule.names_size())
                                         ? StrCat(field, ".names[", n, "]")
                                         : StrCat(field, ".name");
      if (!names[n].empty() && names[n].front() == '@') {
        Add(name_field, StrCat(Quote(names[n]), " is not a system call name"));
        continue;
      }
      for (const std::vector<FilterCondition>& conditions : sets) {
        FilterRule r = prototype;
        r.conditions = conditions;
        Status st = AddNamedRules(names[n], r, &out->rules, OtherArchitecture::kSkip,
                                  &out->skipped_syscalls);
        if (!st) {
          Add(name_field, StrCat(st.error().message(), ". Refusing."));
          break;
        }
      }
    }
  }

  const std::string& path_;
  const SourceMap& map_;
  std::vector<Problem>* problems_;
  uint16_t default_errno_ = EPERM;
};

}  // namespace

std::optional<OciImport> ImportOciProfile(std::string_view content, const std::string& path,
                                          std::vector<Problem>* problems) {
  oci::Profile profile;
  SourceMap map;
  std::vector<Problem> parse_problems;
  if (!ParseJsonMessage(content, &profile, &map, &parse_problems)) {
    for (Problem& p : parse_problems) {
      p.file = path;
      problems->push_back(std::move(p));
    }
    return std::nullopt;
  }
  return Importer(path, map, problems).Run(profile);
}

std::optional<OciImport> LoadOciProfile(const std::string& path, std::vector<Problem>* problems) {
  Result<std::string> content = ReadFileToString(path, kMaxOciProfileBytes);
  if (!content) {
    problems->push_back(
        {.file = path,
         .message = StrCat("cannot read the OCI seccomp profile: ", content.error().message())});
    return std::nullopt;
  }
  return ImportOciProfile(*content, path, problems);
}

}  // namespace cellhouse::policy
