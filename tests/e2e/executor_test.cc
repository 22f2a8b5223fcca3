// End to end: celld's shared executor on a GGUF model (--shared-executor, its default; =false
// turns it off). Sessions' workers step through the
// model's shared executor (a separate sandboxed process) and generate exactly what the engine
// alone generates; the executor's reports show up in celld's per-policy metrics; a policy that
// exempts itself (shared_executor: false) never reaches it; an executor that is killed costs no
// session anything and is started again.
#include <signal.h>
#include <sys/stat.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "ipc/client.h"
#include "tests/e2e/ops_support.h"
#include "tests/support/celld_fixture.h"
#include "tests/support/celld_harness.h"

namespace cellhouse {
namespace {

using testing::CommandResult;
using testing::PolicySpec;
using testing::RunCellctl;

constexpr const char* kPrompt = "Once upon a time";
constexpr int kTokens = 24;

class SharedExecutorTest : public testing::CelldTest {
 protected:
  void SetUp() override {
    CelldTest::SetUp();
    if (IsSkipped()) return;
    gguf_ = local_.File("tiny-Q8_0.gguf");
    CommandResult convert = testing::RunCommand({testing::BinPath("cellmodel"), "convert", "--in",
                                                 Model(), "--out", gguf_, "--type", "Q8_0"});
    ASSERT_EQ(convert.exit_code, 0) << convert.err;
    ::chmod(gguf_.c_str(), 0644);
    testing::WritePolicy(policies_, PolicySpec{});
    PolicySpec alone;
    alone.name = "alone";
    alone.extra_text = "shared_executor: false\n";
    testing::WritePolicy(policies_, alone);
    PolicySpec heavy;
    heavy.name = "heavy";
    heavy.cpu_weight = 150;
    testing::WritePolicy(policies_, heavy);
    auto port = testing::FreeLoopbackPort();
    ASSERT_TRUE(port);
    port_ = *port;
    std::vector<std::string> args = {"--ctx-size",       "96",
                                     "--metrics-listen", "127.0.0.1:" + std::to_string(port_),
                                     "--pool-size",      std::to_string(pool_size_)};
    if (!executor_flag_.empty()) args.push_back(executor_flag_);
    if (solo_) args.emplace_back("--executor-solo");
    executors_on_ = executor_flag_ != "--shared-executor=false";
    StartCelld({.model = gguf_, .extra_args = args});
    reference_ = testing::EngineReference(gguf_, kPrompt, kTokens, 0.0, 3) + "\n";
    // celld starts the executor after it listens: on a loaded machine the tests may get there
    // first.
    for (int i = 0; i < 100 && executors_on_ && ExecutorPids().empty(); ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
  }

  CommandResult Generate(const std::string& policy) {
    return RunCellctl(celld_->socket(),
                      {"generate", "--policy", policy, "--prompt", kPrompt, "--max-tokens",
                       std::to_string(kTokens), "--temperature", "0"});
  }

  // A counter's value in celld's metrics (0 when absent).
  uint64_t Metric(const std::string& series) {
    auto r = testing::HttpGetTcp(port_, "/metrics");
    if (!r) return 0;
    for (std::string_view line : Split(r->body, '\n')) {
      if (line.substr(0, series.size()) == series && line.size() > series.size() &&
          line[series.size()] == ' ') {
        return std::strtoull(std::string(line.substr(series.size() + 1)).c_str(), nullptr, 10);
      }
    }
    return 0;
  }
  // celld's log and the executor's lines of its metrics page, for a failure's message: which
  // slot events (timed_out, violation...) and exits came before it.
  std::string Diagnosis() {
    std::string out = "\n--- celld's log:\n" + celld_->Log() + "\n--- executor metrics:\n";
    auto r = testing::HttpGetTcp(port_, "/metrics");
    if (!r) return out + "(metrics unreadable: " + r.error().message() + ")\n";
    for (std::string_view line : Split(r->body, '\n')) {
      if (line.starts_with("cellhouse_executor_")) out += std::string(line) + "\n";
    }
    return out;
  }
  // With the model's one executor running, one greedy generate of the default policy gives the
  // engine's own text.
  void GenerateBesideTheExecutor() {
    ASSERT_EQ(ExecutorPids().size(), 1u) << celld_->Log();
    CommandResult r = Generate("default");
    ASSERT_EQ(r.exit_code, 0) << r.err << Diagnosis();
    EXPECT_EQ(r.out, reference_) << Diagnosis();
  }
  // Waits (the executor reports once a second) until the series moves past `above`.
  uint64_t MetricAbove(const std::string& series, uint64_t above) {
    uint64_t v = 0;
    for (int i = 0; i < 60 && (v = Metric(series)) <= above; ++i) {
      std::this_thread::sleep_for(std::chrono::milliseconds(100));
    }
    return v;
  }

  // The CPU weight of `pid`'s cgroup, in cgroup v2's units (v1: cpu.shares * 100 / 1024, which
  // celld writes as weight * 1024 / 100); 0 when it cannot be read.
  static uint64_t CgroupCpuWeight(pid_t pid) {
    for (const std::string& dir : testing::CgroupDirs(pid)) {
      if (auto shares = ReadFileToString(dir + "/cpu.shares", 64)) {
        return std::strtoull(shares->c_str(), nullptr, 10) * 100 / 1024;
      }
      if (auto weight = ReadFileToString(dir + "/cpu.weight", 64)) {
        return std::strtoull(weight->c_str(), nullptr, 10);
      }
    }
    return 0;
  }

  // The pids of the executors celld said it started, in order.
  std::vector<pid_t> ExecutorPids() {
    std::vector<pid_t> pids;
    const std::string marker = "shared executor pid ";
    const std::string log = celld_->Log();
    for (size_t at = log.find(marker); at != std::string::npos; at = log.find(marker, at + 1)) {
      pids.push_back(static_cast<pid_t>(std::atoi(log.c_str() + at + marker.size())));
    }
    return pids;
  }

  // Whether `pid`'s state becomes `state` within 5 s.
  static bool WaitForState(pid_t pid, char state) {
    return testing::PollUntil([pid, state] { return testing::ProcessState(pid) == state; }, 5000);
  }

  // One greedy turn of an open session; its text.
  static std::string Turn(cli::SessionClient& s, const std::string& prompt) {
    api::Generate g;
    g.set_prompt(prompt);
    g.set_max_new_tokens(kTokens);
    g.set_temperature(0);
    std::string text;
    auto done = s.Generate(g, [&text](const api::Piece& p) { text += p.text(); });
    EXPECT_TRUE(done) << done.error().message();
    return text;
  }

  uint32_t pool_size_ = 2;  // celld's default: pool workers per policy
  // How celld is told to run executors (empty: its default, which is on).
  std::string executor_flag_ = "--shared-executor";
  bool executors_on_ = true;  // what executor_flag_ means
  bool solo_ = false;         // --executor-solo: a lone session decodes in its worker
  std::string gguf_;
  uint16_t port_ = 0;
  std::string reference_;
};

TEST_F(SharedExecutorTest, SessionsShareItAndGenerateTheEnginesTokens) {
  ASSERT_EQ(ExecutorPids().size(), 1u) << celld_->Log();
  // It runs contained: its own unprivileged host uid (the block celld holds for it, just past
  // the default policy's range), no_new_privs, its seccomp filter, no capabilities.
  auto status = ReadFileToString("/proc/" + std::to_string(ExecutorPids()[0]) + "/status", 1 << 16);
  ASSERT_TRUE(status) << status.error().message();
  const std::string uid = std::to_string(0x70010000u + 1);
  EXPECT_NE(status->find("Uid:\t" + uid + "\t" + uid + "\t" + uid + "\t" + uid), std::string::npos)
      << *status;
  EXPECT_NE(status->find("NoNewPrivs:\t1"), std::string::npos) << *status;
  EXPECT_NE(status->find("Seccomp:\t2"), std::string::npos) << *status;
  EXPECT_NE(status->find("CapEff:\t0000000000000000"), std::string::npos) << *status;
  // Three sessions at once, so that their rounds meet in the executor's batches.
  std::vector<CommandResult> results(3);
  std::vector<std::thread> threads;
  threads.reserve(results.size());
  for (auto& r : results) threads.emplace_back([&r, this] { r = Generate("default"); });
  for (auto& t : threads) t.join();
  for (const CommandResult& r : results) {
    ASSERT_EQ(r.exit_code, 0) << r.err << celld_->Log();
    EXPECT_EQ(r.out, reference_);
  }
  // Every session's rows went through the executor: prompt and decode rows of every round.
  const uint64_t rows = MetricAbove("cellhouse_executor_rows_total{policy=\"default\"}", 0);
  EXPECT_GE(rows, 3u * kTokens) << celld_->Log();
  // `cellctl sessions` shows what the executor computed for each open session; an exempt
  // policy's session has no slot.
  auto shared = cli::SessionClient::Open(celld_->socket(), {.policy = "default"});
  auto exempt = cli::SessionClient::Open(celld_->socket(), {.policy = "alone"});
  ASSERT_TRUE(shared && exempt);
  EXPECT_EQ(Turn(*shared, kPrompt) + "\n", reference_);
  EXPECT_EQ(Turn(*exempt, kPrompt) + "\n", reference_);
  api::Request list;
  list.mutable_list_sessions();
  bool reported = false;
  for (int i = 0; i < 50 && !reported; ++i) {
    auto reply = cli::AdminRequest(celld_->socket(), list);
    ASSERT_TRUE(reply && reply->has_sessions());
    for (const api::SessionInfo& info : reply->sessions().sessions()) {
      if (info.policy() == "alone") {
        EXPECT_FALSE(info.shared_executor());
        EXPECT_EQ(info.executor_rows(), 0u);
      } else if (info.executor_rows() > 0) {
        EXPECT_TRUE(info.shared_executor());
        EXPECT_GT(info.executor_cpu_nanos(), 0u);
        reported = true;
      }
    }
    if (!reported) std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_TRUE(reported) << "no open session was shown with executor rows";
  // An exempt policy's session computes alone: its tokens are the same, the executor never saw it.
  CommandResult alone = Generate("alone");
  ASSERT_EQ(alone.exit_code, 0) << alone.err;
  EXPECT_EQ(alone.out, reference_);
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_EQ(Metric("cellhouse_executor_rows_total{policy=\"alone\"}"), 0u);
}

// Without pool workers, whose refills (two per policy, "heavy" too) would change the sum at
// moments of their own.
class SharedExecutorWithoutPoolTest : public SharedExecutorTest {
 protected:
  SharedExecutorWithoutPoolTest() { pool_size_ = 0; }
};

// Executors are celld's default: told nothing, it batches a GGUF model's sessions too.
class ExecutorByDefaultTest : public SharedExecutorTest {
 protected:
  ExecutorByDefaultTest() { executor_flag_.clear(); }
};

TEST_F(ExecutorByDefaultTest, ACelldToldNothingRunsTheModelsExecutor) {
  ASSERT_NO_FATAL_FAILURE(GenerateBesideTheExecutor());
  // At least one row per token and round (the tiny model has two layers: three rounds a step);
  // waited for past that, since a report may come mid-generation.
  EXPECT_GE(MetricAbove("cellhouse_executor_rows_total{policy=\"default\"}", 3u * kTokens - 1),
            3u * kTokens)
      << Diagnosis();
}

// --executor-solo: a session that generates alone sends the executor its prompt (its threads)
// but decodes in its own worker, with the same tokens.
class ExecutorSoloTest : public SharedExecutorTest {
 protected:
  ExecutorSoloTest() { solo_ = true; }
};

TEST_F(ExecutorSoloTest, ALoneSessionDecodesInItsWorker) {
  ASSERT_NO_FATAL_FAILURE(GenerateBesideTheExecutor());
  // The prompt's rows, a few tokens in each of the tiny model's three rounds a step, are there;
  // the decode steps, one row a round for each of the kTokens, are not.
  const uint64_t rows = MetricAbove("cellhouse_executor_rows_total{policy=\"default\"}", 0);
  EXPECT_GT(rows, 0u) << Diagnosis();
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));  // a report after the last step
  EXPECT_LT(Metric("cellhouse_executor_rows_total{policy=\"default\"}"), 3u * kTokens)
      << Diagnosis();
}

// --shared-executor=false: no executor starts and every worker computes its own steps, with the
// same tokens.
class ExecutorOffTest : public SharedExecutorTest {
 protected:
  ExecutorOffTest() { executor_flag_ = "--shared-executor=false"; }
};

TEST_F(ExecutorOffTest, NoExecutorStartsAndWorkersComputeAlone) {
  CommandResult r = Generate("default");
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out, reference_);
  auto s = cli::SessionClient::Open(celld_->socket(), {.policy = "default"});
  ASSERT_TRUE(s) << s.error().message();
  EXPECT_EQ(Turn(*s, kPrompt) + "\n", reference_);
  api::Request list;
  list.mutable_list_sessions();
  auto reply = cli::AdminRequest(celld_->socket(), list);
  ASSERT_TRUE(reply && reply->has_sessions());
  ASSERT_GT(reply->sessions().sessions_size(), 0);
  for (const api::SessionInfo& info : reply->sessions().sessions()) {
    EXPECT_FALSE(info.shared_executor());
  }
  std::this_thread::sleep_for(std::chrono::milliseconds(1500));
  EXPECT_TRUE(ExecutorPids().empty()) << celld_->Log();
  // The metrics answer (the sessions above are counted) and no executor row is among them.
  EXPECT_GE(Metric("cellhouse_sessions_started_total{policy=\"default\"}"), 2u);
  EXPECT_EQ(Metric("cellhouse_executor_rows_total{policy=\"default\"}"), 0u);
}

TEST_F(SharedExecutorWithoutPoolTest, ItsCgroupWeighsWhatItsSessionsWeighTogether) {
  ASSERT_EQ(ExecutorPids().size(), 1u) << celld_->Log();
  const pid_t executor = ExecutorPids()[0];
  // Every session it serves adds its policy's CPU weight: 100 for the default policy, 150 for
  // "heavy" (none: the default, 100). The weight's last two digits say whether the heavy session
  // is counted.
  auto weight_mod_100 = [&] { return CgroupCpuWeight(executor) % 100; };
  ASSERT_GT(CgroupCpuWeight(executor), 0u) << "the executor's cgroup CPU weight is unreadable";
  EXPECT_EQ(weight_mod_100(), 0u);
  {
    auto heavy = cli::SessionClient::Open(celld_->socket(), {.policy = "heavy"});
    ASSERT_TRUE(heavy) << heavy.error().message();
    EXPECT_EQ(Turn(*heavy, kPrompt) + "\n", reference_);
    EXPECT_EQ(weight_mod_100(), 50u) << "weight " << CgroupCpuWeight(executor);
    EXPECT_GE(CgroupCpuWeight(executor), 150u);
    ASSERT_TRUE(heavy->Close());
  }
  // Closed: its worker is reaped and its weight taken off.
  uint64_t rest = 50;
  for (int i = 0; i < 50 && (rest = weight_mod_100()) != 0; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  }
  EXPECT_EQ(rest, 0u) << "weight " << CgroupCpuWeight(executor);
}

TEST_F(SharedExecutorTest, AKilledExecutorCostsNoSessionAndIsStartedAgain) {
  std::vector<pid_t> pids = ExecutorPids();
  ASSERT_EQ(pids.size(), 1u) << celld_->Log();
  // A conversation whose worker holds a slot across the kill: its second turn fails over to its
  // own worker, mid-conversation.
  auto held = cli::SessionClient::Open(celld_->socket(), {.policy = "default"});
  ASSERT_TRUE(held) << held.error().message();
  const std::string first = Turn(*held, kPrompt);
  ASSERT_EQ(::kill(pids[0], SIGKILL), 0);
  const std::string second = Turn(*held, " and then");
  for (int i = 0; i < 100 && ExecutorPids().size() < 2; ++i) {
    CommandResult r = Generate("default");
    ASSERT_EQ(r.exit_code, 0) << r.err << celld_->Log();
    EXPECT_EQ(r.out, reference_);
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  pids = ExecutorPids();
  ASSERT_EQ(pids.size(), 2u) << celld_->Log();
  EXPECT_EQ(Metric("cellhouse_executor_exits_total{reason=\"killed\"}"), 1u) << celld_->Log();
  // The new one serves: the rows of the next session reach it (the pool workers made while no
  // executor ran were replaced by ones with a slot). Its conversation, all of it through the new
  // executor, is word for word the one that failed over.
  const uint64_t before = Metric("cellhouse_executor_rows_total{policy=\"default\"}");
  auto fresh = cli::SessionClient::Open(celld_->socket(), {.policy = "default"});
  ASSERT_TRUE(fresh) << fresh.error().message();
  EXPECT_EQ(Turn(*fresh, kPrompt), first);
  EXPECT_EQ(Turn(*fresh, " and then"), second);
  EXPECT_FALSE(second.empty());
  EXPECT_GT(MetricAbove("cellhouse_executor_rows_total{policy=\"default\"}", before), before)
      << celld_->Log();
}

TEST_F(SharedExecutorTest, AStoppedExecutorIsKilledForItsSilenceAndSessionsGoOn) {
  std::vector<pid_t> pids = ExecutorPids();
  ASSERT_EQ(pids.size(), 1u) << celld_->Log();
  // Serving first: its first report (once a second) shows the pool workers' slots attached. An
  // executor stopped within its first tens of milliseconds was twice found running again a second
  // later under ctest -j2, so the test stops one that has been serving, as a wedged one would.
  EXPECT_GT(MetricAbove("cellhouse_executor_slot_events_total{kind=\"attached\"}", 0), 0u)
      << celld_->Log();
  // Stopped (as a wedged one would be): workers waiting on it give up after their response
  // timeout, and celld kills it once it has been silent for kExecutorSilenceNs.
  // Signalled through a pidfd: once celld has killed and reaped it, its pid may be another's.
  // (Not the test's child: held only to signal it, never to reap it.)
  Result<ChildProcess> executor = ChildProcess::FromPid(pids[0]);
  ASSERT_TRUE(executor) << executor.error().message();
  const auto stop = [&executor] { return static_cast<bool>(executor->Kill(SIGSTOP)); };
  ASSERT_TRUE(stop());
  ASSERT_TRUE(WaitForState(pids[0], 'T')) << "the executor did not stop";
  CommandResult r = Generate("default");
  ASSERT_EQ(r.exit_code, 0) << r.err << celld_->Log();
  EXPECT_EQ(r.out, reference_);
  // Under ctest -j2 the stop has not always held: in some full runs (two of four on 2026-12-06)
  // the executor ran again within seconds (it reported a slot attached after the stop) and was
  // never silent. Nothing in cellhouse sends SIGCONT. A likely sender, not caught yet, is the
  // kernel: a process group that becomes orphaned while a member is stopped gets SIGHUP and
  // SIGCONT, every process of the run shares ctest's group, and the executor, init of its PID
  // namespace without a SIGHUP handler, would drop the SIGHUP while SIGCONT resumes it anyway.
  // A wedged executor is not resumed, so the test stops it again whenever it finds it running,
  // until celld kills it (10 s of silence after its last report) and starts the next.
  int restops = 0;
  for (int i = 0; i < 300 && ExecutorPids().size() < 2; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
    const char state = testing::ProcessState(pids[0]);
    if ((state == 'R' || state == 'S') && stop()) ++restops;
  }
  ASSERT_EQ(ExecutorPids().size(), 2u) << "stopped again " << restops << " times\n"
                                       << celld_->Log();
  EXPECT_EQ(Metric("cellhouse_executor_exits_total{reason=\"silent\"}"), 1u) << celld_->Log();
  ASSERT_EQ(Generate("default").out, reference_);
}

}  // namespace
}  // namespace cellhouse
