// The vector products of the K-quants (Q4_K, Q5_K, Q6_K), shared by k_types_avx2.cc and
// k_types_avx512.cc: each includes this file inside its own anonymous namespace after defining
// CH_TARGET (its target attribute) and the primitives below, so one body serves both and they
// cannot drift apart. Never included anywhere else.
//
// Primitives each includer defines (all CH_TARGET, all exact integer operations):
//   __m256i MulAddPairs(__m256i acc, __m256i pairs, __m256i scales)   acc + pmaddwd(pairs, scales)
//   __m256i ScaleOf(__m256i s16, int c)      every 16-bit lane = lane c of s16 (c < 8)
//   __m256i ScalePair(__m256i s16, int c)    lanes 0-7 = lane 2c, lanes 8-15 = lane 2c+1
//   __m256i FifthBit(__m256i q, __m256i qh, int c)   q | 16 where bit c of qh's byte is set
//   void Q6Values(__m256i ql0, __m256i ql1, __m256i qh, __m256i* q)   Q6_K's four chunks of a
//       half block: low 4 bits from ql0 / ql1 (low then high nibbles), top 2 from qh >> 2i
//
// What the products compute is k_types.cc's definition: per block, eight int32 lanes L[j] (lane
// j: each chunk of 32 values' products 4j .. 4j+3, weighted by the chunk's scale) made with
// pmaddubsw (unsigned weight bytes times signed activation bytes, pairs into int16: no
// saturation, as k_types.cc shows) and pmaddwd-style multiply-adds by the 16-bit scales, then
// the float steps of the definition in its order. A tile of R rows x T tokens unpacks each
// weight chunk once for its T tokens; every (row, token) sees only its own operations, in block
// order, whatever the tile.

#ifndef CH_TARGET
#error "k_types_simd.h is included by k_types_avx2.cc and k_types_avx512.cc only"
#endif

constexpr size_t kKBlock = 256;

template <TensorType kType>
struct KType {
  static constexpr size_t kBytes = GetTypeInfo(kType).block_bytes;
  static constexpr size_t kXBytes = GetTypeInfo(TensorType::kQ8_K).block_bytes;
};

// ggml's hsum_float_8.
CH_TARGET inline float Hsum8(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_extractf128_ps(v, 1), _mm256_castps256_ps128(v));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

// Q4_K's four mins lanes summed.
CH_TARGET inline float Hsum4(__m128 m) {
  m = _mm_add_ps(m, _mm_movehl_ps(m, m));
  m = _mm_add_ss(m, _mm_movehdup_ps(m));
  return _mm_cvtss_f32(m);
}

CH_TARGET inline float Half(const std::byte* p) {
  return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(LoadU16(p))));
}

CH_TARGET inline __m256i Load256(const std::byte* p) {
  return _mm256_loadu_si256(reinterpret_cast<const __m256i*>(p));
}

// A Q4_K/Q5_K block's 6-bit scales (16-bit lanes 0-7) and mins (lanes 8-15).
CH_TARGET inline __m256i ScalesAndMins(const std::byte* b) {
  const uint32_t a0 = LoadU32(b + block::kQ4_KScales);
  const uint32_t a1 = LoadU32(b + block::kQ4_KScales + 4);
  const uint32_t a2 = LoadU32(b + block::kQ4_KScales + 8);
  // block::UnpackKScaleMin, four sub-blocks per 32-bit word.
  const uint32_t sc_lo = a0 & 0x3F3F3F3FU;
  const uint32_t sc_hi = (a2 & 0x0F0F0F0FU) | (((a0 >> 6) & 0x03030303U) << 4);
  const uint32_t mn_lo = a1 & 0x3F3F3F3FU;
  const uint32_t mn_hi = ((a2 >> 4) & 0x0F0F0F0FU) | (((a1 >> 6) & 0x03030303U) << 4);
  uint64_t scales = sc_lo | (static_cast<uint64_t>(sc_hi) << 32);
  uint64_t mins = mn_lo | (static_cast<uint64_t>(mn_hi) << 32);
  // Keep this in general-purpose registers: GCC would otherwise vectorize the bit twiddling onto
  // the vector pipes, which the products keep busy (Q4_K in cache: 0.88x -> about 1.0x of
  // llama.cpp's vec_dot).
  asm("" : "+r"(scales), "+r"(mins));
  return _mm256_cvtepu8_epi16(
      _mm_set_epi64x(static_cast<int64_t>(mins), static_cast<int64_t>(scales)));
}

// The int16 sums of x's bsums in pairs (phaddw: wrapping, as the reference): the activation sums
// of the eight 32-value chunks.
CH_TARGET inline __m128i ChunkSums(const std::byte* xb) {
  const __m256i bsums = Load256(xb + block::kQ8_KBsums);
  return _mm_hadd_epi16(_mm256_castsi256_si128(bsums), _mm256_extracti128_si256(bsums, 1));
}

// Per (row, token) state of a tile.
struct KAcc {
  __m256 acc;
  __m128 accm;  // Q4_K's mins lanes
  float summs;  // Q5_K's mins sum (kVecDot); the one accumulator (kBlockSums)
};

// A block's eight chunks of 32 values in order: chunk(c, q, scale) with chunk c's values as
// unsigned bytes (Q4_K 0-15, Q5_K 0-31, Q6_K its values + 32, 0-63) and the scale each 16-bit
// pair of products is multiplied by (Q6_K's two sub-blocks: ScalePair). s16_k: the block's
// scales and mins as ScalesAndMins gives them (Q4_K, Q5_K).
template <TensorType kType, typename Chunk>
CH_TARGET inline void EveryChunk(const std::byte* wb, __m256i s16_k, const Chunk& chunk) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  if constexpr (kType == TensorType::kQ6_K) {
    const __m256i s16 = _mm256_cvtepi8_epi16(
        _mm_loadu_si128(reinterpret_cast<const __m128i*>(wb + block::kQ6_KScales)));
    for (size_t h = 0; h < 2; ++h) {
      __m256i q[4];
      Q6Values(Load256(wb + block::kQ6_KQl + 64 * h), Load256(wb + block::kQ6_KQl + 64 * h + 32),
               Load256(wb + block::kQ6_KQh + 32 * h), q);
      for (int i = 0; i < 4; ++i) {
        const int c = 4 * static_cast<int>(h) + i;
        chunk(c, q[i], ScalePair(s16, c));
      }
    }
  } else {
    constexpr bool kFive = kType == TensorType::kQ5_K;
    constexpr size_t kQs = kFive ? block::kQ5_KQs : block::kQ4_KQs;
    __m256i qh = _mm256_setzero_si256();
    if constexpr (kFive) {
      qh = Load256(wb + block::kQ5_KQh);
    }
    for (size_t j = 0; j < 4; ++j) {
      const __m256i bytes = Load256(wb + kQs + 32 * j);
      __m256i q[2] = {_mm256_and_si256(bytes, low4),
                      _mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4)};
      for (int i = 0; i < 2; ++i) {
        const int c = 2 * static_cast<int>(j) + i;
        if constexpr (kFive) {
          q[i] = FifthBit(q[i], qh, c);
        }
        chunk(c, q[i], ScaleOf(s16_k, c));
      }
    }
  }
}

// One row-block's integer lanes for T tokens: L[t] = the definition's L[j] lanes (Q6_K: the
// chunk's products minus 32 * its activations, x32, so that the values count from -32). The sums
// are exact integers, so their order is free: one token (decode) adds chunk c into sum c % 4,
// four short chains of multiply-adds that overlap; with more tokens their own chains overlap (two
// sums each for two tokens, one from three on), which leaves registers for a taller tile
// (AVX-512's 8 rows x 4 tokens, which now serve only rows past its token pairs' reach, were 4 x 4
// with four sums; kernel_bench --prefill 16
// --cache-kib 512, the product's speed per token as GB/s of weights: Q4_K 35 -> 39, Q6_K 45 ->
// 55; 16 rows were no faster in cache and slower from memory, where 16 rows of 4096 values no
// longer fit L1).
template <TensorType kType, int T>
CH_TARGET inline void BlockLanes(const std::byte* wb, __m256i s16_k, const std::byte* const* xq,
                                 const __m256i (*x32)[8], __m256i* lanes) {
  constexpr int kChains = T >= 3 ? 1 : 4 / T;
  __m256i sums[kChains][T];
  for (int t = 0; t < T; ++t) {
    for (int k = 0; k < kChains; ++k) {
      sums[k][t] = _mm256_setzero_si256();
    }
  }
  EveryChunk<kType>(wb, s16_k, [&](int c, __m256i q, __m256i scale) CH_TARGET {
    for (int t = 0; t < T; ++t) {
      __m256i pairs = _mm256_maddubs_epi16(q, Load256(xq[t] + 32 * static_cast<size_t>(c)));
      if constexpr (kType == TensorType::kQ6_K) {
        // (q - 32) * x in int16 pairs: q * x - 32 * x, neither of which saturates.
        pairs = _mm256_sub_epi16(pairs, x32[t][c]);
      }
      sums[c % kChains][t] = MulAddPairs(sums[c % kChains][t], pairs, scale);
    }
  });
  for (int t = 0; t < T; ++t) {
    lanes[t] = sums[0][t];
    for (int k = 1; k < kChains; ++k) lanes[t] = _mm256_add_epi32(lanes[t], sums[k][t]);
  }
}

// The eight int32 lanes summed (exact).
CH_TARGET inline int32_t SumInts(__m256i v) {
  __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
  h = _mm_add_epi32(h, _mm_unpackhi_epi64(h, h));
  h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 1));
  return _mm_cvtsi128_si32(h);
}

// R rows x T tokens over all blocks; y[t * y_stride + r]. kSums: DotOrder::kBlockSums (the
// block's lanes summed exactly, one float per (row, token), in summs), else kVecDot.
template <TensorType kType, int R, int T, bool kSums = false>
CH_TARGET void TileK(const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
                     int64_t blocks, float* y, size_t y_stride, SpreadPrefetch ahead) {
  using P = KType<kType>;
  KAcc acc[R][T];
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      acc[r][t] = {_mm256_setzero_ps(), _mm_setzero_ps(), 0.0F};
    }
  }
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    const std::byte* xb[T];
    const std::byte* xq[T];
    float xd[T];
    __m128i chunk_sums[T];
    __m256i x32[T][8];  // Q6_K: 32 * x in int16 pairs, per chunk: the same for every row
    for (int t = 0; t < T; ++t) {
      xb[t] = x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(b) * P::kXBytes;
      xq[t] = xb[t] + block::kQ8_KQs;
      xd[t] = LoadF32(xb[t] + block::kQ8_KD);
      if constexpr (kType != TensorType::kQ6_K) {
        chunk_sums[t] = ChunkSums(xb[t]);
      } else {
        for (int c = 0; c < 8; ++c) {
          x32[t][c] = _mm256_maddubs_epi16(_mm256_set1_epi8(32), Load256(xq[t] + 32 * c));
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      const std::byte* wb =
          w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(b) * P::kBytes;
      const __m256i s16 = kType == TensorType::kQ6_K ? _mm256_setzero_si256() : ScalesAndMins(wb);
      __m256i lanes[T];
      BlockLanes<kType, T>(wb, s16, xq, x32, lanes);
      if constexpr (kSums) {
        constexpr size_t kD = kType == TensorType::kQ6_K ? block::kQ6_KD : block::kQ4_KD;
        const float wd = Half(wb + kD);
        for (int t = 0; t < T; ++t) {
          float& acc_t = acc[r][t].summs;
          acc_t = std::fma(static_cast<float>(SumInts(lanes[t])), wd * xd[t], acc_t);
          if constexpr (kType != TensorType::kQ6_K) {
            const __m128i prod = _mm_madd_epi16(_mm256_extracti128_si256(s16, 1), chunk_sums[t]);
            const int32_t mins = SumInts(_mm256_zextsi128_si256(prod));
            acc_t = std::fma(static_cast<float>(mins), -Half(wb + block::kQ4_KDmin) * xd[t], acc_t);
          }
        }
      } else if constexpr (kType == TensorType::kQ6_K) {
        const float wd = Half(wb + block::kQ6_KD);
        for (int t = 0; t < T; ++t) {
          const __m256 d = _mm256_set1_ps(wd * xd[t]);
          acc[r][t].acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes[t]), acc[r][t].acc);
        }
      } else {
        const float wd = Half(wb + block::kQ4_KD);
        const float wdmin = Half(wb + block::kQ4_KDmin);
        const __m128i mins = _mm256_extracti128_si256(s16, 1);
        for (int t = 0; t < T; ++t) {
          const __m256 d = _mm256_set1_ps(xd[t] * wd);
          acc[r][t].acc = _mm256_fmadd_ps(d, _mm256_cvtepi32_ps(lanes[t]), acc[r][t].acc);
          const float dmin = -xd[t] * wdmin;
          const __m128i prod = _mm_madd_epi16(mins, chunk_sums[t]);
          if constexpr (kType == TensorType::kQ4_K) {
            acc[r][t].accm = _mm_fmadd_ps(_mm_set1_ps(dmin), _mm_cvtepi32_ps(prod), acc[r][t].accm);
          } else {
            const __m128i s2 = _mm_add_epi32(prod, _mm_unpackhi_epi64(prod, prod));
            const __m128i s1 = _mm_add_epi32(s2, _mm_shuffle_epi32(s2, 1));
            const float total = static_cast<float>(_mm_cvtsi128_si32(s1));
            acc[r][t].summs = _mm_cvtss_f32(
                _mm_fmadd_ss(_mm_set_ss(total), _mm_set_ss(dmin), _mm_set_ss(acc[r][t].summs)));
          }
        }
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      if constexpr (kSums) {
        y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)] = acc[r][t].summs;
        continue;
      }
      float v = Hsum8(acc[r][t].acc);
      if constexpr (kType == TensorType::kQ4_K) {
        v = v + Hsum4(acc[r][t].accm);
      } else if constexpr (kType == TensorType::kQ5_K) {
        v = v + acc[r][t].summs;
      }
      y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)] = v;
    }
  }
}

// One token (decode): RD rows at a time, then single rows.
template <TensorType kType, int RD, bool kSums>
CH_TARGET void DecodeToken(const MatMulArgs& a, int32_t t) {
  const int64_t blocks = a.cols / static_cast<int64_t>(kKBlock);
  const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
  float* y = a.y + static_cast<size_t>(t) * a.y_stride;
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  int64_t r = a.row_begin;
  for (; r + RD <= a.row_end; r += RD) {
    TileK<kType, RD, 1, kSums>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y + r, a.y_stride,
                               TileAhead(a, r, RD, blocks));
  }
  for (; r < a.row_end; ++r) {
    TileK<kType, 1, 1, kSums>(w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y + r, a.y_stride,
                              SpreadPrefetch(nullptr, nullptr, 0));
  }
}

// TileK with `tokens` (1..T) tokens: the tile that fits them exactly.
template <TensorType kType, int R, int T, bool kSums>
CH_TARGET void TileKOf(int tokens, const std::byte* w, size_t w_stride, const std::byte* x,
                       size_t x_stride, int64_t blocks, float* y, size_t y_stride,
                       SpreadPrefetch ahead) {
  if constexpr (T > 1) {
    if (tokens < T) {
      TileKOf<kType, R, T - 1, kSums>(tokens, w, w_stride, x, x_stride, blocks, y, y_stride, ahead);
      return;
    }
  }
  TileK<kType, R, T, kSums>(w, w_stride, x, x_stride, blocks, y, y_stride, ahead);
}

// Several tokens: R rows x T tokens (single rows where fewer than R are left); one goes through
// DecodeToken.
template <TensorType kType, int RD, int R, int T, bool kSums = false>
CH_TARGET void MatMulK(const MatMulArgs& a) {
  // Rows past the last whole tile of R go in tiles of 4 (when R is larger), then one by one.
  constexpr int kRemainderRows = R > 4 ? 4 : 1;
  if (a.n == 1) {
    DecodeToken<kType, RD, kSums>(a, 0);
    return;
  }
  const int64_t blocks = a.cols / static_cast<int64_t>(kKBlock);
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  const SpreadPrefetch none(nullptr, nullptr, 0);
  // Tiles of T tokens, the last one narrower (a batch of a few sessions' decode rows reads the
  // weights once, too; with AVX-512 such batches take token pairs, k_types_avx512.cc).
  for (int64_t r = a.row_begin; r < a.row_end;) {
    const int64_t left = a.row_end - r;
    const int64_t rows = left >= R ? R : left >= kRemainderRows ? kRemainderRows : 1;
    for (int32_t t = 0; t < a.n; t += T) {
      const int tokens = std::min<int32_t>(T, a.n - t);
      const SpreadPrefetch ahead = t == 0 ? TileAhead(a, r, rows, blocks) : none;
      const std::byte* x = a.x + static_cast<size_t>(t) * a.x_row_bytes;
      float* y = a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r);
      if (rows == R) {
        TileKOf<kType, R, T, kSums>(tokens, w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y,
                                    a.y_stride, ahead);
      } else if (rows == kRemainderRows) {
        TileKOf<kType, kRemainderRows, T, kSums>(tokens, w_at(r), a.w_row_bytes, x, a.x_row_bytes,
                                                 blocks, y, a.y_stride, ahead);
      } else {
        TileKOf<kType, 1, T, kSums>(tokens, w_at(r), a.w_row_bytes, x, a.x_row_bytes, blocks, y,
                                    a.y_stride, ahead);
      }
    }
    r += rows;
  }
}

template <TensorType kType, bool kSums = false>
CH_TARGET float DotK(const std::byte* w, const std::byte* x, int64_t cols) {
  float y = 0.0F;
  TileK<kType, 1, 1, kSums>(w, 0, x, 0, cols / static_cast<int64_t>(kKBlock), &y, 1,
                            SpreadPrefetch(nullptr, nullptr, 0));
  return y;
}
