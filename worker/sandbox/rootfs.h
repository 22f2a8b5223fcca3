// The worker's file system view: an empty, read-only tmpfs as root, entered with pivot_root(2),
// the old root detached. No /proc, no /dev, no files at all: the worker never executes anything
// and already has the model mapped. A session holding a GPU share gets its device nodes bound in.
#ifndef CELLHOUSE_WORKER_SANDBOX_ROOTFS_H_
#define CELLHOUSE_WORKER_SANDBOX_ROOTFS_H_

#include <cstddef>

namespace cellhouse::sandbox {

struct RootPlan {
  // An existing directory of the old root to mount the new root on. The mount is private to the
  // worker's mount namespace, so it hides nothing from anyone else.
  const char* mount_point = "/tmp";
  // Host paths to bind-mount (device nodes, directories) and their targets under mount_point,
  // and the directories (under mount_point, parents first) the targets need. Built before the
  // fork: the child may not allocate.
  const char* const* directories = nullptr;
  size_t directory_count = 0;
  const char* const* bind_sources = nullptr;
  const char* const* bind_targets = nullptr;
  const bool* bind_is_directory = nullptr;
  size_t bind_count = 0;
};

// Runs in the child (async-signal-safe). Returns errno or 0.
int MakeEmptyRootInChild(const RootPlan& plan);

}  // namespace cellhouse::sandbox

#endif  // CELLHOUSE_WORKER_SANDBOX_ROOTFS_H_
