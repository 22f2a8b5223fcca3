// A blocking client connection speaking the client protocol: what cellctl and the tests use.
//
//   CH_ASSIGN_OR_RETURN(ClientConnection conn, ClientConnection::Connect(socket_path));
//   CH_RETURN_IF_ERROR(conn.Send(request));
//   CH_ASSIGN_OR_RETURN(api::Response response, conn.Receive(/*timeout_ms=*/-1));
#ifndef CELLHOUSE_IPC_CLIENT_H_
#define CELLHOUSE_IPC_CLIENT_H_

#include <optional>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/api.pb.h"
#include "ipc/frame.h"

namespace cellhouse::ipc {

class ClientConnection {
 public:
  explicit ClientConnection(UniqueFd fd, size_t max_frame_bytes = kDefaultMaxFrameBytes)
      : fd_(std::move(fd)), decoder_(max_frame_bytes) {}
  static Result<ClientConnection> Connect(const std::string& socket_path);

  Status Send(const api::Request& request);
  // Sends raw bytes (tests use it to send garbage).
  Status SendRaw(std::string_view bytes);
  // Waits up to timeout_ms (-1: forever) for the next response. The server closing the
  // connection is an error whose message says so; so is the timeout.
  Result<api::Response> Receive(int timeout_ms);
  // As Receive, but a timeout is nullopt rather than an error.
  Result<std::optional<api::Response>> TryReceive(int timeout_ms);
  // True once the server closed the connection (after Receive reported it).
  bool closed() const { return closed_; }
  int fd() const { return fd_.get(); }
  // Closes our end; what the server sent but was not read yet is dropped with it, so a
  // Receive after Close fails instead of delivering the rest of a stream.
  void Close() {
    fd_.reset();
    decoder_.Reset();
  }

 private:
  UniqueFd fd_;
  FrameDecoder decoder_;
  bool closed_ = false;
};

}  // namespace cellhouse::ipc

#endif  // CELLHOUSE_IPC_CLIENT_H_
