// The token lanes of the AVX-512 prompt products (q32_types_avx512.cc for Q8_0 and Q4_0,
// k_types_avx512.cc for the K-quants): a tile of 8 weight rows against 16 tokens, one token a
// vector lane. What the types share is here: the tile's shape, its accumulators (resumed from
// and stored to y), and the walk over a product in slices of columns, chunks of rows and tiles.
// What differs (the lanes' layout, the tables, a block's sums) stays with each type.
//
//   EverySliceAndChunk(a, blocks, kSlice, kTable, [&](first, slice, begin, end) {
//     MakeTables(...);                                    // the chunk's rows, read once
//     EveryTile(a, begin, end, lay_out, run_tile);        // run_tile(rows_constant, r, count, y)
//   });
//
// Include only from a file compiled for AVX-512 (its functions carry the target attribute).
#ifndef CELLHOUSE_ENGINE_KERNELS_TOKEN_LANES_AVX512_H_
#define CELLHOUSE_ENGINE_KERNELS_TOKEN_LANES_AVX512_H_

#include <immintrin.h>

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "engine/kernels/type_kernels.h"

#define CH_LANES_TARGET \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace cellhouse::engine::internal::token_lanes {

constexpr int kTokens = 16;  // a vector's lanes
constexpr int kRows = 8;     // weight rows of a full tile
// From this many tokens on the lanes pay for themselves; fewer go through the tiles of the type's
// other kernel, whose bits are the same.
constexpr int32_t kMinTokens = 4;
// GCC 12's unmasked forms of some 512-bit intrinsics pass an undefined vector as the merge
// source and trip -Wmaybe-uninitialized in its own header; the zero-masked forms with an
// all-ones mask compile to the same instructions.
constexpr __mmask16 kAll16 = 0xFFFF;

// R rows' accumulators of a tile from y[t * y_stride + r] (t < count) when `resume`, else zero;
// the lanes past count start at zero and are never stored.
template <int R>
CH_LANES_TARGET inline void LoadTile(const float* y, size_t y_stride, int count, bool resume,
                                     __m512 (&acc)[R]) {
  alignas(64) float io[R][kTokens] = {};
  if (resume) {
    for (int t = 0; t < count; ++t) {
      for (int r = 0; r < R; ++r) io[r][t] = y[static_cast<size_t>(t) * y_stride + r];
    }
  }
  for (int r = 0; r < R; ++r) acc[r] = _mm512_load_ps(io[r]);
}

// The accumulators' first `count` lanes to y[t * y_stride + r].
template <int R>
CH_LANES_TARGET inline void StoreTile(const __m512 (&acc)[R], float* y, size_t y_stride,
                                      int count) {
  alignas(64) float io[R][kTokens];
  for (int r = 0; r < R; ++r) _mm512_store_ps(io[r], acc[r]);
  for (int t = 0; t < count; ++t) {
    for (int r = 0; r < R; ++r) y[static_cast<size_t>(t) * y_stride + r] = io[r][t];
  }
}

// The product's columns in slices of `slice_blocks` blocks (of `blocks`) and its rows in chunks
// whose tables hold `table_blocks` entries: chunk(first, slice, begin, end) for each, slices
// first, so that a row's later slices go on from the sums its earlier ones stored.
template <typename Chunk>
CH_LANES_TARGET inline void EverySliceAndChunk(const MatMulArgs& a, int64_t blocks,
                                               int64_t slice_blocks, int64_t table_blocks,
                                               const Chunk& chunk) {
  for (int64_t first = 0; first < blocks; first += slice_blocks) {
    const int64_t slice = std::min(slice_blocks, blocks - first);
    const int64_t chunk_rows = table_blocks / slice;
    for (int64_t c = a.row_begin; c < a.row_end; c += chunk_rows) {
      chunk(first, slice, c, std::min(a.row_end, c + chunk_rows));
    }
  }
}

// Rows [begin, end) against every tile of 16 tokens: lay_out(x, count) with the tile's first
// activation row, then run(std::integral_constant<int, R>, r, count, y) for tiles of R = 8 rows
// and single rows after them, y being the tile's first output (row r, the tile's first token).
template <typename LayOut, typename Run>
CH_LANES_TARGET inline void EveryTile(const MatMulArgs& a, int64_t begin, int64_t end,
                                      const LayOut& lay_out, const Run& run) {
  for (int32_t t = 0; t < a.n; t += kTokens) {
    const int count = std::min(kTokens, a.n - t);
    lay_out(a.x + static_cast<size_t>(t) * a.x_row_bytes, count);
    float* y = a.y + static_cast<size_t>(t) * a.y_stride;
    for (int64_t r = begin; r < end;) {
      if (end - r >= kRows) {
        run(std::integral_constant<int, kRows>{}, r, count, y + r);
        r += kRows;
      } else {
        run(std::integral_constant<int, 1>{}, r, count, y + r);
        r += 1;
      }
    }
  }
}

}  // namespace cellhouse::engine::internal::token_lanes

#undef CH_LANES_TARGET

#endif  // CELLHOUSE_ENGINE_KERNELS_TOKEN_LANES_AVX512_H_
