#include "ipc/packet.h"

#include <sys/socket.h>

#include <cerrno>
#include <cstring>

namespace cellhouse::ipc {

Status SendPacket(int fd, std::span<const std::byte> bytes, std::span<const int> fds) {
  if (bytes.size() > kMaxPacketBytes) {
    return Error("packet of " + std::to_string(bytes.size()) + " bytes exceeds the limit of " +
                 std::to_string(kMaxPacketBytes));
  }
  if (fds.size() > kMaxPacketFds) return Error("too many descriptors for one packet");
  iovec iov{const_cast<std::byte*>(bytes.data()), bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPacketFds)] = {};
  if (!fds.empty()) {
    msg.msg_control = control;
    msg.msg_controllen = CMSG_SPACE(sizeof(int) * fds.size());
    cmsghdr* cmsg = CMSG_FIRSTHDR(&msg);
    cmsg->cmsg_level = SOL_SOCKET;
    cmsg->cmsg_type = SCM_RIGHTS;
    cmsg->cmsg_len = CMSG_LEN(sizeof(int) * fds.size());
    std::memcpy(CMSG_DATA(cmsg), fds.data(), sizeof(int) * fds.size());
  }
  for (;;) {
    ssize_t n = ::sendmsg(fd, &msg, MSG_NOSIGNAL);
    if (n >= 0) {
      if (static_cast<size_t>(n) != bytes.size()) return Error("sendmsg: short packet");
      return Ok();
    }
    if (errno != EINTR) return Error::FromErrno(errno, "sendmsg");
  }
}

Status SendMessage(int fd, const google::protobuf::MessageLite& message, std::span<const int> fds) {
  std::string bytes;
  if (!message.SerializeToString(&bytes)) return Error("serializing a message failed");
  return SendPacket(fd, std::as_bytes(std::span<const char>(bytes.data(), bytes.size())), fds);
}

Result<ReceivedPacket> ReceivePacket(int fd, const ReceiveOptions& options) {
  ReceivedPacket packet;
  // One spare byte so an oversized packet shows up as MSG_TRUNC even at exactly max_bytes + 1.
  packet.bytes.resize(options.max_bytes + 1);
  iovec iov{packet.bytes.data(), packet.bytes.size()};
  msghdr msg{};
  msg.msg_iov = &iov;
  msg.msg_iovlen = 1;
  alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * kMaxPacketFds)] = {};
  msg.msg_control = control;
  msg.msg_controllen = sizeof(control);
  int flags = MSG_CMSG_CLOEXEC | (options.nonblocking ? MSG_DONTWAIT : 0);
  ssize_t n;
  do {
    n = ::recvmsg(fd, &msg, flags);
  } while (n < 0 && errno == EINTR);
  if (n < 0) {
    if (errno == EAGAIN && options.nonblocking) {
      packet.would_block = true;
      packet.bytes.clear();
      return packet;
    }
    return Error::FromErrno(errno, "recvmsg");
  }
  // Take ownership of every descriptor first, so any error below closes them.
  for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
    if (c->cmsg_level != SOL_SOCKET || c->cmsg_type != SCM_RIGHTS) continue;
    size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
    for (size_t i = 0; i < count; ++i) {
      int received = -1;
      std::memcpy(&received, CMSG_DATA(c) + i * sizeof(int), sizeof(int));
      packet.fds.emplace_back(received);
    }
  }
  if ((msg.msg_flags & MSG_CTRUNC) != 0) return Error("recvmsg: descriptors were truncated");
  if (packet.fds.size() > options.max_fds) {
    return Error("recvmsg: " + std::to_string(packet.fds.size()) +
                 " descriptors received, at most " + std::to_string(options.max_fds) + " expected");
  }
  if (n == 0 && packet.fds.empty()) {
    packet.end_of_stream = true;
    packet.bytes.clear();
    return packet;
  }
  if ((msg.msg_flags & MSG_TRUNC) != 0 || static_cast<size_t>(n) > options.max_bytes) {
    return Error("recvmsg: packet larger than " + std::to_string(options.max_bytes) + " bytes");
  }
  packet.bytes.resize(static_cast<size_t>(n));
  return packet;
}

Status ParseMessage(const std::string& bytes, google::protobuf::MessageLite* message) {
  if (!message->ParseFromString(bytes)) {
    return Error("malformed " + message->GetTypeName() + " message (" +
                 std::to_string(bytes.size()) + " bytes)");
  }
  return Ok();
}

}  // namespace cellhouse::ipc
