// Placeholder until the vector kernels land: the table falls back to the portable products.
#include "engine/kernels/type_kernels_internal.h"

namespace cellhouse::engine::internal {

ProductFns KProductsAvx2(TensorType /*type*/) { return {}; }

}  // namespace cellhouse::engine::internal
