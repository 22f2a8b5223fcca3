// What one decode step of a model reads from memory, for the bandwidth roofline the engine
// benchmarks measure against (engine_bench, gguf_bench): every weight matrix once, the norms, the
// classifier, one row of the embedding table; and the KV cache of every earlier position.
#ifndef CELLHOUSE_BENCH_ENGINE_BYTES_PER_TOKEN_H_
#define CELLHOUSE_BENCH_ENGINE_BYTES_PER_TOKEN_H_

#include "engine/model.h"

namespace cellhouse::bench {

// Weight bytes one decode step reads, for any format (fp32, int8, GGUF in its own types).
double WeightBytesPerToken(const engine::Model& model);

// KV cache bytes one decode step reads at `context` positions, in the model's cache precision.
double KvBytesPerToken(const engine::Model& model, double context);

}  // namespace cellhouse::bench

#endif  // CELLHOUSE_BENCH_ENGINE_BYTES_PER_TOKEN_H_
