// load_bench: N sessions generating at once on one celld: aggregate tokens/s, how fairly the
// machine's cores are shared between them, and the latency each client sees (time to first
// token, inter-token gaps) as N grows.
//
//   build/bin/load_bench [--quick] [--preset 110m] [--sessions 1,2,4,8,16] [--tokens 64]
//                        [--repetitions 3] [--gguf TYPE [--executor alone,shared]
//                        [--llama-cpp DIR]]
//                        [--json FILE] [--keep]
//
// With --gguf TYPE the model is converted to GGUF of that type, and each --executor mode gets a
// celld of its own: `alone` (every worker computes its own steps) and `shared` (celld
// --shared-executor: the workers' rounds meet in the model's shared executor); the ratio of
// their aggregate rates is printed per N. Then llama.cpp's llama-batched-bench (--llama-cpp DIR,
// skipped when absent) runs on the same GGUF file with the sessions' prompt length in tokens,
// --tokens decode tokens, each N as its number of sequences and the machine's CPUs as threads;
// its speed_tg is printed beside the last mode's decode rate.
//
// For each N and repetition: N sessions are opened (not timed), then N client threads send the
// same request at once (a short prompt, greedy, --tokens new tokens) and stamp every piece as it
// arrives. Per session: time to first token (request → first piece), inter-token latency (gaps
// between pieces) and decode rate ((pieces − 1) / first → last piece). Per run: aggregate
// tokens/s (all pieces / first request → last piece: prefills included), decode tokens/s (the
// pieces after the moment every session has its first one / that moment → last piece: no
// prefill left, as llama-batched-bench's speed_tg counts; a session that finishes early leaves
// the tail to the others, so it errs low; 0, and left out of the JSON, when no session has a
// second piece), Jain's fairness index of the per-session rates ((Σx)² / (N·Σx²): 1 when all
// are equal, 1/N when one session gets everything) and min/max. Rates and fairness are medians over
// repetitions; latency percentiles are over the pieces of all repetitions. The default policy's
// sandbox and cgroups (one CPU per session). Figures only: nothing here asserts anything about
// time.
#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/process.h"
#include "base/strings.h"
#include "bench/sessions/bench_common.h"
#include "bench/sessions/llama_batched.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"

namespace cellhouse::bench {
namespace {

struct Options {
  BenchFlags common;
  std::string preset = "110m";
  std::string sessions = "1,2,4,8,16";
  int64_t tokens = 64;
  int64_t repetitions = 3;
  std::string prompt = "Once upon a time";
  std::string gguf;                // empty: the llama2.c fp32 model
  std::string executor = "alone";  // with --gguf: alone, shared, or both
  std::string llama_cpp = "../shared/tools/llama.cpp";
};

// One session's turn, stamped on the client's clock.
struct Turn {
  int64_t sent_ns = 0;
  std::vector<int64_t> piece_ns;
  uint32_t prompt_tokens = 0;  // as the worker counted them (Done)
};

struct RunFigures {
  double aggregate_tps = 0;
  double decode_tps = 0;
  double jain = 0;
  double min_tps = 0;
  double max_tps = 0;
};

struct Level {
  int sessions = 0;
  uint32_t prompt_tokens = 0;  // each session's prompt, in tokens
  std::vector<RunFigures> runs;
  std::vector<double> ttft_ms;      // every session of every repetition
  std::vector<double> itl_ms;       // every gap of every session of every repetition
  std::vector<double> session_tps;  // every session of every repetition
};

Result<std::vector<int>> ParseCounts(const std::string& text) {
  std::vector<int> out;
  for (std::string_view part : Split(text, ',')) {
    CH_ASSIGN_OR_RETURN(int64_t n, ParseInt64(Trim(part), "--sessions"));
    if (n < 1 || n > 64) return Error("--sessions: each count must be in 1..64");
    out.push_back(static_cast<int>(n));
  }
  if (out.empty()) return Error("--sessions: give at least one count");
  return out;
}

// N threads wait here, then send at once.
class StartGate {
 public:
  void Wait() {
    std::unique_lock lock(mu_);
    cv_.wait(lock, [&] { return open_; });
  }
  void Open() {
    {
      std::lock_guard lock(mu_);
      open_ = true;
    }
    cv_.notify_all();
  }

 private:
  std::mutex mu_;
  std::condition_variable cv_;
  bool open_ = false;
};

Result<RunFigures> OneRun(const Celld& celld, int n, const Options& o, Level& level) {
  std::vector<cli::SessionClient> sessions;
  sessions.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    CH_ASSIGN_OR_RETURN(cli::SessionClient s,
                        cli::SessionClient::Open(celld.socket(), {.policy = "default"}));
    sessions.push_back(std::move(s));
  }
  std::vector<Turn> turns(static_cast<size_t>(n));
  std::vector<std::optional<Error>> failures(static_cast<size_t>(n));
  StartGate gate;
  std::atomic<int> waiting{0};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      api::Generate g;
      g.set_prompt(o.prompt);
      g.set_max_new_tokens(static_cast<uint32_t>(o.tokens));
      g.set_temperature(0);
      g.set_seed(42);
      Turn& t = turns[static_cast<size_t>(i)];
      t.piece_ns.reserve(static_cast<size_t>(o.tokens));
      waiting.fetch_add(1);
      gate.Wait();
      t.sent_ns = MonotonicNanos();
      auto done = sessions[static_cast<size_t>(i)].Generate(
          g, [&](const api::Piece&) { t.piece_ns.push_back(MonotonicNanos()); });
      if (!done) {
        failures[static_cast<size_t>(i)] = done.error();
      } else {
        t.prompt_tokens = done->prompt_tokens();
      }
    });
  }
  while (waiting.load() < n) std::this_thread::yield();
  gate.Open();
  for (std::thread& t : threads) t.join();
  for (auto& f : failures) {
    if (f) return std::move(*f).Context(Format("generating with %d sessions", n));
  }
  for (cli::SessionClient& s : sessions) CH_RETURN_IF_ERROR(s.Close());

  int64_t first_sent = INT64_MAX, last_piece = 0;
  size_t pieces = 0;
  std::vector<double> rates;
  for (const Turn& t : turns) {
    if (t.piece_ns.empty()) return Error("a session produced no token");
    level.prompt_tokens = t.prompt_tokens;
    first_sent = std::min(first_sent, t.sent_ns);
    last_piece = std::max(last_piece, t.piece_ns.back());
    pieces += t.piece_ns.size();
    level.ttft_ms.push_back(static_cast<double>(t.piece_ns.front() - t.sent_ns) / 1e6);
    for (size_t k = 1; k < t.piece_ns.size(); ++k) {
      level.itl_ms.push_back(static_cast<double>(t.piece_ns[k] - t.piece_ns[k - 1]) / 1e6);
    }
    const double span = static_cast<double>(t.piece_ns.back() - t.piece_ns.front()) / 1e9;
    const double rate =
        t.piece_ns.size() > 1 && span > 0 ? static_cast<double>(t.piece_ns.size() - 1) / span : 0.0;
    rates.push_back(rate);
    level.session_tps.push_back(rate);
  }
  RunFigures f;
  f.aggregate_tps =
      static_cast<double>(pieces) / (static_cast<double>(last_piece - first_sent) / 1e9);
  // Every session decoding: from the last first piece on.
  int64_t all_started = 0;
  for (const Turn& t : turns) all_started = std::max(all_started, t.piece_ns.front());
  size_t decoded = 0;
  for (const Turn& t : turns) {
    decoded += static_cast<size_t>(
        t.piece_ns.end() - std::upper_bound(t.piece_ns.begin(), t.piece_ns.end(), all_started));
  }
  f.decode_tps =
      last_piece > all_started
          ? static_cast<double>(decoded) / (static_cast<double>(last_piece - all_started) / 1e9)
          : 0.0;
  double sum = 0, sum_sq = 0;
  for (double r : rates) {
    sum += r;
    sum_sq += r * r;
  }
  f.jain = sum_sq > 0 ? sum * sum / (static_cast<double>(rates.size()) * sum_sq) : 0;
  f.min_tps = *std::min_element(rates.begin(), rates.end());
  f.max_tps = *std::max_element(rates.begin(), rates.end());
  return f;
}

// One celld per mode (alone, or shared: --shared-executor), with policies of their own (host
// uid ranges apart), each warmed up by one short turn (the weights' page tables, the first BLAS
// call).
Result<std::unique_ptr<Celld>> StartDaemon(const Options& o, const WorkDir& dir,
                                           const std::string& model, const std::string& mode,
                                           uint32_t cap, uint32_t salt) {
  const std::string policies = dir.File("policies-" + mode);
  CH_RETURN_IF_ERROR(WritePolicy(
      policies,
      BenchPolicy{.max_sessions = cap, .max_sessions_per_tenant = cap, .host_range_salt = salt}));
  std::vector<std::string> args = {"--memory-budget", "12G"};
  args.emplace_back(mode == "shared" ? "--shared-executor" : "--shared-executor=false");
  CH_ASSIGN_OR_RETURN(auto celld, Celld::Start(dir, {.name = "load-" + mode,
                                                     .model = model,
                                                     .policy_dir = policies,
                                                     .extra_args = args}));
  CH_ASSIGN_OR_RETURN(cli::SessionClient s,
                      cli::SessionClient::Open(celld->socket(), {.policy = "default"}));
  api::Generate g;
  g.set_prompt(o.prompt);
  g.set_max_new_tokens(8);
  g.set_temperature(0);
  CH_ASSIGN_OR_RETURN(api::Done done, s.Generate(g, [](const api::Piece&) {}));
  static_cast<void>(done);
  CH_RETURN_IF_ERROR(s.Close());
  return celld;
}

// Every mode through every level and repetition, interleaved (repetitions outermost, then N,
// then the modes), so a slow minute of the shared machine reaches every figure alike. Only the
// daemon being measured has sessions; the other idles.
Result<std::vector<std::vector<Level>>> Measure(const Options& o, const WorkDir& dir,
                                                const std::string& model,
                                                const std::vector<int>& counts,
                                                const std::vector<std::string>& modes,
                                                uint32_t cap) {
  std::vector<std::unique_ptr<Celld>> daemons;
  std::vector<std::vector<Level>> levels(modes.size());
  for (size_t m = 0; m < modes.size(); ++m) {
    CH_ASSIGN_OR_RETURN(auto celld,
                        StartDaemon(o, dir, model, modes[m], cap, static_cast<uint32_t>(m)));
    daemons.push_back(std::move(celld));
    for (int n : counts) levels[m].push_back({.sessions = n});
  }
  for (int64_t r = 0; r < o.repetitions; ++r) {
    for (size_t i = 0; i < counts.size(); ++i) {
      for (size_t m = 0; m < modes.size(); ++m) {
        Level& level = levels[m][i];
        const long long repetition = r + 1;
        Printf(stderr, "repetition %lld, %s: %d sessions generating %lld tokens each...\n",
               repetition, modes[m].c_str(), level.sessions, static_cast<long long>(o.tokens));
        CH_ASSIGN_OR_RETURN(RunFigures f, OneRun(*daemons[m], level.sessions, o, level));
        level.runs.push_back(f);
      }
    }
  }
  for (auto& celld : daemons) CH_RETURN_IF_ERROR(celld->Stop());
  return levels;
}

double MedianAggregate(const Level& level) {
  std::vector<double> aggregate;
  aggregate.reserve(level.runs.size());
  for (const RunFigures& f : level.runs) aggregate.push_back(f.aggregate_tps);
  return Median(aggregate);
}

double MedianDecode(const Level& level) {
  std::vector<double> decode;
  decode.reserve(level.runs.size());
  for (const RunFigures& f : level.runs) {
    if (f.decode_tps > 0) decode.push_back(f.decode_tps);
  }
  if (decode.empty()) return 0;
  return Median(decode);
}

// Prints one mode's table; its JSON items are appended to `items`.
void Report(const std::vector<Level>& levels, const std::string& mode,
            std::vector<std::string>& items) {
  Printf(stdout, "  compute: %s\n", mode.c_str());
  Table table({"sessions", "aggregate tok/s", "decode tok/s", "per session p50", "min", "max",
               "Jain", "TTFT p50 ms", "TTFT p99", "ITL p50 ms", "ITL p99", "ITL max"});
  for (const Level& level : levels) {
    std::vector<double> jain, min, max;
    for (const RunFigures& f : level.runs) {
      jain.push_back(f.jain);
      min.push_back(f.min_tps);
      max.push_back(f.max_tps);
    }
    const Summary ttft = Summarize(level.ttft_ms), itl = Summarize(level.itl_ms),
                  per = Summarize(level.session_tps);
    const double aggregate = MedianAggregate(level);
    table.AddRow({std::to_string(level.sessions), Format("%.1f", aggregate),
                  MedianDecode(level) > 0 ? Format("%.1f", MedianDecode(level)) : "-",
                  Format("%.1f", per.p50), Format("%.1f", Median(min)), Format("%.1f", Median(max)),
                  Format("%.3f", Median(jain)), Format("%.1f", ttft.p50), Format("%.1f", ttft.p99),
                  Format("%.1f", itl.p50), Format("%.1f", itl.p99), Format("%.1f", itl.max)});
    cli::JsonObject item;
    item.Add("compute", mode)
        .Add("sessions", static_cast<int64_t>(level.sessions))
        .Add("aggregate_tokens_per_second", aggregate);
    if (const double decode = MedianDecode(level); decode > 0) {
      item.Add("decode_tokens_per_second", decode);
    }
    items.push_back(item.AddRaw("session_tokens_per_second", SummaryJson(per))
                        .Add("min_session_tokens_per_second", Median(min))
                        .Add("max_session_tokens_per_second", Median(max))
                        .Add("jain_fairness", Median(jain))
                        .AddRaw("time_to_first_token_ms", SummaryJson(ttft))
                        .AddRaw("inter_token_ms", SummaryJson(itl))
                        .Render());
  }
  table.Print(stdout);
}

Status Run(const Options& o, const WorkDir& dir) {
  CH_ASSIGN_OR_RETURN(std::vector<int> counts, ParseCounts(o.sessions));
  const int most = *std::max_element(counts.begin(), counts.end());
  Printf(stderr, "generating the %s model...\n", o.preset.c_str());
  CH_ASSIGN_OR_RETURN(std::string model, MakeModel(dir, o.preset, 1));
  if (!o.gguf.empty()) {
    CH_ASSIGN_OR_RETURN(model, ConvertModel(dir, model, o.gguf));
  }
  // Caps with room to spare: a closed session's worker may still be exiting when the next
  // run opens its sessions (Close returns at the worker's Ack, before celld reaps it).
  const auto cap = static_cast<uint32_t>(2 * most + 4);
  const std::vector<std::string> modes = o.executor == "both"
                                             ? std::vector<std::string>{"alone", "shared"}
                                             : std::vector<std::string>{o.executor};
  CH_ASSIGN_OR_RETURN(std::vector<std::vector<Level>> results,
                      Measure(o, dir, model, counts, modes, cap));

  const std::string shape = o.gguf.empty() ? o.preset : o.preset + " GGUF " + o.gguf;
  Printf(stdout,
         "load_bench: %s, %lld new tokens per session, %lld repetitions, %u CPUs%s\n"
         "  every session of a run sends its request at the same moment; default policy (one "
         "CPU per session)\n",
         shape.c_str(), static_cast<long long>(o.tokens), static_cast<long long>(o.repetitions),
         std::thread::hardware_concurrency(), o.common.quick ? ", --quick" : "");
  std::vector<std::string> items;
  for (size_t m = 0; m < modes.size(); ++m) Report(results[m], modes[m], items);
  if (modes.size() == 2) {
    for (size_t i = 0; i < counts.size(); ++i) {
      const double alone = MedianAggregate(results[0][i]);
      const double shared = MedianAggregate(results[1][i]);
      Printf(stdout, "  %d sessions: shared executor / alone = %.2fx aggregate\n", counts[i],
             alone > 0 ? shared / alone : 0.0);
    }
  }
  // llama.cpp on the same file, the same prompt and decode lengths, sequence counts and CPUs.
  std::string llama_items;
  if (!o.gguf.empty()) {
    std::vector<int> ascending = counts;
    std::sort(ascending.begin(), ascending.end());
    const int prompt_tokens = static_cast<int>(results.back().front().prompt_tokens);
    const std::vector<double> llama = LlamaBatchedDecode({.llama_cpp = o.llama_cpp,
                                                          .model = model,
                                                          .prompt = std::max(prompt_tokens, 1),
                                                          .tokens = static_cast<int>(o.tokens),
                                                          .counts = ascending,
                                                          .threads = CpusAllowed()},
                                                         dir.path());
    if (std::all_of(llama.begin(), llama.end(), [](double v) { return v <= 0; })) {
      Printf(stdout, "  llama.cpp: llama-batched-bench not found in %s (or it failed): no column\n",
             o.llama_cpp.c_str());
    } else {
      Printf(stdout,
             "  llama.cpp: llama-batched-bench on the same file, %d prompt + %lld decode tokens "
             "per sequence, %d threads (its speed_tg)\n",
             prompt_tokens, static_cast<long long>(o.tokens), CpusAllowed());
      Table table({"sequences", "llama.cpp decode tok/s", "ours decode tok/s", "ours / llama.cpp"});
      std::vector<std::string> rows;
      for (size_t k = 0; k < ascending.size(); ++k) {
        const size_t i = static_cast<size_t>(std::find(counts.begin(), counts.end(), ascending[k]) -
                                             counts.begin());
        const double ours = MedianDecode(results.back()[i]);
        table.AddRow({std::to_string(ascending[k]), Format("%.1f", llama[k]),
                      ours > 0 ? Format("%.1f", ours) : "-",
                      llama[k] > 0 && ours > 0 ? Format("%.2fx", ours / llama[k]) : "-"});
        rows.push_back(cli::JsonObject()
                           .Add("sessions", static_cast<int64_t>(ascending[k]))
                           .Add("decode_tokens_per_second", llama[k])
                           .Render());
      }
      table.Print(stdout);
      llama_items = cli::JsonArray(rows);
    }
  }
  return WriteJson(o.common.json_path,
                   cli::JsonObject()
                       .Add("benchmark", "load")
                       .Add("quick", o.common.quick)
                       .Add("preset", o.preset)
                       .Add("gguf", o.gguf)
                       .Add("tokens", o.tokens)
                       .Add("repetitions", o.repetitions)
                       .Add("prompt", o.prompt)
                       .AddRaw("levels", cli::JsonArray(items))
                       .AddRaw("llama_cpp_batched", llama_items.empty() ? "[]" : llama_items)
                       .Add("llama_cpp_threads", static_cast<int64_t>(CpusAllowed()))
                       .Render());
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("load_bench [--quick] [--preset P] [--sessions 1,2,4,8,16] [--json FILE]",
                "Aggregate tokens/s, fairness between sessions, time to first token and "
                "inter-token latency with N sessions generating at once. Prints figures; "
                "asserts nothing about time.");
  AddBenchFlags(flags, &o.common);
  flags.String("preset", &o.preset, "NAME", "cellmodel make preset of the served model");
  flags.String("sessions", &o.sessions, "LIST",
               "concurrent generating sessions (default 1,2,4,8,16; --quick 1,2,4)");
  flags.Int("tokens", &o.tokens, "N", "new tokens per session (default 64; --quick 32)");
  flags.Int("repetitions", &o.repetitions, "N", "runs per N (default 3; --quick 1)");
  flags.String("prompt", &o.prompt, "TEXT", "the prompt every session sends");
  flags.String("gguf", &o.gguf, "TYPE",
               "serve the model converted to GGUF of this type (Q8_0, Q4_K_M, F16, ...)");
  flags.String("llama-cpp", &o.llama_cpp, "DIR",
               "with --gguf: llama.cpp's binaries, whose llama-batched-bench runs on the same file "
               "(skipped when absent)");
  flags.String("executor", &o.executor, "MODE",
               "with --gguf: alone (workers compute their own steps), shared (celld "
               "--shared-executor) or both (default alone)");
  if (std::optional<int> done = ParseBenchFlags(flags, "load_bench", argc, argv)) {
    return *done;
  }
  if (o.common.quick) {
    if (!flags.IsSet("sessions")) o.sessions = "1,2,4";
    if (!flags.IsSet("tokens")) o.tokens = 32;
    if (!flags.IsSet("repetitions")) o.repetitions = 1;
  }
  if (o.tokens < 2 || o.repetitions < 1) {
    Printf(stderr, "load_bench: --tokens must be at least 2, --repetitions positive\n");
    return 2;
  }
  if (o.executor != "alone" && o.executor != "shared" && o.executor != "both") {
    Printf(stderr, "load_bench: --executor is alone, shared or both\n");
    return 2;
  }
  if (o.executor != "alone" && o.gguf.empty()) {
    Printf(stderr, "load_bench: --executor %s needs --gguf TYPE (the executor computes GGUF)\n",
           o.executor.c_str());
    return 2;
  }
  Result<WorkDir> dir = WorkDir::Create(o.common.keep);
  if (!dir) {
    Printf(stderr, "load_bench: %s\n", dir.error().message().c_str());
    return 1;
  }
  Status st = Run(o, *dir);
  if (!st) {
    dir->Keep();  // its celld log says what went wrong
    Printf(stderr, "load_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
