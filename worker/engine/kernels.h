// The numeric kernels the forward pass is built from, chosen once at run time for the CPU.
//
// Decode is bound by memory bandwidth: each generated token reads every weight matrix once,
// through a matrix-vector product. OpenBLAS's sgemv reaches only part of the bandwidth on one
// thread, so there are hand-written AVX-512 and AVX2 products (runtime-dispatched: the binary
// stays baseline x86-64). Prefill multiplies matrices and stays with OpenBLAS sgemm.
//
//   Kernels k = SelectKernels(MatVecKernel::kAuto);
//   k.matvec(w, x, y, rows, cols, next);      // y[rows] = w[rows][cols] · x[cols]
//   MatMul(k, w, rows, cols, x, y, n, next);  // y[n][rows] = x[n][cols] · w^T
//
// None of them allocates, starts a thread or makes a system call (OpenBLAS's buffer aside: see
// WarmUpBlas).
#ifndef CELLHOUSE_WORKER_ENGINE_KERNELS_H_
#define CELLHOUSE_WORKER_ENGINE_KERNELS_H_

#include <cstddef>
#include <cstdint>
#include <string_view>

namespace cellhouse::engine {

enum class MatVecKernel {
  kAuto,      // the fastest this CPU supports
  kOpenBlas,  // cblas_sgemv
  kAvx2,      // AVX2 + FMA
  kAvx512,    // AVX-512F
};

std::string_view MatVecKernelName(MatVecKernel kernel);
bool MatVecKernelSupported(MatVecKernel kernel);

struct Kernels {
  MatVecKernel kind = MatVecKernel::kOpenBlas;
  // y[rows] = w[rows][cols] · x[cols], row-major w. `next` (may be null) is the matrix the
  // caller multiplies after this one: its start is prefetched while this one finishes.
  void (*matvec)(const float* w, const float* x, float* y, int32_t rows, int32_t cols,
                 const float* next) = nullptr;
  // Attention scores of one head: out[t] = (q · keys[t]) / divisor for t < count, where row t
  // of keys starts at keys + t * stride and has `size` floats.
  void (*scores)(const float* q, const float* keys, size_t stride, int32_t count, int32_t size,
                 float divisor, float* out) = nullptr;
  // Attention output of one head: out[i] = Σ_t weights[t] · values[t * stride + i], i < size,
  // summed in order of t.
  void (*weighted_sum)(const float* weights, const float* values, size_t stride, int32_t count,
                       int32_t size, float* out) = nullptr;
};

// kAuto picks AVX-512, then AVX2, then OpenBLAS; an unsupported explicit choice falls back the
// same way.
Kernels SelectKernels(MatVecKernel kernel);

// y[n][rows] = x[n][cols] · w[rows][cols]^T: matvec for one row (prefetching on into `next`),
// sgemm for more.
void MatMul(const Kernels& k, const float* w, int32_t rows, int32_t cols, const float* x, float* y,
            int32_t n, const float* next);

// One tiny BLAS call. OpenBLAS allocates its work buffer (mmap + mbind) on the first call; the
// zygote calls this before forking, because mbind is not allowed under the worker's seccomp
// filter.
void WarmUpBlas();

// Sets OpenBLAS's thread count (its pool, not ours). For tools; workers keep one thread.
void SetBlasThreads(int threads);

namespace internal {
// Per-ISA implementations, defined in kernels_avx2.cc and kernels_avx512.cc.
void MatVecAvx2(const float* w, const float* x, float* y, int32_t rows, int32_t cols,
                const float* next);
void ScoresAvx2(const float* q, const float* keys, size_t stride, int32_t count, int32_t size,
                float divisor, float* out);
void WeightedSumAvx2(const float* weights, const float* values, size_t stride, int32_t count,
                     int32_t size, float* out);
void MatVecAvx512(const float* w, const float* x, float* y, int32_t rows, int32_t cols,
                  const float* next);
void ScoresAvx512(const float* q, const float* keys, size_t stride, int32_t count, int32_t size,
                  float divisor, float* out);
void WeightedSumAvx512(const float* weights, const float* values, size_t stride, int32_t count,
                       int32_t size, float* out);
}  // namespace internal

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_WORKER_ENGINE_KERNELS_H_
