// The kernel table of GGUF tensor types: for each weight type (tensor_type.h) and instruction set,
// how to read a row back to floats, how to quantize an activation row to the type's partner, the
// dot product of a weight row with such an activation row, and the matrix product over a range of
// weight rows for n activation rows. Weight quantizers (float -> type) for `cellmodel convert` are
// here too.
//
//   const TypeKernels& k = GetTypeKernels(TensorType::kQ4_K, BestKernelIsa());
//   std::vector<std::byte> xq(*ActivationRowBytes(TensorType::kQ4_K, cols) * n);
//   k.quantize_activations(x, n, cols, xq.data());          // x: [n][cols] floats
//   k.Multiply({.w = w, .w_row_bytes = row_bytes, .cols = cols, .row_begin = 0, .row_end = rows,
//               .x = xq.data(), .x_row_bytes = xq.size() / n, .n = n, .y = y, .y_stride = rows});
//
// Arithmetic: the products reproduce, operation for operation, the float arithmetic of the
// reference runtime that recorded the GGUF test references (llama.cpp c392e5094, Feb 2025, its
// AVX-512 "icelake" CPU build, which this kind of CPU loads): how activations are quantized and
// rounded, which integer sums meet which float lanes, where the multiply-adds are fused, and the
// order of the horizontal sums. Each kernel file states what it mirrors. So the greedy output of a
// model agrees with the reference's, token for token, where the rest of the forward pass does.
//
// Two properties hold in every variant:
//  - Every instruction set gives bit-identical results to the portable C++ one (tested).
//  - Batch invariance: y[t][r] is computed by the same operations whatever n, whatever the row
//    range and whichever other rows are in the batch, so each session in a batch of 64 gets what
//    it would get alone (issue 17). A prompt's rows equal what decode computes for them one at a
//    time, except with Q8_0 and K-quant weights, whose prompts take their own order
//    (DotOrder::kBlockSums, PromptOrder). llama.cpp's own prompt path differs from its decode
//    path for F16/F32/BF16 weights (tinyBLAS, one 16-lane accumulator) and for repacked Q4_0
//    (see DotOrder).
//
// None of these allocates, starts a thread or makes a system call.
#ifndef CELLHOUSE_ENGINE_KERNELS_TYPE_KERNELS_H_
#define CELLHOUSE_ENGINE_KERNELS_TYPE_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

#include "engine/kernels/tensor_type.h"

namespace cellhouse::engine {

enum class KernelIsa {
  kPortable,  // plain C++, any CPU: the definition the others reproduce
  kAvx2,      // AVX2 + FMA + F16C
  kAvx512,    // AVX-512 F/BW/VL/VNNI (on top of the above)
};

std::string_view KernelIsaName(KernelIsa isa);
bool KernelIsaSupported(KernelIsa isa);
// The fastest this CPU supports.
KernelIsa BestKernelIsa();

// The order in which a weight row's products accumulate. Only Q4_0 has a second one: llama.cpp
// repacks a Q4_0 matrix whose row count is a multiple of 8 into an interleaved layout at load time
// (q4_0_8x8) and multiplies it with one float accumulator per row, where its plain Q4_0 product
// (for the token embedding used as classifier, or rows not a multiple of 8) keeps 8 lanes per row
// and sums them at the end. Both read the file's own layout here: nothing is repacked.
//
// A third order is cellhouse's own, for a prompt's rows (PromptOrder): kBlockSums, the arithmetic
// of kInterleaved8 without its layout. Each block's 32 products are summed exactly and meet the
// float work once: acc = fma(float(sum), half(w.d) * half(x.d), acc), one float per (row, token).
// kVecDot's eight lanes cost eight conversions and multiply-adds per block where this costs one,
// and its integer sums can keep a token per vector lane; on AVX-512 a Q8_0 prompt's products run
// about 2x as fast (docs/ENGINE.md). llama.cpp's own prompt path (tinyBLAS) keeps kVecDot's
// lanes for Q8_0, so a prompt's last bits differ from its (agreement is measured, not assumed:
// gguf_reference_test); the sums are exact, so they are nearer the true product, not further.
// The K-quants (Q4_K, Q5_K, Q6_K) have it too, per block of 256: the block's scaled integer
// products summed exactly, one fma with half(w.d) * x.d, and for Q4_K and Q5_K the mins' exact sum
// in a second fma with -half(w.dmin) * x.d (k_types.cc).
enum class DotOrder {
  kVecDot,        // ggml's vec_dot for the type (every type)
  kInterleaved8,  // Q4_0 only: llama.cpp's q4_0_8x8 product
  kBlockSums,     // Q8_0 and the K-quants: a prompt's rows, exact block sums, one fma per sum
};

// The order a prompt's rows use for a weight whose decode order is `order`: kBlockSums for the
// kVecDot of Q8_0 and the K-quants, otherwise `order` itself. Chosen by the kind of row, never by
// how many rows a product has, so a prompt gives the same bits in chunks of any size, alone or in
// the shared executor's batches (issue 17), and a decode token the same bits as ever.
DotOrder PromptOrder(TensorType type, DotOrder order);

// How a weight tensor is used, for ReferenceDotOrder.
enum class WeightUse {
  kMatMul,              // only multiplied with activations (attention, feed-forward, output.weight)
  kEmbeddingAndMatMul,  // the token embedding table, also used as the classifier (tied)
};

// The order llama.cpp uses for a weight of `type` with `rows` rows used as `use`.
DotOrder ReferenceDotOrder(TensorType type, int64_t rows, WeightUse use);

// One matrix product: y[t * y_stride + r] = w_r · x_t for row_begin <= r < row_end and t < n.
struct MatMulArgs {
  const std::byte* w = nullptr;  // weight row r at w + r * w_row_bytes
  size_t w_row_bytes = 0;
  int64_t cols = 0;  // values per row: a whole number of the weight type's blocks
  int64_t row_begin = 0;
  int64_t row_end = 0;
  const std::byte* x = nullptr;  // activation row t at x + t * x_row_bytes, in the partner type
  size_t x_row_bytes = 0;
  int32_t n = 0;  // activation rows (tokens)
  float* y = nullptr;
  size_t y_stride = 0;  // floats from one token's outputs to the next's
};

struct TypeKernels {
  TensorType type = TensorType::kF32;
  TensorType partner = TensorType::kF32;  // what activations are quantized to
  KernelIsa isa = KernelIsa::kPortable;
  DotOrder order = DotOrder::kVecDot;
  // out[0, count) = the row's values, as llama.cpp's dequantize_row_* computes them (the token
  // embedding lookup). count: a whole number of blocks.
  void (*dequantize)(const std::byte* row, int64_t count, float* out) = nullptr;
  // n rows of `cols` floats (x[t * cols + c]) rounded to the partner type, each
  // ActivationRowBytes(type, cols) bytes, one after the other at out. Every value is finite.
  void (*quantize_activations)(const float* x, int32_t n, int64_t cols, std::byte* out) = nullptr;
  // w_row · x_row over `cols` values.
  float (*dot)(const std::byte* w_row, const std::byte* x_row, int64_t cols) = nullptr;
  void (*matmul)(const MatMulArgs& args) = nullptr;
  // The same product for one activation row (args.n == 1, decode): `matmul` itself, or where
  // another kernel of this CPU streams one token's rows faster, that one (type_kernels.cc says
  // which and why). The same bits either way.
  void (*decode)(const MatMulArgs& args) = nullptr;

  // y = w x with the kernel for args.n: what the forward pass calls.
  void Multiply(const MatMulArgs& args) const { (args.n == 1 ? decode : matmul)(args); }
};

// The kernels of a weight type (TypeInfo::weight) for an instruction set the CPU supports (an
// unsupported one falls back to the next supported: kAvx512 -> kAvx2 -> kPortable). nullptr for a
// type that is not a weight type, kInterleaved8 with a type other than Q4_0, or kBlockSums with
// one other than Q8_0, Q4_K, Q5_K and Q6_K.
const TypeKernels* FindTypeKernels(TensorType type, KernelIsa isa,
                                   DotOrder order = DotOrder::kVecDot);
// The same for a type known to be a weight type (aborts otherwise).
const TypeKernels& GetTypeKernels(TensorType type, KernelIsa isa,
                                  DotOrder order = DotOrder::kVecDot);

// Bytes of one activation row of `cols` values quantized for a weight of `type`: RowBytes of its
// partner in ggml's layout (Q8_0, Q8_1, Q8_K blocks), except that F16 and BF16 activations are
// rounded to their partner and then kept as the floats they exactly are (4 bytes a value), so a
// product does not widen them again at every use: the same values, the same arithmetic. nullopt
// when cols is not a whole number of the weight type's blocks.
std::optional<uint64_t> ActivationRowBytes(TensorType type, int64_t cols);

// Weight quantizers, for writing GGUF files: `count` floats (a whole number of the type's blocks,
// every value finite) to RowBytes(type, count) bytes at out. Types: F32, F16, BF16, Q8_0, Q4_0,
// Q4_1, Q5_0, Q5_1, Q4_K, Q5_K, Q6_K; false for any other (out untouched). The blocks are valid
// ggml blocks: llama.cpp decodes them to what dequantize gives here. The scale searches are
// simpler than llama-quantize's (see quantize_weights.cc), so the bytes differ from its output.
bool QuantizeWeights(TensorType type, const float* x, int64_t count, std::byte* out);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_KERNELS_TYPE_KERNELS_H_
