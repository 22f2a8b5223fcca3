// AVX2 int8 kernels, for CPUs without AVX-512 VNNI. Compiled for AVX2 by target attribute only;
// kernels.cc calls them only when the CPU has AVX2. They reproduce kernels_q8.cc bit for bit.
//
// pmaddubsw multiplies unsigned by signed bytes and adds pairs into int16 with saturation. With
// |w| as the unsigned operand (0..128) and q carrying w's sign (-127..127), a pair is at most
// 2 × 128 × 127 = 32512, so nothing saturates and the sums are exact; pmaddwd then adds pairs
// of those into int32. Half a tile line (32 bytes) is 8 rows × 4 weights, so each line gives two
// vectors of 8 row sums.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_q8_common.h"
#include "engine/kernels/prefetch.h"

#define CH_AVX2 __attribute__((target("avx2")))

namespace cellhouse::engine::internal {

namespace {

constexpr int32_t kLanes = 8;

CH_AVX2 inline int32_t SumLanes(__m256i v) {
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

CH_AVX2 inline float MaxLanes(__m256 v) {
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// Lanes [0, count) all ones, for maskload.
CH_AVX2 inline __m256i LaneMask(int32_t count) {
  const __m256i index = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(count), index);
}

// Row sums of half a line (8 rows × 4 weights) against the 4 activations in `q4`, added to sum.
CH_AVX2 inline __m256i DotHalfLine(__m256i sum, const std::byte* half, __m256i q4) {
  const __m256i w = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(half));
  const __m256i pairs = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(q4, w));
  return _mm256_add_epi32(sum, _mm256_madd_epi16(pairs, _mm256_set1_epi16(1)));
}

// One group of kVectors × 8 values; see QuantizeGroup in kernels_q8.cc.
template <int kVectors>
CH_AVX2 void QuantizeGroup(const float* v, int32_t count, int8_t* q, float* scale,
                           int32_t* offset_sum) {
  static_assert(kVectors % 4 == 0, "packed 32 values at a time");
  __m256 values[kVectors];
  const __m256 sign_bit = _mm256_set1_ps(-0.0F);
  __m256 amax = _mm256_setzero_ps();
  bool finite = true;
  for (int i = 0; i < kVectors; ++i) {
    values[i] =
        _mm256_maskload_ps(v + static_cast<ptrdiff_t>(i * kLanes), LaneMask(count - i * kLanes));
    const __m256 diff = _mm256_sub_ps(values[i], values[i]);
    finite =
        finite && _mm256_movemask_ps(_mm256_cmp_ps(diff, _mm256_setzero_ps(), _CMP_EQ_OQ)) == 0xFF;
    amax = _mm256_max_ps(amax, _mm256_andnot_ps(sign_bit, values[i]));
  }
  if (!finite) {
    for (int i = 0; i < kVectors; i += 4) {
      _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + static_cast<ptrdiff_t>(i * kLanes)),
                          _mm256_setzero_si256());
    }
    *scale = kNonFiniteScale;
    *offset_sum = 0;
    return;
  }
  const Q8GroupScale s = GroupScale(MaxLanes(amax));
  const __m256 inverse = _mm256_set1_ps(s.inverse);
  const __m256 magic = _mm256_set1_ps(kRoundMagic);
  __m256i sum = _mm256_setzero_si256();
  __m256i qi[kVectors];
  for (int i = 0; i < kVectors; ++i) {
    __m256 r = _mm256_mul_ps(values[i], inverse);
    r = _mm256_add_ps(r, magic);
    r = _mm256_sub_ps(r, magic);
    qi[i] = _mm256_cvttps_epi32(r);
    sum = _mm256_add_epi32(sum, qi[i]);
  }
  // Packing interleaves 128-bit lanes; the permutation puts the 32 bytes back in order.
  const __m256i order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
  for (int i = 0; i < kVectors; i += 4) {
    const __m256i p01 = _mm256_packs_epi32(qi[i], qi[i + 1]);
    const __m256i p23 = _mm256_packs_epi32(qi[i + 2], qi[i + 3]);
    const __m256i bytes = _mm256_permutevar8x32_epi32(_mm256_packs_epi16(p01, p23), order);
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(q + static_cast<ptrdiff_t>(i * kLanes)), bytes);
  }
  *scale = s.scale;
  *offset_sum = kQ8Offset * SumLanes(sum);
}

// Adds one tile's contribution for one token to the two halves of a block's sums.
template <size_t kLines>
CH_AVX2 inline void AccumulateTile(const std::byte* tile, const int8_t* q, float sx, __m256& lo,
                                   __m256& hi) {
  __m256i s_lo = _mm256_setzero_si256();
  __m256i s_hi = _mm256_setzero_si256();
  for (size_t c = 0; c < kLines; ++c) {
    const __m256i q4 = _mm256_set1_epi32(Load32(q + 4 * c));
    s_lo = DotHalfLine(s_lo, tile + c * kQ8LineBytes, q4);
    s_hi = DotHalfLine(s_hi, tile + c * kQ8LineBytes + 32, q4);
  }
  const auto* sw = reinterpret_cast<const float*>(tile + kLines * kQ8LineBytes);
  const __m256 scale = _mm256_set1_ps(sx);
  const __m256 d_lo = _mm256_mul_ps(_mm256_loadu_ps(sw), scale);
  const __m256 d_hi = _mm256_mul_ps(_mm256_loadu_ps(sw + kLanes), scale);
  lo = _mm256_add_ps(lo, _mm256_mul_ps(_mm256_cvtepi32_ps(s_lo), d_lo));
  hi = _mm256_add_ps(hi, _mm256_mul_ps(_mm256_cvtepi32_ps(s_hi), d_hi));
}

CH_AVX2 inline void StoreRows(float* y, int32_t rows, __m256 lo, __m256 hi) {
  _mm256_maskstore_ps(y, LaneMask(rows), lo);
  _mm256_maskstore_ps(y + kLanes, LaneMask(rows - kLanes), hi);
}

template <size_t kLines>
CH_AVX2 void MatVec(const Q8Matrix& w, const Q8Activations& x, float* y) {
  constexpr size_t kTileBytes = (kLines + 1) * kQ8LineBytes;
  constexpr size_t kGroupSize = 4 * kLines;
  const Q8Shape& s = w.shape;
  const int32_t groups = s.Groups();
  const std::byte* tile = w.data;
  for (int32_t b = 0; b < s.RowBlocks(); ++b) {
    __m256 lo = _mm256_setzero_ps();
    __m256 hi = _mm256_setzero_ps();
    for (int32_t g = 0; g < groups; ++g, tile += kTileBytes) {
      IssueEarly<kLines + 1>(tile);  // see prefetch.h
      AccumulateTile<kLines>(tile, x.q + static_cast<size_t>(g) * kGroupSize, x.scale[g], lo, hi);
    }
    StoreRows(y + static_cast<size_t>(b) * kQ8TileRows, s.rows - b * kQ8TileRows, lo, hi);
  }
}

// Several tokens: tile by tile, every token's sums accumulating in y (see kernels_q8_avx512.cc).
template <size_t kLines>
CH_AVX2 void MatMul(const Q8Matrix& w, const Q8Activations& x, float* y) {
  constexpr size_t kGroupSize = 4 * kLines;
  const Q8Shape& s = w.shape;
  const int32_t n = x.n;
  for (int32_t b = 0; b < s.RowBlocks(); ++b) {
    const int32_t rows = s.rows - b * kQ8TileRows;
    const __m256i mask_lo = LaneMask(rows);
    const __m256i mask_hi = LaneMask(rows - kLanes);
    float* y_block = y + static_cast<size_t>(b) * kQ8TileRows;
    for (int32_t t = 0; t < n; ++t) {
      StoreRows(y_block + static_cast<size_t>(t) * s.rows, rows, _mm256_setzero_ps(),
                _mm256_setzero_ps());
    }
    for (int32_t g = 0; g < s.Groups(); ++g) {
      const std::byte* tile = w.Tile(b, g);
      const size_t first = static_cast<size_t>(g) * n;
      for (int32_t t = 0; t < n; ++t) {
        float* yt = y_block + static_cast<size_t>(t) * s.rows;
        __m256 lo = _mm256_maskload_ps(yt, mask_lo);
        __m256 hi = _mm256_maskload_ps(yt + kLanes, mask_hi);
        AccumulateTile<kLines>(tile, x.q + (first + t) * kGroupSize, x.scale[first + t], lo, hi);
        StoreRows(yt, rows, lo, hi);
      }
    }
  }
}

}  // namespace

CH_AVX2 Q8Activations QuantizeQ8Avx2(const float* x, int32_t n, int32_t cols, int32_t group_size,
                                     const Q8ActivationBuffer& out) {
  const int32_t groups = (cols + group_size - 1) / group_size;
  for (int32_t t = 0; t < n; ++t) {
    for (int32_t g = 0; g < groups; ++g) {
      const int32_t begin = g * group_size;
      const size_t at = static_cast<size_t>(g) * n + t;
      const float* v = x + static_cast<size_t>(t) * cols + begin;
      const int32_t count = std::min(group_size, cols - begin);
      int8_t* q = out.q + at * group_size;
      if (group_size == 32) {
        QuantizeGroup<4>(v, count, q, out.scale + at, out.offset_sum + at);
      } else {
        QuantizeGroup<8>(v, count, q, out.scale + at, out.offset_sum + at);
      }
    }
  }
  return {.q = out.q,
          .scale = out.scale,
          .offset_sum = out.offset_sum,
          .n = n,
          .groups = groups,
          .group_size = group_size};
}

CH_AVX2 void MatMulQ8Avx2(const Q8Matrix& w, const Q8Activations& x, float* y) {
  const bool small_groups = w.shape.group_size == 32;
  if (x.n == 1) {
    small_groups ? MatVec<8>(w, x, y) : MatVec<16>(w, x, y);
  } else {
    small_groups ? MatMul<8>(w, x, y) : MatMul<16>(w, x, y);
  }
}

}  // namespace cellhouse::engine::internal
