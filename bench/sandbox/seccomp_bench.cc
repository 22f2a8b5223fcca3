// seccomp_bench: what the worker's seccomp filter costs per system call, measured as a tight
// loop of cheap calls in a forked child with and without the filter a policy compiles to.
//
//   build/bin/seccomp_bench [--policy policy/examples/default.textproto] [--iterations 2000000]
//                           [--repeats 7] [--quick] [--json FILE]
//
// Each sample forks a child that sets PR_SET_NO_NEW_PRIVS (every mode, so only the filter
// differs), installs a filter exactly as the worker does (seccomp(SECCOMP_SET_MODE_FILTER),
// seccomp(2)), then times `--iterations` calls and writes the nanoseconds per call to a pipe.
// Three modes: no filter; a one-instruction filter that allows everything (what any filter
// costs: the system call entry takes its slow path once a task has one); the policy's filter.
// Modes rotate sample by sample, so drift in the machine's load reaches all alike; the figure
// is the median over `--repeats` children.
//
// Three calls, all on the policy's allow-list:
//   getpid               allowed for any arguments
//   read of 0 bytes      allowed for any arguments (the worker's most frequent call, with write)
//   mprotect(PROT_READ)  allowed only when the protection lacks PROT_EXEC: an argument check
// Since Linux 5.11 the kernel caches, per architecture and system call number, which calls a
// filter allows whatever their arguments and skips running the program for them
// (kernel/seccomp.c, seccomp_cache_check_allow): for the first two only the entry's slow path
// should remain, the third runs the BPF program. Figures only: nothing here asserts anything
// about time.
#include <fcntl.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/print.h"
#include "base/unique_fd.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"
#include "policy/policy.h"
#include "worker/sandbox/process_attrs.h"

namespace cellhouse::bench {
namespace {

struct Options {
  BenchFlags common;
  std::string policy = "policy/examples/default.textproto";
  int64_t iterations = 2'000'000;
  int64_t repeats = 7;
};

enum class Call { kGetpid, kReadZero, kMprotect };

struct CallInfo {
  Call call;
  const char* key;
  const char* description;
  const char* syscall;  // must be on the policy's allow-list
};

constexpr CallInfo kCalls[] = {
    {Call::kGetpid, "getpid", "getpid()", "getpid"},
    {Call::kReadZero, "read0", "read(pipe, buf, 0)", "read"},
    {Call::kMprotect, "mprotect", "mprotect(page, 4096, PROT_READ)", "mprotect"},
};

// The timed loop, in the child. Raw syscall(2) so glibc can answer nothing from a cache.
int64_t LoopNanos(Call call, int64_t iterations, int read_fd, void* page) {
  char byte = 0;
  const int64_t start = MonotonicNanos();  // the vDSO: no system call, nothing filtered
  for (int64_t i = 0; i < iterations; ++i) {
    switch (call) {
      case Call::kGetpid:
        static_cast<void>(::syscall(SYS_getpid));
        break;
      case Call::kReadZero:
        static_cast<void>(::syscall(SYS_read, read_fd, &byte, 0));
        break;
      case Call::kMprotect:
        static_cast<void>(::syscall(SYS_mprotect, page, 4096, PROT_READ));
        break;
    }
  }
  return MonotonicNanos() - start;
}

// One child: returns nanoseconds per call. `program` null: no filter.
Result<double> Sample(Call call, int64_t iterations, const sock_fprog* program) {
  int fds[2];
  if (::pipe2(fds, O_CLOEXEC) != 0) return Error::FromErrno(errno, "pipe2");
  UniqueFd read_end(fds[0]), write_end(fds[1]);
  int zero[2];
  if (::pipe2(zero, O_CLOEXEC) != 0) return Error::FromErrno(errno, "pipe2");
  UniqueFd zero_read(zero[0]), zero_write(zero[1]);
  void* page = ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (page == MAP_FAILED) return Error::FromErrno(errno, "mmap a page");
  // This program is single-threaded: the child may run ordinary code.
  const pid_t pid = ::fork();
  if (pid < 0) return Error::FromErrno(errno, "fork");
  if (pid == 0) {
    int64_t result = -1;
    if (sandbox::SetNoNewPrivsInChild() == 0 &&
        (program == nullptr || sandbox::InstallSeccompInChild(*program) == 0)) {
      result = LoopNanos(call, iterations, zero_read.get(), page);
    }
    // write(2) and exit_group(2) are on the allow-list too.
    static_cast<void>(::write(write_end.get(), &result, sizeof(result)));
    ::_exit(result < 0 ? 1 : 0);
  }
  write_end.reset();
  int64_t nanos = -1;
  const ssize_t got = ::read(read_end.get(), &nanos, sizeof(nanos));
  int status = 0;
  static_cast<void>(::waitpid(pid, &status, 0));
  ::munmap(page, 4096);
  if (WIFSIGNALED(status)) {
    return Error(Format("the child was killed by signal %d (SIGSYS: the call is not allowed)",
                        WTERMSIG(status)));
  }
  if (got != sizeof(nanos) || nanos < 0) return Error("the child could not install the filter");
  return static_cast<double>(nanos) / static_cast<double>(iterations);
}

Status Run(const Options& o) {
  CH_ASSIGN_OR_RETURN(auto policy, policy::LoadPolicyFile(o.policy, nullptr));
  const std::vector<std::string>& allowed = policy->allowed_syscalls();
  sock_fprog program{};
  program.len = static_cast<uint16_t>(policy->bpf().size());
  // seccomp(2) takes a non-const pointer but does not write through it.
  program.filter = const_cast<sock_filter*>(policy->bpf().data());
  Printf(stdout,
         "seccomp_bench: policy %s (%s), filter of %zu BPF instructions, %zu calls allowed\n",
         policy->proto().name().c_str(), o.policy.c_str(), policy->bpf().size(), allowed.size());
  Printf(stdout, "  %lld calls per child, median of %lld children per figure%s\n",
         static_cast<long long>(o.iterations), static_cast<long long>(o.repeats),
         o.common.quick ? ", --quick" : "");
  sock_filter allow_all_insn = BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW);
  const sock_fprog allow_all{.len = 1, .filter = &allow_all_insn};
  Table table({"system call", "no filter ns", "allow-all ns", "policy ns", "cost ns", "ratio"});
  std::vector<std::string> items;
  for (const CallInfo& c : kCalls) {
    if (!std::binary_search(allowed.begin(), allowed.end(), std::string(c.syscall))) {
      Printf(stderr, "seccomp_bench: %s is not on the policy's allow-list; skipped\n", c.syscall);
      continue;
    }
    std::vector<double> samples[3];  // no filter, allow-all, the policy's
    const sock_fprog* programs[3] = {nullptr, &allow_all, &program};
    for (int64_t r = 0; r < o.repeats; ++r) {
      for (int64_t k = 0; k < 3; ++k) {  // rotate which mode goes first
        const auto mode = static_cast<size_t>((r + k) % 3);
        CH_ASSIGN_OR_RETURN(double ns, Sample(c.call, o.iterations, programs[mode]));
        samples[mode].push_back(ns);
      }
    }
    const Summary b = Summarize(samples[0]), a = Summarize(samples[1]), f = Summarize(samples[2]);
    table.AddRow({c.description, Format("%.1f", b.p50), Format("%.1f", a.p50),
                  Format("%.1f", f.p50), Format("%.1f", f.p50 - b.p50),
                  Format("%.2f", b.p50 > 0 ? f.p50 / b.p50 : 0)});
    items.push_back(cli::JsonObject()
                        .Add("call", c.key)
                        .Add("description", c.description)
                        .AddRaw("no_filter_ns", SummaryJson(b))
                        .AddRaw("allow_all_ns", SummaryJson(a))
                        .AddRaw("filter_ns", SummaryJson(f))
                        .Add("cost_ns", f.p50 - b.p50)
                        .Add("ratio", b.p50 > 0 ? f.p50 / b.p50 : 0.0)
                        .Render());
  }
  table.Print(stdout);
  return WriteJson(o.common.json_path,
                   cli::JsonObject()
                       .Add("benchmark", "seccomp")
                       .Add("quick", o.common.quick)
                       .Add("policy", policy->proto().name())
                       .Add("filter_instructions", static_cast<uint64_t>(policy->bpf().size()))
                       .Add("allowed_syscalls", static_cast<uint64_t>(allowed.size()))
                       .Add("iterations", o.iterations)
                       .Add("repeats", o.repeats)
                       .AddRaw("calls", cli::JsonArray(items))
                       .Render());
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("seccomp_bench [--policy FILE] [--quick] [--json FILE]",
                "Nanoseconds per system call in a tight loop with and without the seccomp "
                "filter compiled from a policy. Prints figures; asserts nothing about time.");
  AddBenchFlags(flags, &o.common);
  flags.String("policy", &o.policy, "FILE", "the policy whose filter is measured");
  flags.Int("iterations", &o.iterations, "N", "calls per child (default 2000000; --quick 500000)");
  flags.Int("repeats", &o.repeats, "N", "children per mode and call (default 7; --quick 3)");
  if (std::optional<int> done = ParseBenchFlags(flags, "seccomp_bench", argc, argv)) {
    return *done;
  }
  if (o.common.quick) {
    if (!flags.IsSet("iterations")) o.iterations = 500'000;
    if (!flags.IsSet("repeats")) o.repeats = 3;
  }
  if (o.iterations < 1 || o.repeats < 1) {
    Printf(stderr, "seccomp_bench: --iterations and --repeats must be positive\n");
    return 2;
  }
  Status st = Run(o);
  if (!st) {
    Printf(stderr, "seccomp_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
