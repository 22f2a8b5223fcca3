// AVX-512 int8 kernels: vpdpbusd (AVX-512 VNNI) dot products and AVX-512BW byte handling. Only
// these functions are compiled for those extensions (target attribute); kernels.cc calls them
// only when the CPU has them. They reproduce kernels_q8.cc bit for bit.
//
// vpdpbusd multiplies unsigned bytes by signed bytes. The weights are signed, so each weight
// line is XORed with 0x80, which adds 128 to every byte as unsigned; the activations stay signed
// and the over-count, 128 × Σ q per group, was computed with them (offset_sum). One line of a
// tile holds four weights of each of 16 rows, and the four activations they meet are the same
// for every row: one broadcast 32-bit value. So each line is one vpdpbusd into 16 row sums.
#include <immintrin.h>

#include <algorithm>
#include <cstddef>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_q8_common.h"
#include "engine/kernels/prefetch.h"

#define CH_VNNI __attribute__((target("avx512f,avx512bw,avx512vnni")))

namespace cellhouse::engine::internal {

namespace {

constexpr int32_t kLanes = 16;

CH_VNNI inline __mmask16 RowMask(int32_t rows) {
  return rows >= kLanes ? static_cast<__mmask16>(0xFFFF)
                        : static_cast<__mmask16>((1U << static_cast<uint32_t>(rows)) - 1U);
}

// GCC 12's unmasked forms of some intrinsics (extracts, max, conversions) pass an undefined
// vector as the merge source and trip -Wmaybe-uninitialized inside its own header; the
// zero-masked forms with an all-ones mask compile to the same instructions without it (as in
// kernels_avx512.cc).
constexpr __mmask16 kAll = 0xFFFF;

CH_VNNI inline __m512 Max(__m512 a, __m512 b) { return _mm512_maskz_max_ps(kAll, a, b); }
CH_VNNI inline __m512i Truncate(__m512 v) { return _mm512_maskz_cvttps_epi32(kAll, v); }
CH_VNNI inline __m128i Narrow(__m512i v) { return _mm512_maskz_cvtepi32_epi8(kAll, v); }
CH_VNNI inline __m512 ToFloat(__m512i v) { return _mm512_maskz_cvtepi32_ps(kAll, v); }
CH_VNNI inline __m256i FoldHalves(__m512i v) {
  return _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(0xFF, v, 0),
                          _mm512_maskz_extracti64x4_epi64(0xFF, v, 1));
}

CH_VNNI inline int32_t SumLanes(__m512i v) {
  const __m256i s8 = FoldHalves(v);
  __m128i s = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0x4E));
  s = _mm_add_epi32(s, _mm_shuffle_epi32(s, 0xB1));
  return _mm_cvtsi128_si32(s);
}

CH_VNNI inline float MaxLanes(__m512 v) {
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 1));
  const __m256 m8 = _mm256_max_ps(lo, hi);
  __m128 m = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m = _mm_max_ps(m, _mm_movehl_ps(m, m));
  m = _mm_max_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

// One group of kVectors × 16 values; see QuantizeGroup in kernels_q8.cc.
template <int kVectors>
CH_VNNI void QuantizeGroup(const float* v, int32_t count, int8_t* q, float* scale,
                           int32_t* offset_sum) {
  __m512 values[kVectors];
  __mmask16 loaded[kVectors];
  __m512 amax = _mm512_setzero_ps();
  bool finite = true;
  for (int i = 0; i < kVectors; ++i) {
    loaded[i] = RowMask(std::max(0, count - i * kLanes));
    values[i] = _mm512_maskz_loadu_ps(loaded[i], v + static_cast<ptrdiff_t>(i * kLanes));
    // v - v is 0 for every finite value (and for the zeros of the lanes not loaded).
    const __m512 diff = _mm512_sub_ps(values[i], values[i]);
    finite = finite && _mm512_cmp_ps_mask(diff, _mm512_setzero_ps(), _CMP_EQ_OQ) == 0xFFFF;
    amax = Max(amax, _mm512_abs_ps(values[i]));
  }
  if (!finite) {
    for (int i = 0; i < kVectors; ++i) {
      _mm_storeu_si128(reinterpret_cast<__m128i*>(q + static_cast<ptrdiff_t>(i * kLanes)),
                       _mm_setzero_si128());
    }
    *scale = kNonFiniteScale;
    *offset_sum = 0;
    return;
  }
  const Q8GroupScale s = GroupScale(MaxLanes(amax));
  const __m512 inverse = _mm512_set1_ps(s.inverse);
  const __m512 magic = _mm512_set1_ps(kRoundMagic);
  __m512i sum = _mm512_setzero_si512();
  for (int i = 0; i < kVectors; ++i) {
    __m512 r = _mm512_mul_ps(values[i], inverse);
    r = _mm512_add_ps(r, magic);
    r = _mm512_sub_ps(r, magic);
    const __m512i qi = Truncate(r);
    sum = _mm512_add_epi32(sum, qi);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(q + static_cast<ptrdiff_t>(i * kLanes)),
                     Narrow(qi));
  }
  *scale = s.scale;
  *offset_sum = kQ8Offset * SumLanes(sum);
}

// One token: the 16 row sums of a block stay in registers across all groups.
template <size_t kLines>
CH_VNNI void MatVec(const Q8Matrix& w, const Q8Activations& x, float* y) {
  constexpr size_t kTileBytes = (kLines + 1) * kQ8LineBytes;
  constexpr size_t kGroupSize = 4 * kLines;
  const Q8Shape& s = w.shape;
  const int32_t groups = s.Groups();
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  const std::byte* tile = w.data;
  for (int32_t b = 0; b < s.RowBlocks(); ++b) {
    __m512 acc = _mm512_setzero_ps();
    for (int32_t g = 0; g < groups; ++g, tile += kTileBytes) {
      const int8_t* q = x.q + static_cast<size_t>(g) * kGroupSize;
      // Two chains of dot products, so that their latency overlaps.
      __m512i s0 = _mm512_setzero_si512();
      __m512i s1 = _mm512_setzero_si512();
      // The tile's lines all at once: the loads below sit in the vector scheduler until their
      // lines arrive, the prefetches do not (see prefetch.h).
      IssueEarly<kLines + 1>(tile);
      for (size_t c = 0; c < kLines; c += 2) {
        const __m512i w0 = _mm512_xor_si512(_mm512_loadu_si512(tile + c * kQ8LineBytes), flip);
        const __m512i w1 =
            _mm512_xor_si512(_mm512_loadu_si512(tile + (c + 1) * kQ8LineBytes), flip);
        s0 = _mm512_dpbusd_epi32(s0, w0, _mm512_set1_epi32(Load32(q + 4 * c)));
        s1 = _mm512_dpbusd_epi32(s1, w1, _mm512_set1_epi32(Load32(q + 4 * c + 4)));
      }
      const __m512i isum =
          _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(x.offset_sum[g]));
      const __m512 d = _mm512_mul_ps(
          _mm512_loadu_ps(reinterpret_cast<const float*>(tile + kLines * kQ8LineBytes)),
          _mm512_set1_ps(x.scale[g]));
      acc = _mm512_add_ps(acc, _mm512_mul_ps(ToFloat(isum), d));
    }
    _mm512_mask_storeu_ps(y + static_cast<size_t>(b) * kLanes, RowMask(s.rows - b * kLanes), acc);
  }
}

// Several tokens (prefill): each tile is loaded into registers once and applied to every token,
// whose partial sums accumulate in y itself, group by group in the same order as MatVec.
template <size_t kLines>
CH_VNNI void MatMul(const Q8Matrix& w, const Q8Activations& x, float* y) {
  constexpr size_t kGroupSize = 4 * kLines;
  const Q8Shape& s = w.shape;
  const int32_t n = x.n;
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int32_t b = 0; b < s.RowBlocks(); ++b) {
    const __mmask16 rows = RowMask(s.rows - b * kLanes);
    float* y_block = y + static_cast<size_t>(b) * kLanes;
    for (int32_t t = 0; t < n; ++t) {
      _mm512_mask_storeu_ps(y_block + static_cast<size_t>(t) * s.rows, rows, _mm512_setzero_ps());
    }
    for (int32_t g = 0; g < s.Groups(); ++g) {
      const std::byte* tile = w.Tile(b, g);
      __m512i lines[kLines];
      for (size_t c = 0; c < kLines; ++c) {
        lines[c] = _mm512_xor_si512(_mm512_loadu_si512(tile + c * kQ8LineBytes), flip);
      }
      const __m512 sw =
          _mm512_loadu_ps(reinterpret_cast<const float*>(tile + kLines * kQ8LineBytes));
      const size_t first = static_cast<size_t>(g) * n;
      for (int32_t t = 0; t < n; ++t) {
        const int8_t* q = x.q + (first + t) * kGroupSize;
        __m512i s0 = _mm512_setzero_si512();
        __m512i s1 = _mm512_setzero_si512();
        for (size_t c = 0; c < kLines; c += 2) {
          s0 = _mm512_dpbusd_epi32(s0, lines[c], _mm512_set1_epi32(Load32(q + 4 * c)));
          s1 = _mm512_dpbusd_epi32(s1, lines[c + 1], _mm512_set1_epi32(Load32(q + 4 * c + 4)));
        }
        const __m512i isum =
            _mm512_sub_epi32(_mm512_add_epi32(s0, s1), _mm512_set1_epi32(x.offset_sum[first + t]));
        const __m512 d = _mm512_mul_ps(sw, _mm512_set1_ps(x.scale[first + t]));
        const __m512 term = _mm512_mul_ps(ToFloat(isum), d);
        float* yt = y_block + static_cast<size_t>(t) * s.rows;
        _mm512_mask_storeu_ps(yt, rows, _mm512_add_ps(_mm512_maskz_loadu_ps(rows, yt), term));
      }
    }
  }
}

}  // namespace

CH_VNNI Q8Activations QuantizeQ8Avx512(const float* x, int32_t n, int32_t cols, int32_t group_size,
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
        QuantizeGroup<2>(v, count, q, out.scale + at, out.offset_sum + at);
      } else {
        QuantizeGroup<4>(v, count, q, out.scale + at, out.offset_sum + at);
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

CH_VNNI void MatMulQ8Avx512Vnni(const Q8Matrix& w, const Q8Activations& x, float* y) {
  const bool small_groups = w.shape.group_size == 32;
  if (x.n == 1) {
    small_groups ? MatVec<8>(w, x, y) : MatVec<16>(w, x, y);
  } else {
    small_groups ? MatMul<8>(w, x, y) : MatMul<16>(w, x, y);
  }
}

}  // namespace cellhouse::engine::internal
