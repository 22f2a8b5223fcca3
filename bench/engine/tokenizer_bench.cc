// tokenizer_bench: encoding speed of the model-file tokenizers, in MB of text per second, on a
// few MB of varied text made here (English, accents, CJK, Cyrillic, Greek, emoji, code, numbers,
// whitespace runs). The issue's target: at least 5 MB/s on the Llama 3 vocabulary.
//
//   tokenizer_bench [--model ../shared/models/gguf/llama3-vocab-Q8_0.gguf] [--mb 8] [--repeats 3]
//
// Prints one line per vocabulary: the best of the repeats in wall-clock time and in the thread's
// CPU time (CLOCK_THREAD_CPUTIME_ID: on a shared, oversubscribed machine the wall clock also
// counts the time other processes held the core), and bytes per token.
#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

#include "base/clock.h"
#include "base/flags.h"
#include "base/mapping.h"
#include "base/print.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse {
namespace {

std::string MakeText(size_t bytes) {
  static const char* const kWords[] = {
      "the",
      "quick",
      "brown",
      "fox",
      "jumps",
      "over",
      "lazy",
      "dog.",
      "Hello,",
      "world!",
      "don't",
      "I'll",
      "we've",
      "12345",
      "3.14159",
      "-42",
      "caf\xC3\xA9",
      "na\xC3\xAFve",
      "\xE4\xBD\xA0\xE5\xA5\xBD",
      "\xE4\xB8\x96\xE7\x95\x8C",
      "\xD0\x9F\xD1\x80\xD0\xB8\xD0\xB2\xD0\xB5\xD1\x82",
      "\xCE\xBA\xCE\xB1\xCE\xBB\xCE\xB7\xCE\xBC\xCE\xAD\xCF\x81\xCE\xB1",
      "\xF0\x9F\x98\x80",
      "def",
      "f(x):",
      "return",
      "x**2",
      "#",
      "{\"a\":",
      "1}",
      "HTTP/1.1",
      "200",
      "OK",
      "\n",
      "\t",
      "    ",
      "\n\n",
      "mixed123abc",
      "ABC_def-ghi.jkl",
      "2024-12-04T20:52:00Z"};
  constexpr size_t kCount = sizeof(kWords) / sizeof(kWords[0]);
  std::string text;
  text.reserve(bytes + 64);
  uint64_t state = 0x9E3779B97F4A7C15ULL;
  while (text.size() < bytes) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    text += kWords[state % kCount];
    text += ' ';
  }
  return text;
}

int Main(int argc, char** argv) {
  std::vector<std::string> models;
  int64_t mb = 8, repeats = 3;
  FlagSet flags("tokenizer_bench [--model FILE.gguf]... [--mb N] [--repeats N]",
                "Encoding speed of GGUF vocabularies on generated varied text.");
  flags.StringList("model", &models, "FILE", "GGUF file (default: the three in ../shared)");
  flags.Int("mb", &mb, "N", "megabytes of text");
  flags.Int("repeats", &repeats, "N", "encodings per vocabulary; the best is reported");
  auto rest = flags.Parse(argc - 1, argv + 1);
  if (!rest || !rest->empty() || mb < 1 || repeats < 1) {
    Printf(stderr, "%s", flags.Usage().c_str());
    return 2;
  }
  if (flags.help_requested()) return 0;
  if (models.empty()) {
    for (const char* name : {"llama3-vocab-Q8_0", "qwen-vocab-Q8_0", "llama-spm-Q8_0"}) {
      models.push_back(std::string(CELLHOUSE_SHARED_DIR "/models/gguf/") + name + ".gguf");
    }
  }
  const std::string text = MakeText(static_cast<size_t>(mb) << 20);
  for (const std::string& path : models) {
    Result<Mapping> mapping = Mapping::MapFile(path.c_str());
    if (!mapping) {
      Printf(stderr, "tokenizer_bench: %s: skipped\n", mapping.error().message().c_str());
      continue;
    }
    Result<engine::GgufFile> gguf = engine::GgufFile::Parse(mapping->bytes(), path);
    Result<engine::Tokenizer> tok =
        gguf ? engine::TokenizerFromGguf(*gguf) : Result<engine::Tokenizer>(gguf.error());
    if (!tok) {
      Printf(stderr, "tokenizer_bench: %s\n", tok.error().message().c_str());
      return 1;
    }
    double best = 1e30;
    double best_cpu = 1e30;
    size_t tokens = 0;
    for (int64_t r = 0; r < repeats; ++r) {
      const auto start = std::chrono::steady_clock::now();
      const double cpu_start = ThreadCpuSeconds();
      Result<std::vector<int32_t>> ids = tok->Encode(text, {});
      const double cpu = ThreadCpuSeconds() - cpu_start;
      const double s =
          std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
      if (!ids) return 1;
      tokens = ids->size();
      best = std::min(best, s);
      best_cpu = std::min(best_cpu, cpu);
    }
    const double mbytes = static_cast<double>(text.size()) / 1e6;
    Printf(stdout,
           "tokenizer %-13s %-10s encode %6.2f MB/s wall, %6.2f MB/s per CPU-second "
           "(%.0f tokens/CPU-s, %.2f bytes/token, %.1f MB)\n",
           std::string(engine::TokenizerKindName(tok->kind())).c_str(),
           tok->pre().empty() ? "-" : std::string(tok->pre()).c_str(), mbytes / best,
           mbytes / best_cpu, static_cast<double>(tokens) / best_cpu,
           static_cast<double>(text.size()) / static_cast<double>(tokens), mbytes);
  }
  return 0;
}

}  // namespace
}  // namespace cellhouse

int main(int argc, char** argv) { return cellhouse::Main(argc, argv); }
