// llama.cpp's llama-batched-bench, the measuring stick for batched decode: run on a GGUF file with
// a prompt length, a decode length, the numbers of parallel sequences and threads, it reports
// each count's decode tokens/s (its speed_tg, the tokens of every sequence over the time once all
// are decoding). Never a dependency: absent, every figure is 0.
//
//   std::vector<double> tg = LlamaBatchedDecode({.llama_cpp = dir, .model = gguf, .prompt = 5,
//                                                .tokens = 64, .counts = {1, 16}, .threads = 2},
//                                               work_dir);
#ifndef CELLHOUSE_BENCH_SESSIONS_LLAMA_BATCHED_H_
#define CELLHOUSE_BENCH_SESSIONS_LLAMA_BATCHED_H_

#include <string>
#include <vector>

namespace cellhouse::bench {

struct LlamaBatchedRun {
  std::string llama_cpp;    // the directory holding llama-batched-bench
  std::string model;        // the GGUF file
  int prompt = 0;           // prompt tokens per sequence (-npp)
  int tokens = 0;           // decode tokens per sequence (-ntg)
  std::vector<int> counts;  // parallel sequences (-npl), ascending
  int threads = 1;          // -t
};

// Decode tokens/s for each of run.counts, in order (0 where llama.cpp is absent or failed);
// writes its JSON lines under `work_dir`.
std::vector<double> LlamaBatchedDecode(const LlamaBatchedRun& run, const std::string& work_dir);

}  // namespace cellhouse::bench

#endif  // CELLHOUSE_BENCH_SESSIONS_LLAMA_BATCHED_H_
