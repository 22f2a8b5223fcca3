// kernel_bench: the GGUF type kernels on one thread, per type and instruction set, over weight
// matrices far larger than the caches: decode (one activation row) as GB/s of weights streamed
// and as a fraction of the machine's single-thread read bandwidth measured in the same run, and
// the matrix product for a prompt of --prefill rows as a speed-up per token over decode. Both go
// through TypeKernels::Multiply, as the engine does: an instruction set's decode figure is that of
// the kernel the table gives it for one row, which for F16, BF16 and Q8_0 on AVX-512 CPUs is the
// AVX2 one (type_kernels.cc), so those two rows show the same decode kernel.
//
//   build/bin/kernel_bench [--types q8_0,q4_K,...] [--mib 128] [--rounds 3] [--prefill 64]
//                          [--cols 4096]
//   build/bin/kernel_bench --cache-kib 512     # the kernels' compute ceiling instead
//
// --cache-kib N shrinks each matrix to N KiB, which stays in the core's cache, and repeats each
// product for 50 ms of the thread's own CPU time: what the kernel computes per second when memory
// does not bound it, unaffected by other processes taking the CPU.
// Rounds interleave: each round measures every type and instruction set once, and each figure is
// the best of the rounds, so a burst of load from the other users of this machine does not favour
// one kernel. Figures only: nothing here asserts anything about time.
#include <sys/mman.h>

#include <algorithm>
#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/print.h"
#include "base/strings.h"
#include "bench/engine/bandwidth.h"
#include "engine/kernels/half.h"
#include "engine/kernels/tensor_type.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::bench {
namespace {

using engine::KernelIsa;
using engine::TensorType;

struct Options {
  // q4_0x8: Q4_0 in llama.cpp's repacked order (DotOrder::kInterleaved8); q8_0s, q4_Ks, q5_Ks,
  // q6_Ks: the type in a prompt's order (DotOrder::kBlockSums).
  std::string types =
      "f32,f16,bf16,q8_0,q8_0s,q4_0,q4_0x8,q4_1,q5_0,q5_1,q4_K,q4_Ks,q5_K,q5_Ks,q6_K,q6_Ks";
  int64_t mib = 128;
  int64_t rounds = 3;
  int64_t prefill = 64;
  int64_t cache_kib = 0;
  int64_t cols = 4096;
};

// Memory from mmap, asking for 2 MiB pages as the engine's model mapping does.
class Buffer {
 public:
  explicit Buffer(size_t bytes) : size_(bytes) {
    void* p = mmap(nullptr, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) {
      return;  // data() stays null; the caller reports it
    }
    madvise(p, bytes, MADV_HUGEPAGE);
    data_ = static_cast<std::byte*>(p);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& other) noexcept : data_(other.data_), size_(other.size_) {
    other.data_ = nullptr;
  }
  ~Buffer() {
    if (data_ != nullptr) {
      munmap(data_, size_);
    }
  }
  std::byte* data() const { return data_; }
  size_t size() const { return size_; }

 private:
  std::byte* data_ = nullptr;
  size_t size_ = 0;
};

uint64_t Next(uint64_t& s) {
  s ^= s << 13;
  s ^= s >> 7;
  s ^= s << 17;
  return s;
}

// Random blocks with ordinary halves in every scale field; floats of magnitude below 1.
void Fill(TensorType type, std::span<std::byte> out) {
  const engine::TypeInfo& info = engine::GetTypeInfo(type);
  uint64_t s = 0x9E3779B97F4A7C15ULL + static_cast<uint64_t>(type);
  auto random_float = [&s] {
    return static_cast<float>(static_cast<int64_t>(Next(s) >> 40) - (1 << 23)) * 0x1p-23F;
  };
  if (type == TensorType::kF32) {
    for (size_t i = 0; i + 4 <= out.size(); i += 4) {
      const float v = random_float();
      std::memcpy(out.data() + i, &v, 4);
    }
    return;
  }
  if (type == TensorType::kF16 || type == TensorType::kBF16) {
    for (size_t i = 0; i + 2 <= out.size(); i += 2) {
      const float v = random_float();
      uint32_t bits = 0;
      std::memcpy(&bits, &v, 4);
      const uint16_t h =
          type == TensorType::kF16 ? engine::FloatToHalf(v) : static_cast<uint16_t>(bits >> 16);
      std::memcpy(out.data() + i, &h, 2);
    }
    return;
  }
  for (size_t i = 0; i + 8 <= out.size(); i += 8) {
    const uint64_t v = Next(s);
    std::memcpy(out.data() + i, &v, 8);
  }
  std::vector<size_t> fields;
  switch (type) {
    case TensorType::kQ4_1:
    case TensorType::kQ5_1:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
      fields = {0, 2};
      break;
    case TensorType::kQ6_K:
      fields = {engine::block::kQ6_KD};
      break;
    default:
      fields = {0};
  }
  const uint16_t scale = engine::FloatToHalf(0.01F);
  for (size_t b = 0; b + info.block_bytes <= out.size(); b += info.block_bytes) {
    for (size_t f : fields) {
      std::memcpy(out.data() + b + f, &scale, 2);
    }
  }
}

struct Figures {
  double decode_seconds = 1e30;
  double prefill_seconds = 1e30;
};

struct Case {
  TensorType type;
  engine::DotOrder order;
  int64_t rows;
  int64_t cols;
  size_t row_bytes;
  Buffer weights;
  std::vector<std::byte> activations;  // --prefill rows, quantized
  size_t x_row_bytes;
};

// Seconds of one product: wall time of one call, or (in_cache) the thread's CPU time per call
// over calls repeated for 50 ms of it.
double Seconds(const engine::TypeKernels& k, const Case& c, int32_t n, std::vector<float>& y,
               bool in_cache) {
  const engine::MatMulArgs args{.w = c.weights.data(),
                                .w_row_bytes = c.row_bytes,
                                .cols = c.cols,
                                .row_begin = 0,
                                .row_end = c.rows,
                                .x = c.activations.data(),
                                .x_row_bytes = c.x_row_bytes,
                                .n = n,
                                .y = y.data(),
                                .y_stride = static_cast<size_t>(c.rows)};
  if (!in_cache) {
    const int64_t start = MonotonicNanos();
    k.Multiply(args);
    return static_cast<double>(MonotonicNanos() - start) / 1e9;
  }
  k.Multiply(args);  // into the cache
  const int64_t start = ThreadCpuNanos();
  int64_t calls = 0;
  while (ThreadCpuNanos() - start < 50 * kNanosPerMilli) {
    k.Multiply(args);
    ++calls;
  }
  return static_cast<double>(ThreadCpuNanos() - start) / 1e9 / static_cast<double>(calls);
}

// A matrix of `name` (random blocks, Fill) far larger than the caches (or of --cache-kib), and
// --prefill activation rows quantized for it; nullopt (with a message) for an unknown type.
std::optional<Case> MakeCase(std::string_view name, const Options& o) {
  const bool interleaved = name == "q4_0x8";
  const bool block_sums = name == "q8_0s" || name == "q4_Ks" || name == "q5_Ks" || name == "q6_Ks";
  const std::string_view type_name = interleaved  ? "q4_0"
                                     : block_sums ? name.substr(0, name.size() - 1)
                                                  : name;
  const engine::TypeInfo* info = nullptr;
  for (const engine::TypeInfo& i : engine::kTypeInfos) {
    if (i.name == type_name && i.weight) {
      info = &i;
    }
  }
  if (info == nullptr) {
    Printf(stderr, "kernel_bench: unknown weight type '%s'\n", std::string(name).c_str());
    return std::nullopt;
  }
  const size_t row_bytes = *engine::RowBytes(*info, o.cols);
  const size_t matrix_bytes =
      o.cache_kib > 0 ? static_cast<size_t>(o.cache_kib) << 10 : static_cast<size_t>(o.mib) << 20;
  const int64_t rows =
      std::max<int64_t>(16, static_cast<int64_t>(matrix_bytes / row_bytes) / 16 * 16);
  Case c{.type = info->type,
         .order = interleaved  ? engine::DotOrder::kInterleaved8
                  : block_sums ? engine::DotOrder::kBlockSums
                               : engine::DotOrder::kVecDot,
         .rows = rows,
         .cols = o.cols,
         .row_bytes = row_bytes,
         .weights = Buffer(row_bytes * static_cast<size_t>(rows)),
         .activations = {},
         .x_row_bytes = *engine::ActivationRowBytes(info->type, o.cols)};
  if (c.weights.data() == nullptr) {
    Printf(stderr, "kernel_bench: cannot map %zu bytes of %s weights\n",
           row_bytes * static_cast<size_t>(rows), std::string(name).c_str());
    return std::nullopt;
  }
  Fill(info->type, {c.weights.data(), c.weights.size()});
  std::vector<float> x(static_cast<size_t>(o.prefill * o.cols));
  uint64_t s = 12345;
  for (float& v : x) {
    v = static_cast<float>(static_cast<int64_t>(Next(s) >> 40) - (1 << 23)) * 0x1p-22F;
  }
  c.activations.resize(c.x_row_bytes * static_cast<size_t>(o.prefill));
  engine::GetTypeKernels(info->type, KernelIsa::kPortable)
      .quantize_activations(x.data(), static_cast<int32_t>(o.prefill), o.cols,
                            c.activations.data());
  return c;
}

using Results = std::map<std::pair<size_t, KernelIsa>, Figures>;

// Every round measures every case and instruction set once; the best of the rounds is kept.
// Returns the best read bandwidth measured between rounds.
double Measure(const Options& o, const std::vector<Case>& cases, const std::vector<KernelIsa>& isas,
               Results& best) {
  Buffer stream(static_cast<size_t>(o.cache_kib > 0 ? 1 : o.mib) << 21);
  if (stream.data() == nullptr) {
    return 0;
  }
  std::memset(stream.data(), 1, stream.size());
  double bandwidth = 0;
  std::vector<float> y;
  const bool in_cache = o.cache_kib > 0;
  for (int64_t round = 0; round < o.rounds; ++round) {
    bandwidth = std::max(bandwidth, StreamReadBandwidth({stream.data(), stream.size()}, 1));
    for (size_t i = 0; i < cases.size(); ++i) {
      const Case& c = cases[i];
      y.resize(static_cast<size_t>(c.rows * o.prefill));
      for (KernelIsa isa : isas) {
        const engine::TypeKernels& k = engine::GetTypeKernels(c.type, isa, c.order);
        Figures& f = best[{i, isa}];
        f.decode_seconds = std::min(f.decode_seconds, Seconds(k, c, 1, y, in_cache));
        if (isa != KernelIsa::kPortable) {  // portable prefill takes minutes: it is the definition
          f.prefill_seconds = std::min(f.prefill_seconds,
                                       Seconds(k, c, static_cast<int32_t>(o.prefill), y, in_cache));
        }
      }
    }
  }
  return bandwidth;
}

void PrintTable(const Options& o, const std::vector<Case>& cases,
                const std::vector<KernelIsa>& isas, const Results& best, double bandwidth) {
  if (o.cache_kib > 0) {
    Printf(stdout,
           "in cache: %" PRId64 " KiB of weights per type, rows of %" PRId64
           " values, thread CPU time, best of %" PRId64 " rounds\n\n",
           o.cache_kib, o.cols, o.rounds);
  } else {
    Printf(stdout,
           "single-thread read bandwidth: %.1f GB/s; %" PRId64
           " MiB of weights per type, rows of %" PRId64 " values, best of %" PRId64 " rounds\n\n",
           bandwidth / 1e9, o.mib, o.cols, o.rounds);
  }
  Printf(stdout,
         "| type | kernel | decode GB/s | of roofline | prefill (%" PRId64
         " rows) per token vs decode |\n|---|---|---|---|---|\n",
         o.prefill);
  for (size_t i = 0; i < cases.size(); ++i) {
    const Case& c = cases[i];
    for (KernelIsa isa : isas) {
      const Figures& f = best.at({i, isa});
      const double bytes = static_cast<double>(c.weights.size());
      char prefill[32] = "-";
      if (f.prefill_seconds < 1e29) {
        static_cast<void>(
            std::snprintf(prefill, sizeof(prefill), "%.2fx",
                          f.decode_seconds * static_cast<double>(o.prefill) / f.prefill_seconds));
      }
      Printf(stdout,
             o.cache_kib > 0 ? "| %s | %s | %.1f | (%.0f%%) | %s |\n"
                             : "| %s | %s | %.1f | %.0f%% | %s |\n",
             (std::string(engine::GetTypeInfo(c.type).name) +
              (c.order == engine::DotOrder::kInterleaved8 ? "x8"
               : c.order == engine::DotOrder::kBlockSums  ? "s"
                                                          : ""))
                 .c_str(),
             std::string(engine::KernelIsaName(isa)).c_str(), bytes / f.decode_seconds / 1e9,
             100.0 * bytes / f.decode_seconds / bandwidth, prefill);
    }
  }
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("kernel_bench [flags]",
                "GGUF type kernels on one thread: decode GB/s and prefill speed-up per type.");
  flags.String("types", &o.types, "LIST", "comma-separated GGUF types (as llama.cpp names them)");
  flags.Int("mib", &o.mib, "N", "MiB of weights per type: far more than the caches");
  flags.Int("rounds", &o.rounds, "N", "interleaved rounds; each figure is the best");
  flags.Int("cols", &o.cols, "N",
            "values per weight row (a multiple of 256; 768 is the 110m model's)");
  flags.Int("prefill", &o.prefill, "N", "activation rows of the prompt product");
  flags.Int("cache-kib", &o.cache_kib, "N",
            "matrices of N KiB that stay in cache: the compute ceiling (0: --mib, from memory)");
  Result<std::vector<std::string>> args = flags.Parse(argc - 1, argv + 1);
  if (!args) {
    Printf(stderr, "kernel_bench: %s\n", args.error().message().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    static_cast<void>(std::fputs(flags.Usage().c_str(), stdout));
    return 0;
  }
  if (o.cols <= 0 || o.cols % 256 != 0 || o.cols > (int64_t{1} << 20)) {
    Printf(stderr,
           "kernel_bench: --cols %lld: give a multiple of 256 (every type's block divides a row) "
           "up to 1048576\n",
           static_cast<long long>(o.cols));
    return 2;
  }
  std::vector<KernelIsa> isas;
  for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (engine::KernelIsaSupported(isa)) {
      isas.push_back(isa);
    } else {
      Printf(stdout, "%s: not on this CPU, skipped\n",
             std::string(engine::KernelIsaName(isa)).c_str());
    }
  }
  std::vector<Case> cases;
  for (std::string_view name : Split(o.types, ',')) {
    std::optional<Case> c = MakeCase(name, o);
    if (!c) {
      return 2;
    }
    cases.push_back(std::move(*c));
  }
  Results best;
  const double bandwidth = Measure(o, cases, isas, best);
  PrintTable(o, cases, isas, best, bandwidth);
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
