// The garbage-client storm of issue 13: while 1,000 hostile connections from one uid pipeline
// status requests without reading, announce 1 MiB frames and trickle them, and reconnect as fast
// as celld closes them, another uid's sessions open and stream. What is asserted holds on any
// machine, however loaded: every one of that tenant's sessions is served while the storm lasts
// (the storm runs until they are done), and celld's RSS stays under 64 MB. The latency
// target (p99 open under 100 ms) is a figure, printed here with the quiet baseline beside it;
// the project keeps speed out of assertions, as a loaded CI host makes any bound a coin toss.
#include <sys/resource.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
#include <functional>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "base/clock.h"
#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "tests/e2e/hostile_support.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::RunAs;
using testing::UsageOf;

constexpr uid_t kHostile = 61401;
constexpr uid_t kTenant = 61402;
constexpr int kHostileProcesses = 2;
constexpr int kHostileConnections = 1000;
// Sessions the tenant opens and streams one after another, without and under the storm.
constexpr int kQuietSessions = 20;
constexpr int kStormSessions = 100;
// Only a bound on a storm the test never stops (it stops it once the tenant is done).
constexpr int64_t kStormBoundMs = 240'000;
constexpr uint64_t kMiB = uint64_t{1} << 20;

class StormTest : public testing::CelldTest {};

// Runs in the tenant's child: `count` sessions one after another, each opened, one turn streamed
// and closed; one line per session on `out`: "<open latency us> <tokens>", or "fail <why>".
int TenantSessions(const std::string& socket, int out, int count) {
  int failures = 0;
  for (int i = 0; i < count; ++i) {
    int64_t start = MonotonicNanos();
    auto session = cli::SessionClient::Open(socket, {});
    int64_t opened = MonotonicNanos();
    std::string line;
    if (!session) {
      line = "fail " + session.error().message() + "\n";
      ++failures;
    } else {
      api::Generate g;
      g.set_prompt("Once upon a time");
      g.set_max_new_tokens(16);
      g.set_temperature(0);
      int pieces = 0;
      auto done = session->Generate(g, [&](const api::Piece&) { ++pieces; });
      if (!done || pieces == 0 || !session->Close()) {
        line = "fail " +
               (done ? std::string("no pieces or close failed") : done.error().message()) + "\n";
        ++failures;
      } else {
        line = std::to_string((opened - start) / 1000) + " " + std::to_string(pieces) + "\n";
      }
    }
    if (!WriteFull(out, line, "results")) return 2;
    // A client's pace, not a synchronisation: celld's pool refills between sessions, as it
    // would between one user's.
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  return failures == 0 ? 0 : 1;
}

struct Latencies {
  std::vector<double> ms;  // sorted
  std::vector<std::string> failures;
  double At(double q) const {
    if (ms.empty()) return 0;
    auto i = static_cast<size_t>(std::lround(q * static_cast<double>(ms.size() - 1)));
    return ms[std::min(i, ms.size() - 1)];
  }
};

// Runs TenantSessions as kTenant; `during` is called until it has ended.
Latencies RunTenant(const std::string& socket, int count, const std::function<void()>& during) {
  Latencies result;
  auto results = MakePipe();
  EXPECT_TRUE(results);
  if (!results) return result;
  int results_fd = results->second.get();
  auto tenant = RunAs(
      kTenant, [&socket, results_fd, count] { return TenantSessions(socket, results_fd, count); });
  EXPECT_TRUE(tenant) << tenant.error().message();
  if (!tenant) return result;
  results->second.reset();
  for (;;) {
    during();
    auto ended = tenant->TryReap();
    if (!ended || ended->has_value()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  auto text = ReadFileToString("/proc/self/fd/" + std::to_string(results->first.get()), 1 << 20);
  EXPECT_TRUE(text);
  if (!text) return result;
  for (std::string_view line : Split(*text, '\n')) {
    if (line.empty()) continue;
    if (StartsWith(line, "fail ")) {
      result.failures.emplace_back(line.substr(5));
      continue;
    }
    auto us = ParseUint64(Split(line, ' ')[0], "latency");
    if (us) result.ms.push_back(static_cast<double>(*us) / 1000.0);
  }
  std::sort(result.ms.begin(), result.ms.end());
  return result;
}

TEST_F(StormTest, AnotherTenantOpensAndStreamsWhileAThousandHostileConnectionsRage) {
  testing::PolicySpec spec;
  spec.uids = {0, kTenant};
  testing::WritePolicy(policies_, spec);
  StartCelld({.extra_args = {"--log-level", "info"}});
  std::string socket = celld_->socket();
  // Warm up, then the same sessions without a storm: the machine's own figures, for comparison.
  auto warm = cli::SessionClient::Open(socket, {});
  ASSERT_TRUE(warm) << warm.error().message();
  ASSERT_TRUE(warm->Close());
  Latencies quiet = RunTenant(socket, kQuietSessions, [] {});
  uint64_t rss_before = UsageOf(celld_->pid()).rss_bytes;

  std::vector<ChildProcess> hostile;
  auto ready = MakePipe();
  auto stats = MakePipe();
  auto stop = MakePipe();
  ASSERT_TRUE(ready && stats && stop);
  int ready_fd = ready->second.get();
  int stats_fd = stats->second.get();
  int stop_fd = stop->first.get();
  for (int i = 0; i < kHostileProcesses; ++i) {
    auto child = RunAs(kHostile, [&socket, ready_fd, stats_fd, stop_fd] {
      // The attacker's own CPU burn competes with celld for this machine's two cores, which a
      // real host settles by weighting each user's slice against the system's (systemd puts
      // every user in user-UID.slice). A lower priority stands in for that: what is measured is
      // celld's handling of the garbage, not the CPU scheduler.
      static_cast<void>(::setpriority(PRIO_PROCESS, 0, 10));
      return testing::RunHostileClients({.socket = socket,
                                         .connections = kHostileConnections / kHostileProcesses,
                                         .role = testing::HostileRole::kMixed,
                                         .duration_ms = kStormBoundMs,
                                         .ready_fd = ready_fd,
                                         .stats_fd = stats_fd,
                                         .stop_fd = stop_fd});
    });
    ASSERT_TRUE(child) << child.error().message();
    hostile.push_back(std::move(*child));
  }
  ready->second.reset();
  stats->second.reset();
  for (int i = 0; i < kHostileProcesses; ++i) {
    char byte = 0;
    ASSERT_EQ(::read(ready->first.get(), &byte, 1), 1);
  }
  // Let the storm settle into its steady state before the tenant comes.
  std::this_thread::sleep_for(std::chrono::milliseconds(500));

  uint64_t rss_max = rss_before;
  double cpu_before = UsageOf(celld_->pid()).cpu_seconds;
  int64_t started = MonotonicNanos();
  Latencies storm = RunTenant(socket, kStormSessions, [&] {
    rss_max = std::max(rss_max, UsageOf(celld_->pid()).rss_bytes);
  });
  double cpu = UsageOf(celld_->pid()).cpu_seconds - cpu_before;
  double wall = static_cast<double>(MonotonicNanos() - started) / 1e9;
  // The storm lasted as long as the tenant's sessions did: no hostile client has ended yet.
  for (ChildProcess& h : hostile) {
    auto ended = h.TryReap();
    ASSERT_TRUE(ended);
    EXPECT_FALSE(ended->has_value())
        << "a hostile client ended before the tenant was done: " << (*ended)->ToString();
  }
  ASSERT_EQ(::write(stop->second.get(), "x", 1), 1);
  for (ChildProcess& h : hostile) {
    if (h.reaped()) continue;
    auto st = h.Wait();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->code, 0) << st->ToString();
  }
  auto hostile_text = ReadFileToString("/proc/self/fd/" + std::to_string(stats->first.get()), 4096);
  ASSERT_TRUE(hostile_text);
  uint64_t hostile_connects = 0;
  for (std::string_view line : Split(*hostile_text, '\n')) {
    if (auto n = ParseUint64(line, "connects")) hostile_connects += *n;
  }

  // Every session of the tenant's was served, under the storm as without it.
  EXPECT_EQ(quiet.ms.size() + quiet.failures.size(), static_cast<size_t>(kQuietSessions));
  EXPECT_EQ(storm.ms.size() + storm.failures.size(), static_cast<size_t>(kStormSessions));
  for (const std::string& f : quiet.failures) ADD_FAILURE() << "a quiet session failed: " << f;
  for (const std::string& f : storm.failures) ADD_FAILURE() << "a tenant session failed: " << f;
  ASSERT_FALSE(storm.ms.empty());
  ASSERT_FALSE(quiet.ms.empty());
  EXPECT_GE(hostile_connects, static_cast<uint64_t>(kHostileConnections))
      << "the storm never had its connections";
  std::printf(
      "storm: %d hostile connections from uid %u in %d processes (%llu connects); "
      "tenant uid %u opened %zu sessions (%zu failed) in %.1f s\n"
      "  open latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms "
      "(without the storm: p50 %.2f ms, p99 %.2f ms over %zu sessions)\n"
      "  celld RSS: %.1f MiB before, %.1f MiB at most; celld CPU %.2f s over %.1f s\n",
      kHostileConnections, kHostile, kHostileProcesses,
      static_cast<unsigned long long>(hostile_connects), kTenant, storm.ms.size(),
      storm.failures.size(), wall, storm.At(0.5), storm.At(0.9), storm.At(0.99), storm.ms.back(),
      quiet.At(0.5), quiet.At(0.99), quiet.ms.size(), static_cast<double>(rss_before) / kMiB,
      static_cast<double>(rss_max) / kMiB, cpu, wall);
  std::printf("  (the issue's target, p99 open under 100 ms with the storm, is a figure: %s)\n",
              storm.At(0.99) < 100.0 ? "met here" : "not met here");
  // Memory is a bound on what celld holds per hostile connection, whatever the machine's speed.
  EXPECT_LT(rss_max, 64 * kMiB) << "celld's RSS";
}

}  // namespace
}  // namespace cellhouse
