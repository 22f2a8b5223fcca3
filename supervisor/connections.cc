#include "supervisor/connections.h"

#include <sys/socket.h>

#include <cerrno>
#include <utility>

#include <spdlog/spdlog.h>

#include "base/strings.h"
#include "ipc/messages.h"
#include "supervisor/protobuf_log.h"

namespace cellhouse::supervisor {
namespace {

// At most one warning about a paused accept per this long; the others are counted.
constexpr int64_t kAcceptWarningIntervalNs = 10 * kNanosPerSecond;

// A refusal for a connection celld will not serve: best effort, it never waits for the client.
void SendAndForget(int fd, const api::Response& response) {
  std::string frame = ipc::EncodeFrame(response);
  static_cast<void>(::send(fd, frame.data(), frame.size(), MSG_NOSIGNAL | MSG_DONTWAIT));
}

}  // namespace

Connections::Connections(EventLoop& loop, const Clock& clock, const ConnectionLimits& limits,
                         LabeledCounter& refusals, RequestHandler on_request,
                         CredentialsOf credentials)
    : loop_(loop),
      clock_(clock),
      limits_(limits),
      refusals_(refusals),
      on_request_(std::move(on_request)),
      credentials_(std::move(credentials)) {}

Connections::~Connections() {
  for (auto& [id, conn] : connections_) {
    if (conn.interest != 0) loop_.Remove(conn.fd.get());
    if (conn.request_timer != 0) loop_.CancelTimer(conn.request_timer);
    if (conn.write_timer != 0) loop_.CancelTimer(conn.write_timer);
  }
  CloseListeners();
}

Status Connections::AddListener(UniqueFd listener) {
  int fd = listener.get();
  CH_RETURN_IF_ERROR(loop_.Add(fd, EPOLLIN, [this, fd](uint32_t) { OnAccept(fd); }));
  listeners_.push_back(std::move(listener));
  return Ok();
}

void Connections::CloseListeners() {
  for (const UniqueFd& l : listeners_) loop_.Remove(l.get());
  listeners_.clear();
  if (accept_resume_timer_ != 0) loop_.CancelTimer(accept_resume_timer_);
  accept_resume_timer_ = 0;
}

void Connections::OnAccept(int listener) {
  // Bounded per wake-up: a flood of connections waits its turn with everything else (the
  // listener stays readable, so the loop comes back).
  for (int i = 0; i < limits_.accepts_per_wakeup; ++i) {
    UniqueFd fd(::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK));
    if (!fd.valid()) {
      int err = errno;
      if (err == EAGAIN) return;
      // The client gave up before it was accepted: nothing to do.
      if (err == EINTR || err == ECONNABORTED || err == EPROTO) continue;
      // Anything else would fail again at once; the listener stays readable, and level-
      // triggered epoll would spin on it. Stop watching it for a while instead.
      PauseAccepting(Error::FromErrno(err, "accept on the client socket"));
      return;
    }
    Result<ipc::PeerCredentials> peer = credentials_(fd.get());
    if (!peer) {
      spdlog::warn("dropping a connection: {}", peer.error().message());
      continue;
    }
    Identity who = Identity::ForPeer(*peer);
    if (auto refused = AdmitConnection(who)) {
      refusals_.Inc({refused->first});
      SendAndForget(fd.get(), ipc::MakeError(api::ADMISSION_REFUSED, refused->second));
      continue;
    }
    Register(std::move(fd), *peer);
  }
}

void Connections::PauseAccepting(const Error& why) {
  // Out of the loop rather than watched for nothing: a failed EPOLL_CTL_MOD would leave the
  // listener readable and spun on; a removal cannot fail that way.
  for (const UniqueFd& l : listeners_) loop_.Remove(l.get());
  int64_t now = clock_.NowNanos();
  if (now - last_accept_warning_ns_ >= kAcceptWarningIntervalNs || last_accept_warning_ns_ == 0) {
    spdlog::warn(
        "{}; accepting again in {} ms ({} earlier pauses not logged). Raise LimitNOFILE= or "
        "lower --max-connections.",
        why.message(), limits_.accept_pause_ms, accept_pauses_unlogged_);
    last_accept_warning_ns_ = now;
    accept_pauses_unlogged_ = 0;
  } else {
    ++accept_pauses_unlogged_;
  }
  if (accept_resume_timer_ == 0) {
    accept_resume_timer_ = loop_.AddTimer(now + limits_.accept_pause_ms * kNanosPerMilli, [this] {
      accept_resume_timer_ = 0;
      ResumeAccepting();
    });
  }
}

void Connections::ResumeAccepting() {
  for (const UniqueFd& l : listeners_) {
    int fd = l.get();
    if (loop_.Watching(fd)) continue;
    Status resumed = loop_.Add(fd, EPOLLIN, [this, fd](uint32_t) { OnAccept(fd); });
    if (!resumed) {
      PauseAccepting(std::move(resumed).error().Context("accepting again"));
      return;
    }
  }
}

std::optional<std::pair<std::string, std::string>> Connections::AdmitConnection(
    const Identity& who) {
  Usage mine = UsageOf(who);
  if (mine.connections >= limits_.max_connections_per_identity) {
    return std::make_pair(
        std::string("tenant_connections"),
        who.ToString() + " already has " + std::to_string(mine.connections) +
            " connections waiting, its share of celld's; finish or close some and try again");
  }
  if (connections_.size() < limits_.max_connections) return std::nullopt;
  // Full: a newcomer holding fewer than the largest holder would have after it came in takes
  // that holder's oldest idle connection. Whoever holds the most gives way first.
  if (EvictFromLargest(&Usage::connections, mine.connections + 1, 0)) return std::nullopt;
  return std::make_pair(std::string("connections"),
                        std::string("too many connections are waiting; try again shortly"));
}

bool Connections::EvictFromLargest(size_t Usage::*measure, size_t than, uint64_t spare_id) {
  const Identity* largest = nullptr;
  size_t most = 0;
  for (const auto& [identity, usage] : usage_) {
    if (usage.*measure > most) {
      most = usage.*measure;
      largest = &identity;
    }
  }
  if (largest == nullptr || most <= than) return false;
  Identity victim_identity = *largest;
  const Usage& usage = usage_.at(victim_identity);
  // Its oldest connection that is not an open in progress (that one holds a worker's start);
  // for request bytes, the one holding the most.
  uint64_t victim = 0;
  size_t victim_bytes = 0;
  for (uint64_t id : usage.ids) {
    const Connection& c = connections_.at(id);
    if (c.waiting_for_session || id == spare_id) continue;
    if (measure == &Usage::request_bytes) {
      if (c.reader.held_bytes() > victim_bytes) {
        victim = id;
        victim_bytes = c.reader.held_bytes();
      }
    } else {
      victim = id;
      break;
    }
  }
  if (victim == 0) return false;
  spdlog::debug("closing connection {} of {} to make room for other tenants", victim,
                victim_identity.ToString());
  Connection& c = connections_.at(victim);
  SendAndForget(c.fd.get(), ipc::MakeError(api::ADMISSION_REFUSED,
                                           "closed to make room for other tenants' requests: " +
                                               victim_identity.ToString() +
                                               " holds more of celld than anyone else"));
  Close(victim);
  return true;
}

void Connections::Register(UniqueFd fd, const ipc::PeerCredentials& peer) {
  uint64_t id = next_id_++;
  int raw = fd.get();
  auto [it, inserted] = connections_.try_emplace(id, id, std::move(fd), peer, clock_.NowNanos(),
                                                 limits_.max_frame_bytes);
  Connection& conn = it->second;
  Status watched = loop_.Add(raw, EPOLLIN, [this, id](uint32_t ev) { OnEvent(id, ev); });
  if (!watched) {
    spdlog::error("dropping a connection: {}", watched.error().message());
    connections_.erase(it);
    return;
  }
  conn.interest = EPOLLIN;
  Usage& usage = usage_[conn.identity];
  ++usage.connections;
  usage.ids.insert(id);
  ArmRequestTimer(conn);
}

Connection* Connections::Find(uint64_t id) {
  auto it = connections_.find(id);
  return it == connections_.end() ? nullptr : &it->second;
}

Connections::Usage Connections::UsageOf(const Identity& identity) const {
  auto it = usage_.find(identity);
  return it == usage_.end() ? Usage{} : it->second;
}

void Connections::OnEvent(uint64_t id, uint32_t events) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  if ((conn->interest & EPOLLOUT) != 0 || (events & (EPOLLERR | EPOLLHUP)) != 0) {
    if (conn->out_sent < conn->out.size()) {
      Flush(*conn);  // on a broken connection the send fails and closes it
      return;
    }
  }
  if ((conn->interest & EPOLLIN) != 0) ReadRequest(*conn);
}

bool Connections::GrantRequestBytes(Connection& conn, size_t bytes) {
  Usage& mine = usage_[conn.identity];
  if (mine.request_bytes + bytes > limits_.request_bytes_per_identity) return false;
  while (request_bytes_ + bytes > limits_.request_bytes) {
    // Everyone's budget is used up: the largest holder gives way if it holds more than this
    // identity would after the grant.
    if (!EvictFromLargest(&Usage::request_bytes, mine.request_bytes + bytes, conn.id)) {
      return false;
    }
  }
  mine.request_bytes += bytes;
  request_bytes_ += bytes;
  return true;
}

void Connections::ReleaseRequestBytes(Connection& conn) {
  size_t held = conn.reader.held_bytes();
  if (held == 0) return;
  auto it = usage_.find(conn.identity);
  if (it != usage_.end()) it->second.request_bytes -= held;
  request_bytes_ -= held;
}

void Connections::ResetReader(Connection& conn) {
  ReleaseRequestBytes(conn);
  conn.reader = ipc::ExactFrameReader(limits_.max_frame_bytes);
}

void Connections::Refuse(Connection& conn, api::ErrorCode code, const std::string& why,
                         const std::string& label) {
  if (!label.empty()) refusals_.Inc({label});
  ResetReader(conn);
  Reply(conn, ipc::MakeError(code, why), AfterReply::kClose);
}

void Connections::ReadRequest(Connection& conn) {
  const uint64_t id = conn.id;
  Result<ipc::ExactFrameReader::State> state = conn.reader.ReadFrom(
      conn.fd.get(), [this, &conn](size_t bytes) { return GrantRequestBytes(conn, bytes); });
  if (!state) {
    Close(id);
    return;
  }
  switch (*state) {
    case ipc::ExactFrameReader::State::kIncomplete:
      return;
    case ipc::ExactFrameReader::State::kEndOfFile:
      Close(id);
      return;
    case ipc::ExactFrameReader::State::kTooLarge:
      Refuse(conn, api::FRAME_TOO_LARGE,
             "a request of " + std::to_string(conn.reader.announced_length()) +
                 " bytes is larger than the limit of " + std::to_string(limits_.max_frame_bytes) +
                 " bytes; closing the connection",
             "");
      return;
    case ipc::ExactFrameReader::State::kMalformed:
      Refuse(conn, api::BAD_REQUEST, "malformed frame length; closing", "");
      return;
    case ipc::ExactFrameReader::State::kOverBudget:
      Refuse(conn, api::ADMISSION_REFUSED,
             "celld holds too many partly received requests (" + conn.identity.ToString() +
                 "'s share or everyone's); send requests whole and try again",
             "request_bytes");
      return;
    case ipc::ExactFrameReader::State::kComplete:
      break;
  }
  api::Request request;
  bool parsed = false;
  {
    ProtobufLogScope scope(conn.identity.ToString(), &conn.protobuf_log_lines);
    parsed = request.ParseFromString(conn.reader.frame());
  }
  ResetReader(conn);
  if (!parsed) {
    Refuse(conn, api::BAD_REQUEST, "the request is not a valid cellhouse.api.Request; closing", "");
    return;
  }
  if (conn.request_timer != 0) loop_.CancelTimer(conn.request_timer);
  conn.request_timer = 0;
  on_request_(conn, request);
  // A handler that neither replied nor took the connection leaves it waiting for the next
  // request, within the same bound as every other.
  Connection* after = Find(id);
  if (after != nullptr && after->interest == EPOLLIN && after->request_timer == 0) {
    ArmRequestTimer(*after);
  }
}

Status Connections::AssertTenant(Connection& conn, Identity tenant) {
  if (conn.identity == tenant) return Ok();
  if (!conn.identity.tenant().empty()) {
    return Error("this connection already belongs to " + conn.identity.ToString() +
                 "; a connection serves one tenant");
  }
  // Only between requests: nothing is held but the connection itself.
  Usage& theirs = usage_[tenant];
  if (theirs.connections >= limits_.max_connections_per_identity) {
    refusals_.Inc({"tenant_connections"});
    if (theirs.connections == 0) usage_.erase(tenant);
    return Error(tenant.ToString() + " already has " + std::to_string(theirs.connections) +
                 " connections waiting, its share; try again when some are done");
  }
  ++theirs.connections;
  theirs.ids.insert(conn.id);
  auto mine = usage_.find(conn.identity);
  if (mine != usage_.end()) {
    --mine->second.connections;
    mine->second.ids.erase(conn.id);
    if (mine->second.connections == 0) usage_.erase(mine);
  }
  conn.identity = std::move(tenant);
  return Ok();
}

void Connections::Reply(Connection& conn, const api::Response& response, AfterReply then) {
  if (conn.waiting_for_session) {
    // The open failed: the connection is celld's to answer again.
    conn.waiting_for_session = false;
    Usage& usage = usage_[conn.identity];
    --usage.pending_opens;
    --pending_opens_;
  }
  if (conn.out_sent == conn.out.size()) conn.write_progress_ns = clock_.NowNanos();
  ipc::AppendFrame(response, &conn.out);
  if (then == AfterReply::kClose) conn.close_after_write = true;
  Flush(conn);
}

void Connections::Flush(Connection& conn) {
  const uint64_t id = conn.id;
  while (conn.out_sent < conn.out.size()) {
    ssize_t n = ::send(conn.fd.get(), conn.out.data() + conn.out_sent,
                       conn.out.size() - conn.out_sent, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) {
        AwaitWritable(conn);
        return;
      }
      Close(id);
      return;
    }
    conn.out_sent += static_cast<size_t>(n);
    conn.write_progress_ns = clock_.NowNanos();
  }
  conn.out.clear();
  conn.out.shrink_to_fit();
  conn.out_sent = 0;
  if (conn.write_timer != 0) loop_.CancelTimer(conn.write_timer);
  conn.write_timer = 0;
  if (conn.close_after_write) {
    Close(id);
    return;
  }
  if (conn.waiting_for_session) return;
  if (!SetInterest(conn, EPOLLIN)) return;
  ArmRequestTimer(conn);
}

void Connections::AwaitWritable(Connection& conn) {
  // Not read while its reply waits: only writability is watched, so a client that keeps sending
  // without reading is neither read nor spun on.
  if (!SetInterest(conn, EPOLLOUT)) return;
  if (conn.request_timer != 0) loop_.CancelTimer(conn.request_timer);
  conn.request_timer = 0;
  if (conn.write_timer == 0) {
    uint64_t id = conn.id;
    conn.write_timer =
        loop_.AddTimer(conn.write_progress_ns + limits_.write_timeout_ms * kNanosPerMilli,
                       [this, id] { OnWriteTimeout(id); });
  }
}

bool Connections::SetInterest(Connection& conn, uint32_t events) {
  if (conn.interest == events) return true;
  Status changed =
      conn.interest == 0
          ? loop_.Add(conn.fd.get(), events, [this, id = conn.id](uint32_t ev) { OnEvent(id, ev); })
          : loop_.Modify(conn.fd.get(), events);
  if (!changed) {
    // The connection cannot be watched as it needs to be: it would never be answered (or would
    // be spun on). Close it rather than keep it.
    spdlog::error("closing connection {} of {}: {}", conn.id, conn.identity.ToString(),
                  changed.error().message());
    Close(conn.id);
    return false;
  }
  conn.interest = events;
  return true;
}

void Connections::ArmRequestTimer(Connection& conn) {
  if (conn.request_timer != 0) loop_.CancelTimer(conn.request_timer);
  uint64_t id = conn.id;
  conn.request_timer =
      loop_.AddTimer(clock_.NowNanos() + limits_.request_timeout_ms * kNanosPerMilli,
                     [this, id] { OnRequestTimeout(id); });
}

void Connections::OnRequestTimeout(uint64_t id) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  conn->request_timer = 0;
  if (conn->waiting_for_session || conn->out_sent < conn->out.size()) return;
  Refuse(*conn, api::BAD_REQUEST,
         "no complete request within " + std::to_string(limits_.request_timeout_ms) + " ms", "");
}

void Connections::OnWriteTimeout(uint64_t id) {
  Connection* conn = Find(id);
  if (conn == nullptr) return;
  conn->write_timer = 0;
  int64_t deadline = conn->write_progress_ns + limits_.write_timeout_ms * kNanosPerMilli;
  if (clock_.NowNanos() < deadline) {
    conn->write_timer = loop_.AddTimer(deadline, [this, id] { OnWriteTimeout(id); });
    return;
  }
  spdlog::debug("closing connection {} of {}: its reply waited {} ms for it to read", id,
                conn->identity.ToString(), limits_.write_timeout_ms);
  Close(id);
}

Status Connections::MayWaitForSession(const Connection& conn) const {
  Usage mine = UsageOf(conn.identity);
  if (mine.pending_opens >= limits_.max_pending_opens_per_identity) {
    refusals_.Inc({"tenant_pending_opens"});
    return Error(conn.identity.ToString() + " already has " + std::to_string(mine.pending_opens) +
                 " sessions starting, its share; wait for them and try again");
  }
  if (pending_opens_ >= limits_.max_pending_opens) {
    refusals_.Inc({"pending_opens"});
    return Error("too many sessions are starting at once; try again shortly");
  }
  return Ok();
}

void Connections::WaitForSession(Connection& conn) {
  if (conn.waiting_for_session) return;
  conn.waiting_for_session = true;
  ++usage_[conn.identity].pending_opens;
  ++pending_opens_;
  if (conn.request_timer != 0) loop_.CancelTimer(conn.request_timer);
  conn.request_timer = 0;
  // Until the hand-off celld must not read: what the client sends next belongs to its worker.
  if (conn.interest != 0) loop_.Remove(conn.fd.get());
  conn.interest = 0;
}

void Connections::ReplyToAllAndClose(const api::Response& bye) {
  std::vector<uint64_t> ids;
  for (const auto& [id, conn] : connections_) {
    if (!conn.waiting_for_session) ids.push_back(id);
  }
  for (uint64_t id : ids) {
    if (Connection* conn = Find(id)) Reply(*conn, bye, AfterReply::kClose);
  }
}

UniqueFd Connections::Forget(uint64_t id) {
  auto it = connections_.find(id);
  if (it == connections_.end()) return UniqueFd();
  Connection& conn = it->second;
  if (conn.interest != 0) loop_.Remove(conn.fd.get());
  if (conn.request_timer != 0) loop_.CancelTimer(conn.request_timer);
  if (conn.write_timer != 0) loop_.CancelTimer(conn.write_timer);
  ReleaseRequestBytes(conn);
  auto u = usage_.find(conn.identity);
  if (u != usage_.end()) {
    Usage& usage = u->second;
    --usage.connections;
    usage.ids.erase(id);
    if (conn.waiting_for_session) {
      --usage.pending_opens;
      --pending_opens_;
    }
    if (usage.connections == 0) usage_.erase(u);
  }
  UniqueFd fd = std::move(conn.fd);
  connections_.erase(it);
  return fd;
}

void Connections::Close(uint64_t id) { static_cast<void>(Forget(id)); }

UniqueFd Connections::Release(uint64_t id) { return Forget(id); }

}  // namespace cellhouse::supervisor
