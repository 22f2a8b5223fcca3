// Seccomp violations as the kernel reports them: audit records of type AUDIT_SECCOMP (1326),
// read from the audit netlink socket's read-only multicast group (AUDIT_NLGRP_READLOG, Linux
// 3.16, needs CAP_AUDIT_READ) so no audit daemon is involved and the worker cannot forge them.
//
// Why audit and not a SIGSYS trap handler in the worker: the policy's default action stays
// kill-process (nothing of the worker runs after the violation), and the report comes from the
// kernel, not from a process we already consider compromised.
//
//   CH_ASSIGN_OR_RETURN(AuditReader audit, AuditReader::Open());   // may be unavailable
//   loop.Add(audit.fd(), EPOLLIN, [&](uint32_t) {
//     for (const SeccompRecord& r : audit.Drain()) violations[r.pid] = r;
//   });
#ifndef CELLHOUSE_SUPERVISOR_AUDIT_H_
#define CELLHOUSE_SUPERVISOR_AUDIT_H_

#include <sys/types.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::supervisor {

struct SeccompRecord {
  pid_t pid = 0;
  uint32_t arch = 0;  // AUDIT_ARCH_*
  int syscall = -1;
  uint32_t code = 0;         // the SECCOMP_RET_* action
  std::string syscall_name;  // resolved for `arch`, or "syscall N"
};

// Parses the text of one AUDIT_SECCOMP record ("audit(...): ... pid=N ... arch=c000003e
// syscall=101 ... code=0x80000000"). Returns nullopt for anything else.
std::optional<SeccompRecord> ParseSeccompRecord(std::string_view text);

class AuditReader {
 public:
  static Result<AuditReader> Open();
  int fd() const { return fd_.get(); }
  // Every seccomp record waiting on the socket (non-blocking; bounded per call).
  std::vector<SeccompRecord> Drain();

 private:
  explicit AuditReader(UniqueFd fd) : fd_(std::move(fd)) {}
  UniqueFd fd_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_AUDIT_H_
