// step_bench: what batching the decoder's weight-heavy rounds across sessions gains, inside one
// process, before any slot, sandbox or cgroup (issue 17; docs/EXECUTOR.md). A generated
// 110m-shaped model converted to GGUF (cellmodel convert's code); N sessions each run a prompt
// then decode tokens, in two ways on the same --threads cores:
//   alone:   every session computes its own steps (ForwardGguf), the sessions spread over the
//            threads as N workers would be over the cores: each reads every weight per token;
//   batched: every session on a thread of its own, its rounds meeting the others' in one batch
//            of GgufStepCompute (engine/thread_rounds.h) whose products use --threads threads:
//            one pass over the weights per round for all of them.
// Then llama.cpp's llama-batched-bench on the same file, the same threads, prompt and decode
// lengths, and the same numbers of parallel sequences (its speed_tg), when present.
//
//   build/bin/step_bench [--types Q8_0,Q4_K_M] [--sessions 1,4,16,64] [--threads 2]
//                        [--prompt 16] [--tokens 32] [--json FILE]
//
// Decode tokens/s: N x --tokens over the time from the last session's end of prompt to the last
// token; inter-token latency: every gap between a session's consecutive tokens, p50 and p99.
// Batched results are bit-identical to alone (engine_executor_test); this program checks it on
// every session's last logits too. Figures only: nothing asserts anything about time.
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <memory>
#include <string>
#include <system_error>
#include <thread>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/print.h"
#include "base/process.h"
#include "base/strings.h"
#include "bench/sessions/bench_common.h"
#include "bench/sessions/llama_batched.h"
#include "cli/cellctl/json.h"
#include "engine/executor_compute.h"
#include "engine/executor_rounds.h"
#include "engine/formats/generator.h"
#include "engine/formats/gguf_convert.h"
#include "engine/gguf_forward.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/thread_rounds.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::bench {
namespace {

struct Options {
  std::string preset = "110m";
  std::string types = "Q8_0,Q4_K_M";
  std::string sessions = "1,4,16,64";
  int threads = 2;
  int prompt = 16;
  int tokens = 32;
  int max_rows = 16;
  std::string llama_cpp = "../shared/tools/llama.cpp";
  std::string json_path;
};

using JsonRows = std::vector<std::string>;

// One way's figures for N sessions.
struct Figures {
  double decode_tps = 0;
  Summary itl_ms;
  std::vector<std::vector<float>> last_logits;  // per session
};

// The tokens of session i: a prompt of `prompt` tokens, then `tokens` decode tokens.
int32_t TokenAt(int session, int index, int32_t vocab) {
  return 1 + static_cast<int32_t>((7919LL * (session + 1) + 104729LL * index) % (vocab - 1));
}

// Per session: its decode token completion times and when its prompt ended.
struct Timeline {
  int64_t prompt_done = 0;
  std::vector<int64_t> token_done;
};

Figures Summarise(const std::vector<Timeline>& timelines, int tokens) {
  int64_t start = 0;
  int64_t end = 0;
  std::vector<double> gaps;
  for (const Timeline& t : timelines) {
    start = std::max(start, t.prompt_done);
    end = std::max(end, t.token_done.back());
    for (size_t i = 1; i < t.token_done.size(); ++i) {
      gaps.push_back(static_cast<double>(t.token_done[i] - t.token_done[i - 1]) / 1e6);
    }
  }
  Figures f;
  const double seconds = static_cast<double>(end - start) / 1e9;
  f.decode_tps = seconds > 0 ? static_cast<double>(timelines.size()) * tokens / seconds : 0;
  f.itl_ms = Summarize(gaps);
  return f;
}

std::vector<float> Copy(const float* logits, int32_t vocab) { return {logits, logits + vocab}; }

// Session i's prompt.
std::vector<int32_t> PromptOf(int session, const Options& o, int32_t vocab) {
  std::vector<int32_t> prompt;
  prompt.reserve(static_cast<size_t>(o.prompt));
  for (int p = 0; p < o.prompt; ++p) {
    prompt.push_back(TokenAt(session, p, vocab));
  }
  return prompt;
}

// One thread of RunAlone: sessions `mine`, their prompts, then their decode tokens in turns.
void AloneThread(const engine::Model& model, const Options& o, const std::vector<int>& mine,
                 std::vector<Timeline>& timelines, std::vector<std::vector<float>>& last) {
  const auto& w = std::get<engine::GgufWeights>(model.weights());
  const engine::KernelIsa isa = engine::BestKernelIsa();
  const int32_t vocab = w.config.vocab_size;
  std::vector<engine::RunState> states;
  states.reserve(mine.size());
  for (size_t k = 0; k < mine.size(); ++k) {
    states.push_back(
        *engine::RunState::Create(model.config(), o.prompt + o.tokens + 1, model.kv_precision()));
  }
  for (size_t k = 0; k < mine.size(); ++k) {
    engine::ForwardGguf(w, isa, states[k], PromptOf(mine[k], o, vocab), 0);
    timelines[static_cast<size_t>(mine[k])].prompt_done = MonotonicNanos();
  }
  for (int step = 0; step < o.tokens; ++step) {
    for (size_t k = 0; k < mine.size(); ++k) {
      const int32_t token = TokenAt(mine[k], o.prompt + step, vocab);
      const float* logits =
          engine::ForwardGguf(w, isa, states[k], std::span(&token, 1), o.prompt + step);
      timelines[static_cast<size_t>(mine[k])].token_done.push_back(MonotonicNanos());
      if (step + 1 == o.tokens) {
        last[static_cast<size_t>(mine[k])] = Copy(logits, vocab);
      }
    }
  }
}

// Every session computes alone; session i runs on thread i % threads, the thread's sessions
// taking turns token by token.
Figures RunAlone(const engine::Model& model, const Options& o, int n) {
  std::vector<Timeline> timelines(static_cast<size_t>(n));
  std::vector<std::vector<float>> last(static_cast<size_t>(n));
  const int used = std::min(o.threads, n);
  std::vector<std::vector<int>> mine(static_cast<size_t>(used));
  for (int i = 0; i < n; ++i) {
    mine[static_cast<size_t>(i % used)].push_back(i);
  }
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(used));
  for (int t = 0; t < used; ++t) {
    threads.emplace_back(
        [&, t] { AloneThread(model, o, mine[static_cast<size_t>(t)], timelines, last); });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  Figures f = Summarise(timelines, o.tokens);
  f.last_logits = std::move(last);
  return f;
}

// Every session on its own thread, its rounds batched with the others'.
Result<Figures> RunBatched(const engine::Model& model, const Options& o, int n) {
  const auto& w = std::get<engine::GgufWeights>(model.weights());
  const engine::KernelIsa isa = engine::BestKernelIsa();
  const int32_t vocab = w.config.vocab_size;
  CH_ASSIGN_OR_RETURN(
      std::unique_ptr<engine::GgufStepCompute> compute,
      engine::GgufStepCompute::Create(w, isa, static_cast<uint32_t>(o.max_rows), 512));
  CH_ASSIGN_OR_RETURN(std::unique_ptr<executor::ThreadPool> pool,
                      executor::ThreadPool::Start(o.threads));
  engine::ThreadRounds rounds(*compute, *pool, n);
  std::vector<Timeline> timelines(static_cast<size_t>(n));
  Figures f;
  f.last_logits.resize(static_cast<size_t>(n));
  std::atomic<bool> failed{false};
  std::vector<std::thread> threads;
  threads.reserve(static_cast<size_t>(n));
  for (int i = 0; i < n; ++i) {
    threads.emplace_back([&, i] {
      engine::ThreadRounds::Session session(rounds);
      engine::RunState state =
          *engine::RunState::Create(model.config(), o.prompt + o.tokens + 1, model.kv_precision());
      const std::vector<int32_t> prompt = PromptOf(i, o, vocab);
      Timeline& tl = timelines[static_cast<size_t>(i)];
      if (engine::ForwardGgufRounds(w, isa, state, prompt, 0, engine::StepKind::kPrompt, session,
                                    nullptr) == nullptr) {
        failed = true;
      }
      tl.prompt_done = MonotonicNanos();
      for (int step = 0; step < o.tokens; ++step) {
        const int32_t token = TokenAt(i, o.prompt + step, vocab);
        const float* logits =
            engine::ForwardGgufRounds(w, isa, state, std::span(&token, 1), o.prompt + step,
                                      engine::StepKind::kDecode, session, nullptr);
        tl.token_done.push_back(MonotonicNanos());
        if (logits == nullptr) {
          failed = true;
        } else if (step + 1 == o.tokens) {
          f.last_logits[static_cast<size_t>(i)] = Copy(logits, vocab);
        }
      }
      rounds.Done();
    });
  }
  for (std::thread& t : threads) {
    t.join();
  }
  if (failed) {
    return Error("a batched session's rounds failed");
  }
  Figures s = Summarise(timelines, o.tokens);
  s.last_logits = std::move(f.last_logits);
  return s;
}

Status Run(const Options& o, const std::string& dir, JsonRows& rows) {
  std::vector<int> counts;
  for (std::string_view s : Split(o.sessions, ',')) {
    const int n = std::atoi(std::string(s).c_str());
    if (n < 1 || n > 512) {
      return Error("--sessions: each count must be 1..512, not " + Quote(s));
    }
    counts.push_back(n);
  }
  std::sort(counts.begin(), counts.end());
  CH_ASSIGN_OR_RETURN(engine::ModelConfig config, engine::PresetConfig(o.preset));
  const std::string base = dir + "/" + o.preset + ".bin";
  CH_RETURN_IF_ERROR(engine::WriteModel(config, 1, base));
  CH_RETURN_IF_ERROR(engine::WriteTokenizer(config.vocab_size, 1, base + ".tokenizer"));
  CH_ASSIGN_OR_RETURN(engine::Tokenizer tok,
                      engine::Tokenizer::Open(base + ".tokenizer", config.vocab_size));
  CH_ASSIGN_OR_RETURN(engine::Model fp32, engine::Model::Open(base));
  Printf(stdout,
         "%s, prompt %d + %d decode tokens per session, %d threads, executor rows per slot %d\n",
         config.Describe().c_str(), o.prompt, o.tokens, o.threads, o.max_rows);
  for (std::string_view name : Split(o.types, ',')) {
    std::optional<engine::GgufFileType> type = engine::ParseGgufFileType(name);
    if (!type) {
      return Error("--types: unknown type " + Quote(name));
    }
    const std::string path = dir + "/" + o.preset + "-" + std::string(name) + ".gguf";
    CH_RETURN_IF_ERROR(engine::WriteGgufModel(std::get<engine::ModelWeights>(fp32.weights()), tok,
                                              {.type = *type}, path));
    CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(path));
    const std::vector<double> llama = LlamaBatchedDecode({.llama_cpp = o.llama_cpp,
                                                          .model = path,
                                                          .prompt = o.prompt,
                                                          .tokens = o.tokens,
                                                          .counts = counts,
                                                          .threads = o.threads},
                                                         dir);
    Table table({"sessions", "alone t/s", "ITL p50/p99 ms", "batched t/s", "ITL p50/p99 ms",
                 "batched/alone", "llama.cpp t/s", "batched/llama"});
    double one_alone = 0;
    for (size_t k = 0; k < counts.size(); ++k) {
      const int n = counts[k];
      const Figures alone = RunAlone(model, o, n);
      CH_ASSIGN_OR_RETURN(Figures batched, RunBatched(model, o, n));
      bool same = true;
      for (size_t i = 0; i < alone.last_logits.size(); ++i) {
        same = same && alone.last_logits[i].size() == batched.last_logits[i].size() &&
               std::memcmp(alone.last_logits[i].data(), batched.last_logits[i].data(),
                           alone.last_logits[i].size() * sizeof(float)) == 0;
      }
      if (n == 1) {
        one_alone = alone.decode_tps;
      }
      table.AddRow({std::to_string(n), Format("%.1f", alone.decode_tps),
                    Format("%.1f/%.1f", alone.itl_ms.p50, alone.itl_ms.p99),
                    Format("%.1f", batched.decode_tps),
                    Format("%.1f/%.1f", batched.itl_ms.p50, batched.itl_ms.p99),
                    Format("%.2fx", batched.decode_tps / alone.decode_tps),
                    Format("%.1f", llama[k]),
                    llama[k] > 0 ? Format("%.2fx", batched.decode_tps / llama[k]) : "-"});
      rows.push_back(cli::JsonObject()
                         .Add("type", name)
                         .Add("sessions", n)
                         .Add("threads", o.threads)
                         .Add("alone_tokens_per_second", alone.decode_tps)
                         .AddRaw("alone_itl_ms", SummaryJson(alone.itl_ms))
                         .Add("batched_tokens_per_second", batched.decode_tps)
                         .AddRaw("batched_itl_ms", SummaryJson(batched.itl_ms))
                         .Add("llama_cpp_batched_tokens_per_second", llama[k])
                         .Add("same_logits", same)
                         .Render());
      if (!same) {
        return Error(Format("%s with %d sessions: batched logits differ from alone",
                            std::string(name).c_str(), n));
      }
    }
    Printf(stdout, "== %.*s (%s; one session alone: %.1f t/s)\n", static_cast<int>(name.size()),
           name.data(), model.Describe().c_str(), one_alone);
    table.Print(stdout);
  }
  return Ok();
}

int Main(int argc, char** argv) {
  Options o;
  int64_t threads = o.threads;
  int64_t prompt = o.prompt;
  int64_t tokens = o.tokens;
  int64_t max_rows = o.max_rows;
  FlagSet flags("step_bench [options]",
                "N sessions decoding alone versus with their weight-heavy rounds batched in one "
                "process, beside llama.cpp's llama-batched-bench.");
  flags.String("preset", &o.preset, "NAME", "model shape (cellmodel make's presets)");
  flags.String("types", &o.types, "LIST", "GGUF types to convert to and run");
  flags.String("sessions", &o.sessions, "LIST", "numbers of sessions");
  flags.Int("threads", &threads, "N", "threads (cores) both ways use");
  flags.Int("prompt", &prompt, "N", "prompt tokens per session");
  flags.Int("tokens", &tokens, "N", "decode tokens per session");
  flags.Int("max-rows", &max_rows, "N", "prompt rows per session per round (the slot's)");
  flags.String("llama-cpp", &o.llama_cpp, "DIR", "llama.cpp's binaries (skipped when absent)");
  flags.String("json", &o.json_path, "FILE", "also write every figure as JSON rows to FILE");
  Result<std::vector<std::string>> args = flags.Parse(argc - 1, argv + 1);
  if (!args) {
    Printf(stderr, "step_bench: %s\n", args.error().message().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    Printf(stdout, "%s", flags.Usage().c_str());
    return 0;
  }
  if (threads < 1 || threads > 64 || prompt < 2 || prompt > 4096 || tokens < 2 || tokens > 4096 ||
      max_rows < 2 || max_rows > engine::kMaxBatch) {
    Printf(stderr, "step_bench: --threads 1..64, --prompt and --tokens 2..4096, --max-rows 2..%d\n",
           engine::kMaxBatch);
    return 2;
  }
  o.threads = static_cast<int>(threads);
  o.prompt = static_cast<int>(prompt);
  o.tokens = static_cast<int>(tokens);
  o.max_rows = static_cast<int>(max_rows);
  engine::SetBlasThreads(1);
  std::string dir = (std::filesystem::temp_directory_path() / "step_bench.XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    Printf(stderr, "step_bench: %s\n", Error::FromErrno(errno, "mkdtemp").message().c_str());
    return 1;
  }
  JsonRows rows;
  Status s = Run(o, dir, rows);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!s) {
    Printf(stderr, "step_bench: %s\n", s.error().message().c_str());
    return 1;
  }
  if (!o.json_path.empty()) {
    const std::string json = cli::JsonObject()
                                 .Add("benchmark", "step")
                                 .Add("threads", o.threads)
                                 .Add("prompt_tokens", o.prompt)
                                 .Add("decode_tokens", o.tokens)
                                 .AddRaw("rows", cli::JsonArray(rows))
                                 .Render();
    if (Status w = CreateFileWithContent(o.json_path, json + "\n", 0644); !w) {
      Printf(stderr, "step_bench: %s\n", w.error().message().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
