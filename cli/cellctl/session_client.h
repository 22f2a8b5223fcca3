// The client side of a session: open (or re-attach), run turns with the text streamed to a
// callback, cancel, close. cellctl's commands, the tests and the benchmarks all use it.
//
//   CH_ASSIGN_OR_RETURN(SessionClient s, SessionClient::Open(socket, {.policy = "default"}));
//   api::Generate g; g.set_prompt("Once upon a time"); g.set_max_new_tokens(64);
//   CH_ASSIGN_OR_RETURN(api::Done done, s.Generate(g, [](const api::Piece& p) { ... }));
//   CH_RETURN_IF_ERROR(s.Close());
//
// When the server answers with an Error, the returned error's message is its sentence and
// last_error() holds the full Error (code, outcome) for exit codes and scripts.
#ifndef CELLHOUSE_CLI_CELLCTL_SESSION_CLIENT_H_
#define CELLHOUSE_CLI_CELLCTL_SESSION_CLIENT_H_

#include <functional>
#include <optional>
#include <string>

#include "base/result.h"
#include "ipc/api.pb.h"
#include "ipc/client.h"

namespace cellhouse::cli {

struct OpenOptions {
  std::string policy;
  std::string model;  // a served model's name; empty: celld's default
  uint32_t max_context = 0;
  int timeout_ms = 60'000;  // for the session to start
};

class SessionClient {
 public:
  // When the server refuses, its Error is stored in `refusal` (if given) besides the message.
  static Result<SessionClient> Open(const std::string& socket_path, const OpenOptions& options,
                                    std::optional<api::Error>* refusal = nullptr);
  static Result<SessionClient> Attach(const std::string& socket_path, const std::string& session_id,
                                      const std::string& token,
                                      std::optional<api::Error>* refusal = nullptr,
                                      int timeout_ms = 60'000);

  const api::SessionOpened& opened() const { return opened_; }
  const api::Ready& ready() const { return ready_; }

  // One turn. `on_piece` sees every piece as it arrives. `should_cancel` is polled between
  // pieces (and every 100 ms while waiting); once it returns true, Cancel is sent once.
  Result<api::Done> Generate(const api::Generate& request,
                             const std::function<void(const api::Piece&)>& on_piece,
                             const std::function<bool()>& should_cancel = {});
  // Waits until the session ends under us (celld's SESSION_ENDED notice, or the connection
  // closing); returns that Error, or nullopt if nothing came within timeout_ms.
  std::optional<api::Error> WaitForEnd(int timeout_ms);
  // CloseSession, then wait for the acknowledgement or the connection to close.
  Status Close();
  // Drops the connection without closing the session (it can be re-attached).
  void Detach() { connection_.Close(); }

  const std::optional<api::Error>& last_error() const { return last_error_; }

 private:
  explicit SessionClient(ipc::ClientConnection connection) : connection_(std::move(connection)) {}
  // Next response; an Error response becomes an error (and last_error_).
  Result<api::Response> Next(int timeout_ms);
  // Sends a request; if the server already closed the connection, the reason it left queued
  // (a SESSION_ENDED notice) is returned instead of "broken pipe".
  Status SendOrExplain(const api::Request& request);

  ipc::ClientConnection connection_;
  api::SessionOpened opened_;
  api::Ready ready_;
  std::optional<api::Error> last_error_;
};

// Sends one administrative request on a connection of its own and returns the response; an
// Error response is returned as is (not as an error): the caller decides.
Result<api::Response> AdminRequest(const std::string& socket_path, const api::Request& request,
                                   int timeout_ms = 30'000);

}  // namespace cellhouse::cli

#endif  // CELLHOUSE_CLI_CELLCTL_SESSION_CLIENT_H_
