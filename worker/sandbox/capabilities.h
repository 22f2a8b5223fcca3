// Dropping every capability (effective, permitted, inheritable, ambient, bounding) with libcap.
// See capabilities(7).
//
//   Result<CapabilityPlan> plan = CapabilityPlan::Create();   // before the fork: libcap allocates
//   ... in the child:
//   DropCapabilitiesInChild(*plan);        // bounding, ambient, inheritable gone; P/E keep only
//                                          // SETUID/SETGID for the id switch that follows
//   SwitchToUnprivilegedInChild(...);      // uid 0 → non-zero clears P and E (kernel rule)
//   VerifyNoCapabilitiesInChild();         // all five sets read back as empty
#ifndef CELLHOUSE_WORKER_SANDBOX_CAPABILITIES_H_
#define CELLHOUSE_WORKER_SANDBOX_CAPABILITIES_H_

#include <sys/capability.h>

#include "base/result.h"

namespace cellhouse::sandbox {

class CapabilityPlan {
 public:
  static Result<CapabilityPlan> Create();
  CapabilityPlan(CapabilityPlan&& other) noexcept;
  CapabilityPlan& operator=(CapabilityPlan&&) = delete;
  CapabilityPlan(const CapabilityPlan&) = delete;
  ~CapabilityPlan();

  cap_t only_setid() const { return only_setid_; }
  cap_t none() const { return none_; }
  int last_cap() const { return last_cap_; }

 private:
  CapabilityPlan(cap_t only_setid, cap_t none, int last_cap)
      : only_setid_(only_setid), none_(none), last_cap_(last_cap) {}
  cap_t only_setid_;
  cap_t none_;
  int last_cap_;
};

// Returns errno or 0. Async-signal-safe (cap_drop_bound and cap_set_proc are prctl/capset).
int DropCapabilitiesInChild(const CapabilityPlan& plan);
// Clears whatever is left and checks with capget(2) that every set is empty, and with
// PR_CAPBSET_READ/PR_CAP_AMBIENT_IS_SET that bounding and ambient are. Returns errno, EPERM if a
// capability survived, or 0.
int VerifyNoCapabilitiesInChild(const CapabilityPlan& plan);

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_CAPABILITIES_H_
