// Products of the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with AVX-512 (F/BW/VL
// VNNI) on 256-bit vectors: the arithmetic of q32_types.cc, bit for bit. Only these functions are
// compiled for those extensions (target attribute); the table uses them only on such CPUs.
//
// How the integers are made exact with vpdpbusd (unsigned bytes times signed bytes, four products
// summed per 32-bit lane): each weight block is unpacked to 32 unsigned bytes u = value + offset
// (offset 128 for Q8_0 through an XOR with 0x80, 8 for Q4_0, 16 for Q5_0, 0 for Q4_1/Q5_1), and
// the lane sums start from -offset * (the lane's four activation bytes summed), which one
// vpdpbusd per activation block computes. Lane j then holds the exact L[j] of the definition,
// and the float work is the definition's: d = half(w.d) * half(x.d), acc = fma(d, float(L), acc),
// hsum_float_8 at the end (kVecDot), or the lanes summed exactly and one fma per block (Q4_0
// kInterleaved8).
//
// Rows x tokens tiles: a block of R weight rows is unpacked once and meets T activation rows
// (prefill; decode is T = 1, though the table decodes Q8_0 with q32_types_avx2.cc's kernel:
// type_kernels.cc). Each (row, token) output still sees exactly the operations of its
// own dot product, in block order, so results do not depend on the tile, n, or the row range.
#include <immintrin.h>

#include <algorithm>

#include "engine/kernels/prefetch.h"
#include "engine/kernels/token_lanes_avx512.h"
#include "engine/kernels/type_kernels_internal.h"
#include "engine/kernels/vector_pairs_avx512.h"

#define CH_AVX512 __attribute__((target("avx2,fma,f16c,avx512f,avx512bw,avx512vl,avx512vnni")))

namespace cellhouse::engine::internal {

namespace {

template <TensorType kType>
struct Q32 {
  static constexpr size_t kBytes = GetTypeInfo(kType).block_bytes;
  static constexpr TensorType kPartner = GetTypeInfo(kType).partner;
  static constexpr size_t kXBytes = GetTypeInfo(kPartner).block_bytes;
  static constexpr size_t kXQs = kPartner == TensorType::kQ8_1 ? block::kQ8_1Qs : block::kQ8_0Qs;
  static constexpr int kOffset = kType == TensorType::kQ8_0   ? 128
                                 : kType == TensorType::kQ4_0 ? 8
                                 : kType == TensorType::kQ5_0 ? 16
                                                              : 0;
  static constexpr bool kMin = kType == TensorType::kQ4_1 || kType == TensorType::kQ5_1;
  static constexpr bool kFive = kType == TensorType::kQ5_0 || kType == TensorType::kQ5_1;
  static constexpr size_t kQs = kType == TensorType::kQ4_0   ? block::kQ4_0Qs
                                : kType == TensorType::kQ4_1 ? block::kQ4_1Qs
                                : kType == TensorType::kQ5_0 ? block::kQ5_0Qs
                                : kType == TensorType::kQ5_1 ? block::kQ5_1Qs
                                                             : block::kQ8_0Qs;
  static constexpr size_t kQh = kType == TensorType::kQ5_0 ? block::kQ5_0Qh : block::kQ5_1Qh;
  static constexpr size_t kM = kType == TensorType::kQ4_1 ? block::kQ4_1M : block::kQ5_1M;
};

// The block's 32 values plus the type's offset, as unsigned bytes in value order.
template <TensorType kType>
CH_AVX512 inline __m256i Unpack(const std::byte* b) {
  using P = Q32<kType>;
  if constexpr (kType == TensorType::kQ8_0) {
    return _mm256_xor_si256(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + P::kQs)),
                            _mm256_set1_epi8(static_cast<char>(0x80)));
  } else {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + P::kQs));
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    v = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
    if constexpr (P::kFive) {
      // Bit k of qh is value k's fifth bit: a byte mask for a masked add of 16.
      const __mmask32 high = _cvtu32_mask32(LoadU32(b + P::kQh));
      v = _mm256_mask_add_epi8(v, high, v, _mm256_set1_epi8(16));
    }
    return v;
  }
}

// A half widened and broadcast to 8 lanes.
CH_AVX512 inline __m256 BroadcastHalf(const std::byte* p) {
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(LoadU16(p))));
}

CH_AVX512 inline float HalfScalar(const std::byte* p) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(LoadU16(p))));
}

// ggml's hsum_float_8, instruction for instruction.
CH_AVX512 inline float Hsum8(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// One activation block, ready for every row: its bytes, the lane sums' starting values
// (-offset * the lane's four bytes summed), its scale (and Q8_1's s).
struct XBlock {
  __m256i q;
  __m256i start;
  __m256 d;
  float s;
};

template <TensorType kType>
CH_AVX512 inline XBlock LoadX(const std::byte* xb) {
  using P = Q32<kType>;
  XBlock x;
  x.q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xb + P::kXQs));
  if constexpr (P::kOffset != 0) {
    const __m256i sums = _mm256_dpbusd_epi32(_mm256_setzero_si256(),
                                             _mm256_set1_epi8(static_cast<char>(P::kOffset)), x.q);
    x.start = _mm256_sub_epi32(_mm256_setzero_si256(), sums);
  } else {
    x.start = _mm256_setzero_si256();
  }
  x.d = BroadcastHalf(xb);
  if constexpr (P::kMin) {
    x.s = HalfScalar(xb + block::kQ8_1S);
  } else {
    x.s = 0.0F;
  }
  return x;
}

// kVecDot: R rows x T tokens over all blocks; y[t * y_stride + r].
template <TensorType kType, int R, int T>
CH_AVX512 void TileVec(const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
                       int64_t blocks, float* y, size_t y_stride, SpreadPrefetch ahead) {
  using P = Q32<kType>;
  __m256 acc[R][T];
  float summs[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      acc[r][t] = _mm256_setzero_ps();
      summs[r][t] = 0.0F;
    }
  }
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    __m256i wu[R];
    __m256 wd[R];
    float wm[R];
    for (int r = 0; r < R; ++r) {
      const std::byte* wb =
          w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(b) * P::kBytes;
      wu[r] = Unpack<kType>(wb);
      wd[r] = BroadcastHalf(wb);
      if constexpr (P::kMin) {
        wm[r] = HalfScalar(wb + P::kM);
      }
    }
    for (int t = 0; t < T; ++t) {
      const XBlock xb =
          LoadX<kType>(x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(b) * P::kXBytes);
      for (int r = 0; r < R; ++r) {
        const __m256i lanes = _mm256_dpbusd_epi32(xb.start, wu[r], xb.q);
        const __m256 d = _mm256_mul_ps(wd[r], xb.d);
        acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes), acc[r][t]);
        if constexpr (P::kMin) {
          summs[r][t] = _mm_cvtss_f32(
              _mm_fmadd_ss(_mm_set_ss(wm[r]), _mm_set_ss(xb.s), _mm_set_ss(summs[r][t])));
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float v = Hsum8(acc[r][t]);
      if constexpr (P::kMin) {
        v = v + summs[r][t];
      }
      y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)] = v;
    }
  }
}

// The same values without the offset, as signed bytes.
template <TensorType kType>
CH_AVX512 inline __m256i UnpackSigned(const std::byte* b) {
  using P = Q32<kType>;
  if constexpr (kType == TensorType::kQ8_0) {
    return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + P::kQs));
  } else if constexpr (P::kOffset != 0) {
    return _mm256_sub_epi8(Unpack<kType>(b), _mm256_set1_epi8(static_cast<char>(P::kOffset)));
  } else {
    return Unpack<kType>(b);
  }
}

using token_lanes::kAll16;
using vector_pairs::High;
using vector_pairs::Low;
using vector_pairs::Pair;

// Two halves (at a, b) widened: lanes 0-7 a, lanes 8-15 b.
CH_AVX512 inline __m512 HalfPair(const std::byte* a, const std::byte* b) {
  const __m256i h = _mm256_inserti128_si256(
      _mm256_castsi128_si256(_mm_set1_epi16(static_cast<int16_t>(LoadU16(a)))),
      _mm_set1_epi16(static_cast<int16_t>(LoadU16(b))), 1);
  return _mm512_maskz_cvtph_ps(kAll16, h);
}

CH_AVX512 inline __m512 ToFloat(__m512i v) { return _mm512_maskz_cvtepi32_ps(kAll16, v); }

// -128 * (each lane's four bytes summed), for bytes that meet activations made unsigned by
// adding 128.
CH_AVX512 inline __m512i MinusOffsetSums(__m512i v, int offset) {
  const __m512i sums =
      _mm512_dpbusd_epi32(_mm512_setzero_si512(), _mm512_set1_epi8(static_cast<char>(offset)), v);
  return _mm512_sub_epi32(_mm512_setzero_si512(), sums);
}

// Prefill: R rows against 2P activation rows (pairs in the two halves of a vector). Here the
// activations are made unsigned (+128, an XOR) and the weights stay signed; the lanes start from
// -128 * the weights' four bytes. y[t * y_stride + r].
template <TensorType kType, int R, int P2>
CH_AVX512 void TokenPairs(const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
                          int64_t blocks, float* y, size_t y_stride, SpreadPrefetch ahead) {
  using P = Q32<kType>;
  __m512 acc[R][P2];
  __m512 summs[R][P2];
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P2; ++p) {
      acc[r][p] = _mm512_setzero_ps();
      summs[r][p] = _mm512_setzero_ps();
    }
  }
  const __m512i flip = _mm512_set1_epi8(static_cast<char>(0x80));
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    __m512i wq[R];
    __m512i start[R];
    __m512 wd[R];
    __m512 wm[R];
    for (int r = 0; r < R; ++r) {
      const std::byte* wb =
          w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(b) * P::kBytes;
      const __m256i v = UnpackSigned<kType>(wb);
      wq[r] = Pair(v, v);
      start[r] = MinusOffsetSums(wq[r], 128);
      wd[r] = _mm512_set1_ps(HalfScalar(wb));
      if constexpr (P::kMin) {
        wm[r] = _mm512_set1_ps(HalfScalar(wb + P::kM));
      }
    }
    for (int p = 0; p < P2; ++p) {
      const std::byte* xa =
          x + static_cast<size_t>(2 * p) * x_stride + static_cast<size_t>(b) * P::kXBytes;
      const std::byte* xc = xa + x_stride;
      const __m512i xu =
          _mm512_xor_si512(Pair(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa + P::kXQs)),
                                _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xc + P::kXQs))),
                           flip);
      const __m512 xd = HalfPair(xa, xc);
      __m512 xs = _mm512_setzero_ps();
      if constexpr (P::kMin) {
        xs = HalfPair(xa + block::kQ8_1S, xc + block::kQ8_1S);
      }
      for (int r = 0; r < R; ++r) {
        const __m512i lanes = _mm512_dpbusd_epi32(start[r], xu, wq[r]);
        const __m512 d = _mm512_mul_ps(wd[r], xd);
        acc[r][p] = _mm512_fmadd_ps(d, ToFloat(lanes), acc[r][p]);
        if constexpr (P::kMin) {
          summs[r][p] = _mm512_fmadd_ps(wm[r], xs, summs[r][p]);
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P2; ++p) {
      float lo = Hsum8(Low(acc[r][p]));
      float hi = Hsum8(High(acc[r][p]));
      if constexpr (P::kMin) {
        lo = lo + _mm512_cvtss_f32(summs[r][p]);
        hi = hi + _mm256_cvtss_f32(High(summs[r][p]));
      }
      y[static_cast<size_t>(2 * p) * y_stride + static_cast<size_t>(r)] = lo;
      y[static_cast<size_t>(2 * p + 1) * y_stride + static_cast<size_t>(r)] = hi;
    }
  }
}

// A token pair's activation block as every row tile meets it, made once per tile of tokens
// (PreparePairs) instead of once per row tile: the two tokens' bytes as they are (signed), the
// lanes' starting values for weights made unsigned (-offset * the lane's four activation bytes)
// and the two scales widened. The integers are TokenPairs' (and TileVec's): sum((w + offset) * x)
// - offset * sum(x) is sum(w * x) exactly, so each (row, token) keeps the bits of its own dot.
struct alignas(64) PairBlock {
  __m512i q;
  __m512i start;
  __m512 d;
};

// At most kPreparedPairs token pairs per tile, as many as MatMulPrepared's stack buffer of
// kPreparedBlocks holds for the row's blocks (48 KiB: 4 pairs of rows of up to 2048 values, 1 of
// up to 8192; longer rows take TokenPairs).
constexpr int kPreparedPairs = 4;
constexpr int64_t kPreparedBlocks = 256;

// out[p * blocks + b] for the `pairs` token pairs from x.
template <TensorType kType>
CH_AVX512 void PreparePairs(const std::byte* x, size_t x_stride, int pairs, int64_t blocks,
                            PairBlock* out) {
  using P = Q32<kType>;
  const __m512i offset = _mm512_set1_epi8(static_cast<char>(P::kOffset));
  for (int p = 0; p < pairs; ++p) {
    const std::byte* xa = x + static_cast<size_t>(2 * p) * x_stride;
    const std::byte* xc = xa + x_stride;
    for (int64_t b = 0; b < blocks; ++b) {
      const size_t at = static_cast<size_t>(b) * P::kXBytes;
      PairBlock& pb =
          out[static_cast<size_t>(p) * static_cast<size_t>(blocks) + static_cast<size_t>(b)];
      pb.q = Pair(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(xa + at + P::kXQs)),
                  _mm256_loadu_si256(reinterpret_cast<const __m256i*>(xc + at + P::kXQs)));
      pb.start = _mm512_sub_epi32(_mm512_setzero_si512(),
                                  _mm512_dpbusd_epi32(_mm512_setzero_si512(), offset, pb.q));
      pb.d = HalfPair(xa + at, xc + at);
    }
  }
}

// R rows against P2 prepared token pairs (x[p * blocks + b]); y[t * y_stride + r] as TokenPairs.
template <TensorType kType, int R, int P2>
CH_AVX512 void PreparedTokenPairs(const std::byte* w, size_t w_stride, const PairBlock* x,
                                  int64_t blocks, float* y, size_t y_stride, SpreadPrefetch ahead) {
  using P = Q32<kType>;
  __m512 acc[R][P2];
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P2; ++p) {
      acc[r][p] = _mm512_setzero_ps();
    }
  }
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    __m512i wu[R];
    __m512 wd[R];
    for (int r = 0; r < R; ++r) {
      const std::byte* wb =
          w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(b) * P::kBytes;
      wu[r] = _mm512_maskz_broadcast_i64x4(0xFF, Unpack<kType>(wb));
      wd[r] = _mm512_set1_ps(HalfScalar(wb));
    }
    for (int p = 0; p < P2; ++p) {
      const PairBlock& xb =
          x[static_cast<size_t>(p) * static_cast<size_t>(blocks) + static_cast<size_t>(b)];
      for (int r = 0; r < R; ++r) {
        const __m512i lanes = _mm512_dpbusd_epi32(xb.start, wu[r], xb.q);
        const __m512 d = _mm512_mul_ps(wd[r], xb.d);
        acc[r][p] = _mm512_fmadd_ps(d, ToFloat(lanes), acc[r][p]);
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int p = 0; p < P2; ++p) {
      y[static_cast<size_t>(2 * p) * y_stride + static_cast<size_t>(r)] = Hsum8(Low(acc[r][p]));
      y[static_cast<size_t>(2 * p + 1) * y_stride + static_cast<size_t>(r)] =
          Hsum8(High(acc[r][p]));
    }
  }
}

// 8 rows' scales widened, lane r from row r: the halves gathered with integer loads and shifts
// (general-purpose registers, which are otherwise idle here) rather than 8 vector inserts.
CH_AVX512 inline __m256 RowScales8(const std::byte* w0, size_t stride) {
  uint64_t lo = 0;
  uint64_t hi = 0;
  for (int r = 0; r < 4; ++r) {
    lo |= static_cast<uint64_t>(LoadU16(w0 + static_cast<size_t>(r) * stride)) << (16 * r);
    hi |= static_cast<uint64_t>(LoadU16(w0 + static_cast<size_t>(r + 4) * stride)) << (16 * r);
  }
  return _mm256_cvtph_ps(_mm_set_epi64x(static_cast<int64_t>(hi), static_cast<int64_t>(lo)));
}

// Four rows' 16 nibble bytes of one block, one row per 128-bit lane.
CH_AVX512 inline __m512i FourRows(const std::byte* p, size_t stride) {
  const auto row = [p, stride](int r) {
    return _mm_loadu_si128(reinterpret_cast<const __m128i*>(p + static_cast<size_t>(r) * stride));
  };
  __m512i v = _mm512_zextsi128_si512(row(0));
  v = _mm512_maskz_inserti32x4(kAll16, v, row(1), 1);
  v = _mm512_maskz_inserti32x4(kAll16, v, row(2), 2);
  return _mm512_maskz_inserti32x4(kAll16, v, row(3), 3);
}

// Q4_0 kInterleaved8: 8 rows at a time, one float lane per row. Rows 0-3 and 4-7 each fill a
// 512-bit vector, a row per 128-bit lane, split into low nibbles (values 0-15, against x's first
// 16 bytes broadcast to every lane) and high ones (values 16-31, against the last 16). The lanes
// start from -8 * (their share of x's bytes), so each row's four lanes sum exactly to its block
// product; two unpacks, two adds and one permute put the 8 rows' sums in order, and the
// definition's fma(float(sum), d_w * d_x, acc) follows.
template <int T>
CH_AVX512 void TileInterleaved(const std::byte* w, size_t w_stride, const std::byte* x,
                               size_t x_stride, int64_t blocks, float* y, size_t y_stride,
                               SpreadPrefetch ahead) {
  using P = Q32<TensorType::kQ4_0>;
  __m256 acc[T];
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
  }
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i eights = _mm512_set1_epi8(8);
  // Lane 4L holds row L's sum, lane 4L + 1 row 4 + L's.
  const __m512i order = _mm512_setr_epi32(0, 4, 8, 12, 1, 5, 9, 13, 0, 0, 0, 0, 0, 0, 0, 0);
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    const std::byte* w0 = w + static_cast<size_t>(b) * P::kBytes;
    const __m512i raw_a = FourRows(w0 + P::kQs, w_stride);
    const __m512i raw_b = FourRows(w0 + 4 * w_stride + P::kQs, w_stride);
    const __m512i lo_a = _mm512_and_si512(raw_a, low4);
    const __m512i hi_a = _mm512_and_si512(_mm512_srli_epi16(raw_a, 4), low4);
    const __m512i lo_b = _mm512_and_si512(raw_b, low4);
    const __m512i hi_b = _mm512_and_si512(_mm512_srli_epi16(raw_b, 4), low4);
    const __m256 wd = RowScales8(w0, w_stride);
    for (int t = 0; t < T; ++t) {
      const std::byte* xb =
          x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(b) * P::kXBytes;
      const auto* xq = reinterpret_cast<const __m128i*>(xb + P::kXQs);
      const __m512i x_lo = _mm512_maskz_broadcast_i32x4(kAll16, _mm_loadu_si128(xq));
      const __m512i x_hi = _mm512_maskz_broadcast_i32x4(kAll16, _mm_loadu_si128(xq + 1));
      const __m512i start = _mm512_sub_epi32(
          _mm512_setzero_si512(),
          _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), eights, x_lo), eights,
                              x_hi));
      const __m512i s_a = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo_a, x_lo), hi_a, x_hi);
      const __m512i s_b = _mm512_dpbusd_epi32(_mm512_dpbusd_epi32(start, lo_b, x_lo), hi_b, x_hi);
      const __m512i pairs = _mm512_add_epi32(_mm512_maskz_unpacklo_epi32(kAll16, s_a, s_b),
                                             _mm512_maskz_unpackhi_epi32(kAll16, s_a, s_b));
      const __m512i rows =
          _mm512_add_epi32(pairs, _mm512_maskz_shuffle_epi32(kAll16, pairs, _MM_PERM_BADC));
      const __m256i sums = _mm512_maskz_extracti64x4_epi64(
          0xFF, _mm512_maskz_permutexvar_epi32(kAll16, order, rows), 0);
      acc[t] =
          _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(wd, BroadcastHalf(xb)), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(y + static_cast<size_t>(t) * y_stride, acc[t]);
  }
}

// No prefetch: the tiles of a row group after its first (the rows are in cache by then).
inline SpreadPrefetch Nothing() { return {nullptr, nullptr, 0}; }

// Decode (one token): RD rows at a time (256-bit vectors: measured faster here than pairs of rows
// in 512-bit ones; Q8_0's 4, which streamed the 110m model at 189-198 tok/s where 8 rows gave
// 139-153; the table decodes Q8_0 with the AVX2 kernel, 200-206, so only an odd last token of a
// product comes here, a pass over the weights about 3% slower than that one), then single rows.
// Prefill: R rows x 2 * P2 tokens in token pairs (single rows where fewer than R are left); the
// tokens past the last whole tile go through decode's tiles.
template <TensorType kType, int RD>
CH_AVX512 void DecodeToken(const MatMulArgs& a, int32_t t) {
  const int64_t blocks = a.cols / 32;
  const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
  float* y = a.y + static_cast<size_t>(t) * a.y_stride;
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  int64_t r = a.row_begin;
  for (; r + RD <= a.row_end; r += RD) {
    TileVec<kType, RD, 1>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y + r, a.y_stride,
                          TileAhead(a, r, RD, blocks));
  }
  for (; r < a.row_end; ++r) {
    TileVec<kType, 1, 1>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y + r, a.y_stride,
                         Nothing());
  }
}

// TokenPairs with `pairs` (1..P2) token pairs: the largest tile that fits them exactly.
template <TensorType kType, int R, int P2>
CH_AVX512 void PairTile(int pairs, const std::byte* w, size_t w_stride, const std::byte* x,
                        size_t x_stride, int64_t blocks, float* y, size_t y_stride,
                        SpreadPrefetch ahead) {
  if constexpr (P2 > 1) {
    if (pairs < P2) {
      PairTile<kType, R, P2 - 1>(pairs, w, w_stride, x, x_stride, blocks, y, y_stride, ahead);
      return;
    }
  }
  TokenPairs<kType, R, P2>(w, w_stride, x, x_stride, blocks, y, y_stride, ahead);
}

// PreparedTokenPairs with `pairs` (1..P2) token pairs.
template <TensorType kType, int R, int P2>
CH_AVX512 void PreparedPairTile(int pairs, const std::byte* w, size_t w_stride, const PairBlock* x,
                                int64_t blocks, float* y, size_t y_stride, SpreadPrefetch ahead) {
  if constexpr (P2 > 1) {
    if (pairs < P2) {
      PreparedPairTile<kType, R, P2 - 1>(pairs, w, w_stride, x, blocks, y, y_stride, ahead);
      return;
    }
  }
  PreparedTokenPairs<kType, R, P2>(w, w_stride, x, blocks, y, y_stride, ahead);
}

// Rows [begin, end) of the range against the `paired` tokens, a tile of tokens at a time.
template <TensorType kType, int R>
CH_AVX512 void PreparedChunk(const MatMulArgs& a, int64_t begin, int64_t end, int32_t paired,
                             int32_t tile_pairs, PairBlock* prepared) {
  const int64_t blocks = a.cols / 32;
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  for (int32_t t = 0; t < paired; t += 2 * tile_pairs) {
    const int pairs = std::min<int32_t>(tile_pairs, (paired - t) / 2);
    PreparePairs<kType>(a.x + static_cast<size_t>(t) * a.x_row_bytes, a.x_row_bytes, pairs, blocks,
                        prepared);
    float* y = a.y + static_cast<size_t>(t) * a.y_stride;
    for (int64_t r = begin; r < end;) {
      const int64_t rows = end - r >= R ? R : 1;
      // Only the first tile of tokens reads the rows from memory.
      const SpreadPrefetch ahead = t == 0 ? TileAhead(a, r, rows, blocks) : Nothing();
      if (rows == R) {
        PreparedPairTile<kType, R, kPreparedPairs>(pairs, w_at(r), a.w_row_bytes, prepared, blocks,
                                                   y + r, a.y_stride, ahead);
      } else {
        PreparedPairTile<kType, 1, kPreparedPairs>(pairs, w_at(r), a.w_row_bytes, prepared, blocks,
                                                   y + r, a.y_stride, ahead);
      }
      r += rows;
    }
  }
}

// The offset types' pairs of tokens, up to kPreparedPairs pairs at a time, for one chunk of rows
// after another: each tile of tokens prepared once per chunk (PreparePairs), then every row tile
// of the chunk against it. A chunk's rows are read from memory for the first tile of tokens and
// from L2 for the rest, and the row tiles' per-pair work (loading the two tokens' bytes and
// scales, their starting sums) is done once per chunk: a batch of 16 decode rows ran 20% faster
// than with that work in every row tile (step_bench). Every (row, token) is the same dot as
// before, whatever the chunk, so the bits do not depend on it.
template <TensorType kType, int RD, int R>
CH_AVX512 void MatMulPrepared(const MatMulArgs& a) {
  const int64_t blocks = a.cols / 32;
  PairBlock prepared[kPreparedBlocks];
  const auto tile_pairs =
      static_cast<int32_t>(std::min<int64_t>(kPreparedPairs, kPreparedBlocks / blocks));
  const int32_t paired = a.n - a.n % 2;
  const int64_t chunk_rows =
      std::max<int64_t>(R, vector_pairs::kChunkBytes / static_cast<int64_t>(a.w_row_bytes) / R * R);
  for (int64_t c = a.row_begin; c < a.row_end && paired > 0; c += chunk_rows) {
    PreparedChunk<kType, R>(a, c, std::min(a.row_end, c + chunk_rows), paired, tile_pairs,
                            prepared);
  }
  if (paired < a.n) {
    DecodeToken<kType, RD>(a, paired);
  }
}

template <TensorType kType, int RD, int R, int P2>
CH_AVX512 void MatMulVec(const MatMulArgs& a) {
  const int64_t blocks = a.cols / 32;
  if constexpr (Q32<kType>::kOffset != 0) {
    if (a.n >= 2 && blocks <= kPreparedBlocks) {
      MatMulPrepared<kType, RD, R>(a);
      return;
    }
  }
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  // Whole tiles of 2 * P2 tokens, then the pairs left in one smaller tile (a batch of a few
  // sessions' decode rows reads the weights once, too); an odd last token goes alone.
  const int32_t paired = a.n - a.n % 2;
  for (int64_t r = a.row_begin; r < a.row_end && paired > 0;) {
    const int64_t rows = a.row_end - r >= R ? R : 1;
    for (int32_t t = 0; t < paired; t += 2 * P2) {
      const int pairs = std::min<int32_t>(P2, (paired - t) / 2);
      const SpreadPrefetch ahead = t == 0 ? TileAhead(a, r, rows, blocks) : Nothing();
      const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
      float* y = a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r);
      if (rows == R) {
        PairTile<kType, R, P2>(pairs, w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y,
                               a.y_stride, ahead);
      } else {
        PairTile<kType, 1, P2>(pairs, w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y,
                               a.y_stride, ahead);
      }
    }
    r += rows;
  }
  if (paired < a.n) {
    DecodeToken<kType, RD>(a, paired);
  }
}

template <TensorType kType>
CH_AVX512 float DotVec(const std::byte* w, const std::byte* x, int64_t cols) {
  float y = 0.0F;
  TileVec<kType, 1, 1>(w, 0, x, 0, cols / 32, &y, 1, Nothing());
  return y;
}

CH_AVX512 void MatMulInterleaved(const MatMulArgs& a) {
  constexpr int kTokens = 8;
  const int64_t blocks = a.cols / 32;
  const ProductFns portable = Q32ProductsPortable(TensorType::kQ4_0, DotOrder::kInterleaved8);
  for (int64_t r = a.row_begin; r < a.row_end;) {
    const std::byte* w = a.w + static_cast<size_t>(r) * a.w_row_bytes;
    if (a.row_end - r < 8) {
      // Fewer than 8 rows left: one at a time through the portable definition.
      for (int32_t t = 0; t < a.n; ++t) {
        a.y[static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r)] =
            portable.dot(w, a.x + static_cast<size_t>(t) * a.x_row_bytes, a.cols);
      }
      ++r;
      continue;
    }
    for (int32_t t = 0; t < a.n;) {
      const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
      float* y = a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r);
      const SpreadPrefetch ahead = t == 0 ? TileAhead(a, r, 8, blocks) : Nothing();
      if (a.n - t >= kTokens) {
        TileInterleaved<kTokens>(w, a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride, ahead);
        t += kTokens;
      } else {
        TileInterleaved<1>(w, a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride, ahead);
        t += 1;
      }
    }
    r += 8;
  }
}

// Q8_0 kBlockSums (a prompt's rows, type_kernels.h) and Q4_0 kInterleaved8 with 4 tokens or
// more: a token per 32-bit lane. A vector holds 16 tokens' bytes 4k .. 4k + 3 of one block; each
// vpdpbusd meets them with a row's four weight values broadcast, so after the block's 8 the lanes
// hold the 16 tokens' exact block sums. Then one conversion and one fma per (row, block) serve 16
// tokens, where kVecDot's lanes take eight per token pair: 64 tokens at 5.6x decode's speed per
// token where kVecDot's tiles run at 2.7x (kernel_bench --types q8_0,q8_0s --prefill 64 --cols
// 768). How the sums are made exact (vpdpbusd multiplies unsigned bytes by signed ones):
//  - Q8_0: the tokens' bytes are made unsigned (+128, an XOR) and meet the weights' signed bytes;
//    the lanes start from -128 * (the row's block summed), from a table (RowTables);
//  - Q4_0: the weights' nibbles (0-15, unsigned) meet the tokens' signed bytes; the value is the
//    nibble - 8, so the lanes start from -8 * (the token's block summed), laid out with the token.
// A product goes through its rows in chunks and its columns in slices:
//  - per chunk and slice, a pass over the rows (their first read, one stream in address order)
//    makes the tables the tiles use: each block's widened scale (a load where a conversion per
//    (row, block) took 4 instructions: Q4_0's 64 tokens went from 4.6x to 5.1x decode's speed per
//    token) and, for Q8_0, -128 * its sum;
//  - per tile of 16 tokens and slice, the tokens' blocks are laid out in lanes once, for every
//    row of the chunk;
//  - a row tile's later slices go on from the sums the earlier ones stored, so every (row, token)
//    is the definition's one chain of fmas in block order, whatever the chunk, slice or tile.
// Activation blocks laid out at once: 64 of them (2,048 values) are 36-40 KiB.
constexpr int64_t kSliceBlocks = 64;
// Weight blocks of a chunk: 8,192 (128 rows of a 2,048-value slice; 278 KiB of Q8_0, 147 KiB of
// Q4_0: about MatMulPrepared's L2-sized chunk), so each tile of lanes serves many rows. The
// tables of a chunk are 32 KiB (Q4_0) or 64 KiB (Q8_0).
constexpr int64_t kTableBlocks = 8192;

template <TensorType kType>
struct alignas(64) LaneBlock {
  __m512i u[8];  // vector k: lane t holds token t's bytes 4k .. 4k + 3, each + 128
  __m512 d;      // lane t: token t's scale
};

template <>
struct alignas(64) LaneBlock<TensorType::kQ4_0> {
  __m512i u[8];   // vector k: lane t holds token t's bytes 4k .. 4k + 3 as they are
  __m512 d;       // lane t: token t's scale
  __m512i start;  // lane t: -8 * token t's 32 bytes summed
};

// Tokens [0, count) of x (count <= 16), blocks [first, first + blocks) into out; the lanes past
// count hold zeros (values of 0, a scale of 0) and are never stored.
template <TensorType kType>
CH_AVX512 void LayOutLanes(const std::byte* x, size_t x_stride, int count, int64_t first,
                           int64_t blocks, LaneBlock<kType>* out) {
  using P = Q32<kType>;
  constexpr uint32_t kFlip = kType == TensorType::kQ8_0 ? 0x80808080U : 0U;
  for (int64_t b = 0; b < blocks; ++b) {
    alignas(64) uint32_t u[8][token_lanes::kTokens];
    alignas(64) float d[token_lanes::kTokens];
    for (int t = 0; t < token_lanes::kTokens; ++t) {
      if (t >= count) {
        for (int k = 0; k < 8; ++k) u[k][t] = kFlip;
        d[t] = 0.0F;
        continue;
      }
      const std::byte* xb =
          x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(first + b) * P::kXBytes;
      for (size_t k = 0; k < 8; ++k) u[k][t] = LoadU32(xb + P::kXQs + 4 * k) ^ kFlip;
      d[t] = HalfScalar(xb);
    }
    for (int k = 0; k < 8; ++k) {
      out[b].u[k] = _mm512_load_si512(u[k]);
    }
    out[b].d = _mm512_load_ps(d);
    if constexpr (kType == TensorType::kQ4_0) {
      const __m512i eights = _mm512_set1_epi8(8);
      __m512i sum = _mm512_setzero_si512();
      for (int k = 0; k < 8; ++k) {
        sum = _mm512_dpbusd_epi32(sum, eights, out[b].u[k]);
      }
      out[b].start = _mm512_sub_epi32(_mm512_setzero_si512(), sum);
    }
  }
}

// For rows [0, rows) at w (blocks [first, first + blocks) of each): scale[r * blocks + b] = the
// block's scale widened, and for Q8_0 start[r * blocks + b] = -128 * its 32 values summed.
template <TensorType kType>
CH_AVX512 void RowTables(const std::byte* w, size_t w_stride, int64_t rows, int64_t first,
                         int64_t blocks, int32_t* start, float* scale) {
  using P = Q32<kType>;
  const __m256i ones = _mm256_set1_epi8(1);
  for (int64_t r = 0; r < rows; ++r) {
    const std::byte* row = w + static_cast<size_t>(r) * w_stride;
    for (int64_t b = 0; b < blocks; ++b) {
      const std::byte* wb = row + static_cast<size_t>(first + b) * P::kBytes;
      const size_t at = static_cast<size_t>(r * blocks + b);
      scale[at] = HalfScalar(wb);
      if constexpr (kType == TensorType::kQ8_0) {
        const __m256i q = _mm256_loadu_si256(reinterpret_cast<const __m256i*>(wb + P::kQs));
        const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), ones, q);
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(s), _mm256_extracti128_si256(s, 1));
        h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 1));
        start[at] = -128 * _mm_cvtsi128_si32(h);
      }
    }
  }
}

// One (row, block) against a block of 16 tokens' lanes: their 16 exact sums.
CH_AVX512 inline __m512i LaneSums(const std::byte* wb, const LaneBlock<TensorType::kQ8_0>& x,
                                  int32_t start) {
  using P = Q32<TensorType::kQ8_0>;
  __m512i sums = _mm512_set1_epi32(start);
#pragma GCC unroll 8
  for (size_t k = 0; k < 8; ++k) {
    sums = _mm512_dpbusd_epi32(
        sums, x.u[k], _mm512_set1_epi32(static_cast<int32_t>(LoadU32(wb + P::kQs + 4 * k))));
  }
  return sums;
}

// Q4_0: values 0-15 are the low nibbles of bytes 0-15, 16-31 the high ones. Each of the block's
// four dwords is broadcast straight from the weights and masked twice: its low nibbles, and its
// high ones left in place (16 * the nibble), whose lanes are summed apart and shifted down (the
// sums of multiples of 16 are exact multiples of 16).
CH_AVX512 inline __m512i LaneSums(const std::byte* wb, const LaneBlock<TensorType::kQ4_0>& x) {
  using P = Q32<TensorType::kQ4_0>;
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  __m512i low = x.start;
  __m512i high = _mm512_setzero_si512();
#pragma GCC unroll 4
  for (size_t k = 0; k < 4; ++k) {
    const __m512i q = _mm512_set1_epi32(static_cast<int32_t>(LoadU32(wb + P::kQs + 4 * k)));
    low = _mm512_dpbusd_epi32(low, _mm512_and_si512(q, low4), x.u[k]);
    high = _mm512_dpbusd_epi32(high, _mm512_and_si512(q, high4), x.u[k + 4]);
  }
  return _mm512_add_epi32(low, _mm512_maskz_srai_epi32(kAll16, high, 4));
}

// R rows against one tile of lanes (tables at scale and, Q8_0, start: `blocks` entries a row);
// y[t * y_stride + r] for t < count, going on from y's values when `resume`.
template <TensorType kType, int R>
CH_AVX512 void LaneTile(const std::byte* w, size_t w_stride, int64_t first,
                        const LaneBlock<kType>* x, int64_t blocks, const int32_t* start,
                        const float* scale, float* y, size_t y_stride, int count, bool resume) {
  using P = Q32<kType>;
  __m512 acc[R];
  token_lanes::LoadTile<R>(y, y_stride, count, resume, acc);
  for (int64_t b = 0; b < blocks; ++b) {
    const LaneBlock<kType>& xb = x[b];
#pragma GCC unroll 8
    for (int r = 0; r < R; ++r) {
      const std::byte* wb =
          w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(first + b) * P::kBytes;
      const size_t at = static_cast<size_t>(r * blocks + b);
      __m512i sums;
      if constexpr (kType == TensorType::kQ8_0) {
        sums = LaneSums(wb, xb, start[at]);
      } else {
        sums = LaneSums(wb, xb);
      }
      const __m512 d = _mm512_mul_ps(_mm512_set1_ps(scale[at]), xb.d);
      acc[r] = _mm512_fmadd_ps(ToFloat(sums), d, acc[r]);
    }
  }
  token_lanes::StoreTile<R>(acc, y, y_stride, count);
}

// Rows [begin, end) of the product over the slice of `slice` blocks from `first`: their tables,
// then every tile of tokens against them. `lanes`, `start` and `scale`: the caller's
// scratch.
template <TensorType kType>
CH_AVX512 void LanesChunk(const MatMulArgs& a, int64_t first, int64_t slice, int64_t begin,
                          int64_t end, LaneBlock<kType>* lanes, int32_t* start, float* scale) {
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  RowTables<kType>(w_at(begin), a.w_row_bytes, end - begin, first, slice, start, scale);
  const auto lay_out = [&](const std::byte* x, int count) CH_AVX512 {
    LayOutLanes<kType>(x, a.x_row_bytes, count, first, slice, lanes);
  };
  const auto run = [&](auto rows, int64_t r, int count, float* y) CH_AVX512 {
    const size_t at = static_cast<size_t>((r - begin) * slice);
    LaneTile<kType, decltype(rows)::value>(w_at(r), a.w_row_bytes, first, lanes, slice,
                                           kType == TensorType::kQ8_0 ? start + at : nullptr,
                                           scale + at, y, a.y_stride, count, first > 0);
  };
  token_lanes::EveryTile(a, begin, end, lay_out, run);
}

template <TensorType kType>
CH_AVX512 void MatMulLanes(const MatMulArgs& a) {
  if (a.n < token_lanes::kMinTokens) {
    if constexpr (kType == TensorType::kQ8_0) {
      Q32ProductsAvx2(TensorType::kQ8_0, DotOrder::kBlockSums).matmul(a);
    } else {
      MatMulInterleaved(a);
    }
    return;
  }
  LaneBlock<kType> lanes[kSliceBlocks];
  // The tables: Q4_0 starts from the lanes and needs only the scales.
  int32_t start[kType == TensorType::kQ8_0 ? kTableBlocks : 1];
  float scale[kTableBlocks];
  token_lanes::EverySliceAndChunk(
      a, a.cols / 32, kSliceBlocks, kTableBlocks,
      [&](int64_t first, int64_t slice, int64_t begin, int64_t end)
          CH_AVX512 { LanesChunk<kType>(a, first, slice, begin, end, lanes, start, scale); });
}

template <TensorType kType, int RD, int R, int P2>
ProductFns Fns() {
  return {&DotVec<kType>, &MatMulVec<kType, RD, R, P2>};
}

}  // namespace

ProductFns Q32ProductsAvx512(TensorType type, DotOrder order) {
  if (order == DotOrder::kInterleaved8) {
    if (type != TensorType::kQ4_0) {
      return {};
    }
    return {Q32ProductsPortable(type, order).dot, &MatMulLanes<TensorType::kQ4_0>};
  }
  if (order == DotOrder::kBlockSums) {
    if (type != TensorType::kQ8_0) {
      return {};
    }
    return {Q32ProductsPortable(type, order).dot, &MatMulLanes<TensorType::kQ8_0>};
  }
  switch (type) {
    case TensorType::kQ4_0:
      return Fns<TensorType::kQ4_0, 8, 4, 3>();
    case TensorType::kQ4_1:
      return Fns<TensorType::kQ4_1, 8, 3, 2>();
    case TensorType::kQ5_0:
      return Fns<TensorType::kQ5_0, 8, 4, 3>();
    case TensorType::kQ5_1:
      return Fns<TensorType::kQ5_1, 8, 3, 2>();
    case TensorType::kQ8_0:
      return Fns<TensorType::kQ8_0, 4, 4, 3>();
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
