// The vector products of the float types (F32, F16, BF16), shared by float_types_avx2.cc and
// float_types_avx512.cc: each includes this file inside its own anonymous namespace after
// defining CH_TARGET (its target attribute) and a type V16 of 16 float lanes with these static
// members (CH_TARGET), so one body serves both:
//   V16 Zero()                              V16 Fma(V16 a, V16 b, V16 c)   a * b + c, fused
//   V16 Load(const float*)                  V16 Add(V16 a, V16 b)
//   V16 LoadHalf(const uint16_t*)           (16 halves widened)
//   V16 LoadBF16(const uint16_t*)           (16 bfloat16 widened)
//   float Sum(V16)                          SumLanes16's order: halves folded 16 -> 8 -> 4 -> 2 ->
//   1
//
// What they compute is float_types.cc's definition (llama.cpp's ggml_vec_dot_{f32,f16,bf16} as
// its AVX-512 build runs them), lane for lane. A row's accumulators are its own, so a tile of
// T tokens (prefill) shares each weight load and conversion across its tokens while every
// (row, token) sees exactly its decode operations.
//
// The including file also sets the prefill tile, kTileRows x kTileTokens products at a time,
// so that their accumulators and one vector per row fit its vector registers.

#ifndef CH_TARGET
#error "float_types_simd.h is included by float_types_avx2.cc and float_types_avx512.cc only"
#endif

enum class FloatKind { kF32, kF16, kBF16 };

template <FloatKind kKind>
CH_TARGET inline V16 LoadValues(const std::byte* row, int64_t i) {
  if constexpr (kKind == FloatKind::kF32) {
    return V16::Load(reinterpret_cast<const float*>(row) + i);
  } else if constexpr (kKind == FloatKind::kF16) {
    return V16::LoadHalf(reinterpret_cast<const uint16_t*>(row) + i);
  } else {
    return V16::LoadBF16(reinterpret_cast<const uint16_t*>(row) + i);
  }
}

// The activations are floats for every kind (rounded to F16/BF16 already, kept as floats).
CH_TARGET inline V16 LoadX(const std::byte* row, int64_t i) {
  return V16::Load(reinterpret_cast<const float*>(row) + i);
}

CH_TARGET inline float ScalarX(const std::byte* row, int64_t i) {
  return reinterpret_cast<const float*>(row)[i];
}

template <FloatKind kKind>
CH_TARGET inline float Scalar(const std::byte* row, int64_t i) {
  const uint16_t* h = reinterpret_cast<const uint16_t*>(row) + i;
  if constexpr (kKind == FloatKind::kF32) {
    return reinterpret_cast<const float*>(row)[i];
  } else if constexpr (kKind == FloatKind::kF16) {
    return _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(*h)));
  } else {
    return BF16ToFloat(*h);
  }
}

// A row's product runs kChains independent chains of vector sums: chain a accumulates the 16
// lanes at columns a * 16 + k * kStep (k = 0, 1, ...) below `Whole(cols)`. Finish combines them,
// and the columns past Whole, in the definition's order.
template <FloatKind kKind>
constexpr int kChains = kKind == FloatKind::kBF16 ? 2 : 4;
template <FloatKind kKind>
constexpr int64_t kStep = 16 * kChains<kKind>;
template <FloatKind kKind>
constexpr int64_t Whole(int64_t cols) {
  return cols - cols % kStep<kKind>;
}

template <FloatKind kKind>
CH_TARGET float Finish(const V16* chains, const std::byte* w, const std::byte* x, int64_t cols) {
  const int64_t whole = Whole<kKind>(cols);
  if constexpr (kKind == FloatKind::kBF16) {
    double sum = 0.0;
    sum += static_cast<double>(V16::Sum(chains[0]));
    sum += static_cast<double>(V16::Sum(chains[1]));
    for (int64_t k = whole; k < cols; ++k) {
      sum += static_cast<double>(Scalar<kKind>(w, k) * ScalarX(x, k));
    }
    return static_cast<float>(sum);
  } else {
    const float reduced =
        V16::Sum(V16::Add(V16::Add(chains[0], chains[2]), V16::Add(chains[1], chains[3])));
    if constexpr (kKind == FloatKind::kF16) {
      double sum = reduced;
      for (int64_t k = whole; k < cols; ++k) {
        sum += static_cast<double>(Scalar<kKind>(w, k) * ScalarX(x, k));
      }
      return static_cast<float>(sum);
    } else {
      // F32's tail as GCC compiled it: unfused runs of 16 and 8, then fused singles.
      const auto* wf = reinterpret_cast<const float*>(w);
      const auto* xf = reinterpret_cast<const float*>(x);
      float sum = reduced;
      int64_t k = whole;
      for (; cols - k >= 16; k += 16) {
        for (int64_t j = k; j < k + 16; ++j) {
          sum = _mm_cvtss_f32(
              _mm_add_ss(_mm_set_ss(sum), _mm_mul_ss(_mm_set_ss(wf[j]), _mm_set_ss(xf[j]))));
        }
      }
      if (cols - k >= 8) {
        for (int64_t j = k; j < k + 8; ++j) {
          sum = _mm_cvtss_f32(
              _mm_add_ss(_mm_set_ss(sum), _mm_mul_ss(_mm_set_ss(wf[j]), _mm_set_ss(xf[j]))));
        }
        k += 8;
      }
      for (; k < cols; ++k) {
        sum = _mm_cvtss_f32(_mm_fmadd_ss(_mm_set_ss(wf[k]), _mm_set_ss(xf[k]), _mm_set_ss(sum)));
      }
      return sum;
    }
  }
}

// One weight row against T activation rows; y[t * y_stride]. The row is read once, as one
// sequential stream (what the hardware prefetchers serve best), all chains at a time.
template <FloatKind kKind, int T>
CH_TARGET void RowTokens(const std::byte* w, const std::byte* x, size_t x_stride, int64_t cols,
                         float* y, size_t y_stride) {
  constexpr int kC = kChains<kKind>;
  const auto xt = [x, x_stride](int t) { return x + static_cast<size_t>(t) * x_stride; };
  V16 acc[T][kC];
  for (int t = 0; t < T; ++t) {
    for (int a = 0; a < kC; ++a) {
      acc[t][a] = V16::Zero();
    }
  }
  const int64_t whole = Whole<kKind>(cols);
  for (int64_t i = 0; i < whole; i += kStep<kKind>) {
    V16 wv[kC];
    for (int a = 0; a < kC; ++a) {
      wv[a] = LoadValues<kKind>(w, i + 16 * a);
    }
    for (int t = 0; t < T; ++t) {
      for (int a = 0; a < kC; ++a) {
        acc[t][a] = V16::Fma(wv[a], LoadX(xt(t), i + 16 * a), acc[t][a]);
      }
    }
  }
  for (int t = 0; t < T; ++t) {
    y[static_cast<size_t>(t) * y_stride] = Finish<kKind>(acc[t], w, xt(t), cols);
  }
}

// R weight rows against T activation rows (prefill): y[t * y_stride + r]. Keeping every chain of
// R x T products live would need far more than the 32 vector registers, so the chains run one
// after another, each over all R x T products: every activation vector loaded serves R rows, and
// every weight vector T tokens. Each (row, token) still sees exactly its decode operations in
// its decode order, chain by chain, so the result is bit-identical to RowTokens<1>.
template <FloatKind kKind, int R, int T>
CH_TARGET void Tile(const std::byte* w, size_t w_stride, const std::byte* x, size_t x_stride,
                    int64_t cols, float* y, size_t y_stride) {
  constexpr int kC = kChains<kKind>;
  const auto wr = [w, w_stride](int r) { return w + static_cast<size_t>(r) * w_stride; };
  const auto xt = [x, x_stride](int t) { return x + static_cast<size_t>(t) * x_stride; };
  const int64_t whole = Whole<kKind>(cols);
  V16 chains[R][T][kC];
  for (int a = 0; a < kC; ++a) {
    V16 acc[R][T];
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        acc[r][t] = V16::Zero();
      }
    }
    for (int64_t i = 16 * a; i < whole; i += kStep<kKind>) {
      V16 wv[R];
      for (int r = 0; r < R; ++r) {
        wv[r] = LoadValues<kKind>(wr(r), i);
      }
      for (int t = 0; t < T; ++t) {
        const V16 xv = LoadX(xt(t), i);
        for (int r = 0; r < R; ++r) {
          acc[r][t] = V16::Fma(wv[r], xv, acc[r][t]);
        }
      }
    }
    for (int r = 0; r < R; ++r) {
      for (int t = 0; t < T; ++t) {
        chains[r][t][a] = acc[r][t];
      }
    }
  }
  for (int r = 0; r < R; ++r) {
    for (int t = 0; t < T; ++t) {
      y[static_cast<size_t>(t) * y_stride + static_cast<size_t>(r)] =
          Finish<kKind>(chains[r][t], wr(r), xt(t), cols);
    }
  }
}

// Tile with `tokens` (1..T) tokens: the tile that fits them exactly, so that the last few tokens
// of a prompt, or a batch of a few sessions' decode rows, read each weight once too.
template <FloatKind kKind, int R, int T>
CH_TARGET void TileOf(int tokens, const std::byte* w, size_t w_stride, const std::byte* x,
                      size_t x_stride, int64_t cols, float* y, size_t y_stride) {
  if constexpr (T > 1) {
    if (tokens < T) {
      TileOf<kKind, R, T - 1>(tokens, w, w_stride, x, x_stride, cols, y, y_stride);
      return;
    }
  }
  Tile<kKind, R, T>(w, w_stride, x, x_stride, cols, y, y_stride);
}

// The activations a prefill sweep over the rows keeps in reach: half of a typical 1 MiB L2, so
// the weights' own lines have room beside them.
constexpr size_t kActivationBlockBytes = size_t{256} << 10;

// Decode (one token) reads row after row with RowTokens<1>. Prefill takes the tokens in blocks
// whose activations stay in L2 while every row passes over them, in tiles of kTileRows x
// kTileTokens; the rows and tokens left over go through the narrower shapes. A larger prompt
// reads the weights once per block, which costs far less than the products it feeds.
template <FloatKind kKind>
CH_TARGET void MatMulFloat(const MatMulArgs& a) {
  constexpr int kR = kTileRows;
  constexpr int kT = kTileTokens;
  const auto w_at = [&a](int64_t r) { return a.w + static_cast<size_t>(r) * a.w_row_bytes; };
  const auto x_at = [&a](int32_t t) { return a.x + static_cast<size_t>(t) * a.x_row_bytes; };
  const auto y_at = [&a](int64_t r, int32_t t) {
    return a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r);
  };
  const auto block = static_cast<int32_t>(
      kT * std::max<size_t>(1, kActivationBlockBytes / (kT * std::max<size_t>(1, a.x_row_bytes))));
  for (int32_t begin = 0; begin < a.n; begin += block) {
    const int32_t end = std::min(a.n, begin + block);
    int64_t r = a.row_begin;
    if (end - begin >= 2) {  // decode (one token) reads row after row
      for (; r + kR <= a.row_end; r += kR) {
        int32_t t = begin;
        for (; t + kT <= end; t += kT) {
          Tile<kKind, kR, kT>(w_at(r), a.w_row_bytes, x_at(t), a.x_row_bytes, a.cols, y_at(r, t),
                              a.y_stride);
        }
        if (t < end) {
          TileOf<kKind, kR, kT - 1>(end - t, w_at(r), a.w_row_bytes, x_at(t), a.x_row_bytes, a.cols,
                                    y_at(r, t), a.y_stride);
        }
      }
    }
    for (; r < a.row_end; ++r) {
      int32_t t = begin;
      for (; t + kT <= end; t += kT) {
        RowTokens<kKind, kT>(w_at(r), x_at(t), a.x_row_bytes, a.cols, y_at(r, t), a.y_stride);
      }
      for (; t < end; ++t) {
        RowTokens<kKind, 1>(w_at(r), x_at(t), a.x_row_bytes, a.cols, y_at(r, t), a.y_stride);
      }
    }
  }
}

template <FloatKind kKind>
CH_TARGET float DotFloat(const std::byte* w, const std::byte* x, int64_t cols) {
  float y = 0.0F;
  RowTokens<kKind, 1>(w, x, 0, cols, &y, 1);
  return y;
}

template <FloatKind kKind>
ProductFns FloatFns() {
  return {&DotFloat<kKind>, &MatMulFloat<kKind>};
}

inline ProductFns FloatProductsFor(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return FloatFns<FloatKind::kF32>();
    case TensorType::kF16:
      return FloatFns<FloatKind::kF16>();
    case TensorType::kBF16:
      return FloatFns<FloatKind::kBF16>();
    default:
      return {};
  }
}
