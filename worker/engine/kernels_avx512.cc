// AVX-512F kernels. Only these functions are compiled for AVX-512 (target attribute); the
// dispatcher in kernels.cc calls them only when the CPU has it.
#include <immintrin.h>

#include <cstddef>

#include "worker/engine/kernels.h"

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
CH_AVX512 inline float HorizontalSum(__m512 v) {
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 1));
  const __m256 s8 = _mm256_add_ps(lo, hi);
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

// Four rows per pass: four independent streams from memory share each load of x, which stays
// in L1. The loop is bound by memory bandwidth, not by the FMAs.
CH_AVX512 void MatVecAvx512(const float* w, const float* x, float* y, int32_t rows,
                            int32_t cols) {
  const auto stride = static_cast<size_t>(cols);
  const int32_t full = cols - cols % kLanes;
  const __mmask16 tail = TailMask(cols - full);
  int32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* w0 = w + static_cast<size_t>(r) * stride;
    const float* w1 = w0 + stride;
    const float* w2 = w1 + stride;
    const float* w3 = w2 + stride;
    __m512 a0 = _mm512_setzero_ps();
    __m512 a1 = _mm512_setzero_ps();
    __m512 a2 = _mm512_setzero_ps();
    __m512 a3 = _mm512_setzero_ps();
    for (int32_t c = 0; c < full; c += kLanes) {
      __m512 xv = _mm512_loadu_ps(x + c);
      a0 = _mm512_fmadd_ps(_mm512_loadu_ps(w0 + c), xv, a0);
      a1 = _mm512_fmadd_ps(_mm512_loadu_ps(w1 + c), xv, a1);
      a2 = _mm512_fmadd_ps(_mm512_loadu_ps(w2 + c), xv, a2);
      a3 = _mm512_fmadd_ps(_mm512_loadu_ps(w3 + c), xv, a3);
    }
    if (full < cols) {
      __m512 xv = _mm512_maskz_loadu_ps(tail, x + full);
      a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w0 + full), xv, a0);
      a1 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w1 + full), xv, a1);
      a2 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w2 + full), xv, a2);
      a3 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(tail, w3 + full), xv, a3);
    }
    y[r] = HorizontalSum(a0);
    y[r + 1] = HorizontalSum(a1);
    y[r + 2] = HorizontalSum(a2);
    y[r + 3] = HorizontalSum(a3);
  }
  for (; r < rows; ++r) y[r] = RowDot(w + static_cast<size_t>(r) * stride, x, cols);
}

CH_AVX512 float DotAvx512(const float* a, const float* b, int32_t n) { return RowDot(a, b, n); }

CH_AVX512 void AxpyAvx512(float alpha, const float* x, float* y, int32_t n) {
  const __m512 av = _mm512_set1_ps(alpha);
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    __mmask16 m = TailMask(n - i);
    __m512 r = _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
    _mm512_mask_storeu_ps(y + i, m, r);
  }
}

}  // namespace cellhouse::engine::internal
