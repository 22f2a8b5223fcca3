// Limits validation, the weight-to-shares mapping, and v1 placement through procs descriptors.
#include <fcntl.h>
#include <unistd.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "supervisor/cgroup/limits.h"
#include "supervisor/cgroup/session_cgroup.h"

namespace cellhouse::cgroup {
namespace {

using ::testing::HasSubstr;

TEST(LimitsTest, ValidLimitsPass) {
  EXPECT_TRUE(ValidateLimits({}));
  EXPECT_TRUE(ValidateLimits({.memory_max = 64ULL << 20,
                              .memory_high = 32ULL << 20,
                              .pids_max = 1,
                              .cpu = CpuQuota{.quota_us = 250000, .period_us = 100000},
                              .cpu_weight = 10000}));
}

TEST(LimitsTest, EachBadFieldIsNamed) {
  struct Case {
    Limits limits;
    const char* message;
  };
  const Case cases[] = {
      {{.cpu_weight = 0}, "cpu weight 0 is outside 1..10000"},
      {{.cpu_weight = 10001}, "cpu weight 10001 is outside 1..10000"},
      {{.cpu = CpuQuota{.quota_us = 500}}, "cpu quota 500 us is below"},
      {{.cpu = CpuQuota{.quota_us = 5000, .period_us = 2000000}}, "cpu period 2000000 us"},
      {{.pids_max = 0}, "pids max 0"},
      {{.memory_max = 4096}, "memory max 4.0 KiB is below 1 MiB"},
      {{.memory_max = 1ULL << 20, .memory_high = 2ULL << 20}, "memory high 2.0 MiB is above"},
      {{.device_memory = {{.region = "a b", .bytes = 1}}}, "white space"},
  };
  for (const Case& c : cases) {
    Status st = ValidateLimits(c.limits);
    ASSERT_FALSE(st) << c.message;
    EXPECT_THAT(st.error().message(), HasSubstr(c.message));
  }
}

TEST(LimitsTest, WeightToSharesIsLinearThroughTheDefaults) {
  EXPECT_EQ(CpuWeightToShares(100), 1024u);
  EXPECT_EQ(CpuWeightToShares(300), 3072u);
  EXPECT_EQ(CpuWeightToShares(1), 10u);
  EXPECT_EQ(CpuWeightToShares(10000), 102400u);
  EXPECT_EQ(CpuWeightToShares(0), 2u) << "clamped to the kernel's minimum";
  // Ratios survive: 1:3 in weight is 1:3 in shares.
  EXPECT_EQ(CpuWeightToShares(50) * 3, CpuWeightToShares(150));
}

TEST(PlacementTest, WritesThePidIntoEveryDescriptor) {
  auto a = MakePipe();
  auto b = MakePipe();
  ASSERT_TRUE(a && b);
  int fds[] = {a->second.get(), b->second.get()};
  ASSERT_TRUE(PlaceProcessFromParent(fds, 40321));
  for (auto* pipe : {&*a, &*b}) {
    char buf[16] = {};
    ASSERT_EQ(read(pipe->first.get(), buf, sizeof(buf)), 5);
    EXPECT_STREQ(buf, "40321");
  }
}

TEST(PlacementTest, AWriteErrorNamesThePidAndTheDescriptor) {
  auto p = MakePipe();
  ASSERT_TRUE(p);
  int fds[] = {p->second.get(), p->first.get()};  // the second is a read end: EBADF
  Status st = PlaceProcessFromParent(fds, 7);
  ASSERT_FALSE(st);
  EXPECT_THAT(st.error().message(), HasSubstr("placing pid 7"));
  EXPECT_THAT(st.error().message(), HasSubstr("fd #1"));
  EXPECT_EQ(st.error().sys_errno(), EBADF);
}

TEST(PlacementTest, PidZeroWouldMoveTheWriterAndIsRefused) {
  auto p = MakePipe();
  ASSERT_TRUE(p);
  int fds[] = {p->second.get()};
  EXPECT_FALSE(PlaceProcessFromParent(fds, 0));
  EXPECT_FALSE(PlaceProcessFromParent(fds, -1));
}

TEST(PlacementTest, RawFdsListsTheDescriptorsInOrder) {
  Placement placement{.kind = Placement::Kind::kWriteProcs};
  placement.fds.emplace_back(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  placement.fds.emplace_back(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  std::vector<int> raw = placement.RawFds();
  ASSERT_EQ(raw.size(), 2u);
  EXPECT_EQ(raw[0], placement.fds[0].get());
  EXPECT_EQ(raw[1], placement.fds[1].get());
}

}  // namespace
}  // namespace cellhouse::cgroup
