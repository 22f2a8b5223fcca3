// The gateway over real HTTP with a scripted backend: routes, keys, shapes, streams, limits,
// disconnects, slow readers, conversation reuse. The gateway's loop runs on a thread of its own;
// the test talks to it over TCP only.
#include <netinet/in.h>
#include <sys/socket.h>

#include <atomic>
#include <functional>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "gateway/gateway.h"
#include "gateway/http_server.h"
#include "gateway/keys.h"
#include "tests/gateway/fake_backend.h"
#include "tests/gateway/http_client.h"
#include "tests/support/test_env.h"

namespace cellhouse::gateway {
namespace {

using testing::FakeBackend;
using testing::FakeRecord;
using ::testing::HasSubstr;
using testing::HttpRequestTo;
using testing::HttpResponse;
using testing::SseData;
using ::testing::StartsWith;

class GatewayHttpTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto loop = EventLoop::Create(clock_);
    ASSERT_TRUE(loop);
    loop_ = std::move(*loop);
    backend_ = std::make_unique<FakeBackend>(*loop_);
  }

  void Start(GatewayOptions options = {}, HttpServerOptions http = {}) {
    KeyStore keys;
    Result<NewKey> a = MakeKey("alice", 1);
    Result<NewKey> b = MakeKey("bob", 1);
    ASSERT_TRUE(a && b);
    alice_ = "Bearer " + a->key;
    bob_ = "Bearer " + b->key;
    keys.Add(a->record);
    keys.Add(b->record);
    Result<WebAssets> web = WebAssets::Load(cellhouse::testing::SourceDir() + "/gateway/web");
    ASSERT_TRUE(web) << web.error().message();
    gateway_ = std::make_unique<Gateway>(*loop_, *backend_, std::move(keys), std::move(*web),
                                         std::move(options));
    http_ = std::make_unique<HttpServer>(*loop_, *gateway_, http);
    Result<UniqueFd> listener = ListenTcp("127.0.0.1:0", "--listen");
    ASSERT_TRUE(listener);
    std::string address = SocketAddress(listener->get());
    port_ = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
    ASSERT_TRUE(http_->AddListener(std::move(*listener)));
    thread_ = std::thread([this] {
      while (!stop_) static_cast<void>(loop_->RunOnce(10));
    });
  }

  void TearDown() override {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
    http_.reset();
    gateway_.reset();
    backend_.reset();
  }

  HttpResponse Post(const std::string& path, const std::string& body,
                    testing::HeaderList headers = {}) {
    if (headers.empty()) headers = {{"Authorization", alice_}};
    return HttpRequestTo(port_, "POST", path, headers, body);
  }
  HttpResponse Get(const std::string& path, const testing::HeaderList& headers = {}) {
    return HttpRequestTo(port_, "GET", path, headers);
  }
  static std::string Chat(const std::string& extra = "",
                          const std::string& messages = R"([{"role":"user","content":"hi"}])") {
    return R"({"model":"fake-model","messages":)" + messages + (extra.empty() ? "" : "," + extra) +
           "}";
  }
  static Json Body(const HttpResponse& r) {
    Result<Json> j = ParseJson(r.body);
    EXPECT_TRUE(j) << r.raw;
    return j ? *j : Json();
  }
  bool WaitFor(const std::function<bool(const FakeRecord&)>& done, int timeout_ms = 5000) {
    int64_t deadline = MonotonicNanos() + timeout_ms * kNanosPerMilli;
    while (MonotonicNanos() < deadline) {
      if (done(backend_->Snapshot())) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    return false;
  }

  RealClock clock_;
  std::unique_ptr<EventLoop> loop_;
  std::unique_ptr<FakeBackend> backend_;
  std::unique_ptr<Gateway> gateway_;
  std::unique_ptr<HttpServer> http_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  uint16_t port_ = 0;
  std::string alice_;
  std::string bob_;
};

TEST_F(GatewayHttpTest, HealthAndThePageNeedNoKey) {
  Start();
  HttpResponse health = Get("/health");
  EXPECT_EQ(health.status, 200);
  EXPECT_EQ(health.body, "{\"status\":\"ok\"}\n");
  HttpResponse page = Get("/");
  EXPECT_EQ(page.status, 200);
  EXPECT_THAT(page.headers["content-type"], StartsWith("text/html"));
  EXPECT_THAT(page.headers["content-security-policy"], HasSubstr("default-src 'none'"));
  EXPECT_THAT(page.body, HasSubstr("<script src=\"/app.js\">"));
  EXPECT_EQ(Get("/app.js").status, 200);
  HttpResponse missing = Get("/etc/passwd");
  EXPECT_EQ(missing.status, 404);
  EXPECT_EQ(Body(missing)["error"]["code"], "unknown_url");
  EXPECT_EQ(HttpRequestTo(port_, "DELETE", "/health").status, 405);
}

TEST_F(GatewayHttpTest, TheApiNeedsAValidKey) {
  Start();
  HttpResponse none = Get("/v1/models");
  EXPECT_EQ(none.status, 401);
  EXPECT_EQ(none.headers["www-authenticate"], "Bearer");
  EXPECT_EQ(Body(none)["error"]["code"], "missing_api_key");
  HttpResponse bad = Get("/v1/models", {{"Authorization", "Bearer sk-cell-0123456789abcdef-x"}});
  EXPECT_EQ(bad.status, 401);
  EXPECT_EQ(Body(bad)["error"]["code"], "invalid_api_key");
  EXPECT_EQ(Post("/v1/chat/completions", Chat(), {{"Authorization", "Basic abc"}}).status, 401);
  HttpResponse ok = Get("/v1/models", {{"Authorization", alice_}});
  ASSERT_EQ(ok.status, 200);
  EXPECT_EQ(Body(ok)["data"][0]["id"], "fake-model");
  EXPECT_EQ(Get("/v1/models/fake-model", {{"Authorization", alice_}}).status, 200);
  EXPECT_EQ(Get("/v1/models/other", {{"Authorization", alice_}}).status, 404);
  EXPECT_EQ(backend_->Snapshot().sessions_created, 0);
}

TEST_F(GatewayHttpTest, RefusalsComeBeforeAnySessionIsOpened) {
  Start();
  HttpResponse model = Post("/v1/chat/completions",
                            R"({"model":"nope","messages":[{"role":"user","content":"x"}]})");
  EXPECT_EQ(model.status, 404);
  EXPECT_EQ(Body(model)["error"]["code"], "model_not_found");
  HttpResponse type = Post("/v1/chat/completions", Chat(R"("temperature":"hot")"));
  EXPECT_EQ(type.status, 400);
  EXPECT_EQ(Body(type)["error"]["param"], "temperature");
  HttpResponse json = Post("/v1/chat/completions", "{\"model\": ");
  EXPECT_EQ(json.status, 400);
  EXPECT_THAT(Body(json)["error"]["message"].get<std::string>(), HasSubstr("parse the JSON"));
  HttpResponse penalty = Post("/v1/chat/completions", Chat(R"("frequency_penalty":1)"));
  EXPECT_EQ(penalty.status, 400);
  EXPECT_EQ(Post("/v1/chat/completions", Chat(R"("n":3)")).status, 400);
  EXPECT_EQ(HttpRequestTo(port_, "GET", "/v1/chat/completions", {{"Authorization", alice_}}).status,
            405);
  EXPECT_EQ(backend_->Snapshot().sessions_created, 0);
}

TEST_F(GatewayHttpTest, ANonStreamingChatCompletion) {
  Start();
  HttpResponse r = Post("/v1/chat/completions", Chat(R"("temperature":0,"seed":5)"));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_EQ(r.headers["content-type"], "application/json");
  Json j = Body(r);
  EXPECT_EQ(j["object"], "chat.completion");
  EXPECT_THAT(j["id"].get<std::string>(), StartsWith("chatcmpl-"));
  EXPECT_EQ(j["model"], "fake-model");
  EXPECT_EQ(j["choices"][0]["message"]["role"], "assistant");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello, world");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(j["usage"]["prompt_tokens"], 7);
  EXPECT_EQ(j["usage"]["completion_tokens"], 3);
  EXPECT_EQ(j["usage"]["total_tokens"], 10);
  FakeRecord rec = backend_->Snapshot();
  ASSERT_EQ(rec.turns.size(), 1u);
  EXPECT_EQ(rec.turns[0].sampling.temperature, 0.0);
  EXPECT_EQ(rec.turns[0].sampling.seed, 5u);
  EXPECT_EQ(rec.tenants, std::vector<std::string>{"alice"});
}

TEST_F(GatewayHttpTest, AStreamingChatCompletionIsChunksThenUsageThenDone) {
  backend_->script().reason = TurnDone::Reason::kLength;
  Start();
  HttpResponse r = Post("/v1/chat/completions",
                        Chat(R"("stream":true,"stream_options":{"include_usage":true})"));
  ASSERT_EQ(r.status, 200) << r.raw;
  EXPECT_THAT(r.headers["content-type"], StartsWith("text/event-stream"));
  EXPECT_EQ(r.headers["transfer-encoding"], "chunked");
  std::vector<std::string> events = SseData(r.body);
  ASSERT_EQ(events.size(), 1u + 3u + 1u + 1u + 1u) << r.body;
  EXPECT_EQ(events.back(), "[DONE]");
  std::string id;
  std::string content;
  for (size_t i = 0; i + 1 < events.size(); ++i) {
    Json chunk = *ParseJson(events[i]);
    EXPECT_EQ(chunk["object"], "chat.completion.chunk");
    if (id.empty()) id = chunk["id"];
    EXPECT_EQ(chunk["id"], id);
    if (i + 2 < events.size()) {
      EXPECT_TRUE(chunk["usage"].is_null());
      const Json& delta = chunk["choices"][0]["delta"];
      if (delta.contains("content")) content += delta["content"].get<std::string>();
    }
  }
  Json first = *ParseJson(events[0]);
  EXPECT_EQ(first["choices"][0]["delta"]["role"], "assistant");
  Json finish = *ParseJson(events[4]);
  EXPECT_EQ(finish["choices"][0]["finish_reason"], "length");
  Json usage = *ParseJson(events[5]);
  EXPECT_TRUE(usage["choices"].empty());
  EXPECT_EQ(usage["usage"]["completion_tokens"], 3);
  EXPECT_EQ(content, "Hello, world");
}

TEST_F(GatewayHttpTest, CompletionsStreamAndNot) {
  Start();
  HttpResponse r = Post("/v1/completions", R"({"model":"fake-model","prompt":"Once"})");
  ASSERT_EQ(r.status, 200) << r.raw;
  Json j = Body(r);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_THAT(j["id"].get<std::string>(), StartsWith("cmpl-"));
  EXPECT_EQ(j["choices"][0]["text"], "Hello, world");
  EXPECT_EQ(backend_->Snapshot().turns[0].prompt, "Once");
  EXPECT_EQ(backend_->Snapshot().turns[0].max_tokens, 16u);
  HttpResponse s =
      Post("/v1/completions", R"({"model":"fake-model","prompt":"Once","stream":true})");
  std::vector<std::string> events = SseData(s.body);
  ASSERT_EQ(events.size(), 3u + 1u + 1u);
  EXPECT_EQ((*ParseJson(events[0]))["choices"][0]["text"], "Hello");
  EXPECT_EQ((*ParseJson(events[3]))["choices"][0]["finish_reason"], "stop");
  EXPECT_FALSE((*ParseJson(events[0])).contains("usage"));
}

TEST_F(GatewayHttpTest, ReasoningTextIsReturnedApart) {
  backend_->script().reasoning = {"let me ", "think"};
  Start();
  Json j = Body(Post("/v1/chat/completions", Chat()));
  EXPECT_EQ(j["choices"][0]["message"]["reasoning_content"], "let me think");
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello, world");
  std::vector<std::string> events =
      SseData(Post("/v1/chat/completions", Chat(R"("stream":true)")).body);
  EXPECT_EQ((*ParseJson(events[1]))["choices"][0]["delta"]["reasoning_content"], "let me ");
}

TEST_F(GatewayHttpTest, AStopSequenceEndsTheTextAndCancelsTheGeneration) {
  Start();
  Json j = Body(Post("/v1/chat/completions", Chat(R"("stop":[", w"])")));
  EXPECT_EQ(j["choices"][0]["message"]["content"], "Hello");
  EXPECT_EQ(j["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(backend_->Snapshot().cancels, 1);
}

TEST_F(GatewayHttpTest, AClientLeavingMidStreamCancelsItsGenerationAtOnce) {
  backend_->script().endless = true;
  backend_->script().piece_interval_ms = 5;
  Start();
  {
    UniqueFd fd = testing::ConnectTcp(port_);
    std::string body = Chat(R"("stream":true)");
    std::string request =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + alice_ +
        "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_EQ(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL),
              static_cast<ssize_t>(request.size()));
    char buf[512];
    ASSERT_GT(::read(fd.get(), buf, sizeof(buf)), 0);  // the stream has begun
  }                                                    // closed
  EXPECT_TRUE(WaitFor([](const FakeRecord& r) { return r.abandoned_while_running == 1; }, 3000));
}

TEST_F(GatewayHttpTest, AClientLeavingWhileItsSessionOpensIsNoticedToo) {
  backend_->script().open_delay_ms = 10'000;
  Start();
  {
    UniqueFd fd = testing::ConnectTcp(port_);
    std::string body = Chat();
    std::string request =
        "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + alice_ +
        "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
    ASSERT_GT(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL), 0);
    ASSERT_TRUE(WaitFor([](const FakeRecord& r) { return r.sessions_created == 1; }));
  }
  // Well before the open completes: the suspended connection's hang-up was seen.
  EXPECT_TRUE(WaitFor([](const FakeRecord& r) { return r.sessions_abandoned == 1; }, 3000));
}

TEST_F(GatewayHttpTest, ASlowReaderPausesItsOwnGenerationAndStallsNobodyElse) {
  backend_->script().endless = true;
  backend_->script().pieces = {std::string(16384, 'x')};
  Start(GatewayOptions{.stream_high_water = 64 << 10, .stream_low_water = 16 << 10});
  UniqueFd slow = testing::ConnectTcp(port_);
  int small = 4096;
  ASSERT_EQ(::setsockopt(slow.get(), SOL_SOCKET, SO_RCVBUF, &small, sizeof(small)), 0);
  std::string body = Chat(R"("stream":true)");
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + alice_ +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_GT(::send(slow.get(), request.data(), request.size(), MSG_NOSIGNAL), 0);
  // It never reads: its generation is paused once its buffer is full...
  ASSERT_TRUE(WaitFor([](const FakeRecord& r) { return r.pauses >= 1; }));
  // ...and everyone else is served meanwhile.
  backend_->script();  // (unchanged: other requests stream the same endless pieces)
  for (int i = 0; i < 3; ++i) {
    int64_t start = MonotonicNanos();
    HttpResponse models = Get("/v1/models", {{"Authorization", bob_}});
    EXPECT_EQ(models.status, 200);
    EXPECT_LT(MonotonicNanos() - start, 2 * kNanosPerSecond);
  }
}

TEST_F(GatewayHttpTest, AnAddressOverItsConnectionCapLosesItsOldestIdleConnection) {
  Start({}, HttpServerOptions{.max_connections_per_ip = 2});
  UniqueFd first = testing::ConnectTcp(port_);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  UniqueFd second = testing::ConnectTcp(port_);
  std::this_thread::sleep_for(std::chrono::milliseconds(50));
  // A third from the same address makes room: the oldest idle one is closed, and it is served.
  EXPECT_EQ(Get("/health").status, 200);
  char c;
  EXPECT_EQ(::recv(first.get(), &c, 1, 0), 0);               // closed by the gateway
  EXPECT_EQ(::recv(second.get(), &c, 1, MSG_DONTWAIT), -1);  // still open, nothing to read
}

TEST_F(GatewayHttpTest, AnIncompleteRequestIsCutOffByTheRequestTimeout) {
  Start({}, HttpServerOptions{.request_timeout_ms = 300});
  UniqueFd slow = testing::ConnectTcp(port_);
  std::string partial = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\n";
  ASSERT_GT(::send(slow.get(), partial.data(), partial.size(), MSG_NOSIGNAL), 0);
  char c;
  EXPECT_EQ(::recv(slow.get(), &c, 1, 0), 0);  // closed, without an answer
}

TEST_F(GatewayHttpTest, BodiesOverTheLimitAre413) {
  backend_->limits().max_body_bytes = 2048;
  Start();
  std::string big = Chat("", R"([{"role":"user","content":")" + std::string(4000, 'a') + "\"}]");
  HttpResponse declared = Post("/v1/chat/completions", big);
  EXPECT_EQ(declared.status, 413);
  EXPECT_EQ(Body(declared)["error"]["code"], "request_too_large");
  std::string chunked =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + alice_ +
      "\r\nTransfer-Encoding: chunked\r\n\r\n";
  for (int i = 0; i < 4; ++i) chunked += "400\r\n" + std::string(1024, 'a') + "\r\n";
  chunked += "0\r\n\r\n";
  EXPECT_EQ(testing::RawExchange(port_, chunked).status, 413);
  EXPECT_EQ(backend_->Snapshot().sessions_created, 0);
}

TEST_F(GatewayHttpTest, ATenantOverItsConcurrencyGets429WithRetryAfter) {
  backend_->limits().max_concurrent_requests = 1;
  backend_->script().endless = true;
  backend_->script().piece_interval_ms = 20;
  Start();
  UniqueFd first = testing::ConnectTcp(port_);
  std::string body = Chat(R"("stream":true)");
  std::string request =
      "POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: " + alice_ +
      "\r\nContent-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body;
  ASSERT_GT(::send(first.get(), request.data(), request.size(), MSG_NOSIGNAL), 0);
  ASSERT_TRUE(WaitFor([](const FakeRecord& r) { return !r.turns.empty(); }));
  HttpResponse second = Post("/v1/chat/completions", Chat());
  EXPECT_EQ(second.status, 429);
  EXPECT_EQ(second.headers["retry-after"], "1");
  EXPECT_EQ(Body(second)["error"]["code"], "rate_limit_exceeded");
  // Another tenant is not held back by alice's limit.
  backend_->script().endless = false;
}

TEST_F(GatewayHttpTest, HostAndOriginMustBeConfiguredNames) {
  Start(GatewayOptions{.allowed_hosts = {"chat.example.org", "localhost"}});
  EXPECT_EQ(Get("/", {{"Host", "evil.example:8080"}}).status, 403);
  EXPECT_EQ(Get("/", {{"Host", "chat.example.org:8443"}}).status, 200);
  EXPECT_EQ(Get("/", {{"Host", "LOCALHOST"}}).status, 200);
  HttpResponse origin =
      Get("/v1/models",
          {{"Host", "localhost"}, {"Origin", "http://evil.example"}, {"Authorization", alice_}});
  EXPECT_EQ(origin.status, 403);
  EXPECT_EQ(Body(origin)["error"]["code"], "forbidden_origin");
  EXPECT_EQ(Get("/v1/models", {{"Host", "localhost"},
                               {"Origin", "https://chat.example.org"},
                               {"Authorization", alice_}})
                .status,
            200);
  EXPECT_EQ(Get("/", {{"Host", "127.0.0.1"}}).status, 403);  // not configured here
}

TEST_F(GatewayHttpTest, BackendRefusalsMapToStatuses) {
  backend_->script().open_error = BackendError{BackendError::Kind::kNoCapacity, "full"};
  Start();
  HttpResponse full = Post("/v1/chat/completions", Chat());
  EXPECT_EQ(full.status, 503);
  EXPECT_EQ(full.headers["retry-after"], "1");
  EXPECT_EQ(Body(full)["error"]["message"], "full");
}

TEST_F(GatewayHttpTest, AFailureMidStreamIsAnErrorEventWithoutDone) {
  backend_->script().turn_error = BackendError{BackendError::Kind::kSessionEnded, "worker died"};
  Start();
  HttpResponse r = Post("/v1/chat/completions", Chat(R"("stream":true)"));
  EXPECT_EQ(r.status, 200);
  std::vector<std::string> events = SseData(r.body);
  ASSERT_FALSE(events.empty());
  EXPECT_NE(events.back(), "[DONE]");
  EXPECT_EQ((*ParseJson(events.back()))["error"]["message"], "worker died");
}

TEST_F(GatewayHttpTest, AConversationContinuesOnTheSessionThatHoldsIt) {
  backend_->limits().max_idle_sessions = 2;
  Start();
  ASSERT_EQ(Post("/v1/chat/completions", Chat()).status, 200);
  std::string next =
      R"([{"role":"user","content":"hi"},{"role":"assistant","content":"Hello, world"},
                         {"role":"user","content":"more"}])";
  ASSERT_TRUE(WaitFor([](const FakeRecord& r) { return r.turns.size() == 1; }));
  HttpResponse second = Post("/v1/chat/completions", Chat("", next));
  ASSERT_EQ(second.status, 200);
  FakeRecord rec = backend_->Snapshot();
  ASSERT_EQ(rec.turns.size(), 2u);
  EXPECT_EQ(rec.sessions_created, 1);
  EXPECT_EQ(rec.turn_session_ids[1], rec.turn_session_ids[0]);
  EXPECT_EQ(rec.turns[1].messages_held, 2u);
  EXPECT_EQ(rec.turns[1].messages.size(), 3u);
  // bob sends the very same conversation: never alice's session.
  HttpResponse bob = Post("/v1/chat/completions", Chat("", next), {{"Authorization", bob_}});
  ASSERT_EQ(bob.status, 200);
  rec = backend_->Snapshot();
  EXPECT_EQ(rec.sessions_created, 2);
  EXPECT_EQ(rec.turns[2].messages_held, 0u);
  EXPECT_NE(rec.turn_session_ids[2], rec.turn_session_ids[0]);
}

}  // namespace
}  // namespace cellhouse::gateway
