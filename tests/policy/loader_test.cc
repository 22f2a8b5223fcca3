#include <sched.h>
#include <sys/resource.h>
#include <sys/stat.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "base/io.h"
#include "policy/policy.h"
#include "tests/policy/policy_test_util.h"
#include "tests/support/test_env.h"

namespace cellhouse::policy {
namespace {

using testing::CompileText;
using ::testing::HasSubstr;
using testing::kMinimalPolicy;
using ::testing::Not;
using testing::SmallModel;

std::string DataFile(const std::string& name) {
  return cellhouse::testing::SourceDir() + "/tests/policy/data/" + name;
}

// A policy file named after its policy, in `dir`.
std::string WritePolicy(const cellhouse::testing::TempDir& dir, const std::string& name,
                        const std::string& body) {
  std::string path = dir.File(name + ".textproto");
  EXPECT_TRUE(CreateFileWithContent(path, "name: \"" + name + "\"\n" + body, 0600));
  return path;
}

constexpr const char* kBody = R"(gids: 100
host_uids { first: 1879048192 count: 1024 }
cgroup { memory_max_bytes: 1073741824 }
)";

// Each broken file, the position its first problem must carry, and words that tell the admin
// what is wrong.
struct BrokenCase {
  const char* file;
  const char* position;  // "file:line:col" suffix after the directory
  std::vector<const char*> words;
};

TEST(LoaderTest, BrokenFilesNamePositionAndField) {
  const BrokenCase cases[] = {
      {"unknown_field.textproto",
       "unknown_field.textproto:6:18",
       {"no field named \"memory_max_byte\"", "Did you mean 'memory_max_bytes'?"}},
      {"bad_enum.textproto",
       "bad_enum.textproto:6:43",
       {"\"KILL\"", "Expected one of: KILL_PROCESS, KILL_THREAD, TRAP, ERRNO, LOG, ALLOW"}},
      {"unclosed.textproto", "unclosed.textproto:5:1", {"Expected identifier"}},
      {"negative.textproto",
       "negative.textproto:4:28",
       {"Expected integer", "the line reads: 'cgroup { memory_max_bytes: -5 }'"}},
      {"twice.textproto", "twice.textproto:3:5", {"\"name\"", "multiple times"}},
      {"unknown_syscall.textproto",
       "unknown_syscall.textproto:7:3",
       {"seccomp.allow[1]", "unknown system call 'reed'", "Refusing."}},
      {"high_above_max.textproto",
       "high_above_max.textproto:6:3",
       {"cgroup.memory_high_bytes", "must not exceed memory.max", "Refusing."}},
      {"misnamed.textproto",
       "misnamed.textproto:1:1",
       {"name: the policy is named 'wrong_name' but its file is 'misnamed.textproto'"}},
      {"trailing_comma.json", "trailing_comma.json:4:1", {"no trailing comma"}},
      {"duplicate_key.json", "duplicate_key.json:4:3", {"duplicate key 'name'"}},
      {"json_unknown_field.json",
       "json_unknown_field.json:5:5",
       {"cgroup.memory_max_byte", "unknown field 'memoryMaxByte'",
        "Did you mean 'memory_max_bytes'?"}},
      {"json_bad_enum.json",
       "json_bad_enum.json:5:5",
       {"seccomp.default_action", "EXPLODE", "Expected one of: KILL_PROCESS"}},
      {"json_semantic.json",
       "json_semantic.json:4:16",
       {"host_uids.first", "includes 0", "Refusing."}},
  };
  for (const BrokenCase& c : cases) {
    Result<std::shared_ptr<const CompiledPolicy>> p =
        LoadPolicyFile(DataFile(std::string("broken/") + c.file), nullptr);
    ASSERT_FALSE(p) << c.file;
    const std::string& message = p.error().message();
    EXPECT_THAT(message, HasSubstr(std::string("/tests/policy/data/broken/") + c.position + ": "))
        << message;
    for (const char* w : c.words) {
      EXPECT_THAT(message, HasSubstr(w)) << c.file;
    }
  }
}

// One refusal per check, each naming its field.
TEST(LoaderTest, SemanticRefusals) {
  struct Case {
    const char* text;
    const char* field;
    const char* words;
  };
  const Case cases[] = {
      {R"(namespaces { user: false })", "namespaces.user", "needs a user namespace"},
      {R"(namespaces { mount: false })", "namespaces.mount", "needs a mount namespace"},
      {R"(host_uids { first: 0 count: 10 })", "host_uids.first", "includes 0"},
      {R"(host_uids { first: 60000 count: 10000 })", "host_uids", "includes 65534"},
      {R"(host_uids { first: 4294967290 count: 100 })", "host_uids", "runs past 4294967294"},
      {R"(host_uids { first: 100000 count: 0 })", "host_uids.count", "empty"},
      {R"(host_gids { first: 0 count: 10 })", "host_gids.first", "includes 0"},
      {R"(rlimits { resource: CORE soft: 1024 })", "rlimits[0]", "CORE must be 0"},
      {R"(rlimits { resource: NOFILE soft: 64 hard: 32 })", "rlimits[0].soft", "above the hard"},
      {R"(rlimits { resource: NOFILE soft: 2 })", "rlimits[0]", "NOFILE must be between 8"},
      {R"(rlimits { resource: NPROC soft: 0 })", "rlimits[0]", "NPROC must be at least 1"},
      {R"(rlimits { resource: AS soft: 1 } rlimits { resource: AS soft: 2 })", "rlimits[1]",
       "listed twice"},
      {R"(rlimits { soft: 1 })", "rlimits[0].resource", "resource is missing"},
      {R"(cgroup { memory_max_bytes: 1024 })", "cgroup.memory_max_bytes", "below 4 MiB"},
      {R"(cgroup { memory_high_bytes: 2147483648 })", "cgroup.memory_high_bytes",
       "must not exceed memory.max"},
      {R"(cgroup { pids_max: 0 })", "cgroup.pids_max", "pids_max must be"},
      {R"(gateway { max_body_bytes: 10 })", "gateway.max_body_bytes", "outside 1024 to"},
      {R"(gateway { max_messages: 0 })", "gateway.max_messages", "outside 1 to 4096"},
      {R"(gateway { max_concurrent_requests: 5000 })", "gateway.max_concurrent_requests",
       "outside 1 to 1024"},
      {R"(gateway { max_idle_sessions: 65 })", "gateway.max_idle_sessions", "outside 0 to 64"},
      {R"(models: "bad name")", "models", "is not 1 to 64"},
      {R"(cgroup { cpu_percent: 0 })", "cgroup.cpu_percent", "cpu_percent must be"},
      {R"(cgroup { cpu_quota { quota_us: 5000 period_us: 10 } })", "cgroup.cpu_quota.period_us",
       "period_us must be"},
      {R"(cgroup { cpu_weight: 20000 })", "cgroup.cpu_weight", "1 to 10000"},
      {R"(gpu { compute_fraction: 1.5 device_memory_bytes: 1073741824 })", "gpu.compute_fraction",
       "(0, 1]"},
      {R"(gpu { compute_fraction: 0.5 })", "gpu.device_memory_bytes", "at least 1 MiB"},
      {R"(seccomp { rules { syscalls: "read" action: ALLOW error: "EPERM" } })",
       "seccomp.rules[0].error", "not ERRNO"},
      {R"(seccomp { rules { syscalls: "read" } })", "seccomp.rules[0].action", "action is missing"},
      {R"(seccomp { rules { action: ALLOW } })", "seccomp.rules[0].syscalls", "names no system"},
      {R"(seccomp { rules { syscalls: "kill" action: ALLOW args { index: 6 op: EQ } } })",
       "seccomp.rules[0].args[0].index", "0 to 5"},
      {R"(seccomp { rules { syscalls: "kill" action: ALLOW
                            args { index: 1 op: EQ } args { index: 1 op: NE value: 2 } } })",
       "seccomp.rules[0].args[1].index", "compared twice"},
      {R"(seccomp { rules { syscalls: "kill" action: ALLOW
                            args { index: 1 op: MASKED_EQ mask: 1 value: 2 } } })",
       "seccomp.rules[0].args[0].value", "outside mask"},
      {R"(seccomp { default_action: KILL_PROCESS default_error: "EPERM" })",
       "seccomp.default_error", "not ERRNO"},
      {R"(budgets { idle_timeout_seconds: 7200 max_lifetime_seconds: 3600 })",
       "budgets.idle_timeout_seconds", "could never apply"},
      {R"(budgets { max_sessions: 4 max_sessions_per_tenant: 5 })",
       "budgets.max_sessions_per_tenant", "above max_sessions"},
      {R"(budgets { max_sessions: 2000 })", "budgets.max_sessions", "host uids of its own"},
      {R"(budgets { context_length: 100 max_new_tokens: 200 })", "budgets.max_new_tokens",
       "above context_length"},
      {R"(description: "two\nlines")", "description", "control characters"},
      {R"(name: "bad name!")", "name", "is not 1 to 63"},
  };
  for (const Case& c : cases) {
    auto p = CompileText(c.text);
    ASSERT_FALSE(p) << c.text;
    EXPECT_THAT(p.error().message(), HasSubstr(std::string(c.field) + ": ")) << c.text;
    EXPECT_THAT(p.error().message(), HasSubstr(c.words)) << c.text;
    EXPECT_THAT(p.error().message(), HasSubstr("Refusing.")) << c.text;
  }
}

TEST(LoaderTest, RequiredFieldsAndEveryProblemAtOnce) {
  auto p = CompilePolicy(Policy(), nullptr);
  ASSERT_FALSE(p);
  const std::string& m = p.error().message();
  EXPECT_THAT(m, HasSubstr("name: the policy has no name"));
  EXPECT_THAT(m, HasSubstr("uids: neither uids nor gids"));
  EXPECT_THAT(m, HasSubstr("host_uids: no host uid range"));
  EXPECT_THAT(m, HasSubstr("cgroup.memory_max_bytes: memory_max_bytes is not set"));
}

TEST(LoaderTest, ModelDependentChecks) {
  const ModelFacts facts = SmallModel();  // 1024 tokens, 32 KiB each, 24 MiB fixed
  auto too_long = CompileText("budgets { context_length: 2048 }", &facts);
  ASSERT_FALSE(too_long);
  EXPECT_THAT(too_long.error().message(),
              HasSubstr("budgets.context_length: context_length 2048 is above the model's "
                        "seq_len 1024"));
  // 1024 tokens need 32 MiB of KV + 24 MiB: 40 MiB is too little, and fits 512 tokens.
  auto small = CompileText("cgroup { memory_max_bytes: 41943040 }", &facts);
  ASSERT_FALSE(small);
  EXPECT_THAT(small.error().message(), HasSubstr("cgroup.memory_max_bytes: memory_max_bytes "
                                                 "41943040 (40.0 MiB) is below the 58720256"));
  EXPECT_THAT(small.error().message(), HasSubstr("a context_length of at most 512 fits"));
  // Without facts the same policy loads: the check needs the model.
  EXPECT_TRUE(CompileText("cgroup { memory_max_bytes: 41943040 }"));

  auto fits =
      CompileText("cgroup { memory_max_bytes: 41943040 } budgets { context_length: 512 }", &facts);
  ASSERT_TRUE(fits) << fits.error().message();
  EXPECT_EQ((*fits)->proto().budgets().max_new_tokens(), 512u);
  EXPECT_EQ((*fits)->WorstCaseSessionBytes(facts, 0), (512u << 15) + (24u << 20));
  EXPECT_EQ((*fits)->WorstCaseSessionBytes(facts, 100), (100u << 15) + (24u << 20));

  auto defaulted = CompileText("", &facts);
  ASSERT_TRUE(defaulted) << defaulted.error().message();
  EXPECT_EQ((*defaulted)->proto().budgets().context_length(), 1024u);
}

// A session of a policy that shares the executor also needs its slot: admission reserves it and
// memory_max must cover it; an exempt policy's sessions pay nothing for it.
TEST(LoaderTest, ASharingPolicysSessionsPayForTheirExecutorSlot) {
  ModelFacts facts = SmallModel();  // 1024 tokens, 32 KiB each, 24 MiB fixed
  facts.executor_slot_bytes = 200704;
  const uint64_t alone = (512u << 15) + (24u << 20);
  auto shared = CompileText("budgets { context_length: 512 }", &facts);
  ASSERT_TRUE(shared) << shared.error().message();
  EXPECT_EQ((*shared)->WorstCaseSessionBytes(facts, 0), alone + 200704);
  auto exempt = CompileText("shared_executor: false budgets { context_length: 512 }", &facts);
  ASSERT_TRUE(exempt) << exempt.error().message();
  EXPECT_FALSE((*exempt)->proto().shared_executor());
  EXPECT_EQ((*exempt)->WorstCaseSessionBytes(facts, 0), alone);
  // Exactly what a session needs alone: enough when exempt, short by the slot when sharing.
  const std::string cap = "cgroup { memory_max_bytes: " + std::to_string(alone) + " } ";
  EXPECT_TRUE(CompileText(cap + "shared_executor: false budgets { context_length: 512 }", &facts));
  auto short_by_slot = CompileText(cap + "budgets { context_length: 512 }", &facts);
  ASSERT_FALSE(short_by_slot);
  EXPECT_THAT(short_by_slot.error().message(), HasSubstr("+ executor slot 196.0 KiB"));
  // Without an executor (slot bytes 0) a sharing policy costs what an exempt one does.
  facts.executor_slot_bytes = 0;
  EXPECT_TRUE(CompileText(cap + "budgets { context_length: 512 }", &facts));
}

TEST(LoaderTest, EffectivePolicyHasEveryDefault) {
  auto p = CompileText("cgroup { cpu_percent: 50 }");
  ASSERT_TRUE(p) << p.error().message();
  const Policy& e = (*p)->proto();
  EXPECT_TRUE(e.namespaces().user() && e.namespaces().pid() && e.namespaces().mount() &&
              e.namespaces().uts() && e.namespaces().ipc() && e.namespaces().net());
  EXPECT_FALSE(e.namespaces().cgroup());
  EXPECT_EQ((*p)->CloneNamespaceFlags(),
            static_cast<uint64_t>(CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS |
                                  CLONE_NEWIPC | CLONE_NEWNET));
  EXPECT_EQ(e.host_gids().first(), e.host_uids().first());
  EXPECT_EQ(e.cgroup().memory_swap_max_bytes(), 0u);
  EXPECT_TRUE(e.cgroup().has_memory_swap_max_bytes());
  EXPECT_EQ(e.cgroup().cpu_quota().quota_us(), 50000u);
  EXPECT_EQ(e.cgroup().cpu_quota().period_us(), 100000u);
  EXPECT_EQ(e.cgroup().cpu_weight(), 100u);
  EXPECT_EQ(e.seccomp().default_action(), Seccomp::KILL_PROCESS);
  EXPECT_TRUE(e.seccomp().use_builtin_allowlist());
  EXPECT_EQ(e.budgets().idle_timeout_seconds(), 600u);
  EXPECT_EQ(e.budgets().max_sessions(), 64u);
  EXPECT_EQ(e.budgets().max_sessions_per_tenant(), 4u);
  EXPECT_FALSE(e.has_gpu());
  EXPECT_TRUE(e.has_shared_executor() && e.shared_executor());
  // CORE, FSIZE, MEMLOCK, NOFILE, NPROC, in RLIMIT_ numbers.
  std::map<int, RlimitSetting> limits;
  for (const RlimitSetting& r : (*p)->rlimits()) {
    limits[r.resource] = r;
  }
  ASSERT_EQ(limits.size(), 5u);
  EXPECT_EQ(limits[RLIMIT_CORE].hard, 0u);
  EXPECT_EQ(limits[RLIMIT_FSIZE].hard, 0u);
  EXPECT_EQ(limits[RLIMIT_MEMLOCK].hard, 0u);
  EXPECT_EQ(limits[RLIMIT_NOFILE].soft, 32u);
  EXPECT_EQ(limits[RLIMIT_NPROC].soft, 1u);

  auto no_net = CompileText("namespaces { net: false cgroup: true }");
  ASSERT_TRUE(no_net);
  EXPECT_EQ((*no_net)->CloneNamespaceFlags() & CLONE_NEWNET, 0u);
  EXPECT_NE((*no_net)->CloneNamespaceFlags() & CLONE_NEWCGROUP, 0u);
}

// `memory_max_bytes: 512M` means 512 MiB in either format; a value that is not a byte count is one
// problem at the value, and positions after a rewritten value still point into the file as
// written.
TEST(LoaderTest, ByteSizesTakeUnits) {
  auto text = LoadPolicyFromString(R"(name: "t"
gids: 100
host_uids { first: 1879048192 count: 1024 }
cgroup { memory_max_bytes: 512M memory_high_bytes: 448MiB }  # 512M: "comment 1G" stays
gpu { compute_fraction: 0.5 device_memory_bytes: 2Gi }
description: "memory_max_bytes: 9X in a string is text"
)",
                                   "t.textproto", nullptr);
  ASSERT_TRUE(text) << text.error().message();
  EXPECT_EQ((*text)->proto().cgroup().memory_max_bytes(), 512u << 20);
  EXPECT_EQ((*text)->proto().cgroup().memory_high_bytes(), 448u << 20);
  EXPECT_EQ((*text)->proto().gpu().device_memory_bytes(), 2ull << 30);
  EXPECT_EQ((*text)->proto().description(), "memory_max_bytes: 9X in a string is text");

  auto json = LoadPolicyFromString(R"({"name": "t", "gids": [100],
  "hostUids": {"first": 1879048192, "count": 1024},
  "cgroup": {"memoryMaxBytes": "512M", "memory_high_bytes": "256K"}})",
                                   "t.json", nullptr);
  ASSERT_TRUE(json) << json.error().message();
  EXPECT_EQ((*json)->proto().cgroup().memory_max_bytes(), 512u << 20);
  EXPECT_EQ((*json)->proto().cgroup().memory_high_bytes(), 256u << 10);

  // One clear problem, at the value.
  auto bad = LoadPolicyFromString(R"(name: "t"
gids: 100
host_uids { first: 1879048192 count: 1024 }
cgroup { memory_max_bytes: 512X }
)",
                                  "t.textproto", nullptr);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(),
              HasSubstr("t.textproto:4:28: memory_max_bytes: '512X' is not a byte count"));
  EXPECT_THAT(bad.error().message(), HasSubstr("K, M, G or T, each 1024 times the one before"));
  EXPECT_THAT(bad.error().message(), Not(HasSubstr("Need space")));
  auto bad_json = LoadPolicyFromString(R"({"name": "t", "cgroup": {"memoryMaxBytes": "5 GB"}})",
                                       "t.json", nullptr);
  ASSERT_FALSE(bad_json);
  EXPECT_THAT(bad_json.error().message(),
              HasSubstr("t.json:1:44: memory_max_bytes: '5 GB' is not a byte count"));

  // A problem later on a rewritten line names the column as written.
  auto high = LoadPolicyFromString(R"(name: "t"
gids: 100
host_uids { first: 1879048192 count: 1024 }
cgroup { memory_max_bytes: 512M memory_high_bytes: 1G }
)",
                                   "t.textproto", nullptr);
  ASSERT_FALSE(high);
  EXPECT_THAT(high.error().message(), HasSubstr("t.textproto:4:33: cgroup.memory_high_bytes:"));
}

TEST(LoaderTest, MayUse) {
  auto p = CompileText("uids: 1000 uids: 1001 gids: 50");
  ASSERT_TRUE(p) << p.error().message();
  const std::vector<gid_t> none;
  const std::vector<gid_t> with50 = {10, 50};
  EXPECT_TRUE((*p)->MayUse(1000, 1000, none));
  EXPECT_TRUE((*p)->MayUse(2000, 50, none));
  EXPECT_TRUE((*p)->MayUse(2000, 2000, with50));
  EXPECT_FALSE((*p)->MayUse(2000, 2000, none));
  EXPECT_FALSE((*p)->MayUse(0, 0, none));  // root is not special to a policy
}

TEST(LoaderTest, JsonAndTextAreEquivalent) {
  cellhouse::testing::TempDir dir;
  ASSERT_TRUE(CreateFileWithContent(dir.File("j.json"), R"({
    "name": "j", "gids": [100],
    "hostUids": {"first": 1879048192, "count": 1024},
    "cgroup": {"memory_max_bytes": "1073741824", "cpuPercent": 25},
    "seccomp": {"rules": [{"syscalls": ["socket"], "action": "ERRNO", "error": "EACCES"}]}
  })",
                                    0600));
  std::string text = WritePolicy(dir, "t", R"(gids: 100
    host_uids { first: 1879048192 count: 1024 }
    cgroup { memory_max_bytes: 1073741824 cpu_percent: 25 }
    seccomp { rules { syscalls: "socket" action: ERRNO error: "EACCES" } })");
  auto j = LoadPolicyFile(dir.File("j.json"), nullptr);
  auto t = LoadPolicyFile(text, nullptr);
  ASSERT_TRUE(j) << j.error().message();
  ASSERT_TRUE(t) << t.error().message();
  Policy jp = (*j)->proto();
  jp.set_name("t");
  EXPECT_EQ(jp.SerializeAsString(), (*t)->proto().SerializeAsString());
  EXPECT_EQ((*j)->allowed_syscalls(), (*t)->allowed_syscalls());
  EXPECT_EQ((*j)->source(), dir.File("j.json"));
}

TEST(LoaderTest, DirectoryIsAllOrNothing) {
  cellhouse::testing::TempDir dir;
  WritePolicy(dir, "a", kBody);
  WritePolicy(dir, "b", kBody);
  // Not policies: skipped.
  ASSERT_TRUE(CreateFileWithContent(dir.File("README"), "not a policy", 0600));
  ASSERT_TRUE(CreateFileWithContent(dir.File("x.seccomp.json"), "{}", 0600));
  ASSERT_TRUE(CreateFileWithContent(dir.File(".hidden.textproto"), "garbage", 0600));
  ASSERT_EQ(mkdir(dir.File("profiles.textproto").c_str(), 0700), 0);

  auto set = LoadPolicyDirectory(dir.path(), nullptr);
  ASSERT_TRUE(set) << set.error().message();
  ASSERT_EQ(set->size(), 2u);
  EXPECT_EQ(set->at("a")->source(), dir.File("a.textproto"));
  EXPECT_EQ(set->at("b")->name(), "b");

  // One bad file: an error naming it, and no set at all.
  WritePolicy(dir, "c", R"(gids: 100
host_uids { first: 1879048192 count: 1024 }
cgroup { memory_max_bytes: 1073741824
         memory_high_bytes: 4294967296 }
)");
  auto bad = LoadPolicyDirectory(dir.path(), nullptr);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("1 of 3 files are invalid; nothing was loaded"));
  EXPECT_THAT(bad.error().message(),
              HasSubstr(dir.File("c.textproto") + ":5:10: "
                                                  "cgroup.memory_high_bytes"));
  EXPECT_THAT(bad.error().message(), Not(HasSubstr("a.textproto")));

  // Every problem of every file is listed.
  WritePolicy(dir, "d", "gids: 100\n");
  bad = LoadPolicyDirectory(dir.path(), nullptr);
  ASSERT_FALSE(bad);
  EXPECT_THAT(bad.error().message(), HasSubstr("2 of 4 files are invalid"));
  EXPECT_THAT(bad.error().message(), HasSubstr("d.textproto: host_uids: no host uid range"));
  EXPECT_THAT(bad.error().message(), HasSubstr("d.textproto: cgroup.memory_max_bytes"));

  // Fixed again: a new set.
  ASSERT_EQ(unlink(dir.File("c.textproto").c_str()), 0);
  ASSERT_EQ(unlink(dir.File("d.textproto").c_str()), 0);
  EXPECT_TRUE(LoadPolicyDirectory(dir.path(), nullptr));
}

TEST(LoaderTest, DirectoryRefusesDuplicatesAndEmptiness) {
  cellhouse::testing::TempDir dir;
  auto empty = LoadPolicyDirectory(dir.path(), nullptr);
  ASSERT_FALSE(empty);
  EXPECT_THAT(empty.error().message(), HasSubstr("has no policy files"));
  EXPECT_FALSE(LoadPolicyDirectory(dir.File("missing"), nullptr));

  WritePolicy(dir, "a", kBody);
  ASSERT_TRUE(CreateFileWithContent(
      dir.File("a.json"),
      R"({"name": "a", "gids": [1], "hostUids": {"first": 200000, "count": 100},
          "cgroup": {"memoryMaxBytes": 1073741824}, "budgets": {"maxSessions": 10}})",
      0600));
  auto dup = LoadPolicyDirectory(dir.path(), nullptr);
  ASSERT_FALSE(dup);
  EXPECT_THAT(dup.error().message(), HasSubstr("policy 'a' is also defined in"));
}

TEST(LoaderTest, CheckPolicyFilesReportsEach) {
  cellhouse::testing::TempDir dir;
  std::string good = WritePolicy(dir, "good", kBody);
  std::string bad = WritePolicy(dir, "bad", "gids: 100\n");
  const std::vector<std::string> both = {good, bad};
  PolicyCheck check = CheckPolicyFiles(both, nullptr);
  EXPECT_FALSE(check.ok);
  EXPECT_THAT(check.report, HasSubstr("policy 'good'"));
  EXPECT_THAT(check.report, HasSubstr("allowed system calls ("));
  EXPECT_THAT(check.report, HasSubstr(bad + ": host_uids: no host uid range"));
  const std::vector<std::string> one = {good};
  EXPECT_TRUE(CheckPolicyFiles(one, nullptr).ok);
}

TEST(LoaderTest, DescriptionShowsEffectivePolicyAndFilter) {
  auto p = CompileText(R"(
    description: "for tests"
    seccomp { rules { syscalls: "socket" action: ERRNO error: "EACCES" comment: "no network" } })");
  ASSERT_TRUE(p) << p.error().message();
  std::string d = DescribePolicy(**p);
  EXPECT_THAT(d, HasSubstr("policy 't'"));
  EXPECT_THAT(d, HasSubstr("for tests"));
  EXPECT_THAT(d, HasSubstr("memory_swap_max_bytes: 0"));
  EXPECT_THAT(d, HasSubstr("default action: KILL_PROCESS"));
  EXPECT_THAT(d, HasSubstr("mmap ALLOW if arg2 & 0x4 == 0x0  [built-in @memory]"));
  EXPECT_THAT(d, HasSubstr("socket ERRNO(EACCES)  [seccomp.rules[0]]  # no network"));
  EXPECT_THAT(d, HasSubstr(" read "));
}

}  // namespace
}  // namespace cellhouse::policy
