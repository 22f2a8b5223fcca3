// streaming_bench: tokens/s of a generation through a live, sandboxed session against the
// engine alone, on the same model, prompt and settings, in the same run.
//
//   build/bin/streaming_bench [--quick] [--presets 15m,110m] [--tokens 256] [--repetitions 7]
//                             [--json FILE] [--keep]
//
// Three paths generate the same greedy continuation (the benchmark checks the tokens match):
//   engine       the engine in this process: a fresh Conversation per repetition over a model
//                mapped once (its pages already mapped: no page faults)
//   cellmodel    `cellmodel run` as a separate process (maps the model afresh, as a new worker
//                does; its own figures from stderr)
//   session      a fresh session per repetition on celld with the default policy's sandbox and
//                cgroups: the client's clock (send → first piece → last piece → Done) and the
//                worker's own Done figures; unless --no-layers (or --quick), also sessions of a
//                celld --no-cgroups and of a celld --insecure-no-sandbox --no-cgroups, to place
//                any overhead
// Repetitions interleave the paths (order rotated), and each figure is the median.
// Decode tokens/s is (generated - 1) / (time from the first token to the last): the forward
// passes after the first token, counted the same way for every path. Time to first token is
// from the request to the first generated token (prefill included).
// Figures only: nothing here asserts anything about time.
#include <algorithm>
#include <cstdio>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"
#include "engine/conversation.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::bench {
namespace {

constexpr uint64_t kSeed = 42;

struct Options {
  BenchFlags common;
  std::string presets = "15m,110m";
  int64_t tokens = 256;
  int64_t repetitions = 7;
  std::string prompt = "Once upon a time";
  bool layers = true;  // also sessions without cgroups, and without sandbox
};

// One generation's figures, as one path measured it.
struct Run {
  double decode_tps = 0;           // (generated - 1) / first-to-last-token time
  double ttft_ms = 0;              // request to first token
  double end_to_end_tps = 0;       // generated / request-to-end time
  double reported_decode_tps = 0;  // session only: Done.decode_tokens_per_second as sent
  double reported_ttft_ms = 0;     // session only: Done.time_to_first_token_us
  int generated = 0;
  std::vector<int32_t> tokens;
  std::string kernel;  // engine only: the decode kernel chosen
  // Of the turn's wall time, the share the generating thread ran on a CPU and the share it
  // waited, runnable, on a run queue (another task had the CPU); -1 when not measured.
  double on_cpu = -1;
  double waiting = -1;
  // Generated tokens per second the thread spent on a CPU during the turn: the rate without
  // the other tenants of this machine's CPUs; -1 when not measured.
  double per_cpu_second = -1;
};

double PerSecond(int count, int64_t nanos) {
  return nanos > 0 ? static_cast<double>(count) * 1e9 / static_cast<double>(nanos) : 0;
}

// Shares of `wall_ns` between two schedstat readings.
void SetCpuShares(const SchedStat& before, const SchedStat& after, int64_t wall_ns, Run* run) {
  if (wall_ns <= 0) return;
  run->on_cpu =
      static_cast<double>(after.on_cpu_ns - before.on_cpu_ns) / static_cast<double>(wall_ns);
  run->waiting =
      static_cast<double>(after.waiting_ns - before.waiting_ns) / static_cast<double>(wall_ns);
  run->per_cpu_second = PerSecond(run->generated, after.on_cpu_ns - before.on_cpu_ns);
}

struct Path {
  std::string key;
  std::string description;
  Celld* celld = nullptr;  // the daemon of a session path
  std::string policy = "default";
  std::vector<Run> runs;
};

Result<Run> RunEngine(const engine::Model& model, const engine::Tokenizer& tokenizer,
                      const std::string& prompt, int tokens) {
  CH_ASSIGN_OR_RETURN(engine::Conversation chat,
                      engine::Conversation::Create(model, tokenizer, model.config().seq_len));
  Run run;
  CH_ASSIGN_OR_RETURN(SchedStat sched_before, ReadSchedStat(0));
  int64_t created = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(
      engine::Conversation::TurnStats stats,
      chat.Turn(prompt, {.max_new_tokens = tokens, .temperature = 0.0F, .seed = kSeed},
                [&](int32_t token, std::string_view) {
                  run.tokens.push_back(token);
                  return true;
                }));
  int64_t end = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(SchedStat sched_after, ReadSchedStat(0));
  run.generated = stats.generated_tokens;
  SetCpuShares(sched_before, sched_after, end - created, &run);
  run.decode_tps = PerSecond(stats.generated_tokens - 1, stats.decode_ns);
  // From the request as a client sees it: state creation is part of a session's open, not of
  // its turn, so it is left out here as it is for the session.
  run.ttft_ms = static_cast<double>(stats.time_to_first_token_ns) / 1e6;
  run.end_to_end_tps = PerSecond(stats.generated_tokens, end - created);
  run.kernel = std::string(engine::MatVecKernelName(chat.matvec_kernel()));
  return run;
}

// "decode: 247 tokens in 560.6 ms, 438.8 tokens/s (stop: context_full)" and
// "prefill: 10 tokens in 7.3 ms, 1368.4 tokens/s" from cellmodel run's stderr.
Result<Run> RunCellmodel(const std::string& cellmodel, const std::string& model,
                         const std::string& prompt, int tokens) {
  CH_ASSIGN_OR_RETURN(CommandOutput out,
                      RunAndCapture({cellmodel, "run", "--model", model, "--prompt", prompt,
                                     "--max-tokens", std::to_string(tokens), "--temperature", "0",
                                     "--seed", std::to_string(kSeed)}));
  Run run;
  double prefill_ms = -1, decode_ms = -1;
  int decoded = -1;
  for (std::string_view line : Split(out.err, '\n')) {
    int count = 0;
    double ms = 0;
    std::string text(line);
    if (std::sscanf(text.c_str(), "prefill: %d tokens in %lf ms", &count, &ms) == 2) {
      prefill_ms = ms;
    } else if (std::sscanf(text.c_str(), "decode: %d tokens in %lf ms", &count, &ms) == 2) {
      decoded = count;
      decode_ms = ms;
    }
  }
  if (prefill_ms < 0 || decode_ms < 0) {
    return Error("cellmodel run printed no prefill/decode figures: " + out.err);
  }
  run.generated = decoded;
  run.decode_tps = decode_ms > 0 ? (decoded - 1) * 1e3 / decode_ms : 0;
  run.ttft_ms = prefill_ms;  // its first token is sampled right after the prefill
  run.end_to_end_tps = decoded * 1e3 / out.wall_ms;  // includes exec and mapping the model
  return run;
}

Result<Run> RunSession(const std::string& socket, const std::string& policy,
                       const std::string& prompt, int tokens) {
  CH_ASSIGN_OR_RETURN(cli::SessionClient session,
                      cli::SessionClient::Open(socket, {.policy = policy}));
  CH_ASSIGN_OR_RETURN(std::vector<api::SessionInfo> listed, ListSessions(socket));
  pid_t worker = 0;
  for (const api::SessionInfo& info : listed) {
    if (info.session_id() == session.opened().session_id()) worker = info.worker_pid();
  }
  if (worker <= 0) return Error("the new session is not in celld's list");
  api::Generate request;
  request.set_prompt(prompt);
  request.set_max_new_tokens(static_cast<uint32_t>(tokens));
  request.set_temperature(0);
  request.set_seed(kSeed);
  Run run;
  int64_t first = 0, last = 0;
  CH_ASSIGN_OR_RETURN(SchedStat sched_before, ReadSchedStat(worker));
  int64_t sent = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(api::Done done, session.Generate(request, [&](const api::Piece& piece) {
    last = MonotonicNanos();
    if (first == 0) first = last;
    run.tokens.push_back(static_cast<int32_t>(piece.token()));
  }));
  int64_t end = MonotonicNanos();
  CH_ASSIGN_OR_RETURN(SchedStat sched_after, ReadSchedStat(worker));
  CH_RETURN_IF_ERROR(session.Close());
  run.generated = static_cast<int>(done.generated_tokens());
  SetCpuShares(sched_before, sched_after, end - sent, &run);
  if (std::cmp_not_equal(run.tokens.size(), run.generated)) {
    return Error("the session's Done counts " + std::to_string(run.generated) + " tokens but " +
                 std::to_string(run.tokens.size()) + " pieces arrived");
  }
  run.decode_tps = PerSecond(run.generated - 1, last - first);
  run.ttft_ms = static_cast<double>(first - sent) / 1e6;
  run.end_to_end_tps = PerSecond(run.generated, end - sent);
  run.reported_decode_tps = done.decode_tokens_per_second();
  run.reported_ttft_ms = static_cast<double>(done.time_to_first_token_us()) / 1e3;
  return run;
}

// The medians of one path's runs.
struct Medians {
  double decode_tps, ttft_ms, end_to_end_tps, reported_decode_tps, reported_ttft_ms, on_cpu,
      waiting, per_cpu_second;
};
Medians MediansOf(const Path& p) {
  auto med = [&](double Run::*field) {
    std::vector<double> v;
    v.reserve(p.runs.size());
    for (const Run& r : p.runs) v.push_back(r.*field);
    return Median(std::move(v));
  };
  return {med(&Run::decode_tps),       med(&Run::ttft_ms),
          med(&Run::end_to_end_tps),   med(&Run::reported_decode_tps),
          med(&Run::reported_ttft_ms), med(&Run::on_cpu),
          med(&Run::waiting),          med(&Run::per_cpu_second)};
}

std::string PathJson(const Path& p) {
  auto summary = [&](double Run::*field) {
    std::vector<double> v;
    v.reserve(p.runs.size());
    for (const Run& r : p.runs) v.push_back(r.*field);
    return SummaryJson(Summarize(std::move(v)));
  };
  cli::JsonObject j;
  j.Add("path", p.key)
      .Add("description", p.description)
      .AddRaw("decode_tokens_per_second", summary(&Run::decode_tps))
      .AddRaw("time_to_first_token_ms", summary(&Run::ttft_ms))
      .AddRaw("end_to_end_tokens_per_second", summary(&Run::end_to_end_tps));
  if (p.runs.empty() || p.runs.front().on_cpu >= 0) {
    j.AddRaw("on_cpu_share", summary(&Run::on_cpu))
        .AddRaw("run_queue_wait_share", summary(&Run::waiting))
        .AddRaw("tokens_per_cpu_second", summary(&Run::per_cpu_second));
  }
  if (p.celld != nullptr) {
    j.AddRaw("worker_reported_decode_tokens_per_second", summary(&Run::reported_decode_tps))
        .AddRaw("worker_reported_time_to_first_token_ms", summary(&Run::reported_ttft_ms));
  }
  return j.Render();
}

// Runs every path `repetitions` times, interleaved (order rotated), after one warm-up each (the
// page cache, the zygote's first fork, this process's mapping).
Status RunPaths(std::vector<Path>& paths, const std::function<Result<Run>(const Path&)>& run_path,
                int64_t repetitions) {
  for (const Path& p : paths) {
    Result<Run> warm = run_path(p);
    if (!warm) return std::move(warm).error().Context(p.description + " (warm-up)");
  }
  for (int64_t r = 0; r < repetitions; ++r) {
    for (size_t k = 0; k < paths.size(); ++k) {
      Path& p = paths[(static_cast<size_t>(r) + k) % paths.size()];
      Result<Run> run = run_path(p);
      if (!run) return std::move(run).error().Context(p.description);
      p.runs.push_back(std::move(*run));
    }
  }
  // Same model, prompt, seed, greedy: the same tokens, or the comparison means nothing.
  const Run& reference = paths[0].runs.front();
  for (const Path& p : paths) {
    for (const Run& r : p.runs) {
      if (r.generated != reference.generated ||
          (!r.tokens.empty() && r.tokens != reference.tokens)) {
        return Error(p.description + " generated other tokens than the engine; not comparable");
      }
    }
  }
  return Ok();
}

// The table of one preset; returns the JSON of the overheads.
std::string PrintPreset(const std::vector<Path>& paths) {
  Medians engine = MediansOf(paths[0]);
  Medians cm = MediansOf(paths[1]);
  const int n = paths[0].runs.front().generated;
  Table table({"path", "decode tok/s", "vs engine", "vs cellmodel", "TTFT ms", "end-to-end tok/s",
               "on CPU", "run-queue wait", "tok/CPU-s", "vs engine"});
  auto overhead = [](double base, double v) {
    return base > 0 ? Format("%+.1f%%", (base - v) / base * 100) : std::string("-");
  };
  auto frac = [](double base, double v) { return base > 0 ? (base - v) / base : 0.0; };
  auto share = [](double v) { return v >= 0 ? Format("%.1f%%", v * 100) : std::string("-"); };
  auto row = [&](const std::string& name, double decode, double ttft, double e2e,
                 const Medians* sched) {
    std::vector<std::string> cells = {name,
                                      Format("%.1f", decode),
                                      overhead(engine.decode_tps, decode),
                                      overhead(cm.decode_tps, decode),
                                      Format("%.1f", ttft),
                                      e2e > 0 ? Format("%.1f", e2e) : "-"};
    if (sched != nullptr && sched->on_cpu >= 0) {
      cells.insert(cells.end(), {share(sched->on_cpu), share(sched->waiting),
                                 Format("%.1f", sched->per_cpu_second),
                                 overhead(engine.per_cpu_second, sched->per_cpu_second)});
    } else {
      cells.insert(cells.end(), {"-", "-", "-", "-"});
    }
    table.AddRow(std::move(cells));
  };
  cli::JsonObject overheads;
  overheads.Add("cellmodel_vs_engine", frac(engine.decode_tps, cm.decode_tps));
  for (const Path& p : paths) {
    Medians m = MediansOf(p);
    row(p.description, m.decode_tps, m.ttft_ms, m.end_to_end_tps, &m);
    if (p.celld == nullptr) continue;
    // Done.decode_tokens_per_second is generated / decode time, which holds generated - 1
    // forward passes: scaled by (n - 1) / n to count like the other rows.
    double worker = n > 1 ? m.reported_decode_tps * (n - 1) / n : m.reported_decode_tps;
    row("  the worker's own Done figures", worker, m.reported_ttft_ms, 0, nullptr);
    overheads.AddRaw(
        p.key, cli::JsonObject()
                   .Add("client_vs_engine", frac(engine.decode_tps, m.decode_tps))
                   .Add("client_vs_cellmodel", frac(cm.decode_tps, m.decode_tps))
                   .Add("worker_vs_engine", frac(engine.decode_tps, worker))
                   .Add("per_cpu_second_vs_engine", frac(engine.per_cpu_second, m.per_cpu_second))
                   .Render());
  }
  table.Print(stdout);
  Printf(stdout,
         "  vs X = (X - path) / X of decode tokens/s: positive is slower. Target: the full "
         "session within 3%% of the engine.\n"
         "  Decode counts the generated - 1 forward passes between the first token and the "
         "last. End-to-end is generated / (request to Done); cellmodel's includes exec and "
         "mapping the model, the sessions' exclude the open.\n"
         "  On CPU / run-queue wait: shares of the turn's wall time the generating thread ran, "
         "or was runnable but waiting for a CPU (/proc/PID/schedstat); tok/CPU-s: generated "
         "tokens per second on a CPU, the rate with the machine's other load taken out.\n");
  return overheads.Render();
}

Result<std::string> BenchPreset(const WorkDir& dir, const Options& o, const std::string& preset) {
  Printf(stderr, "%s: generating the model...\n", preset.c_str());
  CH_ASSIGN_OR_RETURN(std::string model_path, MakeModel(dir, preset, 1));
  CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(model_path));
  CH_ASSIGN_OR_RETURN(
      engine::Tokenizer tokenizer,
      engine::Tokenizer::Open(model_path + ".tokenizer", model.config().vocab_size));
  CH_ASSIGN_OR_RETURN(std::vector<int32_t> prompt_tokens,
                      tokenizer.Encode(o.prompt, {.add_bos = true}));
  // The generated tokens must fit beside the prompt (the 15m preset's context is 256).
  int room = model.config().seq_len - static_cast<int>(prompt_tokens.size());
  int tokens = static_cast<int>(std::min<int64_t>(o.tokens, room));
  CH_ASSIGN_OR_RETURN(std::string cellmodel, SiblingBinary("cellmodel"));
  std::string policies = dir.File("policies-" + preset);
  CH_RETURN_IF_ERROR(WritePolicy(policies, BenchPolicy{}));
  CH_RETURN_IF_ERROR(WritePolicy(policies, BenchPolicy{.name = "noquota", .cpu_percent = 0}));

  std::vector<Path> paths = {
      {"engine", "engine in this process (Conversation)"},
      {"cellmodel", "cellmodel run (its own figures)"},
  };
  struct Variant {
    const char* key;
    const char* description;
    bool sandbox, cgroups;
  };
  std::vector<Variant> variants = {
      {"session", "session: sandbox + cgroups (client's clock)", true, true}};
  if (o.layers) {
    variants.push_back({"session-no-cgroups", "session: sandbox, --no-cgroups", true, false});
    variants.push_back(
        {"session-bare", "session: --insecure-no-sandbox --no-cgroups", false, false});
  }
  std::vector<std::unique_ptr<Celld>> daemons;
  for (const Variant& v : variants) {
    CH_ASSIGN_OR_RETURN(auto celld, Celld::Start(dir, {.name = preset + "-" + v.key,
                                                       .model = model_path,
                                                       .policy_dir = policies,
                                                       .cgroups = v.cgroups,
                                                       .sandbox = v.sandbox}));
    paths.push_back({v.key, v.description, celld.get()});
    if (o.layers && v.cgroups) {
      paths.push_back({"session-no-cpu-quota", "session: sandbox + cgroups, no CPU quota",
                       celld.get(), "noquota"});
    }
    daemons.push_back(std::move(celld));
  }
  Printf(stderr, "%s: %lld repetitions of %d tokens on %zu paths...\n", preset.c_str(),
         static_cast<long long>(o.repetitions), tokens, paths.size());
  CH_RETURN_IF_ERROR(RunPaths(
      paths,
      [&](const Path& p) -> Result<Run> {
        if (p.key == "engine") return RunEngine(model, tokenizer, o.prompt, tokens);
        if (p.key == "cellmodel") return RunCellmodel(cellmodel, model_path, o.prompt, tokens);
        return RunSession(p.celld->socket(), p.policy, o.prompt, tokens);
      },
      o.repetitions));
  for (auto& d : daemons) CH_RETURN_IF_ERROR(d->Stop());

  const Run& reference = paths[0].runs.front();
  Printf(stdout,
         "\n%s (%s; decode kernel %s): %zu prompt tokens, %d generated, greedy, seed %llu; "
         "medians of %lld repetitions\n",
         preset.c_str(), model.Describe().c_str(), reference.kernel.c_str(), prompt_tokens.size(),
         reference.generated, static_cast<unsigned long long>(kSeed),
         static_cast<long long>(o.repetitions));
  std::string overheads = PrintPreset(paths);
  std::vector<std::string> items;
  items.reserve(paths.size());
  for (const Path& p : paths) items.push_back(PathJson(p));
  return cli::JsonObject()
      .Add("preset", preset)
      .Add("model", model.Describe())
      .Add("decode_kernel", reference.kernel)
      .Add("prompt_tokens", static_cast<int64_t>(prompt_tokens.size()))
      .Add("generated_tokens", static_cast<int64_t>(reference.generated))
      .Add("repetitions", o.repetitions)
      .AddRaw("paths", cli::JsonArray(items))
      .AddRaw("decode_overhead", overheads)
      .Render();
}

Status RunAll(const Options& o, const WorkDir& dir) {
  Printf(stdout, "streaming_bench: one BLAS thread everywhere%s\n",
         o.common.quick ? ", --quick" : "");
  std::vector<std::string> results;
  for (std::string_view preset : Split(o.presets, ',')) {
    CH_ASSIGN_OR_RETURN(std::string json, BenchPreset(dir, o, std::string(Trim(preset))));
    results.push_back(std::move(json));
  }
  return WriteJson(o.common.json_path, cli::JsonObject()
                                           .Add("benchmark", "streaming")
                                           .Add("quick", o.common.quick)
                                           .Add("prompt", o.prompt)
                                           .AddRaw("presets", cli::JsonArray(results))
                                           .Render());
}

int Main(int argc, char** argv) {
  if (Status st = ReexecWithOneBlasThread(argv); !st) {
    Printf(stderr, "streaming_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  Options o;
  FlagSet flags("streaming_bench [--quick] [--presets 15m,110m] [--tokens N] [--json FILE]",
                "Decode tokens/s and time to first token through a sandboxed session, against "
                "the engine in-process and `cellmodel run`, in the same run. Prints figures; "
                "asserts nothing about time.");
  AddBenchFlags(flags, &o.common);
  flags.String("presets", &o.presets, "LIST", "cellmodel make presets to measure");
  flags.Int("tokens", &o.tokens, "N",
            "new tokens per generation (default 256; --quick: 64), capped by the context");
  flags.Int("repetitions", &o.repetitions, "N", "generations per path (default 7; --quick: 3)");
  flags.String("prompt", &o.prompt, "TEXT", "the prompt");
  bool no_layers = false;
  flags.Bool("no-layers", &no_layers,
             "only the full session (not also --no-cgroups and --insecure-no-sandbox ones; "
             "--quick implies it)");
  if (std::optional<int> done = ParseBenchFlags(flags, "streaming_bench", argc, argv)) {
    return *done;
  }
  o.layers = !no_layers && !o.common.quick;
  if (o.common.quick) {
    if (!flags.IsSet("tokens")) o.tokens = 64;
    if (!flags.IsSet("repetitions")) o.repetitions = 3;
  }
  if (o.tokens < 2 || o.repetitions < 1) {
    Printf(stderr, "streaming_bench: --tokens must be at least 2, --repetitions positive\n");
    return 2;
  }
  Result<WorkDir> dir = WorkDir::Create(o.common.keep);
  if (!dir) {
    Printf(stderr, "streaming_bench: %s\n", dir.error().message().c_str());
    return 1;
  }
  Status st = RunAll(o, *dir);
  if (!st) {
    dir->Keep();  // its celld logs say what went wrong
    Printf(stderr, "streaming_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
