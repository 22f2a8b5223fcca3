// The numeric kernels the forward pass is built from, chosen once at run time for the CPU.
//
// Decode is bound by memory bandwidth: each generated token reads every weight matrix once,
// through a matrix-vector product. OpenBLAS's sgemv reaches only part of the bandwidth on one
// thread, so there are hand-written AVX-512 and AVX2 products (runtime-dispatched: the binary
// stays baseline x86-64). Prefill multiplies matrices and stays with OpenBLAS sgemm.
//
// Int8 checkpoints (q8_matrix.h) have their own products: the activations are quantized per
// token and group (q8_quantize), then multiplied with integer dot products (q8_matmul): AVX-512
// VNNI, AVX2, or portable C++. Every variant returns bit-identical results: the integer group
// sums are exact, and each output's float accumulation is the same sequence of roundings.
//
//   Kernels k = SelectKernels(MatVecKernel::kAuto);
//   k.matvec(w, x, y, rows, cols);            // y[rows] = w[rows][cols] · x[cols]
//   MatMul(k, w, rows, cols, x, y, n);        // y[n][rows] = x[n][cols] · w^T
//   Q8Activations a = k.q8_quantize(x, n, cols, group_size, buffer);
//   k.q8_matmul(q8_matrix, a, y);             // y[n][rows] = a · q8_matrix^T
//
// None of them allocates, starts a thread or makes a system call (OpenBLAS's buffer aside: see
// WarmUpBlas).
#ifndef CELLHOUSE_ENGINE_KERNELS_KERNELS_H_
#define CELLHOUSE_ENGINE_KERNELS_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

#include "engine/kernels/q8_matrix.h"

namespace cellhouse::engine {

enum class MatVecKernel {
  kAuto,      // the fastest this CPU supports
  kOpenBlas,  // cblas_sgemv
  kAvx2,      // AVX2 + FMA
  kAvx512,    // AVX-512F
};

std::string_view MatVecKernelName(MatVecKernel kernel);
bool MatVecKernelSupported(MatVecKernel kernel);

// The int8 products. A MatVecKernel choice picks the matching one (kAvx512 -> kAvx512Vnni,
// kAvx2 -> kAvx2, kOpenBlas -> kPortable), falling back to the next one the CPU supports.
enum class Q8Kernel {
  kPortable,    // plain C++, any CPU
  kAvx2,        // AVX2: pmaddubsw + pmaddwd
  kAvx512Vnni,  // AVX-512 BW + VNNI: vpdpbusd
};

std::string_view Q8KernelName(Q8Kernel kernel);
bool Q8KernelSupported(Q8Kernel kernel);

// Quantizes x[n][cols] per group of group_size values into `out` (sized by Q8ActivationBytes
// for at least n and cols) and returns the view of it.
using Q8QuantizeFn = Q8Activations (*)(const float* x, int32_t n, int32_t cols, int32_t group_size,
                                       const Q8ActivationBuffer& out);
// y[x.n][w.rows] = x · w^T. x must have been quantized at w's group size from vectors of w.cols
// values.
using Q8MatMulFn = void (*)(const Q8Matrix& w, const Q8Activations& x, float* y);

// One layer's attention: query head h (of `heads`) meets kv head h / kv_mul, whose part of
// position t's cache row is key_h(t) = keys + t * stride + (h / kv_mul) * head_size (the same for
// values). One head's scores are scores_stride floats after the previous head's.
struct AttentionShape {
  int32_t heads = 0;
  int32_t kv_mul = 1;
  int32_t head_size = 0;
  size_t stride = 0;  // kv_dim
  size_t scores_stride = 0;
};

struct Kernels {
  MatVecKernel kind = MatVecKernel::kOpenBlas;
  // y[rows] = w[rows][cols] · x[cols], row-major w.
  void (*matvec)(const float* w, const float* x, float* y, int32_t rows, int32_t cols) = nullptr;
  // Attention of one token over one layer's cache, every head at once (see AttentionShape):
  // scores[h * scores_stride + t] = (q_h · key_h(t)) / divisor for t < count. The rows are read
  // in order, each once, so the cache streams from memory instead of being gathered head by head.
  void (*scores)(const float* q, const float* keys, const AttentionShape& shape, int32_t count,
                 float divisor, float* scores) = nullptr;
  // out[h * head_size + i] = Σ_t weights[h * scores_stride + t] · value_h(t)[i], summed in order
  // of t; rows read in order, each once.
  void (*weighted_sum)(const float* weights, const float* values, const AttentionShape& shape,
                       int32_t count, float* out) = nullptr;
  // The same two over an fp16 cache (an int8 model's, run_state.h): each value is widened
  // exactly, then meets the same operations in the same order.
  void (*scores_half)(const float* q, const uint16_t* keys, const AttentionShape& shape,
                      int32_t count, float divisor, float* scores) = nullptr;
  void (*weighted_sum_half)(const float* weights, const uint16_t* values,
                            const AttentionShape& shape, int32_t count, float* out) = nullptr;
  // out[i] = x[i] rounded to half precision, to nearest even (half.h): keys and values on their
  // way into an fp16 cache. Every variant gives the same bits.
  void (*to_half)(const float* x, int32_t n, uint16_t* out) = nullptr;
  // Int8 checkpoints.
  Q8Kernel q8_kind = Q8Kernel::kPortable;
  Q8QuantizeFn q8_quantize = nullptr;
  Q8MatMulFn q8_matmul = nullptr;
};

// kAuto picks AVX-512, then AVX2, then OpenBLAS; an unsupported explicit choice falls back the
// same way. The int8 products follow the choice (see Q8Kernel).
Kernels SelectKernels(MatVecKernel kernel);
// The same, with an explicit int8 variant (an unsupported one falls back as above): for tests
// and benchmarks that compare the variants.
Kernels SelectKernels(MatVecKernel kernel, Q8Kernel q8);

// y[n][rows] = x[n][cols] · w[rows][cols]^T: matvec for one row, sgemm for more.
void MatMul(const Kernels& k, const float* w, int32_t rows, int32_t cols, const float* x, float* y,
            int32_t n);

// One tiny BLAS call. OpenBLAS allocates its work buffer (mmap + mbind) on the first call; the
// zygote calls this before forking, because mbind is not allowed under the worker's seccomp
// filter.
void WarmUpBlas();

// Sets OpenBLAS's thread count (its pool, not ours). For tools; workers keep one thread.
void SetBlasThreads(int threads);

namespace internal {
// Per-ISA implementations, defined in kernels_avx2.cc and kernels_avx512.cc.
void MatVecAvx2(const float* w, const float* x, float* y, int32_t rows, int32_t cols);
void ScoresAvx2(const float* q, const float* keys, const AttentionShape& shape, int32_t count,
                float divisor, float* scores);
void WeightedSumAvx2(const float* weights, const float* values, const AttentionShape& shape,
                     int32_t count, float* out);
void ScoresHalfAvx2(const float* q, const uint16_t* keys, const AttentionShape& shape,
                    int32_t count, float divisor, float* scores);
void WeightedSumHalfAvx2(const float* weights, const uint16_t* values, const AttentionShape& shape,
                         int32_t count, float* out);
void ToHalfAvx2(const float* x, int32_t n, uint16_t* out);
void MatVecAvx512(const float* w, const float* x, float* y, int32_t rows, int32_t cols);
void ScoresAvx512(const float* q, const float* keys, const AttentionShape& shape, int32_t count,
                  float divisor, float* scores);
void WeightedSumAvx512(const float* weights, const float* values, const AttentionShape& shape,
                       int32_t count, float* out);
void ScoresHalfAvx512(const float* q, const uint16_t* keys, const AttentionShape& shape,
                      int32_t count, float divisor, float* scores);
void WeightedSumHalfAvx512(const float* weights, const uint16_t* values,
                           const AttentionShape& shape, int32_t count, float* out);
void ToHalfAvx512(const float* x, int32_t n, uint16_t* out);
// Int8, defined in kernels_q8*.cc.
Q8Activations QuantizeQ8Portable(const float* x, int32_t n, int32_t cols, int32_t group_size,
                                 const Q8ActivationBuffer& out);
void MatMulQ8Portable(const Q8Matrix& w, const Q8Activations& x, float* y);
Q8Activations QuantizeQ8Avx2(const float* x, int32_t n, int32_t cols, int32_t group_size,
                             const Q8ActivationBuffer& out);
void MatMulQ8Avx2(const Q8Matrix& w, const Q8Activations& x, float* y);
Q8Activations QuantizeQ8Avx512(const float* x, int32_t n, int32_t cols, int32_t group_size,
                               const Q8ActivationBuffer& out);
void MatMulQ8Avx512Vnni(const Q8Matrix& w, const Q8Activations& x, float* y);
}  // namespace internal

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_KERNELS_KERNELS_H_
