#include "supervisor/audit.h"

#include <linux/audit.h>
#include <linux/netlink.h>
#include <seccomp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>

#include "base/strings.h"

namespace cellhouse::supervisor {
namespace {

// The value of `key=` in an audit record (up to the next space), or empty.
std::string_view Field(std::string_view text, std::string_view key) {
  size_t pos = 0;
  while ((pos = text.find(key, pos)) != std::string_view::npos) {
    bool at_word_start = pos == 0 || text[pos - 1] == ' ';
    if (at_word_start && pos + key.size() < text.size() && text[pos + key.size()] == '=') {
      size_t start = pos + key.size() + 1;
      size_t end = text.find(' ', start);
      return text.substr(start,
                         end == std::string_view::npos ? std::string_view::npos : end - start);
    }
    pos += key.size();
  }
  return {};
}

std::optional<uint64_t> HexField(std::string_view value) {
  if (StartsWith(value, "0x")) value.remove_prefix(2);
  if (value.empty() || value.size() > 16) return std::nullopt;
  uint64_t out = 0;
  for (char c : value) {
    int d;
    if (c >= '0' && c <= '9') {
      d = c - '0';
    } else if (c >= 'a' && c <= 'f') {
      d = c - 'a' + 10;
    } else {
      return std::nullopt;
    }
    out = out * 16 + static_cast<uint64_t>(d);
  }
  return out;
}

}  // namespace

std::optional<SeccompRecord> ParseSeccompRecord(std::string_view text) {
  auto pid = ParseInt64(Field(text, "pid"), "pid");
  auto syscall = ParseInt64(Field(text, "syscall"), "syscall");
  auto arch = HexField(Field(text, "arch"));
  auto code = HexField(Field(text, "code"));
  if (!pid || !syscall || !arch || !code || *pid <= 0 || *syscall < 0 || *syscall > 100000) {
    return std::nullopt;
  }
  SeccompRecord record;
  record.pid = static_cast<pid_t>(*pid);
  record.syscall = static_cast<int>(*syscall);
  record.arch = static_cast<uint32_t>(*arch);
  record.code = static_cast<uint32_t>(*code);
  // libseccomp's architecture tokens are the AUDIT_ARCH_* values.
  char* name = seccomp_syscall_resolve_num_arch(record.arch, record.syscall);
  if (name != nullptr) {
    record.syscall_name = name;
    std::free(name);  // NOLINT(cppcoreguidelines-no-malloc): libseccomp allocates with malloc
  } else {
    record.syscall_name = "syscall " + std::to_string(record.syscall);
  }
  return record;
}

Result<AuditReader> AuditReader::Open() {
  UniqueFd fd(::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC | SOCK_NONBLOCK, NETLINK_AUDIT));
  if (!fd.valid()) return Error::FromErrno(errno, "socket(AF_NETLINK, NETLINK_AUDIT)");
  sockaddr_nl addr{};
  addr.nl_family = AF_NETLINK;
  addr.nl_groups = 1u << (AUDIT_NLGRP_READLOG - 1);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0) {
    return Error::FromErrno(errno, "joining the audit multicast group (needs CAP_AUDIT_READ)");
  }
  return AuditReader(std::move(fd));
}

std::vector<SeccompRecord> AuditReader::Drain() {
  std::vector<SeccompRecord> out;
  char buf[16384];
  // Bounded: a flood of records cannot keep celld here.
  for (int i = 0; i < 256; ++i) {
    ssize_t n = ::recv(fd_.get(), buf, sizeof(buf), MSG_DONTWAIT);
    if (n <= 0) break;
    auto len = static_cast<size_t>(n);
    // Walk the netlink messages by offset, copying each header out (no unaligned casts), and
    // trusting no length the buffer does not hold.
    size_t offset = 0;
    while (offset + NLMSG_HDRLEN <= len) {
      nlmsghdr header{};
      std::memcpy(&header, buf + offset, sizeof(header));
      if (header.nlmsg_len < NLMSG_HDRLEN || header.nlmsg_len > len - offset) break;
      if (header.nlmsg_type == AUDIT_SECCOMP) {
        std::string_view text(buf + offset + NLMSG_HDRLEN, header.nlmsg_len - NLMSG_HDRLEN);
        if (auto record = ParseSeccompRecord(text)) out.push_back(std::move(*record));
      }
      offset += NLMSG_ALIGN(header.nlmsg_len);
    }
  }
  return out;
}

}  // namespace cellhouse::supervisor
