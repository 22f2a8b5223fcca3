#include "engine/ggml_ops.h"

#include <immintrin.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>

#include "engine/kernels/half.h"

namespace cellhouse::engine {

namespace {

// Every lane: the masked (maskz) forms of AVX-512 intrinsics, whose unmasked forms GCC 12 warns
// about (their undefined source register).
constexpr __mmask16 kAll16 = 0xFFFF;

// What ggml_v_expf does when |n| > 192: the result is 0 or infinity outright.
constexpr float kExpSpecial = 192.0F;

// 2^e for |e| <= 126, exactly.
inline float Pow2(int e) { return std::bit_cast<float>(static_cast<uint32_t>(e + 127) << 23); }

// The bodies below are compiled twice (Generic, and with FMA for CPUs that have it, where
// std::fma is one instruction rather than a call into libm): the same operations, the same bits.
#define CH_OPS_INLINE [[gnu::always_inline]] inline

CH_OPS_INLINE float ExpBody(float x) {
  // n = round(x / ln 2) by the 1.5 * 2^23 trick; b = x - n ln 2 in two parts; a degree-5
  // polynomial in b nested as ggml's intrinsics nest it; then 2^n as _mm512_scalef_ps applies it.
  const float r = 0x1.8p23F;
  const float z = std::fma(x, 0x1.715476p+0F, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20F, std::fma(-n, 0x1.62e4p-1F, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7F, b, 0x1.573e2ep-5F), u,
                                    std::fma(0x1.555e66p-3F, b, 0x1.fffdb6p-2F)),
                           u, std::fma(0x1.ffffecp-1F, b, 1.0F));
  if (!(std::fabs(n) <= kExpSpecial)) {
    return std::isnan(n) ? n : (n <= 0.0F ? 0.0F : INFINITY);
  }
  // scalef: j * 2^n rounded once. n is a whole number in [-192, 192]; j * 2^(n/2) is exact (a
  // normal float), so only the second product rounds, as scalef's one product does.
  const int e = static_cast<int>(n);
  return j * Pow2(e / 2) * Pow2(e - e / 2);
}

// The runs of 16 values that ggml computes with ggml_v_expf, one value at a time (Generic and Fma
// compile these; Avx512Runs below does them 16 at once, with the same bits).
struct ScalarRuns {
  // x[i] *= scale for every value; returns the largest (never a NaN; -inf when there is none).
  CH_OPS_INLINE static float ScaleAndMax(float* x, int64_t n, float scale) {
    float max = -INFINITY;
    for (int64_t i = 0; i < n; ++i) {
      x[i] *= scale;
      max = x[i] > max ? x[i] : max;
    }
    return max;
  }
  // x[l] = exp(x[l] - max) for 16 values.
  CH_OPS_INLINE static void SoftMax16(float* x, float max) {
    for (int64_t l = 0; l < 16; ++l) {
      x[l] = ExpBody(x[l] - max);
    }
  }
  // ggml_v_silu, then the product: gate[l] = gate[l] / (1 + exp(0 - gate[l])) * up[l].
  CH_OPS_INLINE static void SiluMul16(float* gate, const float* up) {
    for (int64_t l = 0; l < 16; ++l) {
      gate[l] = gate[l] / (1.0F + ExpBody(0.0F - gate[l])) * up[l];
    }
  }
};

template <typename Runs>
CH_OPS_INLINE void SoftMaxBody(float* x, int64_t n, float scale) {
  const float max = Runs::ScaleAndMax(x, n, scale);
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Runs::SoftMax16(x + i, max);
    sum += static_cast<double>(ReduceAdd16(x + i));
  }
  for (; i < n; ++i) {
    x[i] = std::exp(x[i] - max);
    sum += static_cast<double>(x[i]);
  }
  const auto inverse = static_cast<float>(1.0 / sum);
  for (int64_t k = 0; k < n; ++k) {
    x[k] *= inverse;
  }
}

template <typename Runs>
CH_OPS_INLINE void SiluMulBody(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    Runs::SiluMul16(gate + i, up + i);
  }
  for (; i < n; ++i) {
    // ggml_silu_f32, for the values past the last run of 16.
    gate[i] = gate[i] / (1.0F + std::exp(-gate[i])) * up[i];
  }
}

// ExpBody on 16 lanes: the same operations (fnmadd(n, c, x) is fma(-n, c, x)), with
// _mm512_scalef_ps for the power of two, and 0 or infinity where |n| > kExpSpecial.
[[gnu::target("avx512f"), gnu::always_inline]] inline __m512 ExpAvx512(__m512 x) {
  const __m512 r = _mm512_set1_ps(0x1.8p23F);
  const __m512 z = _mm512_fmadd_ps(x, _mm512_set1_ps(0x1.715476p+0F), r);
  const __m512 n = _mm512_sub_ps(z, r);
  const __m512 b = _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.7f7d1cp-20F),
                                    _mm512_fnmadd_ps(n, _mm512_set1_ps(0x1.62e4p-1F), x));
  const __m512 u = _mm512_mul_ps(b, b);
  const __m512 j = _mm512_fmadd_ps(
      _mm512_fmadd_ps(
          _mm512_fmadd_ps(_mm512_set1_ps(0x1.0e4020p-7F), b, _mm512_set1_ps(0x1.573e2ep-5F)), u,
          _mm512_fmadd_ps(_mm512_set1_ps(0x1.555e66p-3F), b, _mm512_set1_ps(0x1.fffdb6p-2F))),
      u, _mm512_fmadd_ps(_mm512_set1_ps(0x1.ffffecp-1F), b, _mm512_set1_ps(1.0F)));
  const __m512 scaled = _mm512_maskz_scalef_ps(kAll16, j, n);
  const __mmask16 special =
      _mm512_cmp_ps_mask(_mm512_abs_ps(n), _mm512_set1_ps(kExpSpecial), _CMP_GT_OQ);
  if (special == 0) {
    return scaled;
  }
  const __mmask16 low = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
  const __m512 edge = _mm512_mask_blend_ps(low, _mm512_set1_ps(INFINITY), _mm512_setzero_ps());
  return _mm512_mask_blend_ps(special, scaled, edge);
}

struct Avx512Runs {
  // ScalarRuns::ScaleAndMax 16 lanes at a time. vmaxps(v, m) is v > m ? v : m, so a NaN is never
  // taken either; the order differs, which can only change the sign of a zero maximum, and
  // exp(x - max) is then the same (exp(+0) = exp(-0) = 1 for x = max = ±0).
  [[gnu::target("avx512f")]] static float ScaleAndMax(float* x, int64_t n, float scale) {
    const __m512 s = _mm512_set1_ps(scale);
    __m512 lanes = _mm512_set1_ps(-INFINITY);
    int64_t i = 0;
    for (; i + 16 <= n; i += 16) {
      const __m512 v = _mm512_mul_ps(_mm512_loadu_ps(x + i), s);
      _mm512_storeu_ps(x + i, v);
      lanes = _mm512_maskz_max_ps(kAll16, v, lanes);
    }
    alignas(64) float each[16];
    _mm512_store_ps(each, lanes);
    float max = ScalarRuns::ScaleAndMax(x + i, n - i, scale);  // the values past the last 16
    for (float m : each) {
      max = m > max ? m : max;
    }
    return max;
  }
  [[gnu::target("avx512f")]] static void SoftMax16(float* x, float max) {
    _mm512_storeu_ps(x, ExpAvx512(_mm512_sub_ps(_mm512_loadu_ps(x), _mm512_set1_ps(max))));
  }
  [[gnu::target("avx512f")]] static void SiluMul16(float* gate, const float* up) {
    const __m512 g = _mm512_loadu_ps(gate);
    const __m512 e = ExpAvx512(_mm512_sub_ps(_mm512_setzero_ps(), g));
    const __m512 silu = _mm512_div_ps(g, _mm512_add_ps(_mm512_set1_ps(1.0F), e));
    _mm512_storeu_ps(gate, _mm512_mul_ps(silu, _mm512_loadu_ps(up)));
  }
};

void SoftMaxGeneric(float* x, int64_t n, float scale) { SoftMaxBody<ScalarRuns>(x, n, scale); }
[[gnu::target("avx2,fma")]] void SoftMaxFma(float* x, int64_t n, float scale) {
  SoftMaxBody<ScalarRuns>(x, n, scale);
}
[[gnu::target("avx512f")]] void SoftMaxAvx512(float* x, int64_t n, float scale) {
  SoftMaxBody<Avx512Runs>(x, n, scale);
}
void SiluMulGeneric(float* gate, const float* up, int64_t n) {
  SiluMulBody<ScalarRuns>(gate, up, n);
}
[[gnu::target("avx2,fma")]] void SiluMulFma(float* gate, const float* up, int64_t n) {
  SiluMulBody<ScalarRuns>(gate, up, n);
}
[[gnu::target("avx512f")]] void SiluMulAvx512(float* gate, const float* up, int64_t n) {
  SiluMulBody<Avx512Runs>(gate, up, n);
}

float LanesDotF16Portable(const uint16_t* a, const float* b, int64_t n) {
  float lanes[16] = {};
  for (int64_t i = 0; i < n; ++i) {
    lanes[i % 16] = std::fma(HalfToFloat(a[i]), b[i], lanes[i % 16]);
  }
  return ReduceAdd16(lanes);
}

[[gnu::target("avx2,fma,f16c")]] float LanesDotF16Avx2(const uint16_t* a, const float* b,
                                                       int64_t n) {
  __m256 lo = _mm256_setzero_ps();
  __m256 hi = _mm256_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m128i h = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i));
    const __m128i h2 = _mm_loadu_si128(reinterpret_cast<const __m128i*>(a + i + 8));
    lo = _mm256_fmadd_ps(_mm256_cvtph_ps(h), _mm256_loadu_ps(b + i), lo);
    hi = _mm256_fmadd_ps(_mm256_cvtph_ps(h2), _mm256_loadu_ps(b + i + 8), hi);
  }
  float lanes[16];
  _mm256_storeu_ps(lanes, lo);
  _mm256_storeu_ps(lanes + 8, hi);
  for (; i < n; ++i) {
    lanes[i % 16] = std::fma(HalfToFloat(a[i]), b[i], lanes[i % 16]);
  }
  return ReduceAdd16(lanes);
}

// Lanes 0-7 and 8-15 (the zero-masked extract: GCC 12 warns of an uninitialized register in the
// plain).
[[gnu::target("avx512f")]] inline __m256 LowHalfAvx512(__m512 x) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(x), 0));
}
[[gnu::target("avx512f")]] inline __m256 HighHalfAvx512(__m512 x) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(x), 1));
}

// ReduceAdd16's order on a register: halves folded 16 -> 8 -> 4, then (l0 + l2) + (l1 + l3).
[[gnu::target("avx512f")]] inline float ReduceAdd16Avx512(__m512 v) {
  const __m256 h8 = _mm256_add_ps(LowHalfAvx512(v), HighHalfAvx512(v));
  const __m128 h4 = _mm_add_ps(_mm256_castps256_ps128(h8), _mm256_extractf128_ps(h8, 1));
  const __m128 h2 = _mm_add_ps(h4, _mm_permute_ps(h4, 0x4E));
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 0x55)));
}

[[gnu::target("avx512f")]] float LanesDotF16Avx512(const uint16_t* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    // The masked form: GCC 12 warns of an uninitialized register inside the plain one.
    acc = _mm512_fmadd_ps(_mm512_maskz_cvtph_ps(kAll16, h), _mm512_loadu_ps(b + i), acc);
  }
  if (i == n) {
    return ReduceAdd16Avx512(acc);
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, acc);
  for (; i < n; ++i) {
    lanes[i % 16] = std::fma(HalfToFloat(a[i]), b[i], lanes[i % 16]);
  }
  return ReduceAdd16(lanes);
}

// Sixteen rows' chain sums, v[j] for row j, each reduced as the F16 kernel's V16::Sum does it
// (lanes i + 8, then + 4, then + 2, then + 1): the same pairs, added for all rows at once. Lane j
// of the result is row j's value.
[[gnu::target("avx512f")]] __m512 ReduceRows16Avx512(const __m512* v) {
  // 16 -> 8: rows (2k, 2k + 1) in the two halves of w[k].
  __m512 w[8];
  for (size_t k = 0; k < 8; ++k) {
    w[k] = _mm512_add_ps(
        _mm512_maskz_shuffle_f32x4(kAll16, v[2 * k], v[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
        _mm512_maskz_shuffle_f32x4(kAll16, v[2 * k], v[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // 8 -> 4: rows 4k .. 4k + 3 in the four 128-bit lanes of u[k].
  __m512 u[4];
  for (size_t k = 0; k < 4; ++k) {
    u[k] = _mm512_add_ps(
        _mm512_maskz_shuffle_f32x4(kAll16, w[2 * k], w[2 * k + 1], _MM_SHUFFLE(2, 0, 2, 0)),
        _mm512_maskz_shuffle_f32x4(kAll16, w[2 * k], w[2 * k + 1], _MM_SHUFFLE(3, 1, 3, 1)));
  }
  // 4 -> 2: lane c of s[k] holds rows c + 8k (lanes 0, 1) and c + 8k + 4 (lanes 2, 3).
  __m512 s[2];
  for (size_t k = 0; k < 2; ++k) {
    s[k] = _mm512_add_ps(
        _mm512_maskz_shuffle_ps(kAll16, u[2 * k], u[2 * k + 1], _MM_SHUFFLE(1, 0, 1, 0)),
        _mm512_maskz_shuffle_ps(kAll16, u[2 * k], u[2 * k + 1], _MM_SHUFFLE(3, 2, 3, 2)));
  }
  // 2 -> 1: lane 4c + m holds row c + 4m; put row j in lane j.
  const __m512 r =
      _mm512_add_ps(_mm512_maskz_shuffle_ps(kAll16, s[0], s[1], _MM_SHUFFLE(2, 0, 2, 0)),
                    _mm512_maskz_shuffle_ps(kAll16, s[0], s[1], _MM_SHUFFLE(3, 1, 3, 1)));
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 2, 6, 10, 14, 3, 7, 11, 15);
  return _mm512_maskz_permutexvar_ps(kAll16, order, r);
}

// LanesDotF16 for `rows` (1..16) rows of whole runs of 16 (n % 16 == 0) against Q query vectors
// (query q at b + q * b_stride), reduced together: lane i % 16 of row j's chain takes column i,
// and ReduceRows16Avx512 adds the pairs ReduceAdd16Avx512 adds (l + 8, l + 4, l + 2, l + 1), so
// each value has the bits of the row's own LanesDotF16. A prompt's scores (rows of head_size) had
// spent as long in their one-row reductions as in their products; a row's halves are widened once
// for all Q queries (a prompt's tokens that share a head's keys or value rows), where one query
// at a time widened them once per token.
template <int Q>
[[gnu::target("avx512f")]] void LanesDotsF16Rows16Avx512(const uint16_t* a, size_t a_stride,
                                                         int rows, const float* b, size_t b_stride,
                                                         int64_t n, float* out, size_t out_stride) {
  __m512 v[Q][16];
  for (int j = 0; j < 16; ++j) {
    __m512 acc[Q];
    for (int q = 0; q < Q; ++q) acc[q] = _mm512_setzero_ps();
    const uint16_t* row = a + static_cast<size_t>(j) * a_stride;
    for (int64_t i = 0; j < rows && i < n; i += 16) {
      const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(row + i));
      // The masked form: GCC 12 warns of an uninitialized register inside the plain one.
      const __m512 wide = _mm512_maskz_cvtph_ps(kAll16, h);
      for (int q = 0; q < Q; ++q) {
        acc[q] = _mm512_fmadd_ps(wide, _mm512_loadu_ps(b + q * b_stride + i), acc[q]);
      }
    }
    for (int q = 0; q < Q; ++q) v[q][j] = acc[q];
  }
  const auto mask = static_cast<__mmask16>((1U << rows) - 1);
  for (int q = 0; q < Q; ++q) {
    _mm512_mask_storeu_ps(out + q * out_stride, mask, ReduceRows16Avx512(v[q]));
  }
}

template <int Q>
[[gnu::target("avx512f")]] void LanesDotsF16Avx512(const uint16_t* a, size_t a_stride,
                                                   int64_t count, const float* b, size_t b_stride,
                                                   int64_t n, float* out, size_t out_stride) {
  if (n % 16 != 0) {
    for (int q = 0; q < Q; ++q) {
      for (int64_t j = 0; j < count; ++j) {
        out[q * out_stride + static_cast<size_t>(j)] =
            LanesDotF16Avx512(a + static_cast<size_t>(j) * a_stride, b + q * b_stride, n);
      }
    }
    return;
  }
  for (int64_t j = 0; j < count; j += 16) {
    LanesDotsF16Rows16Avx512<Q>(a + static_cast<size_t>(j) * a_stride, a_stride,
                                static_cast<int>(std::min<int64_t>(16, count - j)), b, b_stride, n,
                                out + j, out_stride);
  }
}

// Rows of `a` as F16Table describes them: column i of row j at a + j * row_stride +
// (i / kF16Block) * block_stride + i % kF16Block.
struct F16Table {
  const uint16_t* a;
  size_t row_stride;
  size_t block_stride;

  const uint16_t* At(int64_t j, int64_t i) const {
    return a + static_cast<size_t>(j) * row_stride +
           static_cast<size_t>(i / kF16Block) * block_stride + static_cast<size_t>(i % kF16Block);
  }
};

// Sixteen rows of 16 floats to sixteen columns: on return v[k]'s lane j is what v[j]'s lane k was.
// Pairs of rows interleaved, then fours within each 128-bit lane, then the lanes exchanged twice.
[[gnu::target("avx512f")]] void Transpose16Avx512(__m512* v) {
  __m512 t[16];
  for (size_t i = 0; i < 8; ++i) {
    t[2 * i] = _mm512_maskz_unpacklo_ps(kAll16, v[2 * i], v[2 * i + 1]);
    t[2 * i + 1] = _mm512_maskz_unpackhi_ps(kAll16, v[2 * i], v[2 * i + 1]);
  }
  // u[4g + c], 128-bit lane L: rows 4g .. 4g + 3 of column 4L + c.
  __m512 u[16];
  for (size_t g = 0; g < 4; ++g) {
    const __m512* tg = t + 4 * g;
    u[4 * g] = _mm512_maskz_shuffle_ps(kAll16, tg[0], tg[2], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 1] = _mm512_maskz_shuffle_ps(kAll16, tg[0], tg[2], _MM_SHUFFLE(3, 2, 3, 2));
    u[4 * g + 2] = _mm512_maskz_shuffle_ps(kAll16, tg[1], tg[3], _MM_SHUFFLE(1, 0, 1, 0));
    u[4 * g + 3] = _mm512_maskz_shuffle_ps(kAll16, tg[1], tg[3], _MM_SHUFFLE(3, 2, 3, 2));
  }
  for (size_t c = 0; c < 4; ++c) {
    // even: lanes 0 and 2 of rows 0-3 and 4-7 (of 8-11 and 12-15); odd: lanes 1 and 3.
    const __m512 even_lo =
        _mm512_maskz_shuffle_f32x4(kAll16, u[c], u[4 + c], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 odd_lo =
        _mm512_maskz_shuffle_f32x4(kAll16, u[c], u[4 + c], _MM_SHUFFLE(3, 1, 3, 1));
    const __m512 even_hi =
        _mm512_maskz_shuffle_f32x4(kAll16, u[8 + c], u[12 + c], _MM_SHUFFLE(2, 0, 2, 0));
    const __m512 odd_hi =
        _mm512_maskz_shuffle_f32x4(kAll16, u[8 + c], u[12 + c], _MM_SHUFFLE(3, 1, 3, 1));
    v[c] = _mm512_maskz_shuffle_f32x4(kAll16, even_lo, even_hi, _MM_SHUFFLE(2, 0, 2, 0));
    v[8 + c] = _mm512_maskz_shuffle_f32x4(kAll16, even_lo, even_hi, _MM_SHUFFLE(3, 1, 3, 1));
    v[4 + c] = _mm512_maskz_shuffle_f32x4(kAll16, odd_lo, odd_hi, _MM_SHUFFLE(2, 0, 2, 0));
    v[12 + c] = _mm512_maskz_shuffle_f32x4(kAll16, odd_lo, odd_hi, _MM_SHUFFLE(3, 1, 3, 1));
  }
}

// DotsF16Rows16Avx512's columns past the last whole 64 (`tail` of them, from `whole`), added to
// the rows' sums of the whole ones (`reduced`, lane j: row j) and stored. Apart, so that the main
// loop's registers are its own: inlined, it ran the 1024-position values 15% slower.
[[gnu::target("avx512f")]] [[gnu::noinline]] void DotsF16TailRows16Avx512(
    const F16Table& table, int64_t first, int rows, const float* b, int64_t whole, int tail,
    __m512 reduced, float* out) {
  // The tail: each row's products float(half(a_j[k]) * b[k]) for 16 columns at a time (a short
  // last run through a zero-padded copy), turned into one vector per column (lane j: row j), then
  // per row a double sum in column order, 16 rows at once. A gather of each column from a table
  // of products had taken a quarter of a decode token's attention.
  __m512d lo = _mm512_maskz_cvtps_pd(0xFF, LowHalfAvx512(reduced));
  __m512d hi = _mm512_maskz_cvtps_pd(0xFF, HighHalfAvx512(reduced));
  for (int k = 0; k < tail; k += 16) {
    // A run of 16 never crosses a block: whole and k are multiples of 16.
    const int columns = std::min(16, tail - k);
    __m512 p[16];
    for (int j = 0; j < 16; ++j) {
      if (j >= rows) {
        p[j] = _mm512_setzero_ps();
        continue;
      }
      const uint16_t* run = table.At(first + j, whole + k);
      __m256i h;
      __m512 x;
      if (columns == 16) {
        h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(run));
        x = _mm512_loadu_ps(b + whole + k);
      } else {
        alignas(32) uint16_t part[16] = {};
        std::memcpy(part, run, static_cast<size_t>(columns) * sizeof(uint16_t));
        h = _mm256_load_si256(reinterpret_cast<const __m256i*>(part));
        x = _mm512_maskz_loadu_ps(static_cast<__mmask16>((1U << columns) - 1), b + whole + k);
      }
      p[j] = _mm512_mul_ps(_mm512_maskz_cvtph_ps(kAll16, h), x);
    }
    Transpose16Avx512(p);
    for (int c = 0; c < columns; ++c) {
      lo = _mm512_add_pd(lo, _mm512_maskz_cvtps_pd(0xFF, LowHalfAvx512(p[c])));
      hi = _mm512_add_pd(hi, _mm512_maskz_cvtps_pd(0xFF, HighHalfAvx512(p[c])));
    }
  }
  const __m512 sums = _mm512_castpd_ps(_mm512_maskz_insertf64x4(
      0xFF, _mm512_castpd256_pd512(_mm256_castps_pd(_mm512_maskz_cvtpd_ps(0xFF, lo))),
      _mm256_castps_pd(_mm512_maskz_cvtpd_ps(0xFF, hi)), 1));
  _mm512_mask_storeu_ps(out, static_cast<__mmask16>((1U << rows) - 1), sums);
}

// DotsF16 for `rows` (1..16) rows: the F16 kernel's chains (chain c over columns c * 16 + 64 k),
// combined as its Finish combines them, reduced together; the columns past the last whole 64 in
// double, in column order, each product rounded to float first. kRowsAtOnce rows' chains advance
// together: a row has only 4 chains, each a multiply-add per 64 columns, so a long row (a decode
// token's values: a row per head dimension, a column per position) waits on the multiply-adds'
// latency unless other rows' chains fill the gaps. Each chain still sees its own columns in
// order, so the bits do not depend on kRowsAtOnce.
template <int kRowsAtOnce>
[[gnu::target("avx512f")]] void DotsF16Rows16Avx512(const F16Table& table, int64_t first, int rows,
                                                    const float* b, int64_t n, float* out) {
  constexpr int64_t kStep = 64;
  static_assert(kStep == 2 * kF16Block && kF16Block % 16 == 0 && 16 % kRowsAtOnce == 0);
  const int64_t whole = n - n % kStep;
  __m512 v[16];
  for (int j = 0; j < 16; j += kRowsAtOnce) {
    __m512 c[kRowsAtOnce][4];
    for (int r = 0; r < kRowsAtOnce; ++r) {
      for (int k = 0; k < 4; ++k) {
        c[r][k] = _mm512_setzero_ps();
      }
    }
    const int live = std::clamp(rows - j, 0, kRowsAtOnce);
    for (int64_t i = 0; live > 0 && i < whole; i += kStep) {
      for (int r = 0; r < kRowsAtOnce; ++r) {
        // Rows past `rows` repeat the last live one (read, never stored).
        const int64_t row = first + j + std::min(r, live - 1);
        // Columns i .. i + 31 and i + 32 .. i + 63 are each one run (i is a multiple of 64).
        const uint16_t* runs[2] = {table.At(row, i), table.At(row, i + kF16Block)};
        for (int64_t k = 0; k < 4; ++k) {
          const __m256i h =
              _mm256_loadu_si256(reinterpret_cast<const __m256i*>(runs[k / 2] + 16 * (k % 2)));
          c[r][k] = _mm512_fmadd_ps(_mm512_maskz_cvtph_ps(kAll16, h),
                                    _mm512_loadu_ps(b + i + 16 * k), c[r][k]);
        }
      }
    }
    for (int r = 0; r < kRowsAtOnce; ++r) {
      v[j + r] =
          r < live ? _mm512_add_ps(_mm512_add_ps(c[r][0], c[r][2]), _mm512_add_ps(c[r][1], c[r][3]))
                   : _mm512_setzero_ps();
    }
  }
  const __m512 reduced = ReduceRows16Avx512(v);
  if (whole == n) {
    _mm512_mask_storeu_ps(out, static_cast<__mmask16>((1U << rows) - 1), reduced);
    return;
  }
  DotsF16TailRows16Avx512(table, first, rows, b, whole, static_cast<int>(n - whole), reduced, out);
}

// Rows of at least this many columns go 4 at a time through DotsF16Rows16Avx512 (attention_bench,
// a token's values, 12 layers x 12 heads of 64: 1,418-1,465 -> 801-881 µs at 1,024 positions,
// 536-605 -> 438-537 at 512, no change at 256). Shorter ones, a token's scores (a row per
// position, a column per head dimension) among them, go one at a time: 4 at a time, scores at
// 1,024 positions took 918-988 µs where one at a time took 684-803.
constexpr int64_t kLongRows = 256;

// The rows a DotsF16 reads are a worker's keys or values, which the weights streamed through
// since the last token have evicted: the kernels ask for the next 16 rows' lines (first ..
// first + 15, below count) while the current ones compute, so their misses overlap instead of
// coming one row at a time. A run of kF16Block halves is one cache line.
inline void PrefetchRows16(const F16Table& table, int64_t first, int64_t count, int64_t n) {
  const int64_t end = std::min(count, first + 16);
  for (int64_t j = first; j < end; ++j) {
    for (int64_t i = 0; i < n; i += kF16Block) {
      _mm_prefetch(reinterpret_cast<const char*>(table.At(j, i)), _MM_HINT_T0);
    }
  }
}

[[gnu::target("avx512f")]] void DotsF16Avx512(const F16Table& table, int64_t count, const float* b,
                                              int64_t n, float* out) {
  PrefetchRows16(table, 0, count, n);
  for (int64_t j = 0; j < count; j += 16) {
    PrefetchRows16(table, j + 16, count, n);
    const int rows = static_cast<int>(std::min<int64_t>(16, count - j));
    if (n >= kLongRows) {
      DotsF16Rows16Avx512<4>(table, j, rows, b, n, out + j);
    } else {
      DotsF16Rows16Avx512<1>(table, j, rows, b, n, out + j);
    }
  }
}

// DotsF16 with AVX2: the F16 kernel's AVX2 dot (float_types_avx2.cc: each chain of 16 lanes as
// two 8-lane halves, 8 independent multiply-adds per 64 columns), read through the table, so a
// value cache's rows need no gathering into a scratch row first. This is a row's sum of its
// columns below `whole` (a multiple of 64), in Finish's order: (c0 + c2) + (c1 + c3), then the 16
// lanes folded 16 -> 8 -> 4 -> 2 -> 1.
[[gnu::target("avx2,fma,f16c")]] float WholeF16RowAvx2(const F16Table& table, int64_t j,
                                                       const float* b, int64_t whole) {
  constexpr int64_t kStep = 64;
  static_assert(kStep == 2 * kF16Block);
  __m256 lo[4];
  __m256 hi[4];
  for (int64_t k = 0; k < 4; ++k) {
    lo[k] = _mm256_setzero_ps();
    hi[k] = _mm256_setzero_ps();
  }
  for (int64_t i = 0; i < whole; i += kStep) {
    const uint16_t* runs[2] = {table.At(j, i), table.At(j, i + kF16Block)};
    for (int64_t k = 0; k < 4; ++k) {
      const uint16_t* h = runs[k / 2] + 16 * (k % 2);
      const float* x = b + i + 16 * k;
      lo[k] = _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h))),
                              _mm256_loadu_ps(x), lo[k]);
      hi[k] =
          _mm256_fmadd_ps(_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(h + 8))),
                          _mm256_loadu_ps(x + 8), hi[k]);
    }
  }
  const __m256 sum_lo = _mm256_add_ps(_mm256_add_ps(lo[0], lo[2]), _mm256_add_ps(lo[1], lo[3]));
  const __m256 sum_hi = _mm256_add_ps(_mm256_add_ps(hi[0], hi[2]), _mm256_add_ps(hi[1], hi[3]));
  const __m256 h8 = _mm256_add_ps(sum_hi, sum_lo);
  const __m128 h4 = _mm_add_ps(_mm256_extractf128_ps(h8, 1), _mm256_castps256_ps128(h8));
  const __m128 h2 = _mm_add_ps(_mm_permute_ps(h4, 0x4E), h4);
  return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 0x55)));
}

// Rows first .. first + 3 (those below count): the whole columns row by row, then the columns
// past them as Finish adds them, in double and in column order, each product rounded to float
// first; the four rows' chains of double adds side by side in one vector, so that they overlap.
[[gnu::target("avx2,fma,f16c")]] void DotsF16Rows4Avx2(const F16Table& table, int64_t first,
                                                       int64_t count, const float* b, int64_t n,
                                                       float* out) {
  const int64_t whole = n - n % 64;
  const int live = static_cast<int>(std::min<int64_t>(4, count - first));
  alignas(16) float sums[4] = {};
  for (int r = 0; r < live; ++r) {
    sums[r] = WholeF16RowAvx2(table, first + r, b, whole);
  }
  if (whole < n) {
    __m256d acc = _mm256_cvtps_pd(_mm_load_ps(sums));
    // Rows past `live` repeat the last live one (read, never stored).
    const uint16_t* rows[4];
    for (int r = 0; r < 4; ++r) {
      rows[r] = table.At(first + std::min(r, live - 1), 0);
    }
    for (int64_t k = whole; k < n; ++k) {
      // Column k lies as far from every row's start.
      const auto at = static_cast<size_t>(table.At(0, k) - table.At(0, 0));
      __m128i h = _mm_cvtsi32_si128(rows[0][at]);
      h = _mm_insert_epi16(h, rows[1][at], 1);
      h = _mm_insert_epi16(h, rows[2][at], 2);
      h = _mm_insert_epi16(h, rows[3][at], 3);
      const __m128 products = _mm_mul_ps(_mm_cvtph_ps(h), _mm_set1_ps(b[k]));
      acc = _mm256_add_pd(acc, _mm256_cvtps_pd(products));
    }
    _mm_store_ps(sums, _mm256_cvtpd_ps(acc));
  }
  for (int r = 0; r < live; ++r) {
    out[first + r] = sums[r];
  }
}

[[gnu::target("avx2,fma,f16c")]] void DotsF16Avx2(const F16Table& table, int64_t count,
                                                  const float* b, int64_t n, float* out) {
  PrefetchRows16(table, 0, count, n);
  for (int64_t j = 0; j < count; j += 16) {
    PrefetchRows16(table, j + 16, count, n);
    const int64_t end = std::min(count, j + 16);
    for (int64_t r = j; r < end; r += 4) {
      DotsF16Rows4Avx2(table, r, count, b, n, out);
    }
  }
}

[[gnu::target("avx2,f16c")]] void ToHalvesF16c(const float* x, int64_t n, uint16_t* out) {
  int64_t i = 0;
  for (; i + 8 <= n; i += 8) {
    _mm_storeu_si128(reinterpret_cast<__m128i*>(out + i),
                     _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  }
  for (; i < n; ++i) {
    out[i] = FloatToHalf(x[i]);
  }
}

bool HasFma(KernelIsa isa) { return isa != KernelIsa::kPortable && KernelIsaSupported(isa); }

// DotsF16 over `table` with the widest vectors `isa` allows on this CPU; false (nothing written)
// where only the portable loop can.
bool DotsF16Vector(const F16Table& table, int64_t count, const float* b, int64_t n, KernelIsa isa,
                   float* out) {
  if (isa == KernelIsa::kAvx512 && KernelIsaSupported(isa)) {
    DotsF16Avx512(table, count, b, n, out);
    return true;
  }
  if (isa != KernelIsa::kPortable && KernelIsaSupported(KernelIsa::kAvx2)) {
    DotsF16Avx2(table, count, b, n, out);
    return true;
  }
  return false;
}

}  // namespace

float GgmlExp(float x) { return ExpBody(x); }

float ReduceAdd16(const float* l) {
  float h8[8];
  for (int i = 0; i < 8; ++i) {
    h8[i] = l[i] + l[i + 8];
  }
  float h4[4];
  for (int i = 0; i < 4; ++i) {
    h4[i] = h8[i] + h8[i + 4];
  }
  return (h4[0] + h4[2]) + (h4[1] + h4[3]);
}

void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out) {
  double sum = 0.0;
  for (int64_t i = 0; i < n; ++i) {
    sum += static_cast<double>(x[i] * x[i]);
  }
  const auto mean = static_cast<float>(sum / static_cast<double>(n));
  const float scale = 1.0F / std::sqrt(mean + eps);
  for (int64_t i = 0; i < n; ++i) {
    out[i] = (x[i] * scale) * weight[i];
  }
}

void RopeAngles(const RopeParams& rope, int32_t pos, float* angles) {
  const float theta_scale = std::pow(rope.base, -2.0F / static_cast<float>(rope.dims));
  float theta = static_cast<float>(pos);
  const ptrdiff_t pairs = rope.dims / 2;
  for (ptrdiff_t i = 0; i < pairs; ++i) {
    const float factor = rope.freq_factors != nullptr ? rope.freq_factors[i] : 1.0F;
    const float angle = rope.freq_scale * (theta / factor);
    angles[2 * i] = std::cos(angle);
    angles[2 * i + 1] = std::sin(angle);
    theta *= theta_scale;
  }
}

namespace {

// The rotation of one head; compiled twice (RopeGeneric, RopeFma): with FMA the fmas are
// instructions where the generic build calls fmaf (Rope was 3.4% of a Q8_0 prompt's time here,
// fmaf 0.8%). The file is built with -ffp-contract=off, so the unfused steps stay unfused.
CH_OPS_INLINE void RopeBody(const RopeParams& rope, const float* angles, float* head) {
  const ptrdiff_t pairs = rope.dims / 2;
  // The three ways llama.cpp's binary rounds a rotation (see the header).
  auto scalar = [](float& x0, float& x1, float c, float s) {
    const float r0 = std::fma(x0, c, -(x1 * s));
    const float r1 = std::fma(x0, s, x1 * c);
    x0 = r0;
    x1 = r1;
  };
  auto vector = [](float& x0, float& x1, float c, float s) {
    const float r0 = std::fma(x0, c, -(x1 * s));
    const float r1 = std::fma(x1, c, x0 * s);
    x0 = r0;
    x1 = r1;
  };
  auto unfused = [](float& x0, float& x1, float c, float s) {
    float p[4] = {x0 * c, x1 * s, x0 * s, x1 * c};
    // Keeps the products rounded on their own: with FMA, GCC 12's vectorizer otherwise turns
    // these lines into vfmaddsub (a complex-multiply pattern) despite -ffp-contract=off.
    asm("" : "+x"(p[0]), "+x"(p[1]), "+x"(p[2]), "+x"(p[3]));
    x0 = p[0] - p[1];
    x1 = p[2] + p[3];
  };
  if (rope.style == RopeStyle::kNeox) {
    for (ptrdiff_t i = 0; i < pairs; ++i) {
      scalar(head[i], head[i + pairs], angles[2 * i], angles[2 * i + 1]);
    }
    return;
  }
  // NORM: GCC vectorized the pair loop for more than three pairs: eight pairs at a time, then
  // four (fused multiply-add-subtract), then the last one to three pairs unfused.
  if (pairs <= 3) {
    for (ptrdiff_t i = 0; i < pairs; ++i) {
      scalar(head[2 * i], head[2 * i + 1], angles[2 * i], angles[2 * i + 1]);
    }
    return;
  }
  const ptrdiff_t vectorized = pairs >= 8 ? pairs / 8 * 8 + (pairs % 8 >= 4 ? 4 : 0) : 4;
  for (ptrdiff_t i = 0; i < pairs; ++i) {
    if (i < vectorized) {
      vector(head[2 * i], head[2 * i + 1], angles[2 * i], angles[2 * i + 1]);
    } else {
      unfused(head[2 * i], head[2 * i + 1], angles[2 * i], angles[2 * i + 1]);
    }
  }
}

void RopeGeneric(const RopeParams& rope, const float* angles, float* head) {
  RopeBody(rope, angles, head);
}
[[gnu::target("avx2,fma")]] void RopeFma(const RopeParams& rope, const float* angles, float* head) {
  RopeBody(rope, angles, head);
}

}  // namespace

void Rope(const RopeParams& rope, const float* angles, float* head, KernelIsa isa) {
  HasFma(isa) ? RopeFma(rope, angles, head) : RopeGeneric(rope, angles, head);
}

void SoftMax(float* x, int64_t n, float scale, KernelIsa isa) {
  if (isa == KernelIsa::kAvx512 && KernelIsaSupported(isa)) {
    SoftMaxAvx512(x, n, scale);
    return;
  }
  HasFma(isa) ? SoftMaxFma(x, n, scale) : SoftMaxGeneric(x, n, scale);
}

void SiluMul(float* gate, const float* up, int64_t n, KernelIsa isa) {
  if (isa == KernelIsa::kAvx512 && KernelIsaSupported(isa)) {
    SiluMulAvx512(gate, up, n);
    return;
  }
  HasFma(isa) ? SiluMulFma(gate, up, n) : SiluMulGeneric(gate, up, n);
}

float LanesDotF16(const uint16_t* a, const float* b, int64_t n, KernelIsa isa) {
  if (isa == KernelIsa::kAvx512 && KernelIsaSupported(isa)) {
    return LanesDotF16Avx512(a, b, n);
  }
  if (isa != KernelIsa::kPortable && KernelIsaSupported(KernelIsa::kAvx2)) {
    return LanesDotF16Avx2(a, b, n);
  }
  return LanesDotF16Portable(a, b, n);
}

void DotsF16(const uint16_t* a, size_t a_stride, int64_t count, const float* b, int64_t n,
             KernelIsa isa, float* out) {
  const F16Table table{.a = a, .row_stride = a_stride, .block_stride = kF16Block};
  if (DotsF16Vector(table, count, b, n, isa, out)) {
    return;
  }
  const TypeKernels& f16 = GetTypeKernels(TensorType::kF16, isa);
  for (int64_t j = 0; j < count; ++j) {
    out[j] = f16.dot(reinterpret_cast<const std::byte*>(a + static_cast<size_t>(j) * a_stride),
                     reinterpret_cast<const std::byte*>(b), n);
  }
}

void DotsF16Blocks(const uint16_t* a, size_t block_stride, int64_t count, const float* b, int64_t n,
                   KernelIsa isa, uint16_t* scratch, float* out) {
  const F16Table table{.a = a, .row_stride = kF16Block, .block_stride = block_stride};
  if (DotsF16Vector(table, count, b, n, isa, out)) {
    return;
  }
  const TypeKernels& f16 = GetTypeKernels(TensorType::kF16, isa);
  for (int64_t j = 0; j < count; ++j) {
    for (int64_t i = 0; i < n; i += kF16Block) {
      std::memcpy(scratch + i, table.At(j, i),
                  static_cast<size_t>(std::min<int64_t>(kF16Block, n - i)) * sizeof(uint16_t));
    }
    out[j] = f16.dot(reinterpret_cast<const std::byte*>(scratch),
                     reinterpret_cast<const std::byte*>(b), n);
  }
}

void ToHalves(const float* x, int64_t n, uint16_t* out, KernelIsa isa) {
  if (isa != KernelIsa::kPortable && KernelIsaSupported(KernelIsa::kAvx2)) {
    ToHalvesF16c(x, n, out);
    return;
  }
  for (int64_t i = 0; i < n; ++i) {
    out[i] = FloatToHalf(x[i]);
  }
}

void LanesDotsF16(const uint16_t* a, size_t a_stride, int64_t count, const float* b,
                  size_t b_stride, int queries, int64_t n, KernelIsa isa, float* out,
                  size_t out_stride) {
  if (isa == KernelIsa::kAvx512 && KernelIsaSupported(isa)) {
    // Four queries at a time: four rows of accumulators and the 16 rows' lanes fit the stack
    // frame the reductions read, and more would not share the widening any further.
    for (; queries >= 4; queries -= 4, b += 4 * b_stride, out += 4 * out_stride) {
      LanesDotsF16Avx512<4>(a, a_stride, count, b, b_stride, n, out, out_stride);
    }
    switch (queries) {
      case 1:
        return LanesDotsF16Avx512<1>(a, a_stride, count, b, b_stride, n, out, out_stride);
      case 2:
        return LanesDotsF16Avx512<2>(a, a_stride, count, b, b_stride, n, out, out_stride);
      case 3:
        return LanesDotsF16Avx512<3>(a, a_stride, count, b, b_stride, n, out, out_stride);
      default:
        return;
    }
  }
  for (int q = 0; q < queries; ++q) {
    for (int64_t j = 0; j < count; ++j) {
      out[q * out_stride + static_cast<size_t>(j)] =
          LanesDotF16(a + static_cast<size_t>(j) * a_stride, b + q * b_stride, n, isa);
    }
  }
}

}  // namespace cellhouse::engine
