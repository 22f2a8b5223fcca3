// What the session benchmarks share: summary statistics, a table printer, the --json/--quick
// flags, a private work directory, generated models and policies, a celld of their own (own
// socket, policy directory and --cgroup-subtree), the sandbox step timings celld logs, process
// memory from /proc/PID/smaps_rollup, and timing of a command (the unshare/bwrap baselines).
//
//   BenchFlags common;
//   FlagSet flags("session_open_bench [--quick] [--json FILE]", "...");
//   AddBenchFlags(flags, &common);
//   CH_ASSIGN_OR_RETURN(WorkDir dir, WorkDir::Create(common.keep));  // dir.Keep() on failure
//   CH_ASSIGN_OR_RETURN(std::string model, MakeModel(dir, "15m", 1));
//   CH_RETURN_IF_ERROR(WritePolicy(dir.File("policies"), BenchPolicy{}));
//   CH_ASSIGN_OR_RETURN(auto celld, Celld::Start(dir, {.model = model, ...}));
//   ... cli::SessionClient::Open(celld->socket(), {}) ...
//   CH_RETURN_IF_ERROR(celld->Stop());
//
// Benchmarks print figures and never assert anything about time: a slow machine makes a slow
// figure, not a failure. Only a broken session (an open refused, a generation that errs) fails.
#ifndef CELLHOUSE_BENCH_SESSIONS_BENCH_COMMON_H_
#define CELLHOUSE_BENCH_SESSIONS_BENCH_COMMON_H_

#include <sys/types.h>

#include <cstdint>
#include <cstdio>
#include <memory>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "base/flags.h"
#include "base/process.h"
#include "base/result.h"
#include "ipc/api.pb.h"

namespace cellhouse::bench {

// ---- statistics ----

struct Summary {
  size_t n = 0;
  double min = 0, p50 = 0, p90 = 0, p99 = 0, max = 0, mean = 0;
};
// Percentiles by the nearest-rank method (p99 of 100 samples is the 99th smallest).
Summary Summarize(std::vector<double> samples);
double Median(std::vector<double> samples);
// {"n":..,"min":..,"p50":..,"p90":..,"p99":..,"max":..,"mean":..}
std::string SummaryJson(const Summary& s);

// ---- output ----

// A plain text table, columns right-aligned except the first.
class Table {
 public:
  explicit Table(std::vector<std::string> headers) : headers_(std::move(headers)) {}
  void AddRow(std::vector<std::string> cells) { rows_.push_back(std::move(cells)); }
  void Print(std::FILE* out) const;

 private:
  std::vector<std::string> headers_;
  std::vector<std::vector<std::string>> rows_;
};

// printf-style formatting into a std::string.
__attribute__((format(printf, 1, 2))) std::string Format(const char* format, ...);

// ---- flags ----

struct BenchFlags {
  bool quick = false;     // small N: a CI smoke run within about three minutes
  std::string json_path;  // also write machine-readable results here
  bool keep = false;      // keep the work directory (models, policies, celld logs)
};
void AddBenchFlags(FlagSet& flags, BenchFlags* out);
// Parses a benchmark's command line (flags only, no positional arguments). Returns the exit
// status when the program is done already (a usage error: 2, said on stderr; --help: 0, usage
// on stdout), nullopt to go on.
std::optional<int> ParseBenchFlags(FlagSet& flags, std::string_view program, int argc, char** argv);
// Writes `json` (one object) to `path`, or does nothing when path is empty.
Status WriteJson(const std::string& path, const std::string& json);

// The engine (linked by some benchmarks, and the zygote) must run with one OpenBLAS thread, and
// OpenBLAS reads that from the environment in its library constructor, before main: re-executes
// this program with OPENBLAS_NUM_THREADS=1 unless it is already set so. Returns only on failure.
Status ReexecWithOneBlasThread(char** argv);

// ---- environment ----

// A fresh directory under /tmp with a short name (Unix socket paths must stay under 108 bytes),
// removed with its contents on destruction unless kept.
class WorkDir {
 public:
  static Result<WorkDir> Create(bool keep);
  WorkDir(WorkDir&& other) noexcept;
  WorkDir& operator=(WorkDir&&) = delete;
  WorkDir(const WorkDir&) = delete;
  WorkDir& operator=(const WorkDir&) = delete;
  ~WorkDir();
  const std::string& path() const { return path_; }
  // Keeps the directory after all (a benchmark that failed: its celld logs tell why).
  void Keep() { keep_ = true; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  WorkDir(std::string path, bool keep) : path_(std::move(path)), keep_(keep) {}
  std::string path_;
  bool keep_ = false;
};

// A program built beside this benchmark (build/bin/celld, ...).
Result<std::string> SiblingBinary(const std::string& name);

// cellmodel make --preset PRESET --seed SEED -o DIR/PRESET-SEED.bin; returns the model's path
// (its tokenizer is PATH.tokenizer).
Result<std::string> MakeModel(const WorkDir& dir, const std::string& preset, int seed);
// `cellmodel quantize` of an fp32 model made by MakeModel, with its tokenizer beside it; the path
// of the int8 file.
Result<std::string> QuantizeModel(const WorkDir& dir, const std::string& fp32_path, int group_size);
// `cellmodel convert` of an fp32 model made by MakeModel to GGUF of `type` (Q8_0, Q4_K_M, ...);
// the path of the GGUF file.
Result<std::string> ConvertModel(const WorkDir& dir, const std::string& fp32_path,
                                 const std::string& type);

// A policy like the shipped `default` (all six namespaces, the built-in allow-list, one CPU)
// with caps and a host uid range of its own, so benchmarks can run beside other daemons.
struct BenchPolicy {
  std::string name = "default";
  uint64_t memory_max_bytes = 1ull << 30;
  uint64_t memory_high_bytes = 896ull << 20;
  uint32_t cpu_percent = 100;  // 0: no CPU quota
  uint32_t max_sessions = 64;
  uint32_t max_sessions_per_tenant = 64;
  uint32_t context_length = 0;  // 0: the model's
  uint32_t max_new_tokens = 0;  // 0: the context length
  uint64_t idle_timeout_seconds = 600;
  // Tells apart the host uid ranges of daemons that run at once with the same policy names.
  uint32_t host_range_salt = 0;
};
std::string PolicyText(const BenchPolicy& policy);
// Writes DIR/NAME.textproto (creating DIR).
Status WritePolicy(const std::string& dir, const BenchPolicy& policy);

// ---- celld ----

struct CelldConfig {
  std::string name;  // tells apart the sockets, logs and cgroup subtrees of one run's daemons
  std::string model;
  std::string policy_dir;
  bool cgroups = true;
  bool sandbox = true;
  std::vector<std::string> extra_args;  // e.g. {"--memory-budget", "16G"}
};

class Celld {
 public:
  // Starts celld (--log-level debug, so its log holds the sandbox step timings) and waits until
  // its socket accepts connections.
  static Result<std::unique_ptr<Celld>> Start(const WorkDir& dir, const CelldConfig& config);
  Celld(const Celld&) = delete;
  Celld& operator=(const Celld&) = delete;
  // Stops celld if Stop() was not called (a benchmark that failed half-way): SIGTERM, then
  // SIGKILL after 30 s.
  ~Celld();

  const std::string& socket() const { return socket_; }
  const std::string& name() const { return name_; }
  pid_t pid() const { return process_.pid(); }
  std::string Log() const;
  // SIGTERM and wait; an unclean end is an error that quotes the end of the log.
  Status Stop();

 private:
  Celld() = default;
  ChildProcess process_;
  std::string name_;
  std::string socket_;
  std::string log_path_;
};

// The sessions celld lists (as root: all of them).
Result<std::vector<api::SessionInfo>> ListSessions(const std::string& socket);

// One line of celld's debug log "session ID sandbox steps: clone3=52us uid_map=31us ...":
// the zygote's SpawnReply timings, step name and microseconds, in order.
using StepTimings = std::vector<std::pair<std::string, uint64_t>>;
std::vector<StepTimings> ParseSandboxSteps(const std::string& log);

// ---- processes ----

// Time of posix_spawn + waitpid of `argv` (stdout and stderr to /dev/null), in milliseconds.
// posix_spawn is glibc's clone(CLONE_VM | CLONE_VFORK): the cheapest way to start a program,
// so the baselines are not slowed by this benchmark's own size. A non-zero exit is an error.
Result<double> TimeCommandMs(const std::vector<std::string>& argv);

// Runs `argv` to completion, capturing stdout and stderr; a non-zero exit is an error that
// quotes stderr. `wall_ms` is the time from spawn to exit.
struct CommandOutput {
  std::string out;
  std::string err;
  double wall_ms = 0;
};
Result<CommandOutput> RunAndCapture(const std::vector<std::string>& argv);

// From /proc/PID/smaps_rollup, in bytes.
struct ProcessMemory {
  uint64_t rss = 0;
  uint64_t pss = 0;
  uint64_t pss_anon = 0;
  uint64_t pss_file = 0;
  uint64_t pss_shmem = 0;
};
Result<ProcessMemory> ReadProcessMemory(pid_t pid);

// From /proc/PID/schedstat (or /proc/thread-self/schedstat for pid 0): nanoseconds the task
// ran on a CPU, and nanoseconds it waited on a run queue (ready but not running).
struct SchedStat {
  int64_t on_cpu_ns = 0;
  int64_t waiting_ns = 0;
};
Result<SchedStat> ReadSchedStat(pid_t pid);

// Children of `parent` (from /proc/*/stat) whose comm is `comm` (any comm when empty).
std::vector<pid_t> ChildrenOf(pid_t parent, const std::string& comm = "");

}  // namespace cellhouse::bench

#endif  // CELLHOUSE_BENCH_SESSIONS_BENCH_COMMON_H_
