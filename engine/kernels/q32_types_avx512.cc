// Placeholder until the vector kernels land: the table falls back to the portable products.
#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

ProductFns Q32ProductsAvx512(TensorType /*type*/, DotOrder /*order*/) { return {}; }

}  // namespace cellhouse::engine::internal
