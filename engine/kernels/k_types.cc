// Products of the K-quants (Q4_K, Q5_K, Q6_K) with Q8_K activations in portable C++: the
// definition the AVX2 and AVX-512 variants (k_types_avx2.cc, k_types_avx512.cc) reproduce.
//
// What it mirrors: llama.cpp c392e5094's ggml_vec_dot_{q4_K,q5_K,q6_K}_q8_K, AVX2 paths, as its
// icelake build compiles them (GCC 12, -mfma; read from the shipped libggml-cpu-icelake.so).
// A block of 256 values is eight chunks of 32; lane j (0..7) of a block's integer vector sums,
// over the eight chunks, the products of the chunk's values 4j .. 4j+3, each chunk weighted by
// its sub-block scale(s). Per block, in order, with eight float lanes acc[] from +0:
//   Q4_K, Q5_K: d = x.d * half(w.d), dmin = -x.d * half(w.dmin)
//               L[j] = sum over chunks c of scale[c] * (sum of q * xq over values 32c+4j..+3)
//               acc[j] = fma(d, float(L[j]), acc[j])
//     Q4_K mins: four lanes accm[l] = fma(dmin, float(P[l]), accm[l]) with
//               P[l] = min[2l] * s[2l] + min[2l+1] * s[2l+1], s[i] = the int16 sum of x.bsums[2i]
//               and x.bsums[2i+1]; result hsum_float_8(acc) + ((accm0 + accm2) + (accm1 + accm3))
//     Q5_K mins: summs = fma(float(sum of min[i] * s[i]), dmin, summs) (GCC fused the written
//               multiply-add); result hsum_float_8(acc) + summs
//   Q6_K:       d = half(w.d) * x.d; chunk c's lanes 0-3 take scale[2c], lanes 4-7 scale[2c+1],
//               values q - 32; acc[j] = fma(d, float(L[j]), acc[j]); result hsum_float_8(acc)
// The integer sums are exact (no int16 step of the reference saturates for any input but
// activation bytes of -128 with 6-bit weights, which its quantizer never makes).
// Compiled with -ffp-contract=off: each fma is written.
#include <cmath>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

namespace {

constexpr int64_t kBlock = 256;

// The block's 256 values as the integers the products use (before Q6_K's - 32), and the scale of
// each chunk of 32 (Q6_K: two per chunk, for its values 0-15 and 16-31).
struct KBlock {
  int32_t q[kBlock];
  int32_t scale[16];
  int32_t min[8];
};

void UnpackQ4K(const std::byte* b, KBlock& k) {
  const auto* scales = reinterpret_cast<const uint8_t*>(b + block::kQ4_KScales);
  for (int s = 0; s < 8; ++s) {
    const block::KScaleMin sm = block::UnpackKScaleMin(scales, s);
    k.scale[s] = sm.scale;
    k.min[s] = sm.min;
  }
  for (int j = 0; j < 4; ++j) {
    for (int l = 0; l < 32; ++l) {
      const auto byte = static_cast<uint32_t>(b[block::kQ4_KQs + 32 * j + l]);
      k.q[64 * j + l] = static_cast<int32_t>(byte & 0xFU);
      k.q[64 * j + 32 + l] = static_cast<int32_t>(byte >> 4);
    }
  }
}

void UnpackQ5K(const std::byte* b, KBlock& k) {
  const auto* scales = reinterpret_cast<const uint8_t*>(b + block::kQ5_KScales);
  for (int s = 0; s < 8; ++s) {
    const block::KScaleMin sm = block::UnpackKScaleMin(scales, s);
    k.scale[s] = sm.scale;
    k.min[s] = sm.min;
  }
  for (int j = 0; j < 4; ++j) {
    for (int l = 0; l < 32; ++l) {
      const auto byte = static_cast<uint32_t>(b[block::kQ5_KQs + 32 * j + l]);
      const auto high = static_cast<uint32_t>(b[block::kQ5_KQh + l]);
      k.q[64 * j + l] = static_cast<int32_t>((byte & 0xFU) | (((high >> (2 * j)) & 1U) << 4));
      k.q[64 * j + 32 + l] =
          static_cast<int32_t>((byte >> 4) | (((high >> (2 * j + 1)) & 1U) << 4));
    }
  }
}

void UnpackQ6K(const std::byte* b, KBlock& k) {
  for (int s = 0; s < 16; ++s) {
    k.scale[s] = static_cast<int8_t>(b[block::kQ6_KScales + s]);
  }
  for (int h = 0; h < 2; ++h) {
    for (int l = 0; l < 32; ++l) {
      const auto lo = static_cast<uint32_t>(b[block::kQ6_KQl + 64 * h + l]);
      const auto lo2 = static_cast<uint32_t>(b[block::kQ6_KQl + 64 * h + 32 + l]);
      const auto high = static_cast<uint32_t>(b[block::kQ6_KQh + 32 * h + l]);
      int32_t* q = k.q + 128 * h + l;
      q[0] = static_cast<int32_t>((lo & 0xFU) | ((high & 3U) << 4));
      q[32] = static_cast<int32_t>((lo2 & 0xFU) | (((high >> 2) & 3U) << 4));
      q[64] = static_cast<int32_t>((lo >> 4) | (((high >> 4) & 3U) << 4));
      q[96] = static_cast<int32_t>((lo2 >> 4) | (((high >> 6) & 3U) << 4));
    }
  }
}

// L[j] for a Q4_K/Q5_K block: one scale per chunk.
void LanesK45(const KBlock& k, const int8_t* xq, int32_t* lanes) {
  for (int j = 0; j < 8; ++j) {
    int32_t lane = 0;
    for (int c = 0; c < 8; ++c) {
      int32_t chunk = 0;
      for (int i = 32 * c + 4 * j; i < 32 * c + 4 * j + 4; ++i) {
        chunk += k.q[i] * xq[i];
      }
      lane += k.scale[c] * chunk;
    }
    lanes[j] = lane;
  }
}

// The int16 sums of bsums pairs (the reference adds them with phaddw, which wraps).
void PairSums(const std::byte* x, int32_t* s) {
  for (int i = 0; i < 8; ++i) {
    const auto a = static_cast<int16_t>(LoadU16(x + block::kQ8_KBsums + 4 * i));
    const auto b = static_cast<int16_t>(LoadU16(x + block::kQ8_KBsums + 4 * i + 2));
    s[i] = static_cast<int16_t>(static_cast<uint16_t>(a) + static_cast<uint16_t>(b));
  }
}

template <TensorType kType>
float Dot(const std::byte* w, const std::byte* x, int64_t cols) {
  constexpr size_t kWBytes = GetTypeInfo(kType).block_bytes;
  constexpr size_t kXBytes = GetTypeInfo(TensorType::kQ8_K).block_bytes;
  float acc[8] = {};
  float accm[4] = {};
  float summs = 0.0F;
  KBlock k;
  int32_t lanes[8];
  for (int64_t b = 0; b < cols / kBlock; ++b) {
    const std::byte* wb = w + static_cast<size_t>(b) * kWBytes;
    const std::byte* xb = x + static_cast<size_t>(b) * kXBytes;
    const auto* xq = reinterpret_cast<const int8_t*>(xb + block::kQ8_KQs);
    const float xd = LoadF32(xb + block::kQ8_KD);
    if constexpr (kType == TensorType::kQ6_K) {
      UnpackQ6K(wb, k);
      const float d = LoadHalf(wb + block::kQ6_KD) * xd;
      for (int j = 0; j < 8; ++j) {
        int32_t lane = 0;
        for (int c = 0; c < 8; ++c) {
          int32_t chunk = 0;
          for (int i = 32 * c + 4 * j; i < 32 * c + 4 * j + 4; ++i) {
            chunk += (k.q[i] - 32) * xq[i];
          }
          lane += k.scale[2 * c + (j >= 4 ? 1 : 0)] * chunk;
        }
        acc[j] = std::fma(d, static_cast<float>(lane), acc[j]);
      }
    } else {
      if constexpr (kType == TensorType::kQ4_K) {
        UnpackQ4K(wb, k);
      } else {
        UnpackQ5K(wb, k);
      }
      const float d = xd * LoadHalf(wb + block::kQ4_KD);  // the same offsets in Q5_K
      const float dmin = -xd * LoadHalf(wb + block::kQ4_KDmin);
      LanesK45(k, xq, lanes);
      for (int j = 0; j < 8; ++j) {
        acc[j] = std::fma(d, static_cast<float>(lanes[j]), acc[j]);
      }
      int32_t s[8];
      PairSums(xb, s);
      if constexpr (kType == TensorType::kQ4_K) {
        for (int l = 0; l < 4; ++l) {
          const int32_t p = k.min[2 * l] * s[2 * l] + k.min[2 * l + 1] * s[2 * l + 1];
          accm[l] = std::fma(dmin, static_cast<float>(p), accm[l]);
        }
      } else {
        int32_t total = 0;
        for (int i = 0; i < 8; ++i) {
          total += k.min[i] * s[i];
        }
        summs = std::fma(static_cast<float>(total), dmin, summs);
      }
    }
  }
  if constexpr (kType == TensorType::kQ4_K) {
    return SumLanes8(acc) + ((accm[0] + accm[2]) + (accm[1] + accm[3]));
  } else if constexpr (kType == TensorType::kQ5_K) {
    return SumLanes8(acc) + summs;
  } else {
    return SumLanes8(acc);
  }
}

template <TensorType kType>
ProductFns Fns() {
  return {&Dot<kType>, &MatMulByDots<&Dot<kType>>};
}

}  // namespace

ProductFns KProductsPortable(TensorType type) {
  switch (type) {
    case TensorType::kQ4_K:
      return Fns<TensorType::kQ4_K>();
    case TensorType::kQ5_K:
      return Fns<TensorType::kQ5_K>();
    case TensorType::kQ6_K:
      return Fns<TensorType::kQ6_K>();
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
