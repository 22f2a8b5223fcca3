// bandwidth_bench: the machine's memory read bandwidth for one thread and for one thread per
// CPU reading at the same time. Decode is bound by it (every weight is read once per token), so
// how much a second core adds to it bounds how much a second generating session can add.
//
//   build/bin/bandwidth_bench [--buffer-mib 512] [--passes 8] [--rounds 3] [--json FILE]
//
// Each thread streams its own buffer (anonymous memory, huge pages where granted, every page
// faulted in first) with the vectorised read of bench/engine/bandwidth.h, --passes times;
// its rate is bytes read / time taken, and the aggregate is the sum over the threads. Rounds
// alternate one thread and all threads; the figures are medians over --rounds.
// Figures only: nothing here asserts anything about time.
#include <sys/mman.h>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstring>
#include <span>
#include <string>
#include <thread>
#include <vector>

#include "base/flags.h"
#include "base/mapping.h"
#include "base/print.h"
#include "bench/engine/bandwidth.h"
#include "bench/sessions/bench_common.h"
#include "cli/cellctl/json.h"

namespace cellhouse::bench {
namespace {

struct Options {
  BenchFlags common;
  int64_t buffer_mib = 512;
  int64_t passes = 8;
  int64_t rounds = 3;
};

// Bytes per second summed over `buffers.size()` threads reading at once.
double Aggregate(std::span<const Mapping> buffers, int64_t passes) {
  std::vector<double> rates(buffers.size());
  std::atomic<size_t> ready{0};
  std::vector<std::thread> threads;
  threads.reserve(buffers.size());
  for (size_t t = 0; t < buffers.size(); ++t) {
    threads.emplace_back([&, t] {
      ready.fetch_add(1);
      while (ready.load() < buffers.size()) std::this_thread::yield();  // start together
      double seconds = 0;
      const auto bytes = static_cast<double>(buffers[t].size());
      for (int64_t p = 0; p < passes; ++p) {
        seconds += bytes / StreamReadBandwidth(buffers[t].bytes(), 1);
      }
      rates[t] = bytes * static_cast<double>(passes) / seconds;
    });
  }
  for (std::thread& t : threads) t.join();
  double sum = 0;
  for (double r : rates) sum += r;
  return sum;
}

Status Run(const Options& o) {
  const auto threads = static_cast<size_t>(std::max(1U, std::thread::hardware_concurrency()));
  std::vector<Mapping> buffers;
  buffers.reserve(threads);
  for (size_t t = 0; t < threads; ++t) {
    CH_ASSIGN_OR_RETURN(Mapping m, Mapping::Anonymous(static_cast<size_t>(o.buffer_mib) << 20,
                                                      "a bandwidth buffer"));
    // Huge pages where granted, as engine_bench does (4 KiB pages read ~30% slower here).
    static_cast<void>(::madvise(m.mutable_data(), m.size(), MADV_HUGEPAGE));
    std::memset(m.mutable_data(), 1, m.size());
    buffers.push_back(std::move(m));
  }
  std::vector<double> single, all;
  for (int64_t r = 0; r < o.rounds; ++r) {
    single.push_back(Aggregate(std::span<const Mapping>(buffers).first(1), o.passes));
    all.push_back(Aggregate(buffers, o.passes));
  }
  const double s = Median(single), a = Median(all);
  Printf(stdout,
         "bandwidth_bench: %lld MiB per thread, %lld passes, median of %lld rounds%s\n"
         "  1 thread:  %6.2f GB/s\n  %zu threads: %6.2f GB/s in all (%.2fx one thread)\n",
         static_cast<long long>(o.buffer_mib), static_cast<long long>(o.passes),
         static_cast<long long>(o.rounds), o.common.quick ? ", --quick" : "", s / 1e9, threads,
         a / 1e9, s > 0 ? a / s : 0.0);
  return WriteJson(o.common.json_path,
                   cli::JsonObject()
                       .Add("benchmark", "bandwidth")
                       .Add("quick", o.common.quick)
                       .Add("buffer_bytes", static_cast<uint64_t>(o.buffer_mib) << 20)
                       .Add("threads", static_cast<uint64_t>(threads))
                       .Add("one_thread_bytes_per_second", s)
                       .Add("all_threads_bytes_per_second", a)
                       .Render());
}

int Main(int argc, char** argv) {
  Options o;
  FlagSet flags("bandwidth_bench [--quick] [--json FILE]",
                "Memory read bandwidth of one thread and of one thread per CPU at once. Prints "
                "figures; asserts nothing about time.");
  AddBenchFlags(flags, &o.common);
  flags.Int("buffer-mib", &o.buffer_mib, "N", "buffer per thread (default 512; --quick 256)");
  flags.Int("passes", &o.passes, "N", "reads of the buffer per measurement (default 8)");
  flags.Int("rounds", &o.rounds, "N", "measurements of each (default 3; --quick 1)");
  if (std::optional<int> done = ParseBenchFlags(flags, "bandwidth_bench", argc, argv)) {
    return *done;
  }
  if (o.common.quick) {
    if (!flags.IsSet("buffer-mib")) o.buffer_mib = 256;
    if (!flags.IsSet("rounds")) o.rounds = 1;
  }
  if (o.buffer_mib < 64 || o.passes < 1 || o.rounds < 1) {
    Printf(stderr, "bandwidth_bench: --buffer-mib >= 64, --passes and --rounds positive\n");
    return 2;
  }
  if (Status st = Run(o); !st) {
    Printf(stderr, "bandwidth_bench: %s\n", st.error().message().c_str());
    return 1;
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse::bench

int main(int argc, char** argv) { return cellhouse::bench::Main(argc, argv); }
