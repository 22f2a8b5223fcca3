// Connections against real Unix sockets, on a stepped clock: what a client that does not read,
// one that announces a large frame, and one tenant holding many connections get, and what the
// others keep. Peer credentials come from a queue the test fills (accept order is connect order).
#include "supervisor/connections.h"

#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <deque>
#include <memory>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "ipc/frame.h"
#include "ipc/messages.h"
#include "ipc/unix_socket.h"
#include "tests/support/test_env.h"

namespace cellhouse::supervisor {
namespace {

class ConnectionsTest : public ::testing::Test {
 protected:
  void Start(const ConnectionLimits& limits, size_t reply_bytes = 100) {
    auto loop = EventLoop::Create(clock_);
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
    path_ = dir_.File("s");
    auto listener = ipc::ListenUnix({.path = path_, .mode = 0600});
    ASSERT_TRUE(listener) << listener.error().message();
    reply_bytes_ = reply_bytes;
    conns_ = std::make_unique<Connections>(
        *loop_, clock_, limits, refusals_,
        [this](Connection& c, const api::Request& r) { Handle(c, r); },
        [this](int) -> Result<ipc::PeerCredentials> {
          uid_t uid = uids_.empty() ? 0 : uids_.front();
          if (!uids_.empty()) uids_.pop_front();
          return ipc::PeerCredentials{.pid = 1, .uid = uid, .gid = uid, .groups = {}};
        });
    ASSERT_TRUE(conns_->AddListener(std::move(*listener)));
  }

  // Status is answered with reply_bytes_ of text; open waits for a session (within its share)
  // and is never answered.
  void Handle(Connection& c, const api::Request& r) {
    ++handled_;
    if (r.has_open()) {
      if (std::optional<ConnectionRefusal> no = conns_->MayWaitForSession(c)) {
        conns_->Reply(c, ipc::MakeError(no->code, no->message), AfterReply::kKeepOpen);
        return;
      }
      conns_->WaitForSession(c);
      return;
    }
    conns_->Reply(c, ipc::MakeAck(std::string(reply_bytes_, 'x')), AfterReply::kKeepOpen);
  }

  // A client of `uid` (its connection is accepted by the next Pump).
  UniqueFd Connect(uid_t uid) {
    uids_.push_back(uid);
    auto fd = ipc::ConnectUnix(path_);
    EXPECT_TRUE(fd) << fd.error().message();
    if (!fd) return UniqueFd();
    static_cast<void>(SetNonBlocking(fd->get()));
    Pump();
    return std::move(*fd);
  }

  void Pump(int rounds = 8) {
    for (int i = 0; i < rounds; ++i) ASSERT_TRUE(loop_->RunOnce(0));
  }

  static std::string StatusRequest() {
    api::Request r;
    r.mutable_status();
    return ipc::EncodeFrame(r);
  }

  // Everything readable now; `eof` says whether the server closed.
  static std::string Drain(int fd, bool* eof = nullptr) {
    std::string got;
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        got.append(buf, static_cast<size_t>(n));
        continue;
      }
      if (eof != nullptr) *eof = n == 0 || (n < 0 && errno != EAGAIN);
      return got;
    }
  }

  // The first Error frame in `bytes`, if any.
  static std::optional<api::Error> FirstError(const std::string& bytes) {
    ipc::FrameDecoder decoder(1 << 20);
    if (!decoder.Feed(bytes)) return std::nullopt;
    for (;;) {
      auto frame = decoder.Next();
      if (!frame || !frame->has_value()) return std::nullopt;
      api::Response r;
      if (r.ParseFromString(**frame) && r.has_error()) return r.error();
    }
  }

  FakeClock clock_{1'000'000'000};
  testing::TempDir dir_;
  std::string path_;
  std::unique_ptr<EventLoop> loop_;
  LabeledCounter refusals_{"refusals", "test", {"reason"}};
  std::unique_ptr<Connections> conns_;
  std::deque<uid_t> uids_;
  size_t reply_bytes_ = 100;
  int handled_ = 0;
};

TEST_F(ConnectionsTest, AClientThatDoesNotReadIsNotReadAndIsClosedAfterTheWriteTimeout) {
  ConnectionLimits limits;
  limits.write_timeout_ms = 2000;
  Start(limits, /*reply_bytes=*/size_t{32} * 1024);
  UniqueFd client = Connect(1000);
  // Pipelined requests, as many as the socket takes; the replies are never read.
  std::string many;
  for (int i = 0; i < 20000; ++i) many += StatusRequest();
  ssize_t sent = ::send(client.get(), many.data(), many.size(), MSG_DONTWAIT);
  ASSERT_GT(sent, 0);
  Pump(200);
  int answered = handled_;
  EXPECT_GT(answered, 0);
  EXPECT_LT(static_cast<size_t>(answered) * StatusRequest().size(), static_cast<size_t>(sent))
      << "celld read every request although the client reads nothing";
  // Nothing more happens however often the loop turns: no reading, no spinning on EPOLLIN.
  Pump(200);
  EXPECT_EQ(handled_, answered);
  Connection* conn = conns_->Find(1);
  ASSERT_NE(conn, nullptr);
  EXPECT_EQ(conn->interest, static_cast<uint32_t>(EPOLLOUT));
  // At most one reply is held for it.
  EXPECT_LE(conn->out.size(), 32u * 1024 + 64);
  clock_.Advance(1999 * kNanosPerMilli);
  Pump();
  EXPECT_EQ(conns_->size(), 1u);
  clock_.Advance(2 * kNanosPerMilli);
  Pump();
  EXPECT_EQ(conns_->size(), 0u) << "closed after the write timeout";
}

TEST_F(ConnectionsTest, AReaderGetsEveryPipelinedReplyInOrder) {
  Start(ConnectionLimits{});
  UniqueFd client = Connect(1000);
  std::string three = StatusRequest() + StatusRequest() + StatusRequest();
  ASSERT_TRUE(WriteFull(client.get(), three, "requests"));
  Pump(20);
  std::string got = Drain(client.get());
  ipc::FrameDecoder decoder(1 << 20);
  ASSERT_TRUE(decoder.Feed(got));
  int acks = 0;
  for (;;) {
    auto frame = decoder.Next();
    ASSERT_TRUE(frame);
    if (!frame->has_value()) break;
    ++acks;
  }
  EXPECT_EQ(acks, 3);
  EXPECT_EQ(conns_->size(), 1u);
}

TEST_F(ConnectionsTest, AnAnnouncedLengthIsNotAllocatedBeforeItsBytesArrive) {
  ConnectionLimits limits;
  limits.request_bytes_per_identity = size_t{64} * 1024;
  Start(limits);
  UniqueFd client = Connect(1000);
  // 1 MiB announced (the default limit), 10 bytes sent.
  ASSERT_TRUE(WriteFull(client.get(), std::string("\x80\x80\x40", 3) + std::string(10, 'a'), "p"));
  Pump();
  EXPECT_LE(conns_->request_bytes(), 512u);
  EXPECT_EQ(conns_->UsageOf(Identity::ForUid(1000)).request_bytes, conns_->request_bytes());
  // More than the tenant's share arrives: refused and closed, its bytes given back.
  std::string chunk(size_t{100} * 1024, 'b');
  static_cast<void>(::send(client.get(), chunk.data(), chunk.size(), MSG_DONTWAIT));
  Pump(20);
  EXPECT_EQ(conns_->size(), 0u);
  EXPECT_EQ(conns_->request_bytes(), 0u);
  bool eof = false;
  std::optional<api::Error> error = FirstError(Drain(client.get(), &eof));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code(), api::ADMISSION_REFUSED);
  EXPECT_NE(error->message().find("partly received requests"), std::string::npos);
  EXPECT_EQ(refusals_.Get({"request_bytes"}), 1u);
}

TEST_F(ConnectionsTest, WhenEveryonesBudgetIsUsedTheLargestHolderGivesWay) {
  ConnectionLimits limits;
  limits.request_bytes = size_t{64} * 1024;
  limits.request_bytes_per_identity = size_t{60} * 1024;
  Start(limits);
  UniqueFd hog = Connect(1000);
  ASSERT_TRUE(WriteFull(hog.get(), std::string("\x80\x80\x40", 3) + std::string(40000, 'a'), "h"));
  Pump(20);
  size_t held = conns_->request_bytes();
  EXPECT_GE(held, 40000u);
  // Another tenant's request needs more than is left: the hog's connection is closed for it.
  UniqueFd other = Connect(2000);
  api::Request open;
  open.mutable_open()->set_policy(std::string(30000, 'p'));
  ASSERT_TRUE(WriteFull(other.get(), ipc::EncodeFrame(open), "o"));
  Pump(20);
  EXPECT_EQ(handled_, 1) << "the other tenant's request was read whole";
  bool eof = false;
  std::optional<api::Error> error = FirstError(Drain(hog.get(), &eof));
  ASSERT_TRUE(error);
  EXPECT_NE(error->message().find("make room"), std::string::npos);
}

TEST_F(ConnectionsTest, OneTenantGetsItsShareOfConnectionsAndCannotLockOthersOut) {
  ConnectionLimits limits;
  limits.max_connections = 4;
  limits.max_connections_per_identity = 3;
  Start(limits);
  std::vector<UniqueFd> mine;
  mine.reserve(3);
  for (int i = 0; i < 3; ++i) mine.push_back(Connect(1000));
  EXPECT_EQ(conns_->size(), 3u);
  // The fourth of uid 1000 is over its share.
  UniqueFd fourth = Connect(1000);
  bool eof = false;
  std::optional<api::Error> refused = FirstError(Drain(fourth.get(), &eof));
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->message().find("uid 1000 already has 3 connections"), std::string::npos);
  EXPECT_EQ(refusals_.Get({"tenant_connections"}), 1u);
  // uid 2000 takes the last slot, and uid 3000 still gets in: uid 1000's oldest gives way.
  UniqueFd b = Connect(2000);
  UniqueFd c = Connect(3000);
  EXPECT_EQ(conns_->size(), 4u);
  EXPECT_EQ(conns_->UsageOf(Identity::ForUid(1000)).connections, 2u);
  EXPECT_EQ(conns_->UsageOf(Identity::ForUid(3000)).connections, 1u);
  std::optional<api::Error> evicted = FirstError(Drain(mine[0].get(), &eof));
  ASSERT_TRUE(evicted);
  EXPECT_TRUE(eof);
  // Equal holders: nobody gives way to a newcomer who would then hold as much.
  UniqueFd d = Connect(2000);
  std::optional<api::Error> full = FirstError(Drain(d.get(), &eof));
  ASSERT_TRUE(full);
  EXPECT_NE(full->message().find("too many connections"), std::string::npos);
}

TEST_F(ConnectionsTest, OpensInProgressAreSharedPerTenant) {
  ConnectionLimits limits;
  limits.max_pending_opens_per_identity = 2;
  Start(limits);
  api::Request open;
  open.mutable_open();
  std::vector<UniqueFd> clients;
  clients.reserve(3);
  for (int i = 0; i < 3; ++i) {
    clients.push_back(Connect(1000));
    ASSERT_TRUE(WriteFull(clients.back().get(), ipc::EncodeFrame(open), "open"));
    Pump();
  }
  EXPECT_EQ(conns_->pending_opens(), 2u);
  bool eof = false;
  std::optional<api::Error> refused = FirstError(Drain(clients[2].get(), &eof));
  ASSERT_TRUE(refused);
  EXPECT_NE(refused->message().find("sessions starting"), std::string::npos);
  // Another tenant is not affected.
  UniqueFd other = Connect(2000);
  ASSERT_TRUE(WriteFull(other.get(), ipc::EncodeFrame(open), "open"));
  Pump();
  EXPECT_EQ(conns_->pending_opens(), 3u);
  // Released to a worker, a waiting connection no longer counts.
  UniqueFd taken = conns_->Release(1);
  EXPECT_TRUE(taken.valid());
  EXPECT_EQ(conns_->pending_opens(), 2u);
  EXPECT_EQ(conns_->UsageOf(Identity::ForUid(1000)).pending_opens, 1u);
}

TEST_F(ConnectionsTest, NoCompleteRequestWithinTheTimeoutIsAnsweredAndClosed) {
  ConnectionLimits limits;
  limits.request_timeout_ms = 500;
  Start(limits);
  UniqueFd client = Connect(1000);
  ASSERT_TRUE(WriteFull(client.get(), std::string("\x05", 1), "half a request"));
  clock_.Advance(501 * kNanosPerMilli);
  Pump();
  EXPECT_EQ(conns_->size(), 0u);
  bool eof = false;
  std::optional<api::Error> error = FirstError(Drain(client.get(), &eof));
  ASSERT_TRUE(error);
  EXPECT_EQ(error->code(), api::BAD_REQUEST);
  EXPECT_TRUE(eof);
  EXPECT_EQ(conns_->request_bytes(), 0u);
}

TEST_F(ConnectionsTest, ARequestWithinTheTimeoutRestartsIt) {
  ConnectionLimits limits;
  limits.request_timeout_ms = 500;
  Start(limits);
  UniqueFd client = Connect(1000);
  for (int i = 0; i < 4; ++i) {
    clock_.Advance(400 * kNanosPerMilli);
    ASSERT_TRUE(WriteFull(client.get(), StatusRequest(), "status"));
    Pump();
    Drain(client.get());
  }
  EXPECT_EQ(handled_, 4);
  EXPECT_EQ(conns_->size(), 1u);
}

}  // namespace
}  // namespace cellhouse::supervisor
