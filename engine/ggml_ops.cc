#include "engine/ggml_ops.h"

#include <cmath>
#include <cstring>

namespace cellhouse::engine {

namespace {

// What ggml_v_expf does when |n| > 192: the result is 0 or infinity outright.
constexpr float kExpSpecial = 192.0F;

// ggml_v_silu for one lane: x / (1 + exp(0 - x)).
float GgmlSilu(float x) { return x / (1.0F + GgmlExp(0.0F - x)); }

// ggml_silu_f32, for the values past the last run of 16.
float LibmSilu(float x) { return x / (1.0F + std::exp(-x)); }

}  // namespace

float GgmlExp(float x) {
  // n = round(x / ln 2) by the 1.5 * 2^23 trick; b = x - n ln 2 in two parts; a degree-5
  // polynomial in b evaluated as ggml's intrinsics nest it; then 2^n by scalef.
  const float r = 0x1.8p23F;
  const float z = std::fma(x, 0x1.715476p+0F, r);
  const float n = z - r;
  const float b = std::fma(-n, 0x1.7f7d1cp-20F, std::fma(-n, 0x1.62e4p-1F, x));
  const float u = b * b;
  const float j = std::fma(std::fma(std::fma(0x1.0e4020p-7F, b, 0x1.573e2ep-5F), u,
                                    std::fma(0x1.555e66p-3F, b, 0x1.fffdb6p-2F)),
                           u, std::fma(0x1.ffffecp-1F, b, 1.0F));
  if (std::isnan(n)) {
    return n;
  }
  if (std::fabs(n) > kExpSpecial) {
    return n <= 0.0F ? 0.0F : INFINITY;
  }
  // _mm512_scalef_ps(j, n) = j * 2^floor(n), rounded once (n is a whole number here).
  return std::ldexp(j, static_cast<int>(n));
}

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
  for (int32_t i = 0; i < rope.dims / 2; ++i) {
    const float factor = rope.freq_factors != nullptr ? rope.freq_factors[i] : 1.0F;
    const float angle = rope.freq_scale * (theta / factor);
    angles[2 * i] = std::cos(angle);
    angles[2 * i + 1] = std::sin(angle);
    theta *= theta_scale;
  }
}

void Rope(const RopeParams& rope, const float* angles, float* head) {
  const int32_t pairs = rope.dims / 2;
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
    for (int32_t i = 0; i < pairs; ++i) {
      scalar(head[i], head[i + pairs], angles[2 * i], angles[2 * i + 1]);
    }
    return;
  }
  // NORM: GCC vectorized the pair loop for more than three pairs: eight pairs at a time, then
  // four (fused multiply-add-subtract), then the last one to three pairs unfused.
  if (pairs <= 3) {
    for (int32_t i = 0; i < pairs; ++i) {
      scalar(head[2 * i], head[2 * i + 1], angles[2 * i], angles[2 * i + 1]);
    }
    return;
  }
  const int32_t vectorized = pairs >= 8 ? pairs / 8 * 8 + (pairs % 8 >= 4 ? 4 : 0) : 4;
  for (int32_t i = 0; i < pairs; ++i) {
    if (i < vectorized) {
      vector(head[2 * i], head[2 * i + 1], angles[2 * i], angles[2 * i + 1]);
    } else {
      unfused(head[2 * i], head[2 * i + 1], angles[2 * i], angles[2 * i + 1]);
    }
  }
}

void SoftMax(float* x, int64_t n, float scale) {
  float max = -INFINITY;
  for (int64_t i = 0; i < n; ++i) {
    x[i] *= scale;
    max = x[i] > max ? x[i] : max;
  }
  double sum = 0.0;
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int64_t l = 0; l < 16; ++l) {
      x[i + l] = GgmlExp(x[i + l] - max);
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

void SiluMul(float* gate, const float* up, int64_t n) {
  int64_t i = 0;
  for (; i + 16 <= n; i += 16) {
    for (int64_t l = i; l < i + 16; ++l) {
      gate[l] = GgmlSilu(gate[l]) * up[l];
    }
  }
  for (; i < n; ++i) {
    gate[i] = LibmSilu(gate[i]) * up[i];
  }
}

}  // namespace cellhouse::engine
