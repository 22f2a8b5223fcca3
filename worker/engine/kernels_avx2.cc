// AVX2 + FMA kernels, for CPUs without AVX-512. Compiled for AVX2 by target attribute only;
// kernels.cc calls them only when the CPU has AVX2 and FMA.
#include <immintrin.h>

#include <cstddef>

#include "worker/engine/kernels.h"
#include "worker/engine/prefetch_stream.h"

#define CH_AVX2 __attribute__((target("avx2,fma")))

namespace cellhouse::engine::internal {

namespace {

constexpr int32_t kLanes = 8;

CH_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

CH_AVX2 float RowDot(const float* w, const float* x, int32_t cols) {
  __m256 acc = _mm256_setzero_ps();
  int32_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(w + c), _mm256_loadu_ps(x + c), acc);
  }
  float sum = HorizontalSum(acc);
  for (; c < cols; ++c) {
    sum += w[c] * x[c];
  }
  return sum;
}

}  // namespace

// One row after another with a software prefetch ahead of the reads, running on into `next`;
// see MatVecAvx512 for why.
CH_AVX2 void MatVecAvx2(const float* w, const float* x, float* y, int32_t rows, int32_t cols,
                        const float* next) {
  constexpr int32_t kStep = 2 * kLanes;  // one cache line of weights per iteration
  const auto stride = static_cast<size_t>(cols);
  PrefetchStream prefetch(w, static_cast<size_t>(rows) * stride, next);
  for (int32_t r = 0; r < rows; ++r) {
    const float* row = w + static_cast<size_t>(r) * stride;
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    int32_t c = 0;
    for (; c + kStep <= cols; c += kStep) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + kLanes), _mm256_loadu_ps(x + c + kLanes), a1);
      _mm_prefetch(prefetch.Next(), _MM_HINT_T0);
    }
    for (; c + kLanes <= cols; c += kLanes) {
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
    }
    float sum = HorizontalSum(_mm256_add_ps(a0, a1));
    for (; c < cols; ++c) {
      sum += row[c] * x[c];
    }
    y[r] = sum;
  }
}

CH_AVX2 float DotAvx2(const float* a, const float* b, int32_t n) { return RowDot(a, b, n); }

CH_AVX2 void AxpyAvx2(float alpha, const float* x, float* y, int32_t n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) {
    y[i] += alpha * x[i];
  }
}

}  // namespace cellhouse::engine::internal
