// AVX-512F kernels. Only these functions are compiled for AVX-512 (target attribute); the
// dispatcher in kernels.cc calls them only when the CPU has it.
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cstddef>

#include "engine/kernels/half.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/prefetch.h"

#define CH_AVX512 __attribute__((target("avx512f")))

namespace cellhouse::engine::internal {

namespace {

constexpr int32_t kLanes = 16;

CH_AVX512 inline __mmask16 TailMask(int32_t remaining) {
  return static_cast<__mmask16>((1U << remaining) - 1U);
}

// Sum of the 16 lanes. GCC 12's unmasked extract/shuffle intrinsics (and so
// _mm512_reduce_add_ps) trip -Wuninitialized inside its own header; the zero-masked forms with
// an all-ones mask compile to the same instructions without it.
CH_AVX512 inline __m256 Fold(__m512 v) {
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 1));
  return _mm256_add_ps(lo, hi);
}

CH_AVX512 inline float HorizontalSum(__m512 v) {
  const __m256 s8 = Fold(v);
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(s8), _mm256_extractf128_ps(s8, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// vcvtph2ps and vcvtps2ph, zero-masked with an all-ones mask for the reason Fold gives.
CH_AVX512 inline __m512 Widen(__m256i halves) {
  return _mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xFFFF), halves);
}
CH_AVX512 inline __m256i Narrow(__m512 v) {
  return _mm512_maskz_cvtps_ph(static_cast<__mmask16>(0xFFFF), v, _MM_FROUND_TO_NEAREST_INT);
}

// Sixteen cache values as floats (an fp16 cache widened, exactly), and the first `m` of them.
CH_AVX512 inline __m512 Load16(const float* p) { return _mm512_loadu_ps(p); }
CH_AVX512 inline __m512 Load16(const uint16_t* p) {
  return Widen(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
}
CH_AVX512 inline __m512 LoadFirst(__mmask16 m, const float* p) {
  return _mm512_maskz_loadu_ps(m, p);
}
// Masked 16-bit loads need AVX-512BW; a tail is rare (heads are multiples of 16 wide), so it
// goes through a zeroed buffer instead.
CH_AVX512 inline __m512 LoadFirst(__mmask16 m, const uint16_t* p) {
  alignas(32) std::array<uint16_t, kLanes> lanes{};
  for (int32_t i = 0; i < kLanes; ++i) {
    if ((m >> i) & 1U) {
      lanes[i] = p[i];
    }
  }
  return Widen(_mm256_load_si256(reinterpret_cast<const __m256i*>(lanes.data())));
}

// One row at a time, for the rows left over by the four-row blocks.
template <typename T>
CH_AVX512 float RowDot(const float* q, const T* k, int32_t cols) {
  __m512 acc = _mm512_setzero_ps();
  int32_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(q + c), Load16(k + c), acc);
  }
  if (c < cols) {
    __mmask16 m = TailMask(cols - c);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, q + c), LoadFirst(m, k + c), acc);
  }
  return HorizontalSum(acc);
}

}  // namespace

// One row after another, two lines of weights per step, each step's lines prefetched just
// before they are loaded (see prefetch.h). Rows are contiguous, so the reads are one sequential
// run through the matrix.
CH_AVX512 void MatVecAvx512(const float* w, const float* x, float* y, int32_t rows, int32_t cols) {
  constexpr int32_t kStep = 2 * kLanes;
  const auto stride = static_cast<size_t>(cols);
  for (int32_t r = 0; r < rows; ++r) {
    const float* row = w + static_cast<size_t>(r) * stride;
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    int32_t c = 0;
    for (; c + kStep <= cols; c += kStep) {
      IssueEarly<2>(row + c);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + kLanes), _mm512_loadu_ps(x + c + kLanes), a1);
    }
    for (; c + kLanes <= cols; c += kLanes) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
    }
    if (c < cols) {
      const __mmask16 m = TailMask(cols - c);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row + c), _mm512_maskz_loadu_ps(m, x + c), a1);
    }
    y[r] = HorizontalSum(_mm512_add_ps(a0, a1));
  }
}

namespace {

// Attention scores: for each position, in order, every head's dot product with that position's
// row. Positions below count rounded down to 4 take four heads at a time: four independent FMA
// chains, then one combined reduction of the four accumulators; the last count % 4 positions
// take one head at a time (RowDot). Each score is the same sequence of operations as when heads
// were scored one by one, four positions at a time, so the scores did not change.
template <typename T>
CH_AVX512 void Scores(const float* q, const T* keys, const AttentionShape& a, int32_t count,
                      float divisor, float* scores) {
  const int32_t size = a.head_size;
  const int32_t full = size - size % kLanes;
  const __mmask16 tail = TailMask(size - full);
  const __m128 divisors = _mm_set1_ps(divisor);
  const int32_t blocked = count - count % 4;
  RowPrefetch prefetch(keys, a.stride * sizeof(T), count);
  for (int32_t t = 0; t < count; ++t) {
    prefetch.Row(t);
    const T* row = keys + static_cast<size_t>(t) * a.stride;
    if (t >= blocked) {
      for (int32_t h = 0; h < a.heads; ++h) {
        scores[static_cast<size_t>(h) * a.scores_stride + t] =
            RowDot(q + static_cast<size_t>(h) * size,
                   row + static_cast<size_t>(h / a.kv_mul) * size, size) /
            divisor;
      }
      continue;
    }
    for (int32_t h = 0; h < a.heads; h += 4) {
      // Heads h .. h + 3; past the last head, the last one again (computed, not stored).
      std::array<const T*, 4> k{};
      std::array<const float*, 4> qh{};
      for (int32_t j = 0; j < 4; ++j) {
        const int32_t head = std::min(h + j, a.heads - 1);
        k[j] = row + static_cast<size_t>(head / a.kv_mul) * size;
        qh[j] = q + static_cast<size_t>(head) * size;
      }
      __m512 a0 = _mm512_setzero_ps();
      __m512 a1 = _mm512_setzero_ps();
      __m512 a2 = _mm512_setzero_ps();
      __m512 a3 = _mm512_setzero_ps();
      for (int32_t c = 0; c < full; c += kLanes) {
        a0 = _mm512_fmadd_ps(Load16(k[0] + c), _mm512_loadu_ps(qh[0] + c), a0);
        a1 = _mm512_fmadd_ps(Load16(k[1] + c), _mm512_loadu_ps(qh[1] + c), a1);
        a2 = _mm512_fmadd_ps(Load16(k[2] + c), _mm512_loadu_ps(qh[2] + c), a2);
        a3 = _mm512_fmadd_ps(Load16(k[3] + c), _mm512_loadu_ps(qh[3] + c), a3);
      }
      if (full < size) {
        a0 = _mm512_fmadd_ps(LoadFirst(tail, k[0] + full),
                             _mm512_maskz_loadu_ps(tail, qh[0] + full), a0);
        a1 = _mm512_fmadd_ps(LoadFirst(tail, k[1] + full),
                             _mm512_maskz_loadu_ps(tail, qh[1] + full), a1);
        a2 = _mm512_fmadd_ps(LoadFirst(tail, k[2] + full),
                             _mm512_maskz_loadu_ps(tail, qh[2] + full), a2);
        a3 = _mm512_fmadd_ps(LoadFirst(tail, k[3] + full),
                             _mm512_maskz_loadu_ps(tail, qh[3] + full), a3);
      }
      // Each accumulator folded to 8 lanes, then pairwise adds within 128-bit halves leave
      // [sum0, sum1, sum2, sum3] in each half.
      const __m256 h01 = _mm256_hadd_ps(Fold(a0), Fold(a1));
      const __m256 h23 = _mm256_hadd_ps(Fold(a2), Fold(a3));
      const __m256 hs = _mm256_hadd_ps(h01, h23);
      const __m128 sums = _mm_add_ps(_mm256_castps256_ps128(hs), _mm256_extractf128_ps(hs, 1));
      alignas(16) std::array<float, 4> quotients{};
      _mm_store_ps(quotients.data(), _mm_div_ps(sums, divisors));
      for (int32_t j = 0; j < 4 && h + j < a.heads; ++j) {
        scores[static_cast<size_t>(h + j) * a.scores_stride + t] = quotients[j];
      }
    }
  }
}

// The weighted sum of value rows, position by position in order: each head's outputs accumulate
// in `out` (a few KiB, in L1), one FMA per 16 values and position, as when they were held in
// registers head by head.
template <typename T>
CH_AVX512 void WeightedSum(const float* weights, const T* values, const AttentionShape& a,
                           int32_t count, float* out) {
  const int32_t size = a.head_size;
  const size_t outputs = static_cast<size_t>(a.heads) * size;
  for (size_t i = 0; i < outputs; ++i) {
    out[i] = 0.0F;
  }
  RowPrefetch prefetch(values, a.stride * sizeof(T), count);
  for (int32_t t = 0; t < count; ++t) {
    prefetch.Row(t);
    const T* row = values + static_cast<size_t>(t) * a.stride;
    for (int32_t h = 0; h < a.heads; ++h) {
      const __m512 w = _mm512_set1_ps(weights[static_cast<size_t>(h) * a.scores_stride + t]);
      const T* v = row + static_cast<size_t>(h / a.kv_mul) * size;
      float* o = out + static_cast<size_t>(h) * size;
      int32_t c = 0;
      for (; c + kLanes <= size; c += kLanes) {
        _mm512_storeu_ps(o + c, _mm512_fmadd_ps(w, Load16(v + c), _mm512_loadu_ps(o + c)));
      }
      if (c < size) {
        const __mmask16 m = TailMask(size - c);
        _mm512_mask_storeu_ps(
            o + c, m, _mm512_fmadd_ps(w, LoadFirst(m, v + c), _mm512_maskz_loadu_ps(m, o + c)));
      }
    }
  }
}

}  // namespace

CH_AVX512 void ScoresAvx512(const float* q, const float* keys, const AttentionShape& a,
                            int32_t count, float divisor, float* scores) {
  Scores(q, keys, a, count, divisor, scores);
}
CH_AVX512 void ScoresHalfAvx512(const float* q, const uint16_t* keys, const AttentionShape& a,
                                int32_t count, float divisor, float* scores) {
  Scores(q, keys, a, count, divisor, scores);
}
CH_AVX512 void WeightedSumAvx512(const float* weights, const float* values, const AttentionShape& a,
                                 int32_t count, float* out) {
  WeightedSum(weights, values, a, count, out);
}
CH_AVX512 void WeightedSumHalfAvx512(const float* weights, const uint16_t* values,
                                     const AttentionShape& a, int32_t count, float* out) {
  WeightedSum(weights, values, a, count, out);
}

// Sixteen at a time with vcvtps2ph, rounding to nearest even as FloatToHalf does for the rest.
CH_AVX512 void ToHalfAvx512(const float* x, int32_t n, uint16_t* out) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm256_storeu_si256(reinterpret_cast<__m256i*>(out + i), Narrow(_mm512_loadu_ps(x + i)));
  }
  for (; i < n; ++i) {
    out[i] = FloatToHalf(x[i]);
  }
}

}  // namespace cellhouse::engine::internal
