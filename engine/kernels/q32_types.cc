// Products of the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) in portable C++: the
// definition the AVX2 and AVX-512 variants (q32_types_avx2.cc, q32_types_avx512.cc) reproduce.
//
// What it mirrors: llama.cpp c392e5094's x86 AVX2 paths as its icelake build compiles them
// (ggml-cpu-quants.c, GCC 12, -mfma: read from the shipped libggml-cpu-icelake.so):
//
//   ggml_vec_dot_{q4_0,q5_0,q8_0}_q8_0, ggml_vec_dot_{q4_1,q5_1}_q8_1 (DotOrder::kVecDot):
//     eight float lanes acc[0..7] = +0; for each block, in order:
//       d = half(w.d) * half(x.d)                       (one float multiply)
//       L[j] = sum over k = 4j .. 4j+3 of wq[k] * xq[k]  (exact integers; wq is the value the
//              block stores: q - 8, q - 16, q, or the int8 itself)
//       acc[j] = fma(d, float(L[j]), acc[j])
//     and for Q4_1/Q5_1 also summs = fma(half(w.m), half(x.s), summs) per block (GCC fused the
//     written multiply-add); the result is hsum_float_8(acc) (+ summs).
//   ggml_gemv_q4_0_8x8_q8_0 (DotOrder::kInterleaved8, llama.cpp's repacked Q4_0):
//     one float per row, acc = fma(float(sum over the block's 32 products), half(w.d) *
//     half(x.d), acc) per block.
//   DotOrder::kBlockSums (Q8_0, a prompt's rows: cellhouse's own, type_kernels.h): the same as
//     kInterleaved8, for Q8_0's blocks.
//
// Where it differs: nothing of the arithmetic. llama.cpp's sign trick (|w| times x with w's
// sign) is wrong for an activation of -128, which its quantizer makes only when the block's scale
// is zero (so the product vanishes anyway); these products are exact for every byte.
// This file, like every type kernel, is compiled with -ffp-contract=off: each fma is written.
#include <cmath>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

namespace {

constexpr int64_t kBlock = 32;

// The 32 values a block stores, as the integers the products use.
template <TensorType kType>
void Unpack(const std::byte* b, int32_t* v) {
  if constexpr (kType == TensorType::kQ8_0) {
    for (int k = 0; k < kBlock; ++k) {
      v[k] = SignedByte(b[block::kQ8_0Qs + k]);
    }
  } else {
    constexpr bool kFive = kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1;
    constexpr bool kOffset = kType == TensorType::kQ4_0 || kType == TensorType::kQ5_0;
    constexpr size_t kQs = kType == TensorType::kQ4_0   ? block::kQ4_0Qs
                           : kType == TensorType::kQ4_1 ? block::kQ4_1Qs
                           : kType == TensorType::kQ5_0 ? block::kQ5_0Qs
                                                        : block::kQ5_1Qs;
    uint32_t qh = 0;
    if constexpr (kFive) {
      qh = LoadU32(b + (kType == TensorType::kQ5_0 ? block::kQ5_0Qh : block::kQ5_1Qh));
    }
    for (int k = 0; k < 16; ++k) {
      const auto byte = static_cast<uint32_t>(b[kQs + k]);
      uint32_t lo = byte & 0xFU;
      uint32_t hi = byte >> 4;
      if constexpr (kFive) {
        lo |= ((qh >> k) & 1U) << 4;
        hi |= ((qh >> (k + 16)) & 1U) << 4;
      }
      constexpr int32_t kShift = kOffset ? (kFive ? 16 : 8) : 0;
      v[k] = static_cast<int32_t>(lo) - kShift;
      v[k + 16] = static_cast<int32_t>(hi) - kShift;
    }
  }
}

constexpr bool HasMin(TensorType t) { return t == TensorType::kQ4_1 || t == TensorType::kQ5_1; }

template <TensorType kType>
float DotVec(const std::byte* w, const std::byte* x, int64_t cols) {
  constexpr size_t kWBytes = GetTypeInfo(kType).block_bytes;
  constexpr TensorType kPartner = GetTypeInfo(kType).partner;
  constexpr size_t kXBytes = GetTypeInfo(kPartner).block_bytes;
  constexpr size_t kXQs = kPartner == TensorType::kQ8_1 ? block::kQ8_1Qs : block::kQ8_0Qs;
  float acc[8] = {};
  float summs = 0.0F;
  int32_t v[kBlock];
  for (int64_t b = 0; b < cols / kBlock; ++b) {
    const std::byte* wb = w + static_cast<size_t>(b) * kWBytes;
    const std::byte* xb = x + static_cast<size_t>(b) * kXBytes;
    Unpack<kType>(wb, v);
    const float d = LoadHalf(wb) * LoadHalf(xb);  // both scales are the first field
    for (int j = 0; j < 8; ++j) {
      int32_t lane = 0;
      for (int k = 4 * j; k < 4 * j + 4; ++k) {
        lane += v[k] * static_cast<int8_t>(xb[kXQs + k]);
      }
      acc[j] = std::fma(d, static_cast<float>(lane), acc[j]);
    }
    if constexpr (HasMin(kType)) {
      const size_t m = kType == TensorType::kQ4_1 ? block::kQ4_1M : block::kQ5_1M;
      summs = std::fma(LoadHalf(wb + m), LoadHalf(xb + block::kQ8_1S), summs);
    }
  }
  if constexpr (HasMin(kType)) {
    return SumLanes8(acc) + summs;
  } else {
    return SumLanes8(acc);
  }
}

// kInterleaved8 (Q4_0) and kBlockSums (Q8_0): one exact sum and one fma per block.
template <TensorType kType>
float DotBlockSums(const std::byte* w, const std::byte* x, int64_t cols) {
  static_assert(kType == TensorType::kQ4_0 || kType == TensorType::kQ8_0);
  constexpr size_t kWBytes = GetTypeInfo(kType).block_bytes;
  constexpr size_t kXBytes = GetTypeInfo(TensorType::kQ8_0).block_bytes;
  float acc = 0.0F;
  int32_t v[kBlock];
  for (int64_t b = 0; b < cols / kBlock; ++b) {
    const std::byte* wb = w + static_cast<size_t>(b) * kWBytes;
    const std::byte* xb = x + static_cast<size_t>(b) * kXBytes;
    Unpack<kType>(wb, v);
    int32_t sum = 0;
    for (int k = 0; k < kBlock; ++k) {
      sum += v[k] * static_cast<int8_t>(xb[block::kQ8_0Qs + k]);
    }
    // Both types keep their scale first.
    const float d = LoadHalf(wb) * LoadHalf(xb + block::kQ8_0D);
    acc = std::fma(static_cast<float>(sum), d, acc);
  }
  return acc;
}

template <TensorType kType>
ProductFns Fns() {
  return {&DotVec<kType>, &MatMulByDots<&DotVec<kType>>};
}

}  // namespace

ProductFns Q32ProductsPortable(TensorType type, DotOrder order) {
  if (order == DotOrder::kInterleaved8) {
    if (type != TensorType::kQ4_0) {
      return {};
    }
    return {&DotBlockSums<TensorType::kQ4_0>, &MatMulByDots<&DotBlockSums<TensorType::kQ4_0>>};
  }
  if (order == DotOrder::kBlockSums) {
    if (type != TensorType::kQ8_0) {
      return {};
    }
    return {&DotBlockSums<TensorType::kQ8_0>, &MatMulByDots<&DotBlockSums<TensorType::kQ8_0>>};
  }
  switch (type) {
    case TensorType::kQ4_0:
      return Fns<TensorType::kQ4_0>();
    case TensorType::kQ4_1:
      return Fns<TensorType::kQ4_1>();
    case TensorType::kQ5_0:
      return Fns<TensorType::kQ5_0>();
    case TensorType::kQ5_1:
      return Fns<TensorType::kQ5_1>();
    case TensorType::kQ8_0:
      return Fns<TensorType::kQ8_0>();
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
