// memory_bench: what N sessions cost in memory when every worker shares the zygote's one
// read-only mapping of the model, against the naive N × (weights + state).
//
//   build/bin/memory_bench [--quick] [--sessions 1,4,16,64,256] [--preset 110m]
//                          [--conversation-tokens 512] [--int8-group-size 64] [--json FILE]
//                          [--keep]
//
// --int8-group-size N serves the model quantized by `cellmodel quantize` instead of fp32: the
// int8 mapping must be shared exactly as the fp32 one is.
//
// Two sweeps on one celld (default policy's sandbox and cgroups):
//   idle         N sessions opened, nothing generated
//   conversation N sessions, each after one turn that fills --conversation-tokens positions of
//                its context (a prompt of about that many tokens, then a few generated ones)
// For each N it reads /proc/PID/smaps_rollup of every worker and of the zygote: PSS splits each
// shared page between the processes mapping it, so the PSS of all of them adds up to the memory
// they really take, weights once. The marginal cost of a session is the slope of a
// least-squares line through total PSS (workers + zygote) against N. Each session's cgroup
// charge (what `cellctl sessions` shows as MEMORY) is read from celld too: the weights are
// charged to celld's cgroup, so a session's charge is its own private memory only.
// celld runs without a pool (--pool-size 0): pool workers are not sessions, and would be
// counted neither as sessions nor as the zygote. Conversations are opened by --openers client
// threads at once (the prefills are what takes the time).
// Figures only: nothing here asserts anything about memory.
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"
#include "cli/cellctl/session_client.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::bench {
namespace {

constexpr double kMiB = 1024.0 * 1024.0;

struct Options {
  BenchFlags common;
  std::string sessions = "1,4,16,64,256";
  std::string preset = "110m";
  int64_t conversation_tokens = 512;
  int64_t generated_tokens = 16;
  // Admission reserves each session's worst case (its whole context: 92 MiB on 110m), so 256
  // sessions need a budget above this machine's 24 GiB; they touch under half of it.
  std::string memory_budget = "25G";
  int64_t openers = 2;
  int64_t int8_group_size = 0;  // 0: fp32
};

// One measurement of N live sessions.
struct Point {
  int sessions = 0;
  uint64_t workers_pss = 0;
  uint64_t workers_pss_anon = 0;
  uint64_t workers_pss_file = 0;
  uint64_t workers_rss = 0;
  uint64_t zygote_pss = 0;
  uint64_t zygote_rss = 0;
  uint64_t celld_pss = 0;
  uint64_t naive = 0;         // N × (weights + the state one session uses)
  Summary cgroup_bytes;       // per session, as celld reports it
  uint32_t context_used = 0;  // per session (the last one's)
  uint64_t Total() const { return workers_pss + zygote_pss; }
};

struct ModelFacts {
  std::string description;
  uint64_t weights_bytes = 0;
  uint64_t state_fixed_bytes = 0;
  uint64_t kv_bytes_per_token = 0;
};

Result<std::vector<int>> ParseCounts(const std::string& text) {
  std::vector<int> out;
  for (std::string_view part : Split(text, ',')) {
    CH_ASSIGN_OR_RETURN(int64_t n, ParseInt64(Trim(part), "--sessions"));
    if (n < 1 || n > 512) return Error("--sessions: each count must be in 1..512");
    if (!out.empty() && n <= out.back()) return Error("--sessions: counts must increase");
    out.push_back(static_cast<int>(n));
  }
  if (out.empty()) return Error("--sessions: give at least one count");
  return out;
}

// A prompt of at least `tokens` tokens (BOS included) for this tokenizer.
Result<std::string> PromptOf(const engine::Tokenizer& tokenizer, int64_t tokens) {
  static constexpr const char* kWords[] = {"Once",  "upon",   "a",    "time",  "there", "was",
                                           "a",     "little", "dog",  "named", "Sam.",  "He",
                                           "liked", "to",     "play", "in",    "the",   "park."};
  std::string text;
  for (size_t i = 0;; ++i) {
    if (!text.empty()) text += ' ';
    text += kWords[i % std::size(kWords)];
    if (i % 8 != 7) continue;  // encode every few words: the encoder is not free
    CH_ASSIGN_OR_RETURN(std::vector<int32_t> encoded, tokenizer.Encode(text, {.add_bos = true}));
    if (std::cmp_greater_equal(encoded.size(), tokens)) return text;
  }
}

Result<pid_t> ZygotePid(pid_t celld, const std::vector<api::SessionInfo>& sessions) {
  for (pid_t child : ChildrenOf(celld, "cell-zygote")) {
    bool is_worker = false;
    for (const api::SessionInfo& s : sessions) is_worker |= s.worker_pid() == child;
    if (!is_worker) return child;
  }
  return Error("no zygote among celld's children");
}

Result<Point> Measure(const Celld& celld, const ModelFacts& facts, bool conversation) {
  // Let the workers finish what they started (Ready, the first heartbeat).
  std::this_thread::sleep_for(std::chrono::milliseconds(300));
  CH_ASSIGN_OR_RETURN(std::vector<api::SessionInfo> sessions, ListSessions(celld.socket()));
  Point p;
  p.sessions = static_cast<int>(sessions.size());
  std::vector<double> charged;
  for (const api::SessionInfo& s : sessions) {
    CH_ASSIGN_OR_RETURN(ProcessMemory m, ReadProcessMemory(s.worker_pid()));
    p.workers_pss += m.pss;
    p.workers_pss_anon += m.pss_anon;
    p.workers_pss_file += m.pss_file;
    p.workers_rss += m.rss;
    charged.push_back(static_cast<double>(s.memory_bytes()));
    p.context_used = s.context_used();
  }
  p.cgroup_bytes = Summarize(std::move(charged));
  CH_ASSIGN_OR_RETURN(pid_t zygote, ZygotePid(celld.pid(), sessions));
  CH_ASSIGN_OR_RETURN(ProcessMemory z, ReadProcessMemory(zygote));
  p.zygote_pss = z.pss;
  p.zygote_rss = z.rss;
  CH_ASSIGN_OR_RETURN(ProcessMemory c, ReadProcessMemory(celld.pid()));
  p.celld_pss = c.pss;
  uint64_t state = facts.state_fixed_bytes +
                   (conversation ? uint64_t{p.context_used} * facts.kv_bytes_per_token : 0);
  p.naive = static_cast<uint64_t>(p.sessions) * (facts.weights_bytes + state);
  return p;
}

// Least-squares slope of total PSS against the number of sessions (bytes per session).
double Slope(const std::vector<Point>& points) {
  if (points.size() < 2) return 0;
  double n = static_cast<double>(points.size()), sx = 0, sy = 0, sxx = 0, sxy = 0;
  for (const Point& p : points) {
    double x = p.sessions, y = static_cast<double>(p.Total());
    sx += x;
    sy += y;
    sxx += x * x;
    sxy += x * y;
  }
  double d = n * sxx - sx * sx;
  return d != 0 ? (n * sxy - sx * sy) / d : 0;
}

std::string MiB(double bytes) { return Format("%.1f", bytes / kMiB); }

std::string PrintSweep(const std::string& title, const std::vector<Point>& points,
                       const ModelFacts& facts, bool conversation) {
  Printf(stdout, "\n%s (MiB)\n", title.c_str());
  Table table({"sessions", "workers PSS", "per worker", "anon", "file", "zygote PSS", "total PSS",
               "workers RSS sum", "naive", "cgroup p50", "cgroup max"});
  std::vector<std::string> items;
  for (const Point& p : points) {
    double n = p.sessions;
    table.AddRow(
        {std::to_string(p.sessions), MiB(static_cast<double>(p.workers_pss)),
         MiB(static_cast<double>(p.workers_pss) / n), MiB(static_cast<double>(p.workers_pss_anon)),
         MiB(static_cast<double>(p.workers_pss_file)), MiB(static_cast<double>(p.zygote_pss)),
         MiB(static_cast<double>(p.Total())), MiB(static_cast<double>(p.workers_rss)),
         MiB(static_cast<double>(p.naive)), MiB(p.cgroup_bytes.p50), MiB(p.cgroup_bytes.max)});
    items.push_back(cli::JsonObject()
                        .Add("sessions", static_cast<int64_t>(p.sessions))
                        .Add("workers_pss_bytes", p.workers_pss)
                        .Add("workers_pss_anon_bytes", p.workers_pss_anon)
                        .Add("workers_pss_file_bytes", p.workers_pss_file)
                        .Add("workers_rss_bytes", p.workers_rss)
                        .Add("zygote_pss_bytes", p.zygote_pss)
                        .Add("zygote_rss_bytes", p.zygote_rss)
                        .Add("celld_pss_bytes", p.celld_pss)
                        .Add("total_pss_bytes", p.Total())
                        .Add("naive_bytes", p.naive)
                        .Add("context_used", p.context_used)
                        .AddRaw("cgroup_bytes_per_session", SummaryJson(p.cgroup_bytes))
                        .Render());
  }
  table.Print(stdout);
  double slope = Slope(points);
  double naive_per =
      static_cast<double>(facts.weights_bytes + facts.state_fixed_bytes +
                          (conversation && !points.empty()
                               ? uint64_t{points.back().context_used} * facts.kv_bytes_per_token
                               : 0));
  double max_charge = 0;
  for (const Point& p : points) max_charge = std::max(max_charge, p.cgroup_bytes.max);
  Printf(stdout,
         "  marginal cost: %.2f MiB per session (least-squares slope of total PSS); naive: "
         "%.1f MiB per session (weights %.1f + state); %.0fx less\n"
         "  largest session cgroup charge: %.1f MiB = %.1f%% of the weights\n",
         slope / kMiB, naive_per / kMiB, static_cast<double>(facts.weights_bytes) / kMiB,
         slope > 0 ? naive_per / slope : 0.0, max_charge / kMiB,
         100.0 * max_charge / static_cast<double>(facts.weights_bytes));
  return cli::JsonObject()
      .AddRaw("points", cli::JsonArray(items))
      .Add("marginal_bytes_per_session", slope)
      .Add("naive_bytes_per_session", naive_per)
      .Add("max_cgroup_bytes", max_charge)
      .Render();
}

// Opens one session; with a prompt, runs its turn.
Result<cli::SessionClient> OpenOne(const Celld& celld, const std::string& prompt,
                                   int64_t conversation_tokens, int64_t prompt_tokens) {
  CH_ASSIGN_OR_RETURN(cli::SessionClient s,
                      cli::SessionClient::Open(celld.socket(), {.policy = "default"}));
  if (!prompt.empty()) {
    api::Generate g;
    g.set_prompt(prompt);
    g.set_max_new_tokens(
        static_cast<uint32_t>(std::max<int64_t>(1, conversation_tokens - prompt_tokens)));
    g.set_temperature(0);
    g.set_seed(7);
    CH_ASSIGN_OR_RETURN(api::Done done, s.Generate(g, [](const api::Piece&) {}));
    static_cast<void>(done);
  }
  return s;
}

// Opens sessions until `target` are open, `openers` at a time; with a prompt, each new one
// runs its turn.
Status Grow(const Celld& celld, std::vector<cli::SessionClient>& open, int target,
            const std::string& prompt, int64_t conversation_tokens, int64_t prompt_tokens,
            int64_t openers) {
  std::mutex mu;
  std::optional<Error> failure;
  const auto missing = static_cast<int64_t>(target) - static_cast<int64_t>(open.size());
  int64_t started = 0;  // under mu: opens claimed by some thread
  auto work = [&] {
    while (true) {
      {
        std::lock_guard lock(mu);
        if (failure || started >= missing) return;
        ++started;
      }
      Result<cli::SessionClient> s = OpenOne(celld, prompt, conversation_tokens, prompt_tokens);
      std::lock_guard lock(mu);
      if (!s) {
        if (!failure) failure = s.error();
        return;
      }
      open.push_back(std::move(*s));
    }
  };
  const int64_t threads = std::max<int64_t>(1, std::min(openers, missing));
  std::vector<std::thread> pool;
  pool.reserve(static_cast<size_t>(threads));
  for (int64_t t = 0; t < threads; ++t) pool.emplace_back(work);
  for (std::thread& t : pool) t.join();
  if (failure) return std::move(*failure);
  return Ok();
}

Status CloseAll(std::vector<cli::SessionClient>& open) {
  for (cli::SessionClient& s : open) CH_RETURN_IF_ERROR(s.Close());
  open.clear();
  return Ok();
}

Result<std::string> Sweep(const Celld& celld, const ModelFacts& facts,
                          const std::vector<int>& counts, const std::string& prompt,
                          const Options& o, int64_t prompt_tokens) {
  const bool conversation = !prompt.empty();
  std::vector<cli::SessionClient> open;
  std::vector<Point> points;
  for (int n : counts) {
    Printf(stderr, "%s: %d sessions...\n", conversation ? "conversation" : "idle", n);
    CH_RETURN_IF_ERROR(
        Grow(celld, open, n, prompt, o.conversation_tokens, prompt_tokens, o.openers));
    CH_ASSIGN_OR_RETURN(Point p, Measure(celld, facts, conversation));
    if (p.sessions != n) {
      return Error("celld lists " + std::to_string(p.sessions) + " sessions, expected " +
                   std::to_string(n));
    }
    points.push_back(p);
  }
  CH_RETURN_IF_ERROR(CloseAll(open));
  std::string title =
      conversation ? Format("With one conversation each: %u context positions used per session",
                            points.back().context_used)
                   : std::string("Idle sessions (opened, nothing generated)");
  return PrintSweep(title, points, facts, conversation);
}

Status RunAll(const Options& o, const WorkDir& dir) {
  CH_ASSIGN_OR_RETURN(std::vector<int> counts, ParseCounts(o.sessions));
  Printf(stderr, "generating the %s model...\n", o.preset.c_str());
  CH_ASSIGN_OR_RETURN(std::string model_path, MakeModel(dir, o.preset, 1));
  std::string format = "fp32";
  if (o.int8_group_size != 0) {
    Printf(stderr, "quantizing it to int8, groups of %lld...\n",
           static_cast<long long>(o.int8_group_size));
    CH_ASSIGN_OR_RETURN(model_path,
                        QuantizeModel(dir, model_path, static_cast<int>(o.int8_group_size)));
    format = "q8-g" + std::to_string(o.int8_group_size);
  }
  ModelFacts facts;
  int64_t prompt_tokens = 0;
  std::string prompt;
  {
    CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(model_path));
    CH_ASSIGN_OR_RETURN(
        engine::Tokenizer tokenizer,
        engine::Tokenizer::Open(model_path + ".tokenizer", model.config().vocab_size));
    facts.description = model.Describe();
    facts.weights_bytes = model.bytes().size();
    facts.state_fixed_bytes = engine::StateFixedBytes(model.config());
    facts.kv_bytes_per_token = engine::KvCacheBytesPerToken(model.config(), model.kv_precision());
    int64_t conversation = std::min<int64_t>(o.conversation_tokens, model.config().seq_len);
    CH_ASSIGN_OR_RETURN(prompt, PromptOf(tokenizer, conversation - o.generated_tokens));
    CH_ASSIGN_OR_RETURN(std::vector<int32_t> encoded, tokenizer.Encode(prompt, {.add_bos = true}));
    prompt_tokens = static_cast<int64_t>(encoded.size());
  }
  CH_RETURN_IF_ERROR(
      WritePolicy(dir.File("policies"),
                  BenchPolicy{.max_sessions = static_cast<uint32_t>(counts.back()),
                              .max_sessions_per_tenant = static_cast<uint32_t>(counts.back())}));
  CH_ASSIGN_OR_RETURN(
      auto celld,
      Celld::Start(dir, {.name = "celld",
                         .model = model_path,
                         .policy_dir = dir.File("policies"),
                         .extra_args = {"--memory-budget", o.memory_budget, "--pool-size", "0"}}));
  Printf(stdout,
         "memory_bench: %s %s, %s; weights %.1f MiB, state %.1f MiB fixed + %.1f KiB of KV per "
         "context position%s\n",
         o.preset.c_str(), format.c_str(), facts.description.c_str(),
         static_cast<double>(facts.weights_bytes) / kMiB,
         static_cast<double>(facts.state_fixed_bytes) / kMiB,
         static_cast<double>(facts.kv_bytes_per_token) / 1024.0, o.common.quick ? ", --quick" : "");
  Printf(stdout,
         "  PSS: a shared page counts 1/k in each of the k processes mapping it. naive: N x "
         "(weights + the state a session uses), as N separate engines would take.\n"
         "  cgroup: each session's charge as celld reports it (cellctl sessions, MEMORY).\n");
  CH_ASSIGN_OR_RETURN(std::string idle, Sweep(*celld, facts, counts, "", o, 0));
  CH_ASSIGN_OR_RETURN(std::string conversation,
                      Sweep(*celld, facts, counts, prompt, o, prompt_tokens));
  CH_RETURN_IF_ERROR(celld->Stop());
  return WriteJson(o.common.json_path, cli::JsonObject()
                                           .Add("benchmark", "memory")
                                           .Add("quick", o.common.quick)
                                           .Add("preset", o.preset)
                                           .Add("format", format)
                                           .Add("model", facts.description)
                                           .Add("weights_bytes", facts.weights_bytes)
                                           .Add("state_fixed_bytes", facts.state_fixed_bytes)
                                           .Add("kv_bytes_per_token", facts.kv_bytes_per_token)
                                           .Add("prompt_tokens", prompt_tokens)
                                           .AddRaw("idle", idle)
                                           .AddRaw("conversation", conversation)
                                           .Render());
}

int Main(int argc, char** argv) {
  if (Status st = ReexecWithOneBlasThread(argv); !st) {
    Printf(stderr, "memory_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  Options o;
  FlagSet flags("memory_bench [--quick] [--sessions 1,4,16,64] [--preset P] [--json FILE]",
                "PSS of every worker and of the zygote with N idle sessions and with N "
                "sessions after one conversation each; the marginal bytes per session against "
                "N x (weights + state). Prints figures; asserts nothing.");
  AddBenchFlags(flags, &o.common);
  flags.String("sessions", &o.sessions, "LIST",
               "increasing session counts (default 1,4,16,64,256; --quick: 1,4)");
  flags.String("preset", &o.preset, "NAME", "cellmodel make preset of the served model");
  flags.Int("conversation-tokens", &o.conversation_tokens, "N",
            "context positions each conversation fills (capped by the model's context)");
  flags.Int("generated-tokens", &o.generated_tokens, "N", "of which generated (the rest prompt)");
  flags.String("memory-budget", &o.memory_budget, "BYTES", "celld --memory-budget");
  flags.Int("openers", &o.openers, "N", "client threads opening sessions at once (default 2)");
  flags.Int("int8-group-size", &o.int8_group_size, "N",
            "serve the model quantized to int8 in groups of N (32 or 64); 0: fp32");
  if (std::optional<int> done = ParseBenchFlags(flags, "memory_bench", argc, argv)) {
    return *done;
  }
  if (o.common.quick && !flags.IsSet("sessions")) o.sessions = "1,4";
  if (o.generated_tokens < 1 || o.conversation_tokens <= o.generated_tokens || o.openers < 1) {
    Printf(stderr, "memory_bench: --conversation-tokens must exceed --generated-tokens >= 1\n");
    return 2;
  }
  if (o.int8_group_size != 0 && o.int8_group_size != 32 && o.int8_group_size != 64) {
    Printf(stderr, "memory_bench: --int8-group-size is 32, 64 or 0 (fp32)\n");
    return 2;
  }
  Result<WorkDir> dir = WorkDir::Create(o.common.keep);
  if (!dir) {
    Printf(stderr, "memory_bench: %s\n", dir.error().message().c_str());
    return 1;
  }
  Status st = RunAll(o, *dir);
  if (!st) {
    dir->Keep();  // its celld logs say what went wrong
    Printf(stderr, "memory_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
