// AVX2 + FMA kernels, for CPUs without AVX-512. Compiled for AVX2 by target attribute only;
// kernels.cc calls them only when the CPU has AVX2 and FMA.
#include <immintrin.h>

#include <cstddef>

#include "worker/engine/kernels.h"

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
  for (; c < cols; ++c) sum += w[c] * x[c];
  return sum;
}

}  // namespace

CH_AVX2 void MatVecAvx2(const float* w, const float* x, float* y, int32_t rows, int32_t cols) {
  const auto stride = static_cast<size_t>(cols);
  const int32_t full = cols - cols % kLanes;
  int32_t r = 0;
  for (; r + 4 <= rows; r += 4) {
    const float* w0 = w + static_cast<size_t>(r) * stride;
    const float* w1 = w0 + stride;
    const float* w2 = w1 + stride;
    const float* w3 = w2 + stride;
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    for (int32_t c = 0; c < full; c += kLanes) {
      __m256 xv = _mm256_loadu_ps(x + c);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(w0 + c), xv, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(w1 + c), xv, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(w2 + c), xv, a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(w3 + c), xv, a3);
    }
    float s0 = HorizontalSum(a0);
    float s1 = HorizontalSum(a1);
    float s2 = HorizontalSum(a2);
    float s3 = HorizontalSum(a3);
    for (int32_t c = full; c < cols; ++c) {
      s0 += w0[c] * x[c];
      s1 += w1[c] * x[c];
      s2 += w2[c] * x[c];
      s3 += w3[c] * x[c];
    }
    y[r] = s0;
    y[r + 1] = s1;
    y[r + 2] = s2;
    y[r + 3] = s3;
  }
  for (; r < rows; ++r) y[r] = RowDot(w + static_cast<size_t>(r) * stride, x, cols);
}

CH_AVX2 float DotAvx2(const float* a, const float* b, int32_t n) { return RowDot(a, b, n); }

CH_AVX2 void AxpyAvx2(float alpha, const float* x, float* y, int32_t n) {
  const __m256 av = _mm256_set1_ps(alpha);
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm256_storeu_ps(y + i, _mm256_fmadd_ps(av, _mm256_loadu_ps(x + i), _mm256_loadu_ps(y + i)));
  }
  for (; i < n; ++i) y[i] += alpha * x[i];
}

}  // namespace cellhouse::engine::internal
