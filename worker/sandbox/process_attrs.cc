#include "worker/sandbox/process_attrs.h"

#include <linux/seccomp.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <climits>

namespace cellhouse::sandbox {

int SetHostnameInChild(const char* name, size_t length) {
  if (::sethostname(name, length) != 0) return errno;
  return 0;
}

int ApplyRlimitsInChild(const RlimitSetting* limits, size_t count) {
  for (size_t i = 0; i < count; ++i) {
    rlimit value{limits[i].soft, limits[i].hard};
    if (::setrlimit(static_cast<__rlimit_resource_t>(limits[i].resource), &value) != 0) {
      return errno;
    }
  }
  return 0;
}

int CloseFdsInChild(const int* keep_sorted, size_t count) {
  unsigned first = 0;
  for (size_t i = 0; i < count; ++i) {
    auto keep = static_cast<unsigned>(keep_sorted[i]);
    if (keep > first && ::syscall(SYS_close_range, first, keep - 1, 0) != 0) return errno;
    first = keep + 1;
  }
  if (::syscall(SYS_close_range, first, UINT_MAX, 0) != 0) return errno;
  return 0;
}

int SetNotDumpableInChild() {
  if (::prctl(PR_SET_DUMPABLE, 0, 0, 0, 0) != 0) return errno;
  return 0;
}

int SetParentDeathSignalInChild() {
  if (::prctl(PR_SET_PDEATHSIG, SIGKILL, 0, 0, 0) != 0) return errno;
  return 0;
}

int SetNoNewPrivsInChild() {
  if (::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) != 0) return errno;
  return 0;
}

int InstallSeccompInChild(const sock_fprog& program) {
  if (program.len == 0 || program.filter == nullptr) return EINVAL;
  if (::syscall(SYS_seccomp, SECCOMP_SET_MODE_FILTER, 0, &program) != 0) return errno;
  return 0;
}

}  // namespace cellhouse::sandbox
