// Single-thread memory read bandwidth: a vectorised streaming read (sum of every float) over a
// buffer far larger than the caches. This is the roofline decode is measured against: each
// generated token must read every weight once, so tokens/s can be at most bandwidth / bytes.
#ifndef CELLHOUSE_BENCH_ENGINE_BANDWIDTH_H_
#define CELLHOUSE_BENCH_ENGINE_BANDWIDTH_H_

#include <cstddef>
#include <span>

namespace cellhouse::bench {

// Bytes per second of the best of `repeats` rounds reading all of `bytes` (AVX-512 where the
// CPU has it, else AVX2, else scalar), each round once with plain loads and once with each
// step's lines prefetched just before they are loaded, as the engine's kernels read.
double StreamReadBandwidth(std::span<const std::byte> bytes, int repeats);

}  // namespace cellhouse::bench

#endif  // CELLHOUSE_BENCH_ENGINE_BANDWIDTH_H_
