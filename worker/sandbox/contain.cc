#include "worker/sandbox/contain.h"

#include <unistd.h>

#include <cerrno>

#include "base/clock.h"
#include "worker/sandbox/user_ns.h"

namespace cellhouse::sandbox {
namespace {

int WaitForParentInChild(int release_fd) {
  char byte = 0;
  ssize_t n;
  do {
    n = ::read(release_fd, &byte, 1);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return errno;
  if (n == 0) return ECANCELED;  // the parent gave up on us (its end closed without release)
  ::close(release_fd);
  return 0;
}

void WriteReportInChild(int fd, const ChildReport& report) {
  ssize_t ignored = ::write(fd, &report, sizeof(report));
  static_cast<void>(ignored);
}

// Runs one step, timing it; on failure reports {step, errno} and makes ContainInChild return.
class StepRunner {
 public:
  explicit StepRunner(int status_fd) : status_fd_(status_fd) {}
  bool Run(Step step, int error_or_zero, int64_t started_ns) {
    if (failed_) return false;
    if (error_or_zero != 0) {
      report_.step = static_cast<int32_t>(step);
      report_.error = error_or_zero;
      WriteReportInChild(status_fd_, report_);
      failed_ = true;
      return false;
    }
    report_.micros[static_cast<int>(step)] =
        static_cast<uint32_t>((MonotonicNanos() - started_ns) / 1000);
    return true;
  }
  void Succeed() {
    report_.ok = 1;
    WriteReportInChild(status_fd_, report_);
    ::close(status_fd_);
  }

 private:
  int status_fd_;
  ChildReport report_{};
  bool failed_ = false;
};

}  // namespace

bool ContainInChild(const ChildPlan& plan) {
  StepRunner steps(plan.status_fd);
  int64_t t = MonotonicNanos();
  // Each line: one step of the design brief's list, in its order. `t` restarts per step.
#define CH_STEP(step, call)                      \
  if (!steps.Run(step, (call), t)) return false; \
  t = MonotonicNanos()
  CH_STEP(Step::kWaitForParent, WaitForParentInChild(plan.release_fd));
  CH_STEP(Step::kRootInside, BecomeRootInChild());
  CH_STEP(Step::kRootfs, MakeEmptyRootInChild(plan.root));
  CH_STEP(Step::kHostname, SetHostnameInChild(plan.hostname, plan.hostname_length));
  CH_STEP(Step::kRlimits, ApplyRlimitsInChild(plan.rlimits, plan.rlimit_count));
  CH_STEP(Step::kCloseFds, CloseFdsInChild(plan.keep_fds, plan.keep_fd_count));
  CH_STEP(Step::kNotDumpable, SetNotDumpableInChild());
  CH_STEP(Step::kDropCapabilities, DropCapabilitiesInChild(*plan.capabilities));
  CH_STEP(Step::kUnprivilegedIds, SwitchToUnprivilegedInChild(plan.inside_uid, plan.inside_gid));
  CH_STEP(Step::kVerifyCapabilities, VerifyNoCapabilitiesInChild(*plan.capabilities));
  CH_STEP(Step::kParentDeathSignal, SetParentDeathSignalInChild());
  CH_STEP(Step::kNoNewPrivs, SetNoNewPrivsInChild());
  CH_STEP(Step::kSeccomp, InstallSeccompInChild(plan.filter));
#undef CH_STEP
  steps.Succeed();
  return true;
}

}  // namespace cellhouse::sandbox
