#include "tests/e2e/probe/attacks.h"

#include <fcntl.h>
#include <linux/bpf.h>
#include <linux/io_uring.h>
#include <linux/perf_event.h>
#include <linux/reboot.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/personality.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <termios.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace cellhouse::probe {
namespace {

int Result(long rc) { return rc < 0 ? errno : 0; }

int OpenFile() { return Result(::syscall(SYS_openat, AT_FDCWD, "/etc/passwd", O_RDONLY)); }
int WriteProcSelf() {
  return Result(::syscall(SYS_openat, AT_FDCWD, "/proc/self/oom_score_adj", O_WRONLY));
}
int Execve() {
  const char* argv[] = {"/bin/sh", nullptr};
  return Result(::syscall(SYS_execve, "/bin/sh", argv, nullptr));
}
int SocketInet() { return Result(::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0)); }
int ConnectUnix() {
  long fd = ::syscall(SYS_socket, AF_UNIX, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strcpy(addr.sun_path, "/run/cellhouse/celld.sock");
  return Result(::syscall(SYS_connect, fd, &addr, sizeof(addr)));
}
int ConnectInet() {
  long fd = ::syscall(SYS_socket, AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return errno;
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(22);
  addr.sin_addr.s_addr = htonl(0x0a000001);  // 10.0.0.1: not reachable from an empty netns
  return Result(::syscall(SYS_connect, fd, &addr, sizeof(addr)));
}
int Ptrace() { return Result(::syscall(SYS_ptrace, PTRACE_ATTACH, 1, 0, 0)); }
int ProcessVmReadv() {
  char buf[8];
  iovec local{buf, sizeof(buf)};
  iovec remote{reinterpret_cast<void*>(0x400000), sizeof(buf)};
  return Result(::syscall(SYS_process_vm_readv, 1, &local, 1, &remote, 1, 0));
}
int KillOutside() { return Result(::syscall(SYS_kill, 2, 0)); }
int Mount() { return Result(::syscall(SYS_mount, "none", "/", "tmpfs", 0, nullptr)); }
int Umount() { return Result(::syscall(SYS_umount2, "/", MNT_DETACH)); }
int PivotRoot() { return Result(::syscall(SYS_pivot_root, ".", ".")); }
int Chroot() { return Result(::syscall(SYS_chroot, "/")); }
int UnshareUser() { return Result(::syscall(SYS_unshare, CLONE_NEWUSER)); }
int Setns() { return Result(::syscall(SYS_setns, 0, CLONE_NEWNET)); }
int CloneNewUser() {
  long pid = ::syscall(SYS_clone, CLONE_NEWUSER | SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) ::syscall(SYS_exit, 0);
  return Result(pid);
}
int Bpf() {
  bpf_attr attr{};
  return Result(::syscall(SYS_bpf, BPF_MAP_CREATE, &attr, sizeof(attr)));
}
int PerfEventOpen() {
  perf_event_attr attr{};
  attr.size = sizeof(attr);
  return Result(::syscall(SYS_perf_event_open, &attr, 0, -1, -1, 0));
}
int IoUringSetup() {
  io_uring_params params{};
  return Result(::syscall(SYS_io_uring_setup, 4, &params));
}
int Userfaultfd() { return Result(::syscall(SYS_userfaultfd, 0)); }
int Keyctl() { return Result(::syscall(SYS_keyctl, 0 /*KEYCTL_GET_KEYRING_ID*/, -3, 0)); }
int AddKey() { return Result(::syscall(SYS_add_key, "user", "x", "y", 1, -3)); }
int InitModule() { return Result(::syscall(SYS_init_module, nullptr, 0, "")); }
int Reboot() {
  return Result(::syscall(SYS_reboot, LINUX_REBOOT_MAGIC1, LINUX_REBOOT_MAGIC2,
                          LINUX_REBOOT_CMD_CAD_OFF, nullptr));
}
int SetuidRoot() { return Result(::syscall(SYS_setuid, 0)); }
int Tiocsti() {
  char c = 'x';
  return Result(::syscall(SYS_ioctl, 0, TIOCSTI, &c));
}
int Personality() { return Result(::syscall(SYS_personality, READ_IMPLIES_EXEC)); }
int MprotectExec() {
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return errno;
  return Result(::syscall(SYS_mprotect, page, 4096, PROT_READ | PROT_EXEC));
}
int MmapExec() {
  long rc =
      ::syscall(SYS_mmap, nullptr, 4096, PROT_READ | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  return rc == -1 ? errno : 0;
}
int RaiseRlimit() {
  rlimit64 high{1 << 20, 1 << 20};
  return Result(::syscall(SYS_prlimit64, 0, RLIMIT_NOFILE, &high, nullptr));
}
int Fork() {
  long pid = ::syscall(SYS_clone, SIGCHLD, 0, 0, 0, 0);
  if (pid == 0) ::syscall(SYS_exit, 0);
  return Result(pid);
}
int MemfdCreate() { return Result(::syscall(SYS_memfd_create, "x", 0)); }
int Mknod() {
  return Result(::syscall(SYS_mknodat, AT_FDCWD, "/dev-null", S_IFCHR | 0666, makedev(1, 3)));
}
int Chmod() { return Result(::syscall(SYS_fchmodat, AT_FDCWD, "/", 0777)); }
int Sethostname() { return Result(::syscall(SYS_sethostname, "evil", 4)); }
int Settimeofday() {
  timeval tv{0, 0};
  return Result(::syscall(SYS_settimeofday, &tv, nullptr));
}
int Acct() { return Result(::syscall(SYS_acct, "/x")); }
int Swapon() { return Result(::syscall(SYS_swapon, "/x", 0)); }
int KexecLoad() { return Result(::syscall(SYS_kexec_load, 0, 0, nullptr, 0)); }
int OpenByHandle() { return Result(::syscall(SYS_open_by_handle_at, 0, nullptr, 0)); }
int Prctl() { return Result(::syscall(SYS_prctl, PR_SET_DUMPABLE, 1, 0, 0, 0)); }

constexpr Attack kAttacks[] = {
    {"open_file", "openat", OpenFile},
    {"write_proc_self", "openat", WriteProcSelf},
    {"execve", "execve", Execve},
    {"socket_inet", "socket", SocketInet},
    {"connect_celld", "socket", ConnectUnix},
    {"connect_inet", "socket", ConnectInet},
    {"ptrace", "ptrace", Ptrace},
    {"process_vm_readv", "process_vm_readv", ProcessVmReadv},
    {"kill_outside", "kill", KillOutside},
    {"mount", "mount", Mount},
    {"umount2", "umount2", Umount},
    {"pivot_root", "pivot_root", PivotRoot},
    {"chroot", "chroot", Chroot},
    {"unshare_user", "unshare", UnshareUser},
    {"setns", "setns", Setns},
    {"clone_newuser", "clone", CloneNewUser},
    {"bpf", "bpf", Bpf},
    {"perf_event_open", "perf_event_open", PerfEventOpen},
    {"io_uring_setup", "io_uring_setup", IoUringSetup},
    {"userfaultfd", "userfaultfd", Userfaultfd},
    {"keyctl", "keyctl", Keyctl},
    {"add_key", "add_key", AddKey},
    {"init_module", "init_module", InitModule},
    {"reboot", "reboot", Reboot},
    {"setuid_root", "setuid", SetuidRoot},
    {"tiocsti", "ioctl", Tiocsti},
    {"personality", "personality", Personality},
    {"mprotect_exec", "mprotect", MprotectExec},
    {"mmap_exec", "mmap", MmapExec},
    {"raise_rlimit", "prlimit64", RaiseRlimit},
    {"fork", "clone", Fork},
    {"memfd_create", "memfd_create", MemfdCreate},
    {"mknod", "mknodat", Mknod},
    {"chmod_root", "fchmodat", Chmod},
    {"sethostname", "sethostname", Sethostname},
    {"settimeofday", "settimeofday", Settimeofday},
    {"acct", "acct", Acct},
    {"swapon", "swapon", Swapon},
    {"kexec_load", "kexec_load", KexecLoad},
    {"open_by_handle_at", "open_by_handle_at", OpenByHandle},
    {"prctl_dumpable", "prctl", Prctl},
};

}  // namespace

std::span<const Attack> Attacks() { return kAttacks; }

const Attack* FindAttack(std::string_view name) {
  for (const Attack& a : kAttacks) {
    if (a.name == name) return &a;
  }
  return nullptr;
}

}  // namespace cellhouse::probe
