// Deterministic inputs for the GGUF type kernels: weight rows of any type and activation rows, as
// pure functions of a seed, shared by the kernel tests and by the program that recorded
// llama.cpp's results for the same inputs (ggml_reference_vectors.cc).
//
//   std::vector<std::byte> w = KernelWeights(TensorType::kQ4_K, rows, cols, 7,
//   ScaleRange::kOrdinary); std::vector<float> x = KernelActivations(n, cols, 9);
#ifndef CELLHOUSE_TESTS_ENGINE_KERNEL_INPUTS_H_
#define CELLHOUSE_TESTS_ENGINE_KERNEL_INPUTS_H_

#include <cstddef>
#include <cstdint>
#include <vector>

#include "engine/kernels/tensor_type.h"

namespace cellhouse::engine::testing {

// splitmix64.
uint64_t Mix(uint64_t x);

// The scales written into each block's scale fields.
enum class ScaleRange {
  kOrdinary,  // halves of magnitude 2^-10 .. 2^-4, either sign
  kExtreme,   // a mix of 0, the largest half (65504), subnormal halves and ordinary ones
};

// `rows` rows of `cols` values of a weight type: random bytes, then every scale field (d, m,
// dmin) set to a finite half from `range`. For F32/F16/BF16, random values of magnitude below 1
// (kExtreme: some up to 2^20, 2^15 for F16, and some subnormal).
std::vector<std::byte> KernelWeights(TensorType type, int64_t rows, int64_t cols, uint64_t seed,
                                     ScaleRange range);

// n rows of `cols` activations, uniform in (-2, 2) with outliers up to 40, a few exact zeros,
// values on rounding ties, and (where a row has more than 64 values) one all-zero block of 32.
std::vector<float> KernelActivations(int64_t n, int64_t cols, uint64_t seed);

// 64-bit FNV-1a of bytes, for recording long outputs compactly.
uint64_t Fnv64(const void* data, size_t size);

}  // namespace cellhouse::engine::testing

#endif  // CELLHOUSE_TESTS_ENGINE_KERNEL_INPUTS_H_
