// AnyWeights: the tensors of a checkpoint in whichever format its file has — llama2.c fp32
// (checkpoint.h) or cellhouse's int8 groups (quantized_checkpoint.h). Model holds one; Forward
// takes either.
//
//   const AnyWeights& w = model.weights();
//   if (const auto* q8 = std::get_if<QuantizedWeights>(&w)) { ... q8->group_size ... }
#ifndef CELLHOUSE_ENGINE_WEIGHTS_H_
#define CELLHOUSE_ENGINE_WEIGHTS_H_

#include <variant>

#include "engine/formats/checkpoint.h"
#include "engine/formats/quantized_checkpoint.h"

namespace cellhouse::engine {

using AnyWeights = std::variant<ModelWeights, QuantizedWeights>;

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_WEIGHTS_H_
