// Deterministic test models: a checkpoint of pseudo-random weights of any shape, and a matching
// tokenizer, so tests and benchmarks never need a download.
//
//   CH_ASSIGN_OR_RETURN(ModelConfig config, PresetConfig("15m"));
//   CH_RETURN_IF_ERROR(WriteModel(config, /*seed=*/1, "m.bin"));
//   CH_RETURN_IF_ERROR(WriteTokenizer(config.vocab_size, 1, "m.bin.tokenizer"));
//
// Weights are scaled by fan-in (and the residual projections by depth) so activations stay
// finite; the classifier rows of BOS and EOS are zero, as in the shared reference checkpoint.
// The tokenizer has <unk>, BOS, EOS, the 256 byte pieces, the printable ASCII characters and a
// few common non-ASCII ones, then pieces made by merging existing pieces (learned from a small
// built-in text first, then drawn at random), scored so that byte-pair merging reaches them.
#ifndef CELLHOUSE_ENGINE_FORMATS_GENERATOR_H_
#define CELLHOUSE_ENGINE_FORMATS_GENERATOR_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/formats/model_config.h"

namespace cellhouse::engine {

// "tiny" (dim 64, grouped-query, vocab 512: fast for tests), "15m" (llama2.c's stories15M
// shape), "110m" (stories110M's), "1b" (grouped-query, TinyLlama-1.1B's shape).
Result<ModelConfig> PresetConfig(std::string_view name);
std::vector<std::string_view> PresetNames();

// The whole checkpoint in memory (for tests; use WriteModel for large shapes).
Result<std::vector<std::byte>> GenerateModel(const ModelConfig& config, uint64_t seed);
// Streams the checkpoint to `path` atomically (temporary file + rename).
Status WriteModel(const ModelConfig& config, uint64_t seed, const std::string& path);

// A tokenizer file of exactly vocab_size pieces; vocab_size must be at least 259 + the number of
// single-character pieces (see kMinGeneratedVocab).
Result<std::vector<std::byte>> GenerateTokenizer(int32_t vocab_size, uint64_t seed);
Status WriteTokenizer(int32_t vocab_size, uint64_t seed, const std::string& path);

inline constexpr int32_t kMinGeneratedVocab = 384;

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_GENERATOR_H_
