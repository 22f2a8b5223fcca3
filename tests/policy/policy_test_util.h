// Helpers shared by the policy tests: a minimal valid policy, policies from text snippets, model
// facts of a small model, and evaluation of a compiled filter against one call.
//
//   auto p = CompileText("seccomp { rules { syscalls: \"socket\" action: ERRNO } }");
//   EXPECT_EQ(Action(Evaluate(**p, __NR_socket)), SECCOMP_RET_ERRNO);
#ifndef CELLHOUSE_TESTS_POLICY_POLICY_TEST_UTIL_H_
#define CELLHOUSE_TESTS_POLICY_POLICY_TEST_UTIL_H_

#include <google/protobuf/text_format.h>
#include <linux/seccomp.h>

#include <array>
#include <cstdint>
#include <memory>
#include <string>

#include "policy/policy.h"

namespace cellhouse::policy::testing {

// A small model: 1024 tokens of context at 32 KiB each, 8 MiB of state, 16 MiB of worker.
inline ModelFacts SmallModel() {
  return {.seq_len = 1024,
          .kv_bytes_per_token = 32 << 10,
          .state_fixed_bytes = 8 << 20,
          .worker_overhead_bytes = 16 << 20};
}

// The smallest valid policy: a name, a group, a uid range, a memory cap.
inline constexpr const char* kMinimalPolicy = R"(
  name: "t"
  gids: 100
  host_uids { first: 1879048192 count: 1024 }
  cgroup { memory_max_bytes: 1073741824 }
)";

// kMinimalPolicy merged with `extra` (text format; later singular fields win).
inline Policy PolicyFromText(const std::string& extra) {
  Policy p;
  google::protobuf::TextFormat::Parser parser;
  parser.AllowPartialMessage(true);
  // A test's own snippet is trusted to parse; a failure shows as a validation problem below.
  static_cast<void>(parser.ParseFromString(kMinimalPolicy, &p));
  Policy more;
  static_cast<void>(parser.ParseFromString(extra, &more));
  // Merging appends repeated fields: a snippet that sets gids replaces the base's.
  if (more.gids_size() > 0 || more.uids_size() > 0) {
    p.clear_gids();
  }
  // A snippet's id range replaces the base's (merging would keep fields proto3 sees as unset).
  if (more.has_host_uids()) {
    p.clear_host_uids();
  }
  p.MergeFrom(more);
  return p;
}

inline Result<std::shared_ptr<const CompiledPolicy>> CompileText(
    const std::string& extra, const ModelFacts* facts = nullptr) {
  return CompilePolicy(PolicyFromText(extra), facts);
}

inline uint32_t Evaluate(const CompiledPolicy& policy, int nr, std::array<uint64_t, 6> args = {},
                         uint32_t arch = 0) {
  seccomp_data d{};
  d.nr = nr;
  d.arch = arch != 0 ? arch : policy.filter().arch;
  for (size_t i = 0; i < args.size(); ++i) {
    d.args[i] = args[i];
  }
  return EvaluateSeccomp(policy.bpf(), d);
}

inline uint32_t Action(uint32_t ret) { return ret & SECCOMP_RET_ACTION_FULL; }
inline uint32_t Data(uint32_t ret) { return ret & SECCOMP_RET_DATA; }

}  // namespace cellhouse::policy::testing

#endif  // CELLHOUSE_TESTS_POLICY_POLICY_TEST_UTIL_H_
