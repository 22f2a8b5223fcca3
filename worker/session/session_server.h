// SessionServer: what a worker does once its sandbox is in place. It serves one session: the
// client's connection (handed over by celld through the control channel) and the control
// channel itself, in one single-threaded poll loop.
//
//   SessionServer server(std::move(control_fd), engine, config, clock);
//   WorkerExit why = server.Run();   // returns when the session is over
//   _exit(static_cast<int>(why));
//
// Tokens go straight from here to the client. Between tokens the server looks (without
// blocking) at both channels, so Cancel, Close, a lost client and celld's Stop take effect
// within one token. A client that stops reading stalls only its own generation: output beyond
// a bounded backlog pauses the turn while the control channel stays served.
#ifndef CELLHOUSE_WORKER_SESSION_SESSION_SERVER_H_
#define CELLHOUSE_WORKER_SESSION_SESSION_SERVER_H_

#include <cstdint>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/unique_fd.h"
#include "ipc/api.pb.h"
#include "ipc/control.pb.h"
#include "ipc/frame.h"
#include "ipc/worker_contract.h"
#include "worker/session/turn_engine.h"

namespace cellhouse::session {

struct SessionConfig {
  std::string session_id;         // 16 bytes
  uint32_t max_new_tokens = 256;  // per request (policy)
  int64_t heartbeat_interval_ns = 1 * kNanosPerSecond;
  int64_t idle_timeout_ns = 300 * kNanosPerSecond;  // no client request for this long → end
  size_t max_frame_bytes = ipc::kDefaultMaxFrameBytes;
  size_t max_pending_output = size_t{256} * 1024;  // bytes queued for a slow client before pausing
};

using ipc::WorkerExit;

class SessionServer {
 public:
  SessionServer(UniqueFd control, TurnEngine& engine, const SessionConfig& config,
                const Clock& clock);
  SessionServer(const SessionServer&) = delete;
  SessionServer& operator=(const SessionServer&) = delete;

  // Sends Hello to celld, then serves until the session ends.
  WorkerExit Run();

 private:
  enum class Flow { kContinue, kExit };

  // Main loop pieces.
  Flow HandleControl();
  Flow HandleClientInput(bool during_turn);
  // The requests already decoded from what was read (HandleClientInput reads, then this).
  Flow HandleBufferedRequests(bool during_turn);
  Flow HandleRequest(const api::Request& request);
  Flow RunTurn(const api::Generate& generate);
  void EndTurn(const api::Generate& generate, const Result<TurnResult>& result);
  bool OnToken(const TurnPiece& piece);
  // Between tokens: look at both channels without blocking; block only while the client's
  // backlog is over the limit.
  void ServiceDuringTurn();

  void Attach(UniqueFd client, bool reattach);
  void Detach();
  void SendToClient(const api::Response& response);
  void SendError(api::ErrorCode code, std::string_view message);
  // Writes what the socket takes now; a write error detaches the client.
  void FlushClient();
  // Flushes with a short bounded wait; for the last answer before the connection closes.
  void FlushBeforeClosing();
  void SendToSupervisor(const control::WorkerMessage& message);
  void SendHeartbeat(uint64_t nonce);
  void MaybeHeartbeat();
  int PollTimeoutMs() const;

  UniqueFd control_;
  UniqueFd client_;
  // A client connection celld handed over during a turn, attached when the turn has ended.
  UniqueFd pending_client_;
  bool pending_reattach_ = false;
  TurnEngine& engine_;
  SessionConfig config_;
  const Clock& clock_;

  ipc::FrameDecoder decoder_;
  std::string output_;  // framed responses not yet written to the client
  size_t output_sent_ = 0;
  api::Response scratch_;  // reused per token: no allocation once warm

  int64_t last_activity_ns_ = 0;
  int64_t next_heartbeat_ns_ = 0;
  uint64_t tokens_generated_ = 0;

  // Turn state.
  bool generating_ = false;
  bool cancel_requested_ = false;
  bool close_requested_ = false;
  bool stop_requested_ = false;
  // From celld's Stop: what a client whose generation the stop cuts off is told.
  std::string stop_reason_;
  api::SessionOutcome stop_outcome_ = api::OUTCOME_UNSPECIFIED;
  bool supervisor_gone_ = false;
  int64_t last_token_ns_ = 0;
  std::vector<uint32_t> inter_token_us_;
};

}  // namespace cellhouse::session

#endif  // CELLHOUSE_WORKER_SESSION_SESSION_SERVER_H_
