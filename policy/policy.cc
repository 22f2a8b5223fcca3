#include "policy/policy.h"

#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <google/protobuf/text_format.h>

#include <algorithm>
#include <cerrno>
#include <set>

#include "base/io.h"
#include "base/str_cat.h"
#include "base/strings.h"
#include "policy/oci_import.h"
#include "policy/parse.h"
#include "policy/syscall_groups.h"

namespace cellhouse::policy {

// Declared as CompiledPolicy's friend in policy.h: the only way to make one.
Result<std::shared_ptr<const CompiledPolicy>> FreezePolicy(Policy effective, std::string source,
                                                           CompiledFilter filter,
                                                           std::vector<std::string> notes,
                                                           std::vector<std::string> warnings);

namespace {

// Calls no worker needs whose being allowed is worth a warning: each hands a compromised worker
// a way at other processes, the kernel's larger interfaces, or new code. Allowed on purpose they
// pass (an admin may know better), but never silently.
struct DangerousCall {
  std::string_view name;
  std::string_view why;
};
constexpr DangerousCall kDangerousCalls[] = {
    {"ptrace", "inspects and changes other processes"},
    {"process_vm_readv", "reads other processes' memory"},
    {"process_vm_writev", "writes other processes' memory"},
    {"execve",
     "runs a program: a worker never needs to, and a compromised one would load new code"},
    {"execveat",
     "runs a program: a worker never needs to, and a compromised one would load new code"},
    {"bpf", "loads programs into the kernel"},
    {"perf_event_open", "a large kernel interface, and a side channel on other processes"},
    {"userfaultfd", "a common aid to kernel exploits"},
    {"io_uring_setup", "a large kernel interface that bypasses the filter for the I/O it queues"},
    {"init_module", "loads kernel code"},
    {"finit_module", "loads kernel code"},
    {"kexec_load", "replaces the running kernel"},
    {"kexec_file_load", "replaces the running kernel"},
    {"mount", "changes the worker's file system view"},
    {"unshare", "makes new namespaces (more kernel surface, e.g. user namespaces)"},
    {"setns", "joins other namespaces"},
    {"keyctl", "the kernel keyring"},
    {"add_key", "the kernel keyring"},
};

// "warning: the filter allows 'ptrace' (...)" for each dangerous call the filter lets through.
std::vector<std::string> DangerousCallWarnings(const CompiledFilter& filter) {
  std::vector<std::string> out;
  for (const DangerousCall& d : kDangerousCalls) {
    if (std::binary_search(filter.allowed.begin(), filter.allowed.end(), d.name)) {
      out.push_back(StrCat("the filter allows '", d.name, "' (", d.why,
                           "); no worker needs it. Remove it unless you mean it"));
    }
  }
  return out;
}

// " a b c": the calls the filter lets through that the built-in worker list (@worker) does not.
std::string CallsBeyondWorkerList(const CompiledFilter& filter) {
  std::set<std::string> worker;
  Result<std::vector<ExpandedSyscall>> calls = ExpandSyscallName("@worker");
  if (calls) {
    for (const ExpandedSyscall& c : *calls) {
      worker.insert(c.name);
    }
  }
  std::string out;
  for (const std::string& name : filter.allowed) {
    if (worker.count(name) == 0) {
      out += StrCat(" ", name);
    }
  }
  return out;
}

constexpr std::string_view kTextExtension = ".textproto";
constexpr std::string_view kJsonExtension = ".json";
constexpr std::string_view kProfileExtension = ".seccomp.json";

bool EndsWith(std::string_view text, std::string_view suffix) {
  return text.size() >= suffix.size() && text.substr(text.size() - suffix.size()) == suffix;
}

std::string Basename(std::string_view path) {
  size_t slash = path.rfind('/');
  return std::string(slash == std::string_view::npos ? path : path.substr(slash + 1));
}

std::string Dirname(std::string_view path) {
  size_t slash = path.rfind('/');
  if (slash == std::string_view::npos) {
    return ".";
  }
  if (slash == 0) {
    return "/";
  }
  return std::string(path.substr(0, slash));
}

// RLIMIT_* of each Rlimit.Resource (getrlimit(2)).
int RlimitNumber(Rlimit::Resource r) {
  switch (r) {
    case Rlimit::CPU:
      return RLIMIT_CPU;
    case Rlimit::FSIZE:
      return RLIMIT_FSIZE;
    case Rlimit::DATA:
      return RLIMIT_DATA;
    case Rlimit::STACK:
      return RLIMIT_STACK;
    case Rlimit::CORE:
      return RLIMIT_CORE;
    case Rlimit::NOFILE:
      return RLIMIT_NOFILE;
    case Rlimit::AS:
      return RLIMIT_AS;
    case Rlimit::NPROC:
      return RLIMIT_NPROC;
    case Rlimit::MEMLOCK:
      return RLIMIT_MEMLOCK;
    case Rlimit::LOCKS:
      return RLIMIT_LOCKS;
    case Rlimit::SIGPENDING:
      return RLIMIT_SIGPENDING;
    case Rlimit::MSGQUEUE:
      return RLIMIT_MSGQUEUE;
    case Rlimit::NICE:
      return RLIMIT_NICE;
    case Rlimit::RTPRIO:
      return RLIMIT_RTPRIO;
    case Rlimit::RTTIME:
      return RLIMIT_RTTIME;
    default:
      return -1;
  }
}

// Validation, profile import and compilation of a parsed policy; the shared tail of every
// loader. `profile_dir` resolves a relative oci_profile.
std::optional<std::shared_ptr<const CompiledPolicy>> Compile(Policy policy, std::string source,
                                                             const std::string& profile_dir,
                                                             const ModelFacts* facts,
                                                             std::vector<Problem>* problems) {
  const size_t before = problems->size();
  ApplyDefaultsAndValidate(&policy, facts, problems);
  std::optional<OciImport> profile;
  if (!policy.seccomp().oci_profile().empty()) {
    std::string path = policy.seccomp().oci_profile();
    if (path.front() != '/') {
      path = StrCat(profile_dir, "/", path);
    }
    profile = LoadOciProfile(path, problems);
  }
  std::vector<std::string> merge_notes;
  FilterSpec spec = BuildFilterSpec(policy, profile ? &*profile : nullptr, problems, &merge_notes);
  if (problems->size() != before) {
    return std::nullopt;
  }
  // The effective default action (the policy's; KILL_PROCESS unless written).
  policy.mutable_seccomp()->set_default_action(spec.default_action.action);
  if (spec.default_action.action == Seccomp::ERRNO) {
    policy.mutable_seccomp()->set_default_error(ErrnoName(spec.default_action.errno_value));
  }
  std::optional<CompiledFilter> filter = CompileFilter(spec, problems);
  if (!filter) {
    return std::nullopt;
  }
  std::vector<std::string> notes;
  if (profile) {
    notes.push_back(StrCat("imported ", profile->rules.size(), " rules from the OCI profile ",
                           Quote(policy.seccomp().oci_profile())));
    notes.insert(notes.end(), merge_notes.begin(), merge_notes.end());
    if (!policy.seccomp().use_builtin_allowlist()) {
      std::string beyond = CallsBeyondWorkerList(*filter);
      if (!beyond.empty()) {
        notes.push_back(
            StrCat("calls the profile allows that the built-in worker list does not:", beyond));
      }
    }
    if (!profile->skipped_syscalls.empty()) {
      std::string names;
      for (const std::string& n : profile->skipped_syscalls) {
        names += StrCat(" ", n);
      }
      notes.push_back(
          StrCat("profile names not on ", NativeArchitectureName(), " (skipped):", names));
    }
    if (!profile->skipped_rules.empty()) {
      std::string rules;
      for (const std::string& r : profile->skipped_rules) {
        rules += StrCat(rules.empty() ? "" : "; ", r);
      }
      notes.push_back(StrCat("profile rules skipped: ", rules));
    }
    for (const std::string& r : profile->resolved) {
      notes.push_back(StrCat("profile rules disagree on ", r));
    }
  }
  std::vector<std::string> warnings = DangerousCallWarnings(*filter);
  Result<std::shared_ptr<const CompiledPolicy>> frozen =
      FreezePolicy(std::move(policy), std::move(source), std::move(*filter), std::move(notes),
                   std::move(warnings));
  if (!frozen) {
    problems->push_back({.message = frozen.error().message()});
    return std::nullopt;
  }
  return *frozen;
}

Error ProblemsError(std::string_view what, std::string_view file, const SourceMap& map,
                    const std::vector<Problem>& problems) {
  return Error(StrCat(what, ":\n", FormatProblems(file, map, problems)));
}

// Loads one file, appending its problems formatted to `errors`; nullopt when it has any.
std::optional<std::shared_ptr<const CompiledPolicy>> LoadOne(std::string_view content,
                                                             const std::string& path,
                                                             const ModelFacts* facts,
                                                             std::vector<std::string>* errors) {
  Policy policy;
  SourceMap map;
  std::vector<Problem> problems;
  const std::string base = Basename(path);
  std::string stem;
  bool parsed = false;
  if (EndsWith(base, kTextExtension)) {
    stem = base.substr(0, base.size() - kTextExtension.size());
    parsed = ParseTextMessage(content, &policy, &map, &problems);
  } else if (EndsWith(base, kJsonExtension) && !EndsWith(base, kProfileExtension)) {
    stem = base.substr(0, base.size() - kJsonExtension.size());
    parsed = ParseJsonMessage(content, &policy, &map, &problems);
  } else {
    problems.push_back(
        {.message = StrCat("not a policy file name: policies are NAME", kTextExtension,
                           " (text format) or NAME", kJsonExtension, " (JSON)")});
  }
  std::optional<std::shared_ptr<const CompiledPolicy>> out;
  if (parsed) {
    if (!policy.name().empty() && policy.name() != stem) {
      problems.push_back(
          {.field = "name",
           .message = StrCat("the policy is named ", Quote(policy.name()), " but its file is ",
                             Quote(base), ": rename one so they match (", policy.name(),
                             kTextExtension, "). Refusing.")});
    }
    out = Compile(std::move(policy), path, Dirname(path), facts, &problems);
  }
  if (!problems.empty()) {
    errors->push_back(FormatProblems(path, map, problems));
    return std::nullopt;
  }
  return out;
}

bool IsPolicyFileName(std::string_view name) {
  if (name.empty() || name.front() == '.') {
    return false;
  }
  if (EndsWith(name, kProfileExtension)) {
    return false;
  }
  return EndsWith(name, kTextExtension) || EndsWith(name, kJsonExtension);
}

std::string Indent(std::string_view text, std::string_view prefix) {
  std::string out;
  for (std::string_view line : Split(text, '\n')) {
    if (line.empty()) {
      continue;
    }
    out += StrCat(prefix, line, "\n");
  }
  return out;
}

}  // namespace

Result<std::shared_ptr<const CompiledPolicy>> FreezePolicy(Policy effective, std::string source,
                                                           CompiledFilter filter,
                                                           std::vector<std::string> notes,
                                                           std::vector<std::string> warnings) {
  std::shared_ptr<CompiledPolicy> p(new CompiledPolicy());
  for (const Rlimit& r : effective.rlimits()) {
    const int number = RlimitNumber(r.resource());
    if (number < 0) {
      return Error(StrCat("rlimit ", r.resource(), " has no RLIMIT_ number"));
    }
    p->rlimits_.push_back({.resource = number, .soft = r.soft(), .hard = r.hard()});
  }
  p->proto_ = std::move(effective);
  p->source_ = std::move(source);
  p->filter_ = std::move(filter);
  p->notes_ = std::move(notes);
  p->warnings_ = std::move(warnings);
  return std::shared_ptr<const CompiledPolicy>(std::move(p));
}

bool CompiledPolicy::MayUse(uid_t uid, gid_t gid, std::span<const gid_t> supplementary) const {
  const auto& uids = proto_.uids();
  if (std::find(uids.begin(), uids.end(), uid) != uids.end()) {
    return true;
  }
  const auto& gids = proto_.gids();
  if (std::find(gids.begin(), gids.end(), gid) != gids.end()) {
    return true;
  }
  return std::any_of(supplementary.begin(), supplementary.end(),
                     [&](gid_t g) { return std::find(gids.begin(), gids.end(), g) != gids.end(); });
}

bool CompiledPolicy::NamesGatewayTenant(std::string_view tenant) const {
  const auto& names = proto_.gateway_tenants();
  return std::find(names.begin(), names.end(), tenant) != names.end();
}

namespace {

// 1 to `max` bytes, each an ASCII letter, digit or one of `punctuation`: safe in log lines and
// error messages as they are.
bool PlainName(std::string_view name, size_t max, std::string_view punctuation) {
  if (name.empty() || name.size() > max) return false;
  return std::all_of(name.begin(), name.end(), [&](char c) {
    return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
           punctuation.find(c) != std::string_view::npos;
  });
}

}  // namespace

bool ValidGatewayTenant(std::string_view tenant) {
  return PlainName(tenant, kMaxGatewayTenantBytes, "_.@-");
}

bool ValidModelName(std::string_view name) {
  return PlainName(name, kMaxModelNameBytes, "._:-") && name[0] != '.' && name[0] != '-';
}

bool CompiledPolicy::AllowsModel(std::string_view model) const {
  const auto& names = proto_.models();
  return names.empty() || std::find(names.begin(), names.end(), model) != names.end();
}

uint64_t CompiledPolicy::CloneNamespaceFlags() const {
  const Namespaces& ns = proto_.namespaces();
  uint64_t flags = 0;
  if (ns.user()) {
    flags |= CLONE_NEWUSER;
  }
  if (ns.pid()) {
    flags |= CLONE_NEWPID;
  }
  if (ns.mount()) {
    flags |= CLONE_NEWNS;
  }
  if (ns.uts()) {
    flags |= CLONE_NEWUTS;
  }
  if (ns.ipc()) {
    flags |= CLONE_NEWIPC;
  }
  if (ns.net()) {
    flags |= CLONE_NEWNET;
  }
  if (ns.cgroup()) {
    flags |= CLONE_NEWCGROUP;
  }
  return flags;
}

uint64_t CompiledPolicy::WorstCaseSessionBytes(const ModelFacts& facts,
                                               uint32_t context_length) const {
  if (context_length == 0) {
    context_length = proto_.budgets().context_length();
  }
  if (context_length == 0) {
    context_length = facts.seq_len;
  }
  return PolicySessionBytes(proto_, facts, context_length);
}

Result<std::shared_ptr<const CompiledPolicy>> CompilePolicy(Policy policy,
                                                            const ModelFacts* facts) {
  std::vector<Problem> problems;
  const std::string name = policy.name();
  auto out = Compile(std::move(policy), "", ".", facts, &problems);
  if (!out) {
    return ProblemsError(StrCat("policy ", Quote(name), " is invalid"), StrCat("policy ", name),
                         SourceMap(), problems);
  }
  return *out;
}

Result<std::shared_ptr<const CompiledPolicy>> LoadPolicyFromString(std::string_view content,
                                                                   const std::string& path,
                                                                   const ModelFacts* facts) {
  std::vector<std::string> errors;
  auto out = LoadOne(content, path, facts, &errors);
  if (!out) {
    return Error(StrCat("policy file ", Quote(path), " is invalid:\n", errors.front()));
  }
  return *out;
}

Result<std::shared_ptr<const CompiledPolicy>> LoadPolicyFile(const std::string& path,
                                                             const ModelFacts* facts) {
  Result<std::string> content = ReadFileToString(path, kMaxPolicyFileBytes);
  if (!content) {
    return std::move(content).error().Context("loading policy file");
  }
  return LoadPolicyFromString(*content, path, facts);
}

Result<PolicySet> LoadPolicyDirectory(const std::string& dir, const ModelFacts* facts) {
  CH_ASSIGN_OR_RETURN(std::vector<std::string> names, ListDirectory(dir));
  PolicySet set;
  std::vector<std::string> errors;
  std::map<std::string, std::string> first_file;  // policy name -> file that defined it
  size_t files = 0;
  for (const std::string& name : names) {
    if (!IsPolicyFileName(name)) {
      continue;
    }
    const std::string path = StrCat(dir, "/", name);
    struct stat st {};
    if (stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) {
      continue;  // dirs, fifos, dangling
    }
    ++files;
    Result<std::string> content = ReadFileToString(path, kMaxPolicyFileBytes);
    if (!content) {
      errors.push_back(StrCat(path, ": ", content.error().message()));
      continue;
    }
    auto loaded = LoadOne(*content, path, facts, &errors);
    if (!loaded) {
      continue;
    }
    const std::string& policy_name = (*loaded)->name();
    auto [it, inserted] = first_file.emplace(policy_name, path);
    if (!inserted) {
      errors.push_back(StrCat(path, ": name: policy ", Quote(policy_name), " is also defined in ",
                              Quote(it->second), ": names must be unique. Refusing."));
      continue;
    }
    set.emplace(policy_name, std::move(*loaded));
  }
  if (files == 0) {
    return Error(StrCat("policy directory ", Quote(dir), " has no policy files (NAME",
                        kTextExtension, " or NAME", kJsonExtension,
                        "): every session would be refused. Refusing."));
  }
  if (!errors.empty()) {
    std::string text;
    for (const std::string& e : errors) {
      text += StrCat("\n", e);
    }
    return Error(StrCat("policy directory ", Quote(dir), ": ", errors.size(), " of ", files,
                        " files are invalid; nothing was loaded:", text));
  }
  return set;
}

std::string DescribePolicy(const CompiledPolicy& policy) {
  std::string out = StrCat("policy ", Quote(policy.name()));
  if (!policy.source().empty()) {
    out += StrCat(" (", policy.source(), ")");
  }
  out += "\n";
  if (!policy.proto().description().empty()) {
    out += StrCat("  ", policy.proto().description(), "\n");
  }
  std::string text;
  google::protobuf::TextFormat::Printer printer;
  printer.SetUseShortRepeatedPrimitives(true);
  printer.PrintToString(policy.proto(), &text);
  out += StrCat("effective policy:\n", Indent(text, "  "));
  const CompiledFilter& f = policy.filter();
  out += StrCat("seccomp filter: ", NativeArchitectureName(), ", ", f.program.size(),
                " instructions\n");
  out += StrCat("  default action: ", DescribeAction(f.default_action),
                "; calls from any other architecture: KILL_PROCESS\n");
  out += StrCat("  allowed system calls (", f.allowed.size(), "):");
  for (const std::string& name : f.allowed) {
    out += StrCat(" ", name);
  }
  out += "\n  rules:\n";
  for (const FilterRule& r : f.rules) {
    std::string line = StrCat("    ", r.syscall, " ", DescribeAction(r.action));
    for (size_t i = 0; i < r.conditions.size(); ++i) {
      line += StrCat(i == 0 ? " if " : " and ", DescribeCondition(r.conditions[i]));
    }
    line += StrCat("  [", r.origin, "]");
    if (!r.comment.empty()) {
      line += StrCat("  # ", r.comment);
    }
    out += StrCat(line, "\n");
  }
  for (const std::string& note : policy.notes()) {
    out += StrCat("  note: ", note, "\n");
  }
  for (const std::string& warning : policy.warnings()) {
    out += StrCat("  warning: ", warning, "\n");
  }
  return out;
}

PolicyCheck CheckPolicyFiles(std::span<const std::string> paths, const ModelFacts* facts) {
  PolicyCheck check{.ok = true};
  std::map<std::string, std::string> seen;
  for (const std::string& path : paths) {
    Result<std::shared_ptr<const CompiledPolicy>> p = LoadPolicyFile(path, facts);
    if (!p) {
      check.ok = false;
      check.report += StrCat(p.error().message(), "\n");
      continue;
    }
    auto [it, inserted] = seen.emplace((*p)->name(), path);
    if (!inserted) {
      check.ok = false;
      check.report += StrCat(path, ": name: policy ", Quote((*p)->name()), " is also defined in ",
                             Quote(it->second), ": names must be unique. Refusing.\n");
      continue;
    }
    check.report += StrCat(DescribePolicy(**p), "\n");
  }
  return check;
}

}  // namespace cellhouse::policy
