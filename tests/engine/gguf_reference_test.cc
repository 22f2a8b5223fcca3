// GGUF models against the reference runtime: for every line of ../shared/models/gguf/*.greedy.tsv
// (llama.cpp's llama-simple: the prompt with BOS, then N greedy tokens), our greedy continuation of
// the same prompt must agree with llama.cpp's for at least the first 32 of the 48 tokens; the test
// prints the agreement per file and prompt, and where a continuation parts from the reference, the
// logits of both choices. Skipped when ../shared is absent.
#include <algorithm>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <string_view>
#include <vector>

#include <gtest/gtest.h>

#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/greedy_agreement.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

constexpr int kRequiredAgreement = 32;

struct Line {
  std::string prompt;
  int tokens = 0;
  std::string text;
};

std::vector<Line> ReadTsv(const std::string& path) {
  std::vector<Line> lines;
  std::ifstream in(path);
  std::string row;
  while (std::getline(in, row)) {
    const size_t a = row.find('\t');
    const size_t b = a == std::string::npos ? a : row.find('\t', a + 1);
    if (b == std::string::npos) {
      continue;
    }
    lines.push_back({row.substr(0, a), std::stoi(row.substr(a + 1, b - a - 1)), row.substr(b + 1)});
  }
  return lines;
}

TEST(GgufReferenceTest, GreedyContinuationsAgreeWithLlamaCpp) {
  std::optional<std::string> dir = cellhouse::testing::SharedModelPath("gguf");
  if (!dir) {
    GTEST_SKIP() << "../shared/models/gguf absent: skipping the comparison with llama.cpp";
  }
  // Every *.greedy.tsv beside its .gguf, so that a reference added later is compared too.
  std::vector<std::string> names;
  for (const auto& entry : std::filesystem::directory_iterator(*dir)) {
    const std::string file = entry.path().filename().string();
    constexpr std::string_view kSuffix = ".greedy.tsv";
    if (file.size() > kSuffix.size() && file.ends_with(kSuffix)) {
      names.push_back(file.substr(0, file.size() - kSuffix.size()));
    }
  }
  std::sort(names.begin(), names.end());
  // The five the shared README lists, at least.
  for (const char* expected : {"llama-spm-Q8_0", "llama-spm-Q4_K_M", "llama-spm-Q4_0",
                               "qwen2-spm-F16", "qwen2-spm-Q8_0"}) {
    EXPECT_NE(std::find(names.begin(), names.end(), expected), names.end()) << expected;
  }
  std::printf("%-24s %-28s %s\n", "file", "prompt", "agreement");
  for (const std::string& name : names) {
    const std::string base = *dir + "/" + name;
    Result<Model> model = Model::Open(base + ".gguf");
    ASSERT_TRUE(model) << model.error().message();
    Result<Tokenizer> tok = TokenizerFromGguf(*model->gguf());
    ASSERT_TRUE(tok) << tok.error().message();
    const std::vector<Line> lines = ReadTsv(base + ".greedy.tsv");
    EXPECT_FALSE(lines.empty()) << base << ".greedy.tsv has no prompt";
    for (const Line& line : lines) {
      const testing::Agreement a =
          testing::GreedyAgreement(*model, *tok, line.prompt, line.tokens, line.text);
      EXPECT_TRUE(a.prompt_matches) << a.note;
      std::printf("%-24s %-28s %d/%d %s\n", name.c_str(), line.prompt.c_str(), a.agreed,
                  line.tokens, a.note.c_str());
      EXPECT_GE(a.agreed, std::min(kRequiredAgreement, line.tokens))
          << name << " '" << line.prompt << "': " << a.note;
    }
  }
  static_cast<void>(std::fflush(stdout));
}

}  // namespace
}  // namespace cellhouse::engine
