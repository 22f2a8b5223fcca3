// Messages on SOCK_SEQPACKET channels (celld↔zygote, celld↔worker): one protobuf message per
// packet, descriptors attached with SCM_RIGHTS so each belongs to exactly one message. Received
// descriptors are close-on-exec (MSG_CMSG_CLOEXEC) and owned; a packet or descriptor list that
// does not fit is an error, never silently truncated (MSG_TRUNC / MSG_CTRUNC).
//
//   CH_RETURN_IF_ERROR(SendMessage(channel.get(), request, {control_end.get()}));
//   CH_ASSIGN_OR_RETURN(ReceivedMessage<zygote::SpawnReply> reply,
//                       ReceiveMessage<zygote::SpawnReply>(channel.get(), {.max_fds = 1}));
#ifndef CELLHOUSE_IPC_PACKET_H_
#define CELLHOUSE_IPC_PACKET_H_

#include <cstddef>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <google/protobuf/message_lite.h>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::ipc {

inline constexpr size_t kMaxPacketBytes = size_t{64} * 1024;
inline constexpr size_t kMaxPacketFds = 16;

// Sends bytes (and descriptors) as one packet. MSG_NOSIGNAL: a dead peer is EPIPE, not SIGPIPE.
Status SendPacket(int fd, std::span<const std::byte> bytes, std::span<const int> fds);
Status SendMessage(int fd, const google::protobuf::MessageLite& message,
                   std::span<const int> fds = {});

struct ReceiveOptions {
  size_t max_bytes = kMaxPacketBytes;
  size_t max_fds = 0;
  bool nonblocking = false;  // MSG_DONTWAIT
};

struct ReceivedPacket {
  std::string bytes;
  std::vector<UniqueFd> fds;
  bool end_of_stream = false;  // the peer closed the channel
  bool would_block = false;    // nonblocking and nothing was there
};

// Receives one packet. More bytes or descriptors than allowed is an error (the received
// descriptors are closed).
Result<ReceivedPacket> ReceivePacket(int fd, const ReceiveOptions& options);

template <typename Message>
struct ReceivedMessage {
  Message message;
  std::vector<UniqueFd> fds;
  bool end_of_stream = false;
  bool would_block = false;
};

Status ParseMessage(const std::string& bytes, google::protobuf::MessageLite* message);

template <typename Message>
Result<ReceivedMessage<Message>> ReceiveMessage(int fd, const ReceiveOptions& options) {
  CH_ASSIGN_OR_RETURN(ReceivedPacket packet, ReceivePacket(fd, options));
  ReceivedMessage<Message> out;
  out.end_of_stream = packet.end_of_stream;
  out.would_block = packet.would_block;
  out.fds = std::move(packet.fds);
  if (!packet.end_of_stream && !packet.would_block) {
    CH_RETURN_IF_ERROR(ParseMessage(packet.bytes, &out.message));
  }
  return out;
}

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_PACKET_H_
