// Q8_0, Q8_1 and Q8_K activation rows (the partners of Q4_0, Q5_0, Q8_0; Q4_1, Q5_1; the
// K-quants) with AVX-512: activations.cc's arithmetic, 16 values an instruction, bit for bit
// (tested). Every prompt token quantizes each matrix's input once; done a value at a time it was
// 7% of a Q8_0 prefill, and Q8_K 6.6% of a Q4_K_M one.
//
// Each step is the instruction the definition names: the maximum of |x| ignoring NaNs (vmaxps
// keeps its second operand when the first is NaN, as fmax keeps the number), x * id rounded to
// nearest even (vrndscaleps), converted with the integer-indefinite result for NaN and out of
// range (vcvtps2dq), then saturated to int8 (vpmovsdb); the sum wraps as 32-bit lanes do.
#include <immintrin.h>

#include <cstring>

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

// One Q8_K block (activations.cc's RowsQ8K): the first value of largest magnitude (vmaxps skips
// NaNs as the definition's comparison does; then the first lane equal to that magnitude), q =
// ggml's nearest_int(iscale * x) from the bits of the product + 1.5 * 2^23, capped at 127 and
// truncated to a byte, the bsums from the bytes as stored.
CH_AVX512 void QuantizeBlockQ8K(const float* v, std::byte* blk) {
  __m512 amax = _mm512_setzero_ps();
  for (size_t i = 0; i < 16; ++i) {
    amax = _mm512_maskz_max_ps(kAll, _mm512_abs_ps(_mm512_loadu_ps(v + 16 * i)), amax);
  }
  const float m = MaxLanes(amax);
  auto* qs = reinterpret_cast<int8_t*>(blk + block::kQ8_KQs);
  if (m == 0.0F) {
    StoreF32(blk + block::kQ8_KD, 0.0F);
    std::memset(qs, 0, 256);
    std::memset(blk + block::kQ8_KBsums, 0, 32);
    return;
  }
  float max = 0.0F;
  for (size_t i = 0; i < 16; ++i) {
    const __mmask16 at = _mm512_cmp_ps_mask(_mm512_abs_ps(_mm512_loadu_ps(v + 16 * i)),
                                            _mm512_set1_ps(m), _CMP_EQ_OQ);
    if (at != 0) {
      max = v[16 * i + __builtin_ctz(at)];
      break;
    }
  }
  const float iscale = -127.0F / max;
  const __m512 scale = _mm512_set1_ps(iscale);
  const __m512 bias = _mm512_set1_ps(12582912.0F);
  for (size_t i = 0; i < 16; ++i) {
    const __m512 biased = _mm512_maskz_add_ps(
        kAll, _mm512_maskz_mul_ps(kAll, scale, _mm512_loadu_ps(v + 16 * i)), bias);
    const __m512i q = _mm512_maskz_sub_epi32(
        kAll,
        _mm512_maskz_and_epi32(kAll, _mm512_castps_si512(biased), _mm512_set1_epi32(0x007FFFFF)),
        _mm512_set1_epi32(0x00400000));
    const __m128i bytes =
        _mm512_maskz_cvtepi32_epi8(kAll, _mm512_maskz_min_epi32(kAll, q, _mm512_set1_epi32(127)));
    _mm_storeu_si128(reinterpret_cast<__m128i*>(qs + 16 * i), bytes);
    StoreU16(blk + block::kQ8_KBsums + 2 * i,
             static_cast<uint16_t>(SumLanes(_mm512_maskz_cvtepi8_epi32(kAll, bytes))));
  }
  StoreF32(blk + block::kQ8_KD, 1.0F / iscale);
}

}  // namespace

CH_AVX512 void RowsQ8KAvx512(const float* x, int32_t n, int64_t cols, std::byte* out) {
  constexpr size_t kBytes = GetTypeInfo(TensorType::kQ8_K).block_bytes;
  for (int64_t b = 0; b < static_cast<int64_t>(n) * (cols / 256); ++b) {
    QuantizeBlockQ8K(x + 256 * b, out + static_cast<size_t>(b) * kBytes);
  }
}

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
