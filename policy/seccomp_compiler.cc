#include "policy/seccomp_compiler.h"

#include <linux/seccomp.h>
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <limits>
#include <map>
#include <memory>

#include "base/io.h"
#include "base/str_cat.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "policy/bpf_evaluator.h"
#include "policy/syscall_groups.h"

namespace cellhouse::policy {
namespace {

// The kernel returns at most MAX_ERRNO (include/linux/err.h) from a system call.
constexpr uint64_t kMaxErrno = 4095;
// The largest program export we accept: BPF_MAXINSNS instructions.
constexpr size_t kMaxProgramBytes = BPF_MAXINSNS * sizeof(sock_filter);

struct ContextDeleter {
  void operator()(void* ctx) const { seccomp_release(ctx); }
};
using FilterContext = std::unique_ptr<void, ContextDeleter>;

std::string Hex(uint64_t v) {
  char buf[24];
  // Cannot truncate: 18 characters at most.
  static_cast<void>(std::snprintf(buf, sizeof(buf), "0x%llx", static_cast<unsigned long long>(v)));
  return buf;
}

// ---- Value sets of one argument condition, for proving two rules never match one call. ----

struct ValueSet {
  enum Kind { kInterval, kAllBut, kMasked } kind = kInterval;
  uint64_t lo = 0;  // kInterval: [lo, hi]; kAllBut: everything but lo
  uint64_t hi = 0;
  uint64_t mask = 0;  // kMasked: (x & mask) == lo
  bool empty = false;
};

ValueSet SetOf(const FilterCondition& c) {
  constexpr uint64_t kMax = std::numeric_limits<uint64_t>::max();
  ValueSet s;
  switch (c.op) {
    case ArgCondition::EQ:
      s.lo = s.hi = c.value;
      break;
    case ArgCondition::NE:
      s.kind = ValueSet::kAllBut;
      s.lo = c.value;
      break;
    case ArgCondition::LT:
      s.empty = c.value == 0;
      s.hi = c.value == 0 ? 0 : c.value - 1;
      break;
    case ArgCondition::LE:
      s.hi = c.value;
      break;
    case ArgCondition::GT:
      s.empty = c.value == kMax;
      s.lo = c.value == kMax ? kMax : c.value + 1;
      s.hi = kMax;
      break;
    case ArgCondition::GE:
      s.lo = c.value;
      s.hi = kMax;
      break;
    default:  // MASKED_EQ
      s.kind = ValueSet::kMasked;
      s.lo = c.value;
      s.mask = c.mask;
      s.empty = (c.value & ~c.mask) != 0;
      break;
  }
  return s;
}

// True only when no value is in both sets; false when unsure (the caller then refuses).
bool Disjoint(const ValueSet& a, const ValueSet& b) {
  if (a.empty || b.empty) {
    return true;
  }
  if (a.kind == ValueSet::kInterval && b.kind == ValueSet::kInterval) {
    return a.hi < b.lo || b.hi < a.lo;
  }
  if (a.kind == ValueSet::kMasked && b.kind == ValueSet::kMasked) {
    return ((a.mask & b.mask) & (a.lo ^ b.lo)) != 0;
  }
  if (a.kind == ValueSet::kAllBut || b.kind == ValueSet::kAllBut) {
    const ValueSet& ne = a.kind == ValueSet::kAllBut ? a : b;
    const ValueSet& other = a.kind == ValueSet::kAllBut ? b : a;
    if (other.kind == ValueSet::kInterval) {
      return other.lo == ne.lo && other.hi == ne.lo;
    }
    if (other.kind == ValueSet::kMasked) {
      return other.mask == std::numeric_limits<uint64_t>::max() && other.lo == ne.lo;
    }
    return false;  // two NE conditions always overlap on 64-bit values
  }
  const ValueSet& masked = a.kind == ValueSet::kMasked ? a : b;
  const ValueSet& interval = a.kind == ValueSet::kMasked ? b : a;
  if (interval.lo == interval.hi) {
    return (interval.lo & masked.mask) != masked.lo;
  }
  return false;
}

bool RulesDisjoint(const FilterRule& a, const FilterRule& b) {
  for (const FilterCondition& ca : a.conditions) {
    for (const FilterCondition& cb : b.conditions) {
      if (ca.index == cb.index && Disjoint(SetOf(ca), SetOf(cb))) {
        return true;
      }
    }
  }
  // A rule with an empty condition never matches anything.
  auto never = [](const FilterRule& r) {
    return std::any_of(r.conditions.begin(), r.conditions.end(),
                       [](const FilterCondition& c) { return SetOf(c).empty; });
  };
  return never(a) || never(b);
}

bool SameConditions(const FilterRule& a, const FilterRule& b) {
  if (a.conditions.size() != b.conditions.size()) {
    return false;
  }
  for (size_t i = 0; i < a.conditions.size(); ++i) {
    const FilterCondition& x = a.conditions[i];
    const FilterCondition& y = b.conditions[i];
    if (x.index != y.index || x.op != y.op || x.value != y.value || x.mask != y.mask) {
      return false;
    }
  }
  return true;
}

Problem RuleProblem(const FilterRule& rule, std::string message) {
  return Problem{.file = rule.file,
                 .position = rule.position,
                 .field = rule.field,
                 .message = std::move(message)};
}

std::string Describe(const FilterRule& r) {
  std::string out = StrCat(DescribeAction(r.action), " from ", r.origin);
  if (!r.conditions.empty()) {
    out += " (if";
    for (size_t i = 0; i < r.conditions.size(); ++i) {
      out += StrCat(i == 0 ? " " : " and ", DescribeCondition(r.conditions[i]));
    }
    out += ")";
  }
  return out;
}

// Merges the rules of one system call by level (see the header), appending problems.
std::vector<FilterRule> MergeOneSyscall(std::vector<const FilterRule*> rules,
                                        std::vector<Problem>* problems) {
  std::stable_sort(rules.begin(), rules.end(),
                   [](const FilterRule* a, const FilterRule* b) { return a->level < b->level; });
  std::vector<FilterRule> merged;
  size_t i = 0;
  while (i < rules.size()) {
    size_t end = i;
    while (end < rules.size() && rules[end]->level == rules[i]->level) {
      ++end;
    }
    // An unconditional rule of this level replaces what lower levels said.
    const FilterRule* unconditional = nullptr;
    for (size_t k = i; k < end; ++k) {
      if (rules[k]->conditions.empty()) {
        if (unconditional != nullptr && !(unconditional->action == rules[k]->action)) {
          problems->push_back(RuleProblem(
              *rules[k], StrCat("'", rules[k]->syscall,
                                "' has two unconditional rules with different actions: ",
                                Describe(*unconditional), " and ", Describe(*rules[k]),
                                ". Keep one. Refusing.")));
        }
        if (unconditional == nullptr) {
          unconditional = rules[k];
        }
      }
    }
    if (unconditional != nullptr) {
      merged.clear();
      merged.push_back(*unconditional);
    }
    for (size_t k = i; k < end; ++k) {
      const FilterRule& r = *rules[k];
      if (r.conditions.empty()) {
        continue;
      }
      if (!merged.empty() && merged.front().conditions.empty()) {
        const FilterRule& u = merged.front();
        if (!(u.action == r.action)) {
          problems->push_back(RuleProblem(
              r, StrCat("rule ", Describe(r), " for '", r.syscall,
                        "' would never apply: ", Describe(u),
                        " already covers every call of it (libseccomp cannot layer a "
                        "conditional rule over an unconditional one). Give the unconditional "
                        "rule conditions that exclude these calls, or drop one of them. "
                        "Refusing.")));
        }
        continue;  // same action: subsumed by the unconditional rule
      }
      bool duplicate = std::any_of(merged.begin(), merged.end(), [&](const FilterRule& m) {
        return m.action == r.action && SameConditions(m, r);
      });
      if (!duplicate) {
        merged.push_back(r);
      }
    }
    i = end;
  }
  // Conditional rules with different actions must never match the same call.
  for (size_t a = 0; a < merged.size(); ++a) {
    for (size_t b = a + 1; b < merged.size(); ++b) {
      if (merged[a].action == merged[b].action) {
        continue;
      }
      if (RulesDisjoint(merged[a], merged[b])) {
        continue;
      }
      problems->push_back(RuleProblem(
          merged[b],
          StrCat("'", merged[b].syscall, "': ", Describe(merged[a]), " and ", Describe(merged[b]),
                 " can both match one call. Make their argument conditions exclusive "
                 "(compare the same argument with values that cannot both hold). "
                 "Refusing.")));
    }
  }
  return merged;
}

scmp_compare ToScmp(ArgCondition::Op op) {
  switch (op) {
    case ArgCondition::EQ:
      return SCMP_CMP_EQ;
    case ArgCondition::NE:
      return SCMP_CMP_NE;
    case ArgCondition::LT:
      return SCMP_CMP_LT;
    case ArgCondition::LE:
      return SCMP_CMP_LE;
    case ArgCondition::GT:
      return SCMP_CMP_GT;
    case ArgCondition::GE:
      return SCMP_CMP_GE;
    default:
      return SCMP_CMP_MASKED_EQ;
  }
}

Result<std::vector<sock_filter>> ExportProgram(void* ctx) {
  UniqueFd fd(memfd_create("cellhouse-seccomp", MFD_CLOEXEC));
  if (!fd) {
    return Error::FromErrno(errno, "memfd_create for the seccomp program");
  }
  int rc = seccomp_export_bpf(ctx, fd.get());
  if (rc != 0) {
    return Error::FromErrno(-rc, "seccomp_export_bpf");
  }
  struct stat st {};
  if (fstat(fd.get(), &st) != 0) {
    return Error::FromErrno(errno, "fstat of the seccomp program");
  }
  const auto size = static_cast<size_t>(st.st_size);
  if (size == 0 || size % sizeof(sock_filter) != 0 || size > kMaxProgramBytes) {
    return Error(StrCat("seccomp_export_bpf wrote ", size,
                        " bytes, not a whole program of at most ", BPF_MAXINSNS, " instructions"));
  }
  if (lseek(fd.get(), 0, SEEK_SET) != 0) {
    return Error::FromErrno(errno, "lseek");
  }
  std::vector<sock_filter> program(size / sizeof(sock_filter));
  CH_RETURN_IF_ERROR(ReadFull(fd.get(), std::as_writable_bytes(std::span(program)),
                              "the exported seccomp program"));
  return program;
}

Result<std::vector<sock_filter>> BuildProgram(const FilterAction& default_action,
                                              const std::vector<FilterRule>& rules) {
  FilterContext ctx(seccomp_init(ActionReturnValue(default_action)));
  if (!ctx) {
    return Error(
        StrCat("seccomp_init refused the default action ", DescribeAction(default_action)));
  }
  // Calls made under another ABI (x86 or x32 on an x86-64 kernel) reach the filter with another
  // arch or the x32 bit: kill the process for those too, not just the thread (libseccomp's
  // default).
  int rc = seccomp_attr_set(ctx.get(), SCMP_FLTATR_ACT_BADARCH, SCMP_ACT_KILL_PROCESS);
  if (rc != 0) {
    return Error::FromErrno(-rc, "seccomp_attr_set(SCMP_FLTATR_ACT_BADARCH)");
  }
  // A binary search tree over syscall numbers rather than a linear chain: fewer instructions
  // run per call with long lists. Only a speed hint; the filter's meaning is the same.
  static_cast<void>(seccomp_attr_set(ctx.get(), SCMP_FLTATR_CTL_OPTIMIZE, 2));
  for (const FilterRule& r : rules) {
    std::vector<scmp_arg_cmp> cmps;
    cmps.reserve(r.conditions.size());
    for (const FilterCondition& c : r.conditions) {
      if (c.op == ArgCondition::MASKED_EQ) {
        cmps.push_back({c.index, SCMP_CMP_MASKED_EQ, c.mask, c.value});
      } else {
        cmps.push_back({c.index, ToScmp(c.op), c.value, 0});
      }
    }
    rc = seccomp_rule_add_exact_array(ctx.get(), ActionReturnValue(r.action), r.nr,
                                      static_cast<unsigned>(cmps.size()), cmps.data());
    if (rc != 0) {
      return Error::FromErrno(
          -rc, StrCat("libseccomp refused the rule ", Describe(r), " for '", r.syscall, "'"));
    }
  }
  CH_ASSIGN_OR_RETURN(std::vector<sock_filter> program, ExportProgram(ctx.get()));
  CH_RETURN_IF_ERROR(VerifySeccompProgram(program));
  return program;
}

}  // namespace

std::optional<CompiledFilter> CompileFilter(const FilterSpec& spec,
                                            std::vector<Problem>* problems) {
  const size_t problems_before = problems->size();
  std::map<std::string, std::vector<const FilterRule*>> by_syscall;
  for (const FilterRule& r : spec.rules) {
    by_syscall[r.syscall].push_back(&r);
  }

  CompiledFilter out;
  out.default_action = spec.default_action;
  out.arch = seccomp_arch_native();
  for (auto& [name, rules] : by_syscall) {
    std::vector<FilterRule> merged = MergeOneSyscall(rules, problems);
    bool allowed = false;
    for (FilterRule& r : merged) {
      // A rule with the default's action changes nothing (other actions' rules were proven not
      // to overlap it), and libseccomp refuses it (EACCES).
      if (r.action == spec.default_action) {
        continue;
      }
      allowed |= r.action.action == Seccomp::ALLOW || r.action.action == Seccomp::LOG;
      out.rules.push_back(std::move(r));
    }
    if (allowed) {
      out.allowed.push_back(name);
    }
  }
  if (problems->size() != problems_before) {
    return std::nullopt;
  }
  Result<std::vector<sock_filter>> program = BuildProgram(spec.default_action, out.rules);
  if (!program) {
    problems->push_back(
        {.field = "seccomp",
         .message = StrCat("compiling the filter failed: ", program.error().message())});
    return std::nullopt;
  }
  out.program = std::move(program).value();
  return out;
}

ResolvedSyscall ResolveSyscall(std::string_view name) {
  const std::string n(name);
  if (n.empty() || n.size() > 64) {
    return {};
  }
  int nr = seccomp_syscall_resolve_name_arch(SCMP_ARCH_NATIVE, n.c_str());
  if (nr == __NR_SCMP_ERROR) {
    return {};
  }
  if (nr < 0) {
    return {ResolvedSyscall::kOtherArchitecture, nr};
  }
  return {ResolvedSyscall::kNative, nr};
}

std::string SyscallName(uint32_t arch, int nr) {
  char* name = seccomp_syscall_resolve_num_arch(arch, nr);
  if (name == nullptr) {
    return StrCat("syscall ", nr);
  }
  std::string out(name);
  free(name);  // NOLINT(cppcoreguidelines-no-malloc): libseccomp's allocation (its man page)
  return out;
}

std::string NativeArchitectureName() {
  switch (seccomp_arch_native()) {
    case SCMP_ARCH_X86_64:
      return "x86_64";
    case SCMP_ARCH_AARCH64:
      return "aarch64";
    case SCMP_ARCH_X86:
      return "x86";
    case SCMP_ARCH_RISCV64:
      return "riscv64";
    case SCMP_ARCH_PPC64LE:
      return "ppc64le";
    case SCMP_ARCH_S390X:
      return "s390x";
    default:
      return StrCat("arch ", Hex(seccomp_arch_native()));
  }
}

Status AddNamedRules(std::string_view name, const FilterRule& prototype,
                     std::vector<FilterRule>* rules, OtherArchitecture other,
                     std::vector<std::string>* skipped) {
  CH_ASSIGN_OR_RETURN(std::vector<ExpandedSyscall> calls, ExpandSyscallName(name));
  for (const ExpandedSyscall& call : calls) {
    ResolvedSyscall resolved = ResolveSyscall(call.name);
    if (resolved.kind == ResolvedSyscall::kUnknown) {
      return Error(StrCat("unknown system call ", Quote(call.name),
                          " (libseccomp knows no such name on any architecture)"));
    }
    if (resolved.kind == ResolvedSyscall::kOtherArchitecture) {
      if (other == OtherArchitecture::kSkip) {
        if (skipped != nullptr) {
          skipped->push_back(call.name);
        }
        continue;
      }
      return Error(StrCat("'", call.name, "' is not a system call on ", NativeArchitectureName()));
    }
    FilterRule r = prototype;
    r.syscall = call.name;
    r.nr = resolved.nr;
    if (call.check) {
      r.conditions.push_back({.index = call.check->index,
                              .op = call.check->op,
                              .value = call.check->value,
                              .mask = call.check->mask});
    }
    if (!call.group.empty() && r.origin.find(call.group) == std::string::npos) {
      r.origin += StrCat(" ", call.group);
    }
    rules->push_back(std::move(r));
  }
  return Ok();
}

Result<uint16_t> ParseErrno(std::string_view text) {
  uint64_t value = 0;
  if (!text.empty() && text.front() >= '0' && text.front() <= '9') {
    CH_ASSIGN_OR_RETURN(value, ParseUint64(text, "errno"));
  } else {
    for (int e = 1; e <= static_cast<int>(kMaxErrno); ++e) {
      const char* n = strerrorname_np(e);
      if (n != nullptr && text == n) {
        value = static_cast<uint64_t>(e);
        break;
      }
    }
    if (value == 0) {
      return Error(
          StrCat("unknown errno name ", Quote(text), " (use a name like \"EPERM\" or a number)"));
    }
  }
  if (value == 0 || value > kMaxErrno) {
    return Error(StrCat("errno ", value,
                        " is out of range: give 1 to 4095 (0 would fake success without making "
                        "the call)"));
  }
  return static_cast<uint16_t>(value);
}

std::string ErrnoName(int value) {
  const char* n = strerrorname_np(value);
  return n != nullptr ? std::string(n) : std::to_string(value);
}

uint32_t ActionReturnValue(const FilterAction& action) {
  switch (action.action) {
    case Seccomp::KILL_THREAD:
      return SCMP_ACT_KILL_THREAD;
    case Seccomp::TRAP:
      return SCMP_ACT_TRAP;
    case Seccomp::ERRNO:
      return SCMP_ACT_ERRNO(action.errno_value);
    case Seccomp::LOG:
      return SCMP_ACT_LOG;
    case Seccomp::ALLOW:
      return SCMP_ACT_ALLOW;
    default:
      return SCMP_ACT_KILL_PROCESS;
  }
}

int ActionStrictness(Seccomp::Action action) {
  switch (action) {
    case Seccomp::ALLOW:
      return 0;
    case Seccomp::LOG:
      return 1;
    case Seccomp::ERRNO:
      return 2;
    case Seccomp::TRAP:
      return 3;
    case Seccomp::KILL_THREAD:
      return 4;
    default:  // KILL_PROCESS, and anything unknown is treated as the strictest
      return 5;
  }
}

std::string DescribeAction(const FilterAction& action) {
  std::string name = Seccomp::Action_Name(action.action);
  if (action.action == Seccomp::ERRNO) {
    name += StrCat("(", ErrnoName(action.errno_value), ")");
  }
  return name;
}

std::string DescribeCondition(const FilterCondition& c) {
  const std::string arg = StrCat("arg", c.index);
  switch (c.op) {
    case ArgCondition::EQ:
      return StrCat(arg, " == ", Hex(c.value));
    case ArgCondition::NE:
      return StrCat(arg, " != ", Hex(c.value));
    case ArgCondition::LT:
      return StrCat(arg, " < ", Hex(c.value));
    case ArgCondition::LE:
      return StrCat(arg, " <= ", Hex(c.value));
    case ArgCondition::GT:
      return StrCat(arg, " > ", Hex(c.value));
    case ArgCondition::GE:
      return StrCat(arg, " >= ", Hex(c.value));
    case ArgCondition::MASKED_EQ:
      return StrCat(arg, " & ", Hex(c.mask), " == ", Hex(c.value));
    default:
      return StrCat(arg, " ?");
  }
}

}  // namespace cellhouse::policy
