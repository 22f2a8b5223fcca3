// cellgate against a real celld: the completions route matches the engine token for token,
// streams equal non-streamed answers, errors have their statuses, a client that leaves cancels
// its generation, hostile HTTP gets clear 4xx answers, and all of it from a confined process
// (NoNewPrivs 1, Seccomp 2, CapEff 0, an unprivileged uid).
#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <chrono>
#include <memory>
#include <string>
#include <thread>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/strings.h"
#include "gateway/http_server.h"
#include "gateway/json.h"
#include "tests/gateway/gateway_process.h"
#include "tests/gateway/http_client.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse::gateway {
namespace {

using ::testing::HasSubstr;
using testing::HttpRequestTo;
using testing::HttpResponse;
using testing::RawExchange;
using testing::SseData;
using ::testing::StartsWith;

constexpr uid_t kNobody = 65534;

class GatewayE2eTest : public cellhouse::testing::CelldTest {
 protected:
  // celld with a policy for root and the gateway's user, then cellgate as that user.
  void StartBoth(cellhouse::testing::PolicySpec policy = {},
                 const std::vector<std::string>& gateway_args = {}, const std::string& model = "",
                 const std::vector<std::string>& celld_args = {}) {
    // cellgate (uid nobody) must reach celld's socket in the test's directory.
    ASSERT_EQ(::chmod(local_.path().c_str(), 0755), 0);
    policy.uids = {0, kNobody};
    if (policy.max_new_tokens == 0) policy.max_new_tokens = 200;
    cellhouse::testing::WritePolicy(policies_, policy);
    cellhouse::testing::CelldOptions options;
    if (!model.empty()) options.model = model;
    // The test models carry no chat template of their own: chat turns render with ChatML.
    // cellgate runs as nobody: celld takes its tenants from that uid only.
    options.extra_args = {"--chat-template", "chatml", "--gateway-user", std::to_string(kNobody)};
    options.extra_args.insert(options.extra_args.end(), celld_args.begin(), celld_args.end());
    StartCelld(options);
    keys_ = local_.File("keys");
    key_ = testing::AddKey(keys_, "alice");
    // Readable by the gateway's user for reloads, as root:cellgate 0640 is in production.
    ASSERT_EQ(::chmod(keys_.c_str(), 0644), 0);
    auto gate = testing::GatewayProcess::Start(
        local_, {.celld_socket = celld_->socket(), .keys = keys_, .extra_args = gateway_args});
    ASSERT_TRUE(gate) << gate.error().message();
    gate_ = std::move(*gate);
  }

  void TearDown() override {
    if (gate_ != nullptr) {
      ExitStatus st = gate_->Terminate();
      EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << gate_->Log();
    }
    CelldTest::TearDown();
  }

  HttpResponse Post(const std::string& path, const std::string& body, const std::string& key = "") {
    return HttpRequestTo(gate_->port(), "POST", path,
                         {{"Authorization", "Bearer " + (key.empty() ? key_ : key)}}, body);
  }
  static Json Body(const HttpResponse& r) {
    Result<Json> j = ParseJson(r.body);
    EXPECT_TRUE(j) << r.raw;
    return j ? *j : Json();
  }

  // Closing a session is asynchronous: the worker acknowledges, then celld reaps it.
  bool NoSessionsWithin(int timeout_ms) {
    int64_t deadline = MonotonicNanos() + timeout_ms * kNanosPerMilli;
    while (!Sessions().empty()) {
      if (MonotonicNanos() > deadline) return false;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return true;
  }

  std::string keys_;
  std::string key_;
  std::unique_ptr<testing::GatewayProcess> gate_;
};

TEST_F(GatewayE2eTest, ItServesConfinedAsItsOwnUnprivilegedUser) {
  StartBoth();
  Result<std::string> status =
      ReadFileToString("/proc/" + std::to_string(gate_->pid()) + "/status", 1 << 16);
  ASSERT_TRUE(status);
  EXPECT_THAT(*status, HasSubstr("NoNewPrivs:\t1\n"));
  EXPECT_THAT(*status, HasSubstr("Seccomp:\t2\n"));
  EXPECT_THAT(*status, HasSubstr("CapEff:\t0000000000000000\n"));
  EXPECT_THAT(*status, HasSubstr("CapPrm:\t0000000000000000\n"));
  EXPECT_THAT(*status, HasSubstr("CapBnd:\t0000000000000000\n"));
  EXPECT_THAT(*status, HasSubstr("Uid:\t65534\t65534\t65534\t65534\n"));
  // ...and still serves, through celld.
  HttpResponse r =
      Post("/v1/completions", R"({"model":"cellhouse","prompt":"Once","max_tokens":4})");
  EXPECT_EQ(r.status, 200) << r.raw << gate_->Log();
}

TEST_F(GatewayE2eTest, CompletionsMatchTheEngineStreamedOrNot) {
  StartBoth();
  std::string expected = cellhouse::testing::EngineReference(Model(), "The little dog", 40, 0.0, 9);
  HttpResponse r =
      Post("/v1/completions", R"({"model":"cellhouse","prompt":"The little dog","max_tokens":40,)"
                              R"("temperature":0,"seed":9})");
  ASSERT_EQ(r.status, 200) << r.raw;
  Json j = Body(r);
  EXPECT_EQ(j["object"], "text_completion");
  EXPECT_EQ(j["model"], "cellhouse");
  EXPECT_EQ(j["choices"][0]["text"], expected);
  EXPECT_EQ(j["choices"][0]["finish_reason"], "length");
  EXPECT_EQ(j["usage"]["completion_tokens"], 40);
  EXPECT_GT(j["usage"]["prompt_tokens"].get<int>(), 0);

  HttpResponse s =
      Post("/v1/completions", R"({"model":"cellhouse","prompt":"The little dog","max_tokens":40,)"
                              R"("temperature":0,"seed":9,"stream":true,)"
                              R"("stream_options":{"include_usage":true}})");
  ASSERT_EQ(s.status, 200);
  std::vector<std::string> events = SseData(s.body);
  ASSERT_GE(events.size(), 3u);
  EXPECT_EQ(events.back(), "[DONE]");
  std::string text;
  for (size_t i = 0; i + 2 < events.size(); ++i) {
    text += (*ParseJson(events[i]))["choices"][0]["text"].get<std::string>();
  }
  EXPECT_EQ(text, expected);
  Json usage = *ParseJson(events[events.size() - 2]);
  EXPECT_EQ(usage["usage"], j["usage"]);
}

TEST_F(GatewayE2eTest, ChatTurnsContinueOnTheirSessionFromItsCache) {
  StartBoth({}, {"--max-idle-sessions", "2"});
  HttpResponse first = Post("/v1/chat/completions",
                            R"({"model":"cellhouse","messages":[{"role":"user","content":"Hi"}],)"
                            R"("max_tokens":8,"temperature":0})");
  ASSERT_EQ(first.status, 200) << first.raw;
  Json j = Body(first);
  EXPECT_EQ(j["object"], "chat.completion");
  std::string reply = j["choices"][0]["message"]["content"];
  EXPECT_FALSE(reply.empty());
  Json next = Json::object();
  next["model"] = "cellhouse";
  next["max_tokens"] = 8;
  next["temperature"] = 0;
  next["messages"] = Json::array({Json{{"role", "user"}, {"content", "Hi"}},
                                  Json{{"role", "assistant"}, {"content", reply}},
                                  Json{{"role", "user"}, {"content", "More"}}});
  HttpResponse second = Post("/v1/chat/completions", DumpJson(next));
  ASSERT_EQ(second.status, 200) << second.raw;
  // The worker rendered the whole conversation and evaluated only what its cache lacked.
  Json usage = Body(second)["usage"];
  EXPECT_GT(usage["prompt_tokens_details"]["cached_tokens"].get<uint32_t>(), 0u) << usage;
  EXPECT_LT(usage["prompt_tokens_details"]["cached_tokens"].get<uint32_t>(),
            usage["prompt_tokens"].get<uint32_t>());
  // A stop string ends the reply before it, with finish_reason "stop".
  next["stop"] = Json::array({reply.substr(0, 1)});
  next["messages"] = Json::array({Json{{"role", "user"}, {"content", "Hi"}}});
  HttpResponse stopped = Post("/v1/chat/completions", DumpJson(next));
  ASSERT_EQ(stopped.status, 200) << stopped.raw;
  EXPECT_EQ(Body(stopped)["choices"][0]["finish_reason"], "stop");
  EXPECT_EQ(Body(stopped)["choices"][0]["message"]["content"], "");
  // Sessions served the turns and stay, idle, for the next.
  std::vector<api::SessionInfo> sessions = Sessions();
  ASSERT_GE(sessions.size(), 1u);
  EXPECT_EQ(sessions[0].tenant_uid(), kNobody);
  EXPECT_EQ(sessions[0].tenant(), "alice");  // the key's tenant, as celld keys the session
}

TEST_F(GatewayE2eTest, ErrorsHaveTheirStatusesAndShapes) {
  StartBoth({.max_new_tokens = 20});
  HttpResponse models =
      HttpRequestTo(gate_->port(), "GET", "/v1/models", {{"Authorization", "Bearer " + key_}});
  ASSERT_EQ(models.status, 200);
  EXPECT_EQ(Body(models)["data"][0]["id"], "cellhouse");
  HttpResponse bad_key = Post("/v1/completions", R"({"model":"cellhouse","prompt":"x"})",
                              "sk-cell-0000000000000000-nope");
  EXPECT_EQ(bad_key.status, 401);
  EXPECT_EQ(Body(bad_key)["error"]["code"], "invalid_api_key");
  HttpResponse model = Post("/v1/completions", R"({"model":"gpt-9","prompt":"x"})");
  EXPECT_EQ(model.status, 404);
  HttpResponse param = Post("/v1/completions", R"({"model":"cellhouse","prompt":"x","top_p":7})");
  EXPECT_EQ(param.status, 400);
  EXPECT_EQ(Body(param)["error"]["param"], "top_p");
  // Over the policy's max_new_tokens: celld refuses it (the gateway learns the limit from the
  // first session and refuses later ones itself).
  HttpResponse over =
      Post("/v1/completions", R"({"model":"cellhouse","prompt":"x","max_tokens":50})");
  EXPECT_EQ(over.status, 400) << over.raw;
  HttpResponse again =
      Post("/v1/completions", R"({"model":"cellhouse","prompt":"x","max_tokens":50})");
  EXPECT_EQ(again.status, 400);
  EXPECT_EQ(Body(again)["error"]["param"], "max_tokens");
  EXPECT_THAT(Body(again)["error"]["message"].get<std::string>(), HasSubstr("limit of 20"));
  EXPECT_TRUE(NoSessionsWithin(10'000));  // refused requests leave no session behind
}

// A loopback port nobody listens on now (for celld's metrics).
uint16_t FreePort() {
  UniqueFd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof(addr);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&addr), sizeof(addr)) != 0 ||
      ::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&addr), &len) != 0) {
    return 0;
  }
  return ntohs(addr.sin_port);
}

// celld's cellhouse_tokens_generated_total for the default policy, from its metrics listener.
double TokensGenerated(uint16_t metrics_port) {
  HttpResponse r = HttpRequestTo(metrics_port, "GET", "/metrics", {});
  const std::string key = "cellhouse_tokens_generated_total{policy=\"default\"} ";
  size_t at = r.body.find(key);
  return at == std::string::npos ? -1 : std::stod(r.body.substr(at + key.size()));
}

TEST_F(GatewayE2eTest, AClientThatLeavesCancelsItsGenerationAtOnce) {
  // A model slow enough to be caught mid-generation.
  std::string slow = cellhouse::testing::GenerateModel(local_, "15m", 3);
  uint16_t metrics = FreePort();
  ASSERT_NE(metrics, 0);
  StartBoth({.max_new_tokens = 240}, {"--log-level", "debug"}, slow,
            {"--metrics-listen", "127.0.0.1:" + std::to_string(metrics)});
  std::string body = R"({"model":"cellhouse","prompt":"Once","max_tokens":240,"temperature":0)";
  int64_t start = MonotonicNanos();
  ASSERT_EQ(Post("/v1/completions", body + "}").status, 200);
  int64_t full = MonotonicNanos() - start;
  ASSERT_TRUE(NoSessionsWithin(10'000));
  double uncancelled = TokensGenerated(metrics);
  ASSERT_GT(uncancelled, 100);
  {
    UniqueFd fd = testing::ConnectTcp(gate_->port());
    std::string streamed = body + R"(,"stream":true})";
    std::string request =
        "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nAuthorization: Bearer " + key_ +
        "\r\nContent-Length: " + std::to_string(streamed.size()) + "\r\n\r\n" + streamed;
    ASSERT_GT(::send(fd.get(), request.data(), request.size(), MSG_NOSIGNAL), 0);
    char buf[256];
    ASSERT_GT(::read(fd.get(), buf, sizeof(buf)), 0);
    start = MonotonicNanos();
    ::shutdown(fd.get(), SHUT_RDWR);
  }
  EXPECT_TRUE(NoSessionsWithin(30'000));
  int64_t cancelled = MonotonicNanos() - start;
  // The worker stopped well before the end the same request reached when left to run: counted
  // in tokens, not time, so a loaded machine does not matter.
  double after_cancel = TokensGenerated(metrics) - uncancelled;
  EXPECT_GE(after_cancel, 1) << "the cancelled generation reported no tokens";
  EXPECT_LT(after_cancel, uncancelled / 2)
      << "full " << full / kNanosPerMilli << " ms, cancelled after " << cancelled / kNanosPerMilli
      << " ms\n"
      << gate_->Log();
  EXPECT_THAT(celld_->Log(), HasSubstr("outcome CLOSED"));
}

TEST_F(GatewayE2eTest, HostileHttpGetsClearRefusalsAndTheGatewayStaysUp) {
  StartBoth({}, {"--request-timeout-ms", "1500"});
  uint16_t port = gate_->port();
  std::string auth = "Authorization: Bearer " + key_ + "\r\n";
  // Malformed request lines: an unknown version is 505, a missing Host 400; a line without a
  // version (or a TLS hello) is closed at once by libmicrohttpd without an answer.
  EXPECT_EQ(RawExchange(port, "GET /health HTTP/9.9\r\nHost: x\r\n\r\n").status, 505);
  EXPECT_EQ(RawExchange(port, "GET /health HTTP/1.1\r\n\r\n").status, 400);
  EXPECT_EQ(RawExchange(port, "GET /health HTTP/1.1\r\nHost: x\r\nBad Header\r\n\r\n").status, 400);
  for (const char* line :
       {"GARBAGE\r\n\r\n", "GET\r\n\r\n", "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"}) {
    HttpResponse r = RawExchange(port, line);
    EXPECT_TRUE(r.status == 0 || r.status >= 400) << r.raw;
  }
  // Headers larger than the gateway's header memory.
  HttpResponse huge = RawExchange(port, "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Big: " +
                                            std::string(100000, 'a') + "\r\n\r\n");
  EXPECT_TRUE(huge.status == 431 || huge.status == 413 || huge.status == 400) << huge.raw;
  // A body longer than declared: the declared part is the request, the rest is garbage.
  std::string body = R"({"model":"cellhouse","prompt":"x","max_tokens":2})";
  HttpResponse longer =
      RawExchange(port, "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                            "Content-Length: " + std::to_string(body.size()) + "\r\n\r\n" + body +
                            "TRAILING GARBAGE\r\n\r\n");
  EXPECT_EQ(longer.status, 200) << longer.raw;
  EXPECT_THAT(longer.raw, HasSubstr("HTTP/1.1 400"));
  // A body shorter than declared waits, then the request times out: closed without a reply.
  HttpResponse shorter = RawExchange(port,
                                     "POST /v1/completions HTTP/1.1\r\nHost: 127.0.0.1\r\n" + auth +
                                         "Content-Length: 1000\r\n\r\n{\"model\"",
                                     8000);
  EXPECT_NE(shorter.status, 200);
  // JSON bombs, numbers, invalid UTF-8.
  for (const std::string& bad : std::vector<std::string>{
           std::string(5000, '[') + std::string(5000, ']'),
           R"({"model":"cellhouse","prompt":"x","max_tokens":1e999})",
           R"({"model":"cellhouse","prompt":"x","max_tokens":)" + std::string(5000, '9') + "}",
           std::string("{\"model\":\"cellhouse\",\"prompt\":\"\xff\xfe\"}"),
           std::string("{\"model\":\"cellhouse\",\"prompt\":\"x\"}\xc3")}) {
    HttpResponse r = Post("/v1/completions", bad);
    EXPECT_EQ(r.status, 400) << bad.substr(0, 60) << "\n" << r.raw;
    EXPECT_EQ(Body(r)["error"]["type"], "invalid_request_error");
  }
  // Slowloris: headers a byte at a time are cut off by the request timeout, while others are
  // served.
  UniqueFd slow = testing::ConnectTcp(port);
  std::string partial = "GET /health HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Slow: ";
  ASSERT_GT(::send(slow.get(), partial.data(), partial.size(), MSG_NOSIGNAL), 0);
  int64_t start = MonotonicNanos();
  bool closed = false;
  while (MonotonicNanos() - start < 10 * kNanosPerSecond) {
    EXPECT_EQ(HttpRequestTo(port, "GET", "/health").status, 200);
    if (::send(slow.get(), "a", 1, MSG_NOSIGNAL) < 0) {
      closed = true;
      break;
    }
    char c;
    if (::recv(slow.get(), &c, 1, MSG_DONTWAIT) == 0) {
      closed = true;
      break;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
  }
  EXPECT_TRUE(closed) << "a slowloris connection stayed open";
  EXPECT_TRUE(gate_->running());
  EXPECT_EQ(HttpRequestTo(port, "GET", "/health").status, 200);
}

TEST_F(GatewayE2eTest, KeysAreReloadedOnSighup) {
  StartBoth();
  std::string bob = testing::AddKey(keys_, "bob");
  ASSERT_EQ(::chmod(keys_.c_str(), 0644), 0);  // key add writes a new 0640 file
  auto models = [&](const std::string& key) {
    return HttpRequestTo(gate_->port(), "GET", "/v1/models", {{"Authorization", "Bearer " + key}})
        .status;
  };
  EXPECT_EQ(models(bob), 401);
  ASSERT_TRUE(gate_->Signal(SIGHUP));
  int64_t deadline = MonotonicNanos() + 10 * kNanosPerSecond;
  while (models(bob) != 200 && MonotonicNanos() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(models(bob), 200) << gate_->Log();
  cellhouse::testing::CommandResult removed =
      cellhouse::testing::RunCommand({cellhouse::testing::BinPath("cellgate"), "key", "remove",
                                      "--keys", keys_, "--tenant", "bob"});
  ASSERT_EQ(removed.exit_code, 0) << removed.err;
  ASSERT_EQ(::chmod(keys_.c_str(), 0644), 0);
  ASSERT_TRUE(gate_->Signal(SIGHUP));
  deadline = MonotonicNanos() + 10 * kNanosPerSecond;
  while (models(bob) != 401 && MonotonicNanos() < deadline) {
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  EXPECT_EQ(models(bob), 401);
  EXPECT_EQ(models(key_), 200);
  EXPECT_THAT(gate_->Log(), HasSubstr("reloaded 1 key(s)"));
}

TEST_F(GatewayE2eTest, MetricsAreOnTheLoopbackAdminListener) {
  StartBoth();
  ASSERT_EQ(
      Post("/v1/completions", R"({"model":"cellhouse","prompt":"x","max_tokens":3,"stream":true})")
          .status,
      200);
  HttpResponse m = HttpRequestTo(gate_->metrics_port(), "GET", "/metrics");
  ASSERT_EQ(m.status, 200);
  EXPECT_THAT(
      m.body,
      HasSubstr("cellhouse_gateway_requests_total{route=\"completions\",status=\"200\"} 1"));
  EXPECT_THAT(m.body, HasSubstr("cellhouse_gateway_time_to_first_token_seconds_count 1"));
  EXPECT_THAT(m.body, HasSubstr("cellhouse_gateway_inter_token_latency_seconds_count 2"));
  EXPECT_THAT(m.body, HasSubstr("cellhouse_gateway_active_streams 0"));
}

TEST_F(GatewayE2eTest, ItServesTheSocketSystemdPasses) {
  // A free port: bound and released (systemd-socket-activate binds it again at once).
  uint16_t port = 0;
  {
    Result<UniqueFd> probe = ListenTcp("127.0.0.1:0", "probe");
    ASSERT_TRUE(probe);
    std::string address = SocketAddress(probe->get());
    port = static_cast<uint16_t>(std::stoi(address.substr(address.rfind(':') + 1)));
  }
  std::string listen = "127.0.0.1:" + std::to_string(port);
  StartBoth({}, {},
            "");  // a first gateway on --listen, for the fixture; the one under test follows
  auto activated = testing::GatewayProcess::Start(
      local_, {.celld_socket = celld_->socket(),
               .keys = keys_,
               .prefix = {"/usr/bin/systemd-socket-activate", "-l", listen, "--fdname=http"},
               .activated_port = port});
  ASSERT_TRUE(activated) << activated.error().message();
  // Started by this first connection, served on the socket it was passed.
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  HttpResponse r =
      HttpRequestTo(port, "POST", "/v1/completions", {{"Authorization", "Bearer " + key_}},
                    R"({"model":"cellhouse","prompt":"x","max_tokens":3})");
  EXPECT_EQ(r.status, 200) << r.raw << (*activated)->Log();
  EXPECT_THAT((*activated)->Log(), HasSubstr("serving HTTP on " + listen));
  EXPECT_TRUE((*activated)->Terminate().Success());
}

TEST_F(GatewayE2eTest, AsRootWithoutUserItRefusesToServe) {
  ASSERT_EQ(::chmod(local_.path().c_str(), 0755), 0);
  cellhouse::testing::WritePolicy(policies_, {});
  StartCelld({});
  std::string keys = local_.File("keys");
  testing::AddKey(keys, "alice");
  auto gate = testing::GatewayProcess::Start(
      local_, {.celld_socket = celld_->socket(), .keys = keys, .user = ""});
  ASSERT_FALSE(gate);
  EXPECT_THAT(gate.error().message(), HasSubstr("needs --user"));
}

}  // namespace
}  // namespace cellhouse::gateway

namespace cellhouse::gateway {
namespace {

// The JavaScript side: the official openai client and a headless Chromium (tools/setup.sh
// installs both: Debian's chromium and nodejs, then `npm ci` in tests/gateway/js).
std::string JsDir() { return cellhouse::testing::SourceDir() + "/tests/gateway/js"; }

bool JsInstalled() {
  return ::access((JsDir() + "/node_modules/openai/package.json").c_str(), R_OK) == 0 &&
         ::access((JsDir() + "/node_modules/puppeteer-core/package.json").c_str(), R_OK) == 0 &&
         ::access("/usr/bin/node", X_OK) == 0;
}

TEST_F(GatewayE2eTest, TheOfficialOpenAiClientConforms) {
  if (!JsInstalled()) {
    GTEST_SKIP() << "node or tests/gateway/js/node_modules missing: run tools/setup.sh";
  }
  StartBoth();
  cellhouse::testing::CommandResult r = cellhouse::testing::RunCommand(
      {"/usr/bin/node", JsDir() + "/conformance.mjs",
       "http://127.0.0.1:" + std::to_string(gate_->port()) + "/v1", key_});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << gate_->Log();
  EXPECT_THAT(r.out, HasSubstr("8 checks passed"));
}

TEST_F(GatewayE2eTest, TheChatPageStreamsAReplyInHeadlessChromium) {
  if (!JsInstalled() || ::access("/usr/bin/chromium", X_OK) != 0) {
    GTEST_SKIP() << "chromium, node or tests/gateway/js/node_modules missing: run tools/setup.sh";
  }
  StartBoth({.max_new_tokens = 60});
  std::string shot = local_.File("chat.png");
  cellhouse::testing::CommandResult r = cellhouse::testing::RunCommand(
      {"/usr/bin/node", JsDir() + "/browser.mjs",
       "http://127.0.0.1:" + std::to_string(gate_->port()), key_, shot},
      "", std::nullopt, 180'000);
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err << gate_->Log();
  struct stat st {};
  EXPECT_EQ(::stat(shot.c_str(), &st), 0);
  EXPECT_GT(st.st_size, 1000);
}

}  // namespace
}  // namespace cellhouse::gateway
