// AVX-512F kernels. Only these functions are compiled for AVX-512 (target attribute); the
// dispatcher in kernels.cc calls them only when the CPU has it.
#include <immintrin.h>

#include <cstddef>

#include "worker/engine/kernels.h"
#include "worker/engine/prefetch_stream.h"

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

CH_AVX512 float DotAvx512(const float* a, const float* b, int32_t n) { return RowDot(a, b, n); }

CH_AVX512 void AxpyAvx512(float alpha, const float* x, float* y, int32_t n) {
  const __m512 av = _mm512_set1_ps(alpha);
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm512_storeu_ps(y + i, _mm512_fmadd_ps(av, _mm512_loadu_ps(x + i), _mm512_loadu_ps(y + i)));
  }
  if (i < n) {
    __mmask16 m = TailMask(n - i);
    __m512 r =
        _mm512_fmadd_ps(av, _mm512_maskz_loadu_ps(m, x + i), _mm512_maskz_loadu_ps(m, y + i));
    _mm512_mask_storeu_ps(y + i, m, r);
  }
}

}  // namespace cellhouse::engine::internal
