// PrefetchStream: the addresses a matrix-vector kernel prefetches, a fixed distance ahead of its
// reads: through the matrix, then on into the next matrix the caller will read, so the memory
// pipeline stays full across matrices. Internal to the kernels.
//
//   PrefetchStream prefetch(w, rows * cols, next);   // floats, or (bytes, void*) for int8
//   for (each 64-byte line read) _mm_prefetch(prefetch.Next(), _MM_HINT_T0);
//   // or, per tile of n lines: NextRun(n), and Next() line by line only when it is null
//
//   RowPrefetch rows(keys, kv_dim, count);           // attention: cache rows in order
//   for (t = 0; t < count; ++t) { rows.Row(t); /* read row t */ }
#ifndef CELLHOUSE_WORKER_ENGINE_PREFETCH_STREAM_H_
#define CELLHOUSE_WORKER_ENGINE_PREFETCH_STREAM_H_

#include <cstddef>
#include <cstdint>

namespace cellhouse::engine::internal {

class PrefetchStream {
 public:
  // How far ahead of the reads: enough lines in flight to cover memory latency at full
  // bandwidth on one core (measured best between 2 and 8 KiB on these machines).
  static constexpr uintptr_t kDistance = 4096;
  static constexpr uintptr_t kLine = 64;

  // `bytes` of a matrix at `w`; `next` may be null (the stream then runs on past the end, which
  // is harmless: prefetches never fault). Addresses are integers so that running past an object
  // is not pointer arithmetic.
  PrefetchStream(const void* w, size_t bytes, const void* next)
      : pos_(reinterpret_cast<uintptr_t>(w) + kDistance),
        end_(reinterpret_cast<uintptr_t>(w) + bytes),
        next_(next != nullptr ? reinterpret_cast<uintptr_t>(next) : end_) {}
  // `floats` of an fp32 matrix.
  PrefetchStream(const float* w, size_t floats, const float* next)
      : PrefetchStream(static_cast<const void*>(w), floats * sizeof(float),
                       static_cast<const void*>(next)) {}

  // The first address of the next `lines` lines when they lie in one piece (all in the matrix,
  // or all past its end), so that a kernel reading a fixed-size tile prefetches it with one
  // check; null when they straddle the end (then call Next() for each line).
  const char* NextRun(uintptr_t lines) {
    const uintptr_t bytes = lines * kLine;
    uintptr_t at = 0;
    if (pos_ + bytes <= end_) {
      at = pos_;
    } else if (pos_ >= end_) {
      at = next_ + (pos_ - end_);
    } else {
      return nullptr;
    }
    pos_ += bytes;
    return reinterpret_cast<const char*>(at);  // NOLINT(performance-no-int-to-ptr)
  }

  // The address for the next line, then advances by a line.
  const char* Next() {
    const uintptr_t at = pos_ < end_ ? pos_ : next_ + (pos_ - end_);
    pos_ += kLine;
    // Only ever a prefetch hint, never dereferenced.
    return reinterpret_cast<const char*>(at);  // NOLINT(performance-no-int-to-ptr)
  }

 private:
  uintptr_t pos_;
  uintptr_t end_;
  uintptr_t next_;
};

// The same for rows read one after another, as attention reads a layer's cache (rows of
// `row_floats` floats, `count` of them): Row(t) before reading row t prefetches up to kDistance
// bytes past its end, never past the last row. The cache was written a layer's worth of weights
// ago and is no longer in any cache; the software prefetch keeps the read going at streaming
// speed across the 4 KiB pages where the hardware prefetchers stop.
class RowPrefetch {
 public:
  RowPrefetch(const float* rows, size_t row_floats, int32_t count)
      : base_(reinterpret_cast<uintptr_t>(rows)),
        row_bytes_(row_floats * sizeof(float)),
        issued_(base_),
        end_(base_ + row_bytes_ * static_cast<size_t>(count)) {}

  void Row(int32_t t) {
    uintptr_t target =
        base_ + row_bytes_ * (static_cast<size_t>(t) + 1) + PrefetchStream::kDistance;
    target = target < end_ ? target : end_;
    for (; issued_ < target; issued_ += PrefetchStream::kLine) {
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

}  // namespace cellhouse::engine::internal

#endif  // CELLHOUSE_WORKER_ENGINE_PREFETCH_STREAM_H_
