#include "policy/syscall_groups.h"

#include <fcntl.h>
#include <sys/mman.h>

#include <array>

#include "base/str_cat.h"

namespace cellhouse::policy {
namespace {

// mmap(2)/mprotect(2) only when the protection (argument 2) lacks PROT_EXEC: the worker never
// needs new executable memory, and refusing it keeps injected code from running (W^X).
constexpr GroupArgCheck kNoExec{
    .index = 2, .op = ArgCondition::MASKED_EQ, .value = 0, .mask = PROT_EXEC};

// clone(2) only without CLONE_NEW* flags (argument 0): threads, never new namespaces, which an
// unprivileged process may otherwise create (user_namespaces(7)). clone3 passes its flags in
// memory a filter cannot read, so no group allows it; answer it with ENOSYS and glibc falls
// back to clone.
// CLONE_NEWNS | CLONE_NEWCGROUP | CLONE_NEWUTS | CLONE_NEWIPC | CLONE_NEWUSER | CLONE_NEWPID |
// CLONE_NEWNET.
constexpr uint64_t kNamespaceFlags = 0x7E020000;
constexpr GroupArgCheck kNoNamespaces{
    .index = 0, .op = ArgCondition::MASKED_EQ, .value = 0, .mask = kNamespaceFlags};

// ---- The data. Each array is one group's members; kGroups names and explains them. ----

// Descriptor I/O on what the worker already holds (its client and control sockets). No call
// here can open anything new.
constexpr GroupMember kIo[] = {{"read"},  {"write"}, {"readv"}, {"writev"},    {"close"},
                               {"lseek"}, {"fcntl"}, {"fstat"}, {"newfstatat"}};
// Ending the worker (exit_group is what _exit(2) calls).
constexpr GroupMember kExit[] = {{"exit"}, {"exit_group"}};
// Returning from signal handlers and restarting interrupted calls; masking signals.
constexpr GroupMember kSignalReturn[] = {{"rt_sigreturn"}, {"rt_sigprocmask"}, {"restart_syscall"}};
// malloc and the KV cache: heap and anonymous mappings, never executable.
constexpr GroupMember kMemory[] = {{"brk"},    {"mmap", kNoExec}, {"mprotect", kNoExec},
                                   {"munmap"}, {"mremap"},        {"madvise"}};
// Locks and scheduling within the worker's own process (glibc and OpenBLAS).
constexpr GroupMember kSync[] = {{"futex"}, {"sched_yield"}, {"sched_getaffinity"}};
// Clocks and sleeping (the vDSO usually answers clock_gettime without a system call; the call
// is the fallback on clock sources the vDSO cannot read).
constexpr GroupMember kTime[] = {
    {"clock_gettime"}, {"clock_nanosleep"}, {"nanosleep"}, {"gettimeofday"}};
// The worker's own ids (for logs and glibc's internals).
constexpr GroupMember kSelf[] = {{"getpid"}, {"gettid"}};
// Waiting on and talking over the sockets it was handed.
constexpr GroupMember kSocketIo[] = {{"ppoll"},    {"poll"},   {"recvmsg"}, {"sendmsg"},
                                     {"recvfrom"}, {"sendto"}, {"shutdown"}};
// Random bytes (sampling seeds when the client gives none).
constexpr GroupMember kRandom[] = {{"getrandom"}};
// What the worker needs after its sandbox is set up: the built-in allow-list.
constexpr GroupMember kWorker[] = {{"@io"},   {"@exit"}, {"@signal-return"}, {"@memory"}, {"@sync"},
                                   {"@time"}, {"@self"}, {"@socket-io"},     {"@random"}};
// fcntl(2) only to read and set a descriptor's status flags (the worker makes its client
// socket non-blocking): no duplicating, no locks, no F_SETOWN.
constexpr GroupArgCheck kGetStatusFlags{.index = 1, .op = ArgCondition::EQ, .value = F_GETFL};
constexpr GroupArgCheck kSetStatusFlags{.index = 1, .op = ArgCondition::EQ, .value = F_SETFL};
// sendto(2) only on a connected socket (no destination address, argument 4): what send(2) is.
constexpr GroupArgCheck kNoDestination{.index = 4, .op = ArgCondition::EQ, .value = 0};
// madvise(2) only to fault in pages about to be written (MADV_POPULATE_WRITE: the KV cache's,
// before a step writes them; engine/run_state.h): no advice that drops or shares memory.
constexpr GroupArgCheck kPopulateWrite{
    .index = 2, .op = ArgCondition::EQ, .value = MADV_POPULATE_WRITE};
// The smallest list that still serves a session, each call one the worker makes: socket I/O on
// its two sockets (poll, read/write, send/recvmsg, send on a connected socket, non-blocking
// mode), a heap (and its KV cache's pages faulted in ahead of writes), locks, a clock, random
// bytes for a sampling seed the client did not give, and exit. No getpid, no sleeping, no
// executable memory, no new descriptors.
constexpr GroupMember kStrict[] = {{"read"},
                                   {"write"},
                                   {"recvmsg"},
                                   {"sendmsg"},
                                   {"ppoll"},
                                   {"poll"},
                                   {"close"},
                                   {"fcntl", kGetStatusFlags},
                                   {"fcntl", kSetStatusFlags},
                                   {"sendto", kNoDestination},
                                   {"exit"},
                                   {"exit_group"},
                                   {"rt_sigreturn"},
                                   {"restart_syscall"},
                                   {"brk"},
                                   {"munmap"},
                                   {"mmap", kNoExec},
                                   {"mremap"},
                                   {"madvise", kPopulateWrite},
                                   {"futex"},
                                   {"clock_gettime"},
                                   {"getrandom"}};
// Creating or using network endpoints: never in a worker's list; for rules that answer them
// with an errno instead of a kill.
constexpr GroupMember kNetwork[] = {
    {"socket"},      {"socketpair"}, {"connect"},    {"bind"},       {"listen"},
    {"accept"},      {"accept4"},    {"getsockopt"}, {"setsockopt"}, {"getsockname"},
    {"getpeername"}, {"sendmmsg"},   {"recvmmsg"}};
// Touching the file system by name: the worker's root is empty, so a worker that tries is
// broken or compromised.
constexpr GroupMember kFiles[] = {
    {"open"},   {"openat"},    {"openat2"},    {"creat"},    {"stat"},       {"lstat"},
    {"access"}, {"faccessat"}, {"faccessat2"}, {"readlink"}, {"readlinkat"}, {"getdents64"},
    {"unlink"}, {"unlinkat"},  {"mkdir"},      {"mkdirat"},  {"rename"},     {"renameat2"},
    {"statx"},  {"chdir"},     {"getcwd"}};
// New processes and programs, and signalling other processes.
constexpr GroupMember kProcess[] = {{"fork"},   {"vfork"},    {"clone"}, {"clone3"},
                                    {"execve"}, {"execveat"}, {"kill"},  {"tgkill"},
                                    {"tkill"},  {"wait4"},    {"waitid"}};
// What a CUDA user-space driver adds when the session holds a GPU share (device nodes are the
// only files in its root). A starting point, to be confirmed on a GPU host.
constexpr GroupMember kGpuDriver[] = {
    {"openat"},          {"ioctl"},     {"fstat"},    {"sched_setaffinity"},
    {"pread64"},         {"mlock"},     {"munlock"},  {"clone", kNoNamespaces},
    {"set_robust_list"}, {"rseq"},      {"eventfd2"}, {"epoll_create1"},
    {"epoll_ctl"},       {"epoll_wait"}};

constexpr std::array kGroups = {
    SyscallGroup{"@worker", "the built-in worker allow-list (all groups below up to @random)",
                 kWorker},
    SyscallGroup{"@io", "descriptor I/O on the descriptors the worker already holds", kIo},
    SyscallGroup{"@exit", "ending the worker", kExit},
    SyscallGroup{"@signal-return", "signal return, masks and restarted calls", kSignalReturn},
    SyscallGroup{"@memory", "heap and anonymous mappings, never executable", kMemory},
    SyscallGroup{"@sync", "locks and scheduling inside the worker", kSync},
    SyscallGroup{"@time", "clocks and sleeping", kTime},
    SyscallGroup{"@self", "the worker's own process and thread ids", kSelf},
    SyscallGroup{"@socket-io", "waiting on and talking over inherited sockets", kSocketIo},
    SyscallGroup{"@random", "random bytes", kRandom},
    SyscallGroup{"@strict", "the smallest list that still serves a session", kStrict},
    SyscallGroup{"@network", "creating or using network endpoints (never in a worker's list)",
                 kNetwork},
    SyscallGroup{"@files", "the file system by name (the worker's root is empty)", kFiles},
    SyscallGroup{"@process", "new processes and programs, signalling others", kProcess},
    SyscallGroup{"@gpu-driver", "what a CUDA driver adds for a session with a GPU share",
                 kGpuDriver},
};

// Groups nest (@worker names @memory); deeper than this is a cycle in the table.
constexpr int kMaxGroupDepth = 4;

Status Expand(std::string_view name, std::string_view group, int depth,
              std::vector<ExpandedSyscall>* out) {
  if (name.empty() || name.front() != '@') {
    out->push_back({std::string(name), std::nullopt, std::string(group)});
    return Ok();
  }
  if (depth > kMaxGroupDepth) {
    return Error(StrCat("syscall group '", name, "' nests too deeply (a cycle?)"));
  }
  const SyscallGroup* g = FindSyscallGroup(name);
  if (g == nullptr) {
    std::string known;
    for (const SyscallGroup& each : kGroups) {
      known += StrCat(known.empty() ? "" : ", ", each.name);
    }
    return Error(StrCat("unknown syscall group '", name, "' (known groups: ", known, ")"));
  }
  for (const GroupMember& m : g->members) {
    if (!m.name.empty() && m.name.front() == '@') {
      CH_RETURN_IF_ERROR(Expand(m.name, m.name, depth + 1, out));
    } else {
      out->push_back({std::string(m.name), m.check, std::string(g->name)});
    }
  }
  return Ok();
}

}  // namespace

std::span<const SyscallGroup> SyscallGroups() { return kGroups; }

const SyscallGroup* FindSyscallGroup(std::string_view name) {
  for (const SyscallGroup& g : kGroups) {
    if (g.name == name) {
      return &g;
    }
  }
  return nullptr;
}

Result<std::vector<ExpandedSyscall>> ExpandSyscallName(std::string_view name) {
  std::vector<ExpandedSyscall> out;
  CH_RETURN_IF_ERROR(Expand(name, "", 0, &out));
  return out;
}

}  // namespace cellhouse::policy
