#include "worker/sandbox/capabilities.h"

#include <linux/capability.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <utility>

namespace cellhouse::sandbox {

Result<CapabilityPlan> CapabilityPlan::Create() {
  cap_t none = cap_init();
  if (none == nullptr) return Error::FromErrno(errno, "cap_init");
  cap_t only_setid = cap_init();
  if (only_setid == nullptr) {
    cap_free(none);
    return Error::FromErrno(errno, "cap_init");
  }
  const cap_value_t setid[] = {CAP_SETUID, CAP_SETGID};
  if (cap_set_flag(only_setid, CAP_PERMITTED, 2, setid, CAP_SET) != 0 ||
      cap_set_flag(only_setid, CAP_EFFECTIVE, 2, setid, CAP_SET) != 0) {
    int err = errno;
    cap_free(none);
    cap_free(only_setid);
    return Error::FromErrno(err, "cap_set_flag");
  }
  // cap_max_bits() reads the running kernel's CAP_LAST_CAP, which may exceed the headers'.
  int last = static_cast<int>(cap_max_bits()) - 1;
  return CapabilityPlan(only_setid, none, last);
}

CapabilityPlan::CapabilityPlan(CapabilityPlan&& other) noexcept
    : only_setid_(std::exchange(other.only_setid_, nullptr)),
      none_(std::exchange(other.none_, nullptr)),
      last_cap_(other.last_cap_) {}

CapabilityPlan::~CapabilityPlan() {
  if (only_setid_ != nullptr) cap_free(only_setid_);
  if (none_ != nullptr) cap_free(none_);
}

int DropCapabilitiesInChild(const CapabilityPlan& plan) {
  // Bounding set first: dropping from it needs CAP_SETPCAP, which goes with P/E below.
  for (int cap = 0; cap <= plan.last_cap(); ++cap) {
    if (cap_drop_bound(static_cast<cap_value_t>(cap)) != 0) return errno;
  }
  if (cap_reset_ambient() != 0) return errno;
  // Inheritable is empty in only_setid; P and E keep what the uid switch needs and nothing else.
  if (cap_set_proc(plan.only_setid()) != 0) return errno;
  return 0;
}

int VerifyNoCapabilitiesInChild(const CapabilityPlan& plan) {
  if (cap_set_proc(plan.none()) != 0) return errno;
  __user_cap_header_struct header{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[_LINUX_CAPABILITY_U32S_3] = {};
  if (::syscall(SYS_capget, &header, data) != 0) return errno;
  for (const auto& d : data) {
    if (d.effective != 0 || d.permitted != 0 || d.inheritable != 0) return EPERM;
  }
  for (int cap = 0; cap <= plan.last_cap(); ++cap) {
    if (::prctl(PR_CAPBSET_READ, cap, 0, 0, 0) != 0) return EPERM;
    if (::prctl(PR_CAP_AMBIENT, PR_CAP_AMBIENT_IS_SET, cap, 0, 0) > 0) return EPERM;
  }
  return 0;
}

}  // namespace cellhouse::sandbox
