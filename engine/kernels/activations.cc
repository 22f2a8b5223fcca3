// Activation rows quantized to a weight type's partner, with the scales and rounding of the
// reference's x86 build (llama.cpp c392e5094, icelake: read from the shipped binaries), which
// differ from ggml's reference C code:
//   Q8_0 (quantize_row_q8_0, AVX path): amax = max |x| over the block; d = amax / 127 stored as
//     half (nearest even); id = 127 / amax (not 1 / d; 0 when amax is 0); q = x * id rounded to
//     nearest even (vroundps), converted with saturation (an out-of-range or NaN product gives
//     -128, as cvtps2dq and the saturating packs do).
//   Q8_1 (quantize_row_q8_1, AVX path): the same, and s = half(float(sum of q) * d) with the
//     unrounded float d.
//   Q8_K (quantize_row_q8_K, which is the C reference on x86): the signed value of largest
//     magnitude max (the first one); iscale = -127 / max; q = min(127, nearest_int(iscale * x))
//     (ties to even through the 1.5 * 2^23 trick), stored as int8; d = 1 / iscale; bsums from the
//     stored bytes. An all-zero block gets d = 0 and zero bytes (the reference leaves its bsums
//     unwritten; here they are 0).
//   F16: nearest even (ggml's software conversion, which agrees for every finite value).
//   BF16: nearest even, subnormals kept (GGML_FP32_TO_BF16).
//   Both are stored as the floats they exactly are (4 bytes a value: ActivationRowBytes).
// Compiled with -ffp-contract=off.
#include <cmath>
#include <cstring>
#include <limits>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

namespace {

// cvtps2dq of a value already rounded to an integer, then packssdw and packsswb.
int8_t SaturateToInt8(float rounded) {
  int32_t i = std::numeric_limits<int32_t>::min();
  if (rounded >= -2147483648.0F && rounded < 2147483648.0F) {
    i = static_cast<int32_t>(rounded);
  }
  return static_cast<int8_t>(i < -128 ? -128 : (i > 127 ? 127 : i));
}

struct Block8 {
  float d;       // unrounded
  uint32_t sum;  // of the rounded values before saturation, wrapping as the vector adds do
};

// One Q8_0 or Q8_1 block: the half d at out, the 32 bytes at qs.
Block8 QuantizeBlock8(const float* x, std::byte* out, std::byte* qs) {
  float amax = 0.0F;
  for (int k = 0; k < 32; ++k) {
    amax = std::fmax(amax, std::fabs(x[k]));
  }
  const float d = amax / 127.0F;
  const float id = amax == 0.0F ? 0.0F : 127.0F / amax;
  StoreU16(out, FloatToHalf(d));
  uint32_t sum = 0;
  for (int k = 0; k < 32; ++k) {
    const float r = std::nearbyint(x[k] * id);
    const int8_t q = SaturateToInt8(r);
    qs[k] = static_cast<std::byte>(q);
    int32_t full = std::numeric_limits<int32_t>::min();
    if (r >= -2147483648.0F && r < 2147483648.0F) {
      full = static_cast<int32_t>(r);
    }
    sum += static_cast<uint32_t>(full);
  }
  return {d, sum};
}

void RowsQ8Zero(const float* x, int32_t n, int64_t cols, std::byte* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_0).block_bytes;
  for (int64_t b = 0; b < static_cast<int64_t>(n) * (cols / 32); ++b) {
    std::byte* blk = out + static_cast<size_t>(b) * kBytes;
    QuantizeBlock8(x + 32 * b, blk + block::kQ8_0D, blk + block::kQ8_0Qs);
  }
}

void RowsQ8One(const float* x, int32_t n, int64_t cols, std::byte* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_1).block_bytes;
  for (int64_t b = 0; b < static_cast<int64_t>(n) * (cols / 32); ++b) {
    std::byte* blk = out + static_cast<size_t>(b) * kBytes;
    const Block8 q = QuantizeBlock8(x + 32 * b, blk + block::kQ8_1D, blk + block::kQ8_1Qs);
    StoreU16(blk + block::kQ8_1S,
             FloatToHalf(static_cast<float>(static_cast<int32_t>(q.sum)) * q.d));
  }
}

// ggml's nearest_int: round to nearest even through the bits of v + 1.5 * 2^23.
int32_t NearestInt(float v) {
  const float biased = v + 12582912.0F;
  int32_t i = 0;
  std::memcpy(&i, &biased, sizeof(i));
  return (i & 0x007FFFFF) - 0x00400000;
}

void RowsQ8K(const float* x, int32_t n, int64_t cols, std::byte* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_K).block_bytes;
  for (int64_t b = 0; b < static_cast<int64_t>(n) * (cols / 256); ++b) {
    const float* v = x + 256 * b;
    std::byte* blk = out + static_cast<size_t>(b) * kBytes;
    float amax = 0.0F;
    float max = 0.0F;
    for (int k = 0; k < 256; ++k) {
      const float a = std::fabs(v[k]);
      if (a > amax) {
        amax = a;
        max = v[k];
      }
    }
    auto* qs = reinterpret_cast<int8_t*>(blk + block::kQ8_KQs);
    if (amax == 0.0F) {
      StoreF32(blk + block::kQ8_KD, 0.0F);
      std::memset(qs, 0, 256);
      std::memset(blk + block::kQ8_KBsums, 0, 32);
      continue;
    }
    const float iscale = -127.0F / max;
    for (int k = 0; k < 256; ++k) {
      const int32_t q = NearestInt(iscale * v[k]);
      qs[k] = static_cast<int8_t>(q < 127 ? q : 127);
    }
    for (size_t s = 0; s < 16; ++s) {
      int32_t sum = 0;
      for (size_t k = 0; k < 16; ++k) {
        sum += qs[16 * s + k];
      }
      StoreU16(blk + block::kQ8_KBsums + 2 * s, static_cast<uint16_t>(sum));
    }
    StoreF32(blk + block::kQ8_KD, 1.0F / iscale);
  }
}

void RowsF32(const float* x, int32_t n, int64_t cols, std::byte* out) {
  std::memcpy(out, x, static_cast<size_t>(n) * static_cast<size_t>(cols) * sizeof(float));
}

// F16 and BF16 partners: each value rounded, then kept as the float it exactly is (see
// ActivationRowBytes), so the products read it without converting it at every use.
void RowsF16(const float* x, int32_t n, int64_t cols, std::byte* out) {
  for (int64_t i = 0; i < static_cast<int64_t>(n) * cols; ++i) {
    StoreF32(out + 4 * i, HalfToFloat(FloatToHalf(x[i])));
  }
}

void RowsBF16(const float* x, int32_t n, int64_t cols, std::byte* out) {
  for (int64_t i = 0; i < static_cast<int64_t>(n) * cols; ++i) {
    StoreF32(out + 4 * i, BF16ToFloat(FloatToBF16(x[i])));
  }
}

}  // namespace

QuantizeActivationsFn ActivationQuantizer(TensorType partner) {
  switch (partner) {
    case TensorType::kF32:
      return &RowsF32;
    case TensorType::kF16:
      return &RowsF16;
    case TensorType::kBF16:
      return &RowsBF16;
    case TensorType::kQ8_0:
      return &RowsQ8Zero;
    case TensorType::kQ8_1:
      return &RowsQ8One;
    case TensorType::kQ8_K:
      return &RowsQ8K;
    default:
      return nullptr;
  }
}

QuantizeActivationsFn ActivationQuantizerFor(TensorType partner, KernelIsa isa) {
  if (isa == KernelIsa::kAvx512 && partner == TensorType::kQ8_0) {
    return &RowsQ8ZeroAvx512;
  }
  if (isa == KernelIsa::kAvx512 && partner == TensorType::kQ8_1) {
    return &RowsQ8OneAvx512;
  }
  if (isa == KernelIsa::kAvx512 && partner == TensorType::kQ8_K) {
    return &RowsQ8KAvx512;
  }
  if (isa != KernelIsa::kPortable && partner == TensorType::kF16) {
    return &RoundRowsToHalfF16c;
  }
  return ActivationQuantizer(partner);
}

}  // namespace cellhouse::engine::internal
