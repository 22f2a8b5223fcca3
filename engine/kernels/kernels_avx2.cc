// AVX2 + FMA kernels, for CPUs without AVX-512. Compiled for AVX2 by target attribute only;
// kernels.cc calls them only when the CPU has AVX2, FMA and F16C (the half-precision KV cache).
#include <immintrin.h>

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>

#include "engine/kernels/half.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/prefetch.h"

#define CH_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace cellhouse::engine::internal {

namespace {

constexpr int32_t kLanes = 8;

CH_AVX2 inline float HorizontalSum(__m256 v) {
  __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  s = _mm_add_ps(s, _mm_movehl_ps(s, s));
  s = _mm_add_ss(s, _mm_movehdup_ps(s));
  return _mm_cvtss_f32(s);
}

// Eight cache values as floats: an fp32 cache as it is, an fp16 one widened (exactly).
CH_AVX2 inline __m256 Load8(const float* p) { return _mm256_loadu_ps(p); }
CH_AVX2 inline __m256 Load8(const uint16_t* p) {
  return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) { return HalfToFloat(*p); }

// q · k over `cols` values of a cache row.
template <typename T>
CH_AVX2 float RowDot(const float* q, const T* k, int32_t cols) {
  __m256 acc = _mm256_setzero_ps();
  int32_t c = 0;
  for (; c + kLanes <= cols; c += kLanes) {
    acc = _mm256_fmadd_ps(_mm256_loadu_ps(q + c), Load8(k + c), acc);
  }
  float sum = HorizontalSum(acc);
  // Tails as explicit fused multiply-adds: left to the compiler, whether a product and a sum
  // are contracted would depend on how the value was loaded, and the fp32 and fp16 kernels would
  // round differently.
  for (; c < cols; ++c) {
    sum = std::fma(q[c], Load1(k + c), sum);
  }
  return sum;
}

}  // namespace

// One row after another, one line of weights per step, prefetched just before it is loaded;
// see MatVecAvx512.
CH_AVX2 void MatVecAvx2(const float* w, const float* x, float* y, int32_t rows, int32_t cols) {
  constexpr int32_t kStep = 2 * kLanes;  // one cache line of weights per iteration
  const auto stride = static_cast<size_t>(cols);
  for (int32_t r = 0; r < rows; ++r) {
    const float* row = w + static_cast<size_t>(r) * stride;
    __m256 a0 = _mm256_setzero_ps();
    __m256 a1 = _mm256_setzero_ps();
    int32_t c = 0;
    for (; c + kStep <= cols; c += kStep) {
      IssueEarly<1>(row + c);
      a0 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c), _mm256_loadu_ps(x + c), a0);
      a1 = _mm256_fmadd_ps(_mm256_loadu_ps(row + c + kLanes), _mm256_loadu_ps(x + c + kLanes), a1);
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

namespace {

// Scores of heads h .. h + 3 at position t (past the last head, the last one again: computed,
// not stored), with one combined reduction.
template <typename T>
CH_AVX2 void ScoreFourHeads(const float* q, const T* row, const AttentionShape& a, int32_t h,
                            int32_t t, __m128 divisors, float* scores) {
  const int32_t size = a.head_size;
  const int32_t full = size - size % kLanes;
  std::array<const T*, 4> k{};
  std::array<const float*, 4> qh{};
  for (int32_t j = 0; j < 4; ++j) {
    const int32_t head = std::min(h + j, a.heads - 1);
    k[j] = row + static_cast<size_t>(head / a.kv_mul) * size;
    qh[j] = q + static_cast<size_t>(head) * size;
  }
  __m256 a0 = _mm256_setzero_ps();
  __m256 a1 = _mm256_setzero_ps();
  __m256 a2 = _mm256_setzero_ps();
  __m256 a3 = _mm256_setzero_ps();
  for (int32_t c = 0; c < full; c += kLanes) {
    a0 = _mm256_fmadd_ps(Load8(k[0] + c), _mm256_loadu_ps(qh[0] + c), a0);
    a1 = _mm256_fmadd_ps(Load8(k[1] + c), _mm256_loadu_ps(qh[1] + c), a1);
    a2 = _mm256_fmadd_ps(Load8(k[2] + c), _mm256_loadu_ps(qh[2] + c), a2);
    a3 = _mm256_fmadd_ps(Load8(k[3] + c), _mm256_loadu_ps(qh[3] + c), a3);
  }
  const __m256 hs = _mm256_hadd_ps(_mm256_hadd_ps(a0, a1), _mm256_hadd_ps(a2, a3));
  __m128 sums = _mm_add_ps(_mm256_castps256_ps128(hs), _mm256_extractf128_ps(hs, 1));
  if (full < size) {
    alignas(16) std::array<float, 4> extra = {0, 0, 0, 0};
    for (int32_t c = full; c < size; ++c) {
      for (int32_t j = 0; j < 4; ++j) {
        extra[j] = std::fma(Load1(k[j] + c), qh[j][c], extra[j]);
      }
    }
    sums = _mm_add_ps(sums, _mm_load_ps(extra.data()));
  }
  alignas(16) std::array<float, 4> quotients{};
  _mm_store_ps(quotients.data(), _mm_div_ps(sums, divisors));
  for (int32_t j = 0; j < 4 && h + j < a.heads; ++j) {
    scores[static_cast<size_t>(h + j) * a.scores_stride + t] = quotients[j];
  }
}

// Position by position, four heads at a time below count rounded down to 4, one combined
// reduction; see ScoresAvx512.
template <typename T>
CH_AVX2 void Scores(const float* q, const T* keys, const AttentionShape& a, int32_t count,
                    float divisor, float* scores) {
  const int32_t size = a.head_size;
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
      ScoreFourHeads(q, row, a, h, t, divisors, scores);
    }
  }
}

// Position by position, each head's outputs accumulating in `out`; see WeightedSumAvx512.
template <typename T>
CH_AVX2 void WeightedSum(const float* weights, const T* values, const AttentionShape& a,
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
      const float weight = weights[static_cast<size_t>(h) * a.scores_stride + t];
      const __m256 w = _mm256_set1_ps(weight);
      const T* v = row + static_cast<size_t>(h / a.kv_mul) * size;
      float* o = out + static_cast<size_t>(h) * size;
      int32_t c = 0;
      for (; c + kLanes <= size; c += kLanes) {
        _mm256_storeu_ps(o + c, _mm256_fmadd_ps(w, Load8(v + c), _mm256_loadu_ps(o + c)));
      }
      for (; c < size; ++c) {
        o[c] = std::fma(weight, Load1(v + c), o[c]);
      }
    }
  }
}

}  // namespace

CH_AVX2 void ScoresAvx2(const float* q, const float* keys, const AttentionShape& a, int32_t count,
                        float divisor, float* scores) {
  Scores(q, keys, a, count, divisor, scores);
}
CH_AVX2 void ScoresHalfAvx2(const float* q, const uint16_t* keys, const AttentionShape& a,
                            int32_t count, float divisor, float* scores) {
  Scores(q, keys, a, count, divisor, scores);
}
CH_AVX2 void WeightedSumAvx2(const float* weights, const float* values, const AttentionShape& a,
                             int32_t count, float* out) {
  WeightedSum(weights, values, a, count, out);
}
CH_AVX2 void WeightedSumHalfAvx2(const float* weights, const uint16_t* values,
                                 const AttentionShape& a, int32_t count, float* out) {
  WeightedSum(weights, values, a, count, out);
}

// Eight at a time with vcvtps2ph, rounding to nearest even as FloatToHalf does for the rest.
CH_AVX2 void ToHalfAvx2(const float* x, int32_t n, uint16_t* out) {
  int32_t i = 0;
  for (; i + kLanes <= n; i += kLanes) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    out[i] = FloatToHalf(x[i]);
  }
}

}  // namespace cellhouse::engine::internal
