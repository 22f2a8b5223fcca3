// Conversation: turn semantics (llama2.c's), multi-turn continuation, stop reasons, context
// accounting, determinism under sampling.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/conversation.h"
#include "engine/formats/generator.h"
#include "engine/forward.h"
#include "engine/run_state.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

using ::testing::HasSubstr;
using TurnOptions = Conversation::TurnOptions;
using StopReason = Conversation::StopReason;

class ConversationTest : public ::testing::Test {
 protected:
  void SetUp() override {
    files_ = testing::WriteModelFiles(dir_, testing::TinyConfig(), 5);
    Result<Model> model = Model::Open(files_.model);
    ASSERT_TRUE(model) << model.error().message();
    model_.emplace(std::move(*model));
    Result<Tokenizer> tok = Tokenizer::Open(files_.tokenizer, model_->config().vocab_size);
    ASSERT_TRUE(tok) << tok.error().message();
    tok_.emplace(std::move(*tok));
  }
  Conversation New(int32_t context) {
    Result<Conversation> c = Conversation::Create(*model_, *tok_, context);
    EXPECT_TRUE(c) << c.error().message();
    return std::move(*c);
  }
  struct Output {
    std::vector<int32_t> tokens;
    std::string text;
    Conversation::TurnStats stats;
  };
  Output Run(Conversation& c, std::string_view prompt, TurnOptions options) {
    Output out;
    Result<Conversation::TurnStats> stats =
        c.Turn(prompt, options, [&](int32_t token, std::string_view piece) {
          out.tokens.push_back(token);
          out.text += piece;
          return true;
        });
    EXPECT_TRUE(stats) << stats.error().message();
    if (stats) {
      out.stats = *stats;
    }
    return out;
  }

  cellhouse::testing::TempDir dir_;
  testing::ModelFiles files_;
  std::optional<Model> model_;
  std::optional<Tokenizer> tok_;
};

TEST_F(ConversationTest, FirstTurnIsBosPromptThenGreedyTokens) {
  Conversation c = New(64);
  Output out = Run(c, "Once upon a time", {.max_new_tokens = 10, .temperature = 0});
  std::vector<int32_t> prompt = *tok_->Encode("Once upon a time", {.add_bos = true});
  EXPECT_EQ(out.stats.prompt_tokens, static_cast<int32_t>(prompt.size()));
  EXPECT_EQ(out.stats.generated_tokens, 10);
  EXPECT_EQ(out.stats.stop, StopReason::kMaxTokens);
  ASSERT_EQ(out.tokens.size(), 10U);
  std::vector<int32_t> expected = prompt;
  expected.insert(expected.end(), out.tokens.begin(), out.tokens.end());
  EXPECT_EQ(c.tokens(), expected);
  // The last token is emitted but not yet processed.
  EXPECT_EQ(c.context_used(), static_cast<int32_t>(expected.size()) - 1);
  EXPECT_EQ(c.KvBytesInUse(), static_cast<uint64_t>(c.context_used()) *
                                  KvCacheBytesPerToken(model_->config(), model_->kv_precision()));
  EXPECT_GT(out.stats.prefill_ns, 0);
  EXPECT_GE(out.stats.time_to_first_token_ns, out.stats.prefill_ns);

  // Greedy decoding by hand over the same history gives the same tokens.
  RunState state = *RunState::Create(model_->config(), 64, model_->kv_precision());
  Kernels k = SelectKernels(MatVecKernel::kAuto);
  const float* logits = Forward(model_->weights(), k, state, prompt, 0);
  for (size_t i = 0; i < out.tokens.size(); ++i) {
    const int32_t next = ArgMax(std::span(logits, model_->config().vocab_size));
    EXPECT_EQ(next, out.tokens[i]) << "token " << i;
    logits = Forward(model_->weights(), k, state, std::span(&next, 1),
                     static_cast<int32_t>(prompt.size() + i));
  }
}

TEST_F(ConversationTest, SecondTurnContinuesTheHistory) {
  Conversation two_turns = New(128);
  Output first = Run(two_turns, "The dog", {.max_new_tokens = 5});
  Output second = Run(two_turns, " ran home", {.max_new_tokens = 7});
  std::vector<int32_t> continuation = *tok_->Encode(" ran home", {});
  EXPECT_EQ(second.stats.prompt_tokens, static_cast<int32_t>(continuation.size()));
  // The same history processed in one go must predict the same continuation.
  std::vector<int32_t> history(two_turns.tokens().begin(),
                               two_turns.tokens().end() - second.stats.generated_tokens);
  RunState state = *RunState::Create(model_->config(), 128, model_->kv_precision());
  Kernels k = SelectKernels(MatVecKernel::kAuto);
  const float* logits = Forward(model_->weights(), k, state, history, 0);
  EXPECT_EQ(ArgMax(std::span(logits, model_->config().vocab_size)), second.tokens.at(0));
  // No BOS in the middle of the history.
  EXPECT_EQ(std::count(two_turns.tokens().begin(), two_turns.tokens().end(), kBosToken), 1);
}

TEST_F(ConversationTest, StepsSemanticsStopAtTheContext) {
  // llama2.c with steps = context: the last position's token is sampled and printed but never
  // processed, so generation yields context - prompt + 1 tokens.
  Conversation c = New(20);
  Output out = Run(c, "hello", {.max_new_tokens = 1000});
  EXPECT_EQ(out.stats.stop, StopReason::kContextFull);
  EXPECT_EQ(out.stats.generated_tokens, 20 - out.stats.prompt_tokens + 1);
  EXPECT_EQ(c.context_used(), 20);
  // Nothing fits any more: an error, and nothing changes.
  const std::vector<int32_t> before = c.tokens();
  Result<Conversation::TurnStats> more =
      c.Turn("more", {}, [](int32_t, std::string_view) { return true; });
  ASSERT_FALSE(more);
  EXPECT_THAT(more.error().message(), HasSubstr("0 positions left"));
  EXPECT_EQ(c.tokens(), before);
}

TEST_F(ConversationTest, PromptTooLongIsRefusedWithoutChange) {
  Conversation c = New(8);
  Result<Conversation::TurnStats> r = c.Turn("a rather long prompt that needs many tokens", {},
                                             [](int32_t, std::string_view) { return true; });
  ASSERT_FALSE(r);
  EXPECT_TRUE(c.tokens().empty());
  // Far too long to even encode: refused from its length alone.
  Result<Conversation::TurnStats> huge =
      c.Turn(std::string(1 << 20, 'a'), {}, [](int32_t, std::string_view) { return true; });
  ASSERT_FALSE(huge);
  EXPECT_THAT(huge.error().message(), HasSubstr("bytes cannot fit"));
  EXPECT_EQ(c.context_used(), 0);
  // The conversation is still usable.
  EXPECT_EQ(Run(c, "hi", {.max_new_tokens = 2}).stats.generated_tokens, 2);
}

TEST_F(ConversationTest, CancelStopsAfterTheToken) {
  Conversation c = New(64);
  int calls = 0;
  Result<Conversation::TurnStats> r =
      c.Turn("x", {.max_new_tokens = 50}, [&](int32_t, std::string_view) { return ++calls < 3; });
  ASSERT_TRUE(r);
  EXPECT_EQ(r->stop, StopReason::kCancelled);
  EXPECT_EQ(r->generated_tokens, 3);
  EXPECT_EQ(calls, 3);
}

TEST_F(ConversationTest, ZeroMaxTokensOnlyPrefills) {
  Conversation c = New(64);
  Output out = Run(c, "abc", {.max_new_tokens = 0});
  EXPECT_EQ(out.stats.generated_tokens, 0);
  EXPECT_EQ(out.stats.stop, StopReason::kMaxTokens);
  EXPECT_EQ(c.context_used(), out.stats.prompt_tokens);
}

TEST_F(ConversationTest, SamplingIsDeterministicPerSeed) {
  const TurnOptions options{.max_new_tokens = 30, .temperature = 1.0F, .top_p = 0.9F, .seed = 42};
  Conversation a = New(64);
  Conversation b = New(64);
  Output out_a = Run(a, "Once", options);
  Output out_b = Run(b, "Once", options);
  EXPECT_EQ(out_a.tokens, out_b.tokens);
  Conversation c = New(64);
  TurnOptions other = options;
  other.seed = 43;
  EXPECT_NE(Run(c, "Once", other).tokens, out_a.tokens);
}

TEST_F(ConversationTest, BadOptionsAndShapesAreRefused) {
  Conversation c = New(16);
  auto ignore = [](int32_t, std::string_view) { return true; };
  EXPECT_FALSE(c.Turn("x", {.max_new_tokens = -1}, ignore));
  EXPECT_FALSE(c.Turn("x", {.temperature = -0.5F}, ignore));
  EXPECT_FALSE(c.Turn("x", {.temperature = __builtin_nanf("")}, ignore));
  EXPECT_TRUE(c.tokens().empty());
  EXPECT_FALSE(Conversation::Create(*model_, *tok_, 0));
  EXPECT_FALSE(Conversation::Create(*model_, *tok_, model_->config().seq_len + 1));
  Tokenizer other = *Tokenizer::Parse(*GenerateTokenizer(512, 1), 512, "other");
  EXPECT_THAT(Conversation::Create(*model_, other, 16).error().message(),
              HasSubstr("has 512 pieces"));
}

TEST_F(ConversationTest, EndOfTextStopsWithoutEmitting) {
  // A doctored model that always predicts BOS: the layers add nothing to the residual stream
  // (wo = w2 = 0), every embedding has a positive first component, and only BOS's classifier
  // row reads it.
  std::vector<std::byte> bytes = testing::ReadBytes(files_.model);
  const ModelConfig& c = model_->config();
  Result<CheckpointLayout> layout = ComputeLayout(c);
  ASSERT_TRUE(layout);
  auto* floats = reinterpret_cast<float*>(bytes.data() + kCheckpointHeaderBytes);
  auto section = [&](CheckpointLayout::Tensor t) {
    const CheckpointLayout::Section& s = layout->sections[t];
    return std::span<float>(floats + s.offset, s.count);
  };
  for (CheckpointLayout::Tensor t :
       {CheckpointLayout::kWo, CheckpointLayout::kW2, CheckpointLayout::kClassifier}) {
    std::fill(section(t).begin(), section(t).end(), 0.0F);
  }
  for (int32_t v = 0; v < c.vocab_size; ++v) {
    section(CheckpointLayout::kTokenEmbedding)[static_cast<size_t>(v) * c.dim] = 1;
  }
  section(CheckpointLayout::kClassifier)[static_cast<size_t>(kBosToken) * c.dim] = 1000.0F;
  testing::WriteBytes(dir_.File("bos.bin"), bytes);
  Model bos_model = *Model::Open(dir_.File("bos.bin"));
  Conversation chat = *Conversation::Create(bos_model, *tok_, 32);
  Output out = Run(chat, "hello", {.max_new_tokens = 10});
  EXPECT_EQ(out.stats.stop, StopReason::kEndOfText);
  EXPECT_EQ(out.stats.generated_tokens, 0);
  EXPECT_EQ(std::count(chat.tokens().begin(), chat.tokens().end(), kBosToken), 1);
}

}  // namespace
}  // namespace cellhouse::engine
