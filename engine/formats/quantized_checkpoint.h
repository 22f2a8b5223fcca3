// cellhouse's quantized checkpoint format (docs/QUANTIZED_FORMAT.md), read as a pure function
// over bytes: a 64-byte versioned header, then llama2.c's tensors in llama2.c's order, every
// matrix as int8 tiles with one fp32 scale per row and group (q8_matrix.h), the RMSNorm weights
// in fp32, every tensor starting on a 64-byte boundary.
//
//   if (IsQuantizedCheckpoint(bytes)) {
//     CH_ASSIGN_OR_RETURN(QuantizedWeights w, ParseQuantizedCheckpoint(bytes, "m.q8"));
//     Q8Matrix wq0 = w.wq.Layer(0);   // [dim][dim]
//   }
//
// As for the fp32 format, every size is computed with overflow checks and the file's length must
// be exactly what its header implies; besides, the magic, version, kind, group size, flags and
// reserved bytes are checked.
#ifndef CELLHOUSE_ENGINE_FORMATS_QUANTIZED_CHECKPOINT_H_
#define CELLHOUSE_ENGINE_FORMATS_QUANTIZED_CHECKPOINT_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

#include "base/result.h"
#include "engine/formats/model_config.h"
#include "engine/kernels/q8_matrix.h"

namespace cellhouse::engine {

inline constexpr size_t kQuantizedHeaderBytes = 64;
inline constexpr size_t kQuantizedAlignment = 64;
// "CHQ8" as it appears in the file. Read as a llama2.c header, those bytes would be a dim of
// 944,851,011, which no llama2.c file can have, so the first four bytes tell the formats apart.
inline constexpr std::array<char, 4> kQuantizedMagic = {'C', 'H', 'Q', '8'};
inline constexpr uint32_t kQuantizedVersion = 1;

// How the matrices are encoded. Version 1 knows one kind.
enum class QuantKind : uint32_t {
  kInt8Groups = 1,  // symmetric int8, one fp32 scale per row and group, 16-row tiles
};

inline constexpr uint32_t kQuantFlagSeparateClassifier = 1U << 0;

// True when `file` starts with the quantized format's magic (whatever follows).
bool IsQuantizedCheckpoint(std::span<const std::byte> file);

// Where each tensor lives, in bytes from the start of the file.
struct QuantizedLayout {
  enum Tensor : int {
    kTokenEmbedding,  // q8 [vocab][dim]
    kRmsAtt,          // fp32 [layers][dim]
    kWq,              // q8 [layers] × [dim][dim]
    kWk,              // q8 [layers] × [kv_dim][dim]
    kWv,              // q8 [layers] × [kv_dim][dim]
    kWo,              // q8 [layers] × [dim][dim]
    kRmsFfn,          // fp32 [layers][dim]
    kW1,              // q8 [layers] × [hidden][dim]
    kW2,              // q8 [layers] × [dim][hidden]
    kW3,              // q8 [layers] × [hidden][dim]
    kRmsFinal,        // fp32 [dim]
    kClassifier,      // q8 [vocab][dim], present only with a separate classifier
    kTensorCount,
  };
  struct Section {
    uint64_t offset = 0;  // bytes from the start of the file, a multiple of 64
    uint64_t bytes = 0;   // without the padding to the next section
  };
  std::array<Section, kTensorCount> sections{};
  uint64_t file_bytes = 0;

  static const char* Name(Tensor t);
};

// The header's contents.
struct QuantizedHeader {
  uint32_t version = kQuantizedVersion;
  QuantKind kind = QuantKind::kInt8Groups;
  int32_t group_size = 32;
  ModelConfig config;
  uint64_t file_bytes = 0;
};

// The layout `config` implies at `group_size`, or an error when a size overflows 64 bits.
// `config` must be valid and the group size 32 or 64.
Result<QuantizedLayout> ComputeQuantizedLayout(const ModelConfig& config, int32_t group_size);

// The header bytes (file_bytes included; reserved bytes zero).
std::array<std::byte, kQuantizedHeaderBytes> EncodeQuantizedHeader(const QuantizedHeader& header);

// The shape of each matrix tensor at `group_size`.
Q8Shape QuantizedShape(const ModelConfig& config, QuantizedLayout::Tensor tensor,
                       int32_t group_size);

// Immutable views of every tensor, pointing into the parsed bytes (which must outlive them).
struct QuantizedWeights {
  ModelConfig config;
  int32_t group_size = 0;
  Q8Tensor token_embedding;          // [vocab][dim]
  std::span<const float> rms_att;    // [layers][dim]
  Q8Tensor wq;                       // [layers] × [dim][dim]
  Q8Tensor wk;                       // [layers] × [kv_dim][dim]
  Q8Tensor wv;                       // [layers] × [kv_dim][dim]
  Q8Tensor wo;                       // [layers] × [dim][dim]
  std::span<const float> rms_ffn;    // [layers][dim]
  Q8Tensor w1;                       // [layers] × [hidden][dim]
  Q8Tensor w2;                       // [layers] × [dim][hidden]
  Q8Tensor w3;                       // [layers] × [hidden][dim]
  std::span<const float> rms_final;  // [dim]
  Q8Tensor classifier;               // [vocab][dim]: token_embedding when shared
};

// Parses a quantized checkpoint. `name` (usually the path) prefixes every message. The bytes
// must be 4-byte aligned (a mapping or a heap buffer is; a mapping makes every tensor 64-byte
// aligned, which the kernels are fastest with but do not need).
Result<QuantizedWeights> ParseQuantizedCheckpoint(std::span<const std::byte> file,
                                                  std::string_view name);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_QUANTIZED_CHECKPOINT_H_
