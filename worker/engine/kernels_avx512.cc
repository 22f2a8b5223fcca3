// AVX-512F kernels. Only these functions are compiled for AVX-512 (target attribute); the
// dispatcher in kernels.cc calls them only when the CPU has it.
#include <immintrin.h>

#include <array>
#include <cstddef>

#include "worker/engine/kernels.h"
#include "worker/engine/prefetch_stream.h"

#define CH_AVX512 __attribute__((target("avx512f")))

namespace cellhouse::engine::internal {

namespace {

constexpr int32_t kLanes = 16;
constexpr int32_t kTwoLanes = 2 * kLanes;
constexpr int32_t kThreeLanes = 3 * kLanes;

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

// One row at a time, for the rows left over by the four-row blocks.
CH_AVX512 float RowDot(const float* w, const float* x, int32_t cols) {
  __m512 acc = _mm512_setzero_ps();
  int32_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    acc = _mm512_fmadd_ps(_mm512_loadu_ps(w + c), _mm512_loadu_ps(x + c), acc);
  }
  if (c < cols) {
    __mmask16 m = TailMask(cols - c);
    acc = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, w + c), _mm512_maskz_loadu_ps(m, x + c), acc);
  }
  return HorizontalSum(acc);
}

}  // namespace

// One row after another, with a software prefetch kPrefetchBytes ahead of the reads in the
// matrix's own (contiguous) memory. The hardware prefetchers stop at every 4 KiB page boundary
// of the page-cache mapping; the software prefetch does not, and keeps enough lines in flight to
// stream at the machine's read bandwidth on one core (measured: ~16 GB/s for four interleaved
// rows without it, ~29 GB/s with it, against ~30 GB/s for a plain streaming read). Past the end
// of the matrix the prefetch runs on into `next`, the matrix the caller multiplies next, so the
// stream does not drain between matrices. A prefetch never faults.
CH_AVX512 void MatVecAvx512(const float* w, const float* x, float* y, int32_t rows, int32_t cols,
                            const float* next) {
  constexpr int32_t kStep = 2 * kLanes;
  const auto stride = static_cast<size_t>(cols);
  PrefetchStream prefetch(w, static_cast<size_t>(rows) * stride, next);
  for (int32_t r = 0; r < rows; ++r) {
    const float* row = w + static_cast<size_t>(r) * stride;
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    int32_t c = 0;
    for (; c + kStep <= cols; c += kStep) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
      _mm_prefetch(prefetch.Next(), _MM_HINT_T0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c + kLanes), _mm512_loadu_ps(x + c + kLanes), a1);
      _mm_prefetch(prefetch.Next(), _MM_HINT_T0);
    }
    for (; c + kLanes <= cols; c += kLanes) {
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(row + c), _mm512_loadu_ps(x + c), a0);
      _mm_prefetch(prefetch.Next(), _MM_HINT_T0);
    }
    if (c < cols) {
      const __mmask16 m = TailMask(cols - c);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, row + c), _mm512_maskz_loadu_ps(m, x + c), a1);
    }
    y[r] = HorizontalSum(_mm512_add_ps(a0, a1));
  }
}

// Attention scores four positions at a time: four independent FMA chains, then one combined
// reduction of the four accumulators instead of four separate horizontal sums.
CH_AVX512 void ScoresAvx512(const float* q, const float* keys, size_t stride, int32_t count,
                            int32_t size, float divisor, float* out) {
  const int32_t full = size - size % kLanes;
  const __mmask16 tail = TailMask(size - full);
  const __m128 divisors = _mm_set1_ps(divisor);
  int32_t t = 0;
  for (; t + 4 <= count; t += 4) {
    const float* k0 = keys + static_cast<size_t>(t) * stride;
    const float* k1 = k0 + stride;
    const float* k2 = k1 + stride;
    const float* k3 = k2 + stride;
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps();
    __m512 a3 = _mm512_setzero_ps();
    for (int32_t c = 0; c < full; c += kLanes) {
      const __m512 qv = _mm512_loadu_ps(q + c);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(k0 + c), qv, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(k1 + c), qv, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(k2 + c), qv, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(k3 + c), qv, a3);
    }
    if (full < size) {
      const __m512 qv = _mm512_maskz_loadu_ps(tail, q + full);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, k0 + full), qv, a0);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, k1 + full), qv, a1);
      a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, k2 + full), qv, a2);
      a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, k3 + full), qv, a3);
    }
    // Each accumulator folded to 8 lanes, then pairwise adds within 128-bit halves leave
    // [sum0, sum1, sum2, sum3] in each half.
    const __m256 h01 = _mm256_hadd_ps(Fold(a0), Fold(a1));
    const __m256 h23 = _mm256_hadd_ps(Fold(a2), Fold(a3));
    const __m256 h = _mm256_hadd_ps(h01, h23);
    const __m128 sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    _mm_storeu_ps(out + t, _mm_div_ps(sums, divisors));
  }
  for (; t < count; ++t) {
    out[t] = RowDot(q, keys + static_cast<size_t>(t) * stride, size) / divisor;
  }
}

// The weighted sum of value rows, 64 output floats at a time held in registers across all
// positions (rather than loaded and stored once per position).
CH_AVX512 void WeightedSumAvx512(const float* weights, const float* values, size_t stride,
                                 int32_t count, int32_t size, float* out) {
  constexpr int32_t kBlock = 4 * kLanes;
  for (int32_t begin = 0; begin < size; begin += kBlock) {
    std::array<__mmask16, 4> m{};
    for (int32_t i = 0; i < 4; ++i) {
      const int32_t remaining = size - begin - i * kLanes;
      m[i] = remaining >= kLanes ? static_cast<__mmask16>(0xFFFF)
                                 : (remaining > 0 ? TailMask(remaining) : 0);
    }
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps();
    __m512 a3 = _mm512_setzero_ps();
    for (int32_t t = 0; t < count; ++t) {
      const __m512 w = _mm512_set1_ps(weights[t]);
      const float* row = values + static_cast<size_t>(t) * stride + begin;
      a0 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m[0], row), a0);
      a1 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m[1], row + kLanes), a1);
      a2 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m[2], row + kTwoLanes), a2);
      a3 = _mm512_fmadd_ps(w, _mm512_maskz_loadu_ps(m[3], row + kThreeLanes), a3);
    }
    _mm512_mask_storeu_ps(out + begin, m[0], a0);
    _mm512_mask_storeu_ps(out + begin + kLanes, m[1], a1);
    _mm512_mask_storeu_ps(out + begin + kTwoLanes, m[2], a2);
    _mm512_mask_storeu_ps(out + begin + kThreeLanes, m[3], a3);
  }
}

}  // namespace cellhouse::engine::internal
