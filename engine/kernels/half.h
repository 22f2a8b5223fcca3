// IEEE 754 half precision (binary16) in portable C++: the KV cache of an int8 model stores its
// keys and values this way (run_state.h), and these are the conversions the scalar kernels use.
// The vector kernels use F16C / AVX-512 (vcvtps2ph with round-to-nearest-even, vcvtph2ps), which
// give the same bits for every finite value and infinity (tested); a NaN stays a NaN.
//
//   uint16_t h = FloatToHalf(0.1F);   // 0x2E66, rounded to nearest, ties to even
//   float f = HalfToFloat(h);         // 0.0999755859375, exact
#ifndef CELLHOUSE_ENGINE_KERNELS_HALF_H_
#define CELLHOUSE_ENGINE_KERNELS_HALF_H_

#include <cstdint>
#include <cstring>

namespace cellhouse::engine {

// Rounds to the nearest half, ties to even: magnitudes from 65520 up become infinity, those
// below 2^-25 become zero, and between 2^-24 and 2^-14 the result is subnormal. A NaN keeps its
// sign and the top bits of its payload, and is made quiet.
inline uint16_t FloatToHalf(float value) {
  uint32_t bits = 0;
  std::memcpy(&bits, &value, sizeof(bits));
  const auto sign = static_cast<uint16_t>((bits >> 16) & 0x8000U);
  const uint32_t magnitude = bits & 0x7FFFFFFFU;
  if (magnitude > 0x7F800000U) {
    return static_cast<uint16_t>(sign | 0x7E00U | ((magnitude >> 13) & 0x03FFU));
  }
  const int32_t exponent = static_cast<int32_t>(magnitude >> 23) - 127;
  if (exponent > 15) {
    return static_cast<uint16_t>(sign | 0x7C00U);  // too large, or infinite
  }
  // The 24-bit significand, implicit bit included, loses `shift` bits: 13 for a normal half,
  // more for a subnormal one (whose exponent stays at -14).
  const uint32_t significand = (magnitude & 0x007FFFFFU) | 0x00800000U;
  const int32_t shift = exponent >= -14 ? 13 : 13 + (-14 - exponent);
  if (shift > 24) {
    return sign;  // below half the smallest subnormal (float subnormals and zero included)
  }
  uint32_t kept = significand >> shift;
  const uint32_t rest = significand & ((1U << shift) - 1U);
  const uint32_t halfway = 1U << (shift - 1);
  if (rest > halfway || (rest == halfway && (kept & 1U) != 0)) {
    ++kept;  // a carry out of the significand moves into the exponent, as it should
  }
  if (exponent < -14) {
    return static_cast<uint16_t>(sign | kept);  // subnormal (0x400 once rounded up: the smallest
                                                // normal, which is what those bits mean)
  }
  const auto biased = static_cast<uint32_t>(exponent + 15);
  return static_cast<uint16_t>(sign | ((biased << 10) + kept - 0x400U));
}

// Exact: every half is a float.
inline float HalfToFloat(uint16_t half) {
  const uint32_t sign = static_cast<uint32_t>(half & 0x8000U) << 16;
  const uint32_t exponent = (half >> 10) & 0x1FU;
  const uint32_t mantissa = half & 0x03FFU;
  uint32_t bits = 0;
  if (exponent == 0x1FU) {
    bits = sign | 0x7F800000U | (mantissa << 13);  // infinity, or NaN with its payload
  } else if (exponent != 0) {
    bits = sign | ((exponent + 112U) << 23) | (mantissa << 13);
  } else {
    // Zero or subnormal: mantissa × 2^-24, exact in float.
    const float magnitude = static_cast<float>(mantissa) * 5.9604644775390625e-8F;
    return sign != 0 ? -magnitude : magnitude;
  }
  float value = 0;
  std::memcpy(&value, &bits, sizeof(value));
  return value;
}

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_KERNELS_HALF_H_
