// User namespace identity: the parent writes the id maps (root inside → a per-session host id),
// the child takes the ids it needs. See user_namespaces(7).
//
// Each session maps two consecutive host ids: inside 0 → host_uid (used only during setup, to own
// the new root) and inside 1 → host_uid + 1 (what the worker runs as). Two sessions never share a
// host id, so even a kernel bug that let a worker out of its namespace would leave it a distinct,
// unprivileged host user.
#ifndef CELLHOUSE_WORKER_SANDBOX_USER_NS_H_
#define CELLHOUSE_WORKER_SANDBOX_USER_NS_H_

#include <sys/types.h>

#include "base/result.h"
#include "ipc/worker_contract.h"

namespace cellhouse::sandbox {

using ipc::kIdsPerSession;
using ipc::kWorkerInsideGid;
using ipc::kWorkerInsideUid;

// Writes /proc/PID/{uid_map,setgroups,gid_map}: setgroups is denied before gid_map is written
// (required for an unprivileged map writer, and it stops the worker from dropping groups).
Status WriteUidMapFromParent(pid_t pid, uid_t host_uid);
Status WriteGidMapFromParent(pid_t pid, gid_t host_gid);

// The child still holds its old host ids, which are unmapped inside (65534); switch to root
// inside first or a tmpfs it mounts refuses to create anything (EOVERFLOW). Returns errno or 0.
int BecomeRootInChild();
// setresgid then setresuid to the unprivileged inside ids. Going from uid 0 to non-zero clears
// the permitted and effective capability sets (capabilities(7), "Effect of user ID changes").
int SwitchToUnprivilegedInChild(uid_t uid, gid_t gid);

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_USER_NS_H_
