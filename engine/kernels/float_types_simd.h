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

// One weight row against T activation rows; y[t * y_stride].
template <FloatKind kKind, int T>
CH_TARGET void RowTokens(const std::byte* w, const std::byte* x, size_t x_stride, int64_t cols,
                         float* y, size_t y_stride) {
  const auto xt = [x, x_stride](int t) { return x + static_cast<size_t>(t) * x_stride; };
  if constexpr (kKind == FloatKind::kBF16) {
    V16 c1[T];
    V16 c2[T];
    for (int t = 0; t < T; ++t) {
      c1[t] = V16::Zero();
      c2[t] = V16::Zero();
    }
    int64_t i = 0;
    for (; i + 32 <= cols; i += 32) {
      const V16 w1 = LoadValues<kKind>(w, i);
      const V16 w2 = LoadValues<kKind>(w, i + 16);
      for (int t = 0; t < T; ++t) {
        c1[t] = V16::Fma(w1, LoadX(xt(t), i), c1[t]);
        c2[t] = V16::Fma(w2, LoadX(xt(t), i + 16), c2[t]);
      }
    }
    for (int t = 0; t < T; ++t) {
      double sum = 0.0;
      sum += static_cast<double>(V16::Sum(c1[t]));
      sum += static_cast<double>(V16::Sum(c2[t]));
      for (int64_t k = i; k < cols; ++k) {
        sum += static_cast<double>(Scalar<kKind>(w, k) * ScalarX(xt(t), k));
      }
      y[static_cast<size_t>(t) * y_stride] = static_cast<float>(sum);
    }
  } else {
    V16 acc[T][4];
    for (int t = 0; t < T; ++t) {
      for (int a = 0; a < 4; ++a) {
        acc[t][a] = V16::Zero();
      }
    }
    const int64_t whole = cols & ~int64_t{63};
    for (int64_t i = 0; i < whole; i += 64) {
      V16 wv[4];
      for (int a = 0; a < 4; ++a) {
        wv[a] = LoadValues<kKind>(w, i + 16 * a);
      }
      for (int t = 0; t < T; ++t) {
        for (int a = 0; a < 4; ++a) {
          acc[t][a] = V16::Fma(wv[a], LoadX(xt(t), i + 16 * a), acc[t][a]);
        }
      }
    }
    for (int t = 0; t < T; ++t) {
      const float reduced =
          V16::Sum(V16::Add(V16::Add(acc[t][0], acc[t][2]), V16::Add(acc[t][1], acc[t][3])));
      if constexpr (kKind == FloatKind::kF16) {
        double sum = reduced;
        for (int64_t k = whole; k < cols; ++k) {
          sum += static_cast<double>(Scalar<kKind>(w, k) * ScalarX(xt(t), k));
        }
        y[static_cast<size_t>(t) * y_stride] = static_cast<float>(sum);
      } else {
        // F32's tail as GCC compiled it: unfused runs of 16 and 8, then fused singles.
        const auto* wf = reinterpret_cast<const float*>(w);
        const auto* xf = reinterpret_cast<const float*>(xt(t));
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
        y[static_cast<size_t>(t) * y_stride] = sum;
      }
    }
  }
}

// Decode reads one row at a time: a single sequential stream, which the hardware prefetchers
// serve best, and four independent accumulators keep the multiply-adds ahead of memory. Prefill
// takes T tokens per row.
template <FloatKind kKind, int T>
CH_TARGET void MatMulFloat(const MatMulArgs& a) {
  for (int64_t r = a.row_begin; r < a.row_end; ++r) {
    const std::byte* w = a.w + static_cast<size_t>(r) * a.w_row_bytes;
    int32_t t = 0;
    for (; t + T <= a.n; t += T) {
      RowTokens<kKind, T>(w, a.x + static_cast<size_t>(t) * a.x_row_bytes, a.x_row_bytes, a.cols,
                          a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r),
                          a.y_stride);
    }
    for (; t < a.n; ++t) {
      RowTokens<kKind, 1>(w, a.x + static_cast<size_t>(t) * a.x_row_bytes, a.x_row_bytes, a.cols,
                          a.y + static_cast<size_t>(t) * a.y_stride + static_cast<size_t>(r),
                          a.y_stride);
    }
  }
}

template <FloatKind kKind>
CH_TARGET float DotFloat(const std::byte* w, const std::byte* x, int64_t cols) {
  float y = 0.0F;
  RowTokens<kKind, 1>(w, x, 0, cols, &y, 1);
  return y;
}

template <FloatKind kKind, int T>
ProductFns FloatFns() {
  return {&DotFloat<kKind>, &MatMulFloat<kKind, T>};
}

inline ProductFns FloatProductsFor(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return FloatFns<FloatKind::kF32, kTokensF32>();
    case TensorType::kF16:
      return FloatFns<FloatKind::kF16, kTokensF16>();
    case TensorType::kBF16:
      return FloatFns<FloatKind::kBF16, kTokensBF16>();
    default:
      return {};
  }
}
