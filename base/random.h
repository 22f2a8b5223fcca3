// Unpredictable bytes from the kernel (getrandom(2)), for session ids and re-attach tokens.
#ifndef CELLHOUSE_BASE_RANDOM_H_
#define CELLHOUSE_BASE_RANDOM_H_

#include <cstddef>
#include <span>

#include "base/result.h"

namespace cellhouse {

// Fills `out` from the kernel's CSPRNG; blocks only until the pool is initialised at boot.
Status FillRandom(std::span<std::byte> out);

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_RANDOM_H_
