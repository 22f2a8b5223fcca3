// Q8_0 and Q8_1 activation rows (the partners of Q4_0, Q5_0, Q8_0 and Q4_1, Q5_1) with AVX-512:
// activations.cc's arithmetic, 16 values an instruction, bit for bit (tested). Every prompt token
// quantizes each matrix's input once; done a value at a time it was 7% of a Q8_0 prefill.
//
// Each step is the instruction the definition names: the maximum of |x| ignoring NaNs (vmaxps
// keeps its second operand when the first is NaN, as fmax keeps the number), x * id rounded to
// nearest even (vrndscaleps), converted with the integer-indefinite result for NaN and out of
// range (vcvtps2dq), then saturated to int8 (vpmovsdb); the sum wraps as 32-bit lanes do.
#include <immintrin.h>

#include "engine/kernels/type_kernels_internal.h"

#define CH_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl")))

namespace cellhouse::engine::internal {

namespace {

constexpr int kRound = _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC;
// GCC 12's unmasked forms of these intrinsics trip -Wmaybe-uninitialized inside its own header;
// the zero-masked forms with an all-ones mask compile to the same instructions.
constexpr __mmask16 kAll = 0xFFFF;

// The largest of 16 lanes (none NaN) and the wrapping sum of 16, folded through 256-bit halves.
CH_AVX512 inline float MaxLanes(__m512 v) {
  const __m256 lo = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 0));
  const __m256 hi = _mm256_castpd_ps(_mm512_maskz_extractf64x4_pd(0xFF, _mm512_castps_pd(v), 1));
  const __m256 m8 = _mm256_max_ps(lo, hi);
  __m128 m4 = _mm_max_ps(_mm256_castps256_ps128(m8), _mm256_extractf128_ps(m8, 1));
  m4 = _mm_max_ps(m4, _mm_movehl_ps(m4, m4));
  m4 = _mm_max_ss(m4, _mm_movehdup_ps(m4));
  return _mm_cvtss_f32(m4);
}

CH_AVX512 inline int32_t SumLanes(__m512i v) {
  const __m256i s8 = _mm256_add_epi32(_mm512_maskz_extracti64x4_epi64(0xFF, v, 0),
                                      _mm512_maskz_extracti64x4_epi64(0xFF, v, 1));
  __m128i s4 = _mm_add_epi32(_mm256_castsi256_si128(s8), _mm256_extracti128_si256(s8, 1));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0x4E));
  s4 = _mm_add_epi32(s4, _mm_shuffle_epi32(s4, 0xB1));
  return _mm_cvtsi128_si32(s4);
}

// One block: the half d at out, the 32 bytes at qs; returns the unrounded d and the sum.
struct Block8 {
  float d;
  uint32_t sum;
};

CH_AVX512 inline Block8 QuantizeBlock8(const float* x, std::byte* out, std::byte* qs) {
  const __m512 a = _mm512_loadu_ps(x);
  const __m512 b = _mm512_loadu_ps(x + 16);
  __m512 amax = _mm512_maskz_max_ps(kAll, _mm512_abs_ps(a), _mm512_setzero_ps());
  amax = _mm512_maskz_max_ps(kAll, _mm512_abs_ps(b), amax);
  const float m = MaxLanes(amax);
  const float d = m / 127.0F;
  const float id = m == 0.0F ? 0.0F : 127.0F / m;
  StoreU16(out, FloatToHalf(d));
  const __m512 scale = _mm512_set1_ps(id);
  const __m512i qa = _mm512_maskz_cvtps_epi32(
      kAll, _mm512_maskz_roundscale_ps(kAll, _mm512_maskz_mul_ps(kAll, a, scale), kRound));
  const __m512i qb = _mm512_maskz_cvtps_epi32(
      kAll, _mm512_maskz_roundscale_ps(kAll, _mm512_maskz_mul_ps(kAll, b, scale), kRound));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs), _mm512_maskz_cvtsepi32_epi8(kAll, qa));
  _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16), _mm512_maskz_cvtsepi32_epi8(kAll, qb));
  const auto sum = static_cast<uint32_t>(SumLanes(_mm512_maskz_add_epi32(kAll, qa, qb)));
  return {d, sum};
}

}  // namespace

CH_AVX512 void RowsQ8ZeroAvx512(const float* x, int32_t n, int64_t cols, std::byte* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_0).block_bytes;
  for (int64_t b = 0; b < static_cast<int64_t>(n) * (cols / 32); ++b) {
    std::byte* blk = out + static_cast<size_t>(b) * kBytes;
    QuantizeBlock8(x + 32 * b, blk + block::kQ8_0D, blk + block::kQ8_0Qs);
  }
}

CH_AVX512 void RowsQ8OneAvx512(const float* x, int32_t n, int64_t cols, std::byte* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_1).block_bytes;
  for (int64_t b = 0; b < static_cast<int64_t>(n) * (cols / 32); ++b) {
    std::byte* blk = out + static_cast<size_t>(b) * kBytes;
    const Block8 q = QuantizeBlock8(x + 32 * b, blk + block::kQ8_1D, blk + block::kQ8_1Qs);
    StoreU16(blk + block::kQ8_1S,
             FloatToHalf(static_cast<float>(static_cast<int32_t>(q.sum)) * q.d));
  }
}

}  // namespace cellhouse::engine::internal
