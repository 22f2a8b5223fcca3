#include "tests/support/celld_harness.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstring>
#include <optional>
#include <thread>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/strings.h"
#include "ipc/unix_socket.h"
#include "supervisor/cgroup/driver.h"

namespace cellhouse::testing {
namespace {

std::atomic<int> g_celld_counter{0};

bool Connectable(const std::string& socket) { return ipc::ConnectUnix(socket).has_value(); }

}  // namespace

Result<std::unique_ptr<CelldProcess>> CelldProcess::Start(const TempDir& dir,
                                                          const CelldOptions& options) {
  std::unique_ptr<CelldProcess> celld(new CelldProcess());
  int n = g_celld_counter++;
  celld->socket_ = dir.File("celld" + std::to_string(n) + ".sock");
  celld->log_path_ = dir.File("celld" + std::to_string(n) + ".log");
  celld->subtree_ = options.default_subtree ? cgroup::InstanceSubtree(celld->socket_)
                    : options.subtree.empty()
                        ? "e2e-" + std::to_string(::getpid()) + "-" + std::to_string(n)
                        : options.subtree;
  std::vector<std::string> argv = {BinPath("celld"),
                                   "--model",
                                   options.model,
                                   "--socket",
                                   celld->socket_,
                                   "--log-level",
                                   "debug",
                                   "--heartbeat-interval-ms",
                                   "200"};
  if (!options.default_subtree) {
    argv.push_back("--cgroup-subtree");
    argv.push_back(celld->subtree_);
  }
  if (!options.policy_dir.empty()) {
    argv.push_back("--policy-dir");
    argv.push_back(options.policy_dir);
  }
  if (!options.zygote.empty()) {
    argv.push_back("--zygote");
    argv.push_back(options.zygote);
  }
  if (!options.cgroups) argv.push_back("--no-cgroups");
  argv.insert(argv.end(), options.extra_args.begin(), options.extra_args.end());
  argv.insert(argv.begin(), options.prefix.begin(), options.prefix.end());
  UniqueFd log(::open(celld->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return Error::FromErrno(errno, "open " + celld->log_path_);
  CH_ASSIGN_OR_RETURN(celld->process_,
                      SpawnProgram({.argv = argv, .fds = {{2, log.get()}, {1, log.get()}}}));
  int64_t deadline = MonotonicNanos() + 60 * kNanosPerSecond;
  while (MonotonicNanos() < deadline) {
    if (Connectable(celld->socket_)) return celld;
    auto ended = celld->process_.TryReap();
    if (ended && ended->has_value()) {
      // It ended by itself, so it undid its own start (sessions_test checks that). Its subtree
      // is not swept: it may be another celld's, which this one refused to share.
      celld->subtree_.clear();
      return Error("celld " + (*ended)->ToString() + " before listening:\n" + celld->Log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  static_cast<void>(celld->process_.Kill(SIGKILL));
  static_cast<void>(celld->process_.Wait());
  return Error("celld did not listen within 60 s:\n" + celld->Log());
}

CelldProcess::~CelldProcess() {
  if (process_.valid() && !process_.reaped()) {
    ADD_FAILURE() << "celld still running at the end of the test; killing it. Log:\n" << Log();
    static_cast<void>(process_.Kill(SIGKILL));
    static_cast<void>(process_.Wait());
  }
  // A celld killed outright cannot clean up: do it for it, so tests leave nothing behind.
  static_cast<void>(RemoveCgroupSubtree(subtree_));
}

std::string CelldProcess::Log() const {
  auto text = ReadFileToString(log_path_, 64 << 20);
  return text ? *text : "(no log: " + text.error().message() + ")";
}

ExitStatus CelldProcess::Terminate(int timeout_ms) {
  if (process_.reaped()) return {};
  static_cast<void>(process_.Kill(SIGTERM));
  pollfd p{process_.pidfd(), POLLIN, 0};
  if (::poll(&p, 1, timeout_ms) == 0) {
    ADD_FAILURE() << "celld did not exit within " << timeout_ms << " ms of SIGTERM";
    static_cast<void>(process_.Kill(SIGKILL));
  }
  auto st = process_.Wait();
  if (st && st->Success()) {
    // A celld that shut down cleanly removed every cgroup it made.
    for (const std::string& dir : RemoveCgroupSubtree(subtree_)) {
      ADD_FAILURE() << "celld exited 0 but left " << dir << " behind";
    }
  }
  return st ? *st : ExitStatus{};
}

std::vector<std::string> CgroupDirs(pid_t pid) {
  std::vector<std::string> dirs;
  auto lines = ReadFileToString("/proc/" + std::to_string(pid) + "/cgroup", 1 << 16);
  if (!lines) return dirs;
  for (std::string_view line : Split(*lines, '\n')) {
    auto fields = Split(line, ':');
    if (fields.size() != 3 || StartsWith(fields[1], "name=")) continue;
    std::string path(fields[2]);
    if (path == "/") path.clear();
    if (fields[1].empty()) {  // the v2 line ("0::/path"); mounted here or under unified/
      for (const char* root : {"/sys/fs/cgroup", "/sys/fs/cgroup/unified"}) {
        dirs.push_back(root + path);
      }
      continue;
    }
    for (std::string_view controller : Split(fields[1], ',')) {
      std::string dir = "/sys/fs/cgroup/";
      dir += controller;
      dir += path;
      dirs.push_back(std::move(dir));
    }
  }
  return dirs;
}

std::vector<std::string> CgroupSubtreeDirs(const std::string& subtree) {
  if (subtree.empty()) return {};
  std::vector<std::string> dirs = CgroupDirs(::getpid());
  for (std::string& dir : dirs) dir += "/" + subtree;
  return dirs;
}

std::vector<std::string> RemoveCgroupSubtree(const std::string& subtree) {
  std::vector<std::string> existed;
  for (const std::string& top : CgroupSubtreeDirs(subtree)) {
    if (::access(top.c_str(), F_OK) != 0) continue;
    existed.push_back(top);
    // Depth first: children before parents; kill stragglers first.
    std::vector<std::string> order = {top};
    for (size_t i = 0; i < order.size(); ++i) {
      auto children = ListDirectory(order[i]);
      if (!children) continue;
      for (const std::string& c : *children) {
        std::string path = order[i] + "/" + c;
        if (ListDirectory(path)) order.push_back(path);
      }
    }
    for (auto it = order.rbegin(); it != order.rend(); ++it) {
      auto procs = ReadFileToString(*it + "/cgroup.procs", 1 << 20);
      if (procs) {
        for (std::string_view p : Split(*procs, '\n')) {
          if (auto pid = ParseInt64(p, "pid")) ::kill(static_cast<pid_t>(*pid), SIGKILL);
        }
      }
      for (int attempt = 0; attempt < 100 && ::rmdir(it->c_str()) != 0 && errno == EBUSY;
           ++attempt) {
        std::this_thread::sleep_for(std::chrono::milliseconds(10));
      }
    }
  }
  return existed;
}

ExitStatus CelldProcess::Crash() {
  static_cast<void>(process_.Kill(SIGKILL));
  auto st = process_.Wait();
  subtree_.clear();  // the successor owns it now
  return st ? *st : ExitStatus{};
}

bool PollUntil(const std::function<bool()>& done, int timeout_ms) {
  int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * kNanosPerMilli;
  for (;;) {
    if (done()) return true;
    if (MonotonicNanos() >= deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

CommandResult RunCommand(const std::vector<std::string>& argv_in, const std::string& stdin_text,
                         std::optional<uid_t> as_uid, int timeout_ms) {
  std::vector<std::string> argv = argv_in;
  if (as_uid) {
    std::string id = std::to_string(*as_uid);
    argv.insert(argv.begin(),
                {"/usr/bin/setpriv", "--reuid=" + id, "--regid=" + id, "--clear-groups", "--"});
  }
  CommandResult result;
  auto in = MakePipe();
  auto out = MakePipe();
  auto err = MakePipe();
  if (!in || !out || !err) {
    ADD_FAILURE() << "pipe2 failed";
    return result;
  }
  auto child =
      SpawnProgram({.argv = argv,
                    .fds = {{0, in->first.get()}, {1, out->second.get()}, {2, err->second.get()}}});
  if (!child) {
    ADD_FAILURE() << child.error().message();
    return result;
  }
  in->first.reset();
  out->second.reset();
  err->second.reset();
  static_cast<void>(WriteFull(in->second.get(), stdin_text, "stdin"));
  in->second.reset();
  int64_t deadline = MonotonicNanos() + int64_t{timeout_ms} * kNanosPerMilli;
  pollfd fds[2] = {{out->first.get(), POLLIN, 0}, {err->first.get(), POLLIN, 0}};
  int open_streams = 2;
  while (open_streams > 0) {
    int64_t left = (deadline - MonotonicNanos()) / kNanosPerMilli;
    if (left <= 0) {
      ADD_FAILURE() << "command timed out: " << argv[0];
      static_cast<void>(child->Kill(SIGKILL));
      break;
    }
    if (::poll(fds, 2, static_cast<int>(left)) < 0 && errno != EINTR) break;
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[4096];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n <= 0) {
        fds[i].fd = -1;
        --open_streams;
        continue;
      }
      (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
    }
  }
  auto st = child->Wait();
  if (st) {
    result.status = *st;
    result.exit_code = st->kind == ExitStatus::Kind::kExited ? st->code : -1;
  }
  return result;
}

CommandResult RunCellctl(const std::string& socket, const std::vector<std::string>& args,
                         std::optional<uid_t> as_uid, const std::string& stdin_text) {
  std::vector<std::string> argv = {BinPath("cellctl"), "--socket", socket};
  argv.insert(argv.end(), args.begin(), args.end());
  return RunCommand(argv, stdin_text, as_uid);
}

std::string GenerateModel(const TempDir& dir, const std::string& preset, int seed,
                          const std::vector<std::string>& extra) {
  std::string path = dir.File(preset + "-" + std::to_string(seed) + ".bin");
  std::vector<std::string> argv = {BinPath("cellmodel"), "make", "--preset", preset, "--seed",
                                   std::to_string(seed), "-o",   path};
  argv.insert(argv.end(), extra.begin(), extra.end());
  CommandResult r = RunCommand(argv);
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // Readable by tenants running as other uids (the zygote reads it as root anyway).
  ::chmod(path.c_str(), 0644);
  return path;
}

std::string PolicyText(const PolicySpec& spec) {
  uint32_t host_first = spec.host_uid_first;
  if (host_first == 0) {
    // Distinct per test process and policy name, far from real accounts.
    uint32_t h = 0;
    for (char c : spec.name) h = h * 31 + static_cast<unsigned char>(c);
    host_first =
        0x60000000u + (static_cast<uint32_t>(::getpid()) % 4096) * 0x10000u + (h % 16) * 0x1000u;
  }
  std::string text = "name: \"" + spec.name + "\"\n";
  text += "description: \"test policy " + spec.name + "\"\n";
  for (uid_t uid : spec.uids) text += "uids: " + std::to_string(uid) + "\n";
  text += "host_uids { first: " + std::to_string(host_first) + " count: 4096 }\n";
  text += "cgroup {\n  memory_max_bytes: " + std::to_string(spec.memory_max) + "\n";
  if (spec.pids_max != 0) text += "  pids_max: " + std::to_string(spec.pids_max) + "\n";
  if (spec.cpu_weight != 0) text += "  cpu_weight: " + std::to_string(spec.cpu_weight) + "\n";
  text += "}\n";
  if (!spec.extra_allow.empty()) {
    text += "seccomp {\n";
    for (const std::string& s : spec.extra_allow) text += "  allow: \"" + s + "\"\n";
    text += "}\n";
  }
  text += "budgets {\n";
  if (spec.context_length != 0) {
    text += "  context_length: " + std::to_string(spec.context_length) + "\n";
  }
  if (spec.max_new_tokens != 0) {
    text += "  max_new_tokens: " + std::to_string(spec.max_new_tokens) + "\n";
  }
  text += "  idle_timeout_seconds: " + std::to_string(spec.idle_timeout_seconds) + "\n";
  if (spec.detached_grace_seconds != 0) {
    text += "  detached_grace_seconds: " + std::to_string(spec.detached_grace_seconds) + "\n";
  }
  text += "  max_sessions: " + std::to_string(spec.max_sessions) + "\n";
  text += "  max_sessions_per_tenant: " + std::to_string(spec.max_sessions_per_tenant) + "\n";
  text += "}\n" + spec.extra_text;
  return text;
}

void WritePolicy(const std::string& dir, const PolicySpec& spec) {
  ::mkdir(dir.c_str(), 0755);
  Status st = CreateFileWithContent(dir + "/" + spec.name + ".textproto", PolicyText(spec), 0644);
  ASSERT_TRUE(st) << st.error().message();
}

std::string EngineReference(const std::string& model, const std::string& prompt, int max_tokens,
                            double temperature, uint64_t seed) {
  char temp[32];
  static_cast<void>(std::snprintf(temp, sizeof(temp), "%g", temperature));
  CommandResult r = RunCommand({BinPath("cellmodel"), "run", "--model", model, "--prompt", prompt,
                                "--max-tokens", std::to_string(max_tokens), "--temperature", temp,
                                "--seed", std::to_string(seed)});
  EXPECT_EQ(r.exit_code, 0) << r.err;
  // stdout: the prompt as llama2.c prints it, the generated text, a newline.
  std::string text = r.out;
  if (!text.empty() && text.back() == '\n') text.pop_back();
  EXPECT_TRUE(StartsWith(text, prompt)) << text;
  return StartsWith(text, prompt) ? text.substr(prompt.size()) : text;
}

namespace {

// The state letter and parent of /proc/<pid>/stat ("pid (comm) S ppid ..."; comm may hold spaces
// and parentheses, so the fields are split after the last ')'); nullopt when it cannot be read.
struct ProcStat {
  char state = '?';
  int64_t ppid = 0;
};
std::optional<ProcStat> ReadProcStat(const std::string& pid) {
  auto stat = ReadFileToString("/proc/" + pid + "/stat", 4096);
  const size_t close = stat ? stat->rfind(')') : std::string::npos;
  if (close == std::string::npos || close + 2 >= stat->size()) return std::nullopt;
  auto fields = Split(std::string_view(*stat).substr(close + 2), ' ');
  if (fields.size() < 2 || fields[0].size() != 1) return std::nullopt;
  auto ppid = ParseInt64(fields[1], "ppid");
  if (!ppid) return std::nullopt;
  return ProcStat{fields[0][0], *ppid};
}

}  // namespace

char ProcessState(pid_t pid) {
  const std::optional<ProcStat> stat = ReadProcStat(std::to_string(pid));
  return stat ? stat->state : '?';
}

std::vector<pid_t> ZombieChildren(pid_t pid) {
  std::vector<pid_t> zombies;
  auto entries = ListDirectory("/proc");
  if (!entries) return zombies;
  for (const std::string& e : *entries) {
    auto child = ParseInt64(e, "pid");
    if (!child) continue;
    const std::optional<ProcStat> stat = ReadProcStat(e);
    if (stat && stat->ppid == pid && stat->state == 'Z') {
      zombies.push_back(static_cast<pid_t>(*child));
    }
  }
  return zombies;
}

size_t OpenDescriptors(pid_t pid) {
  auto fds = ListDirectory("/proc/" + std::to_string(pid) + "/fd");
  return fds ? fds->size() : 0;
}

}  // namespace cellhouse::testing
