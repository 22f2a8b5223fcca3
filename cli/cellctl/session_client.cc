#include "cli/cellctl/session_client.h"

namespace cellhouse::cli {

Result<api::Response> SessionClient::Next(int timeout_ms) {
  CH_ASSIGN_OR_RETURN(api::Response r, connection_.Receive(timeout_ms));
  if (r.has_error()) {
    last_error_ = r.error();
    return Error(r.error().message());
  }
  return r;
}

Result<SessionClient> SessionClient::Open(const std::string& socket_path,
                                          const OpenOptions& options,
                                          std::optional<api::Error>* refusal) {
  CH_ASSIGN_OR_RETURN(ipc::ClientConnection conn, ipc::ClientConnection::Connect(socket_path));
  SessionClient client(std::move(conn));
  api::Request open;
  open.mutable_open()->set_policy(options.policy);
  open.mutable_open()->set_max_context(options.max_context);
  open.mutable_open()->set_model(options.model);
  CH_RETURN_IF_ERROR(client.connection_.Send(open));
  Result<api::Response> opened = client.Next(options.timeout_ms);
  if (!opened) {
    if (refusal != nullptr) *refusal = client.last_error_;
    return std::move(opened).error();
  }
  if (!opened->has_opened()) return Error("unexpected answer to open: " + opened->DebugString());
  client.opened_ = opened->opened();
  Result<api::Response> ready = client.Next(options.timeout_ms);
  if (!ready) {
    if (refusal != nullptr) *refusal = client.last_error_;
    return std::move(ready).error();
  }
  if (!ready->has_ready()) return Error("unexpected message instead of ready");
  client.ready_ = ready->ready();
  return client;
}

Result<SessionClient> SessionClient::Attach(const std::string& socket_path,
                                            const std::string& session_id, const std::string& token,
                                            std::optional<api::Error>* refusal, int timeout_ms) {
  CH_ASSIGN_OR_RETURN(ipc::ClientConnection conn, ipc::ClientConnection::Connect(socket_path));
  SessionClient client(std::move(conn));
  api::Request attach;
  attach.mutable_attach()->set_session_id(session_id);
  attach.mutable_attach()->set_token(token);
  CH_RETURN_IF_ERROR(client.connection_.Send(attach));
  Result<api::Response> ready = client.Next(timeout_ms);
  if (!ready) {
    if (refusal != nullptr) *refusal = client.last_error_;
    return std::move(ready).error();
  }
  if (!ready->has_ready()) return Error("unexpected answer to attach");
  client.ready_ = ready->ready();
  client.opened_.set_session_id(session_id);
  client.opened_.set_token(token);
  return client;
}

Result<api::Done> SessionClient::Generate(const api::Generate& request,
                                          const std::function<void(const api::Piece&)>& on_piece,
                                          const std::function<bool()>& should_cancel) {
  if (connection_.closed() && last_error_) return Error(last_error_->message());
  api::Request r;
  *r.mutable_generate() = request;
  CH_RETURN_IF_ERROR(SendOrExplain(r));
  bool cancel_sent = false;
  for (;;) {
    if (!cancel_sent && should_cancel && should_cancel()) {
      api::Request cancel;
      cancel.mutable_cancel();
      CH_RETURN_IF_ERROR(connection_.Send(cancel));
      cancel_sent = true;
    }
    Result<std::optional<api::Response>> received =
        connection_.TryReceive(should_cancel ? 100 : -1);
    if (!received) {
      // The connection closed: say why if celld said so before it did.
      if (connection_.closed() && last_error_) return Error(last_error_->message());
      return std::move(received).error();
    }
    std::optional<api::Response> next = std::move(*received);
    if (!next) continue;  // waited 100 ms: look at should_cancel again
    if (next->has_piece()) {
      on_piece(next->piece());
      continue;
    }
    if (next->has_done()) return next->done();
    if (next->has_error()) {
      last_error_ = next->error();
      return Error(next->error().message());
    }
    // An Ack (for a Cancel that raced the end of the turn) carries nothing for us.
  }
}

Status SessionClient::SendOrExplain(const api::Request& request) {
  Status sent = connection_.Send(request);
  if (sent) return sent;
  if (std::optional<api::Error> why = WaitForEnd(1000)) return Error(why->message());
  return sent;
}

std::optional<api::Error> SessionClient::WaitForEnd(int timeout_ms) {
  for (;;) {
    Result<std::optional<api::Response>> r = connection_.TryReceive(timeout_ms);
    if (!r || !r->has_value()) return last_error_;
    if ((*r)->has_error()) {
      last_error_ = (*r)->error();
      return last_error_;
    }
  }
}

Status SessionClient::Close() {
  api::Request close;
  close.mutable_close();
  CH_RETURN_IF_ERROR(SendOrExplain(close));
  for (;;) {
    Result<api::Response> r = connection_.Receive(30'000);
    if (!r) return connection_.closed() ? Ok() : Status(std::move(r).error());
    if (r->has_ack()) return Ok();
  }
}

Result<api::Response> AdminRequest(const std::string& socket_path, const api::Request& request,
                                   int timeout_ms) {
  CH_ASSIGN_OR_RETURN(ipc::ClientConnection conn, ipc::ClientConnection::Connect(socket_path));
  CH_RETURN_IF_ERROR(conn.Send(request));
  return conn.Receive(timeout_ms);
}

}  // namespace cellhouse::cli
