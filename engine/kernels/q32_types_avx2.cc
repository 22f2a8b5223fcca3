// Products of the 32-value block types (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) with AVX2 + FMA + F16C:
// the arithmetic of q32_types.cc, bit for bit, for CPUs without AVX-512 VNNI, and Q8_0's decode
// on those with it too (faster streaming there: type_kernels.cc). Only these functions are
// compiled for those extensions (target attribute); they run only on CPUs that have them.
//
// The integer lanes (four products each) come from pmaddubsw (unsigned bytes times signed bytes,
// pairs into int16) and pmaddwd by ones: exact, since no pair can saturate:
//   Q8_0        |w| times x carrying w's sign (at most 2 * 128 * 127); wrong only for an
//               activation byte of -128, which the quantizer makes only in a block whose scale
//               is zero (q32_types.cc)
//   Q4_0, Q5_0  the stored nibbles (0..15, 0..31) times x, minus 8 (16) times the lane's four
//               activation bytes
//   Q4_1, Q5_1  the nibbles times x
// and the float steps are the definition's. Decode takes 4 rows at a time and prefetches the
// tile a few KiB on in address order (TileAhead); prefill takes 2 rows x 3 tokens per tile.
#include <immintrin.h>

#include <algorithm>

#include "engine/kernels/prefetch.h"
#include "engine/kernels/type_kernels_internal.h"

#define CH_AVX2 __attribute__((target("avx2,fma,f16c")))

namespace cellhouse::engine::internal {

namespace {

template <TensorType kType>
struct Q32 {
  static constexpr size_t kBytes = GetTypeInfo(kType).block_bytes;
  static constexpr TensorType kPartner = GetTypeInfo(kType).partner;
  static constexpr size_t kXBytes = GetTypeInfo(kPartner).block_bytes;
  static constexpr size_t kXQs = kPartner == TensorType::kQ8_1 ? block::kQ8_1Qs : block::kQ8_0Qs;
  static constexpr int kShift = kType == TensorType::kQ4_0 ? 3 : kType == TensorType::kQ5_0 ? 4 : 0;
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

CH_AVX2 inline __m256i Load256(const std::byte* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// The stored values: int8 for Q8_0, else the nibbles with their fifth bits (0..15 or 0..31).
template <TensorType kType>
CH_AVX2 inline __m256i Unpack(const std::byte* b) {
  using P = Q32<kType>;
  if constexpr (kType == TensorType::kQ8_0) {
    return Load256(b + P::kQs);
  } else {
    const __m128i q = _mm_loadu_si128(reinterpret_cast<const __m128i*>(b + P::kQs));
    __m256i v = _mm256_inserti128_si256(_mm256_castsi128_si256(q), _mm_srli_epi16(q, 4), 1);
    v = _mm256_and_si256(v, _mm256_set1_epi8(0x0F));
    if constexpr (P::kFive) {
      // Byte i takes bit i of qh: spread qh's byte i / 8 to byte i, test bit i % 8.
      const __m256i spread =
          _mm256_shuffle_epi8(_mm256_set1_epi32(static_cast<int>(LoadU32(b + P::kQh))),
                              _mm256_setr_epi64x(0x0000000000000000, 0x0101010101010101,
                                                 0x0202020202020202, 0x0303030303030303));
      const __m256i bit = _mm256_set1_epi64x(static_cast<int64_t>(0x8040201008040201ULL));
      const __m256i set = _mm256_cmpeq_epi8(_mm256_and_si256(spread, bit), bit);
      v = _mm256_or_si256(v, _mm256_and_si256(set, _mm256_set1_epi8(16)));
    }
    return v;
  }
}

CH_AVX2 inline __m256 BroadcastHalf(const std::byte* p) {
  return _mm256_cvtph_ps(_mm_set1_epi16(static_cast<int16_t>(LoadU16(p))));
}

CH_AVX2 inline float HalfScalar(const std::byte* p) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(LoadU16(p))));
}

// ggml's hsum_float_8, instruction for instruction.
CH_AVX2 inline float Hsum8(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// One activation block: its bytes, the offset term of each lane, its scale (and Q8_1's s).
struct XBlock {
  __m256i q;
  __m256i start;
  __m256 d;
  float s;
};

template <TensorType kType>
CH_AVX2 inline XBlock LoadX(const std::byte* xb) {
  using P = Q32<kType>;
  XBlock x;
  x.q = Load256(xb + P::kXQs);
  x.start = _mm256_setzero_si256();
  if constexpr (P::kShift != 0) {
    const __m256i sums =
        _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_set1_epi8(1), x.q), _mm256_set1_epi16(1));
    x.start = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(sums, P::kShift));
  }
  x.d = BroadcastHalf(xb);
  x.s = P::kMin ? HalfScalar(xb + block::kQ8_1S) : 0.0F;
  return x;
}

// The exact lanes of one weight block (its values v) with one activation block.
template <TensorType kType>
CH_AVX2 inline __m256i Lanes(__m256i v, const XBlock& x) {
  const __m256i ones = _mm256_set1_epi16(1);
  if constexpr (kType == TensorType::kQ8_0) {
    return _mm256_madd_epi16(_mm256_maddubs_epi16(_mm256_sign_epi8(v, v), _mm256_sign_epi8(x.q, v)),
                             ones);
  } else {
    return _mm256_add_epi32(_mm256_madd_epi16(_mm256_maddubs_epi16(v, x.q), ones), x.start);
  }
}

// R rows x T tokens over all blocks, one 8-lane accumulator per (row, token).
template <TensorType kType, int R, int T>
CH_AVX2 void Tile(const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
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
    __m256i v[R];
    __m256 wd[R];
    float wm[R];
    for (int r = 0; r < R; ++r) {
      const std::byte* wb =
          w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(b) * P::kBytes;
      v[r] = Unpack<kType>(wb);
      wd[r] = BroadcastHalf(wb);
      wm[r] = P::kMin ? HalfScalar(wb + P::kM) : 0.0F;
    }
    for (int t = 0; t < T; ++t) {
      const XBlock xb =
          LoadX<kType>(x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(b) * P::kXBytes);
      for (int r = 0; r < R; ++r) {
        const __m256 d = _mm256_mul_ps(wd[r], xb.d);
        acc[r][t] = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(Lanes<kType>(v[r], xb)), acc[r][t]);
        if constexpr (P::kMin) {
          summs[r][t] = _mm_cvtss_f32(
              _mm_fmadd_ss(_mm_set_ss(wm[r]), _mm_set_ss(xb.s), _mm_set_ss(summs[r][t])));
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      float value = Hsum8(acc[r][t]);
      if constexpr (P::kMin) {
        value = value + summs[r][t];
      }
      y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)] = value;
    }
  }
}

// Q4_0 kInterleaved8 and Q8_0 kBlockSums: 8 rows at a time, each block's 32 products summed
// exactly per row (the lanes of the 8 rows folded together with phaddd), one fma per row and block.
template <TensorType kType, int T>
CH_AVX2 void TileBlockSums(const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
                           int64_t blocks, float* y, size_t y_stride, SpreadPrefetch ahead) {
  using P = Q32<kType>;
  __m256 acc[T];
  for (int t = 0; t < T; ++t) {
    acc[t] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    const std::byte* w0 = w + static_cast<size_t>(b) * P::kBytes;
    __m256i v[8];
    for (int r = 0; r < 8; ++r) {
      v[r] = Unpack<kType>(w0 + static_cast<size_t>(r) * w_stride);
    }
    __m128i hw = _mm_cvtsi32_si128(LoadU16(w0));
    hw = _mm_insert_epi16(hw, LoadU16(w0 + w_stride), 1);
    hw = _mm_insert_epi16(hw, LoadU16(w0 + 2 * w_stride), 2);
    hw = _mm_insert_epi16(hw, LoadU16(w0 + 3 * w_stride), 3);
    hw = _mm_insert_epi16(hw, LoadU16(w0 + 4 * w_stride), 4);
    hw = _mm_insert_epi16(hw, LoadU16(w0 + 5 * w_stride), 5);
    hw = _mm_insert_epi16(hw, LoadU16(w0 + 6 * w_stride), 6);
    hw = _mm_insert_epi16(hw, LoadU16(w0 + 7 * w_stride), 7);
    const __m256 wd = _mm256_cvtph_ps(hw);
    for (int t = 0; t < T; ++t) {
      const XBlock xb =
          LoadX<kType>(x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(b) * P::kXBytes);
      __m256i l[8];
      for (int r = 0; r < 8; ++r) {
        l[r] = Lanes<kType>(v[r], xb);
      }
      const __m256i ab =
          _mm256_hadd_epi32(_mm256_hadd_epi32(l[0], l[1]), _mm256_hadd_epi32(l[2], l[3]));
      const __m256i ce =
          _mm256_hadd_epi32(_mm256_hadd_epi32(l[4], l[5]), _mm256_hadd_epi32(l[6], l[7]));
      const __m256i sums = _mm256_add_epi32(_mm256_permute2x128_si256(ab, ce, 0x20),
                                            _mm256_permute2x128_si256(ab, ce, 0x31));
      acc[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(sums), _mm256_mul_ps(wd, xb.d), acc[t]);
    }
  }
  for (int t = 0; t < T; ++t) {
    _mm256_storeu_ps(y + static_cast<size_t>(t) * y_stride, acc[t]);
  }
}

inline SpreadPrefetch Nothing() { return {nullptr, nullptr, 0}; }

template <TensorType kType, int RD, int R, int T>
CH_AVX2 void MatMulVec(const MatMulArgs& a) {
  const int64_t blocks = a.cols / 32;
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  if (a.n == 1) {
    int64_t r = a.row_begin;
    for (; r + RD <= a.row_end; r += RD) {
      Tile<kType, RD, 1>(w_at(r), a.w_row_bytes, a.x, a.x_row_bytes, blocks, a.y + r, a.y_stride,
                         TileAhead(a, r, RD, blocks));
    }
    for (; r < a.row_end; ++r) {
      Tile<kType, 1, 1>(w_at(r), a.w_row_bytes, a.x, a.x_row_bytes, blocks, a.y + r, a.y_stride,
                        Nothing());
    }
    return;
  }
  for (int64_t r = a.row_begin; r < a.row_end;) {
    const int64_t rows = a.row_end - r >= R ? R : 1;
    for (int32_t t = 0; t < a.n;) {
      const SpreadPrefetch ahead = t == 0 ? TileAhead(a, r, rows, blocks) : Nothing();
      const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
      float* y = a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r);
      const bool full = a.n - t >= T;
      if (rows == R) {
        full ? Tile<kType, R, T>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride,
                                 ahead)
             : Tile<kType, R, 1>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride,
                                 ahead);
      } else {
        full ? Tile<kType, 1, T>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride,
                                 ahead)
             : Tile<kType, 1, 1>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride,
                                 ahead);
      }
      t += full ? T : 1;
    }
    r += rows;
  }
}

template <TensorType kType>
CH_AVX2 float DotVec(const std::byte* w, const std::byte* x, int64_t cols) {
  float y = 0.0F;
  Tile<kType, 1, 1>(w, 0, x, 0, cols / 32, &y, 1, Nothing());
  return y;
}

template <TensorType kType, DotOrder kOrder>
CH_AVX2 void MatMulBlockSums(const MatMulArgs& a) {
  constexpr int kTokens = 3;
  const int64_t blocks = a.cols / 32;
  const ProductFns portable = Q32ProductsPortable(kType, kOrder);
  for (int64_t r = a.row_begin; r < a.row_end;) {
    const std::byte* w = a.w + static_cast<size_t>(r) * a.w_row_bytes;
    if (a.row_end - r < 8) {
      for (int32_t t = 0; t < a.n; ++t) {
        a.y[static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r)] =
            portable.dot(w, a.x + static_cast<size_t>(t) * a.x_row_bytes, a.cols);
      }
      ++r;
      continue;
    }
    for (int32_t t = 0; t < a.n;) {
      const SpreadPrefetch ahead = t == 0 ? TileAhead(a, r, 8, blocks) : Nothing();
      const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
      float* y = a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r);
      if (a.n - t >= kTokens) {
        TileBlockSums<kType, kTokens>(w, a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride,
                                      ahead);
        t += kTokens;
      } else {
        TileBlockSums<kType, 1>(w, a.w_row_bytes, x, a.x_row_bytes, blocks, y, a.y_stride, ahead);
        t += 1;
      }
    }
    r += 8;
  }
}

template <TensorType kType>
ProductFns Fns() {
  return {&DotVec<kType>, &MatMulVec<kType, 4, 2, 3>};
}

}  // namespace

ProductFns Q32ProductsAvx2(TensorType type, DotOrder order) {
  if (order == DotOrder::kInterleaved8) {
    if (type != TensorType::kQ4_0) {
      return {};
    }
    return {Q32ProductsPortable(type, order).dot,
            &MatMulBlockSums<TensorType::kQ4_0, DotOrder::kInterleaved8>};
  }
  if (order == DotOrder::kBlockSums) {
    if (type != TensorType::kQ8_0) {
      return {};
    }
    return {Q32ProductsPortable(type, order).dot,
            &MatMulBlockSums<TensorType::kQ8_0, DotOrder::kBlockSums>};
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
