// celld under a service manager, without one: the units checked by systemd-analyze, celld
// started by systemd-socket-activate(1) with a notification socket of the test's own (the
// messages sd_notify(3) sends, in order), inherited descriptors that are not what celld.socket
// promises, and the log format under JOURNAL_STREAM.
#include <fcntl.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cctype>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <iostream>
#include <map>
#include <regex>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "ipc/defaults.h"
#include "ipc/unix_socket.h"
#include "supervisor/supervisor.h"
#include "tests/e2e/ops_support.h"
#include "tests/support/celld_harness.h"

namespace cellhouse {
namespace {

using testing::Daemon;
using ::testing::HasSubstr;
using testing::kLongWaitMs;
using ::testing::Not;
using testing::NotifySocket;

// The units rendered into the build tree, ExecStart= on the built celld (units/CMakeLists.txt).
std::string BuiltUnit(const std::string& name) {
  return std::string(CELLHOUSE_BUILD_UNITS_DIR) + "/" + name;
}

// "Key=value" lines of a unit file, by key (a key may repeat).
std::multimap<std::string, std::string> UnitSettings(const std::string& path) {
  std::multimap<std::string, std::string> out;
  auto text = ReadFileToString(path, 1 << 20);
  EXPECT_TRUE(text) << path;
  if (!text) return out;
  for (std::string_view line : Split(*text, '\n')) {
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    size_t eq = line.find('=');
    if (eq == std::string_view::npos) continue;
    out.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
  }
  return out;
}

std::string Setting(const std::multimap<std::string, std::string>& settings,
                    const std::string& key) {
  auto it = settings.find(key);
  return it == settings.end() ? "" : it->second;
}

TEST(UnitsTest, SystemdAnalyzeVerifiesThemWithoutComplaint) {
  testing::CommandResult r = testing::RunCommand(
      {"/usr/bin/systemd-analyze", "verify", "--man=no", BuiltUnit("celld.service"),
       BuiltUnit("celld.socket"), BuiltUnit("celld-metrics.socket")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  // Unknown or misspelt settings are only warnings to verify: none is allowed.
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, "");
}

TEST(UnitsTest, ExposureScoreStaysWhereDocsOperationsSays) {
  // docs/OPERATIONS.md reports 3.0; --threshold=30 fails above it (the scale is tenths).
  testing::CommandResult r =
      testing::RunCommand({"/usr/bin/systemd-analyze", "security", "--offline=true",
                           "--threshold=30", BuiltUnit("celld.service")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("Overall exposure level for celld.service: 3.0"));
}

TEST(UnitsTest, UnitsAgreeWithWhatCelldExpects) {
  auto socket = UnitSettings(BuiltUnit("celld.socket"));
  // cellctl's default socket, passed under the name celld serves clients on.
  EXPECT_EQ(Setting(socket, "ListenStream"), ipc::kDefaultSocketPath);
  EXPECT_EQ(Setting(socket, "FileDescriptorName"), "api");
  EXPECT_EQ(Setting(socket, "SocketGroup"), "cellhouse");
  EXPECT_EQ(Setting(socket, "SocketMode"), "0660");

  auto metrics = UnitSettings(BuiltUnit("celld-metrics.socket"));
  EXPECT_EQ(Setting(metrics, "FileDescriptorName"), "metrics");
  EXPECT_EQ(Setting(metrics, "Service"), "celld.service");
  EXPECT_THAT(Setting(metrics, "ListenStream"), ::testing::StartsWith("127.0.0.1:"));

  auto service = UnitSettings(BuiltUnit("celld.service"));
  EXPECT_EQ(Setting(service, "Type"), "notify");
  EXPECT_EQ(Setting(service, "NotifyAccess"), "main");
  EXPECT_EQ(Setting(service, "Delegate"), "yes");
  // SIGTERM to celld alone: it drains its workers itself.
  EXPECT_EQ(Setting(service, "KillMode"), "mixed");
  EXPECT_THAT(Setting(service, "ExecReload"), HasSubstr("-HUP $MAINPID"));
  EXPECT_EQ(Setting(service, "RuntimeDirectory"), "cellhouse");
  EXPECT_EQ(Setting(service, "RuntimeDirectoryPreserve"), "yes");
  EXPECT_EQ(Setting(service, "EnvironmentFile"), "-/etc/default/celld");
  EXPECT_THAT(Setting(service, "ExecStart"), HasSubstr("--model ${CELLD_MODEL}"));
  EXPECT_FALSE(Setting(service, "WatchdogSec").empty());
  // The stop timeout covers celld's own drain: the grace for running generations, then the
  // grace a stopped worker gets before SIGKILL.
  std::string stop = Setting(service, "TimeoutStopSec");
  ASSERT_TRUE(!stop.empty() && stop.back() == 's') << stop;
  auto stop_seconds = ParseInt64(stop.substr(0, stop.size() - 1), "TimeoutStopSec");
  ASSERT_TRUE(stop_seconds);
  supervisor::SupervisorOptions defaults;
  EXPECT_GT(*stop_seconds * 1000, defaults.shutdown_grace_ms + defaults.stop_grace_ms);
}

class SystemdTest : public ::testing::Test {
 protected:
  static void SetUpTestSuite() {
    suite_dir_ = new testing::TempDir();
    suite_model_ = new std::string(testing::GenerateModel(*suite_dir_, "tiny", 23));
  }
  static void TearDownTestSuite() {
    delete suite_model_;
    delete suite_dir_;
  }

  void SetUp() override {
    if (geteuid() != 0) GTEST_SKIP() << "needs root: celld creates namespaces and cgroups";
    policies_ = local_.File("policies");
    testing::WritePolicy(policies_, testing::PolicySpec{});
    auto notify = NotifySocket::Bind(local_.File("notify"));
    ASSERT_TRUE(notify) << notify.error().message();
    notify_.emplace(std::move(*notify));
    api_ = local_.File("api.sock");
    log_ = local_.File("celld.log");
  }

  // celld under systemd-socket-activate on api_, with NOTIFY_SOCKET and `activate_extra`
  // (more -E or -l) in front of it.
  Daemon StartActivated(const std::vector<std::string>& activate_extra = {},
                        const std::vector<std::string>& celld_extra = {}) {
    std::vector<std::string> activate = {"-l", api_, "--fdname=api", "-E",
                                         "NOTIFY_SOCKET=" + notify_->path()};
    activate.insert(activate.end(), activate_extra.begin(), activate_extra.end());
    auto daemon =
        Daemon::Spawn({.argv = testing::SocketActivated(
                           activate, testing::CelldArgs(*suite_model_, policies_, celld_extra)),
                       .log_path = log_});
    EXPECT_TRUE(daemon) << daemon.error().message();
    return std::move(*daemon);
  }

  // Waits until systemd-socket-activate listens on `path`, without connecting (the first
  // connection starts celld). The socket file appears at bind(2), before listen(2): a connect in
  // between is refused, so the file alone is not enough. A listening socket is the one
  // /proc/net/unix lists at that path with __SO_ACCEPTCON (0x10000) in its flags (or of type
  // SOCK_DGRAM, ready once bound).
  void WaitForListeningSocket(const std::string& path) {
    for (int i = 0; i < kLongWaitMs / 10; ++i) {
      if (IsListening(path)) return;
      ::usleep(10'000);
    }
    FAIL() << "nothing listens on " << path;
  }

  static bool IsListening(const std::string& path) {
    auto table = ReadFileToString("/proc/net/unix", 64 << 20);
    if (!table) return false;
    for (std::string_view line : Split(*table, '\n')) {
      // "Num: RefCount Protocol Flags Type St Inode Path"
      std::vector<std::string_view> fields;
      for (std::string_view f : Split(line, ' ')) {
        if (!f.empty()) fields.push_back(f);
      }
      if (fields.size() < 8 || fields[7] != path) continue;
      unsigned long flags = std::strtoul(std::string(fields[3]).c_str(), nullptr, 16);
      // A datagram socket never listens: it takes what is sent to it once bound.
      if ((flags & 0x10000) != 0 || fields[4] == "0002") return true;
    }
    return false;
  }

  // Connects once to start celld and waits for its READY=1.
  std::optional<NotifySocket::Message> ActivateAndWaitReady(const Daemon& celld) {
    WaitForListeningSocket(api_);
    auto trigger = ipc::ConnectUnix(api_);
    EXPECT_TRUE(trigger) << trigger.error().message();
    auto ready = notify_->WaitFor("READY=1", kLongWaitMs);
    EXPECT_TRUE(ready) << "no READY=1; log:\n" << celld.Log();
    return ready;
  }

  static testing::TempDir* suite_dir_;
  static std::string* suite_model_;
  testing::TempDir local_;
  std::string policies_;
  std::string api_;
  std::string log_;
  std::optional<NotifySocket> notify_;
};

testing::TempDir* SystemdTest::suite_dir_ = nullptr;
std::string* SystemdTest::suite_model_ = nullptr;

TEST_F(SystemdTest, SocketActivatedCelldTellsReadyStatusReloadAndStop) {
  Daemon celld = StartActivated();
  WaitForListeningSocket(api_);
  // Nothing has connected yet: celld has not started, systemd-socket-activate only listens.
  auto exe = ::realpath(("/proc/" + std::to_string(celld.pid()) + "/exe").c_str(), nullptr);
  ASSERT_NE(exe, nullptr);
  EXPECT_THAT(std::string(exe), HasSubstr("systemd-socket-activate"));
  std::free(exe);  // NOLINT: realpath(3) allocates with malloc
  notify_->Drain();
  EXPECT_TRUE(notify_->received().empty());

  // The first connection starts celld, which answers it once ready.
  auto trigger = ipc::ConnectUnix(api_);
  ASSERT_TRUE(trigger) << trigger.error().message();
  auto ready = notify_->WaitFor("READY=1", kLongWaitMs);
  ASSERT_TRUE(ready) << celld.Log();
  // When READY=1 arrives the zygote has mapped the model and reported so, and the inherited
  // socket is served: both are logged before READY=1 is sent.
  std::string log = celld.Log();
  EXPECT_THAT(log, HasSubstr("zygote pid"));
  EXPECT_THAT(log, HasSubstr("mapped in"));
  EXPECT_THAT(log, HasSubstr("serving 1 socket(s) passed by systemd"));
  EXPECT_EQ(testing::ZygotesOf(celld.pid()).size(), 1u);
  EXPECT_EQ(ready->sender, celld.pid());
  EXPECT_EQ(ready->Get("STATUS"), "0 sessions active, 0 admitted, 0 refused");
  // The policy load at start-up is part of start-up: no RELOADING=1, no earlier READY=1.
  ASSERT_FALSE(notify_->received().empty());
  for (size_t i = 0; i + 1 < notify_->received().size(); ++i) {
    EXPECT_FALSE(notify_->received()[i].Has("READY=1")) << notify_->received()[i].text;
    EXPECT_FALSE(notify_->received()[i].Has("RELOADING=1")) << notify_->received()[i].text;
  }
  trigger->reset();

  // A session, then the status line follows it.
  testing::CommandResult gen = testing::RunCellctl(
      api_, {"generate", "--prompt", "Once upon a time", "--max-tokens", "8", "--seed", "3"});
  EXPECT_EQ(gen.exit_code, 0) << gen.err << celld.Log();
  EXPECT_FALSE(gen.out.empty());
  bool status_seen = false;
  for (int i = 0; i < 100 && !status_seen; ++i) {
    auto m = notify_->Receive(kLongWaitMs);
    ASSERT_TRUE(m) << "no STATUS= after the session; log:\n" << celld.Log();
    status_seen = m->Get("STATUS") == "0 sessions active, 1 admitted, 0 refused";
  }
  EXPECT_TRUE(status_seen);
  // More connections on the same inherited socket (systemd-socket-activate passes it blocking;
  // celld must not wait in accept(2) for the next one).
  for (int i = 0; i < 3; ++i) {
    testing::CommandResult status = testing::RunCellctl(api_, {"status"});
    EXPECT_EQ(status.exit_code, 0) << status.err;
    EXPECT_THAT(status.out, HasSubstr("1 admitted"));
  }

  // cellctl reload: RELOADING=1 (with the time systemd >= 253 asks for), then READY=1.
  notify_->Drain();
  testing::CommandResult reload = testing::RunCellctl(api_, {"reload"});
  EXPECT_EQ(reload.exit_code, 0) << reload.err;
  auto reloading = notify_->WaitFor("RELOADING=1", kLongWaitMs);
  ASSERT_TRUE(reloading);
  EXPECT_TRUE(reloading->Get("MONOTONIC_USEC"));
  EXPECT_TRUE(notify_->WaitFor("READY=1", kLongWaitMs));
  // SIGHUP (systemctl reload): the same.
  ASSERT_EQ(::kill(celld.pid(), SIGHUP), 0);
  EXPECT_TRUE(notify_->WaitFor("RELOADING=1", kLongWaitMs));
  EXPECT_TRUE(notify_->WaitFor("READY=1", kLongWaitMs));

  // SIGTERM: STOPPING=1, then a clean exit; nothing claims readiness after.
  pid_t celld_pid = celld.pid();
  size_t before_stop = notify_->received().size();
  ExitStatus st = celld.Terminate();
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld.Log();
  notify_->Drain();
  bool stopping = false;
  for (size_t i = before_stop; i < notify_->received().size(); ++i) {
    const NotifySocket::Message& m = notify_->received()[i];
    if (m.Has("STOPPING=1")) stopping = true;
    if (stopping) {
      EXPECT_FALSE(m.Has("READY=1")) << m.text;
    }
  }
  EXPECT_TRUE(stopping);
  // Every message came from celld itself (NotifyAccess=main), none from the zygote.
  for (const NotifySocket::Message& m : notify_->received()) {
    EXPECT_EQ(m.sender, celld_pid) << m.text;
  }
}

TEST_F(SystemdTest, WatchdogIsPettedFromTheLoopWhenWatchdogUsecIsSet) {
  // WATCHDOG_PID says whose watchdog it is (sd_watchdog_enabled(3)). systemd-socket-activate
  // execs celld in its own process, so a shell that execs it knows that pid: its own.
  std::vector<std::string> argv = {
      "/bin/sh",
      "-c",
      "exec /usr/bin/systemd-socket-activate -E WATCHDOG_PID=$$ \"$@\"",
      "sh",
      "-l",
      api_,
      "--fdname=api",
      "-E",
      "NOTIFY_SOCKET=" + notify_->path(),
      "-E",
      "WATCHDOG_USEC=400000"};
  for (const std::string& a : testing::CelldArgs(*suite_model_, policies_)) argv.push_back(a);
  auto celld = Daemon::Spawn({.argv = argv, .log_path = log_});
  ASSERT_TRUE(celld) << celld.error().message();
  ASSERT_TRUE(ActivateAndWaitReady(*celld));
  // Every 200 ms (half the interval): three in a row show the timer re-arms itself.
  for (int i = 0; i < 3; ++i) {
    auto pet = notify_->WaitFor("WATCHDOG=1", kLongWaitMs);
    ASSERT_TRUE(pet) << celld->Log();
    EXPECT_EQ(pet->sender, celld->pid());
  }
  // It goes on while sessions run.
  testing::CommandResult gen =
      testing::RunCellctl(api_, {"generate", "--prompt", "Hi", "--max-tokens", "4"});
  EXPECT_EQ(gen.exit_code, 0) << gen.err;
  EXPECT_TRUE(notify_->WaitFor("WATCHDOG=1", kLongWaitMs));
  ExitStatus st = celld->Terminate();
  EXPECT_TRUE(st.Success()) << st.ToString();
}

TEST_F(SystemdTest, WatchdogMeantForAnotherProcessIsLeftAlone) {
  // A WATCHDOG_USEC inherited from some ancestor, for pid 1: not celld's to pet.
  Daemon celld = StartActivated({"-E", "WATCHDOG_USEC=400000", "-E", "WATCHDOG_PID=1"});
  ASSERT_TRUE(ActivateAndWaitReady(celld));
  ExitStatus st = celld.Terminate();
  EXPECT_TRUE(st.Success()) << st.ToString();
  notify_->Drain();
  // A watchdog celld took for its own would have been petted once before READY=1 already.
  for (const NotifySocket::Message& m : notify_->received()) {
    EXPECT_FALSE(m.Has("WATCHDOG=1")) << m.text;
  }
}

// celld refuses to start, naming the descriptor and what is wrong with it.
class RefusedDescriptorTest : public SystemdTest {
 protected:
  void ExpectRefused(Daemon& celld, const std::string& message) {
    std::optional<ExitStatus> st = celld.WaitExit(kLongWaitMs);
    ASSERT_TRUE(st) << "celld kept running; log:\n" << celld.Log();
    EXPECT_EQ(st->kind, ExitStatus::Kind::kExited);
    EXPECT_EQ(st->code, 1) << celld.Log();
    EXPECT_THAT(celld.Log(), HasSubstr(message));
    EXPECT_THAT(celld.Log(), HasSubstr("Refusing."));
    notify_->Drain();
    for (const NotifySocket::Message& m : notify_->received()) {
      EXPECT_FALSE(m.Has("READY=1")) << m.text;
    }
  }

  // celld with LISTEN_FDS describing `fds` (3, 4, ... in order) under `names`, as systemd would
  // pass them. LISTEN_PID must be celld's pid: a shell that execs it knows it.
  Daemon StartWithDescriptors(const std::vector<int>& fds, const std::string& names) {
    std::vector<std::string> argv = {"/bin/sh", "-c",
                                     "LISTEN_PID=$$ LISTEN_FDS=" + std::to_string(fds.size()) +
                                         " LISTEN_FDNAMES=" + names +
                                         " NOTIFY_SOCKET=" + notify_->path() + " exec \"$@\"",
                                     "sh"};
    for (const std::string& a : testing::CelldArgs(*suite_model_, policies_)) argv.push_back(a);
    std::vector<std::pair<int, int>> plan;
    for (size_t i = 0; i < fds.size(); ++i) plan.emplace_back(3 + static_cast<int>(i), fds[i]);
    auto celld = Daemon::Spawn({.argv = argv, .log_path = log_, .fds = plan});
    EXPECT_TRUE(celld) << celld.error().message();
    return std::move(*celld);
  }
};

TEST_F(RefusedDescriptorTest, DatagramSocketIsRefused) {
  Daemon celld = StartActivated({"--datagram"});
  WaitForListeningSocket(api_);
  // A datagram is what starts a daemon on a datagram socket.
  UniqueFd client(::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::memcpy(addr.sun_path, api_.data(), api_.size());
  ASSERT_EQ(
      ::sendto(client.get(), "x", 1, 0, reinterpret_cast<const sockaddr*>(&addr), sizeof(addr)), 1);
  ExpectRefused(celld,
                "socket 'api' passed by systemd (fd 3) is unusable: fd 3 is not a stream socket; "
                "celld.socket must have ListenStream= on a path. Refusing.");
}

TEST_F(RefusedDescriptorTest, TcpSocketForClientsIsRefused) {
  auto port = testing::FreeLoopbackPort();
  ASSERT_TRUE(port);
  std::string address = "127.0.0.1:" + std::to_string(*port);
  auto daemon =
      Daemon::Spawn({.argv = testing::SocketActivated(
                         {"-l", address, "--fdname=api", "-E", "NOTIFY_SOCKET=" + notify_->path()},
                         testing::CelldArgs(*suite_model_, policies_)),
                     .log_path = log_});
  ASSERT_TRUE(daemon);
  // Connect once systemd-socket-activate listens; that first connection starts celld.
  bool connected = false;
  for (int i = 0; i < kLongWaitMs / 20 && !connected; ++i) {
    connected = testing::ConnectTcp(*port).has_value();
    if (!connected) ::usleep(20'000);
  }
  ASSERT_TRUE(connected) << daemon->Log();
  ExpectRefused(*daemon, "(fd 3) is unusable: fd 3 is not a Unix-domain socket");
}

TEST_F(RefusedDescriptorTest, DescriptorThatIsNotASocketIsRefused) {
  UniqueFd file(::open(local_.File("not-a-socket").c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600));
  ASSERT_TRUE(file.valid());
  Daemon celld = StartWithDescriptors({file.get()}, "api");
  ExpectRefused(celld, "socket 'api' passed by systemd (fd 3) is unusable: getsockname on fd 3");
}

TEST_F(RefusedDescriptorTest, MetricsSocketThatDoesNotListenIsRefused) {
  auto api = ipc::ListenUnix({.path = api_});
  ASSERT_TRUE(api) << api.error().message();
  auto pair = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(pair);
  Daemon celld = StartWithDescriptors({api->get(), pair->first.get()}, "api:metrics");
  ExpectRefused(celld,
                "socket 'metrics' passed by systemd (fd 4) is unusable: fd 4 is not listening; "
                "celld-metrics.socket must have ListenStream=. Refusing.");
}

// "CAP_SETUID CAP_KILL" -> "-all,+setuid,+kill", setpriv(1)'s spelling.
std::string SetprivBoundingSet(const std::string& unit_value) {
  std::string out = "-all";
  for (std::string_view cap : Split(unit_value, ' ')) {
    if (cap.empty()) continue;
    std::string name(cap.substr(StartsWith(cap, "CAP_") ? 4 : 0));
    for (char& c : name) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
    out += ",+" + name;
  }
  return out;
}

// The system calls of a SystemCallFilter= allow-list, groups expanded through
// `systemd-analyze syscall-filter`, which prints a group's calls and the groups it includes.
std::set<std::string> ExpandSyscallFilter(const std::string& unit_value) {
  std::set<std::string> calls, seen;
  std::vector<std::string> pending;
  for (std::string_view item : Split(unit_value, ' ')) {
    if (!item.empty()) pending.emplace_back(item);
  }
  while (!pending.empty()) {
    std::string item = pending.back();
    pending.pop_back();
    if (item[0] != '@') {
      calls.insert(item);
      continue;
    }
    if (!seen.insert(item).second) continue;
    testing::CommandResult r =
        testing::RunCommand({"/usr/bin/systemd-analyze", "syscall-filter", item});
    EXPECT_EQ(r.exit_code, 0) << item << r.err;
    bool header = true;
    for (std::string_view line : Split(r.out, '\n')) {
      line = Trim(line);
      if (header) {  // the group's own name comes first
        header = false;
        continue;
      }
      if (line.empty() || line[0] == '#') continue;
      pending.emplace_back(line);
    }
  }
  return calls;
}

// Whether the cgroup directories celld will create its subtree in lack the owner's write bit
// (as the hierarchy roots of some container hosts do, mode 0555). Then root needs
// CAP_DAC_OVERRIDE to write there; under systemd, Delegate=yes hands celld a directory of root's
// own, mode 0755.
bool CgroupDirsNeedDacOverride() {
  auto self = ReadFileToString("/proc/self/cgroup", 1 << 16);
  if (!self) return false;
  std::vector<std::string> dirs;
  for (std::string_view line : Split(*self, '\n')) {
    std::vector<std::string_view> parts = Split(line, ':');
    if (parts.size() != 3) continue;
    std::string path(parts[2]);
    if (parts[1].empty()) {
      dirs.push_back("/sys/fs/cgroup" + path);
      continue;
    }
    for (std::string_view controller : Split(parts[1], ',')) {
      if (controller == "memory" || controller == "pids" || controller == "cpu") {
        dirs.push_back("/sys/fs/cgroup/" + std::string(controller) + path);
      }
    }
  }
  for (const std::string& dir : dirs) {
    struct stat st {};
    if (::stat(dir.c_str(), &st) == 0 && (st.st_mode & S_IWUSR) == 0) return true;
  }
  return false;
}

// The command line that applies celld.service's NoNewPrivileges=, CapabilityBoundingSet=,
// SystemCallFilter= (with SystemCallErrorNumber=EPERM), RestrictAddressFamilies= and
// MemoryDenyWriteExecute=, read from the built unit, by hand (setpriv, unit_sandbox_exec) to the
// program that follows it.
std::vector<std::string> UnderTheUnitsSettings(testing::TempDir& local) {
  auto service = UnitSettings(BuiltUnit("celld.service"));
  EXPECT_EQ(Setting(service, "NoNewPrivileges"), "yes");
  EXPECT_EQ(Setting(service, "SystemCallErrorNumber"), "EPERM");
  EXPECT_EQ(Setting(service, "MemoryDenyWriteExecute"), "yes");
  std::string bounding = SetprivBoundingSet(Setting(service, "CapabilityBoundingSet"));
  if (CgroupDirsNeedDacOverride()) {
    std::cout << "this host's cgroup directories are not owner-writable: adding "
                 "CAP_DAC_OVERRIDE, which systemd's Delegate=yes makes unneeded\n";
    bounding += ",+dac_override";
  }
  std::set<std::string> calls = ExpandSyscallFilter(Setting(service, "SystemCallFilter"));
  EXPECT_GT(calls.size(), 100u);
  std::string calls_file = local.File("syscalls.txt");
  std::string list;
  for (const std::string& c : calls) list += c + "\n";
  EXPECT_TRUE(CreateFileWithContent(calls_file, list, 0644));
  std::string families;
  std::string restrict_families = Setting(service, "RestrictAddressFamilies");
  for (std::string_view family : Split(restrict_families, ' ')) {
    static const std::map<std::string, int, std::less<>> kFamilies = {{"AF_UNIX", AF_UNIX},
                                                                      {"AF_NETLINK", AF_NETLINK},
                                                                      {"AF_INET", AF_INET},
                                                                      {"AF_INET6", AF_INET6}};
    auto it = kFamilies.find(family);
    if (it == kFamilies.end()) {
      ADD_FAILURE() << "unknown address family in the unit: " << family;
      continue;
    }
    if (!families.empty()) families += ",";
    families += std::to_string(it->second);
  }
  return {"/usr/bin/setpriv",
          "--no-new-privs",
          "--bounding-set",
          bounding,
          testing::BinPath("unit_sandbox_exec"),
          "--syscalls",
          calls_file,
          "--address-families",
          families,
          "--deny-write-execute",
          "--"};
}

// celld under the unit's settings: it starts, serves sessions, kills one, reloads and stops, and
// nothing it needs is refused. `model`: the file celld serves; a GGUF model also runs its shared
// executor (celld's default), which must start and serve under the same settings.
void RunCelldUnderTheUnitsFilters(const std::string& model, const std::string& policies,
                                  testing::TempDir& local, const std::string& log_path,
                                  bool executor) {
  std::string socket = local.File("c.sock");
  std::vector<std::string> argv = UnderTheUnitsSettings(local);
  ASSERT_FALSE(::testing::Test::HasFailure());
  // With an executor: no pool, so that every session's worker is made once it runs (a pooled
  // worker made before it has no slot), and the sessions wait for it to start.
  std::vector<std::string> extra = {"--socket", socket};
  if (executor) extra.insert(extra.end(), {"--pool-size", "0"});
  for (const std::string& a : testing::CelldArgs(model, policies, extra)) argv.push_back(a);
  auto celld = Daemon::Spawn({.argv = argv, .log_path = log_path});
  ASSERT_TRUE(celld) << celld.error().message();
  ASSERT_TRUE(testing::WaitUntilConnectable(socket, kLongWaitMs)) << celld->Log();
  for (int i = 0;
       i < 100 && executor && celld->Log().find("shared executor pid") == std::string::npos; ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }

  // Sessions, one after the other and two at once.
  for (int i = 0; i < 2; ++i) {
    testing::CommandResult gen = testing::RunCellctl(
        socket, {"generate", "--prompt", "Once upon a time", "--max-tokens", "16"});
    EXPECT_EQ(gen.exit_code, 0) << gen.err << celld->Log();
  }
  auto held = cli::SessionClient::Open(socket, {});
  ASSERT_TRUE(held) << held.error().message() << celld->Log();
  api::Generate g;
  g.set_prompt("The dog");
  g.set_max_new_tokens(8);
  EXPECT_TRUE(held->Generate(g, [](const api::Piece&) {}));
  if (executor) {
    api::Request list;
    list.mutable_list_sessions();
    auto reply = cli::AdminRequest(socket, list);
    ASSERT_TRUE(reply && reply->has_sessions());
    ASSERT_EQ(reply->sessions().sessions_size(), 1);
    EXPECT_TRUE(reply->sessions().sessions(0).shared_executor()) << celld->Log();
  }
  // Killing a session signals its worker, which runs as a host uid of its own.
  testing::CommandResult kill =
      testing::RunCellctl(socket, {"kill", testing::Hex(held->opened().session_id())});
  EXPECT_EQ(kill.exit_code, 0) << kill.err;
  std::optional<api::Error> end = held->WaitForEnd(kLongWaitMs);
  ASSERT_TRUE(end);
  EXPECT_EQ(end->outcome(), api::KILLED) << end->message();
  testing::CommandResult reload = testing::RunCellctl(socket, {"reload"});
  EXPECT_EQ(reload.exit_code, 0) << reload.err;

  ExitStatus st = celld->Terminate();
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld->Log();
  std::string log = celld->Log();
  EXPECT_THAT(log, Not(HasSubstr("Operation not permitted")));
  EXPECT_THAT(log, Not(HasSubstr("EPERM")));
  EXPECT_THAT(log, Not(HasSubstr("EAFNOSUPPORT")));
  // The audit multicast (AF_NETLINK, CAP_AUDIT_READ) still works.
  EXPECT_THAT(log, Not(HasSubstr("reported without the system call's name")));
  EXPECT_THAT(log, HasSubstr("outcome KILLED"));
  if (executor) {
    EXPECT_THAT(log, HasSubstr("shared executor pid"));
    EXPECT_THAT(log, Not(HasSubstr("the shared executor could not start")));
    EXPECT_THAT(log, Not(HasSubstr("its sessions compute in their own workers")));
  }
}

TEST_F(SystemdTest, CelldWorksUnderTheUnitsCapabilitiesAndSystemCallFilters) {
  RunCelldUnderTheUnitsFilters(*suite_model_, policies_, local_, log_, /*executor=*/false);
}

// The same with a GGUF model: its shared executor (forked by the zygote, cgroup of its own,
// futex_waitv) starts and serves the sessions under the unit's filters too.
TEST_F(SystemdTest, AGgufModelsExecutorWorksUnderTheUnitsFilters) {
  const std::string gguf = local_.File("tiny-Q8_0.gguf");
  testing::CommandResult convert =
      testing::RunCommand({testing::BinPath("cellmodel"), "convert", "--in", *suite_model_, "--out",
                           gguf, "--type", "Q8_0"});
  ASSERT_EQ(convert.exit_code, 0) << convert.err;
  ::chmod(gguf.c_str(), 0644);
  RunCelldUnderTheUnitsFilters(gguf, policies_, local_, log_, /*executor=*/true);
}

// The journal's stream protocol: JOURNAL_STREAM holds the st_dev:st_ino of the stream celld's
// standard error is connected to (systemd.exec(5)); the file the test gives it stands in.
TEST_F(SystemdTest, UnderJournalStreamEveryLineHasAPriorityAndNoConversationText) {
  {
    UniqueFd created(::open(log_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC, 0644));
    ASSERT_TRUE(created.valid());
  }
  struct stat st {};
  ASSERT_EQ(::stat(log_.c_str(), &st), 0);
  std::string journal_stream = std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino);
  std::string socket = local_.File("c.sock");
  auto celld =
      Daemon::Spawn({.argv = testing::CelldArgs(*suite_model_, policies_,
                                                {"--socket", socket, "--log-level", "trace"}),
                     .env = {"JOURNAL_STREAM=" + journal_stream},
                     .log_path = log_});
  ASSERT_TRUE(celld) << celld.error().message();
  ASSERT_TRUE(testing::WaitUntilConnectable(socket, kLongWaitMs)) << celld->Log();

  // A prompt no log line could hold by chance, and the text generated from it. Fixed, so that
  // the generation is too: the test model answers a few prompts with nothing at all (with the
  // test's pid in the prompt, about one pid in a hundred), which left no text to look for.
  const std::string marker = "Zanzibar-quokka-108";
  testing::CommandResult gen = testing::RunCellctl(
      socket, {"generate", "--prompt", marker, "--max-tokens", "32", "--seed", "9"});
  ASSERT_EQ(gen.exit_code, 0) << gen.err;
  std::string generated(Trim(gen.out));
  // cellctl is done when the worker has answered its close; celld records the end once it has
  // reaped the worker, a moment later. Wait for that line rather than race it with SIGTERM.
  for (int i = 0; i < kLongWaitMs / 10 && celld->Log().find(" ended: ") == std::string::npos; ++i) {
    ::usleep(10'000);
  }
  // An error whose text spans several lines (a policy that does not parse) still makes
  // prefixed lines only.
  ASSERT_TRUE(CreateFileWithContent(policies_ + "/broken.textproto",
                                    "name: \"broken\"\nno_such_field: 1\n", 0644));
  testing::CommandResult reload = testing::RunCellctl(socket, {"reload"});
  EXPECT_NE(reload.exit_code, 0);
  ExitStatus ended = celld->Terminate();
  EXPECT_TRUE(ended.Success()) << ended.ToString();

  std::string log = celld->Log();
  std::regex prefixed("^<[0-7]>.*");
  int lines = 0;
  for (std::string_view line : Split(log, '\n')) {
    if (line.empty()) continue;
    ++lines;
    EXPECT_TRUE(std::regex_match(std::string(line), prefixed)) << "unprefixed line: " << line;
  }
  EXPECT_GT(lines, 5);
  // Levels reach the journal: the session lines at info, the failed reload at error.
  EXPECT_THAT(log, HasSubstr("<6>session "));
  EXPECT_THAT(log, HasSubstr("<3>policy reload failed"));
  // One line for the start and one for the end, with what an admin needs.
  std::regex start(
      "<6>session [0-9a-f]{32} started: tenant uid 0, policy default, worker pid "
      "[0-9]+, host uid [0-9]+");
  std::regex end(
      "<6>session [0-9a-f]{32} ended: tenant uid 0, policy default, worker pid "
      "[0-9]+, outcome CLOSED, duration [0-9.]+s: closed by the client");
  EXPECT_TRUE(std::regex_search(log, start)) << log;
  EXPECT_TRUE(std::regex_search(log, end)) << log;
  // Nothing of the conversation, at the most verbose level either.
  EXPECT_THAT(log, Not(HasSubstr(marker)));
  EXPECT_THAT(log, Not(HasSubstr("Zanzibar")));
  ASSERT_GE(generated.size(), 8u) << "too little generated text to look for";
  EXPECT_THAT(log, Not(HasSubstr(generated)));
  if (HasFailure()) ADD_FAILURE() << "generated: " << Quote(generated) << "\ncelld's log:\n" << log;
}

TEST_F(SystemdTest, JournalStreamOfAnotherFileKeepsTimestamps) {
  // JOURNAL_STREAM inherited from a parent whose stderr went to the journal, while celld's goes
  // elsewhere: lines keep their timestamps and carry no priority prefix.
  std::string socket = local_.File("c.sock");
  auto celld =
      Daemon::Spawn({.argv = testing::CelldArgs(*suite_model_, policies_, {"--socket", socket}),
                     .env = {"JOURNAL_STREAM=1:1"},
                     .log_path = log_});
  ASSERT_TRUE(celld);
  ASSERT_TRUE(testing::WaitUntilConnectable(socket, kLongWaitMs)) << celld->Log();
  EXPECT_TRUE(celld->Terminate().Success());
  std::regex stamped("^[0-9]{4}-[0-9]{2}-[0-9]{2} [0-9:.]+ [a-z]+ .*");
  std::string log = celld->Log();
  for (std::string_view line : Split(log, '\n')) {
    if (line.empty()) continue;
    EXPECT_TRUE(std::regex_match(std::string(line), stamped)) << line;
  }
}

}  // namespace
}  // namespace cellhouse
