// Int8 matrices and activations: the tiled layout in which a quantized checkpoint stores each
// weight matrix (docs/QUANTIZED_FORMAT.md), and the per-token quantized activations the int8
// kernels multiply it with.
//
//   Q8Shape shape{.rows = 768, .cols = 2048, .group_size = 32};
//   std::vector<std::byte> tiles(*shape.Bytes());
//   QuantizeMatrix(w, shape, tiles.data());            // w: [rows][cols] fp32 (quantize.h)
//   Q8Matrix m{.data = tiles.data(), .shape = shape};
//   DequantizeRow(m, 5, row);                          // row 5 back in fp32, cols floats
//
// A matrix [rows][cols] is cut into blocks of kQ8TileRows = 16 rows and groups of group_size (32
// or 64) columns. Tile (block b, group g) is group_size / 4 lines of 64 bytes, line c holding
// columns 4c .. 4c+3 of the group for each of the 16 rows (row i at bytes 4i .. 4i+3), then one
// 64-byte line of the 16 rows' fp32 scales. Weight = scale × int8. Tiles follow each other group
// by group, then block by block. Rows and columns past the matrix's edge are zero.
//
// Why this shape: with four weights of 16 rows in a line, one 32-bit lane of an integer dot
// product (VNNI vpdpbusd, or pmaddubsw + pmaddwd) accumulates one row of one group, so a tile
// yields its 16 rows' group sums with no horizontal reduction, and each output row's float
// accumulation is a plain sequence over groups: the same operations, in the same order, in every
// kernel variant. Every tile is a whole number of cache lines, so tiles stay 64-byte aligned.
#ifndef CELLHOUSE_ENGINE_KERNELS_Q8_MATRIX_H_
#define CELLHOUSE_ENGINE_KERNELS_Q8_MATRIX_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>

namespace cellhouse::engine {

inline constexpr int32_t kQ8TileRows = 16;
inline constexpr size_t kQ8LineBytes = 64;  // kQ8TileRows rows × 4 bytes
// The largest magnitude a weight or an activation is quantized to: symmetric, so -128 is never
// produced (the kernels stay exact for it anyway).
inline constexpr int32_t kQ8Max = 127;

constexpr bool IsQ8GroupSize(int64_t group_size) { return group_size == 32 || group_size == 64; }

struct Q8Shape {
  int32_t rows = 0;
  int32_t cols = 0;
  int32_t group_size = 0;  // 32 or 64

  int32_t RowBlocks() const {
    return static_cast<int32_t>((static_cast<int64_t>(rows) + kQ8TileRows - 1) / kQ8TileRows);
  }
  int32_t Groups() const {
    return static_cast<int32_t>((static_cast<int64_t>(cols) + group_size - 1) / group_size);
  }
  // Lines of weights in a tile, before its line of scales.
  int32_t Lines() const { return group_size / 4; }
  size_t TileBytes() const { return static_cast<size_t>(Lines() + 1) * kQ8LineBytes; }
  // Bytes of the whole matrix, or nullopt when that overflows 64 bits.
  std::optional<uint64_t> Bytes() const;

  bool operator==(const Q8Shape&) const = default;
};

// Where, within a tile, the weight of the block's row `lane` (0..15) and the group's column k
// lies, and that row's scale.
inline size_t Q8WeightOffset(int32_t lane, int32_t k) {
  return static_cast<size_t>(k / 4) * kQ8LineBytes + static_cast<size_t>(lane) * 4 +
         static_cast<size_t>(k % 4);
}
inline size_t Q8ScaleOffset(const Q8Shape& shape, int32_t lane) {
  return static_cast<size_t>(shape.Lines()) * kQ8LineBytes + static_cast<size_t>(lane) * 4;
}

// One matrix (one layer of a tensor), viewed in place.
struct Q8Matrix {
  const std::byte* data = nullptr;  // shape.Bytes() bytes of tiles
  Q8Shape shape;

  const std::byte* Tile(int32_t block, int32_t group) const {
    return data + (static_cast<size_t>(block) * static_cast<size_t>(shape.Groups()) +
                   static_cast<size_t>(group)) *
                      shape.TileBytes();
  }
};

// A tensor of `layers` matrices of one shape, stored one after the other.
struct Q8Tensor {
  const std::byte* data = nullptr;
  int32_t layers = 0;
  Q8Shape shape;
  uint64_t layer_bytes = 0;  // shape.Bytes()

  Q8Matrix Layer(int32_t layer) const {
    return {.data = data + static_cast<size_t>(layer) * layer_bytes, .shape = shape};
  }
  std::span<const std::byte> Span() const {
    return {data, static_cast<size_t>(layer_bytes) * static_cast<size_t>(layers)};
  }
};

// Row `row` of `m` in fp32 (m.shape.cols floats): a token's embedding.
void DequantizeRow(const Q8Matrix& m, int32_t row, float* out);

// n activation vectors quantized per group of group_size values: value ≈ scale × q. Laid out
// group-major ([groups][n]) so that the batched kernel, which keeps one weight tile in registers
// while it walks the tokens, reads each group of every token from one contiguous run.
struct Q8Activations {
  const int8_t* q = nullptr;            // [groups][n][group_size], zero past the last column
  const float* scale = nullptr;         // [groups][n]
  const int32_t* offset_sum = nullptr;  // [groups][n]: 128 × Σ q, see kernels_q8_avx512.cc
  int32_t n = 0;
  int32_t groups = 0;
  int32_t group_size = 0;
};

// Where QuantizeActivations writes: buffers of Q8ActivationBytes(...) as RunState carves them.
struct Q8ActivationBuffer {
  int8_t* q = nullptr;
  float* scale = nullptr;
  int32_t* offset_sum = nullptr;
};

// Capacity the buffers need for n vectors of up to `cols` values, at either group size.
struct Q8ActivationCapacity {
  uint64_t q_bytes = 0;
  uint64_t groups = 0;  // entries of scale and of offset_sum
};
Q8ActivationCapacity Q8ActivationBytes(int64_t n, int64_t cols);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_KERNELS_Q8_MATRIX_H_
