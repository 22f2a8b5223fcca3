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
//
// DotOrder::kBlockSums (a prompt's rows of Q4_K, Q5_K and Q6_K: cellhouse's own, type_kernels.h):
// per block the exact integer sums meet the float work once, with one float per (row, token):
//   Q4_K, Q5_K: S = sum of the lanes L[j] above (the whole block's scaled products), M = sum
//         over the eight chunks of min[i] * s[i] (s as above), d = half(w.d) * x.d,
//         m = -half(w.dmin) * x.d (negated before the multiply);
//         acc = fma(float(S), d, acc), then acc = fma(float(M), m, acc)
//   Q6_K: S = sum of the lanes L[j] (values q - 32, the sixteen scales), d = half(w.d) * x.d;
//         acc = fma(float(S), d, acc)
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

// Q4_K (kFive false) and Q5_K.
template <bool kFive>
void UnpackK45(const std::byte* b, KBlock& k) {
  constexpr size_t kQs = kFive ? block::kQ5_KQs : block::kQ4_KQs;
  const auto* scales = reinterpret_cast<const uint8_t*>(b + block::kQ4_KScales);
  for (int s = 0; s < 8; ++s) {
    const block::KScaleMin sm = block::UnpackKScaleMin(scales, s);
    k.scale[s] = sm.scale;
    k.min[s] = sm.min;
  }
  for (size_t j = 0; j < 4; ++j) {
    for (size_t l = 0; l < 32; ++l) {
      const auto byte = static_cast<uint32_t>(b[kQs + 32 * j + l]);
      uint32_t lo = byte & 0xFU;
      uint32_t hi = byte >> 4;
      if constexpr (kFive) {
        const auto high = static_cast<uint32_t>(b[block::kQ5_KQh + l]);
        lo |= ((high >> (2 * j)) & 1U) << 4;
        hi |= ((high >> (2 * j + 1)) & 1U) << 4;
      }
      k.q[64 * j + l] = static_cast<int32_t>(lo);
      k.q[64 * j + 32 + l] = static_cast<int32_t>(hi);
    }
  }
}

void UnpackQ6K(const std::byte* b, KBlock& k) {
  for (size_t s = 0; s < 16; ++s) {
    k.scale[s] = SignedByte(b[block::kQ6_KScales + s]);
  }
  for (size_t h = 0; h < 2; ++h) {
    for (size_t l = 0; l < 32; ++l) {
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

// L[j]: over the 8 chunks of 32, the products of values 32c + 4j .. +3 (minus 32 first for
// Q6_K), each chunk weighted by its scale (Q6_K: scale 2c for lanes 0-3, 2c + 1 for 4-7).
template <bool kSix>
void Lanes(const KBlock& k, const int8_t* xq, int32_t* lanes) {
  for (size_t j = 0; j < 8; ++j) {
    int32_t lane = 0;
    for (size_t c = 0; c < 8; ++c) {
      int32_t chunk = 0;
      for (size_t i = 32 * c + 4 * j; i < 32 * c + 4 * j + 4; ++i) {
        chunk += (kSix ? k.q[i] - 32 : k.q[i]) * xq[i];
      }
      lane += k.scale[kSix ? 2 * c + (j >= 4 ? 1 : 0) : c] * chunk;
    }
    lanes[j] = lane;
  }
}

// The int16 sums of bsums pairs (the reference adds them with phaddw, which wraps).
void PairSums(const std::byte* x, int32_t* s) {
  for (size_t i = 0; i < 8; ++i) {
    const uint16_t a = LoadU16(x + block::kQ8_KBsums + 4 * i);
    const uint16_t b = LoadU16(x + block::kQ8_KBsums + 4 * i + 2);
    s[i] = static_cast<int16_t>(static_cast<uint16_t>(a + b));
  }
}

// The float lanes of one dot product.
struct KAccumulators {
  float acc[8] = {};
  float accm[4] = {};
  float summs = 0.0F;
};

template <TensorType kType>
void Block(const std::byte* wb, const std::byte* xb, KAccumulators& a) {
  const auto* xq = reinterpret_cast<const int8_t*>(xb + block::kQ8_KQs);
  const float xd = LoadF32(xb + block::kQ8_KD);
  KBlock k;
  int32_t lanes[8];
  if constexpr (kType == TensorType::kQ6_K) {
    UnpackQ6K(wb, k);
    Lanes<true>(k, xq, lanes);
    const float d = LoadHalf(wb + block::kQ6_KD) * xd;
    for (size_t j = 0; j < 8; ++j) {
      a.acc[j] = std::fma(d, static_cast<float>(lanes[j]), a.acc[j]);
    }
    return;
  }
  UnpackK45<kType == TensorType::kQ5_K>(wb, k);
  Lanes<false>(k, xq, lanes);
  const float d = xd * LoadHalf(wb + block::kQ4_KD);  // the same offsets in Q5_K
  const float dmin = -xd * LoadHalf(wb + block::kQ4_KDmin);
  for (size_t j = 0; j < 8; ++j) {
    a.acc[j] = std::fma(d, static_cast<float>(lanes[j]), a.acc[j]);
  }
  int32_t s[8];
  PairSums(xb, s);
  if constexpr (kType == TensorType::kQ4_K) {
    for (size_t l = 0; l < 4; ++l) {
      const int32_t p = k.min[2 * l] * s[2 * l] + k.min[2 * l + 1] * s[2 * l + 1];
      a.accm[l] = std::fma(dmin, static_cast<float>(p), a.accm[l]);
    }
  } else {
    int32_t total = 0;
    for (size_t i = 0; i < 8; ++i) {
      total += k.min[i] * s[i];
    }
    a.summs = std::fma(static_cast<float>(total), dmin, a.summs);
  }
}

template <TensorType kType>
float Dot(const std::byte* w, const std::byte* x, int64_t cols) {
  constexpr size_t kWBytes = GetTypeInfo(kType).block_bytes;
  constexpr size_t kXBytes = GetTypeInfo(TensorType::kQ8_K).block_bytes;
  KAccumulators a;
  for (int64_t b = 0; b < cols / kBlock; ++b) {
    Block<kType>(w + static_cast<size_t>(b) * kWBytes, x + static_cast<size_t>(b) * kXBytes, a);
  }
  if constexpr (kType == TensorType::kQ4_K) {
    return SumLanes8(a.acc) + ((a.accm[0] + a.accm[2]) + (a.accm[1] + a.accm[3]));
  } else if constexpr (kType == TensorType::kQ5_K) {
    return SumLanes8(a.acc) + a.summs;
  } else {
    return SumLanes8(a.acc);
  }
}

// DotOrder::kBlockSums: Q4_K, Q5_K and Q6_K.
template <TensorType kType>
float DotBlockSums(const std::byte* w, const std::byte* x, int64_t cols) {
  static_assert(kType == TensorType::kQ4_K || kType == TensorType::kQ5_K ||
                kType == TensorType::kQ6_K);
  constexpr size_t kWBytes = GetTypeInfo(kType).block_bytes;
  constexpr size_t kXBytes = GetTypeInfo(TensorType::kQ8_K).block_bytes;
  float acc = 0.0F;
  for (int64_t b = 0; b < cols / kBlock; ++b) {
    const std::byte* wb = w + static_cast<size_t>(b) * kWBytes;
    const std::byte* xb = x + static_cast<size_t>(b) * kXBytes;
    const auto* xq = reinterpret_cast<const int8_t*>(xb + block::kQ8_KQs);
    const float xd = LoadF32(xb + block::kQ8_KD);
    KBlock k;
    int32_t lanes[8];
    constexpr bool kSix = kType == TensorType::kQ6_K;
    if constexpr (kSix) {
      UnpackQ6K(wb, k);
    } else {
      UnpackK45<kType == TensorType::kQ5_K>(wb, k);
    }
    Lanes<kSix>(k, xq, lanes);
    int32_t sum = 0;
    for (int32_t lane : lanes) {
      sum += lane;
    }
    const size_t d_at = kSix ? block::kQ6_KD : block::kQ4_KD;
    acc = std::fma(static_cast<float>(sum), LoadHalf(wb + d_at) * xd, acc);
    if constexpr (!kSix) {
      int32_t s[8];
      PairSums(xb, s);
      int32_t mins = 0;
      for (size_t i = 0; i < 8; ++i) {
        mins += k.min[i] * s[i];
      }
      // Negated before the multiply, as every variant does: a NaN keeps one sign everywhere.
      acc = std::fma(static_cast<float>(mins), -LoadHalf(wb + block::kQ4_KDmin) * xd, acc);
    }
  }
  return acc;
}

template <TensorType kType>
ProductFns Fns() {
  return {&Dot<kType>, &MatMulByDots<&Dot<kType>>};
}

}  // namespace

ProductFns KProductsPortable(TensorType type, DotOrder order) {
  if (order == DotOrder::kBlockSums) {
    switch (type) {
      case TensorType::kQ4_K:
        return {&DotBlockSums<TensorType::kQ4_K>, &MatMulByDots<&DotBlockSums<TensorType::kQ4_K>>};
      case TensorType::kQ5_K:
        return {&DotBlockSums<TensorType::kQ5_K>, &MatMulByDots<&DotBlockSums<TensorType::kQ5_K>>};
      case TensorType::kQ6_K:
        return {&DotBlockSums<TensorType::kQ6_K>, &MatMulByDots<&DotBlockSums<TensorType::kQ6_K>>};
      default:
        return {};
    }
  }
  if (order != DotOrder::kVecDot) {
    return {};
  }
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
