// What the hardening tests (issue 13) need: code run as another uid in a forked child (as a
// second tenant would run it), celld's memory and CPU time as the kernel counts them, and a
// garbage client that keeps many connections busy the ways a hostile tenant would.
//
//   auto child = RunAs(61000, [&] { return RunHostileClients({.socket = s, .connections = 1000,
//                                                             .duration_ms = 8000}); });
//   ProcessUsage before = UsageOf(celld->pid());
//   ...
//   ExitStatus st = child->Wait();
#ifndef CELLHOUSE_TESTS_E2E_HOSTILE_SUPPORT_H_
#define CELLHOUSE_TESTS_E2E_HOSTILE_SUPPORT_H_

#include <sys/types.h>

#include <cstdint>
#include <functional>
#include <string>

#include "base/process.h"
#include "base/result.h"

namespace cellhouse::testing {

// Forks; the child drops to `uid` (gid `uid`, no supplementary groups), runs `body` and exits
// with what it returns. It dies with the test (PR_SET_PDEATHSIG).
Result<ChildProcess> RunAs(uid_t uid, const std::function<int()>& body);

struct ProcessUsage {
  uint64_t rss_bytes = 0;  // VmRSS
  double cpu_seconds = 0;  // user + system
};
ProcessUsage UsageOf(pid_t pid);

// What a hostile connection does once connected. Whatever celld closes is reconnected at once
// (so connections over celld's share become a reconnect flood).
enum class HostileRole {
  kPipeliner,    // writes as many status requests as the socket takes, never reads
  kTrickler,     // announces a 1 MiB frame, then sends a byte every 100 ms
  kReconnector,  // connects and hangs up, again and again
  kMixed,        // a third of the connections each
};

struct HostileOptions {
  std::string socket;
  int connections = 1000;
  HostileRole role = HostileRole::kMixed;
  int64_t duration_ms = 5000;
  int ready_fd = -1;  // a byte is written here once every connection was tried once
  int stats_fd = -1;  // at the end, "<connections made>\n" is written here
  // When set, the clients run until this descriptor becomes readable (the test writes a byte
  // once what had to happen under the storm has happened); duration_ms is then only a bound
  // for a test that never says so, and reaching it is a failure (return 3).
  int stop_fd = -1;
};

// Runs the hostile clients until duration_ms has passed, or until stop_fd is readable; returns
// 0, 1 if it could not run, or 3 if it ran out of duration_ms while waiting for stop_fd.
int RunHostileClients(const HostileOptions& options);

// A connection's worth of status requests, pipelined.
std::string PipelinedStatusRequests(size_t count);

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_E2E_HOSTILE_SUPPORT_H_
