// Admission control: every cap and the memory budget refuse at once with a sentence naming the
// limit; 200 attempts against a budget for 10 never admit the eleventh; release gives back.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "supervisor/resources/admission.h"
#include "supervisor/resources/memory_budget.h"

namespace cellhouse::resources {
namespace {

using ::testing::HasSubstr;

constexpr uint64_t kMiB = 1ULL << 20;

GpuInventory OneGpu() {
  GpuInventory inv;
  inv.devices.push_back({.index = 0,
                         .uuid = "GPU-aaaa",
                         .name = "Test GPU",
                         .memory_bytes = 16ULL << 30,
                         .device_nodes = {"/dev/nvidia0"}});
  inv.source = "test";
  return inv;
}

const Refusal& Refused(const Decision& d) {
  static const Refusal kNone{RefusedBy::kInvalidRequest, "<admitted>"};
  const Refusal* r = std::get_if<Refusal>(&d);
  return r != nullptr ? *r : kNone;
}

TEST(AdmissionTest, TwoHundredAttemptsAgainstABudgetForTenNeverAdmitTheEleventh) {
  Admission admission({.memory_budget_bytes = uint64_t{10} * 400 * kMiB}, GpuLedger({}));
  int admitted = 0;
  std::vector<Ticket> tickets;
  for (int attempt = 0; attempt < 200; ++attempt) {
    Decision d = admission.Admit({.tenant_uid = static_cast<uint32_t>(1000 + attempt % 7),
                                  .policy = "default",
                                  .worst_case_bytes = 400 * kMiB});
    if (const Grant* g = std::get_if<Grant>(&d)) {
      ++admitted;
      tickets.push_back(g->ticket);
      continue;
    }
    const Refusal& r = std::get<Refusal>(d);
    EXPECT_EQ(r.limit, RefusedBy::kMemoryBudget);
    EXPECT_EQ(r.message,
              "memory budget: 3.9 GiB of 3.9 GiB committed; this session needs "
              "400.0 MiB.");
  }
  EXPECT_EQ(admitted, 10);
  EXPECT_EQ(admission.sessions(), 10u);
  EXPECT_EQ(admission.committed_bytes(), 4000 * kMiB);
  // One ends: exactly one more fits.
  ASSERT_TRUE(admission.Release(tickets.front()));
  EXPECT_TRUE(std::holds_alternative<Grant>(
      admission.Admit({.tenant_uid = 1, .policy = "p", .worst_case_bytes = 400 * kMiB})));
  EXPECT_TRUE(std::holds_alternative<Refusal>(
      admission.Admit({.tenant_uid = 1, .policy = "p", .worst_case_bytes = 400 * kMiB})));
}

TEST(AdmissionTest, MemoryBudgetMessages) {
  Admission admission({.memory_budget_bytes = 1536 * kMiB}, GpuLedger({}));
  ASSERT_TRUE(std::holds_alternative<Grant>(
      admission.Admit({.tenant_uid = 1, .policy = "p", .worst_case_bytes = 1228 * kMiB})));
  Decision d = admission.Admit({.tenant_uid = 2, .policy = "p", .worst_case_bytes = 400 * kMiB});
  EXPECT_EQ(Refused(d).limit, RefusedBy::kMemoryBudget);
  EXPECT_EQ(Refused(d).message,
            "memory budget: 1.2 GiB of 1.5 GiB committed; this session needs 400.0 MiB.");
  Decision huge =
      admission.Admit({.tenant_uid = 2, .policy = "big", .worst_case_bytes = 2ULL << 30});
  EXPECT_EQ(Refused(huge).message,
            "memory budget: this session needs 2.0 GiB, more than the whole budget of 1.5 GiB; "
            "lower the policy's context length or raise --memory-budget.");
}

TEST(AdmissionTest, EachSessionCapHasItsOwnRefusal) {
  Admission admission(
      {.memory_budget_bytes = 1ULL << 40, .max_sessions = 6, .max_sessions_per_tenant = 3},
      GpuLedger({}));
  auto admit = [&](uint32_t uid, const char* policy, uint32_t policy_max = 0,
                   uint32_t policy_per_tenant = 0) {
    return admission.Admit({.tenant_uid = uid,
                            .policy = policy,
                            .worst_case_bytes = kMiB,
                            .policy_max_sessions = policy_max,
                            .policy_max_sessions_per_tenant = policy_per_tenant});
  };
  // Policy per tenant: uid 7 may hold 1 session of "solo".
  ASSERT_TRUE(std::holds_alternative<Grant>(admit(7, "solo", 0, 1)));
  Decision d = admit(7, "solo", 0, 1);
  EXPECT_EQ(Refused(d).limit, RefusedBy::kPolicyTenantSessions);
  EXPECT_EQ(Refused(d).message,
            "policy limit: uid 7 already has 1 session under policy 'solo', the most it allows "
            "one tenant; close one first.");
  // Policy total: "pair" allows 2 sessions across tenants.
  ASSERT_TRUE(std::holds_alternative<Grant>(admit(8, "pair", 2)));
  ASSERT_TRUE(std::holds_alternative<Grant>(admit(9, "pair", 2)));
  d = admit(10, "pair", 2);
  EXPECT_EQ(Refused(d).limit, RefusedBy::kPolicySessions);
  EXPECT_EQ(Refused(d).message,
            "policy limit: policy 'pair' already has 2 of its 2 sessions open.");
  // Tenant across policies: uid 7 may hold 3.
  ASSERT_TRUE(std::holds_alternative<Grant>(admit(7, "a")));
  ASSERT_TRUE(std::holds_alternative<Grant>(admit(7, "b")));
  d = admit(7, "c");
  EXPECT_EQ(Refused(d).limit, RefusedBy::kTenantSessions);
  EXPECT_EQ(Refused(d).message,
            "tenant limit: uid 7 already has 3 sessions open, the most one tenant may have; "
            "close one first.");
  EXPECT_EQ(admission.SessionsOfTenant(7), 3u);
  EXPECT_EQ(admission.SessionsOfPolicy("pair"), 2u);
  // Host total: 6.
  ASSERT_TRUE(std::holds_alternative<Grant>(admit(11, "x")));
  d = admit(12, "x");
  EXPECT_EQ(Refused(d).limit, RefusedBy::kSessions);
  EXPECT_EQ(Refused(d).message,
            "session limit: 6 of 6 sessions are open on this host; try again when one ends.");
}

TEST(AdmissionTest, GpuRefusalsAndAllOrNothing) {
  {
    Admission no_gpu({.memory_budget_bytes = 1ULL << 30}, GpuLedger({.devices = {},
                                                                     .source = "no GPU: "
                                                                               "libnvidia-ml.so.1 "
                                                                               "not found"}));
    Decision d = no_gpu.Admit({.tenant_uid = 1,
                               .policy = "gpu",
                               .worst_case_bytes = kMiB,
                               .gpu = GpuRequest{.compute = 0.5, .memory_bytes = 1ULL << 30}});
    EXPECT_EQ(Refused(d).limit, RefusedBy::kNoGpu);
    EXPECT_EQ(Refused(d).message,
              "GPU share: policy 'gpu' asks for a GPU share but this host has none (no GPU: "
              "libnvidia-ml.so.1 not found).");
    EXPECT_EQ(no_gpu.committed_bytes(), 0u) << "nothing committed on a refusal";
    EXPECT_TRUE(std::holds_alternative<Grant>(
        no_gpu.Admit({.tenant_uid = 1, .policy = "cpu", .worst_case_bytes = kMiB})))
        << "a policy without a GPU share is unaffected";
  }
  Admission admission({.memory_budget_bytes = 1ULL << 30}, GpuLedger(OneGpu()));
  AdmissionRequest half{.tenant_uid = 1,
                        .policy = "gpu",
                        .worst_case_bytes = kMiB,
                        .gpu = GpuRequest{.compute = 0.5, .memory_bytes = 4ULL << 30}};
  Decision a = admission.Admit(half);
  Decision b = admission.Admit(half);
  ASSERT_TRUE(std::holds_alternative<Grant>(a) && std::holds_alternative<Grant>(b));
  EXPECT_EQ(std::get<Grant>(a).gpu->device_index, 0u);
  Decision c = admission.Admit(half);
  EXPECT_EQ(Refused(c).limit, RefusedBy::kGpuShare);
  EXPECT_EQ(Refused(c).message,
            "GPU share: no device has 0.50 of its compute and 4.0 GiB of memory free (GPU 0 "
            "'Test GPU': 1.00 and 8.0 GiB of 16.0 GiB committed).");
  EXPECT_EQ(admission.committed_bytes(), 2 * kMiB) << "the refused one committed no memory";
  Decision bad = admission.Admit({.tenant_uid = 1,
                                  .policy = "gpu",
                                  .worst_case_bytes = kMiB,
                                  .gpu = GpuRequest{.compute = 1.5, .memory_bytes = kMiB}});
  EXPECT_EQ(Refused(bad).limit, RefusedBy::kInvalidRequest);
  EXPECT_THAT(Refused(bad).message, HasSubstr("compute 1.5"));
  // Releasing gives the share back to the ledger.
  ASSERT_TRUE(admission.Release(std::get<Grant>(a).ticket));
  EXPECT_TRUE(std::holds_alternative<Grant>(admission.Admit(half)));
}

TEST(AdmissionTest, ReleasingTwiceIsAnError) {
  Admission admission({.memory_budget_bytes = kMiB}, GpuLedger({}));
  Decision d = admission.Admit({.tenant_uid = 1, .policy = "p", .worst_case_bytes = kMiB});
  ASSERT_TRUE(std::holds_alternative<Grant>(d));
  Ticket t = std::get<Grant>(d).ticket;
  EXPECT_NE(t.id, 0u);
  ASSERT_TRUE(admission.Release(t));
  Status again = admission.Release(t);
  ASSERT_FALSE(again);
  EXPECT_THAT(again.error().message(), HasSubstr("is not held"));
  EXPECT_EQ(admission.committed_bytes(), 0u);
}

TEST(MemoryBudgetTest, HalfOfWhatCelldCanHaveMinusLockedWeights) {
  auto total = ParseMemTotal("MemTotal:       24684084 kB\nMemFree:  1 kB\n");
  ASSERT_TRUE(total) << total.error().message();
  EXPECT_EQ(*total, 24684084ULL * 1024);
  EXPECT_FALSE(ParseMemTotal("MemFree: 1 kB\n"));
  EXPECT_FALSE(ParseMemTotal("MemTotal: lots\n"));
  EXPECT_EQ(DefaultMemoryBudget(16ULL << 30, std::nullopt, 0), 8ULL << 30);
  EXPECT_EQ(DefaultMemoryBudget(16ULL << 30, std::nullopt, 1ULL << 30), 7ULL << 30);
  EXPECT_EQ(DefaultMemoryBudget(16ULL << 30, 4ULL << 30, 0), 2ULL << 30) << "cgroup cap wins";
  EXPECT_EQ(DefaultMemoryBudget(16ULL << 30, 32ULL << 30, 0), 8ULL << 30);
  EXPECT_EQ(DefaultMemoryBudget(8ULL << 30, std::nullopt, 5ULL << 30), 0u);
}

}  // namespace
}  // namespace cellhouse::resources
