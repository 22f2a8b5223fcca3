// Products of the float weight types (F32, F16, BF16) in portable C++: the definition the AVX2
// and AVX-512 variants (float_types_avx2.cc, float_types_avx512.cc) reproduce. Activations come
// as floats rounded to the weight's own type (nearest even), stored as the floats they are.
//
// What it mirrors: llama.cpp c392e5094's decode path for these types, ggml_vec_dot_{f32,f16,
// bf16} in ggml-cpu.c as its icelake build compiles them (GCC 12, AVX-512; read from the shipped
// libggml-cpu-icelake.so):
//   F32, F16: four accumulators of 16 lanes; step i (64 values) adds fma(w, x) of values
//     i + 16a .. i + 16a + 15 to accumulator a. They are summed as (a0 + a2) + (a1 + a3), then the
//     16 lanes as _mm512_reduce_add_ps does (SumLanes16). The values past the last whole 64:
//     F16 adds each product (exact in float) to the sum in double; F32 adds products to the float
//     sum in order, unfused for runs of 16 and then 8 (GCC vectorized the multiplications) and
//     fused for the last fewer than 8.
//   BF16: two 16-lane accumulators over steps of 32 values (GCC fused the written multiply-add),
//     each reduced with SumLanes16 and added to a double sum (first, then second), then the
//     values past the last whole 32 in double; the result rounded to float.
// Where it differs: llama.cpp multiplies a prompt (more than one token) with tinyBLAS, one
// 16-lane accumulator per output; here every row uses the decode order (batch invariance).
// Compiled with -ffp-contract=off: each fma is written.
#include <cmath>

#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

namespace {

inline float Value(const float* p, int64_t i) { return p[i]; }
inline float Value(const uint16_t* p, int64_t i) { return HalfToFloat(p[i]); }

// F32 and F16: the 64-value steps, reduced. x holds floats (for F16, exact halves).
template <typename T>
float Steps64(const T* w, const float* x, int64_t end) {
  float acc[4][16] = {};
  for (int64_t i = 0; i < end; i += 64) {
    for (int64_t a = 0; a < 4; ++a) {
      for (int64_t l = 0; l < 16; ++l) {
        const int64_t k = i + 16 * a + l;
        acc[a][l] = std::fma(Value(w, k), Value(x, k), acc[a][l]);
      }
    }
  }
  float lanes[16];
  for (int l = 0; l < 16; ++l) {
    lanes[l] = (acc[0][l] + acc[2][l]) + (acc[1][l] + acc[3][l]);
  }
  return SumLanes16(lanes);
}

float DotF32(const std::byte* wb, const std::byte* xb, int64_t cols) {
  const auto* w = reinterpret_cast<const float*>(wb);
  const auto* x = reinterpret_cast<const float*>(xb);
  const int64_t whole = cols & ~int64_t{63};
  float sum = Steps64(w, x, whole);
  int64_t i = whole;
  for (; cols - i >= 16; i += 16) {
    for (int64_t k = i; k < i + 16; ++k) {
      sum = sum + w[k] * x[k];
    }
  }
  if (cols - i >= 8) {
    for (int64_t k = i; k < i + 8; ++k) {
      sum = sum + w[k] * x[k];
    }
    i += 8;
  }
  for (; i < cols; ++i) {
    sum = std::fma(w[i], x[i], sum);
  }
  return sum;
}

float DotF16(const std::byte* wb, const std::byte* xb, int64_t cols) {
  const auto* w = reinterpret_cast<const uint16_t*>(wb);
  const auto* x = reinterpret_cast<const float*>(xb);
  const int64_t whole = cols & ~int64_t{63};
  double sum = Steps64(w, x, whole);
  for (int64_t i = whole; i < cols; ++i) {
    sum += static_cast<double>(HalfToFloat(w[i]) * x[i]);
  }
  return static_cast<float>(sum);
}

float DotBF16(const std::byte* wb, const std::byte* xb, int64_t cols) {
  const auto* w = reinterpret_cast<const uint16_t*>(wb);
  const auto* x = reinterpret_cast<const float*>(xb);
  float c1[16] = {};
  float c2[16] = {};
  int64_t i = 0;
  for (; i + 32 <= cols; i += 32) {
    for (int l = 0; l < 16; ++l) {
      c1[l] = std::fma(BF16ToFloat(w[i + l]), x[i + l], c1[l]);
      c2[l] = std::fma(BF16ToFloat(w[i + 16 + l]), x[i + 16 + l], c2[l]);
    }
  }
  double sum = 0.0;
  sum += static_cast<double>(SumLanes16(c1));
  sum += static_cast<double>(SumLanes16(c2));
  for (; i < cols; ++i) {
    sum += static_cast<double>(BF16ToFloat(w[i]) * x[i]);
  }
  return static_cast<float>(sum);
}

}  // namespace

ProductFns FloatProductsPortable(TensorType type) {
  switch (type) {
    case TensorType::kF32:
      return {&DotF32, &MatMulByDots<&DotF32>};
    case TensorType::kF16:
      return {&DotF16, &MatMulByDots<&DotF16>};
    case TensorType::kBF16:
      return {&DotBF16, &MatMulByDots<&DotBF16>};
    default:
      return {};
  }
}

}  // namespace cellhouse::engine::internal
