// What every int8 kernel variant shares, so that the variants cannot drift apart: the scale of
// an activation group, the rounding, the unaligned 4-byte load. Internal to kernels_q8*.cc.
//
//   const Q8GroupScale s = GroupScale(amax);       // amax: the group's largest |value|, finite
//   float r = (v * s.inverse + kRoundMagic) - kRoundMagic;   // as two separate operations
#ifndef CELLHOUSE_ENGINE_KERNELS_KERNELS_Q8_COMMON_H_
#define CELLHOUSE_ENGINE_KERNELS_KERNELS_Q8_COMMON_H_

#include <cstdint>
#include <cstring>
#include <limits>

#include "engine/kernels/q8_matrix.h"

namespace cellhouse::engine::internal {

struct Q8GroupScale {
  float scale;    // value ≈ scale × q
  float inverse;  // q = round(value × inverse)
};

// One division each, in every variant: scale = amax / 127 and inverse = 127 / amax (not 1 /
// scale), so that |value × inverse| <= 127 × (1 + 2^-23) < 127.5 and q never leaves ±127.
inline Q8GroupScale GroupScale(float amax) {
  const auto max = static_cast<float>(kQ8Max);
  return {amax / max, amax > 0.0F ? max / amax : 0.0F};
}

// A group holding an infinity or NaN quantizes to zeros with a NaN scale, so the products it
// enters become NaN, as they would in fp32.
inline constexpr float kNonFiniteScale = std::numeric_limits<float>::quiet_NaN();

// 1.5 × 2^23: for |v| < 2^22, (v + kRoundMagic) - kRoundMagic is v rounded to the nearest
// integer, ties to even, in plain IEEE arithmetic that scalar and vector code perform alike.
inline constexpr float kRoundMagic = 12582912.0F;

// The dot products add 128 to each weight byte to make it unsigned (vpdpbusd multiplies
// unsigned by signed bytes); Σ (w + 128) q = Σ w q + 128 Σ q, and 128 Σ q is offset_sum.
inline constexpr int32_t kQ8Offset = 128;

inline int32_t Load32(const int8_t* p) {
  int32_t v = 0;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

inline float LoadFloat(const std::byte* p) {
  float v = 0;
  std::memcpy(&v, p, sizeof(v));
  return v;
}

}  // namespace cellhouse::engine::internal

#endif  // CELLHOUSE_ENGINE_KERNELS_KERNELS_Q8_COMMON_H_
