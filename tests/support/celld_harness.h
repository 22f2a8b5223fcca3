// Runs the real binaries for end-to-end tests: a celld with its own socket, policy directory
// and cgroup subtree (so tests can run side by side), and cellctl, as root or as another uid.
//
//   TempDir dir;
//   std::string model = GenerateModel(dir, "tiny", 7);          // cellmodel make
//   WritePolicy(dir.File("policies"), "default", TestPolicy({...}));
//   auto celld = CelldProcess::Start(dir, {.model = model, .policy_dir = dir.File("policies")});
//   CommandResult r = RunCellctl(celld->socket(), {"generate", "--prompt", "hi"});
//   EXPECT_EQ(r.exit_code, 0);
//   EXPECT_TRUE(celld->Terminate().Success());
#ifndef CELLHOUSE_TESTS_SUPPORT_CELLD_HARNESS_H_
#define CELLHOUSE_TESTS_SUPPORT_CELLD_HARNESS_H_

#include <sys/types.h>

#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "tests/support/test_env.h"

namespace cellhouse::testing {

struct CelldOptions {
  std::string model;
  std::string policy_dir;  // empty: the built-in default policy
  std::string zygote;      // empty: cell-zygote beside celld
  std::vector<std::string> extra_args;
  bool cgroups = true;
  // Runs celld through this command, e.g. {"taskset", "-c", "0"}.
  std::vector<std::string> prefix;
  // --cgroup-subtree; empty: a name unique to this CelldProcess.
  std::string subtree;
  // Pass no --cgroup-subtree: celld picks its instance's own (cgroup::InstanceSubtree of its
  // socket), which subtree() then names.
  bool default_subtree = false;
};

class CelldProcess {
 public:
  // Starts celld and waits until its socket accepts connections (or it exits: the error then
  // holds its log).
  static Result<std::unique_ptr<CelldProcess>> Start(const TempDir& dir,
                                                     const CelldOptions& options);
  ~CelldProcess();

  const std::string& socket() const { return socket_; }
  pid_t pid() const { return process_.pid(); }
  const std::string& subtree() const { return subtree_; }
  // Everything celld wrote to stderr so far.
  std::string Log() const;
  // SIGTERM, then waits up to timeout_ms (then SIGKILL, and the status says so).
  ExitStatus Terminate(int timeout_ms = 30'000);
  // SIGKILL, as a crash would: celld cleans up nothing. Leaves the subtree for a successor.
  ExitStatus Crash();
  bool running() const { return !process_.reaped(); }

 private:
  CelldProcess() = default;
  ChildProcess process_;
  std::string socket_;
  std::string log_path_;
  std::string subtree_;
};

// Calls `done` every 10 ms until it returns true (then true), or until timeout_ms has passed
// (then false). For waiting on what celld does after it has answered (reaping a worker,
// recording a detach): the event, not a guess at how long it takes. The default is a bound on a
// hang, not a claim about speed.
bool PollUntil(const std::function<bool()>& done, int timeout_ms = 60'000);

struct CommandResult {
  int exit_code = -1;  // -1: killed by a signal (see status)
  ExitStatus status;
  std::string out;
  std::string err;
};

// Runs a program to completion, capturing stdout and stderr; `stdin_text` is fed to it. With
// `as_uid`, it runs as that uid and gid (through setpriv, groups cleared).
CommandResult RunCommand(const std::vector<std::string>& argv, const std::string& stdin_text = "",
                         std::optional<uid_t> as_uid = std::nullopt, int timeout_ms = 120'000);
CommandResult RunCellctl(const std::string& socket, const std::vector<std::string>& args,
                         std::optional<uid_t> as_uid = std::nullopt,
                         const std::string& stdin_text = "");

// cellmodel make --preset PRESET --seed SEED -o DIR/PRESET-SEED.bin (and its tokenizer); extra
// flags after. Returns the model path; fails the test on error.
std::string GenerateModel(const TempDir& dir, const std::string& preset, int seed,
                          const std::vector<std::string>& extra = {});

// What the test policies vary; everything else is the shipped default's.
struct PolicySpec {
  std::string name = "default";
  std::vector<uid_t> uids = {0};
  uint32_t host_uid_first = 0;  // 0: derived from the name and the test's pid
  uint64_t memory_max = 256ull << 20;
  uint32_t context_length = 0;  // 0: the model's
  uint32_t max_new_tokens = 0;
  uint64_t idle_timeout_seconds = 60;
  uint64_t detached_grace_seconds = 0;  // 0: the default (60, or the idle timeout if shorter)
  uint32_t max_sessions = 64;
  uint32_t max_sessions_per_tenant = 64;
  uint64_t pids_max = 0;                 // 0: the default
  uint32_t cpu_weight = 0;               // 0: the default
  std::vector<std::string> extra_allow;  // seccomp additions
  std::string extra_text;                // appended verbatim (text format)
};
std::string PolicyText(const PolicySpec& spec);
// Writes DIR/NAME.textproto.
void WritePolicy(const std::string& dir, const PolicySpec& spec);

// The generated text `cellmodel run` prints after the prompt, for comparison with a session.
std::string EngineReference(const std::string& model, const std::string& prompt, int max_tokens,
                            double temperature, uint64_t seed);

// The directories of `pid`'s cgroup in every hierarchy (one per v1 controller, and the v2 one
// under both /sys/fs/cgroup and /sys/fs/cgroup/unified), whether they exist or not.
std::vector<std::string> CgroupDirs(pid_t pid);
// The directories `subtree` would have under this process's own cgroup in every hierarchy
// (v1 controllers and v2), whether they exist or not.
std::vector<std::string> CgroupSubtreeDirs(const std::string& subtree);
// Kills what is left in them and removes them, deepest first. Returns what existed.
std::vector<std::string> RemoveCgroupSubtree(const std::string& subtree);

// `pid`'s state letter from /proc/PID/stat ('R', 'S', 'T', 'Z', ...), '?' when it cannot be read.
char ProcessState(pid_t pid);

// Processes whose parent is `pid` that are zombies.
std::vector<pid_t> ZombieChildren(pid_t pid);
// Open descriptors of `pid` (entries of /proc/PID/fd).
size_t OpenDescriptors(pid_t pid);

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_SUPPORT_CELLD_HARNESS_H_
