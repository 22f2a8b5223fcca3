// The forward pass over int8 checkpoints: every int8 kernel variant gives the portable one's
// logits bit for bit, batched prefill gives token-by-token decoding's bit for bit, and the
// logits stay close to the fp32 model's. The closeness figures are printed (they depend on the
// model, so the assertions are loose bounds, far from what was measured):
//
//   relative error of a step's logits = ||q8 - fp32||₂ / ||fp32||₂
//   greedy agreement = steps whose q8 argmax is the fp32 argmax, feeding both the same tokens
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/formats/checkpoint.h"
#include "engine/formats/generator.h"
#include "engine/formats/quantize.h"
#include "engine/formats/quantized_checkpoint.h"
#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/run_state.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

std::vector<Q8Kernel> SupportedQ8Kernels() {
  std::vector<Q8Kernel> kernels;
  for (Q8Kernel k : {Q8Kernel::kPortable, Q8Kernel::kAvx2, Q8Kernel::kAvx512Vnni}) {
    if (Q8KernelSupported(k)) {
      kernels.push_back(k);
    }
  }
  return kernels;
}

constexpr int32_t kTokens = kMaxBatch + 6;  // prefill runs two chunks

// An fp32 model and its int8 form, both in memory.
struct ModelPair {
  ModelPair(const ModelConfig& config, uint64_t seed, int32_t group_size) {
    fp32_bytes = *GenerateModel(config, seed);
    fp32 = *ParseCheckpoint(fp32_bytes, "fp32");
    Result<std::vector<std::byte>> q = QuantizeModel(fp32, {.group_size = group_size});
    EXPECT_TRUE(q) << q.error().message();
    q8_bytes = std::move(*q);
    Result<QuantizedWeights> w = ParseQuantizedCheckpoint(q8_bytes, "q8");
    EXPECT_TRUE(w) << w.error().message();
    q8 = *w;
  }
  std::vector<std::byte> fp32_bytes;
  std::vector<std::byte> q8_bytes;
  ModelWeights fp32;
  QuantizedWeights q8;
};

// An int8 model's state keeps an fp16 KV cache, as Conversation gives it (Model::kv_precision).
RunState NewState(const ModelConfig& config, KvPrecision precision = KvPrecision::kF16) {
  Result<RunState> s = RunState::Create(config, config.seq_len, precision);
  EXPECT_TRUE(s) << s.error().message();
  return std::move(*s);
}

double RelativeError(const float* q8, const float* fp32, int32_t n) {
  double diff = 0;
  double norm = 0;
  for (int32_t i = 0; i < n; ++i) {
    diff += (static_cast<double>(q8[i]) - fp32[i]) * (static_cast<double>(q8[i]) - fp32[i]);
    norm += static_cast<double>(fp32[i]) * fp32[i];
  }
  return std::sqrt(diff / std::max(norm, 1e-30));
}

int32_t ArgMax(const float* v, int32_t n) {
  return static_cast<int32_t>(std::max_element(v, v + n) - v);
}

void ExpectSameBits(const float* actual, const std::vector<float>& expected,
                    const std::string& what) {
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(actual[i]), std::bit_cast<uint32_t>(expected[i]))
        << what << ": logit " << i << " is " << actual[i] << ", expected " << expected[i];
  }
}

class QuantizedForwardTest
    : public ::testing::TestWithParam<std::tuple<testing::NamedShape, int32_t>> {};

TEST_P(QuantizedForwardTest, VariantsAndPrefillAgreeBitForBitAndStayCloseToFp32) {
  const ModelConfig config = std::get<0>(GetParam()).config;
  const int32_t group_size = std::get<1>(GetParam());
  ModelPair models(config, 11, group_size);
  const std::vector<int32_t> tokens = testing::TokenSequence(config.vocab_size, kTokens);
  const int32_t vocab = config.vocab_size;

  // The portable int8 kernels, token by token, are the reference of every other run. The fp32
  // attention kernels stay the same throughout (their variants sum in different orders).
  const Kernels portable = SelectKernels(MatVecKernel::kAuto, Q8Kernel::kPortable);
  RunState ref_state = NewState(config);
  std::vector<std::vector<float>> expected;
  for (int32_t pos = 0; pos < kTokens; ++pos) {
    const float* logits = Forward(models.q8, portable, ref_state, std::span(&tokens[pos], 1), pos);
    expected.emplace_back(logits, logits + vocab);
  }

  for (Q8Kernel variant : SupportedQ8Kernels()) {
    const Kernels k = SelectKernels(MatVecKernel::kAuto, variant);
    const std::string name(Q8KernelName(variant));
    RunState state = NewState(config);
    for (int32_t pos = 0; pos < kTokens; ++pos) {
      ExpectSameBits(Forward(models.q8, k, state, std::span(&tokens[pos], 1), pos), expected[pos],
                     name + " position " + std::to_string(pos));
      if (HasFatalFailure()) {
        return;
      }
    }
    // The whole sequence in one call (two prefill chunks), then in two uneven calls.
    RunState batched = NewState(config);
    ExpectSameBits(Forward(models.q8, k, batched, tokens, 0), expected.back(),
                   name + " prefill of all tokens");
    RunState split = NewState(config);
    static_cast<void>(Forward(models.q8, k, split, std::span(tokens).first(5), 0));
    ExpectSameBits(Forward(models.q8, k, split, std::span(tokens).subspan(5), 5), expected.back(),
                   name + " prefill of 5 + the rest");
  }

  // Close to the fp32 model fed the same tokens.
  const Kernels fp32_kernels = SelectKernels(MatVecKernel::kAuto);
  RunState fp32_state = NewState(config, KvPrecision::kF32);
  double worst = 0;
  double total = 0;
  int32_t agree = 0;
  for (int32_t pos = 0; pos < kTokens; ++pos) {
    const float* logits =
        Forward(models.fp32, fp32_kernels, fp32_state, std::span(&tokens[pos], 1), pos);
    const double err = RelativeError(expected[pos].data(), logits, vocab);
    worst = std::max(worst, err);
    total += err;
    agree += ArgMax(expected[pos].data(), vocab) == ArgMax(logits, vocab) ? 1 : 0;
  }
  std::printf(
      "[ figures  ] %s, groups of %d: logits relative error mean %.4f, max %.4f; "
      "argmax agreement %d/%d\n",
      std::get<0>(GetParam()).name.c_str(), group_size, total / kTokens, worst, agree, kTokens);
  EXPECT_LT(worst, 0.1);
  EXPECT_GE(agree, kTokens * 8 / 10);
}

std::string Name(const ::testing::TestParamInfo<QuantizedForwardTest::ParamType>& info) {
  return std::get<0>(info.param).name + "_groups" + std::to_string(std::get<1>(info.param));
}

INSTANTIATE_TEST_SUITE_P(Shapes, QuantizedForwardTest,
                         ::testing::Combine(::testing::ValuesIn(testing::ForwardShapes()),
                                            ::testing::Values(32, 64)),
                         Name);

// A model of stories15M's shape, a few hundred steps: greedy decoding with fp32 picks the tokens;
// the int8 model, fed the same tokens, is compared step by step. Then both decode freely and the
// common prefix of their texts is reported.
TEST(QuantizedAccuracyTest, Stories15mShapeOverThreeHundredSteps) {
  constexpr int32_t kSteps = 300;
  ModelConfig config = *PresetConfig("15m");
  config.seq_len = kSteps + 1;
  const Kernels k = SelectKernels(MatVecKernel::kAuto);
  for (int32_t group_size : {32, 64}) {
    ModelPair models(config, 7, group_size);
    const int32_t vocab = config.vocab_size;
    RunState fp32_state = NewState(config, KvPrecision::kF32);
    RunState q8_state = NewState(config);
    int32_t token = kBosToken;
    double total = 0;
    double worst = 0;
    int32_t agree = 0;
    std::vector<int32_t> fp32_text;
    for (int32_t pos = 0; pos < kSteps; ++pos) {
      const float* f = Forward(models.fp32, k, fp32_state, std::span(&token, 1), pos);
      const float* q = Forward(models.q8, k, q8_state, std::span(&token, 1), pos);
      const double err = RelativeError(q, f, vocab);
      total += err;
      worst = std::max(worst, err);
      const int32_t next = ArgMax(f, vocab);
      agree += ArgMax(q, vocab) == next ? 1 : 0;
      fp32_text.push_back(next);
      token = next;
    }
    // Free-running int8 decoding from BOS: how long it follows fp32's text.
    RunState free_state = NewState(config);
    token = kBosToken;
    int32_t prefix = 0;
    for (int32_t pos = 0; pos < kSteps; ++pos) {
      token = ArgMax(Forward(models.q8, k, free_state, std::span(&token, 1), pos), vocab);
      if (token != fp32_text[pos]) {
        break;
      }
      ++prefix;
    }
    std::printf(
        "[ figures  ] 15m shape, groups of %d, %d steps: logits relative error mean "
        "%.4f, max %.4f; greedy agreement (same tokens fed) %d/%d = %.1f%%; free-running "
        "int8 text follows fp32 for %d tokens\n",
        group_size, kSteps, total / kSteps, worst, agree, kSteps, 100.0 * agree / kSteps, prefix);
    EXPECT_LT(total / kSteps, 0.05) << "groups of " << group_size;
    EXPECT_LT(worst, 0.1) << "groups of " << group_size;
    EXPECT_GE(agree, kSteps * 85 / 100) << "groups of " << group_size;
  }
}

}  // namespace
}  // namespace cellhouse::engine
