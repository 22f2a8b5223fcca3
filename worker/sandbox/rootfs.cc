#include "worker/sandbox/rootfs.h"

#include <fcntl.h>
#include <sys/mount.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>

namespace cellhouse::sandbox {
namespace {

// Binds `source` at `target` (whose parents exist): a device node onto an empty file, a
// directory onto an empty directory.
int BindInChild(const char* source, const char* target, bool directory) {
  if (directory) {
    if (::mkdir(target, 0755) != 0 && errno != EEXIST) return errno;
  } else {
    int fd = ::open(target, O_WRONLY | O_CREAT | O_CLOEXEC, 0600);
    if (fd < 0) return errno;
    ::close(fd);
  }
  unsigned long flags = MS_BIND | (directory ? MS_REC : 0);
  if (::mount(source, target, nullptr, flags, nullptr) != 0) return errno;
  return 0;
}

}  // namespace

int MakeEmptyRootInChild(const RootPlan& plan) {
  // Nothing we mount may propagate back to the host's namespace (and pivot_root refuses a
  // shared root): make every mount private first (mount_namespaces(7)).
  if (::mount(nullptr, "/", nullptr, MS_REC | MS_PRIVATE, nullptr) != 0) return errno;
  // Tiny: it holds at most a few empty files to bind device nodes on.
  if (::mount("cellhouse", plan.mount_point, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC,
              "size=64k,nr_inodes=64,mode=0555") != 0) {
    return errno;
  }
  for (size_t i = 0; i < plan.directory_count; ++i) {
    if (::mkdir(plan.directories[i], 0555) != 0 && errno != EEXIST) return errno;
  }
  for (size_t i = 0; i < plan.bind_count; ++i) {
    int err = BindInChild(plan.bind_sources[i], plan.bind_targets[i], plan.bind_is_directory[i]);
    if (err != 0) return err;
  }
  // pivot_root(".", "."): the old root ends up mounted on top of the new one and is detached
  // right away; no directory for it is needed (pivot_root(2), NOTES).
  if (::chdir(plan.mount_point) != 0) return errno;
  if (::syscall(SYS_pivot_root, ".", ".") != 0) return errno;
  if (::umount2(".", MNT_DETACH) != 0) return errno;
  if (::chdir("/") != 0) return errno;
  if (::mount(nullptr, "/", nullptr,
              MS_REMOUNT | MS_BIND | MS_RDONLY | MS_NOSUID | MS_NODEV | MS_NOEXEC, nullptr) != 0) {
    return errno;
  }
  return 0;
}

}  // namespace cellhouse::sandbox
