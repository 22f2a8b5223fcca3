// unit_sandbox_exec: runs a program under the seccomp side of celld.service's hardening, as
// systemd would install it (systemd.exec(5)), so tests can run celld under it without a
// systemd PID 1. With setpriv(1) in front for NoNewPrivileges= and CapabilityBoundingSet=.
//
//   setpriv --no-new-privs --bounding-set -all,+setuid,... unit_sandbox_exec
//       --syscalls allowed.txt --address-families 1,16 --deny-write-execute -- celld ...
//
//   --syscalls FILE          SystemCallFilter= as an allow-list, one name per line (groups
//                            expanded by the caller); anything else fails with EPERM, as
//                            SystemCallErrorNumber=EPERM makes it
//   --address-families LIST  RestrictAddressFamilies=: socket(2) of any other family fails with
//                            EAFNOSUPPORT
//   --deny-write-execute     MemoryDenyWriteExecute=: mmap(2) writable and executable,
//                            mprotect(2)/pkey_mprotect(2) adding execute fail with EPERM
//
// Each is its own filter; the kernel applies the strictest answer of all (seccomp(2)), as it does
// with systemd's. Exit status 127 when the filters cannot be installed or the program not run.
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <set>
#include <string>
#include <vector>

#include "base/io.h"
#include "base/strings.h"

namespace cellhouse {
namespace {

constexpr int kExitSetupFailed = 127;

int Fail(const std::string& message) {
  static_cast<void>(std::fprintf(stderr, "unit_sandbox_exec: %s\n", message.c_str()));
  return kExitSetupFailed;
}

// An argument comparison (libseccomp's SCMP_A0..SCMP_A5 are C compound literals).
scmp_arg_cmp Compare(unsigned int arg, scmp_compare op, scmp_datum_t a, scmp_datum_t b = 0) {
  scmp_arg_cmp cmp{};
  cmp.arg = arg;
  cmp.op = op;
  cmp.datum_a = a;
  cmp.datum_b = b;
  return cmp;
}

// Loads a filter built by `build` on a context whose default action is `default_action`.
template <typename Build>
Status LoadFilter(uint32_t default_action, const char* what, Build build) {
  scmp_filter_ctx ctx = seccomp_init(default_action);
  if (ctx == nullptr) return Error(std::string("seccomp_init for ") + what);
  // Children inherit the filter; no_new_privs is setpriv's job, as it is systemd's.
  int rc = seccomp_attr_set(ctx, SCMP_FLTATR_CTL_NNP, 0);
  if (rc == 0) rc = build(ctx);
  if (rc == 0) rc = seccomp_load(ctx);
  seccomp_release(ctx);
  if (rc != 0) return Error::FromErrno(-rc, std::string("seccomp filter for ") + what);
  return Ok();
}

int Main(int argc, char** argv) {
  std::string syscalls_file;
  std::vector<int> families;
  bool deny_write_execute = false;
  int i = 1;
  for (; i < argc; ++i) {
    std::string arg = argv[i];
    if (arg == "--") {
      ++i;
      break;
    }
    if (arg == "--syscalls" && i + 1 < argc) {
      syscalls_file = argv[++i];
    } else if (arg == "--address-families" && i + 1 < argc) {
      for (std::string_view f : Split(argv[++i], ',')) {
        auto n = ParseInt64(f, "--address-families");
        if (!n) return Fail(n.error().message());
        families.push_back(static_cast<int>(*n));
      }
    } else if (arg == "--deny-write-execute") {
      deny_write_execute = true;
    } else {
      return Fail("unknown argument " + Quote(arg));
    }
  }
  if (i >= argc) return Fail("no program to run after --");

  if (!syscalls_file.empty()) {
    auto text = ReadFileToString(syscalls_file, 1 << 20);
    if (!text) return Fail(text.error().message());
    std::vector<int> numbers;
    for (std::string_view name : Split(*text, '\n')) {
      name = Trim(name);
      if (name.empty()) continue;
      // Names this kernel or architecture lacks are skipped, as systemd skips them.
      int nr = seccomp_syscall_resolve_name(std::string(name).c_str());
      if (nr != __NR_SCMP_ERROR) numbers.push_back(nr);
    }
    Status st = LoadFilter(SCMP_ACT_ERRNO(EPERM), "SystemCallFilter=", [&](scmp_filter_ctx ctx) {
      for (int nr : numbers) {
        int rc = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0);
        if (rc != 0) return rc;
      }
      return 0;
    });
    if (!st) return Fail(st.error().message());
  }
  if (!families.empty()) {
    std::set<int> allowed(families.begin(), families.end());
    Status st = LoadFilter(SCMP_ACT_ALLOW, "RestrictAddressFamilies=", [&](scmp_filter_ctx ctx) {
      for (int family = 0; family < AF_MAX; ++family) {
        if (allowed.count(family) != 0) continue;
        const scmp_arg_cmp is_family = Compare(0, SCMP_CMP_EQ, static_cast<scmp_datum_t>(family));
        int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EAFNOSUPPORT), SCMP_SYS(socket), 1,
                                        &is_family);
        if (rc != 0) return rc;
      }
      return 0;
    });
    if (!st) return Fail(st.error().message());
  }
  if (deny_write_execute) {
    Status st = LoadFilter(SCMP_ACT_ALLOW, "MemoryDenyWriteExecute=", [](scmp_filter_ctx ctx) {
      const scmp_datum_t wx = PROT_WRITE | PROT_EXEC;
      const scmp_arg_cmp writable_executable = Compare(2, SCMP_CMP_MASKED_EQ, wx, wx);
      const scmp_arg_cmp executable = Compare(2, SCMP_CMP_MASKED_EQ, PROT_EXEC, PROT_EXEC);
      int rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mmap), 1,
                                      &writable_executable);
      if (rc == 0) {
        rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(mprotect), 1, &executable);
      }
      if (rc == 0) {
        rc = seccomp_rule_add_array(ctx, SCMP_ACT_ERRNO(EPERM), SCMP_SYS(pkey_mprotect), 1,
                                    &executable);
      }
      return rc;
    });
    if (!st) return Fail(st.error().message());
  }
  ::execv(argv[i], argv + i);
  return Fail(Error::FromErrno(errno, std::string("execv ") + argv[i]).message());
}

}  // namespace
}  // namespace cellhouse

int main(int argc, char** argv) { return cellhouse::Main(argc, argv); }
