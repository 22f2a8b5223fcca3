// Rows of a weight type back to floats: the token embedding lookup. Each value is computed by
// the float operations of llama.cpp's dequantize_row_* (ggml-quants.c, compiled without FMA), in
// the same order, so an embedding row matches the reference's bit for bit:
//   Q4_0, Q5_0, Q8_0   float(q) * d                   (exact)
//   Q4_1, Q5_1         float(q) * d + m
//   Q4_K, Q5_K         (d * float(scale)) * float(q) - dmin * float(min)
//   Q6_K               (d * float(scale)) * float(q - 32)
// Compiled with -ffp-contract=off, so nothing is fused.
#include <algorithm>
#include <cstring>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

namespace {

void RowF32(const std::byte* row, int64_t count, float* out) {
  std::memcpy(out, row, static_cast<size_t>(count) * sizeof(float));
}

void RowF16(const std::byte* row, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    out[i] = LoadHalf(row + 2 * i);
  }
}

void RowBF16(const std::byte* row, int64_t count, float* out) {
  for (int64_t i = 0; i < count; ++i) {
    out[i] = BF16ToFloat(LoadU16(row + 2 * i));
  }
}

// Q4_0, Q4_1, Q5_0, Q5_1: nibbles (and fifth bits) to values; kOffset subtracted, then
// float(q) * d (+ m).
template <size_t kBlockBytes, size_t kQs, int kQh, int kM, int32_t kOffset>
void RowNibbles(const std::byte* row, int64_t count, float* out) {
  for (int64_t b = 0; b < count / 32; ++b) {
    const std::byte* blk = row + static_cast<size_t>(b) * kBlockBytes;
    const float d = LoadHalf(blk);
    const uint32_t qh = kQh >= 0 ? LoadU32(blk + kQh) : 0U;
    float* y = out + 32 * b;
    for (int k = 0; k < 16; ++k) {
      const auto byte = static_cast<uint32_t>(blk[kQs + k]);
      const uint32_t lo = (byte & 0xFU) | (((qh >> k) & 1U) << 4);
      const uint32_t hi = (byte >> 4) | (((qh >> (k + 16)) & 1U) << 4);
      const float v0 = static_cast<float>(static_cast<int32_t>(lo) - kOffset) * d;
      const float v1 = static_cast<float>(static_cast<int32_t>(hi) - kOffset) * d;
      if constexpr (kM >= 0) {
        const float m = LoadHalf(blk + kM);
        y[k] = v0 + m;
        y[k + 16] = v1 + m;
      } else {
        y[k] = v0;
        y[k + 16] = v1;
      }
    }
  }
}

void RowQ8(const std::byte* row, int64_t count, float* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_0).block_bytes;
  for (int64_t b = 0; b < count / 32; ++b) {
    const std::byte* blk = row + static_cast<size_t>(b) * kBytes;
    const float d = LoadHalf(blk + block::kQ8_0D);
    for (int k = 0; k < 32; ++k) {
      out[32 * b + k] = static_cast<float>(static_cast<int8_t>(blk[block::kQ8_0Qs + k])) * d;
    }
  }
}

// Q4_K (kFive false) and Q5_K: one sub-block of 32 values (s = 2j + half).
template <bool kFive>
void SubBlockK45(const std::byte* blk, float d, float dmin, size_t s, float* y) {
  constexpr size_t kQs = kFive ? block::kQ5_KQs : block::kQ4_KQs;
  const auto* scales = reinterpret_cast<const uint8_t*>(blk + block::kQ4_KScales);
  const block::KScaleMin sm = block::UnpackKScaleMin(scales, static_cast<int>(s));
  const float d1 = d * static_cast<float>(sm.scale);
  const float m1 = dmin * static_cast<float>(sm.min);
  const size_t j = s / 2;
  const size_t half = s % 2;
  for (size_t l = 0; l < 32; ++l) {
    const auto byte = static_cast<uint32_t>(blk[kQs + 32 * j + l]);
    uint32_t q = half == 0 ? (byte & 0xFU) : (byte >> 4);
    if constexpr (kFive) {
      const auto high = static_cast<uint32_t>(blk[block::kQ5_KQh + l]);
      q |= ((high >> s) & 1U) << 4;
    }
    y[32 * s + l] = d1 * static_cast<float>(q) - m1;
  }
}

template <bool kFive>
void RowK45(const std::byte* row, int64_t count, float* out) {
  constexpr TensorType kType = kFive ? TensorType::kQ5_K : TensorType::kQ4_K;
  constexpr size_t kBytes = GetTypeInfo(kType).block_bytes;
  for (int64_t b = 0; b < count / 256; ++b) {
    const std::byte* blk = row + static_cast<size_t>(b) * kBytes;
    const float d = LoadHalf(blk + block::kQ4_KD);
    const float dmin = LoadHalf(blk + block::kQ4_KDmin);
    for (size_t s = 0; s < 8; ++s) {
      SubBlockK45<kFive>(blk, d, dmin, s, out + 256 * b);
    }
  }
}

void RowQ6K(const std::byte* row, int64_t count, float* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ6_K).block_bytes;
  for (int64_t b = 0; b < count / 256; ++b) {
    const std::byte* blk = row + static_cast<size_t>(b) * kBytes;
    const float d = LoadHalf(blk + block::kQ6_KD);
    float* y = out + 256 * b;
    for (size_t h = 0; h < 2; ++h) {
      for (size_t l = 0; l < 32; ++l) {
        const auto lo = static_cast<uint32_t>(blk[block::kQ6_KQl + 64 * h + l]);
        const auto lo2 = static_cast<uint32_t>(blk[block::kQ6_KQl + 64 * h + 32 + l]);
        const auto high = static_cast<uint32_t>(blk[block::kQ6_KQh + 32 * h + l]);
        const uint32_t q[4] = {
            (lo & 0xFU) | ((high & 3U) << 4), (lo2 & 0xFU) | (((high >> 2) & 3U) << 4),
            (lo >> 4) | (((high >> 4) & 3U) << 4), (lo2 >> 4) | (((high >> 6) & 3U) << 4)};
        for (size_t i = 0; i < 4; ++i) {
          const size_t value = 128 * h + 32 * i + l;
          const auto scale = static_cast<int8_t>(blk[block::kQ6_KScales + value / 16]);
          y[128 * h + 32 * i + l] =
              d * static_cast<float>(scale) * static_cast<float>(static_cast<int32_t>(q[i]) - 32);
        }
      }
    }
  }
}

}  // namespace

DequantizeFn Dequantizer(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return &RowF32;
    case TensorType::kF16:
      return &RowF16;
    case TensorType::kBF16:
      return &RowBF16;
    case TensorType::kQ4_0:
      return &RowNibbles<18, block::kQ4_0Qs, -1, -1, 8>;
    case TensorType::kQ4_1:
      return &RowNibbles<20, block::kQ4_1Qs, -1, block::kQ4_1M, 0>;
    case TensorType::kQ5_0:
      return &RowNibbles<22, block::kQ5_0Qs, block::kQ5_0Qh, -1, 16>;
    case TensorType::kQ5_1:
      return &RowNibbles<24, block::kQ5_1Qs, block::kQ5_1Qh, block::kQ5_1M, 0>;
    case TensorType::kQ8_0:
      return &RowQ8;
    case TensorType::kQ4_K:
      return &RowK45<false>;
    case TensorType::kQ5_K:
      return &RowK45<true>;
    case TensorType::kQ6_K:
      return &RowQ6K;
    default:
      return nullptr;
  }
}

}  // namespace cellhouse::engine::internal
