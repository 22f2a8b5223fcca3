// Weight quantizers: floats to ggml blocks, for `cellmodel convert`.
//
// Q8_0, Q4_0, Q4_1, Q5_0, Q5_1 follow ggml's reference quantizers (quantize_row_*_ref, which is
// what llama-quantize runs for these types without an importance matrix), so their bytes are
// the ones llama-quantize would write:
//   Q8_0: d = amax / 127, q = roundf(x / d)
//   Q4_0, Q5_0: d = max / -8 (or -16) for the value of largest magnitude max, q = trunc(x / d +
//     8.5 (16.5)) capped at 15 (31)
//   Q4_1, Q5_1: d = (max - min) / 15 (31), m = min, q = trunc((x - min) / d + 0.5)
// The K-quants use a simpler search than llama-quantize's make_qkx2_quants/make_qx_quants:
//   Q4_K, Q5_K: each sub-block of 32 gets scale (max - min') / 15 (31) and offset -min' with
//     min' = min(0, min); the eight scales and offsets are coded in 6 bits against the block's
//     d = max scale / 63 and dmin = max offset / 63; values are then rounded against the coded
//     (half-precision, 6-bit) scale and offset actually stored.
//   Q6_K: each sub-block of 16 gets scale max / -32 (max: its value of largest magnitude), coded in
//     8 bits against d = max scale / -128 (ggml's convention); values rounded against the coded
//     scale, in [-32, 31].
// Every block is valid: llama.cpp's dequantize_row_* decodes it to what Dequantizer gives here.
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine {

namespace {

using internal::LoadHalf;
using internal::StoreU16;

// The value of largest magnitude (the first one), as the reference quantizers find it.
float SignedMax(const float* x, int count) {
  float amax = 0.0F;
  float max = 0.0F;
  for (int k = 0; k < count; ++k) {
    if (amax < std::fabs(x[k])) {
      amax = std::fabs(x[k]);
      max = x[k];
    }
  }
  return max;
}

void BlockQ8(const float* x, std::byte* out) {
  float amax = 0.0F;
  for (int k = 0; k < 32; ++k) {
    amax = std::max(amax, std::fabs(x[k]));
  }
  const float d = amax / 127.0F;
  const float id = d != 0.0F ? 1.0F / d : 0.0F;
  StoreU16(out + block::kQ8_0D, FloatToHalf(d));
  for (int k = 0; k < 32; ++k) {
    out[block::kQ8_0Qs + k] = static_cast<std::byte>(static_cast<int8_t>(std::round(x[k] * id)));
  }
}

// Q4_0 (kFive false) and Q5_0.
template <bool kFive>
void BlockSymmetric(const float* x, std::byte* out) {
  constexpr float kLevels = kFive ? -16.0F : -8.0F;
  constexpr float kBias = kFive ? 16.5F : 8.5F;
  constexpr int kTop = kFive ? 31 : 15;
  const float d = SignedMax(x, 32) / kLevels;
  const float id = d != 0.0F ? 1.0F / d : 0.0F;
  StoreU16(out, FloatToHalf(d));  // d is the first field of both
  const size_t qs = kFive ? block::kQ5_0Qs : block::kQ4_0Qs;
  uint32_t qh = 0;
  for (int k = 0; k < 16; ++k) {
    const int lo = std::min(kTop, static_cast<int>(static_cast<int8_t>(x[k] * id + kBias)));
    const int hi = std::min(kTop, static_cast<int>(static_cast<int8_t>(x[k + 16] * id + kBias)));
    out[qs + k] = static_cast<std::byte>((lo & 0xF) | ((hi & 0xF) << 4));
    qh |= static_cast<uint32_t>((lo >> 4) & 1) << k;
    qh |= static_cast<uint32_t>((hi >> 4) & 1) << (k + 16);
  }
  if constexpr (kFive) {
    std::memcpy(out + block::kQ5_0Qh, &qh, sizeof(qh));
  }
}

// Q4_1 (kFive false) and Q5_1.
template <bool kFive>
void BlockAffine(const float* x, std::byte* out) {
  constexpr int kTop = kFive ? 31 : 15;
  float min = x[0];
  float max = x[0];
  for (int k = 1; k < 32; ++k) {
    min = std::min(min, x[k]);
    max = std::max(max, x[k]);
  }
  const float d = (max - min) / static_cast<float>(kTop);
  const float id = d != 0.0F ? 1.0F / d : 0.0F;
  StoreU16(out, FloatToHalf(d));
  StoreU16(out + 2, FloatToHalf(min));  // m follows d in both
  const size_t qs = kFive ? block::kQ5_1Qs : block::kQ4_1Qs;
  uint32_t qh = 0;
  // ggml truncates v + 0.5 to an integer; v is never negative, so that is floor(v + 0.5).
  const auto level = [min, id](float v) {
    const int q = static_cast<int>(std::floor((v - min) * id + 0.5F));
    return q < kTop ? q : kTop;
  };
  for (int k = 0; k < 16; ++k) {
    const int lo = level(x[k]);
    const int hi = level(x[k + 16]);
    out[qs + k] = static_cast<std::byte>((lo & 0xF) | ((hi & 0xF) << 4));
    qh |= static_cast<uint32_t>((lo >> 4) & 1) << k;
    qh |= static_cast<uint32_t>((hi >> 4) & 1) << (k + 16);
  }
  if constexpr (kFive) {
    std::memcpy(out + block::kQ5_1Qh, &qh, sizeof(qh));
  }
}

int Nearest(float v, int lo, int hi) {
  const float r = std::nearbyint(v);
  if (!(r >= static_cast<float>(lo))) {
    return lo;
  }
  return r > static_cast<float>(hi) ? hi : static_cast<int>(r);
}

// Q4_K (kFive false) and Q5_K.
template <bool kFive>
void BlockK45(const float* x, std::byte* out) {
  constexpr int kTop = kFive ? 31 : 15;
  float scale[8];
  float offset[8];
  for (size_t s = 0; s < 8; ++s) {
    float lo = 0.0F;
    float hi = x[32 * s];
    for (size_t k = 0; k < 32; ++k) {
      lo = std::min(lo, x[32 * s + k]);
      hi = std::max(hi, x[32 * s + k]);
    }
    scale[s] = std::max(0.0F, hi - lo) / static_cast<float>(kTop);
    offset[s] = -lo;
  }
  const float max_scale = *std::max_element(scale, scale + 8);
  const float max_offset = *std::max_element(offset, offset + 8);
  const uint16_t d_half = FloatToHalf(max_scale / 63.0F);
  const uint16_t dmin_half = FloatToHalf(max_offset / 63.0F);
  const float d = HalfToFloat(d_half);
  const float dmin = HalfToFloat(dmin_half);
  uint8_t sc[8];
  uint8_t mn[8];
  for (int s = 0; s < 8; ++s) {
    sc[s] = static_cast<uint8_t>(d > 0.0F ? Nearest(scale[s] / d, 0, 63) : 0);
    mn[s] = static_cast<uint8_t>(dmin > 0.0F ? Nearest(offset[s] / dmin, 0, 63) : 0);
  }
  StoreU16(out + block::kQ4_KD, d_half);  // the same offsets in Q5_K
  StoreU16(out + block::kQ4_KDmin, dmin_half);
  auto* scales = reinterpret_cast<uint8_t*>(out + block::kQ4_KScales);
  for (int s = 0; s < 4; ++s) {
    scales[s] = static_cast<uint8_t>(sc[s] | ((sc[s + 4] >> 4) << 6));
    scales[s + 4] = static_cast<uint8_t>(mn[s] | ((mn[s + 4] >> 4) << 6));
    scales[s + 8] = static_cast<uint8_t>((sc[s + 4] & 0xF) | ((mn[s + 4] & 0xF) << 4));
  }
  const size_t qs = kFive ? block::kQ5_KQs : block::kQ4_KQs;
  std::memset(out + qs, 0, 128);
  if constexpr (kFive) {
    std::memset(out + block::kQ5_KQh, 0, 32);
  }
  for (size_t s = 0; s < 8; ++s) {
    // The coded scale and offset, as dequantization computes them.
    const float ds = d * static_cast<float>(sc[s]);
    const float ms = dmin * static_cast<float>(mn[s]);
    const size_t j = s / 2;
    const size_t high_nibble = s % 2;
    for (size_t l = 0; l < 32; ++l) {
      const int q = ds > 0.0F ? Nearest((x[32 * s + l] + ms) / ds, 0, kTop) : 0;
      auto& byte = out[qs + 32 * j + l];
      byte |= static_cast<std::byte>((q & 0xF) << (4 * high_nibble));
      if constexpr (kFive) {
        out[block::kQ5_KQh + l] |= static_cast<std::byte>(((q >> 4) & 1) << (2 * j + high_nibble));
      }
    }
  }
}

void BlockQ6K(const float* x, std::byte* out) {
  float scale[16];
  float max_scale = 0.0F;
  float max_abs = 0.0F;
  for (size_t s = 0; s < 16; ++s) {
    scale[s] = SignedMax(x + 16 * s, 16) / -32.0F;
    if (std::fabs(scale[s]) > max_abs) {
      max_abs = std::fabs(scale[s]);
      max_scale = scale[s];
    }
  }
  std::memset(out, 0, GetTypeInfo(TensorType::kQ6_K).block_bytes);
  if (max_abs == 0.0F) {
    return;  // all zeros: d = 0 and every value 0 - 32 times 0
  }
  const float iscale = -128.0F / max_scale;
  const uint16_t d_half = FloatToHalf(1.0F / iscale);
  const float d = HalfToFloat(d_half);
  StoreU16(out + block::kQ6_KD, d_half);
  for (size_t s = 0; s < 16; ++s) {
    const int sc = Nearest(iscale * scale[s], -128, 127);
    out[block::kQ6_KScales + s] = static_cast<std::byte>(static_cast<uint8_t>(sc & 0xFF));
    const float ds = d * static_cast<float>(sc);
    for (size_t k = 0; k < 16; ++k) {
      const size_t value = 16 * s + k;
      const int q = (ds != 0.0F ? Nearest(x[value] / ds, -32, 31) : 0) + 32;
      const size_t h = value / 128;
      const size_t i = (value % 128) / 32;
      const size_t l = value % 32;
      auto& lo = out[block::kQ6_KQl + 64 * h + 32 * (i % 2) + l];
      lo |= static_cast<std::byte>((q & 0xF) << (i >= 2 ? 4 : 0));
      out[block::kQ6_KQh + 32 * h + l] |= static_cast<std::byte>(((q >> 4) & 3) << (2 * i));
    }
  }
}

template <int kBlock, size_t kBytes, void (*kFn)(const float*, std::byte*)>
void Blocks(const float* x, int64_t count, std::byte* out) {
  for (int64_t b = 0; b < count / kBlock; ++b) {
    kFn(x + kBlock * b, out + static_cast<size_t>(b) * kBytes);
  }
}

}  // namespace

bool QuantizeWeights(TensorType type, const float* x, int64_t count, std::byte* out) {
  const TypeInfo* info = FindTypeInfo(static_cast<uint32_t>(type));
  if (info == nullptr || !info->weight || info->block_size <= 0 || count % info->block_size != 0) {
    return false;
  }
  switch (type) {
    case TensorType::kF32:
      std::memcpy(out, x, static_cast<size_t>(count) * sizeof(float));
      return true;
    case TensorType::kF16:
      for (int64_t i = 0; i < count; ++i) {
        StoreU16(out + 2 * i, FloatToHalf(x[i]));
      }
      return true;
    case TensorType::kBF16:
      for (int64_t i = 0; i < count; ++i) {
        StoreU16(out + 2 * i, internal::FloatToBF16(x[i]));
      }
      return true;
    case TensorType::kQ8_0:
      Blocks<32, 34, &BlockQ8>(x, count, out);
      return true;
    case TensorType::kQ4_0:
      Blocks<32, 18, &BlockSymmetric<false>>(x, count, out);
      return true;
    case TensorType::kQ5_0:
      Blocks<32, 22, &BlockSymmetric<true>>(x, count, out);
      return true;
    case TensorType::kQ4_1:
      Blocks<32, 20, &BlockAffine<false>>(x, count, out);
      return true;
    case TensorType::kQ5_1:
      Blocks<32, 24, &BlockAffine<true>>(x, count, out);
      return true;
    case TensorType::kQ4_K:
      Blocks<256, 144, &BlockK45<false>>(x, count, out);
      return true;
    case TensorType::kQ5_K:
      Blocks<256, 176, &BlockK45<true>>(x, count, out);
      return true;
    case TensorType::kQ6_K:
      Blocks<256, 210, &BlockQ6K>(x, count, out);
      return true;
    default:
      return false;
  }
}

}  // namespace cellhouse::engine
