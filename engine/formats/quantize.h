// Quantizing an fp32 llama2.c checkpoint into cellhouse's int8 format
// (quantized_checkpoint.h, docs/QUANTIZED_FORMAT.md).
//
//   CH_ASSIGN_OR_RETURN(Model fp32, Model::Open("stories110M.bin"));
//   CH_RETURN_IF_ERROR(WriteQuantizedModel(std::get<ModelWeights>(fp32.weights()),
//                                          {.group_size = 32}, "stories110M.q8"));
//
// Each row of each matrix is cut into groups of group_size weights; a group's scale is
// max|w| / 127 and each weight becomes round(w / scale), so the largest weight of a group is
// exact and every other is within half a step. RMSNorm weights are copied unchanged; the unused
// RoPE tables of the fp32 file are dropped.
#ifndef CELLHOUSE_ENGINE_FORMATS_QUANTIZE_H_
#define CELLHOUSE_ENGINE_FORMATS_QUANTIZE_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "base/result.h"
#include "engine/formats/checkpoint.h"
#include "engine/kernels/q8_matrix.h"

namespace cellhouse::engine {

struct QuantizeOptions {
  int32_t group_size = 32;  // 32 or 64
};

// Quantizes w ([shape.rows][shape.cols], row-major) into shape.Bytes() bytes of tiles at `out`.
// A non-finite weight is an error naming its row and column.
Status QuantizeMatrix(const float* w, const Q8Shape& shape, std::byte* out);

// The whole quantized checkpoint in memory (for tests; use WriteQuantizedModel for large ones).
Result<std::vector<std::byte>> QuantizeModel(const ModelWeights& weights,
                                             const QuantizeOptions& options);
// Streams the quantized checkpoint to `path` atomically (temporary file + rename).
Status WriteQuantizedModel(const ModelWeights& weights, const QuantizeOptions& options,
                           const std::string& path);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_QUANTIZE_H_
