// The forward pass of a GGUF model (llama, qwen2, qwen3; formats/gguf_model.h), computed from the
// file's own tensor types with the type kernels (kernels/type_kernels.h) and llama.cpp's rounding
// for everything else (ggml_ops.h), so that greedy outputs agree with the reference runtime.
//
//   const float* logits = ForwardGguf(weights, KernelIsa::kAvx512, state, prompt, /*pos=*/0);
//
// Per layer, as llama.cpp builds its graph: h = RMSNorm(x) * attn_norm; q, k, v = projections
// of h (+ biases, qwen2); per-head RMSNorm of q and k (qwen3); RoPE of q and k; keys and values
// rounded to f16 into the cache; attention; x += attn_output · a; h = RMSNorm(x) * ffn_norm;
// x += ffn_down · (silu(ffn_gate · h) * (ffn_up · h)). Then RMSNorm(x) * output_norm and the
// classifier. Attention is llama.cpp's non-flash CPU path: the query and the softmax weights are
// rounded to f16, scores and weighted sums are f16 dot products over the cache padded to
// kKvPadding positions (run_state.h), the scale 1/sqrt(head size) is applied inside the softmax.
//
// Prompts: llama.cpp multiplies a prompt of more than one token with tinyBLAS where it can, which
// accumulates attention's f16 products in 16 lanes per output; the attention here does the same
// for a prompt's tokens (StepKind::kPrompt, step_kind.h), so the keys and values a prompt leaves
// in the cache match the reference's. The weight products are batch-invariant (type_kernels.h);
// a prompt's rows get what decode would give them, except with Q8_0 and K-quant weights, whose
// prompt rows take DotOrder::kBlockSums (PromptOrder): 2-3x the products' speed (docs/ENGINE.md),
// the last bits not llama.cpp's. Which arithmetic a token gets follows from its kind, never from
// how many tokens a call or a chunk has, so a prompt gives the same bits in any chunking.
//
// The steps are separate functions (gguf_steps below), split as issue 17's shared executor will
// need them: the position-independent work of a layer (norms, projections, feed-forward,
// classifier) apart from what depends on a session's positions and cache (embedding, RoPE,
// attention).
#ifndef CELLHOUSE_ENGINE_GGUF_FORWARD_H_
#define CELLHOUSE_ENGINE_GGUF_FORWARD_H_

#include <cstddef>
#include <cstdint>
#include <span>

#include "engine/formats/gguf_model.h"
#include "engine/kernels/type_kernels.h"
#include "engine/run_state.h"
#include "engine/step_kind.h"

namespace cellhouse::engine {

// Runs `tokens` (of `kind`) at positions pos .. pos + tokens.size() - 1 (in chunks of
// kMaxBatch), writing their keys and values into the state's cache (fp16), and returns the last
// token's logits ([vocab], state.logits). Same contract as Forward (forward.h): non-empty tokens
// below the vocabulary size that fit the state's context (kDecode: one token); no allocation, no
// failure, no system call.
const float* ForwardGguf(const GgufWeights& weights, KernelIsa isa, RunState& state,
                         std::span<const int32_t> tokens, int32_t pos, StepKind kind);
// The same with KindByCount(tokens.size()).
const float* ForwardGguf(const GgufWeights& weights, KernelIsa isa, RunState& state,
                         std::span<const int32_t> tokens, int32_t pos);

namespace gguf_steps {

// Threads for the weight products of a step: Run calls fn(context, part, parts) once for each
// part, in parallel, and returns when all are done. Each product splits its output rows into the
// parts; any split gives the same bits (the kernels compute every output element alike).
class RowParallel {
 public:
  virtual ~RowParallel() = default;
  virtual int parts() const = 0;
  virtual void Run(void (*fn)(void* context, int part, int parts), void* context) = 0;
};

// Where a step reads and writes, for a batch of n tokens (n <= kMaxBatch, or the rows the
// caller's buffers hold).
struct Buffers {
  float* x;                // [n][dim] residual stream
  float* h;                // [n][max(dim, q_dim)] normalised input, then attention output
  float* h2;               // [n][dim] projection output
  float* q;                // [n][q_dim]
  float* k;                // [n][kv_dim]
  float* v;                // [n][kv_dim]
  float* gate;             // [n][hidden]
  float* up;               // [n][hidden]
  std::byte* typed_input;  // the input rows in the weights' partner type (RunState::typed_input)
  RowParallel* parallel = nullptr;  // null: the products run on the calling thread
  // Rows [0, prompt_rows) are a prompt's (their products in PromptOrder), the rest decode rows
  // (clamped to the step's rows).
  int32_t prompt_rows = 0;
};

// --- per session ---
// x[b] = the embedding row of tokens[b].
void Embed(const GgufWeights& w, KernelIsa isa, std::span<const int32_t> tokens, float* x);
// Rotates q[b] and k[b] (every head) for position pos + b; `angles` holds rotated_dims floats.
void RotateQueriesAndKeys(const GgufWeights& w, KernelIsa isa, int32_t pos, int32_t n, float* q,
                          float* k, float* angles);
// Rounds k and v into layer l's cache at positions pos .., then attends: out[b] ([q_dim]) is
// token b's attention over positions 0 .. pos + b, in the order of `kind` (see the header).
void Attend(const GgufWeights& w, KernelIsa isa, RunState& state, int32_t layer, int32_t pos,
            int32_t n, StepKind kind, const float* q, const float* k, const float* v, float* out);

// --- position-independent (shareable by every session of the model) ---
// h = RMSNorm(x) * attn_norm; q, k, v = projections (+ biases); per-head q/k norms.
void AttentionInputs(const GgufWeights& w, KernelIsa isa, int32_t layer, int32_t n,
                     const Buffers& b);
// x += attn_output · h (h holds the attention output), then the feed-forward block.
void AttentionOutputAndFeedForward(const GgufWeights& w, KernelIsa isa, int32_t layer, int32_t n,
                                   const Buffers& b);
// logits[i] ([vocab]) = classifier · (RMSNorm(x_rows[i]) * output_norm) for i < n; h is scratch.
void Logits(const GgufWeights& w, KernelIsa isa, const float* x_rows, int32_t n, const Buffers& b,
            float* logits);

}  // namespace gguf_steps

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_GGUF_FORWARD_H_
