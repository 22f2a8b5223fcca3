// Containment end to end: a test-only probe zygote (tests/e2e/probe) runs escape attempts and
// resource probes inside real sandboxed workers started by a real celld, and the typed outcome
// celld reports is checked. Needs root (celld makes namespaces and cgroups); runs in CI.
#include <sys/resource.h>
#include <unistd.h>

#include <future>
#include <map>
#include <set>
#include <thread>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "ipc/messages.h"
#include "tests/e2e/probe/attacks.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::CelldProcess;
using testing::CommandResult;
using testing::PolicySpec;

class ContainmentTest : public testing::CelldTest {
 protected:
  void Start(std::vector<std::string> prefix = {}) {
    StartCelld({.zygote = testing::BinPath("cell-zygote-probe"), .prefix = std::move(prefix)});
  }

  struct ProbeResult {
    std::string text;                 // what the probe reported, when it survived
    std::optional<api::Error> ended;  // celld's notice, when the session ended under it
  };
  ProbeResult Probe(const std::string& policy, const std::string& prompt) {
    ProbeResult result;
    std::optional<api::Error> refusal;
    auto session = cli::SessionClient::Open(celld_->socket(), {.policy = policy}, &refusal);
    EXPECT_TRUE(session) << session.error().message();
    if (!session) return result;
    api::Generate g;
    g.set_prompt(prompt);
    g.set_max_new_tokens(1);
    auto done = session->Generate(g, [&](const api::Piece& p) { result.text += p.text(); });
    if (!done) {
      result.ended = session->last_error();
      if (!result.ended) result.ended = session->WaitForEnd(5000);
      return result;
    }
    EXPECT_TRUE(session->Close());
    return result;
  }

  const std::string& model() const { return Model(); }
};

// Every attack under the shipped default allow-list: the worker is killed for the exact system
// call, and celld tells the client, by name, that the sandbox stopped it.
TEST_F(ContainmentTest, EscapeBatteryEveryAttemptIsStoppedAndReportedByName) {
  testing::WritePolicy(policies_, PolicySpec{});
  Start();
  auto attacks = probe::Attacks();
  ASSERT_GE(attacks.size(), 30u);
  // Several at once: each runs in its own session, as it would in the field.
  std::vector<std::future<ProbeResult>> running;
  for (const probe::Attack& a : attacks) {
    running.push_back(std::async(std::launch::async, [this, &a] {
      return Probe("default", "probe:attack:" + std::string(a.name));
    }));
  }
  for (size_t i = 0; i < attacks.size(); ++i) {
    const probe::Attack& a = attacks[i];
    ProbeResult r = running[i].get();
    ASSERT_TRUE(r.ended) << a.name << " was not stopped: the worker reported '" << r.text << "'";
    EXPECT_EQ(r.ended->code(), api::SESSION_ENDED) << a.name;
    EXPECT_EQ(r.ended->outcome(), api::SECCOMP_VIOLATION) << a.name << ": " << r.ended->message();
    EXPECT_EQ(r.ended->message(), "the sandbox stopped the session: forbidden system call '" +
                                      std::string(a.syscall) + "'")
        << a.name;
  }
  // celld counted and logged each by name, and is still serving.
  EXPECT_NE(celld_->Log().find("outcome SECCOMP_VIOLATION"), std::string::npos);
  ProbeResult ok = Probe("default", "Once upon a time");
  EXPECT_FALSE(ok.ended) << (ok.ended ? ok.ended->message() : "");
}

// With the calls allowed by the filter, the other layers still refuse them: the empty root,
// the missing capabilities, the unprivileged ids and the namespaces.
TEST_F(ContainmentTest, LayersBeneathSeccompHoldWhenTheFilterAllowsTheCalls) {
  PolicySpec permissive;
  permissive.name = "permissive";
  permissive.extra_allow = {"openat", "socket",      "connect",    "mount",     "chroot",
                            "setuid", "sethostname", "mknodat",    "prlimit64", "fchmodat",
                            "kill",   "ptrace",      "pivot_root", "umount2"};
  testing::WritePolicy(policies_, permissive);
  Start();
  const std::map<std::string, std::set<std::string>> expected = {
      {"open_file", {"ENOENT"}},          // nothing in the root
      {"write_proc_self", {"ENOENT"}},    // no /proc
      {"connect_celld", {"ENOENT"}},      // celld's socket is not in the worker's world
      {"connect_inet", {"ENETUNREACH"}},  // an empty network namespace
      {"mount", {"EPERM"}},               // no CAP_SYS_ADMIN
      {"umount2", {"EPERM"}},
      {"pivot_root", {"EPERM"}},
      {"chroot", {"EPERM"}},          // no CAP_SYS_CHROOT
      {"setuid_root", {"EPERM"}},     // no CAP_SETUID
      {"sethostname", {"EPERM"}},     // no CAP_SYS_ADMIN
      {"mknod", {"EPERM", "EROFS"}},  // no CAP_MKNOD, read-only root
      {"raise_rlimit", {"EPERM"}},    // no CAP_SYS_RESOURCE
      {"chmod_root", {"EPERM", "EROFS"}},
      {"kill_outside", {"ESRCH"}},  // its own pid namespace has no pid 2
      {"ptrace", {"EPERM"}},        // pid 1 is itself
  };
  for (const auto& [attack, errnos] : expected) {
    ProbeResult r = Probe("permissive", "probe:attack:" + attack);
    ASSERT_FALSE(r.ended) << attack << ": " << r.ended->message();
    std::string got = r.text.substr(r.text.find(": ") + 2);
    EXPECT_TRUE(errnos.count(got) == 1) << attack << " gave " << got;
  }
}

TEST_F(ContainmentTest, LiveWorkerAsSeenFromOutside) {
  testing::WritePolicy(policies_, PolicySpec{});
  Start();
  std::vector<cli::SessionClient> open;
  for (int i = 0; i < 2; ++i) {
    auto s = cli::SessionClient::Open(celld_->socket(), {});
    ASSERT_TRUE(s);
    open.push_back(std::move(*s));
  }
  std::set<uint32_t> host_uids;
  for (const api::SessionInfo& s : Sessions()) {
    std::string pid = std::to_string(s.worker_pid());
    auto status = ReadFileToString("/proc/" + pid + "/status", 1 << 16);
    ASSERT_TRUE(status);
    for (const char* line : {"Seccomp:\t2\n", "NoNewPrivs:\t1\n", "CapInh:\t0000000000000000\n",
                             "CapPrm:\t0000000000000000\n", "CapEff:\t0000000000000000\n",
                             "CapBnd:\t0000000000000000\n", "CapAmb:\t0000000000000000\n"}) {
      EXPECT_NE(status->find(line), std::string::npos) << line << " in\n" << *status;
    }
    std::string uid_line = "Uid:\t" + std::to_string(s.host_uid()) + "\t";
    EXPECT_NE(status->find(uid_line), std::string::npos) << *status;
    EXPECT_NE(s.host_uid(), 0u);
    host_uids.insert(s.host_uid());
    for (const char* ns : {"user", "pid", "mnt", "uts", "ipc", "net"}) {
      char mine[64] = {}, theirs[64] = {};
      std::string celld_ns = "/proc/" + std::to_string(celld_->pid()) + "/ns/" + ns;
      std::string worker_ns = "/proc/" + pid + "/ns/" + ns;
      ASSERT_GT(readlink(celld_ns.c_str(), mine, sizeof(mine) - 1), 0);
      ASSERT_GT(readlink(worker_ns.c_str(), theirs, sizeof(theirs) - 1), 0);
      EXPECT_STRNE(mine, theirs) << ns;
    }
    auto root = ListDirectory("/proc/" + pid + "/root");
    ASSERT_TRUE(root);
    EXPECT_TRUE(root->empty());
  }
  EXPECT_EQ(host_uids.size(), 2u);  // distinct per live session
}

// A memory bomb is OOM-killed inside its own cgroup and reported as such, while a neighbour
// finishes byte for byte as it would alone.
TEST_F(ContainmentTest, MemoryBombIsOomKilledWhileItsNeighbourFinishesUnharmed) {
  PolicySpec small;
  small.name = "small";
  small.memory_max = 64ull << 20;
  testing::WritePolicy(policies_, small);
  testing::WritePolicy(policies_, PolicySpec{});
  Start();
  std::string expected = testing::EngineReference(model(), "Tom and Lily", 200, 0.0, 3);
  auto neighbour = std::async(std::launch::async, [&] {
    return testing::RunCellctl(celld_->socket(), {"generate", "--prompt", "Tom and Lily",
                                                  "--max-tokens", "200", "--temperature", "0"});
  });
  ProbeResult bomb = Probe("small", "probe:memory-bomb");
  ASSERT_TRUE(bomb.ended);
  EXPECT_EQ(bomb.ended->outcome(), api::OOM_KILLED) << bomb.ended->message();
  EXPECT_EQ(bomb.ended->message(), "memory limit exceeded (limit 64 MiB)");
  CommandResult r = neighbour.get();
  ASSERT_EQ(r.exit_code, 0) << r.err;
  EXPECT_EQ(r.out.substr(0, r.out.size() - 1), expected);
}

TEST_F(ContainmentTest, PidsLimitStopsAFork) {
  PolicySpec one;
  one.name = "one";
  one.pids_max = 1;
  one.extra_allow = {"clone", "wait4"};
  // RLIMIT_NPROC defaults to 1 (the worker alone) and would stop the fork by itself; lift it so
  // the cgroup's pids.max is what is tested.
  one.extra_text = "rlimits { resource: NPROC soft: 16 hard: 16 }\n";
  PolicySpec two = one;
  two.name = "two";
  two.pids_max = 2;
  testing::WritePolicy(policies_, one);
  testing::WritePolicy(policies_, two);
  Start();
  EXPECT_EQ(Probe("one", "probe:fork").text, "fork: EAGAIN");
  EXPECT_EQ(Probe("two", "probe:fork").text, "fork: ok");  // the control: the probe can fork
}

TEST_F(ContainmentTest, NprocRlimitStopsAForkOnItsOwn) {
  PolicySpec spec;
  spec.name = "nproc";
  spec.pids_max = 64;
  spec.extra_allow = {"clone", "wait4"};
  testing::WritePolicy(policies_, spec);
  Start();
  // The default RLIMIT_NPROC of 1 counts the worker's own (per-session) host uid.
  EXPECT_EQ(Probe("nproc", "probe:fork").text, "fork: EAGAIN");
}

// Two busy sessions on one CPU with cpu weights 1:3 get about 1:3 of it, by the cgroups' own
// accounting.
TEST_F(ContainmentTest, CpuWeightsOneToThreeGiveAboutOneToThreeCpuTime) {
  PolicySpec light, heavy;
  light.name = "light";
  light.cpu_weight = 100;
  heavy.name = "heavy";
  heavy.cpu_weight = 300;
  testing::WritePolicy(policies_, light);
  testing::WritePolicy(policies_, heavy);
  Start({"/usr/bin/taskset", "-c", "0"});  // celld, the zygote and every worker share CPU 0
  auto a = cli::SessionClient::Open(celld_->socket(), {.policy = "light"});
  auto b = cli::SessionClient::Open(celld_->socket(), {.policy = "heavy"});
  ASSERT_TRUE(a && b);
  api::Generate spin;
  spin.set_prompt("probe:spin:3000");
  spin.set_max_new_tokens(1);
  auto run = [&](cli::SessionClient& s) {
    return std::async(std::launch::async,
                      [&s, &spin] { return s.Generate(spin, [](const api::Piece&) {}); });
  };
  auto fa = run(*a);
  auto fb = run(*b);
  ASSERT_TRUE(fa.get());
  ASSERT_TRUE(fb.get());
  std::map<std::string, uint64_t> cpu;
  for (const api::SessionInfo& s : Sessions()) cpu[s.policy()] = s.cpu_nanos();
  ASSERT_GT(cpu["light"], 0u);
  double ratio = static_cast<double>(cpu["heavy"]) / static_cast<double>(cpu["light"]);
  std::printf("cpu time heavy/light = %.2f (%.2f s / %.2f s)\n", ratio,
              static_cast<double>(cpu["heavy"]) / 1e9, static_cast<double>(cpu["light"]) / 1e9);
  EXPECT_GT(ratio, 2.0);
  EXPECT_LT(ratio, 4.5);
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

// celld believes nothing a worker says about itself: a worker that lies about its usage, floods
// its control channel or stops answering is killed, the client is told why, and every other
// session carries on.
TEST_F(ContainmentTest, WorkersThatLieFloodOrHangAreKilledAndNamed) {
  PolicySpec talker;
  talker.name = "talker";
  talker.extra_allow = {"getsockopt"};  // so the probe can find its control channel
  testing::WritePolicy(policies_, talker);
  testing::WritePolicy(policies_, PolicySpec{});
  StartCelld({.zygote = testing::BinPath("cell-zygote-probe"),
              .extra_args = {"--worker-timeout-ms", "1500"}});
  const std::map<std::string, api::SessionOutcome> expected = {
      {"probe:lie", api::PROTOCOL_VIOLATION},
      {"probe:flood", api::PROTOCOL_VIOLATION},
      {"probe:hang", api::UNRESPONSIVE},
  };
  for (const auto& [prompt, outcome] : expected) {
    ProbeResult r = Probe("talker", prompt);
    ASSERT_TRUE(r.ended) << prompt << " survived: " << r.text;
    EXPECT_EQ(r.ended->outcome(), outcome) << prompt << ": " << r.ended->message();
  }
  // celld is fine and so is a session next to them.
  ProbeResult ok = Probe("default", "Once upon a time");
  EXPECT_FALSE(ok.ended) << (ok.ended ? ok.ended->message() : "");
  EXPECT_EQ(testing::RunCellctl(celld_->socket(), {"status"}).exit_code, 0);
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

// A GPU share without a GPU: an inventory file names a stand-in device node (/dev/null). A
// worker with a share sees that node in its otherwise empty root and gets the CUDA variables;
// one without a share sees neither; a second share that does not fit is refused by admission.
TEST_F(ContainmentTest, GpuShareGivesItsWorkerTheDeviceAndEnvironmentAndNothingElse) {
  ASSERT_TRUE(CreateFileWithContent(
      local_.File("gpus"), "0 | GPU-0000feed-0000-4000-8000-00000000beef | fake | 8G | /dev/null\n",
      0644));
  PolicySpec gpu;
  gpu.name = "gpu";
  gpu.extra_text = "gpu { compute_fraction: 0.75 device_memory_bytes: 4294967296 }\n";
  testing::WritePolicy(policies_, gpu);
  testing::WritePolicy(policies_, PolicySpec{});
  StartCelld({.zygote = testing::BinPath("cell-zygote-probe"),
              .extra_args = {"--gpu-inventory", local_.File("gpus")}});
  auto with = cli::SessionClient::Open(celld_->socket(), {.policy = "gpu"});
  ASSERT_TRUE(with) << with.error().message();
  auto without = cli::SessionClient::Open(celld_->socket(), {.policy = "default"});
  ASSERT_TRUE(without);
  std::optional<api::Error> refusal;
  auto second = cli::SessionClient::Open(celld_->socket(), {.policy = "gpu"}, &refusal);
  ASSERT_FALSE(second);  // 0.75 + 0.75 > 1 device
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->code(), api::ADMISSION_REFUSED);
  // The environment a GPU runtime in the worker would read (setenv in the worker: not visible
  // in /proc/PID/environ, which shows the environment the process started with).
  auto env = [](cli::SessionClient& s, const std::string& name) {
    api::Generate g;
    g.set_prompt("probe:env:" + name);
    g.set_max_new_tokens(1);
    std::string text;
    EXPECT_TRUE(s.Generate(g, [&](const api::Piece& p) { text += p.text(); }));
    return text;
  };
  EXPECT_EQ(env(*with, "CUDA_VISIBLE_DEVICES"), "GPU-0000feed-0000-4000-8000-00000000beef");
  EXPECT_EQ(env(*with, "CUDA_MPS_ACTIVE_THREAD_PERCENTAGE"), "75");
  EXPECT_EQ(env(*with, "CUDA_MPS_PINNED_DEVICE_MEM_LIMIT"), "0=4096M");
  EXPECT_EQ(env(*without, "CUDA_VISIBLE_DEVICES"), "(unset)");
  // The mount view, from outside: the node is there for the share only.
  for (const api::SessionInfo& s : Sessions()) {
    std::string root = "/proc/" + std::to_string(s.worker_pid()) + "/root";
    bool has_share = s.policy() == "gpu";
    EXPECT_EQ(::access((root + "/dev/null").c_str(), F_OK) == 0, has_share) << s.policy();
    auto entries = ListDirectory(root);
    ASSERT_TRUE(entries);
    EXPECT_EQ(entries->size(), has_share ? 1u : 0u);  // "dev" or nothing at all
  }
}

// The weights are pre-faulted (and locked) in celld's cgroup: a session generating on a 58 MiB
// model is charged a few MiB of its own, not the model.
TEST_F(ContainmentTest, SharedWeightsAreNotASessionsCost) {
  testing::WritePolicy(policies_, PolicySpec{});
  std::string model = testing::GenerateModel(local_, "15m", 5);
  StartCelld({.model = model, .zygote = testing::BinPath("cell-zygote")});
  auto session = cli::SessionClient::Open(celld_->socket(), {});
  ASSERT_TRUE(session);
  api::Generate g;
  g.set_prompt("Once upon a time");
  g.set_max_new_tokens(200);
  ASSERT_TRUE(session->Generate(g, [](const api::Piece&) {}));
  auto sessions = Sessions();
  ASSERT_EQ(sessions.size(), 1u);
  api::Request status;
  status.mutable_status();
  auto st = cli::AdminRequest(celld_->socket(), status);
  ASSERT_TRUE(st);
  uint64_t weights = st->status().weights_bytes();
  std::printf("weights %llu bytes, session charged %llu bytes\n",
              static_cast<unsigned long long>(weights),
              static_cast<unsigned long long>(sessions[0].memory_bytes()));
  EXPECT_GT(weights, 50ull << 20);
  EXPECT_GT(sessions[0].memory_bytes(), 0u);
  EXPECT_LT(sessions[0].memory_bytes(), weights / 4);
}

// A sandbox step that fails reaches the client as one sentence naming the step.
TEST_F(ContainmentTest, FailedSetupIsReportedToTheClientWithItsStep) {
  PolicySpec greedy;
  greedy.name = "greedy";
  // Valid for the loader (fs.nr_open), but above the hard limit celld runs with here: raising a
  // hard limit needs privilege in the host's namespace, so setrlimit fails in the sandbox.
  rlimit own{};
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &own), 0);
  if (own.rlim_max >= 1048576) GTEST_SKIP() << "the hard NOFILE limit here is already the maximum";
  greedy.extra_text = "rlimits { resource: NOFILE soft: 1048576 hard: 1048576 }\n";
  testing::WritePolicy(policies_, greedy);
  StartCelld({.zygote = testing::BinPath("cell-zygote")});
  std::optional<api::Error> refusal;
  auto s = cli::SessionClient::Open(celld_->socket(), {.policy = "greedy"}, &refusal);
  ASSERT_FALSE(s);
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->code(), api::SPAWN_FAILED);
  EXPECT_NE(refusal->message().find("sandbox step 'setrlimit' failed"), std::string::npos)
      << refusal->message();
  EXPECT_TRUE(Sessions().empty());
}

}  // namespace
}  // namespace cellhouse
