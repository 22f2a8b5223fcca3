// The sandbox steps, named once, so a failing child can report "{step, errno}" to its parent
// as two integers and the parent can turn them into a sentence.
#ifndef CELLHOUSE_WORKER_SANDBOX_STEPS_H_
#define CELLHOUSE_WORKER_SANDBOX_STEPS_H_

#include <cstdint>

namespace cellhouse::sandbox {

// In the order they run. Parent-side steps first (they run in the zygote), then child steps.
enum class Step : int32_t {
  kHandshake = 0,  // the pipes the parent releases the child with and reads its report from
  kClone,
  kUidMap,
  kGidMap,
  kCgroup,
  kRelease,
  // Child side (ContainInChild).
  kWaitForParent,
  kRootInside,
  kRootfs,
  kHostname,
  kRlimits,
  kCloseFds,
  kNotDumpable,
  kDropCapabilities,
  kUnprivilegedIds,
  kVerifyCapabilities,
  kParentDeathSignal,
  kNoNewPrivs,
  kSeccomp,
  kCount,
};

inline constexpr int kStepCount = static_cast<int>(Step::kCount);

const char* StepName(Step step);

// What the child writes on its status pipe: once, either on the first failing step or after the
// last step succeeded (then with the time each step took). Fixed size: no allocation in the child.
struct ChildReport {
  int32_t ok = 0;                    // 1 when every step succeeded
  int32_t step = 0;                  // the failing Step
  int32_t error = 0;                 // errno of the failing step
  uint32_t micros[kStepCount] = {};  // per child step, when ok
};

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_STEPS_H_
