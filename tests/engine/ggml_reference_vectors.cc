// ggml_reference_vectors: records what llama.cpp's own kernels compute for the inputs of
// kernel_inputs.h, so that the kernel tests can hold ours to them without the reference binaries
// (tests/engine/testdata/ggml_reference_vectors.txt). Not a test; run by hand when the inputs or
// the reference change:
//
//   build/dev/bin/ggml_reference_vectors ../shared/tools/llama.cpp >
//       tests/engine/testdata/ggml_reference_vectors.txt
//
// It loads the shipped libggml-base.so and libggml-cpu-icelake.so (llama.cpp c392e5094, the AVX-512
// build this CPU kind loads) with dlopen and calls their quantize_row_q8_*, ggml_vec_dot_*,
// dequantize_row_* and the repacked-Q4_0 gemv directly. ggml_vec_dot_{f32,f16,bf16} are not
// exported: they are found at their offsets in that exact build (checked against an exported
// neighbour), so another build of the library is refused.
#include <dlfcn.h>

#include <cinttypes>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include "engine/kernels/tensor_type.h"
#include "engine/kernels/type_kernels.h"
#include "tests/engine/kernel_inputs.h"

namespace cellhouse::engine::testing {
namespace {

using VecDot = void (*)(int, float*, size_t, const void*, size_t, const void*, size_t, int);
using RowFn = void (*)(const float*, void*, int64_t);
using DequantFn = void (*)(const void*, float*, int64_t);
using GemvFn = void (*)(int, float*, size_t, const void*, const void*, int, int);

// Offsets in c392e5094's libggml-cpu-icelake.so (nm): an exported anchor and the static kernels.
constexpr uintptr_t kAnchorOffset = 0x45c80;  // ggml_vec_dot_q8_0_q8_0
constexpr uintptr_t kDotF32Offset = 0x7ec0;
constexpr uintptr_t kDotF16Offset = 0x81d0;
constexpr uintptr_t kDotBF16Offset = 0x7d70;

struct Reference {
  void* base = nullptr;
  void* cpu = nullptr;
  uintptr_t cpu_start = 0;

  void* Symbol(void* lib, const char* name) const {
    void* p = dlsym(lib, name);
    if (p == nullptr) {
      static_cast<void>(std::fprintf(stderr, "ggml_reference_vectors: %s not found\n", name));
      std::exit(1);  // NOLINT(concurrency-mt-unsafe): a single-threaded tool
    }
    return p;
  }
};

struct TypeNames {
  TensorType type;
  const char* dot;       // ggml_vec_dot_* (nullptr: a float type, found by offset)
  const char* act;       // activation quantizer (library: cpu for q8_*, base for f16/bf16 rows)
  const char* dequant;   // dequantize_row_* in base (nullptr for F32)
  uintptr_t dot_offset;  // for the float types
};

constexpr TypeNames kTypes[] = {
    {TensorType::kF32, nullptr, nullptr, nullptr, kDotF32Offset},
    {TensorType::kF16, nullptr, "ggml_fp32_to_fp16_row", nullptr, kDotF16Offset},
    {TensorType::kBF16, nullptr, "ggml_fp32_to_bf16_row", nullptr, kDotBF16Offset},
    {TensorType::kQ4_0, "ggml_vec_dot_q4_0_q8_0", "quantize_row_q8_0", "dequantize_row_q4_0", 0},
    {TensorType::kQ4_1, "ggml_vec_dot_q4_1_q8_1", "quantize_row_q8_1", "dequantize_row_q4_1", 0},
    {TensorType::kQ5_0, "ggml_vec_dot_q5_0_q8_0", "quantize_row_q8_0", "dequantize_row_q5_0", 0},
    {TensorType::kQ5_1, "ggml_vec_dot_q5_1_q8_1", "quantize_row_q8_1", "dequantize_row_q5_1", 0},
    {TensorType::kQ8_0, "ggml_vec_dot_q8_0_q8_0", "quantize_row_q8_0", "dequantize_row_q8_0", 0},
    {TensorType::kQ4_K, "ggml_vec_dot_q4_K_q8_K", "quantize_row_q8_K", "dequantize_row_q4_K", 0},
    {TensorType::kQ5_K, "ggml_vec_dot_q5_K_q8_K", "quantize_row_q8_K", "dequantize_row_q5_K", 0},
    {TensorType::kQ6_K, "ggml_vec_dot_q6_K_q8_K", "quantize_row_q8_K", "dequantize_row_q6_K", 0},
};

uint32_t Bits(float f) {
  uint32_t b = 0;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

// Q4_0 rows (a multiple of 8) in llama.cpp's q4_0_8x8 layout: per 8 rows and block column, the 8
// halves, then 16 runs of 8 bytes (run i from row i % 8, bytes 8 (i / 8) .. +7), XOR 0x88.
std::vector<std::byte> RepackInterleaved8(const std::vector<std::byte>& w, int64_t rows,
                                          int64_t cols) {
  const size_t blocks = static_cast<size_t>(cols / 32);
  const size_t row_bytes = blocks * 18;
  std::vector<std::byte> out(w.size());
  std::byte* dst = out.data();
  for (int64_t g = 0; g < rows; g += 8) {
    for (size_t b = 0; b < blocks; ++b) {
      for (size_t i = 0; i < 8; ++i) {
        std::memcpy(dst + 2 * i, w.data() + (static_cast<size_t>(g) + i) * row_bytes + b * 18, 2);
      }
      for (size_t i = 0; i < 16; ++i) {
        uint64_t run = 0;
        const std::byte* src =
            w.data() + (static_cast<size_t>(g) + i % 8) * row_bytes + b * 18 + 2 + (i / 8) * 8;
        std::memcpy(&run, src, 8);
        run ^= 0x8888888888888888ULL;
        std::memcpy(dst + 16 + 8 * i, &run, 8);
      }
      dst += 144;
    }
  }
  return out;
}

void Record(const Reference& ref, const TypeNames& names, DotOrder order, int64_t cols,
            uint64_t seed) {
  constexpr int64_t kRows = 8;
  constexpr int32_t kTokens = 4;
  const TypeInfo& info = GetTypeInfo(names.type);
  const size_t w_row = *RowBytes(info, static_cast<uint64_t>(cols));
  // ggml's own layout of the activations (ours keeps F16/BF16 ones as floats).
  const size_t x_row = *RowBytes(GetTypeInfo(info.partner), static_cast<uint64_t>(cols));
  const std::vector<std::byte> w =
      KernelWeights(names.type, kRows, cols, seed, ScaleRange::kOrdinary);
  const std::vector<float> x = KernelActivations(kTokens, cols, seed + 1);
  std::printf("case %s %s cols %" PRId64 " rows %" PRId64 " tokens %d seed %" PRIu64 "\n",
              std::string(info.name).c_str(), order == DotOrder::kVecDot ? "vecdot" : "x8", cols,
              kRows, kTokens, seed);
  std::vector<std::byte> xq(x_row * kTokens);
  for (int32_t t = 0; t < kTokens; ++t) {
    const float* xt = x.data() + t * cols;
    std::byte* out = xq.data() + t * x_row;
    if (names.type == TensorType::kF32) {
      std::memcpy(out, xt, x_row);
    } else {
      void* lib =
          names.type == TensorType::kF16 || names.type == TensorType::kBF16 ? ref.base : ref.cpu;
      reinterpret_cast<RowFn>(ref.Symbol(lib, names.act))(xt, out, cols);
    }
    std::printf("act %d %016" PRIx64 "\n", t, Fnv64(out, x_row));
  }
  if (names.dequant != nullptr && order == DotOrder::kVecDot) {
    std::vector<float> row(static_cast<size_t>(cols));
    for (int64_t r = 0; r < kRows; ++r) {
      reinterpret_cast<DequantFn>(ref.Symbol(ref.base, names.dequant))(w.data() + r * w_row,
                                                                       row.data(), cols);
      std::printf("deq %" PRId64 " %016" PRIx64 "\n", r, Fnv64(row.data(), row.size() * 4));
    }
  }
  for (int32_t t = 0; t < kTokens; ++t) {
    std::vector<float> y(kRows);
    if (order == DotOrder::kInterleaved8) {
      const std::vector<std::byte> packed = RepackInterleaved8(w, kRows, cols);
      reinterpret_cast<GemvFn>(
          ref.Symbol(ref.cpu, "_ZN4ggml3cpu7aarch644gemvI10block_q4_0Ll8ELl8EEEviPfmPKvS6_ii"))(
          static_cast<int>(cols), y.data(), kRows, packed.data(), xq.data() + t * x_row, 1, kRows);
    } else {
      const auto dot = names.dot != nullptr
                           ? reinterpret_cast<VecDot>(ref.Symbol(ref.cpu, names.dot))
                           // A function at its known offset in the checked build.
                           // NOLINTNEXTLINE(performance-no-int-to-ptr)
                           : reinterpret_cast<VecDot>(ref.cpu_start + names.dot_offset);
      for (int64_t r = 0; r < kRows; ++r) {
        dot(static_cast<int>(cols), &y[r], 0, w.data() + r * w_row, 0, xq.data() + t * x_row, 0, 1);
      }
    }
    for (int64_t r = 0; r < kRows; ++r) {
      std::printf("dot %" PRId64 " %d %08" PRIx32 "\n", r, t, Bits(y[r]));
    }
  }
}

int Main(int argc, char** argv) {
  if (argc != 2) {
    static_cast<void>(std::fprintf(stderr, "usage: ggml_reference_vectors LLAMA_CPP_DIR > FILE\n"));
    return 2;
  }
  const std::string dir = argv[1];
  Reference ref;
  ref.base = dlopen((dir + "/libggml-base.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  ref.cpu = dlopen((dir + "/libggml-cpu-icelake.so").c_str(), RTLD_NOW | RTLD_GLOBAL);
  if (ref.base == nullptr || ref.cpu == nullptr) {
    // NOLINTNEXTLINE(concurrency-mt-unsafe): a single-threaded tool
    static_cast<void>(std::fprintf(stderr, "ggml_reference_vectors: dlopen: %s\n", dlerror()));
    return 1;
  }
  reinterpret_cast<void (*)()>(ref.Symbol(ref.cpu, "ggml_cpu_init"))();  // fills the f16 table
  Dl_info where{};
  void* anchor = ref.Symbol(ref.cpu, "ggml_vec_dot_q8_0_q8_0");
  if (dladdr(anchor, &where) == 0 ||
      reinterpret_cast<uintptr_t>(anchor) - reinterpret_cast<uintptr_t>(where.dli_fbase) !=
          kAnchorOffset) {
    static_cast<void>(std::fprintf(
        stderr, "ggml_reference_vectors: not the c392e5094 icelake build; refusing\n"));
    return 1;
  }
  ref.cpu_start = reinterpret_cast<uintptr_t>(where.dli_fbase);
  std::printf(
      "# llama.cpp c392e5094 (libggml-cpu-icelake.so, libggml-base.so) on the inputs of\n"
      "# tests/engine/kernel_inputs.h: activation rows and dequantized rows as FNV-1a-64 of their\n"
      "# bytes, dot products as float bits. Written by ggml_reference_vectors.\n");
  uint64_t seed = 100;
  for (const TypeNames& names : kTypes) {
    const bool is_float = names.dot == nullptr;
    for (int64_t cols : {int64_t{256}, int64_t{768}}) {
      Record(ref, names, DotOrder::kVecDot, cols, ++seed);
    }
    if (is_float) {
      Record(ref, names, DotOrder::kVecDot, 200, ++seed);  // leftovers past whole steps
      Record(ref, names, DotOrder::kVecDot, 39, ++seed);
    }
    if (names.type == TensorType::kQ4_0) {
      Record(ref, names, DotOrder::kInterleaved8, 768, ++seed);
    }
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::engine::testing

int main(int argc, char** argv) { return cellhouse::engine::testing::Main(argc, argv); }
