// libFuzzer target for the policy loader: the first byte picks what the rest is fed to:
// 'T' a text-format policy, 'J' a JSON policy, 'O' an OCI seccomp profile (other bytes: by
// value modulo 3). Whatever is accepted is compiled, described, and its filter verified and
// evaluated, so a crash anywhere from parsing to BPF is found. Nothing is read from disk but
// an oci_profile path a policy names (under a directory that does not exist).
#include <linux/seccomp.h>

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "policy/oci_import.h"
#include "policy/policy.h"

namespace {

void Exercise(const cellhouse::policy::CompiledPolicy& p) {
  static_cast<void>(cellhouse::policy::DescribePolicy(p));
  if (!cellhouse::policy::VerifySeccompProgram(p.bpf())) {
    __builtin_trap();  // compiler bug
  }
  seccomp_data d{};
  d.arch = p.filter().arch;
  for (int nr = 0; nr < 450; nr += 7) {
    d.nr = nr;
    static_cast<void>(cellhouse::policy::EvaluateSeccomp(p.bpf(), d));
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  if (size == 0) {
    return 0;
  }
  const uint8_t mode = data[0] == 'T' ? 0 : data[0] == 'J' ? 1 : data[0] == 'O' ? 2 : data[0] % 3;
  std::string_view content(reinterpret_cast<const char*>(data + 1), size - 1);
  if (mode == 2) {
    std::vector<cellhouse::policy::Problem> problems;
    auto imported = cellhouse::policy::ImportOciProfile(content, "/nonexistent/p.json", &problems);
    if (imported) {
      cellhouse::policy::FilterSpec spec{.default_action = imported->default_action,
                                         .rules = imported->rules};
      auto filter = cellhouse::policy::CompileFilter(spec, &problems);
      if (filter && !cellhouse::policy::VerifySeccompProgram(filter->program)) {
        __builtin_trap();
      }
    }
    return 0;
  }
  // The file name must match the policy's name; "fuzz" lets a matching input get all the way.
  const char* path = mode == 0 ? "/nonexistent/fuzz.textproto" : "/nonexistent/fuzz.json";
  auto p = cellhouse::policy::LoadPolicyFromString(content, path, nullptr);
  if (p) {
    Exercise(**p);
  }
  return 0;
}
