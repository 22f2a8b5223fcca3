// Cross-implementation golden output: ../shared/models/ref-gqa-512.bin with tok512.bin at
// temperature 0 must reproduce exactly each text that llama2.c's `run` produced, as listed in
// ../shared/models/README.md (parsed here, so the README stays the one source of the texts).
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/text.h"
#include "engine/conversation.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

struct Golden {
  std::string prompt;
  int32_t steps;
  std::string text;
};

std::vector<Golden> ReadGoldens(const std::string& readme_path) {
  std::vector<std::byte> bytes = testing::ReadBytes(readme_path);
  std::string readme(reinterpret_cast<const char*>(bytes.data()), bytes.size());
  static const std::regex kBlock(
      "### prompt `([^`]*)`, steps (\\d+)\\n\\n```text\\n([^\\n]*)\\n```");
  std::vector<Golden> goldens;
  for (auto it = std::sregex_iterator(readme.begin(), readme.end(), kBlock);
       it != std::sregex_iterator(); ++it) {
    goldens.push_back({(*it)[1], std::stoi((*it)[2]), (*it)[3]});
  }
  return goldens;
}

// What llama2.c's run prints for `steps` positions: the prompt's pieces, then the generated
// ones, each through safe_printf.
std::string RunLikeLlama2c(const Model& model, const Tokenizer& tokenizer, const Golden& g,
                           MatVecKernel kernel) {
  Result<std::vector<int32_t>> prompt = tokenizer.Encode(g.prompt, {.add_bos = true});
  EXPECT_TRUE(prompt);
  std::string out;
  for (size_t i = 1; i < prompt->size(); ++i) {
    out += PrintablePiece(tokenizer.Decode((*prompt)[i - 1], (*prompt)[i]));
  }
  Result<Conversation> chat = Conversation::Create(model, tokenizer, g.steps, {.matvec = kernel});
  EXPECT_TRUE(chat) << chat.error().message();
  Result<Conversation::TurnStats> stats =
      chat->Turn(g.prompt, {.max_new_tokens = g.steps, .temperature = 0.0F},
                 [&](int32_t, std::string_view piece) {
                   out += PrintablePiece(piece);
                   return true;
                 });
  EXPECT_TRUE(stats) << stats.error().message();
  return out;
}

TEST(GoldenTest, ReproducesLlama2cReferenceTexts) {
  std::optional<std::string> model_path = cellhouse::testing::SharedModelPath("ref-gqa-512.bin");
  std::optional<std::string> tok_path = cellhouse::testing::SharedModelPath("tok512.bin");
  std::optional<std::string> readme = cellhouse::testing::SharedModelPath("README.md");
  if (!model_path || !tok_path || !readme) {
    GTEST_SKIP() << "../shared/models/{ref-gqa-512.bin,tok512.bin,README.md} absent: skipping";
  }
  Result<Model> model = Model::Open(*model_path);
  ASSERT_TRUE(model) << model.error().message();
  Result<Tokenizer> tok = Tokenizer::Open(*tok_path, model->config().vocab_size);
  ASSERT_TRUE(tok) << tok.error().message();
  std::vector<Golden> goldens = ReadGoldens(*readme);
  ASSERT_EQ(goldens.size(), 6U) << "expected six texts in " << *readme;
  for (MatVecKernel kernel :
       {MatVecKernel::kOpenBlas, MatVecKernel::kAvx2, MatVecKernel::kAvx512}) {
    if (!MatVecKernelSupported(kernel)) {
      continue;
    }
    for (const Golden& g : goldens) {
      EXPECT_EQ(RunLikeLlama2c(*model, *tok, g, kernel), g.text)
          << "prompt '" << g.prompt << "', steps " << g.steps << ", kernel "
          << MatVecKernelName(kernel);
    }
  }
}

}  // namespace
}  // namespace cellhouse::engine
