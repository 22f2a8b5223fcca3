#include "policy/oci_import.h"

#include <linux/audit.h>
#include <sched.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/syscall.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cerrno>

#include "base/io.h"
#include "base/str_cat.h"
#include "policy/policy.h"
#include "tests/policy/policy_test_util.h"
#include "tests/support/test_env.h"

namespace cellhouse::policy {
namespace {

using testing::CompileText;
using ::testing::Contains;
using testing::Evaluate;
using ::testing::HasSubstr;

std::string ProfilePath() {
  return cellhouse::testing::SourceDir() + "/tests/policy/data/worker.seccomp.json";
}

TEST(OciImportTest, ImportsRulesAndSkipsWhatDoesNotApply) {
  std::vector<Problem> problems;
  std::optional<OciImport> imported = LoadOciProfile(ProfilePath(), &problems);
  ASSERT_TRUE(imported) << FormatProblems("", SourceMap(), problems);
  EXPECT_EQ(imported->default_action, (FilterAction{Seccomp::ERRNO, EPERM}));
  // Calls of other architectures in a multi-arch profile.
  for (const char* name : {"_llseek", "arm_fadvise64_64", "fstat64", "mmap2", "sigreturn"}) {
    EXPECT_THAT(imported->skipped_syscalls, Contains(name));
  }
  // A rule that needs CAP_SYS_ADMIN (a worker has none) and one for ppc64le only.
  ASSERT_EQ(imported->skipped_rules.size(), 2u);
  EXPECT_THAT(imported->skipped_rules[0], HasSubstr("syscalls[7]: includes caps CAP_SYS_ADMIN"));
  EXPECT_THAT(imported->skipped_rules[1], HasSubstr("syscalls[8]: includes other arches"));
}

// The round trip: a Docker-format profile, imported into a policy, compiled, and evaluated call
// by call against what the profile says.
// (With the policy's default set to the profile's, so every call behaves as the profile says.)
TEST(OciImportTest, CompiledProfileBehavesAsWritten) {
  auto p =
      CompileText("seccomp { use_builtin_allowlist: false default_action: ERRNO oci_profile: \"" +
                  ProfilePath() + "\" }");
  ASSERT_TRUE(p) << p.error().message();
  const CompiledPolicy& policy = **p;
  EXPECT_EQ(policy.proto().seccomp().default_action(), Seccomp::ERRNO);
  EXPECT_EQ(policy.proto().seccomp().default_error(), "EPERM");

  EXPECT_EQ(Evaluate(policy, __NR_read), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_uname), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_execve), SECCOMP_RET_ERRNO | EPERM);
  EXPECT_EQ(Evaluate(policy, __NR_mmap, {0, 4096, PROT_READ}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_mmap, {0, 4096, PROT_EXEC}), SECCOMP_RET_ERRNO | EPERM);
  // Several args on one index are alternatives (runc's reading).
  EXPECT_EQ(Evaluate(policy, __NR_personality, {0}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_personality, {8}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_personality, {0xffffffff}), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_personality, {1}), SECCOMP_RET_ERRNO | EPERM);
  // Args on distinct indexes must all hold; errnoRet per rule.
  EXPECT_EQ(Evaluate(policy, __NR_socket, {AF_INET, SOCK_STREAM}),
            SECCOMP_RET_ERRNO | EAFNOSUPPORT);
  EXPECT_EQ(Evaluate(policy, __NR_socket, {AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC}),
            SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_socket, {AF_UNIX, SOCK_STREAM}), SECCOMP_RET_ERRNO | EPERM);
  EXPECT_EQ(Evaluate(policy, __NR_clone3), SECCOMP_RET_ERRNO | ENOSYS);
  EXPECT_EQ(Evaluate(policy, __NR_clone, {CLONE_VM | CLONE_THREAD | CLONE_SIGHAND}),
            SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(policy, __NR_clone, {CLONE_NEWUSER}), SECCOMP_RET_ERRNO | EPERM);
  // The CAP_SYS_ADMIN rule was skipped: mount gets the default.
  EXPECT_EQ(Evaluate(policy, __NR_mount), SECCOMP_RET_ERRNO | EPERM);
  EXPECT_EQ(Evaluate(policy, __NR_ptrace), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(policy, __NR_sched_setaffinity), SECCOMP_RET_LOG);  // minKernel 4.14
  EXPECT_EQ(Evaluate(policy, __NR_read, {}, AUDIT_ARCH_I386), SECCOMP_RET_KILL_PROCESS);

  std::string d = DescribePolicy(policy);
  EXPECT_THAT(d, HasSubstr("socket ERRNO(EAFNOSUPPORT) if arg0 != 0x1  [profile syscalls[3]]"));
  EXPECT_THAT(d, HasSubstr("note: profile rules skipped: syscalls[7]"));
  EXPECT_THAT(d, HasSubstr("(skipped): _llseek"));
  EXPECT_THAT(d, HasSubstr("replaces the built-in worker list"));
}

// A profile's defaultAction never replaces the policy's: unset, calls no rule allows are killed
// (and the audit record names them), whatever the profile says.
TEST(OciImportTest, TheProfilesDefaultActionIsNotTaken) {
  auto p = CompileText("seccomp { use_builtin_allowlist: false oci_profile: \"" + ProfilePath() +
                       "\" }");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ((*p)->proto().seccomp().default_action(), Seccomp::KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_execve), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_read), SECCOMP_RET_ALLOW);
  // The profile's explicit per-call answers stay.
  EXPECT_EQ(Evaluate(**p, __NR_clone3), SECCOMP_RET_ERRNO | ENOSYS);
  EXPECT_THAT(DescribePolicy(**p),
              HasSubstr("note: the profile's defaultAction ERRNO(EPERM) is not used"));
}

TEST(OciImportTest, PolicyDefaultWinsAndBuiltInListJoins) {
  auto p = CompileText("seccomp { default_action: KILL_PROCESS oci_profile: \"" + ProfilePath() +
                       "\" }");
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(Evaluate(**p, __NR_execve), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_getrandom), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**p, __NR_mmap, {0, 0, PROT_EXEC}), SECCOMP_RET_KILL_PROCESS);
}

TEST(OciImportTest, RelativeProfilePathIsBesideThePolicy) {
  cellhouse::testing::TempDir dir;
  Result<std::string> profile = ReadFileToString(ProfilePath(), 1 << 20);
  ASSERT_TRUE(profile);
  ASSERT_EQ(mkdir(dir.File("profiles").c_str(), 0700), 0);
  ASSERT_TRUE(CreateFileWithContent(dir.File("profiles/w.seccomp.json"), *profile, 0600));
  ASSERT_TRUE(CreateFileWithContent(dir.File("p.textproto"), R"(name: "p"
gids: 100
host_uids { first: 1879048192 count: 1024 }
cgroup { memory_max_bytes: 1073741824 }
seccomp { use_builtin_allowlist: false oci_profile: "profiles/w.seccomp.json" }
)",
                                    0600));
  auto set = LoadPolicyDirectory(dir.path(), nullptr);
  ASSERT_TRUE(set) << set.error().message();
  EXPECT_EQ(Evaluate(*set->at("p"), __NR_clone3), SECCOMP_RET_ERRNO | ENOSYS);
}

TEST(OciImportTest, RefusalsNameTheProfilePosition) {
  struct Case {
    const char* json;
    const char* position;
    const char* words;
  };
  const Case cases[] = {
      {R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["read"], "action": "SCMP_ACT_EXPLODE"}]})",
       "p.json:2:36: syscalls[0].action: ", "unknown action 'SCMP_ACT_EXPLODE'"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["read", "reed"], "action": "SCMP_ACT_ALLOW"}]})",
       "p.json:2:35: syscalls[0].names[1]: ", "unknown system call 'reed'"},
      {R"({"defaultAction": "SCMP_ACT_ALLOW"})",
       "p.json:1:2: default_action: ", "would not be confined"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["ptrace"], "action": "SCMP_ACT_TRACE"}]})",
       "p.json:2:38: syscalls[0].action: ", "no tracer"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "architectures": ["SCMP_ARCH_Z80"]})",
       "p.json:1:55: architectures[0]: ", "unknown architecture"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW",
                "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_ABOUT"}]}]})",
       "p.json:3:26: syscalls[0].args[0]: ", "unknown operator"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "flags": ["SECCOMP_FILTER_FLAG_SPEC_ALLOW"]})",
       "p.json:1:47: flags[0]: ", "Speculative Store Bypass"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "listenerPath": "/run/agent.sock"})",
       "p.json:1:37: listener_path: ", "not supported"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "syscals": []})",
       "p.json:1:37: syscals: ", "unknown field 'syscals'. Did you mean 'syscalls'?"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["kill"], "action": "SCMP_ACT_ERRNO",
                "args": [{"index": 1, "value": 9, "op": "SCMP_CMP_EQ"}]}]})",
       "p.json:3:16: syscalls[1]: ", "would never apply"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["kill"], "action": "SCMP_ACT_ERRNO", "errnoRet": 2, "errno": "EPERM"}]})",
       "p.json:2:79: syscalls[0].errno: ", "name different errors"},
      {R"({"defaultAction": "SCMP_ACT_ERRNO", "defaultErrno": "ENOTANERRNO"})",
       "p.json:1:37: default_errno: ", "unknown errno name 'ENOTANERRNO'"},
  };
  for (const Case& c : cases) {
    std::vector<Problem> problems;
    std::optional<OciImport> imported = ImportOciProfile(c.json, "p.json", &problems);
    std::string text;
    if (imported) {
      // Contradictions between rules show when they are merged.
      FilterSpec spec{.default_action = imported->default_action, .rules = imported->rules};
      EXPECT_FALSE(CompileFilter(spec, &problems)) << c.json;
    }
    text = FormatProblems("policy.textproto", SourceMap(), problems);
    EXPECT_THAT(text, HasSubstr(c.position)) << c.json;
    EXPECT_THAT(text, HasSubstr(c.words)) << c.json;
  }
}

// The real profiles container runtimes ship import as they are (tests/policy/data/oci/README.md):
// Podman's errno names and its two setns rules, Docker's "x86" architecture name, both files'
// multi-architecture lists.
std::string RealProfile(const std::string& name) {
  return cellhouse::testing::SourceDir() + "/tests/policy/data/oci/" + name + ".seccomp.json";
}

TEST(OciImportTest, DockerAndPodmanProfilesImportUnmodified) {
  for (const char* name : {"docker-default", "podman-debian"}) {
    SCOPED_TRACE(name);
    std::vector<Problem> problems;
    std::optional<OciImport> imported = LoadOciProfile(RealProfile(name), &problems);
    ASSERT_TRUE(imported) << FormatProblems("", SourceMap(), problems);
    EXPECT_GT(imported->rules.size(), 250u);
    EXPECT_FALSE(imported->skipped_rules.empty());  // capabilities a worker lacks
  }
  std::vector<Problem> problems;
  std::optional<OciImport> podman = LoadOciProfile(RealProfile("podman-debian"), &problems);
  ASSERT_TRUE(podman);
  EXPECT_EQ(podman->default_action, (FilterAction{Seccomp::ERRNO, ENOSYS}));  // defaultErrno
  ASSERT_EQ(podman->resolved.size(), 1u);
  EXPECT_THAT(podman->resolved[0], HasSubstr("setns: syscalls[1] says ALLOW and syscalls[15] says "
                                             "ERRNO(EPERM); the stricter, ERRNO(EPERM), is kept"));
}

// With the built-in worker list (the default) a profile only ever makes the filter stricter: the
// ~300 calls Docker allows (execve and ptrace among them) do not widen the worker's list, and
// its errno answers to calls outside it do not soften their kill.
TEST(OciImportTest, WithTheWorkerListAProfileOnlyNarrows) {
  auto worker_only = CompileText("");
  ASSERT_TRUE(worker_only) << worker_only.error().message();
  for (const char* name : {"docker-default", "podman-debian"}) {
    SCOPED_TRACE(name);
    auto p = CompileText(StrCat("seccomp { oci_profile: \"", RealProfile(name), "\" }"));
    ASSERT_TRUE(p) << p.error().message();
    EXPECT_EQ((*p)->allowed_syscalls(), (*worker_only)->allowed_syscalls());
    EXPECT_EQ((*p)->proto().seccomp().default_action(), Seccomp::KILL_PROCESS);
    for (int nr : {__NR_execve, __NR_ptrace, __NR_clone3, __NR_setns, __NR_mount}) {
      EXPECT_EQ(Evaluate(**p, nr), SECCOMP_RET_KILL_PROCESS) << nr;
    }
    // The worker list's own conditions stay, though both profiles allow mmap outright.
    EXPECT_EQ(Evaluate(**p, __NR_mmap, {0, 4096, PROT_READ | PROT_EXEC}), SECCOMP_RET_KILL_PROCESS);
    EXPECT_EQ(Evaluate(**p, __NR_mmap, {0, 4096, PROT_READ}), SECCOMP_RET_ALLOW);
    EXPECT_TRUE((*p)->warnings().empty());
    std::string d = DescribePolicy(**p);
    EXPECT_THAT(d, HasSubstr("can only make the built-in worker list stricter"));
    EXPECT_THAT(d, HasSubstr("the worker list does not allow the call (it stays KILL_PROCESS): "
                             "accept"));
    EXPECT_THAT(d, HasSubstr("ptrace"));
  }
  // What a profile denies that the list allows does join.
  cellhouse::testing::TempDir dir;
  ASSERT_TRUE(CreateFileWithContent(dir.File("deny.seccomp.json"), R"({
  "defaultAction": "SCMP_ACT_ERRNO",
  "syscalls": [{"names": ["read", "write", "execve"], "action": "SCMP_ACT_ALLOW"},
               {"names": ["getrandom"], "action": "SCMP_ACT_ERRNO", "errno": "ENOSYS"}]})",
                                    0600));
  auto p = CompileText(StrCat("seccomp { oci_profile: \"", dir.File("deny.seccomp.json"), "\" }"));
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ(Evaluate(**p, __NR_getrandom), SECCOMP_RET_ERRNO | ENOSYS);
  EXPECT_EQ(Evaluate(**p, __NR_execve), SECCOMP_RET_KILL_PROCESS);
  EXPECT_EQ(Evaluate(**p, __NR_read), SECCOMP_RET_ALLOW);
  EXPECT_THAT(DescribePolicy(**p),
              HasSubstr("calls the worker list allows and the profile denies: getrandom"));
}

// Without the built-in list the profile is the allow-list, as written: it may widen, but never
// silently (a note lists what it adds, a warning names ptrace and execve).
TEST(OciImportTest, WithoutTheWorkerListAProfileAppliesAsWrittenWithWarnings) {
  auto docker = CompileText(StrCat("seccomp { use_builtin_allowlist: false oci_profile: \"",
                                   RealProfile("docker-default"), "\" }"));
  ASSERT_TRUE(docker) << docker.error().message();
  EXPECT_EQ(Evaluate(**docker, __NR_execve), SECCOMP_RET_ALLOW);
  EXPECT_EQ(Evaluate(**docker, __NR_ptrace), SECCOMP_RET_ALLOW);           // minKernel 4.8
  EXPECT_EQ(Evaluate(**docker, __NR_modify_ldt), SECCOMP_RET_ALLOW);       // arches amd64 x32 x86
  EXPECT_EQ(Evaluate(**docker, __NR_clone3), SECCOMP_RET_ERRNO | ENOSYS);  // its own answer
  EXPECT_EQ(Evaluate(**docker, __NR_mount), SECCOMP_RET_KILL_PROCESS);     // CAP_SYS_ADMIN only
  EXPECT_THAT((*docker)->warnings(), Contains(HasSubstr("'ptrace'")));
  EXPECT_THAT((*docker)->warnings(), Contains(HasSubstr("'execve'")));
  std::string d = DescribePolicy(**docker);
  EXPECT_THAT(d, HasSubstr("calls the profile allows that the built-in worker list does not: "));
  EXPECT_THAT(d, HasSubstr("warning: the filter allows 'ptrace'"));

  auto podman = CompileText(StrCat("seccomp { use_builtin_allowlist: false oci_profile: \"",
                                   RealProfile("podman-debian"), "\" }"));
  ASSERT_TRUE(podman) << podman.error().message();
  EXPECT_EQ(Evaluate(**podman, __NR_setns), SECCOMP_RET_ERRNO | EPERM);
  // Podman's audit-netlink rule: errno given by name.
  EXPECT_EQ(Evaluate(**podman, __NR_socket, {16, SOCK_RAW, 9}), SECCOMP_RET_ERRNO | EINVAL);
  EXPECT_EQ(Evaluate(**podman, __NR_socket, {AF_UNIX, SOCK_STREAM, 0}), SECCOMP_RET_ALLOW);
  EXPECT_THAT(DescribePolicy(**podman), HasSubstr("note: profile rules disagree on setns"));
}

TEST(OciImportTest, MissingProfileIsAProblemOfThePolicy) {
  auto p = CompileText("seccomp { oci_profile: \"/nonexistent/x.seccomp.json\" }");
  ASSERT_FALSE(p);
  EXPECT_THAT(p.error().message(), HasSubstr("/nonexistent/x.seccomp.json: cannot read"));
}

}  // namespace
}  // namespace cellhouse::policy
