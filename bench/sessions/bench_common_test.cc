// The parts of the session benchmarks that could silently report wrong figures: percentiles,
// the parser of celld's step log, the memory and schedstat readers, and the benchmark policy
// (which must load, and keep the default policy's sandbox).
#include "bench/sessions/bench_common.h"

#include <sched.h>
#include <unistd.h>

#include <gtest/gtest.h>

#include "policy/policy.h"

namespace cellhouse::bench {
namespace {

TEST(SummarizeTest, NearestRankPercentiles) {
  std::vector<double> samples;
  for (int i = 100; i >= 1; --i) samples.push_back(i);  // unsorted on purpose
  Summary s = Summarize(samples);
  EXPECT_EQ(s.n, 100u);
  EXPECT_EQ(s.min, 1);
  EXPECT_EQ(s.p50, 50);
  EXPECT_EQ(s.p90, 90);
  EXPECT_EQ(s.p99, 99);
  EXPECT_EQ(s.max, 100);
  EXPECT_DOUBLE_EQ(s.mean, 50.5);
}

TEST(SummarizeTest, SmallAndEmpty) {
  EXPECT_EQ(Summarize({}).n, 0u);
  Summary one = Summarize({7});
  EXPECT_EQ(one.p50, 7);
  EXPECT_EQ(one.p99, 7);
  EXPECT_EQ(Median({3, 1, 2}), 2);
}

TEST(ParseSandboxStepsTest, NamesWithSpacesAndSeveralSessions) {
  const std::string log =
      "2026-11-21 09:10:12.254 info session ab started: tenant uid 0\n"
      "2026-11-21 09:10:12.254 debug session ab sandbox steps: clone3=253us uid_map=21us "
      "cgroup placement=5676us empty read-only root (tmpfs, pivot_root)=104us seccomp "
      "filter=42us\n"
      "2026-11-21 09:10:12.300 debug session cd sandbox steps: clone3=198us\n";
  std::vector<StepTimings> sessions = ParseSandboxSteps(log);
  ASSERT_EQ(sessions.size(), 2u);
  StepTimings expected = {{"clone3", 253},
                          {"uid_map", 21},
                          {"cgroup placement", 5676},
                          {"empty read-only root (tmpfs, pivot_root)", 104},
                          {"seccomp filter", 42}};
  EXPECT_EQ(sessions[0], expected);
  EXPECT_EQ(sessions[1], (StepTimings{{"clone3", 198}}));
}

TEST(ParseSandboxStepsTest, IgnoresOtherLines) {
  EXPECT_TRUE(ParseSandboxSteps("info celld ready\nsandbox steps: none\n").empty());
}

TEST(ProcessMemoryTest, ReadsOwnSmapsRollup) {
  Result<ProcessMemory> m = ReadProcessMemory(::getpid());
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_GT(m->rss, 0u);
  EXPECT_GT(m->pss, 0u);
  EXPECT_LE(m->pss, m->rss);
}

TEST(SchedStatTest, ThreadRunTimeGrows) {
  Result<SchedStat> before = ReadSchedStat(0);
  ASSERT_TRUE(before) << before.error().message();
  volatile uint64_t sink = 0;
  for (uint64_t i = 0; i < 20'000'000; ++i) sink = sink + i;
  Result<SchedStat> after = ReadSchedStat(0);
  ASSERT_TRUE(after) << after.error().message();
  EXPECT_GT(after->on_cpu_ns, before->on_cpu_ns);
}

TEST(BenchPolicyTest, LoadsWithTheDefaultSandbox) {
  BenchPolicy spec;
  spec.max_sessions = 64;
  Result<std::shared_ptr<const policy::CompiledPolicy>> p =
      policy::LoadPolicyFromString(PolicyText(spec), "default.textproto", nullptr);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_EQ((*p)->proto().budgets().max_sessions(), 64u);
  // All six namespaces, as the shipped default.
  uint64_t six =
      CLONE_NEWUSER | CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWNET;
  EXPECT_EQ((*p)->CloneNamespaceFlags() & six, six);
  // cpu_percent: 100 becomes a 100 ms quota per 100 ms period in the effective policy.
  EXPECT_EQ((*p)->proto().cgroup().cpu_quota().quota_us(), 100'000u);
}

TEST(BenchPolicyTest, NoQuotaVariantLoads) {
  Result<std::shared_ptr<const policy::CompiledPolicy>> p = policy::LoadPolicyFromString(
      PolicyText({.name = "noquota", .cpu_percent = 0}), "noquota.textproto", nullptr);
  ASSERT_TRUE(p) << p.error().message();
  EXPECT_FALSE((*p)->proto().cgroup().has_cpu_quota());
  EXPECT_FALSE((*p)->proto().cgroup().has_cpu_percent());
}

TEST(CommandTest, TimesAndCaptures) {
  Result<double> ms = TimeCommandMs({"/bin/true"});
  ASSERT_TRUE(ms) << ms.error().message();
  EXPECT_GT(*ms, 0);
  EXPECT_FALSE(TimeCommandMs({"/bin/false"}));
  Result<CommandOutput> out = RunAndCapture({"/bin/sh", "-c", "echo out; echo err >&2"});
  ASSERT_TRUE(out) << out.error().message();
  EXPECT_EQ(out->out, "out\n");
  EXPECT_EQ(out->err, "err\n");
}

}  // namespace
}  // namespace cellhouse::bench
