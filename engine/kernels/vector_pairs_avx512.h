// Two 256-bit vectors in the halves of one 512-bit vector: how the AVX-512 products of decode
// rows carry a pair of tokens (q32_types_avx512.cc for the 32-value types, k_types_avx512.cc for
// the K-quants), each half doing what a 256-bit kernel does for its token.
//
// Include only from a file compiled for AVX-512 (its functions carry the target attribute).
#ifndef CELLHOUSE_ENGINE_KERNELS_VECTOR_PAIRS_AVX512_H_
#define CELLHOUSE_ENGINE_KERNELS_VECTOR_PAIRS_AVX512_H_

#include <immintrin.h>

#define CH_PAIRS_TARGET \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

// GCC 12's unmasked forms of these intrinsics pass an undefined vector as the merge source and
// trip -Wmaybe-uninitialized in its own header; the zero-masked forms with an all-ones mask
// compile to the same instructions.
namespace cellhouse::engine::internal::vector_pairs {

// lo in lanes 0-7 (bytes 0-31), hi in lanes 8-15.
CH_PAIRS_TARGET inline __m512i Pair(__m256i lo, __m256i hi) {
  const __m512i low = _mm512_maskz_inserti64x4(0xFF, _mm512_setzero_si512(), lo, 0);
  return _mm512_maskz_inserti64x4(0xFF, low, hi, 1);
}

// v in both halves.
CH_PAIRS_TARGET inline __m512i Both(__m256i v) { return _mm512_maskz_broadcast_i64x4(0xFF, v); }

CH_PAIRS_TARGET inline __m256 Low(__m512 v) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 0));
}

CH_PAIRS_TARGET inline __m256 High(__m512 v) {
  return _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 1));
}

}  // namespace cellhouse::engine::internal::vector_pairs

#undef CH_PAIRS_TARGET

#endif  // CELLHOUSE_ENGINE_KERNELS_VECTOR_PAIRS_AVX512_H_
