// What the per-type kernel files share (internal to engine/kernels/): loading the fields of a
// block, the horizontal sums in the reference's order, and the entry points of each family of
// types per instruction set, from which type_kernels.cc builds the table.
//
//   const float d = LoadHalf(block + block::kQ8_0D);
//   float lanes[8] = ...;  return SumLanes8(lanes);   // ggml's hsum_float_8 order
#ifndef CELLHOUSE_ENGINE_KERNELS_TYPE_KERNELS_INTERNAL_H_
#define CELLHOUSE_ENGINE_KERNELS_TYPE_KERNELS_INTERNAL_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>

#include "engine/kernels/half.h"
#include "engine/kernels/prefetch.h"
#include "engine/kernels/tensor_type.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine::internal {

inline uint16_t LoadU16(const std::byte* p) {
  uint16_t v = 0;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline uint32_t LoadU32(const std::byte* p) {
  uint32_t v = 0;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline float LoadF32(const std::byte* p) {
  float v = 0;
  std::memcpy(&v, p, sizeof(v));
  return v;
}
inline float LoadHalf(const std::byte* p) { return HalfToFloat(LoadU16(p)); }
// A byte read as two's complement.
inline int32_t SignedByte(std::byte b) {
  const auto u = static_cast<int32_t>(std::to_integer<uint8_t>(b));
  return u >= 128 ? u - 256 : u;
}
inline void StoreU16(std::byte* p, uint16_t v) { std::memcpy(p, &v, sizeof(v)); }
inline void StoreF32(std::byte* p, float v) { std::memcpy(p, &v, sizeof(v)); }

// bfloat16: the top half of a float. Widening is exact.
inline float BF16ToFloat(uint16_t h) {
  const uint32_t bits = static_cast<uint32_t>(h) << 16;
  float f = 0;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}
// Round to nearest, ties to even, as ggml's GGML_FP32_TO_BF16: no flush of subnormals; a NaN
// keeps its top bits and is made quiet.
inline uint16_t FloatToBF16(float value) {
  uint32_t u = 0;
  std::memcpy(&u, &value, sizeof(u));
  if ((u & 0x7FFFFFFFU) > 0x7F800000U) {
    return static_cast<uint16_t>((u >> 16) | 64U);
  }
  return static_cast<uint16_t>((u + (0x7FFFU + ((u >> 16) & 1U))) >> 16);
}

// ggml's hsum_float_8 (x86): ((l0 + l4) + (l2 + l6)) + ((l1 + l5) + (l3 + l7)).
inline float SumLanes8(const float* l) {
  const float a0 = l[0] + l[4];
  const float a1 = l[1] + l[5];
  const float a2 = l[2] + l[6];
  const float a3 = l[3] + l[7];
  return (a0 + a2) + (a1 + a3);
}

// GCC's _mm512_reduce_add_ps: halves folded onto each other, 16 -> 8 -> 4 -> 2 -> 1.
inline float SumLanes16(const float* l) {
  float h8[8];
  for (int i = 0; i < 8; ++i) {
    h8[i] = l[i] + l[i + 8];
  }
  float h4[4];
  for (int i = 0; i < 4; ++i) {
    h4[i] = h8[i] + h8[i + 4];
  }
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

// The two product entry points of one type in one instruction set.
struct ProductFns {
  float (*dot)(const std::byte* w, const std::byte* x, int64_t cols) = nullptr;
  void (*matmul)(const MatMulArgs& args) = nullptr;
};

// Per family of types (F32/F16/BF16; the 32-value blocks Q4_0..Q8_0; the K-quants) and instruction
// set: the products of `type` in `order`, or nulls when the family has no such type or order.
ProductFns FloatProductsPortable(TensorType type);
ProductFns FloatProductsAvx2(TensorType type);
ProductFns FloatProductsAvx512(TensorType type);
ProductFns Q32ProductsPortable(TensorType type, DotOrder order);
ProductFns Q32ProductsAvx2(TensorType type, DotOrder order);
ProductFns Q32ProductsAvx512(TensorType type, DotOrder order);
ProductFns KProductsPortable(TensorType type, DotOrder order);
ProductFns KProductsAvx2(TensorType type, DotOrder order);
ProductFns KProductsAvx512(TensorType type, DotOrder order);

// Row readers (dequantize.cc) and activation quantizers (activations.cc), portable: they run
// once per token and row, not per weight. The quantizers a prompt leans on have vector forms too.
using DequantizeFn = void (*)(const std::byte* row, int64_t count, float* out);
using QuantizeActivationsFn = void (*)(const float* x, int32_t n, int64_t cols, std::byte* out);
DequantizeFn Dequantizer(TensorType type);
QuantizeActivationsFn ActivationQuantizer(TensorType partner);
// F16 activations rounded with F16C (float_types_avx2.cc; AVX2 and AVX-512 CPUs): the bits of
// ActivationQuantizer(kF16)'s.
void RoundRowsToHalfF16c(const float* x, int32_t n, int64_t cols, std::byte* out);
// Q8_0, Q8_1 and Q8_K activations with AVX-512 (activations_avx512.cc): the portable ones' bits.
void RowsQ8ZeroAvx512(const float* x, int32_t n, int64_t cols, std::byte* out);
void RowsQ8OneAvx512(const float* x, int32_t n, int64_t cols, std::byte* out);
void RowsQ8KAvx512(const float* x, int32_t n, int64_t cols, std::byte* out);
// The activation quantizer of `partner` for `isa`: the fastest this instruction set has.
QuantizeActivationsFn ActivationQuantizerFor(TensorType partner, KernelIsa isa);

// How far ahead of the rows it computes a decode tile of weight rows prefetches (prefetch.h):
// the first tile at least this many bytes on, so that a line is asked for about as long before
// it is read as memory takes to answer (some 150 ns at the 35 GB/s a core streams). A tile of a
// model's short rows is only a few KiB (4 rows of Q8_0 at 768 values: 3.3 KiB), which a decode
// kernel computes in less time than that, so prefetching just the next tile had left it waiting.
// Measured (one tile -> 6 KiB ahead): kernel_bench, 768-value rows from memory, Q8_0 25.5-29.3 ->
// 32 GB/s, Q4_0 (x8) 21 -> 27, Q4_K 20-21 -> 21-22, Q6_K 25-27 -> 28-30 (4 to 12 KiB about
// alike; rows of 2048 and 4096 values, whose tiles are past 6 KiB already, unchanged within the
// noise); the 110m model's decode pinned to a core, medians of 4 interleaved runs on each core:
// Q8_0 141 -> 167 and 180 -> 221 tok/s, Q4_0 226 -> 258 and 250 -> 279.
inline constexpr size_t kTileAheadBytes = size_t{6} << 10;

// What the tile of `rows` rows at `row` (of a's range) prefetches while it computes: the tile
// that many tiles on whose rows, times the tokens, make kTileAheadBytes (a tile of several tokens
// computes that much longer: one tile ahead, as before, for every batch of two or more), or, for
// the range's first tile, every row up to and including it (none has been asked for yet).
// Clipped to the range's end.
inline SpreadPrefetch TileAhead(const MatMulArgs& a, int64_t row, int64_t rows, int64_t blocks) {
  const size_t work =
      static_cast<size_t>(rows) * a.w_row_bytes * static_cast<size_t>(std::max(1, a.n));
  const auto tiles =
      static_cast<int64_t>(work >= kTileAheadBytes ? 1 : (kTileAheadBytes + work - 1) / work);
  const int64_t begin = std::min(a.row_end, row == a.row_begin ? row + rows : row + tiles * rows);
  const int64_t end = std::min(a.row_end, row + (tiles + 1) * rows);
  return {a.w + static_cast<size_t>(begin) * a.w_row_bytes,
          a.w + static_cast<size_t>(end) * a.w_row_bytes, blocks};
}

// The generic matrix product over a dot function: what the portable variants use, and what the
// vector ones must equal.
template <float (*kDot)(const std::byte*, const std::byte*, int64_t)>
void MatMulByDots(const MatMulArgs& a) {
  for (int32_t t = 0; t < a.n; ++t) {
    const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
    float* y = a.y + static_cast<size_t>(t) * a.y_stride;
    for (int64_t r = a.row_begin; r < a.row_end; ++r) {
      y[r] = kDot(a.w + static_cast<size_t>(r) * a.w_row_bytes, x, a.cols);
    }
  }
}

}  // namespace cellhouse::engine::internal

#endif  // CELLHOUSE_ENGINE_KERNELS_TYPE_KERNELS_INTERNAL_H_
