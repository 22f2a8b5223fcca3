// The engine's logits against the scalar double-precision reference, for several shapes and
// every decode kernel this CPU supports; batched prefill against token-by-token decoding.
//
// Tolerance: |engine - reference| <= 2e-5 * max(1, max |reference logit|). The engine computes
// in float (about 7 significant digits) with a different summation order in each kernel; the
// observed worst error is ~3e-7 of that scale, so the bound has two orders of magnitude of
// margin while any indexing mistake, which moves logits by O(1), still fails it.
#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "tests/engine/reference_model.h"
#include "worker/engine/checkpoint.h"
#include "worker/engine/forward.h"
#include "worker/engine/generator.h"
#include "worker/engine/kernels.h"
#include "worker/engine/run_state.h"

namespace cellhouse::engine {
namespace {

struct Shape {
  std::string name;
  ModelConfig config;
};

void PrintTo(const Shape& shape, std::ostream* os) { *os << shape.name; }

std::vector<Shape> Shapes() {
  return {
      {"MultiHeadShared",
       {.dim = 64,
        .hidden_dim = 172,
        .n_layers = 2,
        .n_heads = 4,
        .n_kv_heads = 4,
        .vocab_size = 300,
        .seq_len = 160,
        .shared_classifier = true}},
      {"GroupedQuerySeparate",
       {.dim = 96,
        .hidden_dim = 200,
        .n_layers = 3,
        .n_heads = 6,
        .n_kv_heads = 2,
        .vocab_size = 257,
        .seq_len = 160,
        .shared_classifier = false}},
      {"OddSizesMultiQuery",
       {.dim = 36,
        .hidden_dim = 37,
        .n_layers = 1,
        .n_heads = 3,
        .n_kv_heads = 1,
        .vocab_size = 19,
        .seq_len = 144,
        .shared_classifier = false}},
      {"OddSizesShared",
       {.dim = 20,
        .hidden_dim = 53,
        .n_layers = 2,
        .n_heads = 2,
        .n_kv_heads = 1,
        .vocab_size = 31,
        .seq_len = 144,
        .shared_classifier = true}},
  };
}

std::vector<MatVecKernel> SupportedKernels() {
  std::vector<MatVecKernel> kernels;
  for (MatVecKernel k : {MatVecKernel::kOpenBlas, MatVecKernel::kAvx2, MatVecKernel::kAvx512}) {
    if (MatVecKernelSupported(k)) {
      kernels.push_back(k);
    }
  }
  return kernels;
}

constexpr int32_t kTokens = kMaxBatch + 6;  // prefill runs two chunks

std::vector<int32_t> TokenSequence(int32_t vocab) {
  std::vector<int32_t> tokens(kTokens);
  for (int32_t i = 0; i < kTokens; ++i) {
    tokens[i] = (i * 7 + 3) % vocab;
  }
  return tokens;
}

void ExpectClose(const float* actual, const std::vector<float>& expected, const std::string& what) {
  float scale = 1.0F;
  for (float v : expected) {
    scale = std::max(scale, std::fabs(v));
  }
  float worst = 0;
  size_t worst_at = 0;
  for (size_t i = 0; i < expected.size(); ++i) {
    ASSERT_TRUE(std::isfinite(actual[i])) << what << " logit " << i;
    float diff = std::fabs(actual[i] - expected[i]);
    if (diff > worst) {
      worst = diff;
      worst_at = i;
    }
  }
  EXPECT_LE(worst, 2e-5F * scale) << what << ": logit " << worst_at << " is " << actual[worst_at]
                                  << ", reference " << expected[worst_at];
}

class ForwardTest : public ::testing::TestWithParam<std::tuple<Shape, MatVecKernel>> {
 protected:
  void SetUp() override {
    config_ = std::get<0>(GetParam()).config;
    kernels_ = SelectKernels(std::get<1>(GetParam()));
    ASSERT_EQ(kernels_.kind, std::get<1>(GetParam()));
    Result<std::vector<std::byte>> bytes = GenerateModel(config_, 11);
    ASSERT_TRUE(bytes) << bytes.error().message();
    bytes_ = std::move(*bytes);
    Result<ModelWeights> w = ParseCheckpoint(bytes_, "generated");
    ASSERT_TRUE(w) << w.error().message();
    weights_ = *w;
  }
  RunState NewState() {
    Result<RunState> s = RunState::Create(config_, config_.seq_len);
    EXPECT_TRUE(s) << s.error().message();
    return std::move(*s);
  }

  ModelConfig config_;
  Kernels kernels_;
  std::vector<std::byte> bytes_;
  ModelWeights weights_;
};

TEST_P(ForwardTest, TokenByTokenMatchesReference) {
  testing::ReferenceModel ref(bytes_);
  RunState state = NewState();
  std::vector<int32_t> tokens = TokenSequence(config_.vocab_size);
  for (int32_t pos = 0; pos < kTokens; ++pos) {
    const float* logits = Forward(weights_, kernels_, state, std::span(&tokens[pos], 1), pos);
    ExpectClose(logits, ref.Step(tokens[pos], pos), "position " + std::to_string(pos));
    if (HasFailure()) {
      return;
    }
  }
}

TEST_P(ForwardTest, BatchedPrefillMatchesTokenByToken) {
  std::vector<int32_t> tokens = TokenSequence(config_.vocab_size);
  RunState one_by_one = NewState();
  std::vector<float> expected;
  for (int32_t pos = 0; pos < kTokens; ++pos) {
    const float* logits = Forward(weights_, kernels_, one_by_one, std::span(&tokens[pos], 1), pos);
    expected.assign(logits, logits + config_.vocab_size);
  }
  RunState batched = NewState();
  ExpectClose(Forward(weights_, kernels_, batched, tokens, 0), expected, "prefill of all tokens");
  // Prefill in two uneven calls, the second starting mid-context.
  RunState split = NewState();
  static_cast<void>(Forward(weights_, kernels_, split, std::span(tokens).first(5), 0));
  ExpectClose(Forward(weights_, kernels_, split, std::span(tokens).subspan(5), 5), expected,
              "prefill of 5 + the rest");
  // The cache the prefill wrote must serve later positions as decoding's does.
  const int32_t next = 1;
  const float* after_logits = Forward(weights_, kernels_, one_by_one, std::span(&next, 1), kTokens);
  std::vector<float> after(after_logits, after_logits + config_.vocab_size);
  ExpectClose(Forward(weights_, kernels_, batched, std::span(&next, 1), kTokens), after,
              "decode after prefill");
}

std::string Name(const ::testing::TestParamInfo<ForwardTest::ParamType>& info) {
  return std::get<0>(info.param).name + "_" +
         std::string(MatVecKernelName(std::get<1>(info.param)));
}

INSTANTIATE_TEST_SUITE_P(Shapes, ForwardTest,
                         ::testing::Combine(::testing::ValuesIn(Shapes()),
                                            ::testing::ValuesIn(SupportedKernels())),
                         Name);

TEST(KernelsTest, AgreeWithScalarLoops) {
  for (MatVecKernel kind : SupportedKernels()) {
    Kernels k = SelectKernels(kind);
    for (int32_t cols : {1, 7, 16, 17, 33, 64, 100}) {
      const int32_t rows = 7;
      std::vector<float> w(static_cast<size_t>(rows) * cols);
      std::vector<float> x(cols);
      std::vector<float> y(rows);
      for (size_t i = 0; i < w.size(); ++i) {
        w[i] = static_cast<float>((i * 37) % 11) - 5.0F;
      }
      for (int32_t i = 0; i < cols; ++i) {
        x[i] = static_cast<float>(i % 5) * 0.5F - 1.0F;
      }
      const std::string what =
          std::string(MatVecKernelName(kind)) + " cols " + std::to_string(cols);
      k.matvec(w.data(), x.data(), y.data(), rows, cols, x.data());
      // Key rows of `cols` floats, `cols + 3` apart, as key rows are kv_dim apart in the cache.
      const size_t stride = static_cast<size_t>(cols) + 3;
      std::vector<float> keys(rows * stride);
      for (size_t i = 0; i < keys.size(); ++i) {
        keys[i] = static_cast<float>((i * 13) % 7) - 3.0F;
      }
      std::vector<float> scores(rows);
      k.scores(x.data(), keys.data(), stride, rows, cols, 2.0F, scores.data());
      for (int32_t r = 0; r < rows; ++r) {
        float expect = 0;
        for (int32_t c = 0; c < cols; ++c) {
          expect += w[static_cast<size_t>(r) * cols + c] * x[c];
        }
        EXPECT_FLOAT_EQ(y[r], expect) << what;
      }
      for (int32_t t = 0; t < rows; ++t) {
        float expect = 0;
        for (int32_t c = 0; c < cols; ++c) {
          expect += keys[t * stride + c] * x[c];
        }
        EXPECT_FLOAT_EQ(scores[t], expect / 2.0F) << what << " score " << t;
      }
      // Weighted sum of `rows` rows of `cols` floats.
      std::vector<float> weights(rows);
      for (int32_t t = 0; t < rows; ++t) {
        weights[t] = 0.1F * static_cast<float>(t + 1);
      }
      std::vector<float> sum(cols, -1.0F);
      k.weighted_sum(weights.data(), w.data(), cols, rows, cols, sum.data());
      for (int32_t c = 0; c < cols; ++c) {
        float expect = 0;
        for (int32_t t = 0; t < rows; ++t) {
          expect += weights[t] * w[static_cast<size_t>(t) * cols + c];
        }
        EXPECT_NEAR(sum[c], expect, 1e-5F * (1.0F + std::fabs(expect))) << what << " sum " << c;
      }
    }
  }
}

}  // namespace
}  // namespace cellhouse::engine
