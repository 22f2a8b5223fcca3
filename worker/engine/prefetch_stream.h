// PrefetchStream: the addresses a matrix-vector kernel prefetches, a fixed distance ahead of its
// reads: through the matrix, then on into the next matrix the caller will read, so the memory
// pipeline stays full across matrices. Internal to the kernels.
//
//   PrefetchStream prefetch(w, rows * cols, next);   // floats, or (bytes, void*) for int8
//   for (each 64-byte line read) _mm_prefetch(prefetch.Next(), _MM_HINT_T0);
//   // or, per tile of n lines: NextRun(n), and Next() line by line only when it is null
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

}  // namespace cellhouse::engine::internal

#endif  // CELLHOUSE_WORKER_ENGINE_PREFETCH_STREAM_H_
