// The worker's session protocol, driven through real socketpairs against a scripted engine.
#include "worker/session/session_server.h"

#include <sys/socket.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <thread>

#include <gtest/gtest.h>

#include "base/io.h"
#include "ipc/client.h"
#include "ipc/packet.h"
#include "tests/support/fake_engine.h"

namespace cellhouse::session {
namespace {

using testing::FakeEngine;

class SessionServerTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto control = MakeSocketPair(SOCK_SEQPACKET);
    ASSERT_TRUE(control);
    supervisor_ = std::move(control->first);
    worker_control_ = std::move(control->second);
    config_.session_id = std::string(16, 'i');
    config_.max_new_tokens = 50;
    config_.heartbeat_interval_ns = 50 * kNanosPerMilli;
  }
  void TearDown() override {
    if (thread_.joinable()) {
      supervisor_.reset();  // the worker sees the supervisor go and exits
      thread_.join();
    }
  }

  void Start() {
    thread_ = std::thread([this] {
      SessionServer server(std::move(worker_control_), engine_, config_, clock_);
      exit_ = server.Run();
      finished_ = true;
    });
    auto hello = NextControl();
    ASSERT_TRUE(hello.has_hello());
    EXPECT_EQ(hello.hello().context_length(), 1000u);
  }

  // Hands a new client connection to the worker, as celld does; returns the client's end.
  ipc::ClientConnection AttachClient(bool reattach = false, int worker_sndbuf = 0) {
    auto pair = MakeSocketPair(SOCK_STREAM);
    EXPECT_TRUE(pair);
    if (worker_sndbuf > 0) {
      // AF_UNIX stream buffering is charged to the sender: shrink the worker's side.
      EXPECT_EQ(setsockopt(pair->second.get(), SOL_SOCKET, SO_SNDBUF, &worker_sndbuf,
                           sizeof(worker_sndbuf)),
                0);
    }
    control::SupervisorMessage m;
    m.mutable_attach_client()->set_reattach(reattach);
    EXPECT_TRUE(ipc::SendMessage(supervisor_.get(), m, {{pair->second.get()}}));
    return ipc::ClientConnection(std::move(pair->first));
  }

  // The next non-heartbeat message from the worker.
  control::WorkerMessage NextControl() {
    for (;;) {
      auto got = ipc::ReceiveMessage<control::WorkerMessage>(supervisor_.get(), {});
      EXPECT_TRUE(got);
      if (!got || got->end_of_stream) return {};
      if (!got->message.has_heartbeat() || got->message.heartbeat().nonce() != 0) {
        return got->message;
      }
    }
  }

  api::Response Next(ipc::ClientConnection& c) {
    auto r = c.Receive(60'000);
    EXPECT_TRUE(r) << r.error().message();
    return r ? *r : api::Response();
  }

  static api::Request Generate(const std::string& prompt, uint32_t max_new) {
    api::Request r;
    r.mutable_generate()->set_prompt(prompt);
    r.mutable_generate()->set_max_new_tokens(max_new);
    r.mutable_generate()->set_seed(42);
    return r;
  }

  // The bounds here (60 s) are on a hang, not claims about speed.
  void WaitFinished() {
    for (int i = 0; i < 6000 && !finished_; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    ASSERT_TRUE(finished_);
    thread_.join();
  }

  FakeEngine engine_;
  SessionConfig config_;
  RealClock clock_;
  UniqueFd supervisor_;
  UniqueFd worker_control_;
  std::thread thread_;
  std::atomic<bool> finished_{false};
  WorkerExit exit_ = WorkerExit::kInternalError;
};

TEST_F(SessionServerTest, StreamsPiecesThenDoneAndReportsToSupervisor) {
  Start();
  ipc::ClientConnection client = AttachClient();
  api::Response ready = Next(client);
  ASSERT_TRUE(ready.has_ready());
  EXPECT_EQ(ready.ready().session_id(), config_.session_id);
  EXPECT_EQ(ready.ready().context_used(), 0u);
  ASSERT_TRUE(client.Send(Generate("abc", 3)));
  std::string text;
  api::Response r;
  for (r = Next(client); r.has_piece(); r = Next(client)) text += r.piece().text();
  ASSERT_TRUE(r.has_done()) << r.DebugString();
  EXPECT_EQ(text, "t0 t1 t2 ");
  EXPECT_EQ(r.done().generated_tokens(), 3u);
  EXPECT_EQ(r.done().prompt_tokens(), 3u);
  EXPECT_EQ(r.done().stop_reason(), api::Done::MAX_TOKENS);
  EXPECT_EQ(r.done().context_used(), 6u);
  EXPECT_EQ(engine_.last_prompt, "abc");
  EXPECT_EQ(engine_.last_seed, 42u);
  control::WorkerMessage report = NextControl();
  ASSERT_TRUE(report.has_report());
  EXPECT_EQ(report.report().generated_tokens(), 3u);
  EXPECT_EQ(report.report().inter_token_us_size(), 2);

  api::Request close;
  close.mutable_close();
  ASSERT_TRUE(client.Send(close));
  api::Response ack = Next(client);
  EXPECT_TRUE(ack.has_ack());
  WaitFinished();
  EXPECT_EQ(exit_, WorkerExit::kClosed);
}

TEST_F(SessionServerTest, CancelStopsTheTurnAndBusyIsRefused) {
  engine_.delay = std::chrono::milliseconds(5);
  Start();
  ipc::ClientConnection client = AttachClient();
  ASSERT_TRUE(Next(client).has_ready());
  ASSERT_TRUE(client.Send(Generate("x", 50)));
  ASSERT_TRUE(Next(client).has_piece());
  ASSERT_TRUE(client.Send(Generate("again", 5)));
  api::Request cancel;
  cancel.mutable_cancel();
  ASSERT_TRUE(client.Send(cancel));
  bool saw_busy = false;
  api::Response r;
  for (r = Next(client); !r.has_done(); r = Next(client)) {
    if (r.has_error()) {
      EXPECT_EQ(r.error().code(), api::BUSY);
      saw_busy = true;
    }
  }
  EXPECT_TRUE(saw_busy);
  EXPECT_EQ(r.done().stop_reason(), api::Done::CANCELLED);
  EXPECT_LT(r.done().generated_tokens(), 50u);
  // Cancel with nothing running is acknowledged, not an error.
  ASSERT_TRUE(client.Send(cancel));
  EXPECT_TRUE(Next(client).has_ack());
}

TEST_F(SessionServerTest, DetachMidTurnThenReattachContinuesTheConversation) {
  engine_.delay = std::chrono::milliseconds(5);
  config_.max_new_tokens = 200;
  Start();
  {
    ipc::ClientConnection client = AttachClient();
    ASSERT_TRUE(Next(client).has_ready());
    ASSERT_TRUE(client.Send(Generate("hello", 200)));
    ASSERT_TRUE(Next(client).has_piece());
  }  // the client's connection is gone
  // The worker says so (a report may come first if the turn ended on its own under load).
  control::WorkerMessage m = NextControl();
  if (m.has_report()) m = NextControl();
  ASSERT_TRUE(m.has_detached());
  ipc::ClientConnection again = AttachClient(/*reattach=*/true);
  api::Response ready = Next(again);
  ASSERT_TRUE(ready.has_ready());
  EXPECT_GT(ready.ready().context_used(), 5u);  // the prompt and what was generated stayed
  EXPECT_LE(ready.ready().context_used(), 205u);
  ASSERT_TRUE(again.Send(Generate("more", 2)));
  api::Response r;
  for (r = Next(again); r.has_piece(); r = Next(again)) {
  }
  EXPECT_TRUE(r.has_done()) << r.DebugString();
}

// celld hands over a new connection while a turn streams: the turn finishes with the client
// that asked for it, then the new one is attached, told where the conversation stands, and may
// run its own turn at once (not BUSY, and no pieces of a turn it never asked for).
TEST_F(SessionServerTest, AConnectionHandedOverMidTurnIsAttachedWhenTheTurnEnds) {
  engine_.delay = std::chrono::milliseconds(5);
  Start();
  ipc::ClientConnection first = AttachClient();
  ASSERT_TRUE(Next(first).has_ready());
  ASSERT_TRUE(first.Send(Generate("hello", 50)));
  ASSERT_TRUE(Next(first).has_piece());
  ipc::ClientConnection second = AttachClient(/*reattach=*/true);
  api::Response r;
  int pieces = 1;
  for (r = Next(first); r.has_piece(); r = Next(first)) ++pieces;
  ASSERT_TRUE(r.has_done()) << r.DebugString();
  EXPECT_EQ(pieces, 50);
  EXPECT_EQ(r.done().stop_reason(), api::Done::MAX_TOKENS);
  api::Response ready = Next(second);
  ASSERT_TRUE(ready.has_ready()) << ready.DebugString();
  EXPECT_EQ(ready.ready().context_used(), r.done().context_used());
  ASSERT_TRUE(second.Send(Generate("more", 2)));
  for (r = Next(second); r.has_piece(); r = Next(second)) {
  }
  EXPECT_TRUE(r.has_done()) << r.DebugString();
}

TEST_F(SessionServerTest, StopFromSupervisorEndsTheWorker) {
  engine_.delay = std::chrono::milliseconds(5);
  Start();
  ipc::ClientConnection client = AttachClient();
  ASSERT_TRUE(Next(client).has_ready());
  ASSERT_TRUE(client.Send(Generate("x", 50)));
  ASSERT_TRUE(Next(client).has_piece());
  control::SupervisorMessage stop;
  stop.mutable_stop()->set_reason("celld is shutting down");
  stop.mutable_stop()->set_outcome(api::SHUTDOWN);
  ASSERT_TRUE(ipc::SendMessage(supervisor_.get(), stop));
  WaitFinished();
  EXPECT_EQ(exit_, WorkerExit::kStopped);
  // The cut-off generation ends with celld's reason, not a Done as if the client had cancelled.
  api::Response r;
  for (r = Next(client); r.has_piece(); r = Next(client)) {
  }
  ASSERT_TRUE(r.has_error()) << r.DebugString();
  EXPECT_EQ(r.error().code(), api::SESSION_ENDED);
  EXPECT_EQ(r.error().outcome(), api::SHUTDOWN);
  EXPECT_EQ(r.error().message(), "celld is shutting down");
}

// A Stop between turns: the last turn's Done stands, and the worker exits at once.
TEST_F(SessionServerTest, StopBetweenTurnsLeavesTheLastDoneAsItWas) {
  Start();
  ipc::ClientConnection client = AttachClient();
  ASSERT_TRUE(Next(client).has_ready());
  ASSERT_TRUE(client.Send(Generate("x", 3)));
  api::Response r;
  for (r = Next(client); r.has_piece(); r = Next(client)) {
  }
  ASSERT_TRUE(r.has_done());
  EXPECT_EQ(r.done().stop_reason(), api::Done::MAX_TOKENS);
  control::SupervisorMessage stop;
  stop.mutable_stop()->set_reason("the session was killed by its owner");
  stop.mutable_stop()->set_outcome(api::KILLED);
  ASSERT_TRUE(ipc::SendMessage(supervisor_.get(), stop));
  WaitFinished();
  EXPECT_EQ(exit_, WorkerExit::kStopped);
}

TEST_F(SessionServerTest, SupervisorGoneEndsTheWorker) {
  Start();
  supervisor_.reset();
  WaitFinished();
  EXPECT_EQ(exit_, WorkerExit::kSupervisorGone);
}

TEST_F(SessionServerTest, PingIsAnsweredWithItsNonce) {
  Start();
  control::SupervisorMessage ping;
  ping.mutable_ping()->set_nonce(77);
  ASSERT_TRUE(ipc::SendMessage(supervisor_.get(), ping));
  control::WorkerMessage m = NextControl();
  ASSERT_TRUE(m.has_heartbeat());
  EXPECT_EQ(m.heartbeat().nonce(), 77u);
  EXPECT_FALSE(m.heartbeat().attached());
}

TEST_F(SessionServerTest, BadRequestsAreAnsweredAndOversizedFramesDisconnect) {
  config_.max_frame_bytes = 1024;
  Start();
  ipc::ClientConnection client = AttachClient();
  ASSERT_TRUE(Next(client).has_ready());
  // A valid frame holding garbage.
  ASSERT_TRUE(client.SendRaw(std::string("\x03\xff\xff\xff", 4)));
  api::Response r = Next(client);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), api::BAD_REQUEST);
  // A request meant for celld.
  api::Request list;
  list.mutable_list_sessions();
  ASSERT_TRUE(client.Send(list));
  r = Next(client);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), api::BAD_REQUEST);
  // Out-of-range arguments name the field.
  ASSERT_TRUE(client.Send(Generate("x", 51)));
  r = Next(client);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), api::INVALID_ARGUMENT);
  EXPECT_NE(r.error().message().find("max_new_tokens"), std::string::npos);
  // A frame over the limit: an error, then the connection closes.
  ASSERT_TRUE(client.SendRaw(std::string("\xff\x7f", 2)));
  r = Next(client);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), api::FRAME_TOO_LARGE);
  EXPECT_FALSE(client.Receive(2000));
  EXPECT_TRUE(NextControl().has_detached());
}

TEST_F(SessionServerTest, ContextFullIsAnErrorWithItsCode) {
  Start();
  ipc::ClientConnection client = AttachClient();
  ASSERT_TRUE(Next(client).has_ready());
  ASSERT_TRUE(client.Send(Generate(std::string(2000, 'a'), 5)));
  api::Response r = Next(client);
  ASSERT_TRUE(r.has_error());
  EXPECT_EQ(r.error().code(), api::CONTEXT_FULL);
}

TEST_F(SessionServerTest, IdleTimeoutEndsADetachedSession) {
  config_.idle_timeout_ns = 100 * kNanosPerMilli;
  Start();
  WaitFinished();
  EXPECT_EQ(exit_, WorkerExit::kIdleTimeout);
}

TEST_F(SessionServerTest, SlowReaderStallsOnlyItsOwnTurn) {
  config_.max_pending_output = 4096;
  engine_.piece_bytes = 2048;  // 50 tokens: 100 KiB, far beyond socket buffer and backlog
  Start();
  ipc::ClientConnection client = AttachClient(/*reattach=*/false, /*worker_sndbuf=*/4096);
  ASSERT_TRUE(Next(client).has_ready());
  ASSERT_TRUE(client.Send(Generate("x", 50)));
  // The worker may read a ping before the Generate: ping until the turn has begun. The client
  // reads nothing, so from then on the turn cannot finish.
  auto ping = [&](uint64_t nonce) {
    control::SupervisorMessage p;
    p.mutable_ping()->set_nonce(nonce);
    EXPECT_TRUE(ipc::SendMessage(supervisor_.get(), p));
    control::WorkerMessage m = NextControl();
    EXPECT_TRUE(m.has_heartbeat()) << m.DebugString();
    EXPECT_EQ(m.heartbeat().nonce(), nonce);
    return m.heartbeat().generating();
  };
  bool begun = false;
  for (uint64_t nonce = 100; !begun && nonce < 100 + 6000; ++nonce) {
    begun = ping(nonce);
    if (!begun) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  ASSERT_TRUE(begun) << "the turn never began";
  // The worker still answers celld while it waits for the client: paused mid-turn, not finished.
  EXPECT_TRUE(ping(5));
  // Reading now lets the turn finish.
  api::Response r;
  for (r = Next(client); r.has_piece(); r = Next(client)) {
  }
  EXPECT_TRUE(r.has_done());
}

}  // namespace
}  // namespace cellhouse::session
