// gguf_fuzz_seeds: writes the GGUF seeds of the parser fuzzer's corpus (tests/engine/fuzz_corpus)
// with the test models' generator: the smallest files of each architecture that load and run, so
// that mutations start from files that parse. Not a test; run by hand when the generator changes:
//
//   build/dev/bin/gguf_fuzz_seeds tests/engine/fuzz_corpus
#include <cstdio>
#include <string>

#include "tests/engine/gguf_test_models.h"

int main(int argc, char** argv) {
  using cellhouse::engine::TensorType;
  using cellhouse::engine::testing::GgufSpec;
  if (argc != 2) {
    static_cast<void>(std::fprintf(stderr, "usage: gguf_fuzz_seeds DIR\n"));
    return 2;
  }
  const std::string dir = argv[1];
  const struct {
    const char* name;
    GgufSpec spec;
  } seeds[] = {
      {"gguf_llama_q8_0.gguf",
       {.arch = "llama",
        .dim = 32,
        .hidden = 32,
        .layers = 1,
        .heads = 2,
        .kv_heads = 1,
        .vocab = 264,
        .context = 16,
        .matrices = TensorType::kQ8_0,
        .embedding = TensorType::kQ8_0}},
      {"gguf_qwen2_f16.gguf",
       {.arch = "qwen2",
        .dim = 16,
        .hidden = 24,
        .layers = 1,
        .heads = 2,
        .kv_heads = 1,
        .vocab = 262,
        .context = 16,
        .matrices = TensorType::kF16,
        .embedding = TensorType::kF16,
        .tied = false,
        .biases = true}},
      {"gguf_qwen3_q4_0.gguf",
       {.arch = "qwen3",
        .dim = 32,
        .hidden = 32,
        .layers = 1,
        .heads = 2,
        .kv_heads = 1,
        .head_dim = 16,
        .vocab = 262,
        .context = 16,
        .matrices = TensorType::kQ4_0,
        .embedding = TensorType::kQ4_0,
        .qk_norm = true}},
  };
  for (const auto& seed : seeds) {
    const std::string path = dir + "/" + seed.name;
    cellhouse::Status st = cellhouse::engine::testing::MakeGgufModel(seed.spec).WriteFile(path);
    if (!st) {
      static_cast<void>(std::fprintf(stderr, "%s\n", st.error().message().c_str()));
      return 1;
    }
  }
  return 0;
}
