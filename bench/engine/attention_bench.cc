// attention_bench: a decode token's attention products on one thread, per instruction set: the
// scores (DotsF16 over each kv head's keys) and the weighted values (DotsF16Blocks over its value
// blocks), as a GGUF session computes them (engine/gguf_forward.cc), for every layer and head of
// a model shape at a few context lengths. Prints µs per token and G products/s for each.
//
//   build/bin/attention_bench [--layers 12] [--heads 12] [--head-size 64]
//                             [--contexts 32,64,96,128,256,512,1024] [--cold]
//
// The caches are laid out as RunState lays them out ([layer][kv head][capacity][head size] keys,
// values in blocks of kF16Block positions). Times are the best of five on the thread's own CPU
// time. By default the caches stay in the core's caches where they fit (the kernels' ceiling);
// --cold streams 64 MiB through the caches before every token, as the weights do between two of
// a session's layers, so the figures include the reads from memory. Keys and values are 0.7, the
// query 0.5 and the weights 0.01, as halves: no value takes a special path. Figures only.
#include <algorithm>
#include <cstdio>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "engine/ggml_ops.h"
#include "engine/kernels/half.h"
#include "engine/kernels/type_kernels.h"
#include "engine/run_state.h"

namespace cellhouse::bench {
namespace {

using engine::KernelIsa;

struct Options {
  int64_t layers = 12;
  int64_t heads = 12;
  int64_t head_size = 64;
  std::string contexts = "32,64,96,128,256,512,1024";
  bool cold = false;
};

struct Figures {
  double scores_seconds = 0;
  double values_seconds = 0;
};

// One token at `count` positions: every layer's and head's scores, then its weighted values.
class Token {
 public:
  Token(const Options& o, int64_t capacity)
      : o_(o),
        capacity_(capacity),
        keys_(static_cast<size_t>(o.layers * o.heads * capacity * o.head_size),
              engine::FloatToHalf(0.7F)),
        values_(keys_.size(), engine::FloatToHalf(0.7F)),
        query_(static_cast<size_t>(o.head_size), 0.5F),
        weights_(static_cast<size_t>(capacity), engine::HalfToFloat(engine::FloatToHalf(0.01F))),
        scores_(static_cast<size_t>(capacity)),
        out_(static_cast<size_t>(o.head_size)),
        scratch_(static_cast<size_t>(capacity)),
        junk_(size_t{64} << 20, std::byte{1}) {}

  Figures Run(KernelIsa isa, int64_t count) {
    Figures best{1e9, 1e9};
    for (int rep = 0; rep < 5; ++rep) {
      Figures f;
      if (o_.cold) Evict();
      double start = ThreadCpuSeconds();
      for (int64_t h = 0; h < o_.layers * o_.heads; ++h) {
        engine::DotsF16(Head(keys_, h), static_cast<size_t>(o_.head_size), count, query_.data(),
                        o_.head_size, isa, scores_.data());
      }
      f.scores_seconds = ThreadCpuSeconds() - start;
      if (o_.cold) Evict();
      start = ThreadCpuSeconds();
      const int64_t padded = engine::PadToKv(count);
      for (int64_t h = 0; h < o_.layers * o_.heads; ++h) {
        engine::DotsF16Blocks(Head(values_, h),
                              static_cast<size_t>(o_.head_size * engine::kF16Block), o_.head_size,
                              weights_.data(), padded, isa, scratch_.data(), out_.data());
      }
      f.values_seconds = ThreadCpuSeconds() - start;
      best.scores_seconds = std::min(best.scores_seconds, f.scores_seconds);
      best.values_seconds = std::min(best.values_seconds, f.values_seconds);
    }
    return best;
  }

 private:
  const uint16_t* Head(const std::vector<uint16_t>& cache, int64_t h) const {
    return cache.data() + static_cast<size_t>(h * capacity_ * o_.head_size);
  }

  // Reads and writes 64 MiB, a line at a time: more than the last-level cache holds.
  void Evict() {
    for (size_t i = 0; i < junk_.size(); i += 64) {
      junk_[i] = static_cast<std::byte>(static_cast<int>(junk_[i]) + 1);
    }
  }

  const Options& o_;
  int64_t capacity_;
  std::vector<uint16_t> keys_;
  std::vector<uint16_t> values_;
  std::vector<float> query_;
  std::vector<float> weights_;
  std::vector<float> scores_;
  std::vector<float> out_;
  std::vector<uint16_t> scratch_;
  std::vector<std::byte> junk_;
};

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("attention_bench [flags]",
                "A decode token's attention products (scores and weighted values) on one thread.");
  flags.Int("layers", &o.layers, "N", "layers of the shape");
  flags.Int("heads", &o.heads, "N", "kv heads per layer");
  flags.Int("head-size", &o.head_size, "N", "values per head (a multiple of 16)");
  flags.String("contexts", &o.contexts, "LIST", "comma-separated positions the token attends to");
  flags.Bool("cold", &o.cold, "evict the caches before each token (64 MiB streamed)");
  Result<std::vector<std::string>> args = flags.Parse(argc - 1, argv + 1);
  if (!args) {
    Printf(stderr, "attention_bench: %s\n", args.error().message().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    static_cast<void>(std::fputs(flags.Usage().c_str(), stdout));
    return 0;
  }
  if (o.layers < 1 || o.heads < 1 || o.head_size < 16 || o.head_size % 16 != 0 ||
      o.layers * o.heads > 4096) {
    Printf(stderr,
           "attention_bench: --layers and --heads must be at least 1 (layers x heads at most "
           "4096) and --head-size a multiple of 16\n");
    return 2;
  }
  std::vector<int64_t> contexts;
  for (std::string_view text : Split(o.contexts, ',')) {
    Result<int64_t> n = ParseInt64(text, "--contexts");
    if (!n || *n < 1 || *n > 65536) {
      Printf(stderr, "attention_bench: --contexts takes positions from 1 to 65536, got '%s'\n",
             std::string(text).c_str());
      return 2;
    }
    contexts.push_back(*n);
  }
  const int64_t capacity = engine::PadToKv(*std::max_element(contexts.begin(), contexts.end()));
  Token token(o, capacity);
  Printf(stdout, "%lld layers x %lld kv heads x %lld values, %s; µs per decode token\n",
         static_cast<long long>(o.layers), static_cast<long long>(o.heads),
         static_cast<long long>(o.head_size),
         o.cold ? "caches evicted before each token" : "caches warm");
  Printf(stdout, "| isa | positions | scores µs | G products/s | values µs | G products/s |\n");
  Printf(stdout, "|---|---:|---:|---:|---:|---:|\n");
  for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (!engine::KernelIsaSupported(isa)) {
      Printf(stdout, "%s: not on this CPU, skipped\n",
             std::string(engine::KernelIsaName(isa)).c_str());
      continue;
    }
    for (int64_t count : contexts) {
      const Figures f = token.Run(isa, count);
      const double products = static_cast<double>(o.layers * o.heads * o.head_size);
      Printf(stdout, "| %s | %lld | %.1f | %.2f | %.1f | %.2f |\n",
             std::string(engine::KernelIsaName(isa)).c_str(), static_cast<long long>(count),
             f.scores_seconds * 1e6, products * static_cast<double>(count) / f.scores_seconds / 1e9,
             f.values_seconds * 1e6,
             products * static_cast<double>(engine::PadToKv(count)) / f.values_seconds / 1e9);
    }
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
