// engine_bench: decode and prefill tokens/s on one thread for generated 15m and 110m models,
// against the machine's single-thread memory read bandwidth measured in the same run.
//
//   OPENBLAS_NUM_THREADS=1 build/bin/engine_bench [--models 15m,110m] [--decode-tokens 128]
//                                                 [--json FILE]
//
// Decode reads every weight once per token, so its roofline is bandwidth / (bytes of weights
// read per token); the "roofline" column is the fraction of that reached. Figures only: nothing
// here asserts anything about time. --json FILE writes every printed figure as a row of
// {"benchmark":"engine","rows":[{"kind":"bandwidth"|"model"|"decode"|"prefill",...}]} for
// bench/run, which keeps whatever rows it finds.
#include <stdlib.h>
#include <sys/mman.h>

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
#include "bench/engine/bandwidth.h"
#include "cli/cellctl/json.h"
#include "worker/engine/conversation.h"
#include "worker/engine/generator.h"
#include "worker/engine/kernels.h"

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
  std::string json_path;
  // --json: each figure as it is printed, one rendered object per row (null without --json).
  std::vector<std::string>* json_rows = nullptr;
};

void AddJsonRow(const Options& o, const cli::JsonObject& row) {
  if (o.json_rows != nullptr) o.json_rows->push_back(row.Render());
}

// Bytes of weights one decode step reads: every matrix, the norms, the classifier, and one row
// of the embedding table. (The KV cache read by attention is not weights, and not counted.)
double DecodeBytesPerToken(const ModelConfig& c) {
  const double d = c.dim, h = c.hidden_dim, kv = c.kv_dim(), v = c.vocab_size;
  const double per_layer = 2 * d * d + 2 * kv * d + 3 * d * h + 2 * d;
  return 4.0 * (c.n_layers * per_layer + d + v * d + d);
}

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

Status BenchModel(const std::string& preset, const std::string& dir, double machine_bw,
                  const Options& o) {
  CH_ASSIGN_OR_RETURN(ModelConfig config, engine::PresetConfig(preset));
  const std::string path = dir + "/" + preset + ".bin";
  const int64_t start = MonotonicNanos();
  CH_RETURN_IF_ERROR(engine::WriteModel(config, 1, path));
  CH_RETURN_IF_ERROR(engine::WriteTokenizer(config.vocab_size, 1, path + ".tokenizer"));
  CH_ASSIGN_OR_RETURN(engine::Model model, engine::Model::Open(path));
  CH_ASSIGN_OR_RETURN(engine::Tokenizer tok,
                      engine::Tokenizer::Open(path + ".tokenizer", config.vocab_size));
  CH_RETURN_IF_ERROR(model.Prefault());
  const double gen_s = static_cast<double>(MonotonicNanos() - start) / 1e9;
  // Reading the model's own mapping can beat the anonymous buffer (page-cache folios), so the
  // roofline takes the better of the two: the fraction is then never flattered.
  const double model_bw = StreamReadBandwidth(model.bytes(), 5);
  const double bw = std::max(machine_bw, model_bw);
  const double bytes_per_token = DecodeBytesPerToken(config);
  const double roofline_tps = bw / bytes_per_token;
  Printf(stdout, "\n== %s: %s\n", preset.c_str(), config.Describe().c_str());
  Printf(stdout, "   file %s, written in %.2f s; streaming read of the mapping %.2f GB/s\n",
         FormatBytes(model.bytes().size()).c_str(), gen_s, model_bw / 1e9);
  Printf(stdout,
         "   weights read per token %.1f MB; roofline %.2f GB/s / %.1f MB = %.1f tokens/s\n",
         bytes_per_token / 1e6, bw / 1e9, bytes_per_token / 1e6, roofline_tps);
  AddJsonRow(o, cli::JsonObject()
                    .Add("kind", "model")
                    .Add("preset", preset)
                    .Add("format", "fp32")
                    .Add("description", config.Describe())
                    .Add("file_bytes", static_cast<uint64_t>(model.bytes().size()))
                    .Add("mapping_bytes_per_second", model_bw)
                    .Add("roofline_bytes_per_second", bw)
                    .Add("weight_bytes_per_token", bytes_per_token)
                    .Add("roofline_tokens_per_second", roofline_tps));

  const int32_t seq_len = config.seq_len;
  const auto decode_new = static_cast<int32_t>(std::min<int64_t>(o.decode_tokens, seq_len - 16));
  const std::string short_prompt = "Once upon a time";
  Printf(stdout, "   %-9s %12s %10s %9s\n", "decode", "tokens/s", "GB/s", "roofline");
  double best_decode = 0;
  for (MatVecKernel k : {MatVecKernel::kAvx512, MatVecKernel::kAvx2, MatVecKernel::kOpenBlas}) {
    if (!engine::MatVecKernelSupported(k)) {
      continue;
    }
    CH_ASSIGN_OR_RETURN(Rates r, Measure(model, tok, short_prompt, decode_new, k, o.repeats));
    best_decode = std::max(best_decode, r.decode_tps);
    Printf(stdout, "   %-9s %12.1f %10.2f %8.1f%%\n",
           std::string(engine::MatVecKernelName(k)).c_str(), r.decode_tps,
           r.decode_tps * bytes_per_token / 1e9, 100.0 * r.decode_tps / roofline_tps);
    AddJsonRow(o, cli::JsonObject()
                      .Add("kind", "decode")
                      .Add("preset", preset)
                      .Add("format", "fp32")
                      .Add("kernel", engine::MatVecKernelName(k))
                      .Add("tokens_per_second", r.decode_tps)
                      .Add("bytes_per_second", r.decode_tps * bytes_per_token)
                      .Add("roofline_fraction", r.decode_tps / roofline_tps));
  }
  const auto prefill_n = static_cast<int32_t>(std::min<int64_t>(o.prefill_tokens, seq_len - 16));
  const std::string long_prompt = PromptOf(tok, prefill_n);
  CH_ASSIGN_OR_RETURN(Rates p, Measure(model, tok, long_prompt, 0, MatVecKernel::kAuto, o.repeats));
  Printf(stdout,
         "   prefill   %12.1f tokens/s for a %d-token prompt (OpenBLAS sgemm, chunks of %d):"
         " %.1fx decode\n",
         p.prefill_tps, p.prompt_tokens, engine::kMaxBatch,
         best_decode > 0 ? p.prefill_tps / best_decode : 0.0);
  AddJsonRow(o, cli::JsonObject()
                    .Add("kind", "prefill")
                    .Add("preset", preset)
                    .Add("format", "fp32")
                    .Add("kernel", "openblas sgemm")
                    .Add("tokens_per_second", p.prefill_tps)
                    .Add("prompt_tokens", static_cast<int64_t>(p.prompt_tokens))
                    .Add("times_decode", best_decode > 0 ? p.prefill_tps / best_decode : 0.0));
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
  std::vector<std::string> rows;
  if (!o.json_path.empty()) o.json_rows = &rows;
  AddJsonRow(o, cli::JsonObject()
                    .Add("kind", "bandwidth")
                    .Add("buffer_bytes", static_cast<uint64_t>(o.bandwidth_mib) << 20)
                    .Add("bytes_per_second", machine_bw));

  std::string dir = (std::filesystem::temp_directory_path() / "engine_bench.XXXXXX").string();
  if (::mkdtemp(dir.data()) == nullptr) {
    Printf(stderr, "engine_bench: %s\n",
           Error::FromErrno(errno, "mkdtemp " + dir).message().c_str());
    return 1;
  }
  int code = 0;
  for (std::string_view preset : Split(o.models, ',')) {
    Status s = BenchModel(std::string(preset), dir, machine_bw, o);
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
