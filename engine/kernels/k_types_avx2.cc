// Products of the K-quants with AVX2 + FMA + F16C: k_types_simd.h with pmaddwd + add for the
// scale multiply-adds, pshufb for the scale broadcasts and shifts for Q5_K's fifth bits.
// Bit-identical to k_types.cc (tested). Only these functions are compiled for those extensions
// (target attribute); the table uses them only on such CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "engine/kernels/prefetch.h"
#include "engine/kernels/type_kernels_internal.h"

#define CH_TARGET __attribute__((target("avx2,fma,f16c")))

namespace cellhouse::engine::internal {

namespace {

CH_TARGET inline __m256i MulAddPairs(__m256i acc, __m256i pairs, __m256i scales) {
  return _mm256_add_epi32(acc, _mm256_madd_epi16(pairs, scales));
}

// Bytes 2k, 2k+1 of every 16-bit lane: pshufb picks them within each 128-bit half, so the
// source has the wanted half in both.
CH_TARGET inline __m256i WordShuffle(int lo_word, int hi_word) {
  const auto b = [](int word, int byte) { return static_cast<char>(2 * word + byte); };
  return _mm256_setr_epi8(b(lo_word, 0), b(lo_word, 1), b(lo_word, 0), b(lo_word, 1), b(lo_word, 0),
                          b(lo_word, 1), b(lo_word, 0), b(lo_word, 1), b(lo_word, 0), b(lo_word, 1),
                          b(lo_word, 0), b(lo_word, 1), b(lo_word, 0), b(lo_word, 1), b(lo_word, 0),
                          b(lo_word, 1), b(hi_word, 0), b(hi_word, 1), b(hi_word, 0), b(hi_word, 1),
                          b(hi_word, 0), b(hi_word, 1), b(hi_word, 0), b(hi_word, 1), b(hi_word, 0),
                          b(hi_word, 1), b(hi_word, 0), b(hi_word, 1), b(hi_word, 0), b(hi_word, 1),
                          b(hi_word, 0), b(hi_word, 1));
}

CH_TARGET inline __m256i ScaleOf(__m256i s16, int c) {
  const __m256i low = _mm256_permute2x128_si256(s16, s16, 0x00);  // lanes 0-7 in both halves
  return _mm256_shuffle_epi8(low, WordShuffle(c, c));
}

CH_TARGET inline __m256i ScalePair(__m256i s16, int c) {
  // Lanes 2c and 2c+1 lie in the same half of s16 (0-7 or 8-15).
  const __m256i half =
      c < 4 ? _mm256_permute2x128_si256(s16, s16, 0x00) : _mm256_permute2x128_si256(s16, s16, 0x11);
  return _mm256_shuffle_epi8(half, WordShuffle((2 * c) % 8, (2 * c + 1) % 8));
}

CH_TARGET inline __m256i FifthBit(__m256i q, __m256i qh, int c) {
  // Bit c of each byte to bit 4: a shift of the 16-bit lanes by at most 4 keeps it in its byte.
  const __m256i moved = c <= 4 ? _mm256_sll_epi16(qh, _mm_cvtsi32_si128(4 - c))
                               : _mm256_srl_epi16(qh, _mm_cvtsi32_si128(c - 4));
  return _mm256_or_si256(q, _mm256_and_si256(moved, _mm256_set1_epi8(16)));
}

CH_TARGET inline __m256i Merge(__m256i a, __m256i b) {
  return _mm256_or_si256(_mm256_and_si256(a, _mm256_set1_epi8(0x0F)),
                         _mm256_and_si256(b, _mm256_set1_epi8(0x30)));
}

CH_TARGET inline void Q6Values(__m256i ql0, __m256i ql1, __m256i qh, __m256i* q) {
  q[0] = Merge(ql0, _mm256_slli_epi16(qh, 4));
  q[1] = Merge(ql1, _mm256_slli_epi16(qh, 2));
  q[2] = Merge(_mm256_srli_epi16(ql0, 4), qh);
  q[3] = Merge(_mm256_srli_epi16(ql1, 4), _mm256_srli_epi16(qh, 2));
}

#include "engine/kernels/k_types_simd.h"

template <TensorType kType, int RD, int R, int T>
ProductFns Fns() {
  return {&DotK<kType>, &MatMulK<kType, RD, R, T>};
}

}  // namespace

ProductFns KProductsAvx2(TensorType type, DotOrder order) {
  if (order == DotOrder::kBlockSums) {
    switch (type) {
      case TensorType::kQ4_K:
        return {&DotK<TensorType::kQ4_K, true>, &MatMulK<TensorType::kQ4_K, 4, 2, 2, true>};
      case TensorType::kQ5_K:
        return {&DotK<TensorType::kQ5_K, true>, &MatMulK<TensorType::kQ5_K, 4, 2, 2, true>};
      case TensorType::kQ6_K:
        return {&DotK<TensorType::kQ6_K, true>, &MatMulK<TensorType::kQ6_K, 4, 2, 2, true>};
      default:
        return {};
    }
  }
  if (order != DotOrder::kVecDot) {
    return {};
  }
  switch (type) {
    case TensorType::kQ4_K:
      return Fns<TensorType::kQ4_K, 4, 2, 2>();
    case TensorType::kQ5_K:
      return Fns<TensorType::kQ5_K, 4, 2, 2>();
    case TensorType::kQ6_K:
      return Fns<TensorType::kQ6_K, 4, 2, 2>();
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
