// engine_bench: decode and prefill tokens/s on one thread for generated 15m and 110m models, fp32
// and quantized to int8 (groups of 32 and 64) side by side, against the machine's single-thread
// memory read bandwidth measured in the same run.
//
//   OPENBLAS_NUM_THREADS=1 build/bin/engine_bench [--models 15m,110m] [--group-sizes 32,64]
//                                                 [--json FILE]
//
// Decode reads every weight once per token, and the KV cache of every earlier position, so its
// roofline is bandwidth / (those bytes per token, for the format at hand and the mean context of
// the measurement); the "roofline" column is the fraction of that reached.
// Every model is dropped from the page cache and read back from disk before it runs, as a zygote
// reads it, and every figure is the best of --repeats rounds that each measure every format and
// kernel once. Figures only: nothing here asserts anything about time. --json FILE also writes
// every printed figure as a row of {"benchmark":"engine","rows":[{"kind":"bandwidth"|"model"|
// "decode"|"prefill","format":"fp32"|"q8-g32"|...,...}]} for bench/run.
#include <fcntl.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <string>
#include <system_error>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/io.h"
#include "base/mapping.h"
#include "base/print.h"
#include "base/strings.h"
#include "base/unique_fd.h"
#include "bench/engine/bandwidth.h"
#include "bench/engine/bytes_per_token.h"
#include "cli/cellctl/json.h"
#include "engine/conversation.h"
#include "engine/formats/generator.h"
#include "engine/formats/quantize.h"
#include "engine/kernels/kernels.h"

namespace cellhouse::bench {
namespace {

using engine::Conversation;
using engine::MatVecKernel;
using engine::ModelConfig;

struct Options {
  std::string models = "15m,110m";
  int64_t decode_tokens = 128;
  int64_t prefill_tokens = 256;
  int64_t repeats = 3;
  int64_t bandwidth_mib = 1024;
  std::string group_sizes = "32,64";
  std::string json_path;
};

// --json: each figure, one rendered object per row.
using JsonRows = std::vector<std::string>;

// The prompt decode is measured after.
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
    if (static_cast<int32_t>(tok.Encode(text, {.add_bos = true})->size()) >= tokens) {
      return text;
    }
  }
}

struct Rates {
  double decode_tps = 0;
  double prefill_tps = 0;
  int32_t prompt_tokens = 0;
};

// Best of `repeats` turns, each in a fresh conversation.
Result<Rates> Measure(const engine::Model& model, const engine::Tokenizer& tok,
                      const std::string& prompt, int32_t max_new, MatVecKernel kernel,
                      int64_t repeats) {
  Rates best;
  const int32_t seq_len = model.config().seq_len;
  for (int64_t r = 0; r < repeats; ++r) {
    CH_ASSIGN_OR_RETURN(Conversation chat,
                        Conversation::Create(model, tok, seq_len, {.matvec = kernel}));
    CH_ASSIGN_OR_RETURN(Conversation::TurnStats stats,
                        chat.Turn(prompt, {.max_new_tokens = max_new, .temperature = 0.0F},
                                  [](int32_t, std::string_view) { return true; }));
    best.prompt_tokens = stats.prompt_tokens;
    if (stats.prefill_ns > 0) {
      best.prefill_tps = std::max(
          best.prefill_tps, stats.prompt_tokens * 1e9 / static_cast<double>(stats.prefill_ns));
    }
    if (stats.generated_tokens > 1 && stats.decode_ns > 0) {
      best.decode_tps = std::max(best.decode_tps, (stats.generated_tokens - 1) * 1e9 /
                                                      static_cast<double>(stats.decode_ns));
    }
  }
  return best;
}

// Drops `path` from the page cache (fdatasync, then posix_fadvise(POSIX_FADV_DONTNEED)), so that
// opening it reads it from disk as a zygote starting on a cold model does. A file used right
// after it is written keeps the folios its writes made, and their size, not the format, then
// decides how fast it streams (16 KiB folios read ~30% slower here than 2 MiB ones mapped by
// PMD). Only this file's pages are dropped.
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
    return Error::FromErrno(err, "posix_fadvise(POSIX_FADV_DONTNEED) '" + path + "'");
  }
  return Ok();
}

// Opens `path` read from disk (see EvictFromPageCache).
Result<engine::Model> OpenCold(const std::string& path) {
  CH_RETURN_IF_ERROR(EvictFromPageCache(path));
  return engine::Model::Open(path);
}

// One model file under test, and what its figures are measured against.
struct Format {
  std::string label;
  std::string key;  // "fp32", "q8-g32", ...: the format column of the JSON rows
  const engine::Model* model = nullptr;
  double mapping_bw = 0;
  double weight_bytes_per_token = 0;
  double kv_bytes_per_token = 0;
  double bytes_per_token = 0;  // the two above
  double roofline_tps = 0;
  double best_decode = 0;  // over its kernels
  Rates prefill;
};

// One decode measurement: a format with one kernel choice.
struct DecodeRun {
  Format* format = nullptr;
  MatVecKernel kernel = MatVecKernel::kAuto;
  std::string name;
  int32_t tokens = 0;
  double best = 0;
};

std::string KernelName(const engine::Model& model, MatVecKernel k) {
  return model.format() == engine::WeightFormat::kQ8
             ? std::string(engine::Q8KernelName(engine::SelectKernels(k).q8_kind))
             : std::string(engine::MatVecKernelName(k));
}

// Every (format, kernel) pair once per round, for `repeats` rounds, keeping each one's best: on
// a machine shared with other work, a burst of load then spoils one round of every figure alike
// rather than every repeat of one figure.
Status MeasureInRounds(std::vector<DecodeRun>& runs, std::vector<Format>& formats,
                       const engine::Tokenizer& tok, const Options& o) {
  const int32_t seq_len = formats.front().model->config().seq_len;
  const auto prefill_n = static_cast<int32_t>(std::min<int64_t>(o.prefill_tokens, seq_len - 16));
  const std::string long_prompt = PromptOf(tok, prefill_n);
  for (int64_t round = 0; round < o.repeats; ++round) {
    for (DecodeRun& run : runs) {
      CH_ASSIGN_OR_RETURN(
          Rates r, Measure(*run.format->model, tok, kDecodePrompt, run.tokens, run.kernel, 1));
      run.best = std::max(run.best, r.decode_tps);
    }
    for (Format& f : formats) {
      CH_ASSIGN_OR_RETURN(Rates p, Measure(*f.model, tok, long_prompt, 0, MatVecKernel::kAuto, 1));
      f.prefill.prompt_tokens = p.prompt_tokens;
      f.prefill.prefill_tps = std::max(f.prefill.prefill_tps, p.prefill_tps);
    }
  }
  return Ok();
}

void PrintFormat(const Format& f, const std::vector<DecodeRun>& runs) {
  const bool q8 = f.model->format() == engine::WeightFormat::kQ8;
  Printf(stdout, "   -- %s: file %s; streaming read of the mapping %.2f GB/s\n", f.label.c_str(),
         FormatBytes(f.model->bytes().size()).c_str(), f.mapping_bw / 1e9);
  Printf(stdout,
         "      read per token: weights %.1f MB + KV cache %.1f MB = %.1f MB; roofline %.2f GB/s / "
         "%.1f MB = %.1f tokens/s\n",
         f.weight_bytes_per_token / 1e6, f.kv_bytes_per_token / 1e6, f.bytes_per_token / 1e6,
         f.roofline_tps * f.bytes_per_token / 1e9, f.bytes_per_token / 1e6, f.roofline_tps);
  Printf(stdout, "      %-12s %12s %10s %9s\n", "decode", "tokens/s", "GB/s", "roofline");
  for (const DecodeRun& run : runs) {
    if (run.format == &f) {
      Printf(stdout, "      %-12s %12.1f %10.2f %8.1f%%\n", run.name.c_str(), run.best,
             run.best * f.bytes_per_token / 1e9, 100.0 * run.best / f.roofline_tps);
    }
  }
  Printf(stdout,
         "      prefill %16.1f tokens/s for a %d-token prompt (%s, chunks of %d): %.1fx decode\n",
         f.prefill.prefill_tps, f.prefill.prompt_tokens,
         q8 ? "int8 batched kernel" : "OpenBLAS sgemm", engine::kMaxBatch,
         f.best_decode > 0 ? f.prefill.prefill_tps / f.best_decode : 0.0);
}

void AddJsonRows(const std::string& preset, const Format& f, const std::vector<DecodeRun>& runs,
                 JsonRows& rows) {
  rows.push_back(cli::JsonObject()
                     .Add("kind", "model")
                     .Add("preset", preset)
                     .Add("format", f.key)
                     .Add("description", f.model->config().Describe())
                     .Add("file_bytes", static_cast<uint64_t>(f.model->bytes().size()))
                     .Add("mapping_bytes_per_second", f.mapping_bw)
                     .Add("roofline_bytes_per_second", f.roofline_tps * f.bytes_per_token)
                     .Add("weight_bytes_per_token", f.weight_bytes_per_token)
                     .Add("kv_bytes_per_token", f.kv_bytes_per_token)
                     .Add("bytes_per_token", f.bytes_per_token)
                     .Add("roofline_tokens_per_second", f.roofline_tps)
                     .Render());
  for (const DecodeRun& run : runs) {
    if (run.format != &f) {
      continue;
    }
    rows.push_back(cli::JsonObject()
                       .Add("kind", "decode")
                       .Add("preset", preset)
                       .Add("format", f.key)
                       .Add("kernel", run.name)
                       .Add("tokens_per_second", run.best)
                       .Add("bytes_per_second", run.best * f.bytes_per_token)
                       .Add("roofline_fraction", run.best / f.roofline_tps)
                       .Render());
  }
  const bool q8 = f.model->format() == engine::WeightFormat::kQ8;
  rows.push_back(
      cli::JsonObject()
          .Add("kind", "prefill")
          .Add("preset", preset)
          .Add("format", f.key)
          .Add("kernel", q8 ? "int8 batched" : "openblas sgemm")
          .Add("tokens_per_second", f.prefill.prefill_tps)
          .Add("prompt_tokens", static_cast<int64_t>(f.prefill.prompt_tokens))
          .Add("times_decode", f.best_decode > 0 ? f.prefill.prefill_tps / f.best_decode : 0.0)
          .Render());
}

Status BenchModel(const std::string& preset, const std::string& dir, double machine_bw,
                  const Options& o, JsonRows& rows) {
  CH_ASSIGN_OR_RETURN(ModelConfig config, engine::PresetConfig(preset));
  const std::string path = dir + "/" + preset + ".bin";
  const int64_t start = MonotonicNanos();
  CH_RETURN_IF_ERROR(engine::WriteModel(config, 1, path));
  CH_RETURN_IF_ERROR(engine::WriteTokenizer(config.vocab_size, 1, path + ".tokenizer"));
  CH_ASSIGN_OR_RETURN(engine::Tokenizer tok,
                      engine::Tokenizer::Open(path + ".tokenizer", config.vocab_size));
  // fp32, then each group size, all quantized from the fp32 file and read back from disk.
  std::vector<engine::Model> models;
  std::vector<std::string> labels = {"fp32"};
  std::vector<std::string> keys = {"fp32"};
  CH_ASSIGN_OR_RETURN(engine::Model fp32, OpenCold(path));
  models.push_back(std::move(fp32));
  for (std::string_view group : Split(o.group_sizes, ',')) {
    if (group.empty()) {
      continue;
    }
    CH_ASSIGN_OR_RETURN(int64_t group_size, ParseInt64(group, "--group-sizes"));
    const std::string q8_path = path + ".q8-" + std::string(group);
    const int64_t q_start = MonotonicNanos();
    CH_RETURN_IF_ERROR(
        engine::WriteQuantizedModel(std::get<engine::ModelWeights>(models.front().weights()),
                                    {.group_size = static_cast<int32_t>(group_size)}, q8_path));
    char seconds[32];
    static_cast<void>(std::snprintf(seconds, sizeof(seconds), "%.2f s",
                                    static_cast<double>(MonotonicNanos() - q_start) / 1e9));
    labels.push_back("q8, groups of " + std::string(group) + " (quantized in " + seconds + ")");
    keys.push_back("q8-g" + std::string(group));
    CH_ASSIGN_OR_RETURN(engine::Model q8, OpenCold(q8_path));
    models.push_back(std::move(q8));
  }
  Printf(stdout, "\n== %s: %s (generated in %.2f s)\n", preset.c_str(), config.Describe().c_str(),
         static_cast<double>(MonotonicNanos() - start) / 1e9);

  std::vector<Format> formats(models.size());
  // Reading a model's own mapping can beat the anonymous buffer (page-cache folios), so the
  // roofline takes the best bandwidth seen, the same for every format: the fractions are then
  // never flattered, and the rooflines differ exactly as the bytes per token do. Only mappings
  // far larger than a last-level cache count: a smaller one stays partly cached between passes
  // (the 58 MB 15m file "streamed" at 60 GB/s), which is not memory bandwidth.
  constexpr size_t kMinBytesForBandwidth = size_t{256} << 20;
  double bw = machine_bw;
  for (size_t i = 0; i < models.size(); ++i) {
    CH_RETURN_IF_ERROR(models[i].Prefault());
    Format& f = formats[i];
    f.label = labels[i];
    f.key = keys[i];
    f.model = &models[i];
    f.mapping_bw = StreamReadBandwidth(models[i].bytes(), 5);
    f.weight_bytes_per_token = WeightBytesPerToken(models[i]);
    if (models[i].bytes().size() >= kMinBytesForBandwidth) {
      bw = std::max(bw, f.mapping_bw);
    }
  }
  const auto decode_new =
      static_cast<int32_t>(std::min<int64_t>(o.decode_tokens, config.seq_len - 16));
  // The prompt's prefill yields the first new token; the timed steps then attend to P + 1, ...,
  // P + decode_new - 1 positions: P + decode_new / 2 on average.
  CH_ASSIGN_OR_RETURN(std::vector<int32_t> prompt, tok.Encode(kDecodePrompt, {.add_bos = true}));
  const double mean_context =
      static_cast<double>(prompt.size()) + static_cast<double>(decode_new) / 2.0;
  for (Format& f : formats) {
    f.kv_bytes_per_token = KvBytesPerToken(*f.model, mean_context);
    f.bytes_per_token = f.weight_bytes_per_token + f.kv_bytes_per_token;
    f.roofline_tps = bw / f.bytes_per_token;
  }
  std::vector<DecodeRun> runs;
  for (Format& f : formats) {
    for (MatVecKernel k : {MatVecKernel::kAvx512, MatVecKernel::kAvx2, MatVecKernel::kOpenBlas}) {
      if (!engine::MatVecKernelSupported(k)) {
        continue;
      }
      // The portable int8 kernel is plain C++, tens of times slower: a short sample is enough.
      const bool portable = f.model->format() == engine::WeightFormat::kQ8 &&
                            engine::SelectKernels(k).q8_kind == engine::Q8Kernel::kPortable;
      runs.push_back({.format = &f,
                      .kernel = k,
                      .name = KernelName(*f.model, k),
                      .tokens = portable ? 8 : decode_new});
    }
  }
  CH_RETURN_IF_ERROR(MeasureInRounds(runs, formats, tok, o));
  for (const DecodeRun& run : runs) {
    run.format->best_decode = std::max(run.format->best_decode, run.best);
  }
  for (const Format& f : formats) {
    PrintFormat(f, runs);
    AddJsonRows(preset, f, runs, rows);
  }
  const Format& base = formats.front();
  for (size_t i = 1; i < formats.size(); ++i) {
    const Format& f = formats[i];
    Printf(stdout,
           "   %s against fp32: decode %.2fx (%.1f%% of its roofline; the rooflines differ "
           "%.2fx), prefill %.2fx\n",
           f.label.substr(0, f.label.find(" (")).c_str(), f.best_decode / base.best_decode,
           100.0 * f.best_decode / f.roofline_tps, f.roofline_tps / base.roofline_tps,
           f.prefill.prefill_tps / base.prefill.prefill_tps);
  }
  return Ok();
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("engine_bench [options]",
                "Decode and prefill tokens/s on one thread against the single-thread memory "
                "read bandwidth roofline. Run with OPENBLAS_NUM_THREADS=1.");
  flags.String("models", &o.models, "LIST", "comma-separated presets to generate and run");
  flags.Int("decode-tokens", &o.decode_tokens, "N", "tokens generated per decode measurement");
  flags.Int("prefill-tokens", &o.prefill_tokens, "N", "prompt length for prefill");
  flags.Int("repeats", &o.repeats, "N", "measurements per figure (the best is printed)");
  flags.Int("bandwidth-mib", &o.bandwidth_mib, "N", "buffer for the bandwidth measurement");
  flags.String("group-sizes", &o.group_sizes, "LIST",
               "int8 group sizes to quantize each model at and run (32, 64; empty: fp32 only)");
  flags.String("json", &o.json_path, "FILE", "also write every figure as JSON rows to FILE");
  Result<std::vector<std::string>> args = flags.Parse(argc - 1, argv + 1);
  if (!args) {
    Printf(stderr, "engine_bench: %s\n", args.error().message().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    Printf(stdout, "%s", flags.Usage().c_str());
    return 0;
  }
  if (o.repeats < 1 || o.decode_tokens < 2 || o.prefill_tokens < 2 || o.bandwidth_mib < 64) {
    Printf(stderr, "engine_bench: --repeats >= 1, tokens >= 2, --bandwidth-mib >= 64\n");
    return 2;
  }
  engine::SetBlasThreads(1);

  Result<Mapping> buffer =
      Mapping::Anonymous(static_cast<size_t>(o.bandwidth_mib) << 20, "the bandwidth buffer");
  if (!buffer) {
    Printf(stderr, "engine_bench: %s\n", buffer.error().message().c_str());
    return 1;
  }
  // Huge pages where the kernel grants them: with 4 KiB pages the same loop measures ~30% less
  // here (TLB misses, prefetchers stopping at each page), which would flatter the roofline.
  static_cast<void>(::madvise(buffer->mutable_data(), buffer->size(), MADV_HUGEPAGE));
  std::memset(buffer->mutable_data(), 0, buffer->size());  // fault every page in first
  const double machine_bw = StreamReadBandwidth(buffer->bytes(), 5);
  *buffer = Mapping();
  Printf(stdout,
         "single-thread streaming read of %lld MiB (anonymous memory, huge pages): %.2f GB/s\n",
         static_cast<long long>(o.bandwidth_mib), machine_bw / 1e9);

  std::string dir = (std::filesystem::temp_directory_path() / "engine_bench.XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    Printf(stderr, "engine_bench: %s\n",
           Error::FromErrno(errno, "mkdtemp " + dir).message().c_str());
    return 1;
  }
  JsonRows rows;
  rows.push_back(cli::JsonObject()
                     .Add("kind", "bandwidth")
                     .Add("buffer_bytes", static_cast<uint64_t>(o.bandwidth_mib) << 20)
                     .Add("bytes_per_second", machine_bw)
                     .Render());
  int code = 0;
  for (std::string_view preset : Split(o.models, ',')) {
    Status s = BenchModel(std::string(preset), dir, machine_bw, o, rows);
    if (!s) {
      Printf(stderr, "engine_bench: %s\n", s.error().message().c_str());
      code = 1;
      break;
    }
  }
  std::error_code ec;
  std::filesystem::remove_all(dir, ec);
  if (code == 0 && !o.json_path.empty()) {
    const std::string json = cli::JsonObject()
                                 .Add("benchmark", "engine")
                                 .Add("repeats", o.repeats)
                                 .Add("decode_tokens", o.decode_tokens)
                                 .Add("prefill_tokens", o.prefill_tokens)
                                 .AddRaw("rows", cli::JsonArray(rows))
                                 .Render();
    if (Status s = CreateFileWithContent(o.json_path, json + "\n", 0644); !s) {
      Printf(stderr, "engine_bench: %s\n", s.error().message().c_str());
      code = 1;
    }
  }
  return code;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
