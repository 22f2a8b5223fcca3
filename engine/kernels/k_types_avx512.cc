// Products of the K-quants with AVX-512 (F/BW/VL/VNNI): k_types_simd.h on 256-bit vectors, with
// vpdpwssd for the scale multiply-adds, vpermw for the scale broadcasts and byte-mask tests for
// Q5_K's fifth bits (one token's decode, a batch's rows of more than 16,384 values, a prompt of
// fewer than 4 tokens); several tokens' decode rows in pairs on 512-bit vectors, and a prompt's
// token lanes on 512-bit ones (below). Bit-identical to k_types.cc
// (tested). Only these functions are compiled for those extensions (target attribute); the table
// uses them only on such CPUs.
#include <immintrin.h>

#include <algorithm>
#include <cmath>
#include <type_traits>

#include "engine/kernels/prefetch.h"
#include "engine/kernels/token_lanes_avx512.h"
#include "engine/kernels/type_kernels_internal.h"
#include "engine/kernels/vector_pairs_avx512.h"

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

// ---- Several tokens' decode rows (DotOrder::kVecDot, n >= 2): two tokens to a 512-bit vector,
// one in each half, as q32_types_avx512.cc's PreparedTokenPairs does for Q8_0. Each half does
// what the 256-bit tiles above do for its token, instruction for instruction (pmaddubsw,
// vpdpwssd by the chunk's scale, the float lanes in block order), so a (row, token) keeps the
// bits of its own dot. A weight block is unpacked once (256-bit, as decode does) and broadcast to
// both halves for every pair of the tile; a pair's activations are laid out once per tile of
// tokens and chunk of rows. kernel_bench --cols 768 --prefill 16 (per token, against decode; from
// memory): Q4_K 1.64-1.78x -> 3.0-3.2x, Q6_K 1.89x -> 3.6x. Two rows a tile spilled registers
// (Q4_K 2.6x, Q6_K 2.1-2.5x); 8 pairs a tile made Q6_K's prepared blocks of 2,048-value rows
// outgrow L1 (1.5x).

using token_lanes::kAll16;

template <TensorType kType>
struct alignas(64) KPairBlock {
  __m512i q[8];     // chunk c's 32 activation bytes: the pair's first token low, second high
  __m512 d;         // lanes 0-7: the first token's x.d, 8-15 the second's
  __m256 minus_dm;  // lanes 0-3 and 4-7: -x.d of each, beside the mins' four lanes per token
  __m256i sums;     // the tokens' ChunkSums: first low, second high
};

template <>
struct alignas(64) KPairBlock<TensorType::kQ6_K> {
  __m512i q[8];
  __m512i x32[8];  // 32 * x in int16 pairs, per chunk (the -32 of Q6_K's values)
  __m512 d;
};

// A pair's blocks [0, blocks) into out[b]: the tokens at xa and xb (xb == nullptr: an odd last
// token, its partner all zeros, computed and never stored).
template <TensorType kType>
CH_TARGET void PrepareKPair(const std::byte* xa, const std::byte* xb, int64_t blocks,
                            KPairBlock<kType>* out) {
  using P = KType<kType>;
  for (int64_t b = 0; b < blocks; ++b) {
    const std::byte* a = xa + static_cast<size_t>(b) * P::kXBytes;
    const std::byte* c = xb == nullptr ? nullptr : xb + static_cast<size_t>(b) * P::kXBytes;
    KPairBlock<kType>& o = out[b];
    for (size_t k = 0; k < 8; ++k) {
      const size_t at = block::kQ8_KQs + 32 * k;
      o.q[k] = vector_pairs::Pair(Load256(a + at),
                                  c == nullptr ? _mm256_setzero_si256() : Load256(c + at));
    }
    const float da = LoadF32(a + block::kQ8_KD);
    const float dc = c == nullptr ? 0.0F : LoadF32(c + block::kQ8_KD);
    o.d = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(da), _mm512_set1_ps(dc));
    if constexpr (kType == TensorType::kQ6_K) {
      for (size_t k = 0; k < 8; ++k) {
        o.x32[k] = _mm512_maddubs_epi16(_mm512_set1_epi8(32), o.q[k]);
      }
    } else {
      o.minus_dm = _mm256_blend_ps(_mm256_set1_ps(-da), _mm256_set1_ps(-dc), 0xF0);
      const __m128i hi = c == nullptr ? _mm_setzero_si128() : ChunkSums(c);
      o.sums = _mm256_inserti128_si256(_mm256_castsi128_si256(ChunkSums(a)), hi, 1);
    }
  }
}

// One row-block's integer lanes for P2 pairs (pair p's block at x[p * stride]): BlockLanes's
// sums for each token, in its half.
template <TensorType kType, int P2>
CH_TARGET inline void PairLanes(const std::byte* wb, __m256i s16_k, const KPairBlock<kType>* x,
                                int64_t stride, __m512i* lanes) {
  const auto pair = [x, stride](int p) -> const KPairBlock<kType>& {
    return x[static_cast<ptrdiff_t>(p) * stride];
  };
  for (int p = 0; p < P2; ++p) lanes[p] = _mm512_setzero_si512();
  EveryChunk<kType>(wb, s16_k, [&](int c, __m256i q, __m256i scale) CH_TARGET {
    const __m512i qw = vector_pairs::Both(q);
    const __m512i scale2 = vector_pairs::Both(scale);
    for (int p = 0; p < P2; ++p) {
      __m512i pairs = _mm512_maddubs_epi16(qw, pair(p).q[c]);
      if constexpr (kType == TensorType::kQ6_K) {
        pairs = _mm512_sub_epi16(pairs, pair(p).x32[c]);
      }
      lanes[p] = _mm512_dpwssd_epi32(lanes[p], pairs, scale2);
    }
  });
}

// One row against P2 prepared pairs (pair p's block b at x[p * blocks + b]) over all blocks, with
// TileK's float steps for each token; y[t * y_stride] for the tile's tokens t < count.
template <TensorType kType, int P2>
CH_TARGET void KPairTile(const std::byte* w, const KPairBlock<kType>* x, int64_t blocks, float* y,
                         size_t y_stride, int count, SpreadPrefetch ahead) {
  using P = KType<kType>;
  __m512 acc[P2];
  __m256 accm[P2];  // Q4_K: the mins' four lanes per token; Q5_K: their sum in lanes 0 and 4
  for (int p = 0; p < P2; ++p) {
    acc[p] = _mm512_setzero_ps();
    accm[p] = _mm256_setzero_ps();
  }
  for (int64_t b = 0; b < blocks; ++b) {
    ahead.Step(b);
    const std::byte* wb = w + static_cast<size_t>(b) * P::kBytes;
    const __m256i s16 = kType == TensorType::kQ6_K ? _mm256_setzero_si256() : ScalesAndMins(wb);
    __m512i lanes[P2];
    PairLanes<kType, P2>(wb, s16, x + b, blocks, lanes);
    const auto at = [x, blocks, b](int p) -> const KPairBlock<kType>& {
      return x[static_cast<ptrdiff_t>(p) * blocks + b];
    };
    if constexpr (kType == TensorType::kQ6_K) {
      const __m512 wd = _mm512_set1_ps(Half(wb + block::kQ6_KD));
      for (int p = 0; p < P2; ++p) {
        const __m512 d = _mm512_mul_ps(wd, at(p).d);
        acc[p] = _mm512_fmadd_ps(d, _mm512_maskz_cvtepi32_ps(kAll16, lanes[p]), acc[p]);
      }
    } else {
      const __m512 wd = _mm512_set1_ps(Half(wb + block::kQ4_KD));
      const __m256 wdmin = _mm256_set1_ps(Half(wb + block::kQ4_KDmin));
      const __m256i mins = _mm256_permute2x128_si256(s16, s16, 0x11);
      for (int p = 0; p < P2; ++p) {
        const KPairBlock<kType>& xp = at(p);
        const __m512 d = _mm512_mul_ps(xp.d, wd);
        acc[p] = _mm512_fmadd_ps(d, _mm512_maskz_cvtepi32_ps(kAll16, lanes[p]), acc[p]);
        // -x.d * dmin, negated before the multiply as TileK does (a NaN dmin keeps its sign).
        const __m256 dmin = _mm256_mul_ps(xp.minus_dm, wdmin);
        const __m256i prod = _mm256_madd_epi16(mins, xp.sums);
        if constexpr (kType == TensorType::kQ4_K) {
          accm[p] = _mm256_fmadd_ps(dmin, _mm256_cvtepi32_ps(prod), accm[p]);
        } else {
          const __m256i s2 = _mm256_add_epi32(prod, _mm256_unpackhi_epi64(prod, prod));
          const __m256i s1 = _mm256_add_epi32(s2, _mm256_shuffle_epi32(s2, 1));
          accm[p] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(s1), dmin, accm[p]);
        }
      }
    }
  }
  for (int p = 0; p < P2; ++p) {
    for (int h = 0; h < 2 && 2 * p + h < count; ++h) {
      float v = Hsum8(h == 0 ? vector_pairs::Low(acc[p]) : vector_pairs::High(acc[p]));
      const __m128 m = h == 0 ? _mm256_castps256_ps128(accm[p]) : _mm256_extractf128_ps(accm[p], 1);
      if constexpr (kType == TensorType::kQ4_K) {
        v = v + Hsum4(m);
      } else if constexpr (kType == TensorType::kQ5_K) {
        v = v + _mm_cvtss_f32(m);
      }
      y[static_cast<size_t>(2 * p + h) * y_stride] = v;
    }
  }
}

// KPairTile with `pairs` (1..P2) pairs.
template <TensorType kType, int P2>
CH_TARGET void KPairTileOf(int pairs, const std::byte* w, const KPairBlock<kType>* x,
                           int64_t blocks, float* y, size_t y_stride, int count,
                           SpreadPrefetch ahead) {
  if constexpr (P2 > 1) {
    if (pairs < P2) {
      KPairTileOf<kType, P2 - 1>(pairs, w, x, blocks, y, y_stride, count, ahead);
      return;
    }
  }
  KPairTile<kType, P2>(w, x, blocks, y, y_stride, count, ahead);
}

// Pairs of a tile of tokens, and the prepared blocks they may take (on the stack: Q4_K's 40 KiB,
// Q6_K's 68 KiB): 4 pairs of rows up to 4,096 values, fewer of longer rows; rows past 16,384
// values go through the 256-bit tiles.
constexpr int kKTilePairs = 4;
constexpr int64_t kKPairBlocks = 64;

// Two tokens or more in pairs; out of line so that one token's decode does not set up the
// prepared blocks' stack frame.
template <TensorType kType>
__attribute__((noinline)) CH_TARGET void ProductInPairs(const MatMulArgs& a, int64_t blocks) {
  KPairBlock<kType> prepared[kKPairBlocks];
  const auto tile_pairs =
      static_cast<int32_t>(std::min<int64_t>(kKTilePairs, kKPairBlocks / blocks));
  const int64_t chunk_rows =
      std::max<int64_t>(1, vector_pairs::kChunkBytes / static_cast<int64_t>(a.w_row_bytes));
  const auto x_at = [&a](int32_t t) { return a.x + static_cast<size_t>(t) * a.x_row_bytes; };
  for (int64_t c = a.row_begin; c < a.row_end; c += chunk_rows) {
    const int64_t end = std::min(a.row_end, c + chunk_rows);
    for (int32_t t = 0; t < a.n; t += 2 * tile_pairs) {
      const int count = std::min<int32_t>(2 * tile_pairs, a.n - t);
      const int pairs = (count + 1) / 2;
      for (int p = 0; p < pairs; ++p) {
        const int32_t first = t + 2 * p;
        PrepareKPair<kType>(x_at(first), first + 1 < a.n ? x_at(first + 1) : nullptr, blocks,
                            prepared + static_cast<ptrdiff_t>(p) * blocks);
      }
      float* y = a.y + static_cast<size_t>(t) * a.y_stride;
      for (int64_t r = c; r < end; ++r) {
        // Only the first tile of tokens reads the rows from memory.
        const SpreadPrefetch ahead =
            t == 0 ? TileAhead(a, r, 1, blocks) : SpreadPrefetch(nullptr, nullptr, 0);
        KPairTileOf<kType, kKTilePairs>(pairs, a.w + static_cast<size_t>(r) * a.w_row_bytes,
                                        prepared, blocks, y + r, a.y_stride, count, ahead);
      }
    }
  }
}

// kVecDot: one token through DecodeToken's 256-bit tiles (RD rows), and rows of more than
// kKPairBlocks blocks through their 8 x 4 tiles; other products of several tokens in pairs.
template <TensorType kType, int RD>
CH_TARGET void MatMulKPairs(const MatMulArgs& a) {
  const int64_t blocks = a.cols / static_cast<int64_t>(kKBlock);
  if (a.n == 1 || blocks == 0 || blocks > kKPairBlocks) {
    MatMulK<kType, RD, 8, 4>(a);
    return;
  }
  ProductInPairs<kType>(a, blocks);
}

// ---- A prompt's Q4_K, Q5_K and Q6_K rows (DotOrder::kBlockSums) with 4 tokens or more: a token
// per 32-bit lane, as q32_types_avx512.cc's MatMulLanes does for Q8_0 and Q4_0. A vector holds 16
// tokens' activation bytes 4k .. 4k + 3 of one block; each vpdpbusd meets them with four of a
// row's values broadcast, so each sub-block's 16 exact sums take one multiply by its scale, and
// one conversion and one fma (two with Q4_K's and Q5_K's mins)
// per (row, block) serve 16 tokens, where the 256-bit tiles take them per token. The block's
// integer sum is the definition's (exact, so its order is free) and its float work is one chain
// per (row, token) in block order, whatever the chunk, slice or tile.
//  - Q4_K: the two chunks of 32 that share 32 bytes of nibbles: each dword broadcast and masked
//    twice, its high nibbles left in place (16 * the nibble) and summed apart, then shifted down;
//    the mins' sum is min pairs (int16) against each token's chunk sums (int16 pairs of bsums,
//    wrapping as the definition's), one vpdpwssd per pair;
//  - Q5_K (values 0-31, its mins as Q4_K's) and Q6_K (values q - 32): values unpacked once per
//    chunk of rows into a table (the bit shuffling would otherwise be repeated for every tile of
//    tokens), the signed operand, which vpdpbusd
//    broadcasts from memory itself; the tokens' bytes + 128 are the unsigned one, so each
//    sub-block starts from -128 * its values summed (in the table), and a tile's rows
//    go through each activation vector together (one load for all of them): 64 tokens from
//    3.95x to 4.37x decode's speed per token in cache (kernel_bench --cache-kib 512) against
//    per-token starts and weights broadcast apart.
// Per chunk of rows and slice of columns, a first pass over the rows (their read from memory)
// makes the tables: scales and mins widened, the halves widened, Q5_K's and Q6_K's values.

// Blocks of 256 values laid out at once: 8 (2,048 values) are 35 KiB (Q4_K, Q5_K) or 33 KiB
// (Q6_K).
constexpr int64_t kKSliceBlocks = 8;
// Table entries (row blocks) of a chunk: 56 KiB for Q4_K (1,024 entries, 144 KiB of weights),
// 117 KiB for Q6_K (288 entries, 59 KiB of weights: its entries hold the values unpacked).
constexpr int64_t kK4TableBlocks = 1024;
constexpr int64_t kK6TableBlocks = 288;  // and Q5_K's (352 bytes an entry: 99 KiB)

template <TensorType kType>
struct alignas(64) KLaneBlock {
  __m512i u[64];    // vector k: lane t holds token t's bytes 4k .. 4k + 3 (Q5_K: each + 128)
  __m512 d;         // lane t: token t's d
  __m512i sums[4];  // lane t: token t's chunk sums 2l and 2l + 1 (int16 each)
};

template <>
struct alignas(64) KLaneBlock<TensorType::kQ6_K> {
  __m512i u[64];  // as Q4_K's, each byte + 128 (an XOR): the unsigned operand
  __m512 d;
};

struct KRow4 {
  int32_t scale[8];
  int32_t mins[4];  // int16 pairs: min[2l] low, min[2l + 1] high
  float d;
  float minus_dmin;  // -dmin: negated before the multiply by x.d, as the definition does
};

struct KRow5 {
  alignas(32) int8_t q[256];  // the values (0-31) in order: the signed operand
  int32_t start[8];           // -128 * chunk c's 32 of them summed
  int32_t scale[8];
  int32_t mins[4];  // int16 pairs, as KRow4's
  float d;
  float minus_dmin;  // -dmin: negated before the multiply by x.d, as the definition does
};

struct KRow6 {
  alignas(32) int8_t q[256];  // the values minus 32 (-32 .. 31) in order: the signed operand
  int32_t start[16];          // -128 * sub-block s's 16 of them summed
  int32_t scale[16];
  float d;
};

template <TensorType kType>
using KRow = std::conditional_t<kType == TensorType::kQ4_K, KRow4,
                                std::conditional_t<kType == TensorType::kQ5_K, KRow5, KRow6>>;

// Token t's chunk sums as Q4_K's mins take them: the int16 sums of its bsums in pairs (wrapping,
// as the definition's PairSums), two to a lane: sums[l][t] = s[2l] | s[2l + 1] << 16.
CH_TARGET inline void ChunkSumPairs(const std::byte* xb, int t,
                                    uint32_t (*sums)[token_lanes::kTokens]) {
  for (size_t l = 0; l < 4; ++l) {
    uint32_t pair = 0;
    for (size_t i = 0; i < 2; ++i) {
      const size_t at = block::kQ8_KBsums + 4 * (2 * l + i);
      const auto s = static_cast<uint16_t>(LoadU16(xb + at) + LoadU16(xb + at + 2));
      pair |= static_cast<uint32_t>(s) << (16 * i);
    }
    sums[l][t] = pair;
  }
}

// Tokens [0, count) of x (count <= 16), blocks [first, first + blocks) into out; the lanes past
// count hold activations of zero (bytes of 0, or 0x80 where they are + 128) and are never stored.
template <TensorType kType>
CH_TARGET void LayOutKLanes(const std::byte* x, size_t x_stride, int count, int64_t first,
                            int64_t blocks, KLaneBlock<kType>* out) {
  using P = KType<kType>;
  for (int64_t b = 0; b < blocks; ++b) {
    alignas(64) uint32_t u[64][token_lanes::kTokens] = {};
    alignas(64) float d[token_lanes::kTokens] = {};
    alignas(64) uint32_t sums[4][token_lanes::kTokens] = {};
    for (int t = 0; t < count; ++t) {
      const std::byte* xb =
          x + static_cast<size_t>(t) * x_stride + static_cast<size_t>(first + b) * P::kXBytes;
      for (size_t k = 0; k < 64; ++k) u[k][t] = LoadU32(xb + block::kQ8_KQs + 4 * k);
      d[t] = LoadF32(xb + block::kQ8_KD);
      if constexpr (kType != TensorType::kQ6_K) {
        ChunkSumPairs(xb, t, sums);
      }
    }
    KLaneBlock<kType>& o = out[b];
    for (size_t k = 0; k < 64; ++k) {
      o.u[k] = _mm512_load_si512(u[k]);
    }
    o.d = _mm512_load_ps(d);
    if constexpr (kType != TensorType::kQ6_K) {
      for (size_t l = 0; l < 4; ++l) {
        o.sums[l] = _mm512_load_si512(sums[l]);
      }
    }
    if constexpr (kType != TensorType::kQ4_K) {
      for (size_t k = 0; k < 64; ++k) {
        o.u[k] = _mm512_xor_si512(o.u[k], _mm512_set1_epi8(static_cast<char>(0x80)));
      }
    }
  }
}

// Q4_K's and Q5_K's scales, mins (in pairs) and halves (the same offsets in both).
template <typename Row>
CH_TARGET inline void FillScales(const std::byte* wb, Row& e) {
  const auto* scales = reinterpret_cast<const uint8_t*>(wb + block::kQ4_KScales);
  uint32_t min[8];
  for (int s = 0; s < 8; ++s) {
    const block::KScaleMin sm = block::UnpackKScaleMin(scales, s);
    e.scale[s] = sm.scale;
    min[s] = sm.min;
  }
  for (size_t l = 0; l < 4; ++l) {
    e.mins[l] = static_cast<int32_t>(min[2 * l] | (min[2 * l + 1] << 16));
  }
  e.d = Half(wb + block::kQ4_KD);
  e.minus_dmin = -Half(wb + block::kQ4_KDmin);
}

CH_TARGET inline void FillRow(const std::byte* wb, KRow4& e) { FillScales(wb, e); }

// -128 * each sub-block's `kValues` values summed.
template <size_t kSubs, size_t kValues>
inline void Starts(const int8_t* q, int32_t* start) {
  for (size_t s = 0; s < kSubs; ++s) {
    int32_t sum = 0;
    for (size_t i = 0; i < kValues; ++i) {
      sum += q[kValues * s + i];
    }
    start[s] = -128 * sum;
  }
}

CH_TARGET inline void FillRow(const std::byte* wb, KRow5& e) {
  const __m256i low4 = _mm256_set1_epi8(0x0F);
  const __m256i qh = Load256(wb + block::kQ5_KQh);
  for (size_t j = 0; j < 4; ++j) {
    const __m256i bytes = Load256(wb + block::kQ5_KQs + 32 * j);
    const int c = 2 * static_cast<int>(j);
    _mm256_store_si256(reinterpret_cast<__m256i*>(e.q + 64 * j),
                       FifthBit(_mm256_and_si256(bytes, low4), qh, c));
    _mm256_store_si256(reinterpret_cast<__m256i*>(e.q + 64 * j + 32),
                       FifthBit(_mm256_and_si256(_mm256_srli_epi16(bytes, 4), low4), qh, c + 1));
  }
  Starts<8, 32>(e.q, e.start);
  FillScales(wb, e);
}

CH_TARGET inline void FillRow(const std::byte* wb, KRow6& e) {
  const __m256i thirty_two = _mm256_set1_epi8(32);
  for (size_t h = 0; h < 2; ++h) {
    __m256i q[4];
    Q6Values(Load256(wb + block::kQ6_KQl + 64 * h), Load256(wb + block::kQ6_KQl + 64 * h + 32),
             Load256(wb + block::kQ6_KQh + 32 * h), q);
    for (size_t i = 0; i < 4; ++i) {
      const __m256i v = _mm256_sub_epi8(_mm256_and_si256(q[i], _mm256_set1_epi8(0x3F)), thirty_two);
      _mm256_store_si256(reinterpret_cast<__m256i*>(e.q + 128 * h + 32 * i), v);
    }
  }
  Starts<16, 16>(e.q, e.start);
  for (size_t s = 0; s < 16; ++s) {
    e.scale[s] = SignedByte(wb[block::kQ6_KScales + s]);
  }
  e.d = Half(wb + block::kQ6_KD);
}

// The tables of rows [0, rows) at w, blocks [first, first + blocks) of each: rows[r * blocks + b].
template <TensorType kType>
CH_TARGET void KRowTables(const std::byte* w, size_t w_stride, int64_t rows, int64_t first,
                          int64_t blocks, KRow<kType>* table) {
  using P = KType<kType>;
  for (int64_t r = 0; r < rows; ++r) {
    for (int64_t b = 0; b < blocks; ++b) {
      FillRow(w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(first + b) * P::kBytes,
              table[static_cast<size_t>(r * blocks + b)]);
    }
  }
}

// Q4_K's and Q5_K's mins: one row's 16 exact sums of min * (the chunk's x summed).
template <typename Row, typename Lanes>
CH_TARGET inline __m512i MinSums(const Row& e, const Lanes& x) {
  __m512i m = _mm512_setzero_si512();
  for (size_t l = 0; l < 4; ++l) {
    m = _mm512_dpwssd_epi32(m, _mm512_set1_epi32(e.mins[l]), x.sums[l]);
  }
  return m;
}

// One (row, block) against a block of 16 tokens' lanes: the block's 16 exact sums (Q4_K: and the
// mins' sums in *mins).
CH_TARGET inline __m512i KLaneSums(const std::byte* wb, const KRow4& e,
                                   const KLaneBlock<TensorType::kQ4_K>& x, __m512i* mins) {
  const __m512i low4 = _mm512_set1_epi8(0x0F);
  const __m512i high4 = _mm512_set1_epi8(static_cast<char>(0xF0));
  const std::byte* qs = wb + block::kQ4_KQs;
  __m512i sum = _mm512_setzero_si512();
  for (size_t j = 0; j < 4; ++j) {
    __m512i low = _mm512_setzero_si512();
    __m512i high = _mm512_setzero_si512();
#pragma GCC unroll 8
    for (size_t k = 0; k < 8; ++k) {
      const __m512i q = _mm512_set1_epi32(static_cast<int32_t>(LoadU32(qs + 32 * j + 4 * k)));
      low = _mm512_dpbusd_epi32(low, _mm512_and_si512(q, low4), x.u[16 * j + k]);
      high = _mm512_dpbusd_epi32(high, _mm512_and_si512(q, high4), x.u[16 * j + 8 + k]);
    }
    sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(low, _mm512_set1_epi32(e.scale[2 * j])));
    sum = _mm512_add_epi32(sum, _mm512_mullo_epi32(_mm512_maskz_srai_epi32(kAll16, high, 4),
                                                   _mm512_set1_epi32(e.scale[2 * j + 1])));
  }
  *mins = MinSums(e, x);
  return sum;
}

// Q5_K and Q6_K, R rows at once (each activation vector loaded once for all of them): the rows'
// 16 exact sums each. The weights are the signed operand, broadcast from the table by the
// instruction.
template <TensorType kType, int R>
CH_TARGET inline void RowsLaneSums(const KRow<kType>* e, int64_t stride, const KLaneBlock<kType>& x,
                                   __m512i* sums) {
  // Sub-blocks with a scale of their own: Q5_K's 8 of 32 values, Q6_K's 16 of 16.
  constexpr size_t kSubs = kType == TensorType::kQ5_K ? 8 : 16;
  constexpr size_t kDwords = 64 / kSubs;
  const auto row = [e, stride](int r) { return e + static_cast<ptrdiff_t>(r) * stride; };
  for (int r = 0; r < R; ++r) {
    sums[r] = _mm512_setzero_si512();
  }
  for (size_t s = 0; s < kSubs; ++s) {
    __m512i part[R];
    for (int r = 0; r < R; ++r) {
      part[r] = _mm512_set1_epi32(row(r)->start[s]);
    }
    for (size_t k = 0; k < kDwords; ++k) {
      const __m512i xk = x.u[kDwords * s + k];
      for (int r = 0; r < R; ++r) {
        const std::byte* q = reinterpret_cast<const std::byte*>(row(r)->q);
        part[r] = _mm512_dpbusd_epi32(
            part[r], xk,
            _mm512_set1_epi32(static_cast<int32_t>(LoadU32(q + 4 * (kDwords * s + k)))));
      }
    }
    for (int r = 0; r < R; ++r) {
      sums[r] = _mm512_add_epi32(sums[r],
                                 _mm512_mullo_epi32(part[r], _mm512_set1_epi32(row(r)->scale[s])));
    }
  }
}

// R rows against one tile of lanes (their table entries at `rows`, `blocks` a row); y[t * y_stride
// + r] for t < count, going on from y's values when `resume`.
template <TensorType kType, int R>
CH_TARGET void KLaneTile(const std::byte* w, size_t w_stride, int64_t first,
                         const KLaneBlock<kType>* x, int64_t blocks, const KRow<kType>* rows,
                         float* y, size_t y_stride, int count, bool resume) {
  using P = KType<kType>;
  __m512 acc[R];
  token_lanes::LoadTile<R>(y, y_stride, count, resume, acc);
  for (int64_t b = 0; b < blocks; ++b) {
    const KLaneBlock<kType>& xb = x[b];
    if constexpr (kType != TensorType::kQ4_K) {
      __m512i sums[R];
      RowsLaneSums<kType, R>(rows + b, blocks, xb, sums);
      for (int r = 0; r < R; ++r) {
        const KRow<kType>& e = rows[static_cast<size_t>(r * blocks + b)];
        acc[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, sums[r]),
                                 _mm512_mul_ps(_mm512_set1_ps(e.d), xb.d), acc[r]);
        if constexpr (kType == TensorType::kQ5_K) {
          acc[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, MinSums(e, xb)),
                                   _mm512_mul_ps(_mm512_set1_ps(e.minus_dmin), xb.d), acc[r]);
        }
      }
    } else {
      for (int r = 0; r < R; ++r) {
        const std::byte* wb =
            w + static_cast<size_t>(r) * w_stride + static_cast<size_t>(first + b) * P::kBytes;
        const KRow4& e = rows[static_cast<size_t>(r * blocks + b)];
        __m512i mins;
        const __m512i sums = KLaneSums(wb, e, xb, &mins);
        acc[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, sums),
                                 _mm512_mul_ps(_mm512_set1_ps(e.d), xb.d), acc[r]);
        acc[r] = _mm512_fmadd_ps(_mm512_maskz_cvtepi32_ps(kAll16, mins),
                                 _mm512_mul_ps(_mm512_set1_ps(e.minus_dmin), xb.d), acc[r]);
      }
    }
  }
  token_lanes::StoreTile<R>(acc, y, y_stride, count);
}

// Rows [begin, end) over the slice of `slice` blocks from `first`: their tables, then every tile
// of tokens against them. `lanes` and `table`: the caller's scratch.
template <TensorType kType>
CH_TARGET void KLanesChunk(const MatMulArgs& a, int64_t first, int64_t slice, int64_t begin,
                           int64_t end, KLaneBlock<kType>* lanes, KRow<kType>* table) {
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  KRowTables<kType>(w_at(begin), a.w_row_bytes, end - begin, first, slice, table);
  const auto lay_out = [&](const std::byte* x, int count) CH_TARGET {
    LayOutKLanes<kType>(x, a.x_row_bytes, count, first, slice, lanes);
  };
  const auto run = [&](auto rows, int64_t r, int count, float* y) CH_TARGET {
    KLaneTile<kType, decltype(rows)::value>(w_at(r), a.w_row_bytes, first, lanes, slice,
                                            table + static_cast<size_t>((r - begin) * slice), y,
                                            a.y_stride, count, first > 0);
  };
  token_lanes::EveryTile(a, begin, end, lay_out, run);
}

template <TensorType kType>
CH_TARGET void MatMulKLanes(const MatMulArgs& a) {
  if (a.n < token_lanes::kMinTokens) {
    MatMulK<kType, 4, 8, 4, true>(a);
    return;
  }
  constexpr int64_t kTable = kType == TensorType::kQ4_K ? kK4TableBlocks : kK6TableBlocks;
  KLaneBlock<kType> lanes[kKSliceBlocks];
  KRow<kType> table[kTable];
  token_lanes::EverySliceAndChunk(
      a, a.cols / static_cast<int64_t>(kKBlock), kKSliceBlocks, kTable,
      [&](int64_t first, int64_t slice, int64_t begin, int64_t end)
          CH_TARGET { KLanesChunk<kType>(a, first, slice, begin, end, lanes, table); });
}

}  // namespace

ProductFns KProductsAvx512(TensorType type, DotOrder order) {
  if (order == DotOrder::kBlockSums) {
    switch (type) {
      case TensorType::kQ4_K:
        return {&DotK<TensorType::kQ4_K, true>, &MatMulKLanes<TensorType::kQ4_K>};
      case TensorType::kQ5_K:
        return {&DotK<TensorType::kQ5_K, true>, &MatMulKLanes<TensorType::kQ5_K>};
      case TensorType::kQ6_K:
        return {&DotK<TensorType::kQ6_K, true>, &MatMulKLanes<TensorType::kQ6_K>};
      default:
        return {};
    }
  }
  if (order != DotOrder::kVecDot) {
    return {};
  }
  switch (type) {
    case TensorType::kQ4_K:
      return {&DotK<TensorType::kQ4_K>, &MatMulKPairs<TensorType::kQ4_K, 4>};
    case TensorType::kQ5_K:
      return {&DotK<TensorType::kQ5_K>, &MatMulKPairs<TensorType::kQ5_K, 4>};
    case TensorType::kQ6_K:
      return {&DotK<TensorType::kQ6_K>, &MatMulKPairs<TensorType::kQ6_K, 4>};
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
