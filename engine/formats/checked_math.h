// Overflow-checked size arithmetic for code that computes offsets from untrusted numbers (file
// headers). A nullopt means "does not fit in 64 bits"; callers turn it into a refusal.
//
//   std::optional<uint64_t> bytes = CheckedMul(rows, cols, sizeof(float));
//   if (!bytes) return Error("tensor size overflows");
#ifndef CELLHOUSE_ENGINE_FORMATS_CHECKED_MATH_H_
#define CELLHOUSE_ENGINE_FORMATS_CHECKED_MATH_H_

#include <cstdint>
#include <initializer_list>
#include <optional>

namespace cellhouse::engine {

inline std::optional<uint64_t> CheckedMul(std::initializer_list<uint64_t> factors) {
  uint64_t product = 1;
  for (uint64_t f : factors) {
    if (__builtin_mul_overflow(product, f, &product)) {
      return std::nullopt;
    }
  }
  return product;
}

inline std::optional<uint64_t> CheckedAdd(uint64_t a, uint64_t b) {
  uint64_t sum = 0;
  if (__builtin_add_overflow(a, b, &sum)) {
    return std::nullopt;
  }
  return sum;
}

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_CHECKED_MATH_H_
