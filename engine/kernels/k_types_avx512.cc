// Products of the K-quants with AVX-512 (F/BW/VL/VNNI) on 256-bit vectors: k_types_simd.h with
// vpdpwssd for the scale multiply-adds, vpermw for the scale broadcasts and byte-mask tests for
// Q5_K's fifth bits. Bit-identical to k_types.cc (tested). Only these functions are compiled for
// those extensions (target attribute); the table uses them only on such CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cmath>

#include "engine/kernels/prefetch.h"
#include "engine/kernels/type_kernels_internal.h"

#define CH_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace cellhouse::engine::internal {

namespace {

CH_TARGET inline __m256i MulAddPairs(__m256i acc, __m256i pairs, __m256i scales) {
  return _mm256_dpwssd_epi32(acc, pairs, scales);
}

// Bytes 2k, 2k+1 of every 16-bit lane, picked within each 128-bit half by vpshufb (cheaper here
// than vpermw), from a source holding the wanted half in both.
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
  const __m256i low = _mm256_permute2x128_si256(s16, s16, 0x00);
  return _mm256_shuffle_epi8(low, WordShuffle(c, c));
}

CH_TARGET inline __m256i ScalePair(__m256i s16, int c) {
  const __m256i half =
      c < 4 ? _mm256_permute2x128_si256(s16, s16, 0x00) : _mm256_permute2x128_si256(s16, s16, 0x11);
  return _mm256_shuffle_epi8(half, WordShuffle((2 * c) % 8, (2 * c + 1) % 8));
}

CH_TARGET inline __m256i FifthBit(__m256i q, __m256i qh, int c) {
  const __mmask32 set = _mm256_test_epi8_mask(qh, _mm256_set1_epi8(static_cast<char>(1 << c)));
  return _mm256_mask_add_epi8(q, set, q, _mm256_set1_epi8(16));
}

// vpternlogd merges the masked low and high bits in one instruction: (a & 0x0F) | (b & 0x30).
CH_TARGET inline __m256i Merge(__m256i a, __m256i b) {
  const __m256i low = _mm256_set1_epi8(0x0F);
  const __m256i high = _mm256_set1_epi8(0x30);
  return _mm256_or_si256(_mm256_and_si256(a, low), _mm256_and_si256(b, high));
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

ProductFns KProductsAvx512(TensorType type, DotOrder order) {
  if (order == DotOrder::kBlockSums) {
    switch (type) {
      case TensorType::kQ4_K:
        return {&DotK<TensorType::kQ4_K, true>, &MatMulK<TensorType::kQ4_K, 4, 8, 4, true>};
      case TensorType::kQ6_K:
        return {&DotK<TensorType::kQ6_K, true>, &MatMulK<TensorType::kQ6_K, 4, 8, 4, true>};
      default:
        return {};
    }
  }
  if (order != DotOrder::kVecDot) {
    return {};
  }
  switch (type) {
    case TensorType::kQ4_K:
      return Fns<TensorType::kQ4_K, 4, 8, 4>();
    case TensorType::kQ5_K:
      return Fns<TensorType::kQ5_K, 4, 8, 4>();
    case TensorType::kQ6_K:
      return Fns<TensorType::kQ6_K, 4, 8, 4>();
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
