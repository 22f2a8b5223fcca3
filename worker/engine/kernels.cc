#include "worker/engine/kernels.h"

#include <cblas.h>

#include <algorithm>
#include <array>

namespace cellhouse::engine {

namespace {

void MatVecBlas(const float* w, const float* x, float* y, int32_t rows, int32_t cols,
                const float* /*next*/) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0F, w, cols, x, 1, 0.0F, y, 1);
}

void ScoresScalar(const float* q, const float* keys, size_t stride, int32_t count, int32_t size,
                  float divisor, float* out) {
  for (int32_t t = 0; t < count; ++t) {
    const float* k = keys + static_cast<size_t>(t) * stride;
    float sum = 0;
    for (int32_t i = 0; i < size; ++i) {
      sum += q[i] * k[i];
    }
    out[t] = sum / divisor;
  }
}

void WeightedSumScalar(const float* weights, const float* values, size_t stride, int32_t count,
                       int32_t size, float* out) {
  std::fill_n(out, size, 0.0F);
  for (int32_t t = 0; t < count; ++t) {
    const float* v = values + static_cast<size_t>(t) * stride;
    for (int32_t i = 0; i < size; ++i) {
      out[i] += weights[t] * v[i];
    }
  }
}

}  // namespace

std::string_view MatVecKernelName(MatVecKernel kernel) {
  switch (kernel) {
    case MatVecKernel::kAuto:
      return "auto";
    case MatVecKernel::kOpenBlas:
      return "openblas";
    case MatVecKernel::kAvx2:
      return "avx2";
    case MatVecKernel::kAvx512:
      return "avx512";
  }
  return "?";
}

bool MatVecKernelSupported(MatVecKernel kernel) {
  switch (kernel) {
    case MatVecKernel::kAuto:
    case MatVecKernel::kOpenBlas:
      return true;
    case MatVecKernel::kAvx2:
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    case MatVecKernel::kAvx512:
      return __builtin_cpu_supports("avx512f");
  }
  return false;
}

Kernels SelectKernels(MatVecKernel kernel) {
  constexpr std::array<MatVecKernel, 3> kPreference = {MatVecKernel::kAvx512, MatVecKernel::kAvx2,
                                                       MatVecKernel::kOpenBlas};
  if (kernel == MatVecKernel::kAuto || !MatVecKernelSupported(kernel)) {
    for (MatVecKernel k : kPreference) {
      if (MatVecKernelSupported(k)) {
        kernel = k;
        break;
      }
    }
  }
  switch (kernel) {
    case MatVecKernel::kAvx512:
      return {kernel, internal::MatVecAvx512, internal::ScoresAvx512, internal::WeightedSumAvx512};
    case MatVecKernel::kAvx2:
      return {kernel, internal::MatVecAvx2, internal::ScoresAvx2, internal::WeightedSumAvx2};
    default:
      return {MatVecKernel::kOpenBlas, MatVecBlas, ScoresScalar, WeightedSumScalar};
  }
}

void MatMul(const Kernels& k, const float* w, int32_t rows, int32_t cols, const float* x, float* y,
            int32_t n, const float* next) {
  if (n == 1) {
    k.matvec(w, x, y, rows, cols, next);
    return;
  }
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, n, rows, cols, 1.0F, x, cols, w, cols, 0.0F,
              y, rows);
}

void WarmUpBlas() {
  std::array<float, 4> a = {1, 2, 3, 4};
  std::array<float, 2> x = {1, 1};
  std::array<float, 2> y = {0, 0};
  cblas_sgemv(CblasRowMajor, CblasNoTrans, 2, 2, 1.0F, a.data(), 2, x.data(), 1, 0.0F, y.data(), 1);
  std::array<float, 4> c{};
  cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, 2, 2, 2, 1.0F, a.data(), 2, a.data(), 2,
              0.0F, c.data(), 2);
}

void SetBlasThreads(int threads) { openblas_set_num_threads(threads); }

}  // namespace cellhouse::engine
