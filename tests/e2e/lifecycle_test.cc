// How sessions end when their client does not end them, end to end: a request refused for its
// parameters closes its session, a dropped client's session waits only its detached grace for a
// re-attach, a generation cut off by celld's shutdown is reported as such (cellctl exits 4), and
// a chat says how to re-attach to it.
#include <fcntl.h>
#include <signal.h>
#include <unistd.h>

#include <chrono>
#include <future>
#include <regex>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::CommandResult;
using testing::PolicySpec;
using testing::RunCellctl;

constexpr uid_t kTenant = 4242;

class LifecycleTest : public testing::CelldTest {
 protected:
  // Sessions of `uid`, as root sees them.
  size_t SessionsOf(uid_t uid) {
    size_t n = 0;
    for (const api::SessionInfo& s : Sessions()) n += s.tenant_uid() == uid ? 1 : 0;
    return n;
  }
  // Waits up to timeout_ms (a bound on a hang: the log says why a session ended) for `uid` to
  // hold `n` sessions.
  bool WaitForSessions(uid_t uid, size_t n, int timeout_ms) {
    int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * kNanosPerMilli;
    while (MonotonicNanos() < deadline) {
      if (SessionsOf(uid) == n) return true;
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
    }
    return SessionsOf(uid) == n;
  }
};

// `cellctl generate --max-tokens 500` over a policy limit of 16: refused, and the session it
// opened is closed at once. Before, two of these locked a tenant with a quota of two out for the
// whole idle timeout.
TEST_F(LifecycleTest, ARequestRefusedForItsParametersClosesItsSession) {
  PolicySpec policy;
  policy.uids = {0, kTenant};
  policy.max_new_tokens = 16;
  policy.max_sessions_per_tenant = 2;
  policy.idle_timeout_seconds = 600;
  testing::WritePolicy(policies_, policy);
  StartCelld({});
  for (int i = 0; i < 3; ++i) {
    CommandResult r = RunCellctl(celld_->socket(),
                                 {"generate", "--prompt", "hello", "--max-tokens", "500"}, kTenant);
    EXPECT_EQ(r.exit_code, 1) << r.err;
    EXPECT_NE(r.err.find("INVALID_ARGUMENT"), std::string::npos) << r.err;
    EXPECT_NE(r.err.find("between 1 and 16"), std::string::npos) << r.err;
  }
  EXPECT_TRUE(WaitForSessions(kTenant, 0, 60'000)) << SessionsOf(kTenant) << " left";
  // The quota is free: both slots.
  for (int i = 0; i < 2; ++i) {
    CommandResult ok = RunCellctl(celld_->socket(), {"open"}, kTenant);
    EXPECT_EQ(ok.exit_code, 0) << ok.err;
  }
  EXPECT_EQ(SessionsOf(kTenant), 2u);
}

// A client that went away holds its slot for the detached grace (here 2 s), not the idle timeout
// (10 minutes): within the grace `cellctl attach` continues the session, after it the slot is
// free again.
TEST_F(LifecycleTest, ADetachedSessionWaitsItsGraceForAReattachThenEnds) {
  PolicySpec policy;
  policy.uids = {0, kTenant};
  policy.max_sessions_per_tenant = 1;
  policy.idle_timeout_seconds = 600;
  policy.detached_grace_seconds = 2;
  testing::WritePolicy(policies_, policy);
  StartCelld({});
  auto field = [](const std::string& json, const std::string& key) {
    std::smatch m;
    std::regex re("\"" + key + "\":\"?([0-9a-f]+)\"?");
    return std::regex_search(json, m, re) ? m[1].str() : std::string();
  };
  // Within the grace: re-attached, and the conversation goes on.
  CommandResult opened = RunCellctl(celld_->socket(), {"--json", "open"}, kTenant);
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  EXPECT_EQ(field(opened.out, "detached_grace_ms"), "2000") << opened.out;
  CommandResult attach =
      RunCellctl(celld_->socket(),
                 {"attach", field(opened.out, "session_id"), "--token", field(opened.out, "token"),
                  "--prompt", "hi", "--max-tokens", "4"},
                 kTenant);
  EXPECT_EQ(attach.exit_code, 0) << attach.err;
  EXPECT_TRUE(WaitForSessions(kTenant, 0, 60'000));  // attach --prompt closed it

  // Past the grace: ended, and the slot is free for another session.
  opened = RunCellctl(celld_->socket(), {"--json", "open"}, kTenant);
  ASSERT_EQ(opened.exit_code, 0) << opened.err;
  EXPECT_NE(opened.err.find("re-attach within 2s"), std::string::npos) << opened.err;
  CommandResult refused = RunCellctl(celld_->socket(), {"open"}, kTenant);
  EXPECT_EQ(refused.exit_code, 1) << "the quota of one is taken";
  EXPECT_TRUE(WaitForSessions(kTenant, 0, 60'000)) << "the detached session outlived its grace";
  EXPECT_NE(celld_->Log().find("nobody re-attached within the session's detached grace of 2 s"),
            std::string::npos)
      << celld_->Log();
  CommandResult late = RunCellctl(
      celld_->socket(),
      {"attach", field(opened.out, "session_id"), "--token", field(opened.out, "token")}, kTenant);
  EXPECT_EQ(late.exit_code, 1);
  CommandResult again = RunCellctl(celld_->socket(), {"open"}, kTenant);
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

// celld stops while a generation runs longer than --shutdown-grace-ms: the client gets
// SESSION_ENDED ("celld is shutting down"), not a Done as if it had cancelled, and cellctl exits
// 4, as the README promises for a session that ended under it.
TEST_F(LifecycleTest, AGenerationCutOffByShutdownExitsFour) {
  testing::WritePolicy(policies_, PolicySpec{});
  StartCelld({.zygote = testing::BinPath("cell-zygote-probe"),
              .extra_args = {"--shutdown-grace-ms", "300"}});
  // 200 pieces, 50 ms apart: ten seconds, far past the grace.
  auto running = std::async(std::launch::async, [&] {
    return RunCellctl(celld_->socket(),
                      {"generate", "--prompt", "probe:slow:200:50", "--max-tokens", "200"});
  });
  // Once it streams, stop celld.
  bool generating = testing::PollUntil([&] {
    bool attached = false;
    for (const api::SessionInfo& s : Sessions()) attached |= s.attached();
    return attached;
  });
  ASSERT_TRUE(generating);
  std::this_thread::sleep_for(std::chrono::milliseconds(200));
  ExitStatus st = celld_->Terminate(15'000);
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld_->Log();
  CommandResult r = running.get();
  EXPECT_EQ(r.exit_code, 4) << r.err;
  EXPECT_NE(r.err.find("celld is shutting down"), std::string::npos) << r.err;
  EXPECT_NE(r.err.find("[SESSION_ENDED]"), std::string::npos) << r.err;
  EXPECT_NE(r.out.find("s s s"), std::string::npos) << "no piece streamed before the stop";
}

// `cellctl chat` says how to re-attach (on stderr, first), and that works after its connection is
// lost mid-conversation.
TEST_F(LifecycleTest, AChatPrintsItsReattachTokenAndCanBeReattached) {
  PolicySpec policy;
  policy.uids = {0, kTenant};
  testing::WritePolicy(policies_, policy);
  StartCelld({});
  // A chat that has said one line and waits for the next, its stderr in a file.
  auto in = MakePipe();
  ASSERT_TRUE(in);
  std::string err_path = local_.File("chat.err");
  UniqueFd err(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  UniqueFd out(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  ASSERT_TRUE(err.valid() && out.valid());
  auto chat = SpawnProgram({.argv = {"/usr/bin/setpriv", "--reuid=" + std::to_string(kTenant),
                                     "--regid=" + std::to_string(kTenant), "--clear-groups", "--",
                                     testing::BinPath("cellctl"), "--socket", celld_->socket(),
                                     "chat", "--max-tokens", "4"},
                            .fds = {{0, in->first.get()}, {1, out.get()}, {2, err.get()}}});
  ASSERT_TRUE(chat) << chat.error().message();
  in->first.reset();
  ASSERT_TRUE(WriteFull(in->second.get(), std::string_view("Once upon a time\n"), "chat input"));
  std::smatch m;
  std::string text;
  std::regex attach_line("cellctl attach ([0-9a-f]+) --token ([0-9a-f]+)");
  testing::PollUntil([&] {
    auto read = ReadFileToString(err_path, 1 << 20);
    text = read ? *read : "";
    return std::regex_search(text, m, attach_line);
  });
  ASSERT_TRUE(std::regex_search(text, m, attach_line)) << text;
  const std::string id = m[1].str(), token = m[2].str();
  EXPECT_NE(text.find("continue within 60s"), std::string::npos) << text;
  // The turn is done when the session reports a context in use.
  bool turned = testing::PollUntil([&] {
    bool used = false;
    for (const api::SessionInfo& s : Sessions()) used |= s.context_used() > 0;
    return used;
  });
  EXPECT_TRUE(turned);
  // The connection is lost (the terminal went away).
  ASSERT_TRUE(chat->Kill(SIGKILL));
  static_cast<void>(chat->Wait());
  in->second.reset();
  CommandResult again = RunCellctl(
      celld_->socket(),
      {"attach", id, "--token", token, "--prompt", " The end", "--max-tokens", "4"}, kTenant);
  EXPECT_EQ(again.exit_code, 0) << again.err;
}

}  // namespace
}  // namespace cellhouse
