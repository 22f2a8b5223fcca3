// engine_bench: decode and prefill tokens/s on one thread for generated 15m and 110m models,
// against the machine's single-thread memory read bandwidth measured in the same run.
//
//   OPENBLAS_NUM_THREADS=1 build/bin/engine_bench [--models 15m,110m] [--decode-tokens 128]
//
// Decode reads every weight once per token, so its roofline is bandwidth / (bytes of weights
// read per token); the "roofline" column is the fraction of that reached. Figures only: nothing
// here asserts anything about time.
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
#include "base/mapping.h"
#include "base/print.h"
#include "base/strings.h"
#include "bench/engine/bandwidth.h"
#include "worker/engine/conversation.h"
#include "worker/engine/generator.h"
#include "worker/engine/kernels.h"
#include "worker/engine/quantize.h"

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
};

// Bytes of weights one decode step reads: every matrix, the norms, the classifier, and one row
// of the embedding table (for int8, the tiles that row lies in). The KV cache read by attention
// is not weights, and not counted.
double DecodeBytesPerToken(const engine::Model& model) {
  const ModelConfig& c = model.config();
  const double d = c.dim;
  const double norms = 4.0 * (2 * d * c.n_layers + d);
  if (const auto* q8 = std::get_if<engine::QuantizedWeights>(&model.weights())) {
    double matrices = 0;
    for (const engine::Q8Tensor* t :
         {&q8->wq, &q8->wk, &q8->wv, &q8->wo, &q8->w1, &q8->w2, &q8->w3, &q8->classifier}) {
      matrices += static_cast<double>(t->Span().size());
    }
    const engine::Q8Shape& e = q8->token_embedding.shape;
    const double embedding_row =
        static_cast<double>(e.Groups()) * static_cast<double>(e.TileBytes());
    return matrices + norms + embedding_row;
  }
  const double h = c.hidden_dim, kv = c.kv_dim(), v = c.vocab_size;
  const double per_layer = 2 * d * d + 2 * kv * d + 3 * d * h;
  return 4.0 * (c.n_layers * per_layer + v * d + d) + norms;
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

struct FormatFigures {
  double decode_tps = 0;  // best kernel
  double prefill_tps = 0;
  double roofline_tps = 0;
};

// Decode with every kernel this CPU has, and prefill, for one model file.
Result<FormatFigures> BenchFormat(const std::string& label, const engine::Model& model,
                                  const engine::Tokenizer& tok, double machine_bw,
                                  const Options& o) {
  CH_RETURN_IF_ERROR(model.Prefault());
  // Reading the model's own mapping can beat the anonymous buffer (page-cache folios), so the
  // roofline takes the better of the two: the fraction is then never flattered.
  const double model_bw = StreamReadBandwidth(model.bytes(), 5);
  const double bw = std::max(machine_bw, model_bw);
  const double bytes_per_token = DecodeBytesPerToken(model);
  FormatFigures f{.roofline_tps = bw / bytes_per_token};
  const bool q8 = model.format() == engine::WeightFormat::kQ8;
  Printf(stdout, "   -- %s: file %s; streaming read of the mapping %.2f GB/s\n", label.c_str(),
         FormatBytes(model.bytes().size()).c_str(), model_bw / 1e9);
  Printf(stdout,
         "      weights read per token %.1f MB; roofline %.2f GB/s / %.1f MB = %.1f tokens/s\n",
         bytes_per_token / 1e6, bw / 1e9, bytes_per_token / 1e6, f.roofline_tps);

  const int32_t seq_len = model.config().seq_len;
  const auto decode_new = static_cast<int32_t>(std::min<int64_t>(o.decode_tokens, seq_len - 16));
  const std::string short_prompt = "Once upon a time";
  Printf(stdout, "      %-12s %12s %10s %9s\n", "decode", "tokens/s", "GB/s", "roofline");
  for (MatVecKernel k : {MatVecKernel::kAvx512, MatVecKernel::kAvx2, MatVecKernel::kOpenBlas}) {
    if (!engine::MatVecKernelSupported(k)) {
      continue;
    }
    const engine::Kernels kernels = engine::SelectKernels(k);
    // The portable int8 kernel is plain C++, tens of times slower: a short sample is enough.
    const bool portable = q8 && kernels.q8_kind == engine::Q8Kernel::kPortable;
    CH_ASSIGN_OR_RETURN(Rates r, Measure(model, tok, short_prompt, portable ? 8 : decode_new, k,
                                         portable ? 1 : o.repeats));
    f.decode_tps = std::max(f.decode_tps, r.decode_tps);
    const std::string name(q8 ? engine::Q8KernelName(kernels.q8_kind)
                              : engine::MatVecKernelName(k));
    Printf(stdout, "      %-12s %12.1f %10.2f %8.1f%%\n", name.c_str(), r.decode_tps,
           r.decode_tps * bytes_per_token / 1e9, 100.0 * r.decode_tps / f.roofline_tps);
  }
  const auto prefill_n = static_cast<int32_t>(std::min<int64_t>(o.prefill_tokens, seq_len - 16));
  const std::string long_prompt = PromptOf(tok, prefill_n);
  CH_ASSIGN_OR_RETURN(Rates p, Measure(model, tok, long_prompt, 0, MatVecKernel::kAuto, o.repeats));
  f.prefill_tps = p.prefill_tps;
  Printf(stdout,
         "      prefill %16.1f tokens/s for a %d-token prompt (%s, chunks of %d): %.1fx decode\n",
         p.prefill_tps, p.prompt_tokens, q8 ? "int8 batched kernel" : "OpenBLAS sgemm",
         engine::kMaxBatch, f.decode_tps > 0 ? p.prefill_tps / f.decode_tps : 0.0);
  return f;
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
  Printf(stdout, "\n== %s: %s (generated in %.2f s)\n", preset.c_str(), config.Describe().c_str(),
         static_cast<double>(MonotonicNanos() - start) / 1e9);
  CH_ASSIGN_OR_RETURN(FormatFigures fp32, BenchFormat("fp32", model, tok, machine_bw, o));
  for (std::string_view group : Split(o.group_sizes, ',')) {
    if (group.empty()) {
      continue;
    }
    CH_ASSIGN_OR_RETURN(int64_t group_size, ParseInt64(group, "--group-sizes"));
    const std::string q8_path = path + ".q8-" + std::string(group);
    const int64_t q_start = MonotonicNanos();
    CH_RETURN_IF_ERROR(engine::WriteQuantizedModel(std::get<engine::ModelWeights>(model.weights()),
                                                   {.group_size = static_cast<int32_t>(group_size)},
                                                   q8_path));
    const double q_s = static_cast<double>(MonotonicNanos() - q_start) / 1e9;
    CH_ASSIGN_OR_RETURN(engine::Model q8, engine::Model::Open(q8_path));
    char seconds[32];
    static_cast<void>(std::snprintf(seconds, sizeof(seconds), "%.2f s", q_s));
    const std::string label =
        "q8, groups of " + std::string(group) + " (quantized in " + seconds + ")";
    CH_ASSIGN_OR_RETURN(FormatFigures f, BenchFormat(label, q8, tok, machine_bw, o));
    Printf(stdout, "      q8/%s against fp32: decode %.2fx (roofline %.2fx), prefill %.2fx\n",
           std::string(group).c_str(), f.decode_tps / fp32.decode_tps,
           f.roofline_tps / fp32.roofline_tps, f.prefill_tps / fp32.prefill_tps);
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
  return code;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
