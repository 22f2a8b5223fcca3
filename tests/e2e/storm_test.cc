// The garbage-client storm of issue 13: while 1,000 hostile connections from one uid pipeline
// status requests without reading, announce 1 MiB frames and trickle them, and reconnect as fast
// as celld closes them, another uid's sessions open and stream. The issue asks for two bounds,
// asserted here with celld's default limits: that tenant's p99 open latency under 100 ms, and
// celld's RSS under 64 MB. The measured figures are printed.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstdio>
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
constexpr int64_t kStormMs = 10'000;
constexpr int64_t kSessionsMs = 7'000;
constexpr uint64_t kMiB = uint64_t{1} << 20;

class StormTest : public testing::CelldTest {};

// Runs in the tenant's child: sessions one after another, each opened, one turn streamed and
// closed; one line per session on `out`: "<open latency us> <tokens>", or "fail <why>".
int TenantSessions(const std::string& socket, int out) {
  int64_t end = MonotonicNanos() + kSessionsMs * kNanosPerMilli;
  int failures = 0;
  while (MonotonicNanos() < end) {
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
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  return failures == 0 ? 0 : 1;
}

TEST_F(StormTest, AnotherTenantOpensAndStreamsWhileAThousandHostileConnectionsRage) {
  testing::PolicySpec spec;
  spec.uids = {0, kTenant};
  testing::WritePolicy(policies_, spec);
  StartCelld({.extra_args = {"--log-level", "info"}});
  std::string socket = celld_->socket();
  // Warm up: the pool is full and celld's heap has seen a session.
  auto warm = cli::SessionClient::Open(socket, {});
  ASSERT_TRUE(warm) << warm.error().message();
  ASSERT_TRUE(warm->Close());
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  uint64_t rss_before = UsageOf(celld_->pid()).rss_bytes;

  std::vector<ChildProcess> hostile;
  auto ready = MakePipe();
  auto stats = MakePipe();
  ASSERT_TRUE(ready && stats);
  int ready_fd = ready->second.get();
  int stats_fd = stats->second.get();
  for (int i = 0; i < kHostileProcesses; ++i) {
    auto child = RunAs(kHostile, [&socket, ready_fd, stats_fd] {
      return testing::RunHostileClients({.socket = socket,
                                         .connections = kHostileConnections / kHostileProcesses,
                                         .role = testing::HostileRole::kMixed,
                                         .duration_ms = kStormMs,
                                         .ready_fd = ready_fd,
                                         .stats_fd = stats_fd});
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

  auto results = MakePipe();
  ASSERT_TRUE(results);
  int results_fd = results->second.get();
  auto tenant =
      RunAs(kTenant, [&socket, results_fd] { return TenantSessions(socket, results_fd); });
  ASSERT_TRUE(tenant) << tenant.error().message();
  results->second.reset();

  // Sample celld's memory while the tenant works.
  uint64_t rss_max = rss_before;
  double cpu_before = UsageOf(celld_->pid()).cpu_seconds;
  int64_t sampled_from = MonotonicNanos();
  for (;;) {
    rss_max = std::max(rss_max, UsageOf(celld_->pid()).rss_bytes);
    auto ended = tenant->TryReap();
    ASSERT_TRUE(ended);
    if (ended->has_value()) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(50));
  }
  double cpu = UsageOf(celld_->pid()).cpu_seconds - cpu_before;
  double wall = static_cast<double>(MonotonicNanos() - sampled_from) / 1e9;
  auto text = ReadFileToString("/proc/self/fd/" + std::to_string(results->first.get()), 1 << 20);
  ASSERT_TRUE(text) << text.error().message();
  for (ChildProcess& h : hostile) {
    auto st = h.Wait();
    ASSERT_TRUE(st);
    EXPECT_EQ(st->code, 0);
  }
  auto hostile_text = ReadFileToString("/proc/self/fd/" + std::to_string(stats->first.get()), 4096);
  ASSERT_TRUE(hostile_text);
  uint64_t hostile_connects = 0;
  for (std::string_view line : Split(*hostile_text, '\n')) {
    if (auto n = ParseUint64(line, "connects")) hostile_connects += *n;
  }

  std::vector<double> latencies_ms;
  std::vector<std::string> failures;
  for (std::string_view line : Split(*text, '\n')) {
    if (line.empty()) continue;
    if (StartsWith(line, "fail ")) {
      failures.emplace_back(line.substr(5));
      continue;
    }
    auto fields = Split(line, ' ');
    auto us = ParseUint64(fields[0], "latency");
    ASSERT_TRUE(us);
    latencies_ms.push_back(static_cast<double>(*us) / 1000.0);
  }
  ASSERT_GE(latencies_ms.size(), 20u) << "the tenant got too few sessions through";
  std::sort(latencies_ms.begin(), latencies_ms.end());
  auto at = [&](double q) {
    auto i = static_cast<size_t>(std::lround(q * static_cast<double>(latencies_ms.size() - 1)));
    return latencies_ms[std::min(i, latencies_ms.size() - 1)];
  };
  std::printf(
      "storm: %d hostile connections from uid %u in %d processes (%llu connects in %.1f s); "
      "tenant uid %u opened %zu sessions (%zu failed) in %.1f s\n"
      "  open latency: p50 %.2f ms, p90 %.2f ms, p99 %.2f ms, max %.2f ms\n"
      "  celld RSS: %.1f MiB before, %.1f MiB at most; celld CPU %.2f s over %.1f s\n",
      kHostileConnections, kHostile, kHostileProcesses,
      static_cast<unsigned long long>(hostile_connects), static_cast<double>(kStormMs) / 1000,
      kTenant, latencies_ms.size(), failures.size(), wall, at(0.5), at(0.9), at(0.99),
      latencies_ms.back(), static_cast<double>(rss_before) / kMiB,
      static_cast<double>(rss_max) / kMiB, cpu, wall);
  for (const std::string& f : failures) ADD_FAILURE() << "a tenant session failed: " << f;
  EXPECT_LT(at(0.99), 100.0) << "p99 open latency";
  EXPECT_LT(rss_max, 64 * kMiB) << "celld's RSS";
}

}  // namespace
}  // namespace cellhouse
