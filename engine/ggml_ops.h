// The element-wise and row operations of a GGUF model's forward pass (gguf_forward.h), computed
// as the reference runtime computes them, so that rounding agrees where greedy decoding would show
// it: llama.cpp c392e5094's CPU backend as its AVX-512 ("icelake") build runs it, which recorded
// the references in ../shared/models/gguf. Matrix products are the type kernels'
// (kernels/type_kernels.h); these are the rest.
//
//   RmsNorm(x, weight, dim, 1e-5F, out);          // ggml_rms_norm, then ggml_mul by the weight
//   RopeAngles(rope, pos, angles);                // ggml_rope_cache_init: cos, sin per pair
//   Rope(rope, angles, head, isa);                // one head, in place
//   SoftMax(scores, n, scale, isa);               // ggml_soft_max_ext with a causal mask
//   SiluMul(gate, up, n, isa);                    // ggml_silu, then ggml_mul
//   float s = LanesDotF16(keys, q, n, isa);       // tinyBLAS's f16 product (a prompt's)
//
// What each mirrors (ggml-cpu, read from the source and the shipped binary's disassembly):
//  - RmsNorm: the squares summed in double in index order, mean rounded to float, scale =
//    1 / sqrtf(mean + eps), out = (x * scale) * weight.
//  - RopeAngles: theta = pos, multiplied by base^(-2 / dims) once per pair (float), divided by the
//    pair's frequency factor, times freq_scale; cosf and sinf of it.
//  - Rope: NORM pairs (2i, 2i + 1), NEOX pairs (i, i + dims / 2): x0' = fma(x0, cos, -(x1 * sin));
//    x1' = fma(x0, sin, x1 * cos), except NORM pairs that GCC vectorized (eight at a time, then
//    four) where x1' = fma(x1, cos, x0 * sin). Dimensions past `dims` pass through.
//  - SoftMax: x * scale, the maximum, then exp(x - max) by ggml_v_expf in runs of 16 values (each
//    run's sum reduced as _mm512_reduce_add_ps and added to a double), expf for the rest; every
//    value times (float)(1 / sum).
//  - SiluMul: x / (1 + exp(-x)) with ggml_v_expf in runs of 16, x / (1 + expf(-x)) for the rest,
//    then times up.
//  - LanesDotF16: tinyBLAS's f16 x f16 product (llama.cpp's prompt path): value i accumulates in
//    lane i % 16 with a fused multiply-add, then the 16 lanes are reduced.
// Compiled with -ffp-contract=off: every fused multiply-add is written as one. `isa` picks the
// code (with hardware FMA, AVX2 or AVX-512 where the CPU has it; SoftMax's and SiluMul's runs of 16
// as ggml_v_expf's own AVX-512 instructions there); every choice gives the same bits.
#ifndef CELLHOUSE_ENGINE_GGML_OPS_H_
#define CELLHOUSE_ENGINE_GGML_OPS_H_

#include <cstdint>

#include "engine/formats/model_config.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine {

// ggml_v_expf's arithmetic for one lane: exp(x) within 1.5 ulp, exactly as the AVX-512 build.
float GgmlExp(float x);

// _mm512_reduce_add_ps as GCC expands it: (l[i] + l[i + 8]), then (+ 4), then pairs.
float ReduceAdd16(const float* lanes);

// out[i] = (x[i] * scale) * weight[i], scale = 1 / sqrtf(mean(x²) + eps). out may be x.
void RmsNorm(const float* x, const float* weight, int64_t n, float eps, float* out);

struct RopeParams {
  int32_t dims = 0;  // rotated dimensions of a head (even)
  float base = 10000.0F;
  float freq_scale = 1.0F;
  RopeStyle style = RopeStyle::kInterleaved;
  const float* freq_factors = nullptr;  // [dims / 2] or null
};
// angles[2i] = cos, angles[2i + 1] = sin of pair i's angle at `pos`.
void RopeAngles(const RopeParams& rope, int32_t pos, float* angles);
// Rotates one head of at least rope.dims values in place (every isa gives the same bits).
void Rope(const RopeParams& rope, const float* angles, float* head, KernelIsa isa);

// In place: x[i] = exp(x[i] * scale - max) / sum over the n values.
void SoftMax(float* x, int64_t n, float scale, KernelIsa isa);

// gate[i] = silu(gate[i]) * up[i].
void SiluMul(float* gate, const float* up, int64_t n, KernelIsa isa);

// sum of a[i] (halves) * b[i] over n values, in tinyBLAS's 16-lane order.
float LanesDotF16(const uint16_t* a, const float* b, int64_t n, KernelIsa isa);
// out[j] = the F16 type kernel's dot of row j (halves) with b (floats rounded to halves), over n
// values, for j < count: ggml_vec_dot_f16, a decode token's attention product. With AVX-512, 16
// rows at a time: each row's four chains as the kernel runs them, then the 16 rows' lanes reduced
// at once in the kernel's pairing (and the columns past the last whole 64 added in double, as the
// kernel does, for 16 rows at once), so each value is the bits of its own dot.
void DotsF16(const uint16_t* a, size_t a_stride, int64_t count, const float* b, int64_t n,
             KernelIsa isa, float* out);
// The run of columns that DotsF16Blocks reads contiguously: one 64-byte cache line of halves.
inline constexpr int64_t kF16Block = 32;
// DotsF16 over rows stored in blocks of columns: column i of row j at
// a + (i / kF16Block) * block_stride + j * kF16Block + i % kF16Block (a kv head's value cache,
// run_state.h), with the same bits as DotsF16 over the rows laid out whole. Without AVX-512 a
// row at a time is copied whole into `scratch` (n halves) first.
void DotsF16Blocks(const uint16_t* a, size_t block_stride, int64_t count, const float* b, int64_t n,
                   KernelIsa isa, uint16_t* scratch, float* out);
// out[i] = FloatToHalf(x[i]) (vcvtps2ph where the CPU has F16C: the same bits).
void ToHalves(const float* x, int64_t n, uint16_t* out, KernelIsa isa);

// out[q * out_stride + j] = LanesDotF16(a + j * a_stride, b + q * b_stride, n, isa) for
// j < count and q < queries: one dispatch for a head's keys or value rows against a prompt's
// tokens that read the same rows (a head's keys, or its value rows over the same padded length).
// With AVX-512 each row is widened from halves once for four queries; every value has the bits of
// its own LanesDotF16.
void LanesDotsF16(const uint16_t* a, size_t a_stride, int64_t count, const float* b,
                  size_t b_stride, int queries, int64_t n, KernelIsa isa, float* out,
                  size_t out_stride);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_GGML_OPS_H_
