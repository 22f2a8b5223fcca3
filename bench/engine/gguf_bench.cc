// gguf_bench: one thread, a generated 110m-shaped model written as GGUF in F16, Q8_0, Q4_0 and
// Q4_K_M (cellmodel convert's code) beside cellhouse's fp32 and int8 formats: decode tokens/s as
// a fraction of the bandwidth roofline for each file's bytes per token, prefill tokens/s as a
// multiple of decode, and llama.cpp's `llama-bench -t 1` on the same GGUF files in the same run
// (when ../shared/tools/llama.cpp is present) with the ratio of ours to it.
//
//   build/bin/gguf_bench [--preset 110m] [--types F16,Q8_0,Q4_0,Q4_K_M] [--repeats 3]
//                        [--llama-cpp ../shared/tools/llama.cpp] [--json FILE]
//
// Decode: the prompt "Once upon a time", then --decode-tokens greedy tokens; the roofline is the
// machine's single-thread read bandwidth (measured in every round, the best kept) over the bytes
// one step reads (weights and the KV cache at the mean context). llama-bench's tg runs the same
// number of tokens from an empty context. Prefill: a --prefill-tokens prompt (llama-bench pp the
// same count) in a session whose KV cache is already mapped, as llama-bench's context is; "first"
// is a new session's first prompt, which also faults its cache's pages in. Every file is dropped
// from the page cache and read back from disk before it runs; every figure is the best of --repeats
// rounds that each measure every file once. Figures only: nothing asserts anything about time.
// --json FILE writes {"benchmark":"gguf","rows":[{"kind":"bandwidth"|"format",...}]}.
#include <fcntl.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <optional>
#include <string>
#include <system_error>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/mapping.h"
#include "base/print.h"
#include "base/process.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "bench/engine/bandwidth.h"
#include "bench/engine/bytes_per_token.h"
#include "cli/cellctl/json.h"
#include "engine/conversation.h"
#include "engine/formats/generator.h"
#include "engine/formats/gguf_convert.h"
#include "engine/formats/quantize.h"
#include "engine/kernels/kernels.h"
#include "engine/tokenizer/gguf_vocabulary.h"

namespace cellhouse::bench {
namespace {

using engine::Conversation;
using JsonRows = std::vector<std::string>;  // --json: one rendered object per row

struct Options {
  std::string preset = "110m";
  std::string types = "F16,Q8_0,Q4_0,Q4_K_M";
  int64_t decode_tokens = 128;
  int64_t prefill_tokens = 256;
  int64_t repeats = 3;
  int64_t bandwidth_mib = 1024;
  std::string llama_cpp = "../shared/tools/llama.cpp";
  std::string json_path;
};

constexpr const char* kDecodePrompt = "Once upon a time";

// A prompt of at least `tokens` tokens (BOS included).
std::string PromptOf(const engine::Tokenizer& tok, int32_t tokens) {
  static constexpr const char* kWords[] = {"Once",  "upon",   "a",    "time",  "there", "was",
                                           "a",     "little", "dog",  "named", "Sam.",  "He",
                                           "liked", "to",     "play", "in",    "the",   "park."};
  std::string text;
  for (size_t i = 0;; ++i) {
    if (!text.empty()) {
      text += ' ';
    }
    text += kWords[i % std::size(kWords)];
    if (static_cast<int32_t>(tok.Encode(text, {.add_bos = tok.add_bos()})->size()) >= tokens) {
      return text;
    }
  }
}

// Drops `path` from the page cache, so that opening it reads it from disk as a zygote starting on
// a cold model does (see engine_bench.cc: the folio sizes of a just-written file skew reads).
Status EvictFromPageCache(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::FromErrno(errno, "open '" + path + "'");
  }
  if (::fdatasync(fd.get()) != 0) {
    return Error::FromErrno(errno, "fdatasync '" + path + "'");
  }
  const int err = ::posix_fadvise(fd.get(), 0, 0, POSIX_FADV_DONTNEED);
  if (err != 0) {
    return Error::FromErrno(err, "posix_fadvise '" + path + "'");
  }
  return Ok();
}

// One file under test.
struct Format {
  std::string key;  // "fp32", "q8-g32", "F16", ...
  std::string path;
  bool gguf = false;
  std::optional<engine::Model> model;
  std::optional<engine::Tokenizer> tokenizer;
  double bytes_per_token = 0;
  double roofline_tps = 0;
  double decode_tps = 0;
  double prefill_tps = 0;        // a prompt in a session whose cache is mapped (as llama-bench)
  double first_prefill_tps = 0;  // a new session's first prompt, its cache faulted in as it goes
  int32_t prompt_tokens = 0;
  // llama-bench on the same file (0: not run).
  double llama_tg = 0;
  double llama_pp = 0;
};

// A fresh conversation: one turn's decode tokens/s, or prefill tokens/s measured twice: its first
// prompt (tokenised, and its KV cache's pages faulted in as the prompt fills them), then the same
// prompt with its first token after BOS changed, which reuses only BOS and runs the other tokens
// again through the cache now mapped: llama-bench's pp, whose context is allocated once for all
// its runs.
Status Measure(Format& f, const std::string& prompt, int32_t new_tokens, bool prefill) {
  CH_ASSIGN_OR_RETURN(Conversation chat,
                      Conversation::Create(*f.model, *f.tokenizer, f.model->config().seq_len));
  CH_ASSIGN_OR_RETURN(Conversation::TurnStats s,
                      chat.Turn(prompt, {.max_new_tokens = new_tokens, .temperature = 0.0F},
                                [](int32_t, std::string_view) { return true; }));
  if (!prefill && s.generated_tokens > 1 && s.decode_ns > 0) {
    f.decode_tps =
        std::max(f.decode_tps, (s.generated_tokens - 1) * 1e9 / static_cast<double>(s.decode_ns));
  }
  if (!prefill || s.prefill_ns <= 0) {
    return Ok();
  }
  f.prompt_tokens = s.prompt_tokens;
  f.first_prefill_tps =
      std::max(f.first_prefill_tps, s.prompt_tokens * 1e9 / static_cast<double>(s.prefill_ns));
  std::vector<int32_t> again = chat.tokens();
  if (again.size() < 3) {
    return Error("the prefill prompt is " + std::to_string(again.size()) + " tokens: too short");
  }
  const int32_t vocab = f.model->config().vocab_size;
  again[1] = again[1] + 1 < vocab ? again[1] + 1 : 0;
  CH_ASSIGN_OR_RETURN(Conversation::TurnStats w,
                      chat.TurnTokens(again, {.max_new_tokens = 0, .temperature = 0.0F},
                                      [](int32_t, std::string_view) { return true; }));
  if (w.prefill_ns > 0) {
    f.prefill_tps =
        std::max(f.prefill_tps, w.evaluated_tokens * 1e9 / static_cast<double>(w.prefill_ns));
  }
  return Ok();
}

// The number after `"key": ` in `text` from `from`, or nullopt.
std::optional<double> JsonNumber(const std::string& text, const std::string& key, size_t from) {
  const size_t at = text.find("\"" + key + "\":", from);
  if (at == std::string::npos) {
    return std::nullopt;
  }
  return std::strtod(text.c_str() + at + key.size() + 3, nullptr);
}

// llama-bench -t 1 on `path`: its prefill (pp) and decode (tg) tokens/s, means of its repeats.
Status LlamaBench(const Options& o, Format& f, const std::string& dir) {
  const std::string out_path = dir + "/llama-bench.json";
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  UniqueFd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!out.valid() || !devnull.valid()) {
    return Error::FromErrno(errno, "open " + out_path);
  }
  CH_ASSIGN_OR_RETURN(ChildProcess child,
                      SpawnProgram({.argv = {o.llama_cpp + "/llama-bench", "-m", f.path, "-t", "1",
                                             "-p", std::to_string(o.prefill_tokens), "-n",
                                             std::to_string(o.decode_tokens), "-r",
                                             std::to_string(o.repeats), "-o", "json"},
                                    .fds = {{1, out.get()}, {2, devnull.get()}}}));
  CH_ASSIGN_OR_RETURN(ExitStatus st, child.Wait());
  if (!st.Success()) {
    return Error("llama-bench on '" + f.path + "' " + st.ToString());
  }
  CH_ASSIGN_OR_RETURN(std::string json, ReadFileToString(out_path, 1 << 20));
  for (size_t at = json.find('{'); at != std::string::npos; at = json.find('{', at + 1)) {
    std::optional<double> n_prompt = JsonNumber(json, "n_prompt", at);
    std::optional<double> n_gen = JsonNumber(json, "n_gen", at);
    std::optional<double> ts = JsonNumber(json, "avg_ts", at);
    if (n_prompt && n_gen && ts) {
      (*n_gen > 0 ? f.llama_tg : f.llama_pp) = *ts;
      at = json.find("avg_ts", at);
    }
  }
  return Ok();
}

// The buffer the machine's single-thread read bandwidth is measured on, kept for every round.
Result<Mapping> BandwidthBuffer(const Options& o) {
  CH_ASSIGN_OR_RETURN(Mapping buffer, Mapping::Anonymous(static_cast<size_t>(o.bandwidth_mib) << 20,
                                                         "the bandwidth buffer"));
  static_cast<void>(::madvise(buffer.mutable_data(), buffer.size(), MADV_HUGEPAGE));
  std::memset(buffer.mutable_data(), 0, buffer.size());
  return buffer;
}

// --repeats rounds of every format's decode and prefill (each figure keeps its best), with the
// machine's read bandwidth measured again in every round, beside the decodes it is the roofline
// of: on a shared host both swing together (25-32 GB/s between runs here), and the best of each
// over the same rounds is the fair ratio. Returns that best bandwidth (at least `first_bw`).
Result<double> MeasureRounds(const Options& o, const Mapping& bandwidth_buffer, double first_bw,
                             std::vector<Format>& formats, int32_t decode_new,
                             const std::string& long_prompt) {
  double bw = first_bw;
  for (int64_t round = 0; round < o.repeats; ++round) {
    if (round > 0) {
      bw = std::max(bw, StreamReadBandwidth(bandwidth_buffer.bytes(), 5));
    }
    for (Format& f : formats) {
      CH_RETURN_IF_ERROR(Measure(f, kDecodePrompt, decode_new, false));
      CH_RETURN_IF_ERROR(Measure(f, long_prompt, 0, true));
    }
  }
  Printf(stdout, "roofline bandwidth, the best read over %lld rounds: %.2f GB/s\n",
         static_cast<long long>(o.repeats), bw / 1e9);
  return bw;
}

Status Run(const Options& o, const std::string& dir, JsonRows& rows) {
  CH_ASSIGN_OR_RETURN(Mapping bandwidth_buffer, BandwidthBuffer(o));
  const double machine_bw = StreamReadBandwidth(bandwidth_buffer.bytes(), 5);
  Printf(stdout,
         "single-thread streaming read of %lld MiB (anonymous memory, huge pages): %.2f GB/s\n",
         static_cast<long long>(o.bandwidth_mib), machine_bw / 1e9);

  CH_ASSIGN_OR_RETURN(engine::ModelConfig config, engine::PresetConfig(o.preset));
  const std::string base = dir + "/" + o.preset + ".bin";
  const int64_t start = MonotonicNanos();
  CH_RETURN_IF_ERROR(engine::WriteModel(config, 1, base));
  CH_RETURN_IF_ERROR(engine::WriteTokenizer(config.vocab_size, 1, base + ".tokenizer"));
  CH_ASSIGN_OR_RETURN(engine::Tokenizer tok,
                      engine::Tokenizer::Open(base + ".tokenizer", config.vocab_size));
  CH_ASSIGN_OR_RETURN(engine::Model fp32, engine::Model::Open(base));
  const auto& weights = std::get<engine::ModelWeights>(fp32.weights());
  std::vector<Format> formats;
  formats.push_back({.key = "fp32", .path = base});
  formats.push_back({.key = "q8-g32", .path = base + ".q8"});
  CH_RETURN_IF_ERROR(engine::WriteQuantizedModel(weights, {.group_size = 32}, base + ".q8"));
  for (std::string_view name : Split(o.types, ',')) {
    std::optional<engine::GgufFileType> type = engine::ParseGgufFileType(name);
    if (!type) {
      return Error("--types: unknown type " + Quote(name));
    }
    const std::string path = dir + "/" + o.preset + "-" + std::string(name) + ".gguf";
    CH_RETURN_IF_ERROR(engine::WriteGgufModel(weights, tok, {.type = *type}, path));
    formats.push_back({.key = std::string(name), .path = path, .gguf = true});
  }
  Printf(stdout, "== %s: %s (generated and converted in %.1f s)\n", o.preset.c_str(),
         config.Describe().c_str(), static_cast<double>(MonotonicNanos() - start) / 1e9);

  double mapping_bw = 0;
  for (Format& f : formats) {
    CH_RETURN_IF_ERROR(EvictFromPageCache(f.path));
    CH_ASSIGN_OR_RETURN(engine::Model m, engine::Model::Open(f.path));
    f.model.emplace(std::move(m));
    CH_RETURN_IF_ERROR(f.model->Prefault());
    if (f.gguf) {
      CH_ASSIGN_OR_RETURN(engine::Tokenizer t, engine::TokenizerFromGguf(*f.model->gguf()));
      f.tokenizer.emplace(std::move(t));
    } else {
      CH_ASSIGN_OR_RETURN(engine::Tokenizer t,
                          engine::Tokenizer::Open(base + ".tokenizer", config.vocab_size));
      f.tokenizer.emplace(std::move(t));
    }
    // As engine_bench: a mapping far larger than the caches may stream faster than the
    // anonymous buffer; the best seen is the roofline of every format.
    if (f.model->bytes().size() >= (size_t{256} << 20)) {
      mapping_bw = std::max(mapping_bw, StreamReadBandwidth(f.model->bytes(), 3));
    }
  }
  const auto decode_new =
      static_cast<int32_t>(std::min<int64_t>(o.decode_tokens, config.seq_len - 16));
  const auto prefill_n =
      static_cast<int32_t>(std::min<int64_t>(o.prefill_tokens, config.seq_len - 16));
  const std::string long_prompt = PromptOf(tok, prefill_n);
  CH_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, tok.Encode(kDecodePrompt, {.add_bos = true}));
  const double mean_context = static_cast<double>(prompt.size()) + decode_new / 2.0;
  CH_ASSIGN_OR_RETURN(const double bw,
                      MeasureRounds(o, bandwidth_buffer, std::max(machine_bw, mapping_bw), formats,
                                    decode_new, long_prompt));
  rows.push_back(cli::JsonObject().Add("kind", "bandwidth").Add("bytes_per_second", bw).Render());
  for (Format& f : formats) {
    f.bytes_per_token = WeightBytesPerToken(*f.model) + KvBytesPerToken(*f.model, mean_context);
    f.roofline_tps = bw / f.bytes_per_token;
  }
  const bool have_llama = ::access((o.llama_cpp + "/llama-bench").c_str(), X_OK) == 0;
  if (have_llama) {
    for (Format& f : formats) {
      if (f.gguf) {
        CH_RETURN_IF_ERROR(LlamaBench(o, f, dir));
      }
    }
  }
  Printf(stdout, "%-7s %9s %11s %10s %9s %10s %8s %9s %12s %7s %12s %7s\n", "format", "file",
         "MB/token", "decode t/s", "roofline", "prefill t/s", "x decode", "first t/s",
         "llama.cpp tg", "ours/it", "llama.cpp pp", "ours/it");
  for (const Format& f : formats) {
    auto ratio = [](double ours, double theirs) { return theirs > 0 ? ours / theirs : 0.0; };
    Printf(stdout,
           "%-7s %9s %11.1f %10.1f %8.1f%% %10.1f %7.1fx %9.1f %12.1f %6.2fx %12.1f %6.2fx\n",
           f.key.c_str(), FormatBytes(f.model->bytes().size()).c_str(), f.bytes_per_token / 1e6,
           f.decode_tps, 100.0 * f.decode_tps / f.roofline_tps, f.prefill_tps,
           f.decode_tps > 0 ? f.prefill_tps / f.decode_tps : 0.0, f.first_prefill_tps, f.llama_tg,
           ratio(f.decode_tps, f.llama_tg), f.llama_pp, ratio(f.prefill_tps, f.llama_pp));
    rows.push_back(
        cli::JsonObject()
            .Add("kind", "format")
            .Add("preset", o.preset)
            .Add("format", f.key)
            .Add("gguf", f.gguf)
            .Add("description", f.model->Describe())
            .Add("file_bytes", static_cast<uint64_t>(f.model->bytes().size()))
            .Add("bytes_per_token", f.bytes_per_token)
            .Add("roofline_tokens_per_second", f.roofline_tps)
            .Add("decode_tokens_per_second", f.decode_tps)
            .Add("roofline_fraction", f.decode_tps / f.roofline_tps)
            .Add("prefill_tokens_per_second", f.prefill_tps)
            .Add("first_prefill_tokens_per_second", f.first_prefill_tps)
            .Add("prompt_tokens", static_cast<int64_t>(f.prompt_tokens))
            .Add("prefill_times_decode", f.decode_tps > 0 ? f.prefill_tps / f.decode_tps : 0.0)
            .Add("llama_cpp_decode_tokens_per_second", f.llama_tg)
            .Add("llama_cpp_prefill_tokens_per_second", f.llama_pp)
            .Render());
  }
  if (!have_llama) {
    Printf(stdout, "(llama.cpp not found at %s/llama-bench: its columns are 0)\n",
           o.llama_cpp.c_str());
  }
  return Ok();
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("gguf_bench [options]",
                "Decode and prefill of GGUF files on one thread, beside fp32 and int8 and "
                "llama.cpp's llama-bench on the same files.");
  flags.String("preset", &o.preset, "NAME", "model shape (cellmodel make's presets)");
  flags.String("types", &o.types, "LIST", "GGUF types to convert to and run");
  flags.Int("decode-tokens", &o.decode_tokens, "N", "tokens generated per decode measurement");
  flags.Int("prefill-tokens", &o.prefill_tokens, "N", "prompt length for prefill");
  flags.Int("repeats", &o.repeats, "N", "measurements per figure (the best is printed)");
  flags.Int("bandwidth-mib", &o.bandwidth_mib, "N", "buffer for the bandwidth measurement");
  flags.String("llama-cpp", &o.llama_cpp, "DIR", "llama.cpp's binaries (skipped when absent)");
  flags.String("json", &o.json_path, "FILE", "also write every figure as JSON rows to FILE");
  Result<std::vector<std::string>> args = flags.Parse(argc - 1, argv + 1);
  if (!args) {
    Printf(stderr, "gguf_bench: %s\n", args.error().message().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    Printf(stdout, "%s", flags.Usage().c_str());
    return 0;
  }
  if (o.repeats < 1 || o.decode_tokens < 2 || o.prefill_tokens < 2 || o.bandwidth_mib < 64) {
    Printf(stderr, "gguf_bench: --repeats >= 1, tokens >= 2, --bandwidth-mib >= 64\n");
    return 2;
  }
  engine::SetBlasThreads(1);
  std::string dir = (std::filesystem::temp_directory_path() / "gguf_bench.XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    Printf(stderr, "gguf_bench: %s\n", Error::FromErrno(errno, "mkdtemp").message().c_str());
    return 1;
  }
  JsonRows rows;
  Status s = Run(o, dir, rows);
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (!s) {
    Printf(stderr, "gguf_bench: %s\n", s.error().message().c_str());
    return 1;
  }
  if (!o.json_path.empty()) {
    const std::string json = cli::JsonObject()
                                 .Add("benchmark", "gguf")
                                 .Add("repeats", o.repeats)
                                 .Add("decode_tokens", o.decode_tokens)
                                 .Add("prefill_tokens", o.prefill_tokens)
                                 .AddRaw("rows", cli::JsonArray(rows))
                                 .Render();
    if (Status w = CreateFileWithContent(o.json_path, json + "\n", 0644); !w) {
      Printf(stderr, "gguf_bench: %s\n", w.error().message().c_str());
      return 1;
    }
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
