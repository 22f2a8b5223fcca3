// Whether a forward step's tokens are a prompt's (a turn's input, evaluated together) or one
// generated token's. The two take different arithmetic for Q8_0 and K-quant weights
// (DotOrder::kBlockSums, engine/kernels/type_kernels.h), so whoever runs a step says which: the
// same tokens then get the same bits in any chunking, alone or through the shared executor.
#ifndef CELLHOUSE_ENGINE_STEP_KIND_H_
#define CELLHOUSE_ENGINE_STEP_KIND_H_

#include <cstddef>
#include <cstdint>

namespace cellhouse::engine {

enum class StepKind : uint8_t {
  kPrompt,  // a prompt's tokens, however many (the last token evaluated again is one)
  kDecode,  // the one token just generated
};

// For callers that evaluate a whole prompt in one call, then one generated token per call
// (benchmarks, tests, cellmodel): kDecode for one token, kPrompt for more. A conversation knows
// better (a one-token prompt is a prompt) and says so itself.
constexpr StepKind KindByCount(size_t tokens) {
  return tokens == 1 ? StepKind::kDecode : StepKind::kPrompt;
}

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_STEP_KIND_H_
