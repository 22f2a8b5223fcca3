// Software prefetches of the engine's kernels. Internal to kernels*.cc.
//
//   IssueEarly<9>(tile);                              // weights: the lines this step loads next
//   RowPrefetch rows(keys, row_bytes, count);         // attention: cache rows ahead, in order
//   for (t = 0; t < count; ++t) { rows.Row(t); /* read row t */ }
//
// Weights stream best with no look-ahead at all: measured on these machines, prefetching 0.5 to
// 32 KiB ahead of an int8 or fp32 matrix-vector product made it 5-25% slower than the hardware
// prefetchers alone, on 4 KiB pages and on huge pages alike. What helps is IssueEarly: prefetch
// the few lines a step is about to load, just before loading them. A prefetch retires without
// waiting for its line, unlike a load, so the core runs on to later steps and keeps more misses
// in flight (an int8 product: 28 -> 32 GB/s with AVX-512 VNNI; fp32: 31 -> 34 GB/s).
#ifndef CELLHOUSE_ENGINE_KERNELS_PREFETCH_H_
#define CELLHOUSE_ENGINE_KERNELS_PREFETCH_H_

#include <algorithm>
#include <cstddef>
#include <cstdint>

namespace cellhouse::engine::internal {

inline constexpr size_t kCacheLine = 64;

// Prefetches the kLines cache lines from `p` on (p need not be aligned: the lines are counted
// from p, so a misaligned step's last partial line is the next step's first).
template <size_t kLines>
inline void IssueEarly(const void* p) {
  const auto* bytes = static_cast<const char*>(p);
  for (size_t i = 0; i < kLines; ++i) {
    __builtin_prefetch(bytes + i * kCacheLine);
  }
}

// Attention reads a layer's cache rows in order (rows of `row_bytes` bytes, `count` of them):
// Row(t) before reading row t prefetches up to kDistance bytes past its end, never past the last
// row. The rows were written a layer's worth of weights ago and are in no cache any more, and a
// layer's rows are only a few hundred KiB: too short a run for the hardware prefetchers to ramp up,
// so here a look-ahead does help (4 KiB measured best).
class RowPrefetch {
 public:
  static constexpr uintptr_t kDistance = 4096;

  RowPrefetch(const void* rows, size_t row_bytes, int32_t count)
      : base_(reinterpret_cast<uintptr_t>(rows)),
        row_bytes_(row_bytes),
        issued_(base_),
        end_(base_ + row_bytes_ * static_cast<size_t>(count)) {}

  void Row(int32_t t) {
    uintptr_t target = base_ + row_bytes_ * (static_cast<size_t>(t) + 1) + kDistance;
    target = target < end_ ? target : end_;
    for (; issued_ < target; issued_ += kCacheLine) {
      // Only ever a prefetch hint, never dereferenced.
      __builtin_prefetch(
          reinterpret_cast<const char*>(issued_));  // NOLINT(performance-no-int-to-ptr)
    }
  }

 private:
  uintptr_t base_;
  size_t row_bytes_;
  uintptr_t issued_;
  uintptr_t end_;
};

// The GGUF type kernels read R weight rows at once, R streams a row apart, which the hardware
// prefetchers serve poorly (measured on the project's first host, Q8_0 decode: 13 GB/s with 4
// rows, 28 GB/s one row at a time); one row at a time is bound by its chain of dependent
// multiply-adds instead. So each tile of rows, while it computes, prefetches a later tile's
// bytes in address order, spread evenly over its steps: to the memory system one sequential
// stream (there, Q8_0 decode with 8 rows: 35-39 GB/s where a plain read streams 40-45; the later
// Zen 4 host streams Q8_0 best with 4 rows, q32_types_avx512.cc). Which tile: at least a few KiB
// on, TileAhead in type_kernels_internal.h.
//
//   SpreadPrefetch ahead(later_tile, later_tile_end, blocks);
//   for (b = 0; b < blocks; ++b) { ahead.Step(b); ... }
class SpreadPrefetch {
 public:
  SpreadPrefetch(const void* begin, const void* end, int64_t steps)
      : next_(reinterpret_cast<uintptr_t>(begin)),
        begin_(next_),
        end_(std::max(next_, reinterpret_cast<uintptr_t>(end))),
        per_step_(steps > 0 ? (end_ - begin_ + static_cast<uintptr_t>(steps) - 1) /
                                  static_cast<uintptr_t>(steps)
                            : 0) {}

  // Before step `step` (0-based): the lines up to where step + 1 of the steps ends.
  void Step(int64_t step) {
    uintptr_t target = begin_ + per_step_ * (static_cast<uintptr_t>(step) + 1);
    target = target < end_ ? target : end_;
    for (; next_ < target; next_ += kCacheLine) {
      // Only ever a prefetch hint, never dereferenced.
      __builtin_prefetch(
          reinterpret_cast<const char*>(next_));  // NOLINT(performance-no-int-to-ptr)
    }
  }

 private:
  uintptr_t next_;
  uintptr_t begin_;
  uintptr_t end_;
  uintptr_t per_step_;
};

}  // namespace cellhouse::engine::internal

#endif  // CELLHOUSE_ENGINE_KERNELS_PREFETCH_H_
