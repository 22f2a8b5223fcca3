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
constexpr int32_t kTwoLanes = 2 * kLanes;
constexpr int32_t kThreeLanes = 3 * kLanes;

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

// Four positions at a time with one combined reduction; see ScoresAvx512.
CH_AVX2 void ScoresAvx2(const float* q, const float* keys, size_t stride, int32_t count,
                        int32_t size, float divisor, float* out) {
  const int32_t full = size - size % kLanes;
  const __m128 divisors = _mm_set1_ps(divisor);
  int32_t t = 0;
  for (; t + 4 <= count; t += 4) {
    const float* k0 = keys + static_cast<size_t>(t) * stride;
    const float* k1 = k0 + stride;
    const float* k2 = k1 + stride;
    const float* k3 = k2 + stride;
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    for (int32_t c = 0; c < full; c += kLanes) {
      const __m256 qv = _mm256_loadu_ps(q + c);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(k0 + c), qv, a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(k1 + c), qv, a1);
      a2 = _mm256_fmadd_ps(_mm256_loadu_ps(k2 + c), qv, a2);
      a3 = _mm256_fmadd_ps(_mm256_loadu_ps(k3 + c), qv, a3);
    }
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
    __m128 sums = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
    if (full < size) {
      alignas(16) float extra[4] = {0, 0, 0, 0};
      for (int32_t c = full; c < size; ++c) {
        extra[0] += k0[c] * q[c];
        extra[1] += k1[c] * q[c];
        extra[2] += k2[c] * q[c];
        extra[3] += k3[c] * q[c];
      }
      sums = _mm_add_ps(sums, _mm_load_ps(extra));
    }
    _mm_storeu_ps(out + t, _mm_div_ps(sums, divisors));
  }
  for (; t < count; ++t) {
    out[t] = RowDot(q, keys + static_cast<size_t>(t) * stride, size) / divisor;
  }
}

// 32 output floats at a time in registers across all positions; see WeightedSumAvx512.
CH_AVX2 void WeightedSumAvx2(const float* weights, const float* values, size_t stride,
                             int32_t count, int32_t size, float* out) {
  const int32_t full = size - size % kLanes;
  int32_t begin = 0;
  for (; begin + 4 * kLanes <= full; begin += 4 * kLanes) {
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    __m256 a2 = _mm256_setzero_ps();
    __m256 a3 = _mm256_setzero_ps();
    for (int32_t t = 0; t < count; ++t) {
      const __m256 w = _mm256_set1_ps(weights[t]);
      const float* row = values + static_cast<size_t>(t) * stride + begin;
      a0 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row), a0);
      a1 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + kLanes), a1);
      a2 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + kTwoLanes), a2);
      a3 = _mm256_fmadd_ps(w, _mm256_loadu_ps(row + kThreeLanes), a3);
    }
    _mm256_storeu_ps(out + begin, a0);
    _mm256_storeu_ps(out + begin + kLanes, a1);
    _mm256_storeu_ps(out + begin + kTwoLanes, a2);
    _mm256_storeu_ps(out + begin + kThreeLanes, a3);
  }
  for (; begin < full; begin += kLanes) {
    __m256 a = _mm256_setzero_ps();
    for (int32_t t = 0; t < count; ++t) {
      const float* row = values + static_cast<size_t>(t) * stride + begin;
      a = _mm256_fmadd_ps(_mm256_set1_ps(weights[t]), _mm256_loadu_ps(row), a);
    }
    _mm256_storeu_ps(out + begin, a);
  }
  for (; begin < size; ++begin) {
    float sum = 0;
    for (int32_t t = 0; t < count; ++t) {
      sum += weights[t] * values[static_cast<size_t>(t) * stride + begin];
    }
    out[begin] = sum;
  }
}

}  // namespace cellhouse::engine::internal
