// Two 256-bit vectors in the halves of one 512-bit vector: how the AVX-512 products of decode
// rows carry a pair of tokens (q32_types_avx512.cc for the 32-value types, k_types_avx512.cc for
// the K-quants), each half doing what a 256-bit kernel does for its token.
//
// Include only from a file compiled for AVX-512 (its functions carry the target attribute).
#ifndef CELLHOUSE_ENGINE_KERNELS_VECTOR_PAIRS_AVX512_H_
#define CELLHOUSE_ENGINE_KERNELS_VECTOR_PAIRS_AVX512_H_

#include <immintrin.h>

#include <cstdint>

#define CH_PAIRS_TARGET \
  __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace cellhouse::engine::internal::vector_pairs {

// Rows of weights that a product of token pairs takes through every tile of tokens before it goes
// on (q32_types_avx512.cc's MatMulPrepared, k_types_avx512.cc's ProductInPairs): about 256 KiB, so
// that a chunk read from memory for the first tile is still in L2 (1 MiB a core here; 512 KiB on
// older CPUs) for the others. A batch of 16 decode rows (Q8_0, two threads) ran 562-578 tok/s with
// the whole range as one chunk and 699-721 with chunks of 256-512 KiB (step_bench); kernel_bench's
// 16-row product from memory went from 1.72x to 2.37x decode's speed per token. Chunks of 4 rows
// (the weights read once, the tokens' prepared blocks once per row tile) gave 1.60x.
constexpr int64_t kChunkBytes = int64_t{256} << 10;

// GCC 12's unmasked forms of the intrinsics below pass an undefined vector as the merge source and
// trip -Wmaybe-uninitialized in its own header; the zero-masked forms with an all-ones mask
// compile to the same instructions.

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
