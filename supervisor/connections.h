// celld's client connections until they become sessions: accepting them, reading each request
// (the first byte-exactly, so what follows stays in the socket for the worker the connection is
// handed to), writing the replies, and the limits that keep one client, or one tenant, from
// taking what the others need. Everything runs from celld's EventLoop; nothing here blocks.
//
//   Connections conns(loop, clock, limits, metrics.admission_refusals,
//                     [&](Connection& c, const api::Request& r) { Handle(c, r); });
//   CH_RETURN_IF_ERROR(conns.AddListener(std::move(listener)));
//   ... in Handle: conns.Reply(c, response, AfterReply::kKeepOpen);
//                  or, for an open: conns.WaitForSession(c) ... conns.Release(c.id) → the worker
//
// The limits, each an immediate and explicit refusal, never a queue:
// - a connection is read only while nothing of its previous reply is left to write: a client
//   that does not read its replies is not read either (celld holds at most one reply for it,
//   and no level-triggered readiness goes unanswered), and one whose reply makes no progress for
//   write_timeout_ms is closed;
// - a complete request within request_timeout_ms of the connection or of the previous reply;
// - waiting connections: max_connections in all, and each identity (identity.h) at most its
//   share; when all are taken, a newcomer holding fewer than the largest holder takes the
//   oldest idle connection of that holder, so one tenant can never lock the others out;
// - opens in progress (a worker being started): max_pending_opens, and a share per identity;
// - bytes held in partly received requests: request_bytes in all, a share per identity; a
//   frame's buffer grows with the bytes that arrived, never with what its length prefix claims;
// - accepts per wake-up, and a pause (not a spin) when accept(2) runs out of descriptors.
#ifndef CELLHOUSE_SUPERVISOR_CONNECTIONS_H_
#define CELLHOUSE_SUPERVISOR_CONNECTIONS_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <set>
#include <string>
#include <unordered_map>
#include <vector>

#include "base/clock.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/api.pb.h"
#include "ipc/frame.h"
#include "ipc/unix_socket.h"
#include "supervisor/event_loop.h"
#include "supervisor/identity.h"
#include "supervisor/metrics.h"

namespace cellhouse::supervisor {

// Defaults fit a server with hundreds of sessions and a few hundred tenants: a tenant can have
// 64 sessions starting at once and 128 connections waiting (a batch of opens plus admin
// requests); a misbehaving one holds at most those and 2 MiB of celld's memory in partly
// received requests, all tenants together 16 MiB.
struct ConnectionLimits {
  size_t max_connections = 1024;              // not (yet) sessions, all identities
  size_t max_connections_per_identity = 128;  // --max-connections-per-tenant
  size_t max_pending_opens = 256;             // opens waiting for their worker, all identities
  size_t max_pending_opens_per_identity = 64;
  size_t max_frame_bytes = ipc::kDefaultMaxFrameBytes;
  size_t request_bytes = size_t{16} << 20;  // held in partly received requests
  size_t request_bytes_per_identity = size_t{2} << 20;
  int64_t request_timeout_ms = 10'000;
  int64_t write_timeout_ms = 10'000;
  int accepts_per_wakeup = 64;
  int64_t accept_pause_ms = 250;  // after accept(2) ran out of descriptors or memory
};

// One client connection. The Supervisor reads id, peer, identity and accepted_ns and passes it
// back to Connections; the rest is Connections' own state.
struct Connection {
  Connection(uint64_t connection_id, UniqueFd socket, const ipc::PeerCredentials& credentials,
             int64_t now_ns, size_t max_frame_bytes)
      : id(connection_id),
        fd(std::move(socket)),
        peer(credentials),
        identity(Identity::ForPeer(credentials)),
        accepted_ns(now_ns),
        reader(max_frame_bytes) {}

  uint64_t id;
  UniqueFd fd;
  ipc::PeerCredentials peer;
  Identity identity;
  int64_t accepted_ns;
  bool waiting_for_session = false;  // WaitForSession was called: celld no longer reads it

  // Owned by Connections.
  ipc::ExactFrameReader reader;
  std::string out;
  size_t out_sent = 0;
  bool close_after_write = false;
  uint32_t interest = 0;  // what the loop watches for (0: not watched)
  TimerId request_timer = 0;
  TimerId write_timer = 0;
  int64_t write_progress_ns = 0;
  uint32_t protobuf_log_lines = 0;
};

enum class AfterReply { kKeepOpen, kClose };

class Connections {
 public:
  using RequestHandler = std::function<void(Connection&, const api::Request&)>;
  // Who is at the other end of an accepted connection (tests stand in for SO_PEERCRED).
  using CredentialsOf = std::function<Result<ipc::PeerCredentials>(int fd)>;

  // What one identity holds now.
  struct Usage {
    size_t connections = 0;
    size_t pending_opens = 0;
    size_t request_bytes = 0;
    std::set<uint64_t> ids;  // its connections, oldest first
  };

  // `refusals` counts refused connections and opens by reason (connections, tenant_connections,
  // pending_opens, tenant_pending_opens, request_bytes).
  Connections(EventLoop& loop, const Clock& clock, const ConnectionLimits& limits,
              LabeledCounter& refusals, RequestHandler on_request,
              CredentialsOf credentials = ipc::GetPeerCredentials);
  ~Connections();
  Connections(const Connections&) = delete;
  Connections& operator=(const Connections&) = delete;

  Status AddListener(UniqueFd listener);
  // Stops accepting and closes the listeners.
  void CloseListeners();

  Connection* Find(uint64_t id);
  // Queues a reply and writes what the socket takes now. kClose: closed once it is written.
  void Reply(Connection& conn, const api::Response& response, AfterReply then);
  void Close(uint64_t id);
  // Takes the descriptor out of celld's hands (it goes to a worker).
  UniqueFd Release(uint64_t id);

  // The connection's first request asserted a gateway tenant (the caller checked that its uid is
  // the gateway's): from now on it is that tenant's, and its connection moves to that tenant's
  // share. Refused (the error is for the client) when the tenant's share of connections is full
  // or the connection already belongs to another identity's tenant.
  Status AssertTenant(Connection& conn, Identity tenant);

  // Whether `conn`'s identity may have one more open in progress; the error says which share
  // is used up, for the client.
  Status MayWaitForSession(const Connection& conn) const;
  // An open is in progress: celld stops reading the connection (what the client sends next
  // belongs to its worker) until Release, Close or a Reply.
  void WaitForSession(Connection& conn);

  // Replies `bye` to every connection not waiting for a session and closes it after (shutdown).
  void ReplyToAllAndClose(const api::Response& bye);

  size_t size() const { return connections_.size(); }
  size_t pending_opens() const { return pending_opens_; }
  size_t request_bytes() const { return request_bytes_; }
  bool accepting_paused() const { return accept_resume_timer_ != 0; }
  // Empty Usage for an identity holding nothing.
  Usage UsageOf(const Identity& identity) const;
  const ConnectionLimits& limits() const { return limits_; }

 private:
  void OnAccept(int listener);
  void PauseAccepting(const Error& why);
  void ResumeAccepting();
  // Makes room for one more connection of `who`: empty when it may come in (after closing
  // someone else's idle connection if that was fair), else the refusal for the client.
  std::optional<std::pair<std::string, std::string>> AdmitConnection(const Identity& who);
  void Register(UniqueFd fd, const ipc::PeerCredentials& peer);

  void OnEvent(uint64_t id, uint32_t events);
  void ReadRequest(Connection& conn);
  void Flush(Connection& conn);
  // The socket took only part of a reply: wait for writability alone, within the write timeout.
  void AwaitWritable(Connection& conn);
  // Watches for `events` (0: nothing); false when that failed and the connection was closed.
  bool SetInterest(Connection& conn, uint32_t events);
  void ArmRequestTimer(Connection& conn);
  void OnRequestTimeout(uint64_t id);
  void OnWriteTimeout(uint64_t id);
  bool GrantRequestBytes(Connection& conn, size_t bytes);
  void ReleaseRequestBytes(Connection& conn);
  void ResetReader(Connection& conn);
  // Closes the oldest connection of the identity holding the most connections (or request
  // bytes), if that identity holds more than `than`; false when there was none.
  bool EvictFromLargest(size_t Usage::*measure, size_t than, uint64_t spare_id);
  void Refuse(Connection& conn, api::ErrorCode code, const std::string& why,
              const std::string& label);
  // Forgets a connection: loop, timers, shares. Returns its descriptor.
  UniqueFd Forget(uint64_t id);

  EventLoop& loop_;
  const Clock& clock_;
  ConnectionLimits limits_;
  LabeledCounter& refusals_;
  RequestHandler on_request_;
  CredentialsOf credentials_;
  std::vector<UniqueFd> listeners_;
  TimerId accept_resume_timer_ = 0;
  int64_t last_accept_warning_ns_ = 0;
  uint64_t accept_pauses_unlogged_ = 0;
  uint64_t next_id_ = 1;
  std::unordered_map<uint64_t, Connection> connections_;
  std::map<Identity, Usage> usage_;
  size_t pending_opens_ = 0;
  size_t request_bytes_ = 0;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_CONNECTIONS_H_
