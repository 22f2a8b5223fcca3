// session_open_bench: how long a client waits from connect() to its session's Ready, against
// starting a comparably namespaced process with unshare(1) and bwrap(1), in the same run.
//
//   build/bin/session_open_bench [--quick] [--sessions 1000] [--preset 15m] [--openers 1,2,4]
//                                [--json FILE] [--keep]
//
// Five celld daemons run side by side: one with its pool of pre-forked workers, and one per
// layer combination without a pool (--pool-size 0, every open forks), so each layer shows:
//   pooled      the default policy's sandbox and cgroups, celld's default pool (2 per policy):
//               an open takes a worker that is already sandboxed and in its cgroup
//   full        the same sandbox and cgroups, cold: clone3, maps, cgroup placement per open
//   no-cgroups  the sandbox, --no-cgroups
//   no-sandbox  --insecure-no-sandbox (cgroups on)
//   bare        --insecure-no-sandbox --no-cgroups: process, IPC and worker start only
// Which opens the pool served is read from celld's log ("session ... started: ... (pooled)").
// A last phase offers opens to the pooled daemon at rising rates (a pause of --refill-intervals
// ms after each) to find how many opens per second the pool's refill sustains before it drains.
// Samples are taken in rounds, a block of each method in turn (order rotated), so drift in the
// machine's load reaches every method alike. Each celld sample is one session: connect → Open →
// SessionOpened → Ready (the open latency), then Close → Ack → the connection's EOF, which comes
// once celld has reaped the worker and removed its cgroup (the teardown, reported apart).
// The per-step table is the zygote's SpawnReply timings, which celld logs at debug level.
// Figures only: nothing here asserts anything about time.
#include <sys/utsname.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <map>
#include <mutex>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"

namespace cellhouse::bench {
namespace {

struct Options {
  BenchFlags common;
  int64_t sessions = 1000;
  int64_t warmup = 20;
  int64_t block = 10;
  std::string preset = "15m";
  std::string openers = "1,2,4";
  int64_t spaced = 100;
  int64_t spacing_ms = 100;
  std::string refill_intervals = "50,20,10,5,2,0";
  int64_t refill_opens = 40;
};

// One way of starting a contained process, timed per sample.
struct Method {
  std::string key;                  // JSON name
  std::string description;          // table row
  Celld* celld = nullptr;           // a celld variant, or
  std::vector<std::string> argv;    // a command baseline
  std::vector<double> open_ms;      // back-to-back
  std::vector<double> teardown_ms;  // back-to-back, celld only
  std::vector<double> spaced_ms;    // one open every --spacing-ms
  bool pool = false;                // a celld with a pool of pre-forked workers
};

enum class Phase { kWarmup, kBackToBack, kSpaced };

// One celld session: returns {open ms, teardown ms}.
Result<std::pair<double, double>> OneSession(const std::string& socket) {
  int64_t start = MonotonicNanos();
  std::optional<api::Error> refusal;
  CH_ASSIGN_OR_RETURN(cli::SessionClient session,
                      cli::SessionClient::Open(socket, {.policy = "default"}, &refusal));
  int64_t ready = MonotonicNanos();
  CH_RETURN_IF_ERROR(session.Close());
  int64_t acked = MonotonicNanos();
  // Returns at EOF, i.e. when celld let go of its copy of the connection (FinalizeSession).
  static_cast<void>(session.WaitForEnd(10'000));
  int64_t gone = MonotonicNanos();
  return std::pair{static_cast<double>(ready - start) / 1e6,
                   static_cast<double>(gone - acked) / 1e6};
}

Status Sample(Method& m, Phase phase) {
  double open = 0, teardown = 0;
  if (m.celld != nullptr) {
    CH_ASSIGN_OR_RETURN(auto times, OneSession(m.celld->socket()));
    std::tie(open, teardown) = times;
  } else {
    CH_ASSIGN_OR_RETURN(open, TimeCommandMs(m.argv));
  }
  switch (phase) {
    case Phase::kWarmup:
      break;
    case Phase::kBackToBack:
      m.open_ms.push_back(open);
      if (m.celld != nullptr) m.teardown_ms.push_back(teardown);
      break;
    case Phase::kSpaced:
      m.spaced_ms.push_back(open);
      break;
  }
  return Ok();
}

// Back-to-back samples, interleaved in blocks across methods.
Status RunBackToBack(std::vector<Method>& methods, const Options& o) {
  for (Method& m : methods) {
    for (int64_t i = 0; i < o.warmup; ++i) CH_RETURN_IF_ERROR(Sample(m, Phase::kWarmup));
  }
  int64_t done = 0;
  for (size_t round = 0; done < o.sessions; ++round) {
    int64_t n = std::min(o.block, o.sessions - done);
    for (size_t k = 0; k < methods.size(); ++k) {
      Method& m = methods[(round + k) % methods.size()];
      for (int64_t i = 0; i < n; ++i) {
        Status st = Sample(m, Phase::kBackToBack);
        if (!st) return std::move(st).error().Context(m.description);
      }
    }
    done += n;
  }
  return Ok();
}

// One open at a time with a pause before each: what an interactive user sees, with every
// kernel fast path that depends on recent use (RCU-synchronised locks, caches) gone cold.
Status RunSpaced(std::vector<Method>& methods, const Options& o) {
  for (int64_t i = 0; i < o.spaced; ++i) {
    for (size_t k = 0; k < methods.size(); ++k) {
      Method& m = methods[(static_cast<size_t>(i) + k) % methods.size()];
      std::this_thread::sleep_for(std::chrono::milliseconds(o.spacing_ms));
      Status st = Sample(m, Phase::kSpaced);
      if (!st) return std::move(st).error().Context(m.description);
    }
  }
  return Ok();
}

struct ConcurrentResult {
  std::string method;
  int openers = 0;
  Summary open_ms;
  double per_second = 0;
};

// `openers` threads each take samples until `total` are done; returns the latencies and the
// throughput over the wall time.
Result<ConcurrentResult> RunConcurrent(Method& m, int openers, int64_t total) {
  std::atomic<int64_t> next{0};
  std::mutex mu;
  std::vector<double> samples;
  std::optional<Error> failure;
  int64_t start = MonotonicNanos();
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(openers));
  for (int t = 0; t < openers; ++t) {
    threads.emplace_back([&] {
      while (next.fetch_add(1) < total) {
        Result<double> ms = Error("");
        if (m.celld != nullptr) {
          auto times = OneSession(m.celld->socket());
          ms = times ? Result<double>(times->first) : Result<double>(times.error());
        } else {
          ms = TimeCommandMs(m.argv);
        }
        std::lock_guard lock(mu);
        if (!ms) {
          if (!failure) failure = ms.error();
          return;
        }
        samples.push_back(*ms);
      }
    });
  }
  for (std::thread& t : threads) t.join();
  double seconds = static_cast<double>(MonotonicNanos() - start) / 1e9;
  if (failure) return std::move(*failure).Context(m.description);
  ConcurrentResult r;
  r.method = m.key;
  r.openers = openers;
  r.per_second = static_cast<double>(samples.size()) / seconds;
  r.open_ms = Summarize(std::move(samples));
  return r;
}

// In the order celld started them: whether each session was served by a pool worker (its
// "session ID started: ..." info line ends in "(pooled)").
std::vector<bool> ParsePooled(const std::string& log) {
  std::vector<bool> out;
  size_t at = 0;
  while (at < log.size()) {
    size_t end = log.find('\n', at);
    if (end == std::string::npos) end = log.size();
    std::string_view line(log.data() + at, end - at);
    if (line.find(" started: tenant uid ") != std::string_view::npos) {
      out.push_back(line.find("(pooled)") != std::string_view::npos);
    }
    at = end + 1;
  }
  return out;
}

double ShareOf(const std::vector<bool>& pooled, size_t begin, size_t end) {
  size_t n = 0, yes = 0;
  for (size_t i = begin; i < end && i < pooled.size(); ++i, ++n) yes += pooled[i] ? 1 : 0;
  return n == 0 ? 0.0 : static_cast<double>(yes) / static_cast<double>(n);
}

std::string Ms(double v) { return Format("%.2f", v); }

// The pool's refill: opens offered one after another with a pause after each, at each pause of
// --refill-intervals (longest first, the pool refilled before each), counting which the pool
// served. The pool keeps up with a rate when (nearly) every open finds a worker ready.
Result<std::string> RunRefill(Method& m, const Options& o) {
  std::vector<int64_t> pauses;
  for (std::string_view part : Split(o.refill_intervals, ',')) {
    CH_ASSIGN_OR_RETURN(int64_t ms, ParseInt64(Trim(part), "--refill-intervals"));
    if (ms < 0) return Error("--refill-intervals: pauses must not be negative");
    pauses.push_back(ms);
  }
  Printf(stdout,
         "\nPool refill (%s): %lld opens per row, each followed by the pause, pool refilled "
         "before each row\n",
         m.description.c_str(), static_cast<long long>(o.refill_opens));
  Table table({"pause ms", "opens/s", "served by the pool", "p50 ms", "p90", "p99"});
  std::vector<std::string> items;
  for (int64_t pause : pauses) {
    std::this_thread::sleep_for(std::chrono::milliseconds(500));  // the pool refills
    const size_t before = ParsePooled(m.celld->Log()).size();
    std::vector<double> ms;
    const int64_t start = MonotonicNanos();
    for (int64_t i = 0; i < o.refill_opens; ++i) {
      CH_ASSIGN_OR_RETURN(auto times, OneSession(m.celld->socket()));
      ms.push_back(times.first);
      if (pause > 0) std::this_thread::sleep_for(std::chrono::milliseconds(pause));
    }
    const double seconds = static_cast<double>(MonotonicNanos() - start) / 1e9;
    const std::vector<bool> pooled = ParsePooled(m.celld->Log());
    const double share = ShareOf(pooled, before, pooled.size());
    const double per_second = static_cast<double>(o.refill_opens) / seconds;
    const Summary s = Summarize(ms);
    table.AddRow({std::to_string(pause), Format("%.0f", per_second), Format("%.0f%%", 100 * share),
                  Ms(s.p50), Ms(s.p90), Ms(s.p99)});
    items.push_back(cli::JsonObject()
                        .Add("pause_ms", pause)
                        .Add("opens_per_second", per_second)
                        .Add("pooled_share", share)
                        .AddRaw("open_ms", SummaryJson(s))
                        .Render());
  }
  table.Print(stdout);
  return cli::JsonArray(items);
}

const std::vector<double>& Samples(const Method& m, Phase phase) {
  return phase == Phase::kSpaced ? m.spaced_ms : m.open_ms;
}

void PrintLatencies(const std::vector<Method>& methods, Phase phase, const Options& o) {
  if (phase == Phase::kSpaced) {
    Printf(stdout,
           "\nSession open latency, spaced: one open every %lld ms, %lld samples per method "
           "(ms)\n",
           static_cast<long long>(o.spacing_ms), static_cast<long long>(o.spaced));
  } else {
    Printf(stdout,
           "\nSession open latency, back to back: %lld samples per method, interleaved in "
           "blocks of %lld (ms)\n",
           static_cast<long long>(o.sessions), static_cast<long long>(o.block));
  }
  Table table({"method", "p50", "p90", "p99", "max", "mean", "teardown p50", "teardown p99"});
  for (const Method& m : methods) {
    Summary s = Summarize(Samples(m, phase));
    std::vector<std::string> row = {m.description, Ms(s.p50), Ms(s.p90),
                                    Ms(s.p99),     Ms(s.max), Ms(s.mean)};
    if (phase == Phase::kBackToBack && !m.teardown_ms.empty()) {
      Summary t = Summarize(m.teardown_ms);
      row.insert(row.end(), {Ms(t.p50), Ms(t.p99)});
    } else {
      row.insert(row.end(), {"-", "-"});
    }
    table.AddRow(std::move(row));
  }
  table.Print(stdout);
}

const Method* Find(const std::vector<Method>& methods, const std::string& key) {
  for (const Method& m : methods) {
    if (m.key == key) return &m;
  }
  return nullptr;
}

// Ratios against the unshare baseline and the cost of each layer (differences of medians), for
// both arrival patterns.
std::string PrintRatiosAndLayers(const std::vector<Method>& methods) {
  auto pct = [&](const std::string& key, Phase phase, double Summary::*field) {
    const Method* m = Find(methods, key);
    return m == nullptr || Samples(*m, phase).empty() ? 0.0 : Summarize(Samples(*m, phase)).*field;
  };
  const Phase phases[] = {Phase::kBackToBack, Phase::kSpaced};
  const char* phase_names[] = {"back_to_back", "spaced"};
  cli::JsonObject ratios;
  Printf(stdout, "\nRatio to the unshare baseline (target for the full sandbox: p50 under 0.5)\n");
  Table table({"method", "p50 ratio", "p99 ratio", "spaced p50 ratio", "spaced p99 ratio"});
  for (const Method& m : methods) {
    if (m.key == "unshare") continue;
    std::vector<std::string> row = {m.description};
    cli::JsonObject j;
    for (size_t p = 0; p < 2; ++p) {
      double u50 = pct("unshare", phases[p], &Summary::p50);
      double u99 = pct("unshare", phases[p], &Summary::p99);
      double r50 = u50 > 0 ? pct(m.key, phases[p], &Summary::p50) / u50 : 0;
      double r99 = u99 > 0 ? pct(m.key, phases[p], &Summary::p99) / u99 : 0;
      row.insert(row.end(), {Format("%.2f", r50), Format("%.2f", r99)});
      j.AddRaw(phase_names[p], cli::JsonObject().Add("p50", r50).Add("p99", r99).Render());
    }
    table.AddRow(std::move(row));
    ratios.AddRaw(m.key, j.Render());
  }
  table.Print(stdout);

  Printf(stdout, "\nCost of each layer (difference of p50s, ms)\n");
  Table layers({"layer", "back to back", "spaced", "computed as"});
  cli::JsonObject layer_json;
  auto add = [&](const std::string& name, const std::string& a, const std::string& b) {
    if (Find(methods, a) == nullptr || (!b.empty() && Find(methods, b) == nullptr)) return;
    std::vector<std::string> row = {name};
    cli::JsonObject j;
    for (size_t p = 0; p < 2; ++p) {
      double d =
          pct(a, phases[p], &Summary::p50) - (b.empty() ? 0.0 : pct(b, phases[p], &Summary::p50));
      row.push_back(Ms(d));
      j.Add(phase_names[p], d);
    }
    row.push_back(b.empty() ? a : a + " - " + b);
    layers.AddRow(std::move(row));
    layer_json.AddRaw(name, j.Render());
  };
  add("cgroups (with sandbox)", "full", "no-cgroups");
  add("cgroups (without sandbox)", "no-sandbox", "bare");
  add("sandbox (with cgroups)", "full", "no-sandbox");
  add("sandbox (without cgroups)", "no-cgroups", "bare");
  add("process, IPC, worker start", "bare", "");
  add("saved by the pool (full - pooled)", "full", "pooled");
  layers.Print(stdout);
  return cli::JsonObject()
      .AddRaw("ratio_to_unshare", ratios.Render())
      .AddRaw("layer_cost_ms", layer_json.Render())
      .Render();
}

// Per step: the distribution over a range of sessions (in the order celld started them).
struct StepStats {
  std::string step;
  Summary micros;
};
std::vector<StepStats> StepBreakdown(const std::vector<StepTimings>& sessions, size_t begin,
                                     size_t end) {
  std::vector<std::string> order;
  std::map<std::string, std::vector<double>> by_step;
  for (size_t i = begin; i < end && i < sessions.size(); ++i) {
    for (const auto& [step, micros] : sessions[i]) {
      if (by_step.count(step) == 0) order.push_back(step);
      by_step[step].push_back(static_cast<double>(micros));
    }
  }
  std::vector<StepStats> out;
  out.reserve(order.size());
  for (const std::string& step : order) out.push_back({step, Summarize(by_step[step])});
  return out;
}

// The zygote's step timings for the sandboxed daemons, back-to-back and spaced sessions apart
// (celld logs them in the order the sessions started: warm-up, back to back, spaced, then the
// concurrent runs).
std::string PrintSteps(const std::vector<Method>& methods, const Options& o) {
  cli::JsonObject json;
  for (const Method& m : methods) {
    // A pool worker's steps run ahead of its open, and celld logs them when they do: not per open.
    if (m.celld == nullptr || m.pool) continue;
    const bool sandboxed = m.key != "bare" && m.key != "no-sandbox";
    std::vector<StepTimings> sessions = ParseSandboxSteps(m.celld->Log());
    size_t b2b_begin = static_cast<size_t>(o.warmup);
    size_t b2b_end = b2b_begin + static_cast<size_t>(o.sessions);
    size_t spaced_end = b2b_end + static_cast<size_t>(o.spaced);
    std::vector<StepStats> b2b = StepBreakdown(sessions, b2b_begin, b2b_end);
    std::vector<StepStats> spaced = StepBreakdown(sessions, b2b_end, spaced_end);
    if (b2b.empty()) continue;
    // Without the sandbox the zygote reports every child step as 0: nothing to show.
    if (!sandboxed) continue;
    Printf(stdout, "\nSandbox steps, %s: the zygote's SpawnReply timings (us)\n",
           m.description.c_str());
    Table table({"step", "p50", "p90", "p99", "spaced p50", "spaced p90", "spaced p99"});
    std::vector<std::string> items;
    double sum[2] = {0, 0};
    for (size_t i = 0; i < b2b.size(); ++i) {
      const StepStats& s = b2b[i];
      // Without the sandbox the zygote still reports every child step, as 0: leave them out.
      if (!sandboxed && s.micros.max == 0) continue;
      const StepStats* sp = i < spaced.size() && spaced[i].step == s.step ? &spaced[i] : nullptr;
      auto us = [](double v) { return Format("%.0f", v); };
      table.AddRow({s.step, us(s.micros.p50), us(s.micros.p90), us(s.micros.p99),
                    sp != nullptr ? us(sp->micros.p50) : "-",
                    sp != nullptr ? us(sp->micros.p90) : "-",
                    sp != nullptr ? us(sp->micros.p99) : "-"});
      // The child waits while the parent writes its maps and places it: not added, it overlaps.
      if (s.step != "wait for parent") {
        sum[0] += s.micros.p50;
        if (sp != nullptr) sum[1] += sp->micros.p50;
      }
      cli::JsonObject item;
      item.Add("step", s.step).AddRaw("back_to_back_us", SummaryJson(s.micros));
      if (sp != nullptr) item.AddRaw("spaced_us", SummaryJson(sp->micros));
      items.push_back(item.Render());
    }
    table.AddRow({"sum of p50s but 'wait for parent'", Format("%.0f", sum[0]), "", "",
                  Format("%.0f", sum[1]), "", ""});
    table.Print(stdout);
    double open[2] = {Summarize(m.open_ms).p50 * 1000, Summarize(m.spaced_ms).p50 * 1000};
    Printf(stdout,
           "  open p50: back to back %.0f us = steps %.0f + rest %.0f; spaced %.0f us = steps "
           "%.0f + rest %.0f\n"
           "  (rest: celld admission and cgroup creation, the zygote request and reply, the "
           "worker's engine state, hand-off, Ready)\n",
           open[0], sum[0], open[0] - sum[0], open[1], sum[1], open[1] - sum[1]);
    json.AddRaw(m.key, cli::JsonArray(items));
  }
  return json.Render();
}

Result<std::vector<int>> ParseOpeners(const std::string& text) {
  std::vector<int> out;
  for (std::string_view part : Split(text, ',')) {
    CH_ASSIGN_OR_RETURN(int64_t n, ParseInt64(Trim(part), "--openers"));
    if (n < 1 || n > 16) return Error("--openers: each value must be in 1..16");
    out.push_back(static_cast<int>(n));
  }
  return out;
}

std::string HostJson() {
  utsname u{};
  ::uname(&u);
  return cli::JsonObject()
      .Add("kernel", u.release)
      .Add("cpus", static_cast<int64_t>(std::thread::hardware_concurrency()))
      .Render();
}

// Concurrent openers on the full daemons (pooled and cold) and the baselines.
Result<std::vector<ConcurrentResult>> RunAllConcurrent(std::vector<Method>& methods,
                                                       const std::vector<int>& openers,
                                                       const Options& o) {
  std::vector<ConcurrentResult> concurrent;
  for (int c : openers) {
    if (c == 1) continue;
    for (Method& m : methods) {
      if (m.key == "no-sandbox" || m.key == "bare" || m.key == "no-cgroups") continue;
      Printf(stderr, "concurrent: %d openers, %s...\n", c, m.key.c_str());
      CH_ASSIGN_OR_RETURN(ConcurrentResult r, RunConcurrent(m, c, o.sessions));
      concurrent.push_back(std::move(r));
    }
  }
  return concurrent;
}

// The celld daemons (started here, owned by `daemons`) and the command baselines.
Result<std::vector<Method>> StartMethods(const WorkDir& dir, const std::string& model,
                                         std::vector<std::unique_ptr<Celld>>& daemons) {
  std::vector<Method> methods;
  struct Variant {
    const char* key;
    const char* description;
    bool sandbox;
    bool cgroups;
    bool pool;
  };
  const Variant variants[] = {
      {"pooled", "celld pooled: sandbox + cgroups, pre-forked worker", true, true, true},
      {"full", "celld cold: sandbox + cgroups (default policy)", true, true, false},
      {"no-cgroups", "celld cold: sandbox, --no-cgroups", true, false, false},
      {"no-sandbox", "celld cold: --insecure-no-sandbox, cgroups", false, true, false},
      {"bare", "celld cold: --insecure-no-sandbox --no-cgroups", false, false, false},
  };
  for (const Variant& v : variants) {
    CH_ASSIGN_OR_RETURN(
        auto celld,
        Celld::Start(dir, {.name = v.key,
                           .model = model,
                           .policy_dir = dir.File("policies"),
                           .cgroups = v.cgroups,
                           .sandbox = v.sandbox,
                           .extra_args = v.pool ? std::vector<std::string>{}
                                                : std::vector<std::string>{"--pool-size", "0"}}));
    methods.push_back(
        {.key = v.key, .description = v.description, .celld = celld.get(), .pool = v.pool});
    daemons.push_back(std::move(celld));
  }
  methods.push_back({.key = "unshare",
                     .description = "unshare --user --map-root-user --pid --mount --uts --ipc "
                                    "--net --fork /bin/true",
                     .argv = {"/usr/bin/unshare", "--user", "--map-root-user", "--pid", "--mount",
                              "--uts", "--ipc", "--net", "--fork", "/bin/true"}});
  if (::access("/usr/bin/bwrap", X_OK) == 0) {
    methods.push_back({.key = "bwrap",
                       .description = "bwrap --unshare-all --die-with-parent --ro-bind / / "
                                      "/bin/true",
                       .argv = {"/usr/bin/bwrap", "--unshare-all", "--die-with-parent", "--ro-bind",
                                "/", "/", "/bin/true"}});
  } else {
    Printf(stderr, "bwrap not installed (tools/setup.sh installs it): no bwrap baseline\n");
  }
  return methods;
}

Status Run(const Options& o, const WorkDir& dir) {
  CH_ASSIGN_OR_RETURN(std::vector<int> openers, ParseOpeners(o.openers));
  Printf(stderr, "generating the %s model...\n", o.preset.c_str());
  CH_ASSIGN_OR_RETURN(std::string model, MakeModel(dir, o.preset, 1));
  CH_RETURN_IF_ERROR(WritePolicy(dir.File("policies"), BenchPolicy{}));
  std::vector<std::unique_ptr<Celld>> daemons;
  CH_ASSIGN_OR_RETURN(std::vector<Method> methods, StartMethods(dir, model, daemons));
  Printf(stderr, "back to back: %lld samples x %zu methods...\n",
         static_cast<long long>(o.sessions), methods.size());
  CH_RETURN_IF_ERROR(RunBackToBack(methods, o));
  Printf(stderr, "spaced: %lld samples x %zu methods, %lld ms apart...\n",
         static_cast<long long>(o.spaced), methods.size(), static_cast<long long>(o.spacing_ms));
  CH_RETURN_IF_ERROR(RunSpaced(methods, o));

  // Which opens the pool served, per phase, before the concurrent and refill phases add more.
  std::map<std::string, std::pair<double, double>> pooled_share;  // back to back, spaced
  for (const Method& m : methods) {
    if (!m.pool) continue;
    std::vector<bool> pooled = ParsePooled(m.celld->Log());
    const auto b2b_begin = static_cast<size_t>(o.warmup);
    const size_t b2b_end = b2b_begin + static_cast<size_t>(o.sessions);
    pooled_share[m.key] = {ShareOf(pooled, b2b_begin, b2b_end),
                           ShareOf(pooled, b2b_end, b2b_end + static_cast<size_t>(o.spaced))};
  }

  CH_ASSIGN_OR_RETURN(std::vector<ConcurrentResult> concurrent,
                      RunAllConcurrent(methods, openers, o));

  Printf(stdout, "session_open_bench: model preset %s, %u CPUs%s\n", o.preset.c_str(),
         std::thread::hardware_concurrency(), o.common.quick ? ", --quick" : "");
  PrintLatencies(methods, Phase::kBackToBack, o);
  PrintLatencies(methods, Phase::kSpaced, o);
  std::string ratios = PrintRatiosAndLayers(methods);
  std::vector<std::string> concurrent_json;
  if (!concurrent.empty()) {
    Printf(stdout, "\nConcurrent openers (%lld samples per row, ms)\n",
           static_cast<long long>(o.sessions));
    Table table({"method", "openers", "p50", "p90", "p99", "opens/s"});
    for (const ConcurrentResult& r : concurrent) {
      table.AddRow({r.method, std::to_string(r.openers), Ms(r.open_ms.p50), Ms(r.open_ms.p90),
                    Ms(r.open_ms.p99), Format("%.0f", r.per_second)});
      concurrent_json.push_back(cli::JsonObject()
                                    .Add("method", r.method)
                                    .Add("openers", static_cast<int64_t>(r.openers))
                                    .AddRaw("open_ms", SummaryJson(r.open_ms))
                                    .Add("per_second", r.per_second)
                                    .Render());
    }
    table.Print(stdout);
  }
  std::string steps = PrintSteps(methods, o);
  std::string refill = "[]";
  for (Method& m : methods) {
    if (m.pool) {
      CH_ASSIGN_OR_RETURN(refill, RunRefill(m, o));
    }
  }
  for (const auto& [key, share] : pooled_share) {
    Printf(stdout, "\nOpens the pool served (%s): back to back %.0f%%, spaced %.0f%%\n",
           key.c_str(), 100 * share.first, 100 * share.second);
  }

  std::vector<std::string> method_json;
  for (const Method& m : methods) {
    cli::JsonObject j;
    j.Add("name", m.key)
        .Add("description", m.description)
        .AddRaw("open_ms", SummaryJson(Summarize(m.open_ms)));
    if (!m.teardown_ms.empty()) j.AddRaw("teardown_ms", SummaryJson(Summarize(m.teardown_ms)));
    j.AddRaw("spaced_open_ms", SummaryJson(Summarize(m.spaced_ms)));
    if (auto it = pooled_share.find(m.key); it != pooled_share.end()) {
      j.AddRaw("pooled_share", cli::JsonObject()
                                   .Add("back_to_back", it->second.first)
                                   .Add("spaced", it->second.second)
                                   .Render());
    }
    method_json.push_back(j.Render());
  }
  for (auto& d : daemons) CH_RETURN_IF_ERROR(d->Stop());
  cli::JsonObject out;
  out.Add("benchmark", "session_open")
      .Add("quick", o.common.quick)
      .Add("preset", o.preset)
      .Add("samples", o.sessions)
      .Add("spaced_samples", o.spaced)
      .Add("spacing_ms", o.spacing_ms)
      .AddRaw("host", HostJson())
      .AddRaw("methods", cli::JsonArray(method_json))
      .AddRaw("derived", ratios)
      .AddRaw("concurrent", cli::JsonArray(concurrent_json))
      .AddRaw("sandbox_steps_us", steps)
      .AddRaw("pool_refill", refill);
  return WriteJson(o.common.json_path, out.Render());
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags(
      "session_open_bench [--quick] [--sessions N] [--preset P] [--openers 1,2,4] [--json FILE]",
      "Session open latency (connect to Ready) of celld with and without its sandbox and "
      "cgroups, against unshare(1) and bwrap(1) in the same run; the sandbox's per-step "
      "breakdown. Prints figures; asserts nothing about time.");
  AddBenchFlags(flags, &o.common);
  flags.Int("sessions", &o.sessions, "N", "samples per method (default 1000; --quick: 100)");
  flags.Int("warmup", &o.warmup, "N", "samples per method discarded first");
  flags.Int("block", &o.block, "N", "samples per method before switching to the next");
  flags.String("preset", &o.preset, "NAME", "cellmodel make preset of the served model");
  flags.Int("spaced", &o.spaced, "N",
            "samples per method taken one at a time after a pause (default 100; --quick: 20)");
  flags.Int("spacing-ms", &o.spacing_ms, "MS", "the pause before each spaced sample");
  flags.String("refill-intervals", &o.refill_intervals, "LIST",
               "pauses (ms) after each open in the pool refill phase (default 50,20,10,5,2,0)");
  flags.Int("refill-opens", &o.refill_opens, "N",
            "opens per pause in the pool refill phase (default 40; --quick 20)");
  flags.String("openers", &o.openers, "LIST",
               "concurrent openers to measure besides 1 (default 1,2,4; --quick: 1,2)");
  if (std::optional<int> done = ParseBenchFlags(flags, "session_open_bench", argc, argv)) {
    return *done;
  }
  if (o.common.quick) {
    if (!flags.IsSet("sessions")) o.sessions = 100;
    if (!flags.IsSet("openers")) o.openers = "1,2";
    if (!flags.IsSet("warmup")) o.warmup = 5;
    if (!flags.IsSet("spaced")) o.spaced = 20;
    if (!flags.IsSet("refill-intervals")) o.refill_intervals = "20,5,0";
    if (!flags.IsSet("refill-opens")) o.refill_opens = 20;
  }
  if (o.sessions < 1 || o.warmup < 0 || o.block < 1 || o.spaced < 0 || o.spacing_ms < 0) {
    Printf(stderr,
           "session_open_bench: --sessions and --block must be positive, --warmup, "
           "--spaced and --spacing-ms not negative\n");
    return 2;
  }
  Result<WorkDir> dir = WorkDir::Create(o.common.keep);
  if (!dir) {
    Printf(stderr, "session_open_bench: %s\n", dir.error().message().c_str());
    return 1;
  }
  Status st = Run(o, *dir);
  if (!st) {
    dir->Keep();  // its celld logs say what went wrong
    Printf(stderr, "session_open_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
