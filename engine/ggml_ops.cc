#include "engine/ggml_ops.h"

#include <immintrin.h>

#include <bit>
#include <cmath>
#include <cstring>

#include "engine/kernels/half.h"

namespace cellhouse::engine {

namespace {

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

CH_OPS_INLINE void SoftMaxBody(float* x, int64_t n, float scale) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    max = x[i] > max ? x[i] : max;
  }
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int64_t l = 0; l < 16; ++l) {
      x[i + l] = ExpBody(x[i + l] - max);
    }
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

CH_OPS_INLINE void SiluMulBody(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int64_t l = i; l < i + 16; ++l) {
      // ggml_v_silu: x / (1 + exp(0 - x)).
      gate[l] = gate[l] / (1.0F + ExpBody(0.0F - gate[l])) * up[l];
    }
  }
  for (; i < n; ++i) {
    // ggml_silu_f32, for the values past the last run of 16.
    gate[i] = gate[i] / (1.0F + std::exp(-gate[i])) * up[i];
  }
}

void SoftMaxGeneric(float* x, int64_t n, float scale) { SoftMaxBody(x, n, scale); }
[[gnu::target("avx2,fma")]] void SoftMaxFma(float* x, int64_t n, float scale) {
  SoftMaxBody(x, n, scale);
}
void SiluMulGeneric(float* gate, const float* up, int64_t n) { SiluMulBody(gate, up, n); }
[[gnu::target("avx2,fma")]] void SiluMulFma(float* gate, const float* up, int64_t n) {
  SiluMulBody(gate, up, n);
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

[[gnu::target("avx512f")]] float LanesDotF16Avx512(const uint16_t* a, const float* b, int64_t n) {
  __m512 acc = _mm512_setzero_ps();
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256i h = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i));
    // The masked form: GCC 12 warns of an uninitialized register inside the plain one.
    acc = _mm512_fmadd_ps(_mm512_maskz_cvtph_ps(static_cast<__mmask16>(0xFFFF), h),
                          _mm512_loadu_ps(b + i), acc);
  }
  float lanes[16];
  _mm512_storeu_ps(lanes, acc);
  for (; i < n; ++i) {
    lanes[i % 16] = std::fma(HalfToFloat(a[i]), b[i], lanes[i % 16]);
  }
  return ReduceAdd16(lanes);
}

bool HasFma(KernelIsa isa) { return isa != KernelIsa::kPortable && KernelIsaSupported(isa); }

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

void Rope(const RopeParams& rope, const float* angles, float* head) {
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
    const float r0 = x0 * c - x1 * s;
    const float r1 = x0 * s + x1 * c;
    x0 = r0;
    x1 = r1;
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

void SoftMax(float* x, int64_t n, float scale, KernelIsa isa) {
  HasFma(isa) ? SoftMaxFma(x, n, scale) : SoftMaxGeneric(x, n, scale);
}

void SiluMul(float* gate, const float* up, int64_t n, KernelIsa isa) {
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

}  // namespace cellhouse::engine
