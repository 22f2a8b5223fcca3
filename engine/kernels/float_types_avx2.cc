// Products of the float types with AVX2 + FMA + F16C: float_types_simd.h on two 256-bit vectors
// per 16 lanes, summed in the same order as the 512-bit ones. Bit-identical to float_types.cc
// (tested). Only these functions are compiled for AVX2 (target attribute); the table uses them
// only on such CPUs.
#include <immintrin.h>

#include <algorithm>

#include "engine/kernels/type_kernels_internal.h"

#define CH_TARGET __attribute__((target("avx2,fma,f16c")))

namespace cellhouse::engine::internal {

namespace {

struct V16 {
  __m256 lo;  // lanes 0-7
  __m256 hi;  // lanes 8-15

  CH_TARGET static V16 Zero() { return {_mm256_setzero_ps(), _mm256_setzero_ps()}; }
  CH_TARGET static V16 Load(const float* p) { return {_mm256_loadu_ps(p), _mm256_loadu_ps(p + 8)}; }
  CH_TARGET static V16 LoadHalf(const uint16_t* p) {
    return {_mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p))),
            _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p + 8)))};
  }
  CH_TARGET static __m256 WidenBF16(const uint16_t* p) {
    const __m256i wide =
        _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
  }
  CH_TARGET static V16 LoadBF16(const uint16_t* p) { return {WidenBF16(p), WidenBF16(p + 8)}; }
  CH_TARGET static V16 Fma(V16 a, V16 b, V16 c) {
    return {_mm256_fmadd_ps(a.lo, b.lo, c.lo), _mm256_fmadd_ps(a.hi, b.hi, c.hi)};
  }
  CH_TARGET static V16 Add(V16 a, V16 b) {
    return {_mm256_add_ps(a.lo, b.lo), _mm256_add_ps(a.hi, b.hi)};
  }
  CH_TARGET static float Sum(V16 a) {
    const __m256 h8 = _mm256_add_ps(a.hi, a.lo);
    const __m128 h4 = _mm_add_ps(_mm256_extractf128_ps(h8, 1), _mm256_castps256_ps128(h8));
    const __m128 h2 = _mm_add_ps(_mm_permute_ps(h4, 0x4E), h4);
    return _mm_cvtss_f32(_mm_add_ss(h2, _mm_shuffle_ps(h2, h2, 0x55)));
  }
};

// A prefill tile's 4 accumulators, 2 weight vectors and one activation vector fit the
// 16 vector registers.
constexpr int kTileRows = 2;
constexpr int kTileTokens = 2;

#include "engine/kernels/float_types_simd.h"

}  // namespace

ProductFns FloatProductsAvx2(TensorType type) { return FloatProductsFor(type); }

// vcvtps2ph with round-to-nearest-even and back: the bits of FloatToHalf for every float (NaNs
// included: quiet, sign and top payload bits kept), eight at a time. Attention rounds every
// softmax weight this way, so a prompt's cost grows with the square of its length here.
CH_TARGET void RoundRowsToHalfF16c(const float* x, int32_t n, int64_t cols, std::byte* out) {
  const int64_t count = static_cast<int64_t>(n) * cols;
  auto* y = reinterpret_cast<float*>(out);
  int64_t i = 0;
  for (; i + 8 <= count; i += 8) {
    const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT);
    _mm256_storeu_ps(y + i, _mm256_cvtph_ps(h));
  }
  for (; i < count; ++i) {
    StoreF32(out + 4 * i, HalfToFloat(FloatToHalf(x[i])));
  }
}

}  // namespace cellhouse::engine::internal
