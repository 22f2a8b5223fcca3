// The forward pass of a Llama-architecture decoder: RMSNorm, rotary position embedding (RoPE,
// computed), grouped-query attention with a KV cache, SwiGLU feed-forward, classifier.
//
//   Kernels k = SelectKernels(MatVecKernel::kAuto);
//   const float* logits = Forward(model.weights(), k, state, prompt_tokens, /*pos=*/0);
//   ... sample `next` from logits ...
//   logits = Forward(model.weights(), k, state, std::span(&next, 1), prompt_tokens.size());
//
// The numerics follow llama2.c's run.c operation by operation (same formulas, same order for
// RMSNorm, RoPE and softmax); only the order of summation inside the matrix products differs.
//
// A GGUF model has a pass of its own (gguf_forward.h). An int8 checkpoint (QuantizedWeights) runs
// the same pass, but each matrix product quantizes
// its input per token (kernels.h) and the embedding row is dequantized. Its batched prefill uses
// the same int8 arithmetic as decoding, so the two give bit-identical logits.
#ifndef CELLHOUSE_ENGINE_FORWARD_H_
#define CELLHOUSE_ENGINE_FORWARD_H_

#include <cstdint>
#include <span>

#include "engine/formats/checkpoint.h"
#include "engine/formats/quantized_checkpoint.h"
#include "engine/gguf_forward.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/type_kernels.h"
#include "engine/run_state.h"
#include "engine/step_kind.h"
#include "engine/weights.h"

namespace cellhouse::engine {

// Runs `tokens` at positions pos .. pos + tokens.size() - 1, writing their keys and values into
// the state's cache, and returns the logits of the last token ([vocab], in state.logits).
// Prompts are processed in chunks of kMaxBatch tokens with matrix-matrix products; one token is
// one matrix-vector product per weight matrix. Requires a non-empty `tokens` of ids below the
// vocabulary size and pos + tokens.size() <= state.context_length() (the caller checks; this
// function does not allocate, fail or make system calls).
const float* Forward(const ModelWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos);
const float* Forward(const QuantizedWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos);
// Any format; a GGUF model runs ForwardGguf (gguf_forward.h) with the type kernels of the
// instruction set `kernels` was chosen for (TypeKernelIsa), its tokens of `kind` (step_kind.h:
// only GGUF models compute the two kinds differently).
const float* Forward(const AnyWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos, StepKind kind);
// The same with KindByCount(tokens.size()).
const float* Forward(const AnyWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos);

// The type kernels' instruction set matching a kernel choice: AVX-512 and AVX2 alike, portable for
// OpenBLAS (the scalar reference), the best the CPU has for kAuto.
KernelIsa TypeKernelIsa(const Kernels& kernels);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORWARD_H_
