// Unpredictable bytes from the kernel (getrandom(2)), for session ids, re-attach tokens and
// sampling seeds. Every caller goes through these and handles the error: a failure is reported,
// never papered over with something predictable, and never aborts the process.
//
//   CH_ASSIGN_OR_RETURN(std::string id, RandomBytes(16));
//   CH_ASSIGN_OR_RETURN(uint64_t seed, RandomUint64());
#ifndef CELLHOUSE_BASE_RANDOM_H_
#define CELLHOUSE_BASE_RANDOM_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>

#include "base/result.h"

namespace cellhouse {

// Fills `out` from the kernel's CSPRNG; blocks only until the pool is initialised at boot.
Status FillRandom(std::span<std::byte> out);
// `n` random bytes.
Result<std::string> RandomBytes(size_t n);
// A random 64-bit number.
Result<uint64_t> RandomUint64();

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_RANDOM_H_
