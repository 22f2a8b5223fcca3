#include "engine/kernels/kernels.h"

#include <cblas.h>
#include <cpuid.h>

#include <algorithm>
#include <array>

#include "engine/kernels/half.h"

namespace cellhouse::engine {

namespace {

void MatVecBlas(const float* w, const float* x, float* y, int32_t rows, int32_t cols) {
  cblas_sgemv(CblasRowMajor, CblasNoTrans, rows, cols, 1.0F, w, cols, x, 1, 0.0F, y, 1);
}

inline float Load1(const float* p) { return *p; }
inline float Load1(const uint16_t* p) { return HalfToFloat(*p); }

template <typename T>
void ScoresScalar(const float* q, const T* keys, const AttentionShape& a, int32_t count,
                  float divisor, float* scores) {
  const int32_t size = a.head_size;
  for (int32_t t = 0; t < count; ++t) {
    const T* row = keys + static_cast<size_t>(t) * a.stride;
    for (int32_t h = 0; h < a.heads; ++h) {
      const T* k = row + static_cast<size_t>(h / a.kv_mul) * size;
      const float* qh = q + static_cast<size_t>(h) * size;
      float sum = 0;
      for (int32_t i = 0; i < size; ++i) {
        sum += qh[i] * Load1(k + i);
      }
      scores[static_cast<size_t>(h) * a.scores_stride + t] = sum / divisor;
    }
  }
}

template <typename T>
void WeightedSumScalar(const float* weights, const T* values, const AttentionShape& a,
                       int32_t count, float* out) {
  const int32_t size = a.head_size;
  std::fill_n(out, static_cast<size_t>(a.heads) * size, 0.0F);
  for (int32_t t = 0; t < count; ++t) {
    const T* row = values + static_cast<size_t>(t) * a.stride;
    for (int32_t h = 0; h < a.heads; ++h) {
      const T* v = row + static_cast<size_t>(h / a.kv_mul) * size;
      const float w = weights[static_cast<size_t>(h) * a.scores_stride + t];
      float* o = out + static_cast<size_t>(h) * size;
      for (int32_t i = 0; i < size; ++i) {
        o[i] += w * Load1(v + i);
      }
    }
  }
}

// F16C (vcvtps2ph, vcvtph2ps), which the AVX2 kernels use for an fp16 KV cache. Every CPU with
// AVX2 has it, but it is a feature bit of its own (CPUID leaf 1, ECX bit 29), and neither
// compiler's __builtin_cpu_supports knows it by name.
// Asked once: CPUID exits to the hypervisor in a VM, and SelectKernels runs per session.
bool HasF16c() {
  static const bool kHas = [] {
    unsigned eax = 0;
    unsigned ebx = 0;
    unsigned ecx = 0;
    unsigned edx = 0;
    return __get_cpuid(1, &eax, &ebx, &ecx, &edx) != 0 && (ecx & bit_F16C) != 0;
  }();
  return kHas;
}

void ToHalfPortable(const float* x, int32_t n, uint16_t* out) {
  for (int32_t i = 0; i < n; ++i) {
    out[i] = FloatToHalf(x[i]);
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
      return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && HasF16c();
    case MatVecKernel::kAvx512:
      return __builtin_cpu_supports("avx512f");
  }
  return false;
}

std::string_view Q8KernelName(Q8Kernel kernel) {
  switch (kernel) {
    case Q8Kernel::kPortable:
      return "portable";
    case Q8Kernel::kAvx2:
      return "avx2";
    case Q8Kernel::kAvx512Vnni:
      return "avx512-vnni";
  }
  return "?";
}

bool Q8KernelSupported(Q8Kernel kernel) {
  switch (kernel) {
    case Q8Kernel::kPortable:
      return true;
    case Q8Kernel::kAvx2:
      return __builtin_cpu_supports("avx2");
    case Q8Kernel::kAvx512Vnni:
      return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
             __builtin_cpu_supports("avx512vnni");
  }
  return false;
}

Kernels SelectKernels(MatVecKernel kernel, Q8Kernel q8) {
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
  constexpr std::array<Q8Kernel, 3> kQ8Preference = {Q8Kernel::kAvx512Vnni, Q8Kernel::kAvx2,
                                                     Q8Kernel::kPortable};
  for (size_t i = 0; i < kQ8Preference.size() && !Q8KernelSupported(q8); ++i) {
    if (kQ8Preference[i] == q8) {
      q8 = kQ8Preference[i + 1];
    }
  }
  Kernels k;
  switch (kernel) {
    case MatVecKernel::kAvx512:
      k = {kernel,
           internal::MatVecAvx512,
           internal::ScoresAvx512,
           internal::WeightedSumAvx512,
           internal::ScoresHalfAvx512,
           internal::WeightedSumHalfAvx512,
           internal::ToHalfAvx512};
      break;
    case MatVecKernel::kAvx2:
      k = {kernel,
           internal::MatVecAvx2,
           internal::ScoresAvx2,
           internal::WeightedSumAvx2,
           internal::ScoresHalfAvx2,
           internal::WeightedSumHalfAvx2,
           internal::ToHalfAvx2};
      break;
    default:
      k = {MatVecKernel::kOpenBlas, MatVecBlas,
           ScoresScalar<float>,     WeightedSumScalar<float>,
           ScoresScalar<uint16_t>,  WeightedSumScalar<uint16_t>,
           ToHalfPortable};
      break;
  }
  k.q8_kind = q8;
  switch (q8) {
    case Q8Kernel::kAvx512Vnni:
      k.q8_quantize = internal::QuantizeQ8Avx512;
      k.q8_matmul = internal::MatMulQ8Avx512Vnni;
      break;
    case Q8Kernel::kAvx2:
      k.q8_quantize = internal::QuantizeQ8Avx2;
      k.q8_matmul = internal::MatMulQ8Avx2;
      break;
    case Q8Kernel::kPortable:
      k.q8_quantize = internal::QuantizeQ8Portable;
      k.q8_matmul = internal::MatMulQ8Portable;
      break;
  }
  return k;
}

Kernels SelectKernels(MatVecKernel kernel) {
  Q8Kernel q8 = Q8Kernel::kAvx512Vnni;  // kAuto, kAvx512
  if (kernel == MatVecKernel::kAvx2) {
    q8 = Q8Kernel::kAvx2;
  } else if (kernel == MatVecKernel::kOpenBlas) {
    q8 = Q8Kernel::kPortable;
  }
  return SelectKernels(kernel, q8);
}

void MatMul(const Kernels& k, const float* w, int32_t rows, int32_t cols, const float* x, float* y,
            int32_t n) {
  if (n == 1) {
    k.matvec(w, x, y, rows, cols);
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
