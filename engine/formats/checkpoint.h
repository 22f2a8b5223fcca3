// The llama2.c checkpoint format (legacy version 0), read as a pure function over bytes.
//
// Layout: an int32[7] header {dim, hidden_dim, n_layers, n_heads, n_kv_heads, vocab_size,
// seq_len} (a negative vocab_size means a separate classifier matrix ends the file), then fp32
// tensors in the order CheckpointLayout lists them. All numbers are little-endian, as llama2.c
// writes them on the machines it runs on.
//
//   CH_ASSIGN_OR_RETURN(ModelWeights w, ParseCheckpoint(bytes, "stories15M.bin"));
//   const float* wq_layer0 = w.wq.data();   // [dim][dim]
//
// Every size is computed with overflow checks and compared with the length of the input before
// any tensor is viewed; a file whose length differs from what its header implies is refused.
#ifndef CELLHOUSE_ENGINE_FORMATS_CHECKPOINT_H_
#define CELLHOUSE_ENGINE_FORMATS_CHECKPOINT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"
#include "engine/formats/model_config.h"

namespace cellhouse::engine {

inline constexpr size_t kCheckpointHeaderBytes = 7 * sizeof(int32_t);

// Where each tensor lives in the file, in float elements counted from the end of the header.
struct CheckpointLayout {
  enum Tensor : int {
    kTokenEmbedding,  // [vocab][dim]
    kRmsAtt,          // [layers][dim]
    kWq,              // [layers][dim][dim]
    kWk,              // [layers][kv_dim][dim]
    kWv,              // [layers][kv_dim][dim]
    kWo,              // [layers][dim][dim]
    kRmsFfn,          // [layers][dim]
    kW1,              // [layers][hidden][dim]
    kW2,              // [layers][dim][hidden]
    kW3,              // [layers][hidden][dim]
    kRmsFinal,        // [dim]
    kRopeReal,        // [seq_len][head_size / 2], unused: RoPE is computed
    kRopeImag,        // [seq_len][head_size / 2], unused
    kClassifier,      // [vocab][dim], present only with a separate classifier
    kTensorCount,
  };
  struct Section {
    uint64_t offset = 0;  // in floats after the header
    uint64_t count = 0;   // floats
  };
  std::array<Section, kTensorCount> sections{};
  uint64_t total_floats = 0;
  uint64_t file_bytes = 0;  // header included

  static const char* Name(Tensor t);
};

// The layout `config` implies, or an error when a size overflows 64 bits. `config` must be valid.
Result<CheckpointLayout> ComputeLayout(const ModelConfig& config);

// The header bytes for `config` (vocab_size negated for a separate classifier).
std::array<std::byte, kCheckpointHeaderBytes> EncodeHeader(const ModelConfig& config);

// Immutable views of every tensor, pointing into the bytes that were parsed (which must outlive
// them). Each span covers all layers of its tensor; the *Layer helpers pick one layer.
struct ModelWeights {
  ModelConfig config;
  std::span<const float> token_embedding;  // [vocab][dim]
  std::span<const float> rms_att;          // [layers][dim]
  std::span<const float> wq;               // [layers][dim][dim]
  std::span<const float> wk;               // [layers][kv_dim][dim]
  std::span<const float> wv;               // [layers][kv_dim][dim]
  std::span<const float> wo;               // [layers][dim][dim]
  std::span<const float> rms_ffn;          // [layers][dim]
  std::span<const float> w1;               // [layers][hidden][dim]
  std::span<const float> w2;               // [layers][dim][hidden]
  std::span<const float> w3;               // [layers][hidden][dim]
  std::span<const float> rms_final;        // [dim]
  std::span<const float> classifier;       // [vocab][dim]: token_embedding when shared

  // The slice of an all-layers tensor that belongs to `layer`.
  static const float* Layer(std::span<const float> tensor, int32_t layers, int32_t layer) {
    return tensor.data() + (tensor.size() / static_cast<size_t>(layers)) * layer;
  }
};

// Parses a checkpoint. `name` (usually the path) prefixes every message. The bytes must be
// 4-byte aligned (a mapping or a heap buffer is).
Result<ModelWeights> ParseCheckpoint(std::span<const std::byte> file, std::string_view name);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_CHECKPOINT_H_
