#include "worker/sandbox/user_ns.h"

#include <unistd.h>

#include <cerrno>
#include <string>

#include "base/io.h"

namespace cellhouse::sandbox {
namespace {

std::string MapLine(uint32_t host_first) {
  return "0 " + std::to_string(host_first) + " " + std::to_string(kIdsPerSession) + "\n";
}

}  // namespace

Status WriteUidMapFromParent(pid_t pid, uid_t host_uid) {
  std::string proc = "/proc/" + std::to_string(pid);
  return WriteStringToFile(proc + "/uid_map", MapLine(host_uid));
}

Status WriteGidMapFromParent(pid_t pid, gid_t host_gid) {
  std::string proc = "/proc/" + std::to_string(pid);
  CH_RETURN_IF_ERROR(WriteStringToFile(proc + "/setgroups", "deny"));
  return WriteStringToFile(proc + "/gid_map", MapLine(host_gid));
}

int BecomeRootInChild() {
  if (::setresgid(0, 0, 0) != 0) return errno;
  if (::setresuid(0, 0, 0) != 0) return errno;
  return 0;
}

int SwitchToUnprivilegedInChild(uid_t uid, gid_t gid) {
  if (::setresgid(gid, gid, gid) != 0) return errno;
  if (::setresuid(uid, uid, uid) != 0) return errno;
  return 0;
}

}  // namespace cellhouse::sandbox
