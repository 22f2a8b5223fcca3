// The escape battery: things a compromised worker would try. Each attack makes the system call
// it names directly (no library wrapper that might fail earlier for another reason) and returns
// 0 if the call succeeded or the errno it failed with. Under the default policy each one is
// expected to kill the worker with SIGSYS for `syscall`; under a policy that allows the calls,
// the other layers (empty root, no capabilities, namespaces) are expected to refuse them with an
// errno instead. Test-only: linked into cell-zygote-probe, never into the shipped worker.
#ifndef CELLHOUSE_TESTS_E2E_PROBE_ATTACKS_H_
#define CELLHOUSE_TESTS_E2E_PROBE_ATTACKS_H_

#include <span>
#include <string_view>

namespace cellhouse::probe {

struct Attack {
  std::string_view name;
  // The system call the seccomp filter should stop (as libseccomp names it).
  std::string_view syscall;
  int (*run)();
};

std::span<const Attack> Attacks();
const Attack* FindAttack(std::string_view name);

}  // namespace cellhouse::probe

#endif  // CELLHOUSE_TESTS_E2E_PROBE_ATTACKS_H_
