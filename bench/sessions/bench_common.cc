#include "bench/sessions/bench_common.h"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdarg>
#include <cstring>
#include <filesystem>
#include <system_error>
#include <thread>

#include "base/clock.h"
#include "base/io.h"
#include "base/print.h"
#include "base/strings.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"
#include "ipc/client.h"

extern char** environ;  // NOLINT(readability-identifier-naming): POSIX's name

namespace cellhouse::bench {

// ---- statistics ----

namespace {

// Nearest rank: the smallest sample with at least p of the samples at or below it.
double Percentile(const std::vector<double>& sorted, double p) {
  if (sorted.empty()) return 0;
  double rank = std::ceil(p * static_cast<double>(sorted.size()));
  size_t index = rank < 1 ? 0 : static_cast<size_t>(rank) - 1;
  return sorted[std::min(index, sorted.size() - 1)];
}

}  // namespace

Summary Summarize(std::vector<double> samples) {
  Summary s;
  if (samples.empty()) return s;
  std::sort(samples.begin(), samples.end());
  s.n = samples.size();
  s.min = samples.front();
  s.max = samples.back();
  s.p50 = Percentile(samples, 0.50);
  s.p90 = Percentile(samples, 0.90);
  s.p99 = Percentile(samples, 0.99);
  double sum = 0;
  for (double v : samples) sum += v;
  s.mean = sum / static_cast<double>(samples.size());
  return s;
}

double Median(std::vector<double> samples) { return Summarize(std::move(samples)).p50; }

std::string SummaryJson(const Summary& s) {
  cli::JsonObject o;
  o.Add("n", static_cast<uint64_t>(s.n))
      .Add("min", s.min)
      .Add("p50", s.p50)
      .Add("p90", s.p90)
      .Add("p99", s.p99)
      .Add("max", s.max)
      .Add("mean", s.mean);
  return o.Render();
}

// ---- output ----

std::string Format(const char* format, ...) {
  va_list args;
  va_start(args, format);
  va_list copy;
  va_copy(copy, args);
  int n = std::vsnprintf(nullptr, 0, format, copy);
  va_end(copy);
  std::string out(n > 0 ? static_cast<size_t>(n) : 0, '\0');
  if (n > 0) static_cast<void>(std::vsnprintf(out.data(), out.size() + 1, format, args));
  va_end(args);
  return out;
}

void Table::Print(std::FILE* out) const {
  std::vector<size_t> width(headers_.size(), 0);
  auto widen = [&](const std::vector<std::string>& row) {
    for (size_t i = 0; i < row.size() && i < width.size(); ++i) {
      width[i] = std::max(width[i], row[i].size());
    }
  };
  widen(headers_);
  for (const auto& row : rows_) widen(row);
  auto line = [&](const std::vector<std::string>& row) {
    std::string text;
    for (size_t i = 0; i < width.size(); ++i) {
      std::string cell = i < row.size() ? row[i] : "";
      std::string pad(width[i] - std::min(width[i], cell.size()), ' ');
      if (i == 0) {
        text += cell;
        text += pad;
      } else {
        text += "  ";
        text += pad;
        text += cell;
      }
    }
    while (!text.empty() && text.back() == ' ') text.pop_back();
    Printf(out, "%s\n", text.c_str());
  };
  line(headers_);
  size_t total = 0;
  for (size_t w : width) total += w + 2;
  Printf(out, "%s\n", std::string(total > 2 ? total - 2 : 0, '-').c_str());
  for (const auto& row : rows_) line(row);
}

// ---- flags ----

void AddBenchFlags(FlagSet& flags, BenchFlags* out) {
  flags.Bool("quick", &out->quick, "small N: a smoke run for CI (about three minutes at most)");
  flags.String("json", &out->json_path, "FILE", "also write the results as JSON to FILE");
  flags.Bool("keep", &out->keep, "keep the work directory (models, policies, celld logs)");
}

std::optional<int> ParseBenchFlags(FlagSet& flags, std::string_view program, int argc,
                                   char** argv) {
  Result<std::vector<std::string>> rest = flags.Parse(argc - 1, argv + 1);
  if (!rest || !rest->empty()) {
    std::string why = rest ? "unexpected argument " + Quote(rest->front()) : rest.error().message();
    Printf(stderr, "%.*s: %s\n", static_cast<int>(program.size()), program.data(), why.c_str());
    return 2;
  }
  if (flags.help_requested()) {
    Printf(stdout, "%s", flags.Usage().c_str());
    return 0;
  }
  return std::nullopt;
}

Status WriteJson(const std::string& path, const std::string& json) {
  if (path.empty()) return Ok();
  return CreateFileWithContent(path, json + "\n", 0644);
}

Status ReexecWithOneBlasThread(char** argv) {
  // NOLINTNEXTLINE(concurrency-mt-unsafe): start-up, before any thread of ours exists
  const char* threads = ::getenv("OPENBLAS_NUM_THREADS");
  if (threads != nullptr && std::strcmp(threads, "1") == 0) return Ok();
  // NOLINTNEXTLINE(concurrency-mt-unsafe): as above
  if (::setenv("OPENBLAS_NUM_THREADS", "1", 1) != 0) {
    return Error::FromErrno(errno, "setenv OPENBLAS_NUM_THREADS");
  }
  ::execv("/proc/self/exe", argv);
  return Error::FromErrno(errno, "re-executing /proc/self/exe with OPENBLAS_NUM_THREADS=1");
}

// ---- environment ----

Result<WorkDir> WorkDir::Create(bool keep) {
  std::string templ = "/tmp/chb-XXXXXX";
  if (::mkdtemp(templ.data()) == nullptr) return Error::FromErrno(errno, "mkdtemp " + templ);
  // Tenants are root here, but the model must be readable by the zygote whatever its uid.
  ::chmod(templ.c_str(), 0755);
  return WorkDir(templ, keep);
}

WorkDir::WorkDir(WorkDir&& other) noexcept : path_(std::move(other.path_)), keep_(other.keep_) {
  other.path_.clear();
}

WorkDir::~WorkDir() {
  if (path_.empty()) return;
  if (keep_) {
    Printf(stderr, "work directory kept: %s\n", path_.c_str());
    return;
  }
  std::error_code ignored;
  std::filesystem::remove_all(path_, ignored);
}

Result<std::string> SiblingBinary(const std::string& name) {
  CH_ASSIGN_OR_RETURN(std::string dir, SelfExeDir());
  std::string path = dir + "/" + name;
  if (::access(path.c_str(), X_OK) != 0) {
    return Error::FromErrno(errno, "finding " + Quote(name) + " beside this benchmark (" + path +
                                       "); build the whole tree first");
  }
  return path;
}

namespace {

// Runs `argv` to completion with its output in `log_path`; a failure quotes the log.
Status RunQuietly(const std::vector<std::string>& argv, const std::string& log_path) {
  UniqueFd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return Error::FromErrno(errno, "open " + log_path);
  CH_ASSIGN_OR_RETURN(ChildProcess child,
                      SpawnProgram({.argv = argv, .fds = {{1, log.get()}, {2, log.get()}}}));
  CH_ASSIGN_OR_RETURN(ExitStatus status, child.Wait());
  if (!status.Success()) {
    auto text = ReadFileToString(log_path, 1 << 16);
    return Error(argv[0] + " " + status.ToString() + ": " + (text ? *text : ""));
  }
  return Ok();
}

}  // namespace

Result<std::string> MakeModel(const WorkDir& dir, const std::string& preset, int seed) {
  CH_ASSIGN_OR_RETURN(std::string cellmodel, SiblingBinary("cellmodel"));
  std::string path = dir.File(preset + "-" + std::to_string(seed) + ".bin");
  CH_RETURN_IF_ERROR(RunQuietly(
      {cellmodel, "make", "--preset", preset, "--seed", std::to_string(seed), "-o", path},
      dir.File("cellmodel-make.log")));
  ::chmod(path.c_str(), 0644);
  ::chmod((path + ".tokenizer").c_str(), 0644);
  return path;
}

Result<std::string> QuantizeModel(const WorkDir& dir, const std::string& fp32_path,
                                  int group_size) {
  CH_ASSIGN_OR_RETURN(std::string cellmodel, SiblingBinary("cellmodel"));
  std::string path = fp32_path + ".q8-g" + std::to_string(group_size);
  CH_RETURN_IF_ERROR(RunQuietly({cellmodel, "quantize", "--in", fp32_path, "--out", path,
                                 "--group-size", std::to_string(group_size)},
                                dir.File("cellmodel-quantize.log")));
  ::chmod(path.c_str(), 0644);
  ::chmod((path + ".tokenizer").c_str(), 0644);
  return path;
}

Result<std::string> ConvertModel(const WorkDir& dir, const std::string& fp32_path,
                                 const std::string& type) {
  CH_ASSIGN_OR_RETURN(std::string cellmodel, SiblingBinary("cellmodel"));
  std::string path = fp32_path + "." + type + ".gguf";
  CH_RETURN_IF_ERROR(
      RunQuietly({cellmodel, "convert", "--in", fp32_path, "--out", path, "--type", type},
                 dir.File("cellmodel-convert.log")));
  ::chmod(path.c_str(), 0644);
  return path;
}

std::string PolicyText(const BenchPolicy& p) {
  // A host uid range of this process's own, far from real accounts and from the tests' ranges
  // (0x60000000 upwards) and the shipped default's (0x70000000).
  uint32_t h = 0;
  for (char c : p.name) h = h * 31 + static_cast<unsigned char>(c);
  h += p.host_range_salt;
  uint32_t host_first =
      0x48000000u + (static_cast<uint32_t>(::getpid()) % 2048) * 0x10000u + (h % 8) * 0x2000u;
  std::string text = "# Written by the session benchmarks: the shipped default's sandbox.\n";
  text += "name: \"" + p.name + "\"\n";
  text += "description: \"benchmark policy (the default's namespaces and allow-list)\"\n";
  text += "uids: 0\n";
  text += Format("host_uids { first: %u count: 8192 }\n", host_first);
  text += "cgroup {\n";
  text += Format("  memory_max_bytes: %llu\n", static_cast<unsigned long long>(p.memory_max_bytes));
  text +=
      Format("  memory_high_bytes: %llu\n", static_cast<unsigned long long>(p.memory_high_bytes));
  if (p.cpu_percent != 0) text += Format("  cpu_percent: %u\n", p.cpu_percent);
  text += "}\n";
  text += "budgets {\n";
  if (p.context_length != 0) text += Format("  context_length: %u\n", p.context_length);
  if (p.max_new_tokens != 0) text += Format("  max_new_tokens: %u\n", p.max_new_tokens);
  text += Format("  idle_timeout_seconds: %llu\n",
                 static_cast<unsigned long long>(p.idle_timeout_seconds));
  text += Format("  max_sessions: %u\n", p.max_sessions);
  text += Format("  max_sessions_per_tenant: %u\n", p.max_sessions_per_tenant);
  text += "}\n";
  return text;
}

Status WritePolicy(const std::string& dir, const BenchPolicy& policy) {
  if (::mkdir(dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return Error::FromErrno(errno, "mkdir " + Quote(dir));
  }
  return CreateFileWithContent(dir + "/" + policy.name + ".textproto", PolicyText(policy), 0644);
}

// ---- celld ----

Result<std::unique_ptr<Celld>> Celld::Start(const WorkDir& dir, const CelldConfig& config) {
  CH_ASSIGN_OR_RETURN(std::string binary, SiblingBinary("celld"));
  std::unique_ptr<Celld> celld(new Celld());
  celld->name_ = config.name.empty() ? "celld" : config.name;
  celld->socket_ = dir.File(celld->name_ + ".sock");
  celld->log_path_ = dir.File(celld->name_ + ".log");
  std::string subtree = "bench-" + std::to_string(::getpid()) + "-" + celld->name_;
  std::vector<std::string> argv = {binary,     "--model",          config.model,
                                   "--socket", celld->socket_,     "--log-level",
                                   "debug",    "--cgroup-subtree", subtree};
  if (!config.policy_dir.empty()) {
    argv.insert(argv.end(), {"--policy-dir", config.policy_dir});
  }
  if (!config.cgroups) argv.emplace_back("--no-cgroups");
  if (!config.sandbox) argv.emplace_back("--insecure-no-sandbox");
  argv.insert(argv.end(), config.extra_args.begin(), config.extra_args.end());
  UniqueFd log(::open(celld->log_path_.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644));
  if (!log.valid()) return Error::FromErrno(errno, "open " + celld->log_path_);
  CH_ASSIGN_OR_RETURN(celld->process_,
                      SpawnProgram({.argv = argv, .fds = {{1, log.get()}, {2, log.get()}}}));
  int64_t deadline = MonotonicNanos() + 120 * kNanosPerSecond;
  while (MonotonicNanos() < deadline) {
    if (ipc::ClientConnection::Connect(celld->socket_)) return celld;
    auto ended = celld->process_.TryReap();
    if (ended && ended->has_value()) {
      return Error("celld (" + celld->name_ + ") " + (*ended)->ToString() + " before listening:\n" +
                   celld->Log());
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  return Error("celld (" + celld->name_ + ") did not listen within 120 s:\n" + celld->Log());
}

Celld::~Celld() {
  if (!process_.valid() || process_.reaped()) return;
  // A benchmark that failed half-way: SIGTERM first, so celld removes its cgroup subtree (a
  // SIGKILL would leave it behind), and SIGKILL only if it does not stop.
  static_cast<void>(process_.Kill(SIGTERM));
  pollfd p{process_.pidfd(), POLLIN, 0};
  if (::poll(&p, 1, 30'000) == 0) static_cast<void>(process_.Kill(SIGKILL));
  static_cast<void>(process_.Wait());
}

std::string Celld::Log() const {
  auto text = ReadFileToString(log_path_, 256 << 20);
  return text ? *text : "(no log: " + text.error().message() + ")";
}

Status Celld::Stop() {
  if (process_.reaped()) return Ok();
  CH_RETURN_IF_ERROR(process_.Kill(SIGTERM));
  pollfd p{process_.pidfd(), POLLIN, 0};
  if (::poll(&p, 1, 60'000) == 0) {
    static_cast<void>(process_.Kill(SIGKILL));
    static_cast<void>(process_.Wait());
    return Error("celld (" + name_ + ") did not stop within 60 s of SIGTERM");
  }
  CH_ASSIGN_OR_RETURN(ExitStatus status, process_.Wait());
  if (!status.Success()) {
    std::string log = Log();
    return Error("celld (" + name_ + ") " + status.ToString() + " after SIGTERM; its log ends:\n" +
                 log.substr(log.size() > 4000 ? log.size() - 4000 : 0));
  }
  return Ok();
}

Result<std::vector<api::SessionInfo>> ListSessions(const std::string& socket) {
  api::Request request;
  request.mutable_list_sessions();
  CH_ASSIGN_OR_RETURN(api::Response response, cli::AdminRequest(socket, request));
  if (response.has_error()) return Error("listing sessions: " + response.error().message());
  if (!response.has_sessions()) return Error("listing sessions: unexpected answer");
  return std::vector<api::SessionInfo>(response.sessions().sessions().begin(),
                                       response.sessions().sessions().end());
}

std::vector<StepTimings> ParseSandboxSteps(const std::string& log) {
  static constexpr std::string_view kMarker = " sandbox steps:";
  std::vector<StepTimings> out;
  size_t at = 0;
  while ((at = log.find(kMarker, at)) != std::string::npos) {
    size_t begin = at + kMarker.size();
    size_t end = log.find('\n', begin);
    if (end == std::string::npos) end = log.size();
    std::string_view line(log.data() + begin, end - begin);
    at = end;
    // " name one=12us name two=3us": names may hold spaces, values are digits then "us".
    StepTimings steps;
    size_t pos = 0;
    while (pos < line.size()) {
      size_t eq = line.find('=', pos);
      if (eq == std::string_view::npos) break;
      size_t us = line.find("us", eq);
      if (us == std::string_view::npos) break;
      auto micros = ParseUint64(line.substr(eq + 1, us - eq - 1), "micros");
      if (!micros) break;
      steps.emplace_back(std::string(Trim(line.substr(pos, eq - pos))), *micros);
      pos = us + 2;
    }
    if (!steps.empty()) out.push_back(std::move(steps));
  }
  return out;
}

// ---- processes ----

Result<double> TimeCommandMs(const std::vector<std::string>& argv) {
  std::vector<char*> args;
  args.reserve(argv.size() + 1);
  for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  posix_spawn_file_actions_t actions;
  posix_spawn_file_actions_init(&actions);
  posix_spawn_file_actions_addopen(&actions, 1, "/dev/null", O_WRONLY, 0);
  posix_spawn_file_actions_addopen(&actions, 2, "/dev/null", O_WRONLY, 0);
  int64_t start = MonotonicNanos();
  pid_t pid = -1;
  int rc = ::posix_spawn(&pid, args[0], &actions, nullptr, args.data(), environ);
  posix_spawn_file_actions_destroy(&actions);
  if (rc != 0) return Error::FromErrno(rc, "posix_spawn " + argv[0]);
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0) {
    if (errno != EINTR) return Error::FromErrno(errno, "waitpid " + argv[0]);
  }
  int64_t end = MonotonicNanos();
  if (!WIFEXITED(status) || WEXITSTATUS(status) != 0) {
    return Error(argv[0] + " failed (wait status " + std::to_string(status) + ")");
  }
  return static_cast<double>(end - start) / 1e6;
}

Result<CommandOutput> RunAndCapture(const std::vector<std::string>& argv) {
  CH_ASSIGN_OR_RETURN(FdPair out, MakePipe());
  CH_ASSIGN_OR_RETURN(FdPair err, MakePipe());
  CommandOutput result;
  int64_t start = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(
      ChildProcess child,
      SpawnProgram({.argv = argv, .fds = {{1, out.second.get()}, {2, err.second.get()}}}));
  out.second.reset();
  err.second.reset();
  pollfd fds[2] = {{out.first.get(), POLLIN, 0}, {err.first.get(), POLLIN, 0}};
  int open_streams = 2;
  while (open_streams > 0) {
    if (::poll(fds, 2, -1) < 0) {
      if (errno == EINTR) continue;
      return Error::FromErrno(errno, "poll");
    }
    for (int i = 0; i < 2; ++i) {
      if (fds[i].fd < 0 || fds[i].revents == 0) continue;
      char buf[8192];
      ssize_t n = ::read(fds[i].fd, buf, sizeof(buf));
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) {
        fds[i].fd = -1;
        --open_streams;
        continue;
      }
      (i == 0 ? result.out : result.err).append(buf, static_cast<size_t>(n));
    }
  }
  CH_ASSIGN_OR_RETURN(ExitStatus status, child.Wait());
  result.wall_ms = static_cast<double>(MonotonicNanos() - start) / 1e6;
  if (!status.Success()) return Error(argv[0] + " " + status.ToString() + ": " + result.err);
  return result;
}

Result<ProcessMemory> ReadProcessMemory(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/smaps_rollup";
  CH_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path, 1 << 16));
  ProcessMemory m;
  bool found = false;
  for (std::string_view line : Split(text, '\n')) {
    size_t colon = line.find(':');
    if (colon == std::string_view::npos) continue;
    std::string_view key = line.substr(0, colon);
    std::string_view rest = Trim(line.substr(colon + 1));
    if (rest.size() < 3 || rest.substr(rest.size() - 2) != "kB") continue;
    auto kb = ParseUint64(Trim(rest.substr(0, rest.size() - 2)), key);
    if (!kb) continue;
    uint64_t bytes = *kb * 1024;
    if (key == "Rss") m.rss = bytes;
    if (key == "Pss") {
      m.pss = bytes;
      found = true;
    }
    if (key == "Pss_Anon") m.pss_anon = bytes;
    if (key == "Pss_File") m.pss_file = bytes;
    if (key == "Pss_Shmem") m.pss_shmem = bytes;
  }
  if (!found) return Error(path + " has no Pss line");
  return m;
}

Result<SchedStat> ReadSchedStat(pid_t pid) {
  std::string path =
      pid == 0 ? "/proc/thread-self/schedstat" : "/proc/" + std::to_string(pid) + "/schedstat";
  CH_ASSIGN_OR_RETURN(std::string text, ReadFileToString(path, 4096));
  auto fields = Split(Trim(text), ' ');
  if (fields.size() < 2) return Error(path + ": expected three numbers, got " + Quote(text));
  CH_ASSIGN_OR_RETURN(int64_t on_cpu, ParseInt64(fields[0], path));
  CH_ASSIGN_OR_RETURN(int64_t waiting, ParseInt64(fields[1], path));
  return SchedStat{on_cpu, waiting};
}

std::vector<pid_t> ChildrenOf(pid_t parent, const std::string& comm) {
  std::vector<pid_t> out;
  auto entries = ListDirectory("/proc");
  if (!entries) return out;
  for (const std::string& e : *entries) {
    auto pid = ParseInt64(e, "pid");
    if (!pid) continue;
    auto stat = ReadFileToString("/proc/" + e + "/stat", 4096);
    if (!stat) continue;
    // "pid (comm) S ppid ...": comm may hold spaces and parentheses.
    size_t open = stat->find('(');
    size_t close = stat->rfind(')');
    if (open == std::string::npos || close == std::string::npos || close < open) continue;
    auto fields = Split(std::string_view(*stat).substr(close + 2), ' ');
    if (fields.size() < 2) continue;
    auto ppid = ParseInt64(fields[1], "ppid");
    if (!ppid || *ppid != parent) continue;
    if (!comm.empty() && stat->substr(open + 1, close - open - 1) != comm) continue;
    out.push_back(static_cast<pid_t>(*pid));
  }
  return out;
}

}  // namespace cellhouse::bench
