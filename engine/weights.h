// AnyWeights: the tensors of a model in whichever format its file has — llama2.c fp32
// (checkpoint.h), cellhouse's int8 groups (quantized_checkpoint.h) or GGUF (gguf_model.h). Model
// holds one; Forward takes any.
//
//   const AnyWeights& w = model.weights();
//   if (const auto* q8 = std::get_if<QuantizedWeights>(&w)) { ... q8->group_size ... }
#ifndef CELLHOUSE_ENGINE_WEIGHTS_H_
#define CELLHOUSE_ENGINE_WEIGHTS_H_

#include <variant>

#include "engine/formats/checkpoint.h"
#include "engine/formats/gguf_model.h"
#include "engine/formats/quantized_checkpoint.h"

namespace cellhouse::engine {

using AnyWeights = std::variant<ModelWeights, QuantizedWeights, GgufWeights>;

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_WEIGHTS_H_
