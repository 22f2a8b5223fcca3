// Products of the float types with AVX-512F: float_types_simd.h on one 512-bit vector per 16
// lanes, as the reference's own build does (the table decodes F16 and BF16 with the 256-bit
// kernels instead: type_kernels.cc). Bit-identical to float_types.cc (tested). Only
// these functions are compiled for AVX-512 (target attribute); the table uses them only on such
// CPUs.
#include <immintrin.h>

#include <algorithm>

#include "engine/kernels/type_kernels_internal.h"

#define CH_TARGET __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512dq")))

namespace cellhouse::engine::internal {

namespace {

// GCC 12's unmasked forms of some 512-bit intrinsics trip -Wmaybe-uninitialized inside its own
// header; the zero-masked forms with an all-ones mask compile to the same instructions.
constexpr __mmask16 kAll = 0xFFFF;

struct V16 {
  __m512 v;

  CH_TARGET static V16 Zero() { return {_mm512_setzero_ps()}; }
  CH_TARGET static V16 Load(const float* p) { return {_mm512_loadu_ps(p)}; }
  CH_TARGET static V16 LoadHalf(const uint16_t* p) {
    return {_mm512_maskz_cvtph_ps(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)))};
  }
  CH_TARGET static V16 LoadBF16(const uint16_t* p) {
    const __m512i wide =
        _mm512_maskz_cvtepu16_epi32(kAll, _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p)));
    return {_mm512_castsi512_ps(_mm512_maskz_slli_epi32(kAll, wide, 16))};
  }
  CH_TARGET static V16 Fma(V16 a, V16 b, V16 c) { return {_mm512_fmadd_ps(a.v, b.v, c.v)}; }
  CH_TARGET static V16 Add(V16 a, V16 b) { return {_mm512_add_ps(a.v, b.v)}; }
  CH_TARGET static float Sum(V16 a) {
    const __m256 lo =
        _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(a.v), 0));
    const __m256 hi =
        _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(a.v), 1));
    const __m256 h8 = _mm256_add_ps(hi, lo);
    const __m128 h4 = _mm_add_ps(_mm256_extractf128_ps(h8, 1), _mm256_castps256_ps128(h8));
    const __m128 h2 = _mm_add_ps(_mm_permute_ps(h4, 0x4E), h4);
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 0x55)));
  }
};

// A prefill tile's 24 accumulators, 4 weight vectors and one activation vector fit the
// 32 vector registers.
constexpr int kTileRows = 4;
constexpr int kTileTokens = 6;

#include "engine/kernels/float_types_simd.h"

}  // namespace

ProductFns FloatProductsAvx512(TensorType type) { return FloatProductsFor(type); }

}  // namespace cellhouse::engine::internal
