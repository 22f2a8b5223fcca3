#include "worker/session/session_server.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <limits>

#include "base/io.h"
#include "base/random.h"
#include "ipc/messages.h"
#include "ipc/packet.h"

namespace cellhouse::session {
namespace {

constexpr size_t kMaxInterTokenSamples = 4096;
constexpr int kMaxStopStrings = 8;
constexpr size_t kMaxStopStringBytes = 256;

// OpenAI's finish_reason: a max_new_tokens the client did not set is the policy's limit.
api::Done::FinishReason FinishReasonOf(StopReason stop, bool client_max) {
  switch (stop) {
    case api::Done::END_OF_TEXT:
    case api::Done::STOP_STRING:
      return api::Done::FINISH_STOP;
    case api::Done::MAX_TOKENS:
      return client_max ? api::Done::FINISH_LENGTH : api::Done::FINISH_POLICY_LIMIT;
    case api::Done::CONTEXT_FULL:
      return api::Done::FINISH_LENGTH;
    case api::Done::CANCELLED:
      return api::Done::FINISH_CANCELLED;
    default:  // STOP_REASON_UNSPECIFIED and protobuf's sentinels: not a reason a turn ends with
      return api::Done::FINISH_REASON_UNSPECIFIED;
  }
}

double PerSecond(int32_t count, int64_t nanos) {
  if (nanos <= 0 || count <= 0) return 0.0;
  return static_cast<double>(count) * 1e9 / static_cast<double>(nanos);
}

}  // namespace

SessionServer::SessionServer(UniqueFd control, TurnEngine& engine, const SessionConfig& config,
                             const Clock& clock)
    : control_(std::move(control)),
      engine_(engine),
      config_(config),
      clock_(clock),
      decoder_(config.max_frame_bytes) {
  inter_token_us_.reserve(kMaxInterTokenSamples);
}

WorkerExit SessionServer::Run() {
  last_activity_ns_ = clock_.NowNanos();
  next_heartbeat_ns_ = last_activity_ns_ + config_.heartbeat_interval_ns;
  control::WorkerMessage hello;
  hello.mutable_hello()->set_context_length(static_cast<uint32_t>(engine_.context_length()));
  SendToSupervisor(hello);
  for (;;) {
    if (supervisor_gone_) return WorkerExit::kSupervisorGone;
    if (stop_requested_) return WorkerExit::kStopped;
    pollfd fds[2] = {{control_.get(), POLLIN, 0}, {client_.get(), 0, 0}};
    nfds_t count = 1;
    if (client_.valid()) {
      // Stop reading a client that does not read our answers until it catches up.
      size_t backlog = output_.size() - output_sent_;
      fds[1].events = static_cast<short>((backlog <= config_.max_pending_output ? POLLIN : 0) |
                                         (backlog > 0 ? POLLOUT : 0));
      count = 2;
    }
    int rc = ::poll(fds, count, PollTimeoutMs());
    if (rc < 0 && errno != EINTR) return WorkerExit::kInternalError;
    if (rc > 0 && fds[0].revents != 0 && HandleControl() == Flow::kExit) {
      return stop_requested_ ? WorkerExit::kStopped : WorkerExit::kSupervisorGone;
    }
    if (count == 2 && client_.valid() && (fds[1].revents & POLLOUT) != 0) FlushClient();
    if (count == 2 && client_.valid() && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      if (HandleClientInput(/*during_turn=*/false) == Flow::kExit) {
        FlushBeforeClosing();
        return close_requested_ ? WorkerExit::kClosed : WorkerExit::kStopped;
      }
    }
    // A connection celld handed over during the turn that has just ended.
    if (pending_client_.valid()) Attach(std::move(pending_client_), pending_reattach_);
    MaybeHeartbeat();
    if (clock_.NowNanos() - last_activity_ns_ >= config_.idle_timeout_ns) {
      return WorkerExit::kIdleTimeout;
    }
  }
}

int SessionServer::PollTimeoutMs() const {
  int64_t now = clock_.NowNanos();
  int64_t until = std::min(next_heartbeat_ns_, last_activity_ns_ + config_.idle_timeout_ns);
  int64_t ms = (until - now + kNanosPerMilli - 1) / kNanosPerMilli;
  return static_cast<int>(std::clamp<int64_t>(ms, 0, 60'000));
}

SessionServer::Flow SessionServer::HandleControl() {
  auto received = ipc::ReceiveMessage<control::SupervisorMessage>(
      control_.get(), {.max_bytes = 4096, .max_fds = 1, .nonblocking = true});
  if (!received || received->end_of_stream) {
    supervisor_gone_ = true;
    return Flow::kExit;
  }
  if (received->would_block) return Flow::kContinue;
  const control::SupervisorMessage& message = received->message;
  switch (message.kind_case()) {
    case control::SupervisorMessage::kAttachClient:
      if (received->fds.size() != 1) {
        supervisor_gone_ = true;  // celld broke the protocol: nothing sane is left to do
        return Flow::kExit;
      }
      if (generating_) {
        // A connection handed over mid-turn waits for the turn's end: the turn belongs to the
        // client that asked for it (one that went away stops it), and the new client's Ready
        // then tells where the conversation really stands. Taken at once, it would be streamed
        // the rest of a turn it never asked for, and its own Generate refused as BUSY.
        pending_client_ = std::move(received->fds[0]);
        pending_reattach_ = message.attach_client().reattach();
        return Flow::kContinue;
      }
      Attach(std::move(received->fds[0]), message.attach_client().reattach());
      return Flow::kContinue;
    case control::SupervisorMessage::kStop:
      stop_requested_ = true;
      cancel_requested_ = true;
      stop_reason_ =
          message.stop().reason().empty() ? "the session was stopped" : message.stop().reason();
      stop_outcome_ = api::SessionOutcome_IsValid(static_cast<int>(message.stop().outcome()))
                          ? static_cast<api::SessionOutcome>(message.stop().outcome())
                          : api::OUTCOME_UNSPECIFIED;
      return generating_ ? Flow::kContinue : Flow::kExit;
    case control::SupervisorMessage::kPing:
      SendHeartbeat(message.ping().nonce());
      return Flow::kContinue;
    case control::SupervisorMessage::kAssign:  // only meaningful before the session starts
    case control::SupervisorMessage::KIND_NOT_SET:
      break;
  }
  return Flow::kContinue;
}

void SessionServer::Attach(UniqueFd client, bool reattach) {
  if (client_.valid()) Detach();
  static_cast<void>(reattach);
  if (!SetNonBlocking(client.get())) return;  // the descriptor is unusable; stay detached
  client_ = std::move(client);
  decoder_.Reset();
  output_.clear();
  output_sent_ = 0;
  last_activity_ns_ = clock_.NowNanos();
  api::Response ready;
  api::Ready* r = ready.mutable_ready();
  r->set_session_id(config_.session_id);
  r->set_context_length(static_cast<uint32_t>(engine_.context_length()));
  r->set_context_used(static_cast<uint32_t>(engine_.context_used()));
  r->set_model(engine_.Describe());
  r->set_chat_template(engine_.ChatTemplateName());
  if (r->chat_template().empty()) r->set_chat_error(engine_.ChatError());
  SendToClient(ready);
  FlushClient();
}

void SessionServer::Detach() {
  client_.reset();
  decoder_.Reset();
  output_.clear();
  output_sent_ = 0;
  last_activity_ns_ = clock_.NowNanos();
  control::WorkerMessage detached;
  detached.mutable_detached();
  SendToSupervisor(detached);
}

SessionServer::Flow SessionServer::HandleClientInput(bool during_turn) {
  // One read per call: with the backlog check in the callers this bounds what a flooding client
  // can make us buffer (its requests' answers) to one read's worth.
  char buf[16 * 1024];
  ssize_t n;
  do {
    n = ::read(client_.get(), buf, sizeof(buf));
  } while (n < 0 && errno == EINTR);
  if (n < 0 && errno == EAGAIN) return Flow::kContinue;
  if (n <= 0) {
    Detach();
    return Flow::kContinue;
  }
  if (!decoder_.Feed(std::string_view(buf, static_cast<size_t>(n)))) {
    SendError(api::FRAME_TOO_LARGE,
              "the request is larger than " + std::to_string(config_.max_frame_bytes) +
                  " bytes or its length prefix is malformed; closing the connection");
    FlushBeforeClosing();
    Detach();
    return Flow::kContinue;
  }
  return HandleBufferedRequests(during_turn);
}

SessionServer::Flow SessionServer::HandleBufferedRequests(bool during_turn) {
  for (;;) {
    auto frame = decoder_.Next();
    if (!frame) {
      SendError(api::FRAME_TOO_LARGE, frame.error().message() + "; closing the connection");
      FlushBeforeClosing();
      Detach();
      return Flow::kContinue;
    }
    if (!frame->has_value()) break;
    api::Request request;
    if (!request.ParseFromString(**frame)) {
      SendError(api::BAD_REQUEST, "the request is not a valid cellhouse.api.Request");
      continue;
    }
    last_activity_ns_ = clock_.NowNanos();
    if (during_turn) {
      switch (request.kind_case()) {
        case api::Request::kCancel:
          cancel_requested_ = true;
          break;
        case api::Request::kClose:
          cancel_requested_ = true;
          close_requested_ = true;
          break;
        case api::Request::kGenerate:
          SendError(api::BUSY,
                    "a generation is already running in this session; wait for its "
                    "Done or send Cancel");
          break;
        default:
          SendError(api::BAD_REQUEST, std::string("'") +
                                          std::string(ipc::RequestKindName(request)) +
                                          "' is not a request for a session's worker");
      }
      continue;
    }
    if (HandleRequest(request) == Flow::kExit) return Flow::kExit;
    if (!client_.valid()) break;
  }
  return Flow::kContinue;
}

SessionServer::Flow SessionServer::HandleRequest(const api::Request& request) {
  switch (request.kind_case()) {
    case api::Request::kGenerate:
      return RunTurn(request.generate());
    case api::Request::kCancel:
      SendToClient(ipc::MakeAck("no generation is running"));
      return Flow::kContinue;
    case api::Request::kClose:
      close_requested_ = true;
      SendToClient(ipc::MakeAck("session closed"));
      return Flow::kExit;
    default:
      SendError(api::BAD_REQUEST, std::string("'") + std::string(ipc::RequestKindName(request)) +
                                      "' is not a request for a session's worker");
      return Flow::kContinue;
  }
}

SessionServer::Flow SessionServer::RunTurn(const api::Generate& generate) {
  TurnRequest request;
  request.prompt = generate.prompt();
  if (generate.has_chat()) {
    if (!generate.prompt().empty()) {
      SendError(api::INVALID_ARGUMENT,
                "a Generate request carries a prompt or a chat turn, not both");
      return Flow::kContinue;
    }
    if (generate.chat().messages().empty()) {
      SendError(api::INVALID_ARGUMENT, "a chat turn needs at least one message");
      return Flow::kContinue;
    }
    request.chat = &generate.chat();
  }
  if (generate.stop_size() > kMaxStopStrings) {
    SendError(api::INVALID_ARGUMENT, "at most " + std::to_string(kMaxStopStrings) +
                                         " stop strings, got " +
                                         std::to_string(generate.stop_size()));
    return Flow::kContinue;
  }
  for (const std::string& stop : generate.stop()) {
    if (stop.empty() || stop.size() > kMaxStopStringBytes) {
      SendError(api::INVALID_ARGUMENT,
                "a stop string must be 1 to " + std::to_string(kMaxStopStringBytes) + " bytes");
      return Flow::kContinue;
    }
    request.stop.push_back(stop);
  }
  // Ranges are the engine's (ValidateSamplingParams); a refusal comes back as INVALID_ARGUMENT.
  if (generate.has_top_k()) {
    request.top_k = static_cast<int32_t>(std::min<uint32_t>(generate.top_k(), INT32_MAX));
  }
  if (generate.has_min_p()) request.min_p = generate.min_p();
  if (generate.has_repetition_penalty()) request.repetition_penalty = generate.repetition_penalty();
  if (generate.has_frequency_penalty()) request.frequency_penalty = generate.frequency_penalty();
  if (generate.has_presence_penalty()) request.presence_penalty = generate.presence_penalty();
  uint32_t max_new =
      generate.has_max_new_tokens() ? generate.max_new_tokens() : config_.max_new_tokens;
  if (max_new == 0 || max_new > config_.max_new_tokens) {
    SendError(api::INVALID_ARGUMENT, "max_new_tokens must be between 1 and " +
                                         std::to_string(config_.max_new_tokens) +
                                         " (the policy's limit), got " + std::to_string(max_new));
    return Flow::kContinue;
  }
  request.max_new_tokens = static_cast<int32_t>(max_new);
  request.temperature =
      generate.has_temperature() ? generate.temperature() : ipc::kDefaultTemperature;
  if (!std::isfinite(request.temperature) || request.temperature < 0.0f ||
      request.temperature > 100.0f) {
    SendError(api::INVALID_ARGUMENT, "temperature must be a number from 0 to 100");
    return Flow::kContinue;
  }
  request.top_p = generate.has_top_p() ? generate.top_p() : ipc::kDefaultTopP;
  if (!std::isfinite(request.top_p) || request.top_p <= 0.0f || request.top_p > 1.0f) {
    SendError(api::INVALID_ARGUMENT, "top_p must be in (0, 1]");
    return Flow::kContinue;
  }
  if (generate.has_seed()) {
    request.seed = generate.seed();
  } else {
    // A seed the client did not choose must not be guessable from the time either.
    Result<uint64_t> seed = RandomUint64();
    if (!seed) {
      SendError(api::INTERNAL, "no random seed could be drawn (" + seed.error().message() +
                                   "); pass a seed to generate");
      return Flow::kContinue;
    }
    request.seed = *seed;
  }

  generating_ = true;
  cancel_requested_ = false;
  inter_token_us_.clear();
  last_token_ns_ = 0;
  Result<TurnResult> result =
      engine_.Turn(request, [this](const TurnPiece& piece) { return OnToken(piece); });
  generating_ = false;
  last_activity_ns_ = clock_.NowNanos();

  EndTurn(generate, result);
  FlushClient();
  if (stop_requested_ || supervisor_gone_) return Flow::kExit;
  if (close_requested_) {
    SendToClient(ipc::MakeAck("session closed"));
    return Flow::kExit;
  }
  return Flow::kContinue;
}

// Tells the client how the turn ended (Done, an error, or celld's reason for cutting it off) and
// celld what it generated.
void SessionServer::EndTurn(const api::Generate& generate, const Result<TurnResult>& result) {
  if (!result) {
    api::ErrorCode code = api::INTERNAL;
    switch (engine_.last_error_kind()) {
      case TurnErrorKind::kContextFull:
        code = api::CONTEXT_FULL;
        break;
      case TurnErrorKind::kInvalid:
        code = api::INVALID_ARGUMENT;
        break;
      case TurnErrorKind::kInternal:
        code = api::INTERNAL;
        break;
    }
    SendError(code, result.error().message());
  } else {
    tokens_generated_ += static_cast<uint64_t>(result->generated_tokens);
    api::Response done;
    api::Done* d = done.mutable_done();
    d->set_prompt_tokens(static_cast<uint32_t>(result->prompt_tokens));
    d->set_generated_tokens(static_cast<uint32_t>(result->generated_tokens));
    d->set_time_to_first_token_us(static_cast<uint64_t>(result->time_to_first_token_ns / 1000));
    d->set_prefill_tokens_per_second(PerSecond(result->prompt_tokens, result->prefill_ns));
    // decode_ns runs from the first generated token to the last: it covers one token fewer.
    d->set_decode_tokens_per_second(PerSecond(result->generated_tokens - 1, result->decode_ns));
    d->set_stop_reason(result->stop);
    d->set_finish_reason(FinishReasonOf(result->stop, generate.has_max_new_tokens()));
    d->set_context_used(static_cast<uint32_t>(engine_.context_used()));
    d->set_cached_tokens(static_cast<uint32_t>(result->cached_tokens));
    d->set_dropped_messages(static_cast<uint32_t>(result->dropped_messages));
    if (stop_requested_ && result->stop == api::Done::CANCELLED) {
      // celld cut the generation off (shutdown, kill, lifetime): the client is told that, not
      // handed a Done as if it had cancelled, so it can tell a cut-off answer from a whole one.
      SendToClient(ipc::MakeError(api::SESSION_ENDED, stop_reason_, stop_outcome_));
    } else if (client_.valid()) {
      SendToClient(done);
    }

    control::WorkerMessage report;
    control::GenerationReport* g = report.mutable_report();
    g->set_prompt_tokens(static_cast<uint32_t>(result->prompt_tokens));
    g->set_generated_tokens(static_cast<uint32_t>(result->generated_tokens));
    g->set_time_to_first_token_us(static_cast<uint64_t>(result->time_to_first_token_ns / 1000));
    for (uint32_t us : inter_token_us_) g->add_inter_token_us(us);
    SendToSupervisor(report);
  }
}

bool SessionServer::OnToken(const TurnPiece& piece) {
  if (piece.token < 0) {
    // Text held back until the turn ended: one more piece, without a token.
    if (client_.valid()) {
      api::Piece* p = scratch_.mutable_piece();
      p->set_text(piece.text.data(), piece.text.size());
      p->clear_token();
      p->set_reasoning(piece.reasoning.data(), piece.reasoning.size());
      ipc::AppendFrame(scratch_, &output_);
      FlushClient();
    }
    return !cancel_requested_ && client_.valid();
  }
  int64_t now = clock_.NowNanos();
  if (last_token_ns_ != 0 && inter_token_us_.size() < kMaxInterTokenSamples) {
    int64_t us = (now - last_token_ns_) / 1000;
    inter_token_us_.push_back(
        static_cast<uint32_t>(std::min<int64_t>(us, std::numeric_limits<uint32_t>::max())));
  }
  last_token_ns_ = now;
  if (client_.valid()) {
    api::Piece* p = scratch_.mutable_piece();
    p->set_text(piece.text.data(), piece.text.size());
    p->set_token(static_cast<uint32_t>(piece.token));
    p->set_reasoning(piece.reasoning.data(), piece.reasoning.size());
    ipc::AppendFrame(scratch_, &output_);
    FlushClient();
  }
  ServiceDuringTurn();
  // A client that went away mid-turn stops the turn: what was generated stays in the
  // conversation, and a re-attaching client continues from there.
  return !cancel_requested_ && client_.valid();
}

void SessionServer::ServiceDuringTurn() {
  // Requests that arrived in the same read as the Generate (a client that sends Generate and
  // then Cancel or Close at once, as the HTTP gateway does when its client leaves) are already
  // decoded: the socket will not signal them again.
  if (client_.valid()) static_cast<void>(HandleBufferedRequests(/*during_turn=*/true));
  for (;;) {
    bool backlogged = client_.valid() && output_.size() - output_sent_ > config_.max_pending_output;
    pollfd fds[2] = {{control_.get(), POLLIN, 0}, {client_.get(), 0, 0}};
    nfds_t count = 1;
    if (client_.valid()) {
      fds[1].events = static_cast<short>(backlogged ? POLLOUT : POLLIN);
      count = 2;
    }
    int timeout = backlogged ? PollTimeoutMs() : 0;
    int rc = ::poll(fds, count, timeout);
    if (rc < 0 && errno != EINTR) {
      cancel_requested_ = true;
      return;
    }
    if (rc > 0 && fds[0].revents != 0) HandleControl();
    if (supervisor_gone_ || stop_requested_) {
      cancel_requested_ = true;
      return;
    }
    if (count == 2 && client_.valid() && (fds[1].revents & POLLOUT) != 0) FlushClient();
    if (count == 2 && client_.valid() && (fds[1].revents & (POLLIN | POLLHUP | POLLERR)) != 0) {
      HandleClientInput(/*during_turn=*/true);
    }
    MaybeHeartbeat();
    if (!backlogged || !client_.valid() || cancel_requested_) return;
    // Still backlogged: the client is not reading. Wait (serving control) until it does.
  }
}

void SessionServer::SendToClient(const api::Response& response) {
  if (!client_.valid()) return;
  ipc::AppendFrame(response, &output_);
}

void SessionServer::SendError(api::ErrorCode code, std::string_view message) {
  SendToClient(ipc::MakeError(code, message));
}

void SessionServer::FlushClient() {
  while (client_.valid() && output_sent_ < output_.size()) {
    ssize_t n = ::send(client_.get(), output_.data() + output_sent_, output_.size() - output_sent_,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) return;
      Detach();
      return;
    }
    output_sent_ += static_cast<size_t>(n);
  }
  if (output_sent_ == output_.size()) {
    output_.clear();  // keeps its capacity
    output_sent_ = 0;
  }
}

void SessionServer::FlushBeforeClosing() {
  // The last answer (an Ack or an error) should reach the client, but a client that does not
  // read may not hold the worker: give it a second.
  int64_t deadline = clock_.NowNanos() + kNanosPerSecond;
  FlushClient();
  while (client_.valid() && output_sent_ < output_.size() && clock_.NowNanos() < deadline) {
    pollfd p{client_.get(), POLLOUT, 0};
    if (::poll(&p, 1, 100) < 0 && errno != EINTR) return;
    FlushClient();
  }
}

void SessionServer::SendToSupervisor(const control::WorkerMessage& message) {
  if (supervisor_gone_) return;
  if (!ipc::SendMessage(control_.get(), message)) supervisor_gone_ = true;
}

void SessionServer::SendHeartbeat(uint64_t nonce) {
  control::WorkerMessage message;
  control::Heartbeat* h = message.mutable_heartbeat();
  h->set_nonce(nonce);
  h->set_tokens_generated(tokens_generated_);
  h->set_context_used(static_cast<uint32_t>(engine_.context_used()));
  h->set_kv_bytes_in_use(engine_.KvBytesInUse());
  h->set_generating(generating_);
  h->set_attached(client_.valid());
  h->set_idle_ms(static_cast<uint64_t>((clock_.NowNanos() - last_activity_ns_) / kNanosPerMilli));
  SendToSupervisor(message);
}

void SessionServer::MaybeHeartbeat() {
  int64_t now = clock_.NowNanos();
  if (now < next_heartbeat_ns_) return;
  SendHeartbeat(0);
  next_heartbeat_ns_ = now + config_.heartbeat_interval_ns;
}

}  // namespace cellhouse::session
