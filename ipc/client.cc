#include "ipc/client.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>

#include "base/clock.h"
#include "base/io.h"
#include "ipc/unix_socket.h"

namespace cellhouse::ipc {

Result<ClientConnection> ClientConnection::Connect(const std::string& socket_path) {
  CH_ASSIGN_OR_RETURN(UniqueFd fd, ConnectUnix(socket_path));
  return ClientConnection(std::move(fd));
}

Status ClientConnection::Send(const api::Request& request) { return SendRaw(EncodeFrame(request)); }

Status ClientConnection::SendRaw(std::string_view bytes) {
  if (!fd_.valid()) return Error("the connection is closed");
  // send(MSG_NOSIGNAL): a server that went away is EPIPE, not a SIGPIPE that kills the client.
  size_t done = 0;
  while (done < bytes.size()) {
    ssize_t n = ::send(fd_.get(), bytes.data() + done, bytes.size() - done, MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "send to the server");
    }
    done += static_cast<size_t>(n);
  }
  return Ok();
}

Result<api::Response> ClientConnection::Receive(int timeout_ms) {
  CH_ASSIGN_OR_RETURN(std::optional<api::Response> r, TryReceive(timeout_ms));
  if (!r) return Error("no response within " + std::to_string(timeout_ms) + " ms");
  return std::move(*r);
}

Result<std::optional<api::Response>> ClientConnection::TryReceive(int timeout_ms) {
  int64_t deadline = timeout_ms < 0 ? -1 : MonotonicNanos() + timeout_ms * kNanosPerMilli;
  for (;;) {
    CH_ASSIGN_OR_RETURN(std::optional<std::string> frame, decoder_.Next());
    if (frame) {
      api::Response response;
      if (!response.ParseFromString(*frame)) {
        return Error("the server sent a malformed response (" + std::to_string(frame->size()) +
                     " bytes)");
      }
      return std::optional<api::Response>(std::move(response));
    }
    if (closed_ || !fd_.valid()) return Error("the server closed the connection");
    int wait = -1;
    if (deadline >= 0) {
      int64_t left = deadline - MonotonicNanos();
      if (left <= 0) return std::optional<api::Response>();
      wait = static_cast<int>((left + kNanosPerMilli - 1) / kNanosPerMilli);
    }
    pollfd p{fd_.get(), POLLIN, 0};
    int rc = ::poll(&p, 1, wait);
    if (rc < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "poll");
    }
    if (rc == 0) continue;
    char buf[64 * 1024];
    ssize_t n = ::read(fd_.get(), buf, sizeof(buf));
    if (n < 0) {
      if (errno == EINTR || errno == EAGAIN) continue;
      if (errno == ECONNRESET) {
        closed_ = true;
        continue;
      }
      return Error::FromErrno(errno, "read from the server");
    }
    if (n == 0) {
      closed_ = true;
      continue;
    }
    CH_RETURN_IF_ERROR(decoder_.Feed(std::string_view(buf, static_cast<size_t>(n))));
  }
}

}  // namespace cellhouse::ipc
