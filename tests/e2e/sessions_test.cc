// End to end: the real celld, zygote, workers and cellctl, on a generated model.
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "engine/conversation.h"
#include "engine/executor_compute.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/tokenizer.h"
#include "executor/slot_layout.h"
#include "ipc/client.h"
#include "ipc/messages.h"
#include "ipc/unix_socket.h"
#include "policy/choose.h"
#include "tests/support/celld_fixture.h"
#include "worker/zygote/zygote_main.h"

namespace cellhouse {
namespace {

using testing::CelldProcess;
using testing::CommandResult;
using testing::PolicySpec;
using testing::RunCellctl;

constexpr uid_t kTenantA = 4242;
constexpr uid_t kTenantB = 4343;

class E2eTest : public testing::CelldTest {
 protected:
  void SetUp() override {
    CelldTest::SetUp();
    if (IsSkipped()) return;
    PolicySpec base;
    base.uids = {0, kTenantA, kTenantB};
    testing::WritePolicy(policies_, base);
    PolicySpec brief = base;
    brief.name = "brief";
    brief.idle_timeout_seconds = 1;
    testing::WritePolicy(policies_, brief);
  }

  void StartCelld(std::vector<std::string> extra = {}) {
    CelldTest::StartCelld({.extra_args = std::move(extra)});
  }

  // A GGUF model served with celld's shared executor on or off (below).
  void CheckAGgufModelServesAndAdmits(bool executor);

  static api::Generate Request(const std::string& prompt, uint32_t max_tokens, float temperature,
                               uint64_t seed) {
    api::Generate g;
    g.set_prompt(prompt);
    g.set_max_new_tokens(max_tokens);
    g.set_temperature(temperature);
    g.set_seed(seed);
    return g;
  }

  // Generated text of one turn.
  static Result<std::string> Turn(cli::SessionClient& s, const api::Generate& g,
                                  api::Done* done = nullptr) {
    std::string text;
    CH_ASSIGN_OR_RETURN(api::Done d, s.Generate(g, [&](const api::Piece& p) { text += p.text(); }));
    if (done != nullptr) *done = d;
    return text;
  }

  const std::string& model() const { return Model(); }
};

TEST_F(E2eTest, SixteenConcurrentSessionsEachMatchTheEngineAlone) {
  StartCelld();
  constexpr int kSessions = 16;
  std::vector<std::string> expected;
  expected.reserve(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    expected.push_back(testing::EngineReference(model(), "Once upon a time " + std::to_string(i),
                                                40, 0.8, 100 + static_cast<uint64_t>(i)));
  }
  std::vector<std::future<CommandResult>> runs;
  runs.reserve(kSessions);
  for (int i = 0; i < kSessions; ++i) {
    runs.push_back(std::async(std::launch::async, [&, i] {
      return RunCellctl(
          celld_->socket(),
          {"generate", "--prompt", "Once upon a time " + std::to_string(i), "--max-tokens", "40",
           "--temperature", "0.8", "--seed", std::to_string(100 + i)});
    }));
  }
  for (int i = 0; i < kSessions; ++i) {
    CommandResult r = runs[static_cast<size_t>(i)].get();
    ASSERT_EQ(r.exit_code, 0) << r.err;
    ASSERT_FALSE(r.out.empty());
    EXPECT_EQ(r.out.substr(0, r.out.size() - 1), expected[static_cast<size_t>(i)])
        << "session " << i;
  }
}

TEST_F(E2eTest, SecondTurnPrefillsOnlyItsOwnTokensAndMatchesOneEngineConversation) {
  StartCelld();
  auto session = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(session) << session.error().message();
  api::Done first, second;
  auto a = Turn(*session, Request("The little dog", 24, 0.0f, 1), &first);
  ASSERT_TRUE(a) << a.error().message();
  auto b = Turn(*session, Request(" and the cat", 24, 0.7f, 2), &second);
  ASSERT_TRUE(b) << b.error().message();

  // The same two turns through the engine alone, in this process.
  auto engine_model = engine::Model::Open(model());
  ASSERT_TRUE(engine_model);
  auto tok = engine::Tokenizer::Open(model() + ".tokenizer", engine_model->config().vocab_size);
  ASSERT_TRUE(tok);
  auto chat = engine::Conversation::Create(*engine_model, *tok,
                                           static_cast<int32_t>(session->ready().context_length()));
  ASSERT_TRUE(chat);
  std::string ea, eb;
  auto sa = chat->Turn("The little dog", {.max_new_tokens = 24, .temperature = 0.0f, .seed = 1},
                       [&](int32_t, std::string_view p) {
                         ea += p;
                         return true;
                       });
  ASSERT_TRUE(sa);
  auto encoded = tok->Encode(" and the cat", {});
  ASSERT_TRUE(encoded);
  auto sb = chat->Turn(" and the cat", {.max_new_tokens = 24, .temperature = 0.7f, .seed = 2},
                       [&](int32_t, std::string_view p) {
                         eb += p;
                         return true;
                       });
  ASSERT_TRUE(sb);
  EXPECT_EQ(*a, ea);
  EXPECT_EQ(*b, eb);
  // Only the new prompt's tokens (plus the first turn's last sampled token, not yet processed)
  // went through the model: the conversation's earlier state was reused.
  EXPECT_EQ(second.prompt_tokens(), encoded->size());
  EXPECT_EQ(second.context_used(),
            first.context_used() + encoded->size() + second.generated_tokens());
  EXPECT_EQ(second.prompt_tokens(), static_cast<uint32_t>(sb->prompt_tokens));
  EXPECT_EQ(second.context_used(), static_cast<uint32_t>(chat->context_used()));
  EXPECT_TRUE(session->Close());
}

TEST_F(E2eTest, DisconnectMidGenerationThenReattachContinues) {
  StartCelld();
  std::string id, token;
  {
    auto session = cli::SessionClient::Open(celld_->socket(), {});
    ASSERT_TRUE(session) << session.error().message();
    id = session->opened().session_id();
    token = session->opened().token();
    // Start a long turn, read a little of it, then drop the connection.
    int pieces = 0;
    auto done = session->Generate(Request("Tom and Lily", 200, 0.0f, 3), [&](const api::Piece&) {
      if (++pieces == 3) session->Detach();
    });
    EXPECT_FALSE(done);  // the connection went away under the turn
  }
  // The session waits, detached (once celld has heard of the hang-up from the worker).
  std::vector<api::SessionInfo> listed;
  ASSERT_TRUE(testing::PollUntil([&] {
    listed = Sessions();
    return listed.size() == 1 && !listed[0].attached();
  })) << "the session is not listed as detached; listed: "
      << listed.size();
  auto again = cli::SessionClient::Attach(celld_->socket(), id, token);
  ASSERT_TRUE(again) << again.error().message();
  // The prompt (BOS and 4 tokens) and at least the 3 pieces read stayed. (That the turn stops
  // when the client leaves is checked with a slowed engine in session_server_test: this model
  // may finish all 200 tokens before the worker sees the connection close.)
  constexpr uint32_t kPromptTokens = 5;
  EXPECT_GE(again->ready().context_used(), kPromptTokens + 3);
  EXPECT_LE(again->ready().context_used(), kPromptTokens + 200);
  auto more = Turn(*again, Request(" Then", 8, 0.0f, 4));
  ASSERT_TRUE(more) << more.error().message();
  EXPECT_TRUE(again->Close());
}

TEST_F(E2eTest, OnlyTheOwnerMayAttachOrKillAndRootMayKill) {
  StartCelld();
  CommandResult opened = RunCellctl(celld_->socket(), {"--json", "open"}, kTenantA);
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  auto field = [&](const std::string& key) {
    size_t at = opened.out.find("\"" + key + "\":\"");
    EXPECT_NE(at, std::string::npos) << opened.out;
    size_t start = at + key.size() + 4;
    return opened.out.substr(start, opened.out.find('"', start) - start);
  };
  std::string id = field("session_id"), token = field("token");

  // Another uid: the same answer as for a session that does not exist.
  CommandResult attach =
      RunCellctl(celld_->socket(), {"attach", id, "--token", token, "--prompt", "hi"}, kTenantB);
  EXPECT_EQ(attach.exit_code, 1) << attach.err;
  EXPECT_NE(attach.err.find("NOT_FOUND"), std::string::npos) << attach.err;
  CommandResult kill = RunCellctl(celld_->socket(), {"kill", id}, kTenantB);
  EXPECT_EQ(kill.exit_code, 1) << kill.err;
  // Tenant B does not even see it.
  CommandResult list = RunCellctl(celld_->socket(), {"--json", "sessions"}, kTenantB);
  EXPECT_EQ(list.out, "[]\n");
  // The owner, from another connection, may re-attach with the token...
  CommandResult mine = RunCellctl(
      celld_->socket(), {"attach", id, "--token", token, "--prompt", "hello", "--max-tokens", "4"},
      kTenantA);
  EXPECT_EQ(mine.exit_code, 0) << mine.err;
  // ... which closed it. Open another, and kill it as its owner.
  opened = RunCellctl(celld_->socket(), {"--json", "open"}, kTenantA);
  ASSERT_EQ(opened.exit_code, 0);
  id = field("session_id");
  kill = RunCellctl(celld_->socket(), {"kill", id}, kTenantA);
  EXPECT_EQ(kill.exit_code, 0) << kill.err;
  // And root may kill anyone's.
  opened = RunCellctl(celld_->socket(), {"--json", "open"}, kTenantB);
  ASSERT_EQ(opened.exit_code, 0);
  kill = RunCellctl(celld_->socket(), {"kill", field("session_id")});
  EXPECT_EQ(kill.exit_code, 0) << kill.err;
  // Every killed session goes once celld has reaped its worker.
  EXPECT_TRUE(testing::PollUntil([&] { return Sessions().empty(); })) << Sessions().size();
}

TEST_F(E2eTest, KilledSessionTellsItsClientWhy) {
  StartCelld();
  auto session = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(session);
  ASSERT_TRUE(Turn(*session, Request("Once", 8, 0.8f, 5)));
  CommandResult k =
      RunCellctl(celld_->socket(), {"kill", ipc::IdToHex(session->opened().session_id())});
  EXPECT_EQ(k.exit_code, 0) << k.err;
  // The client, attached and idle, reads one clear notice, then the connection closes.
  std::optional<api::Error> why = session->WaitForEnd(5000);
  ASSERT_TRUE(why);
  EXPECT_EQ(why->code(), api::SESSION_ENDED);
  EXPECT_EQ(why->outcome(), api::KILLED);
  EXPECT_EQ(why->message(), "the session was killed by its owner");
  // A request after the end is answered with the same reason, not "broken pipe".
  auto late = session->Generate(Request("x", 2, 0.0f, 1), [](const api::Piece&) {});
  ASSERT_FALSE(late);
  EXPECT_EQ(late.error().message(), "the session was killed by its owner");
}

TEST_F(E2eTest, DetachedSessionEndsAfterItsIdleTimeout) {
  StartCelld();
  CommandResult opened = RunCellctl(celld_->socket(), {"open", "--policy", "brief"});
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  ASSERT_EQ(Sessions().size(), 1u);
  // The policy's idle timeout is 1 s; the log line below says why the session went.
  EXPECT_TRUE(testing::PollUntil([&] { return Sessions().empty(); })) << celld_->Log();
  EXPECT_NE(celld_->Log().find("outcome IDLE_TIMEOUT"), std::string::npos) << celld_->Log();
}

TEST_F(E2eTest, SigtermWithSessionsOpenEndsEveryWorkerAndExitsZero) {
  StartCelld({"--shutdown-grace-ms", "2000"});
  std::vector<cli::SessionClient> open;
  for (int i = 0; i < 3; ++i) {
    auto s = cli::SessionClient::Open(celld_->socket(), {});
    ASSERT_TRUE(s) << s.error().message();
    open.push_back(std::move(*s));
  }
  std::vector<pid_t> workers;
  for (const api::SessionInfo& s : Sessions()) workers.push_back(s.worker_pid());
  ASSERT_EQ(workers.size(), 3u);
  ExitStatus st = celld_->Terminate(15'000);
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld_->Log();
  for (pid_t w : workers) EXPECT_NE(::kill(w, 0), 0) << "worker " << w << " survived";
  // Every client learns why (the worker is gone: celld told it on its copy).
  for (cli::SessionClient& s : open) {
    auto r = s.Generate(Request("x", 4, 0.0f, 1), [](const api::Piece&) {});
    EXPECT_FALSE(r);
  }
  // No cgroup left behind.
  EXPECT_NE(celld_->Log().find("shutdown complete"), std::string::npos);
}

TEST_F(E2eTest, GarbageFromClientsHurtsNobodyElse) {
  StartCelld({"--log-level", "info"});
  std::string expected = testing::EngineReference(model(), "The little dog", 120, 0.0, 9);
  auto good = std::async(std::launch::async, [&] {
    return RunCellctl(celld_->socket(), {"generate", "--prompt", "The little dog", "--max-tokens",
                                         "120", "--temperature", "0", "--seed", "9"});
  });
  std::vector<std::string> garbage = {
      std::string("\x07\x13\x99\xfe\x00\x42\xaa\x55", 8),  // random bytes
      std::string("\xff\xff\xff\xff\x0f", 5),              // a 4 GiB length prefix
      std::string("\x64\x0a\x03", 3),                      // 100 bytes announced, 2 sent
      std::string("\x03\xfa\x06\x00", 4),                  // a field nobody knows
      std::string("\x02\x1a\x00", 3),                      // generate without a session
  };
  std::vector<UniqueFd> silent;
  for (int round = 0; round < 5; ++round) {
    for (const std::string& bytes : garbage) {
      auto c = ipc::ClientConnection::Connect(celld_->socket());
      ASSERT_TRUE(c);
      static_cast<void>(c->SendRaw(bytes));
    }
    auto quiet = ipc::ConnectUnix(celld_->socket());  // opens and never speaks
    ASSERT_TRUE(quiet);
    silent.push_back(std::move(*quiet));
  }
  CommandResult r = good.get();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.size() - 1), expected);
  CommandResult status = RunCellctl(celld_->socket(), {"status"});
  EXPECT_EQ(status.exit_code, 0) << status.err;
  CommandResult again =
      RunCellctl(celld_->socket(), {"generate", "--prompt", "ok", "--max-tokens", "3"});
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

TEST_F(E2eTest, NoLeakedDescriptorsNoZombies) {
  StartCelld({"--log-level", "info"});
  // Warm up once, and let celld finish recording that session's end before counting.
  ASSERT_EQ(
      RunCellctl(celld_->socket(), {"generate", "--prompt", "a", "--max-tokens", "2"}).exit_code,
      0);
  // Settled: no session left, and the descriptor count no longer moving (the pool refilled,
  // the listing's own connection closed).
  ASSERT_TRUE(testing::PollUntil([&] { return Sessions().empty(); }));
  size_t before = 0;
  ASSERT_TRUE(testing::PollUntil([&] {
    size_t now = testing::OpenDescriptors(celld_->pid());
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    before = testing::OpenDescriptors(celld_->pid());
    return now == before;
  }));
  for (int i = 0; i < 12; ++i) {
    CommandResult r =
        RunCellctl(celld_->socket(), {"generate", "--prompt", "b", "--max-tokens", "2"});
    ASSERT_EQ(r.exit_code, 0) << r.err;
  }
  // Opened and abandoned, then killed.
  CommandResult opened = RunCellctl(celld_->socket(), {"--json", "open"});
  ASSERT_EQ(opened.exit_code, 0);
  for (const api::SessionInfo& s : Sessions()) {
    ASSERT_EQ(RunCellctl(celld_->socket(), {"kill", ipc::IdToHex(s.session_id())}).exit_code, 0);
  }
  ASSERT_TRUE(testing::PollUntil([&] { return Sessions().empty(); }));
  // Back to the count it had: a leak never gets there. (Counted without asking for the list in
  // between: that request's own connection is a descriptor.)
  size_t after = 0;
  EXPECT_TRUE(testing::PollUntil([&] {
    after = testing::OpenDescriptors(celld_->pid());
    return after == before;
  })) << after
      << " descriptors, " << before << " before";
  EXPECT_TRUE(Sessions().empty());
  EXPECT_TRUE(testing::ZombieChildren(celld_->pid()).empty());
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

// A pool worker serves exactly one session: consecutive sessions, even of one tenant, never
// share a worker process, and each starts with an empty conversation.
TEST_F(E2eTest, PooledWorkersServeOneSessionEachAndStartEmpty) {
  StartCelld({"--pool-size", "2"});
  std::set<int32_t> workers;
  for (int i = 0; i < 6; ++i) {
    auto s = cli::SessionClient::Open(celld_->socket(), {});
    ASSERT_TRUE(s) << s.error().message();
    EXPECT_EQ(s->ready().context_used(), 0u);
    auto listed = Sessions();
    ASSERT_EQ(listed.size(), 1u);
    EXPECT_TRUE(workers.insert(listed[0].worker_pid()).second) << "worker reused";
    ASSERT_TRUE(Turn(*s, Request("secret " + std::to_string(i), 4, 0.0f, 1)));
    ASSERT_TRUE(s->Close());
    // The closed session is listed until celld has reaped its worker; the next one must be
    // the only one listed.
    ASSERT_TRUE(testing::PollUntil([&] { return Sessions().empty(); }));
    // Give the pool a moment to refill, so that the next open is likely served from it.
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_NE(celld_->Log().find("(pooled)"), std::string::npos);
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

// A celld that cannot start (here: another one serves its socket) exits 1 and leaves nothing
// behind: no zygote, no cgroup subtree in any hierarchy.
TEST_F(E2eTest, AFailedStartLeavesNoCgroupBehind) {
  StartCelld();
  std::string subtree = "e2e-failed-" + std::to_string(::getpid());
  CommandResult second = testing::RunCommand({testing::BinPath("celld"), "--model", model(),
                                              "--socket", celld_->socket(), "--policy-dir",
                                              policies_, "--cgroup-subtree", subtree});
  EXPECT_EQ(second.exit_code, 1) << second.err;
  EXPECT_NE(second.err.find("another server is listening"), std::string::npos) << second.err;
  // Our own cgroup in every hierarchy, from /proc/self/cgroup ("ID:controllers:/path").
  auto self = ReadFileToString("/proc/self/cgroup", 1 << 16);
  ASSERT_TRUE(self);
  for (std::string_view line : Split(*self, '\n')) {
    auto fields = Split(line, ':');
    if (fields.size() != 3 || fields[1].empty() || StartsWith(fields[1], "name=")) continue;
    std::string controller(Split(fields[1], ',')[0]);
    std::string dir = "/sys/fs/cgroup/";
    dir += controller;
    dir += fields[2];
    dir += "/" + subtree;
    EXPECT_NE(::access(dir.c_str(), F_OK), 0) << "left behind: " << dir;
  }
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

TEST_F(E2eTest, ChatFromAPipeHoldsOneConversationAcrossTurns) {
  StartCelld();
  CommandResult r =
      RunCellctl(celld_->socket(), {"chat", "--max-tokens", "8", "--temperature", "0", "--stats"},
                 std::nullopt, "Once upon a time\n\n/ignored? no\nThe end\n");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  // Three turns (the empty line is skipped), each reported, each adding to one context.
  size_t turns = 0, last_context = 0;
  for (std::string_view line : Split(r.err, '\n')) {
    size_t at = line.find("context ");
    if (line.empty() || line[0] != '[' || at == std::string_view::npos) continue;
    auto context = ParseUint64(line.substr(at + 8, line.find(',', at) - at - 8), "context");
    ASSERT_TRUE(context) << line;
    EXPECT_GT(*context, last_context);
    last_context = *context;
    ++turns;
  }
  EXPECT_EQ(turns, 3u) << r.err;
}

// celld --model FILE.gguf: the zygote maps and checks the GGUF file (here the tiny model converted
// by `cellmodel convert`, as a user would bring one), sessions generate what the engine alone
// generates, and admission reserves the session's fp16 cache for the context celld was told,
// plus, when its worker steps through the model's shared executor (celld's default), its slot.
void E2eTest::CheckAGgufModelServesAndAdmits(bool executor) {
  const std::string gguf = local_.File("tiny-Q8_0.gguf");
  CommandResult convert = testing::RunCommand(
      {testing::BinPath("cellmodel"), "convert", "--in", model(), "--out", gguf, "--type", "Q8_0"});
  ASSERT_EQ(convert.exit_code, 0) << convert.err;
  ::chmod(gguf.c_str(), 0644);
  constexpr int32_t kContext = 96;
  std::vector<std::string> args = {"--ctx-size", std::to_string(kContext)};
  if (!executor) args.emplace_back("--shared-executor=false");
  CelldTest::StartCelld({.model = gguf, .extra_args = args});
  const std::string expected = testing::EngineReference(gguf, "Once upon a time", 24, 0.0, 3);
  CommandResult r = RunCellctl(celld_->socket(), {"generate", "--prompt", "Once upon a time",
                                                  "--max-tokens", "24", "--temperature", "0"});
  ASSERT_EQ(r.exit_code, 0) << r.err << celld_->Log();
  ASSERT_FALSE(r.out.empty());
  EXPECT_EQ(r.out.substr(0, r.out.size() - 1), expected);

  Result<engine::Model> m = engine::Model::Open(gguf, {.max_context = kContext});
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->kv_precision(), engine::KvPrecision::kF16);
  api::Request status;
  status.mutable_status();
  // The default policy's context is the model's, capped by --ctx-size. The generate's session
  // is released once its worker is reaped, a moment after cellctl returns; a pool worker holds
  // no reservation. The slot is the zygote's shape for the model (worker/zygote/zygote_main.h).
  const uint64_t slot = executor ? executor::SlotBytes(engine::GgufSlotShape(
                                       m->config(), zygote_runtime::kExecutorChunkRows))
                                 : 0;
  const uint64_t one_session =
      engine::StateFixedBytes(m->config()) +
      kContext * engine::KvCacheBytesPerToken(m->config(), engine::KvPrecision::kF16) +
      policy::kDefaultWorkerOverheadBytes + slot;
  auto s = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(s) << s.error().message();
  Result<api::Response> reply = Error("no status yet");
  for (int i = 0; i < 100; ++i) {
    reply = cli::AdminRequest(celld_->socket(), status);
    ASSERT_TRUE(reply && reply->has_status());
    if (reply->status().memory_committed_bytes() == one_session) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  EXPECT_NE(reply->status().model().find("gguf llama"), std::string::npos)
      << reply->status().model();
  EXPECT_EQ(reply->status().memory_committed_bytes(), one_session) << "slot " << slot;
}

TEST_F(E2eTest, AGgufModelServesSessionsAndAdmissionCountsItsCache) {
  CheckAGgufModelServesAndAdmits(/*executor=*/false);
}

TEST_F(E2eTest, AGgufSessionSharingTheExecutorIsAlsoChargedItsSlot) {
  CheckAGgufModelServesAndAdmits(/*executor=*/true);
}

TEST_F(E2eTest, AdmissionRefusalsSayWhichLimit) {
  PolicySpec two;
  two.name = "two";
  two.max_sessions = 4;
  two.max_sessions_per_tenant = 2;
  testing::WritePolicy(policies_, two);
  StartCelld();
  std::vector<cli::SessionClient> held;
  for (int i = 0; i < 2; ++i) {
    auto s = cli::SessionClient::Open(celld_->socket(), {.policy = "two"});
    ASSERT_TRUE(s) << s.error().message();
    held.push_back(std::move(*s));
  }
  std::optional<api::Error> refusal;
  auto third = cli::SessionClient::Open(celld_->socket(), {.policy = "two"}, &refusal);
  ASSERT_FALSE(third);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->code(), api::TENANT_LIMIT);
  EXPECT_NE(refusal->message().find("already has 2 sessions"), std::string::npos)
      << refusal->message();
  std::printf("refusal: %s\n", refusal->message().c_str());
  // Another uid still gets in under the same policy's overall cap.
  CommandResult other =
      RunCellctl(celld_->socket(),
                 {"generate", "--policy", "two", "--prompt", "hi", "--max-tokens", "2"}, kTenantA);
  EXPECT_EQ(other.exit_code, 1) << "uid 4242 is not in policy 'two'";
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

// celld killed outright: its workers die with it (PR_SET_PDEATHSIG), and the next celld on the
// same cgroup subtree removes what the dead one left before it serves anyone.
TEST_F(E2eTest, AfterACrashWorkersAreGoneAndTheSuccessorCleansUp) {
  std::string subtree = "e2e-crash-" + std::to_string(::getpid());
  CelldTest::StartCelld({.subtree = subtree});
  std::vector<cli::SessionClient> open;
  for (int i = 0; i < 2; ++i) {
    auto s = cli::SessionClient::Open(celld_->socket(), {});
    ASSERT_TRUE(s);
    open.push_back(std::move(*s));
  }
  std::vector<pid_t> workers;
  std::vector<std::string> ids;
  for (const api::SessionInfo& s : Sessions()) {
    workers.push_back(s.worker_pid());
    ids.push_back(ipc::IdToHex(s.session_id()));
  }
  ASSERT_EQ(workers.size(), 2u);
  celld_->Crash();
  // Gone means not running: an orphaned zombie waits for whoever reaps orphans here.
  auto running = [](pid_t pid) {
    const char state = testing::ProcessState(pid);
    return state != '?' && state != 'Z';
  };
  for (pid_t w : workers) {
    EXPECT_TRUE(testing::PollUntil([&] { return !running(w); }))
        << "worker " << w << " outlived celld";
  }
  // The dead celld's session cgroups are still there (named by number, never by id)...
  auto left = [&] {
    std::vector<std::string> found;
    for (const std::string& dir : testing::CgroupSubtreeDirs(subtree)) {
      const std::string sessions_dir = dir + "/sessions";
      auto sessions = ListDirectory(sessions_dir);
      if (!sessions) continue;
      for (const std::string& name : *sessions) {
        std::string path = sessions_dir;
        path += "/";
        path += name;
        if (ListDirectory(path)) found.push_back(path);
        for (const std::string& id : ids) EXPECT_EQ(name.find(id), std::string::npos) << name;
      }
    }
    return found;
  };
  std::vector<std::string> dead = left();
  EXPECT_FALSE(dead.empty());
  auto inode = [](const std::string& path) -> ino_t {
    struct stat st {};
    return ::stat(path.c_str(), &st) == 0 ? st.st_ino : 0;
  };
  std::vector<ino_t> dead_inodes;
  dead_inodes.reserve(dead.size());
  for (const std::string& dir : dead) dead_inodes.push_back(inode(dir));
  // ... until its successor starts on the same subtree. (Its own pool workers' cgroups may take
  // the same numbers: what must be gone is the dead one's directories.)
  CelldTest::StartCelld({.subtree = subtree});
  EXPECT_NE(celld_->Log().find("left by a previous celld"), std::string::npos) << celld_->Log();
  for (size_t i = 0; i < dead.size(); ++i) {
    EXPECT_NE(inode(dead[i]), dead_inodes[i]) << dead[i] << " is still the dead celld's";
  }
}

}  // namespace
}  // namespace cellhouse
