#include "worker/sandbox/steps.h"

namespace cellhouse::sandbox {

const char* StepName(Step step) {
  switch (step) {
    case Step::kHandshake:
      return "handshake pipes";
    case Step::kClone:
      return "clone3";
    case Step::kUidMap:
      return "uid_map";
    case Step::kGidMap:
      return "gid_map";
    case Step::kCgroup:
      return "cgroup placement";
    case Step::kRelease:
      return "release child";
    case Step::kWaitForParent:
      return "wait for parent";
    case Step::kRootInside:
      return "become root inside the user namespace";
    case Step::kRootfs:
      return "empty read-only root (tmpfs, pivot_root)";
    case Step::kHostname:
      return "sethostname";
    case Step::kRlimits:
      return "setrlimit";
    case Step::kCloseFds:
      return "close inherited descriptors";
    case Step::kNotDumpable:
      return "PR_SET_DUMPABLE";
    case Step::kDropCapabilities:
      return "drop capabilities";
    case Step::kUnprivilegedIds:
      return "switch to unprivileged uid/gid";
    case Step::kVerifyCapabilities:
      return "verify no capability is left";
    case Step::kParentDeathSignal:
      return "PR_SET_PDEATHSIG";
    case Step::kNoNewPrivs:
      return "PR_SET_NO_NEW_PRIVS";
    case Step::kSeccomp:
      return "seccomp filter";
    case Step::kCount:
      break;
  }
  return "unknown step";
}

}  // namespace cellhouse::sandbox
