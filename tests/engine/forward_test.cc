// The engine's logits against the scalar double-precision reference, for several shapes and
// every decode kernel this CPU supports; batched prefill against token-by-token decoding.
//
// Tolerance: |engine - reference| <= 2e-5 * max(1, max |reference logit|). The engine computes
// in float (about 7 significant digits) with a different summation order in each kernel; the
// observed worst error is ~3e-7 of that scale, so the bound has two orders of magnitude of
// margin while any indexing mistake, which moves logits by O(1), still fails it.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/mapping.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/generator.h"
#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/run_state.h"
#include "tests/engine/reference_model.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

using testing::SupportedKernels;

constexpr int32_t kTokens = kMaxBatch + 6;  // prefill runs two chunks

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

class ForwardTest : public ::testing::TestWithParam<std::tuple<testing::NamedShape, MatVecKernel>> {
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
    Result<RunState> s = RunState::Create(config_, config_.seq_len, KvPrecision::kF32);
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
  std::vector<int32_t> tokens = testing::TokenSequence(config_.vocab_size, kTokens);
  for (int32_t pos = 0; pos < kTokens; ++pos) {
    const float* logits = Forward(weights_, kernels_, state, std::span(&tokens[pos], 1), pos);
    ExpectClose(logits, ref.Step(tokens[pos], pos), "position " + std::to_string(pos));
    if (HasFailure()) {
      return;
    }
  }
}

TEST_P(ForwardTest, BatchedPrefillMatchesTokenByToken) {
  std::vector<int32_t> tokens = testing::TokenSequence(config_.vocab_size, kTokens);
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
                         ::testing::Combine(::testing::ValuesIn(testing::ForwardShapes()),
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
      k.matvec(w.data(), x.data(), y.data(), rows, cols);
      for (int32_t r = 0; r < rows; ++r) {
        float expect = 0;
        for (int32_t c = 0; c < cols; ++c) {
          expect += w[static_cast<size_t>(r) * cols + c] * x[c];
        }
        EXPECT_FLOAT_EQ(y[r], expect) << what;
      }
    }
  }
}

// The scores and weighted sum of `count` cache rows, every head at once, against plain loops
// head by head.
void CheckAttention(const Kernels& k, const std::string& what, int32_t size, int32_t heads,
                    int32_t kv_mul, int32_t count) {
  // Cache rows of kv_dim floats plus 3, as rows of the cache are kv_dim apart and a kernel must
  // not assume they are packed.
  const int32_t kv_heads = heads / kv_mul;
  const size_t stride = static_cast<size_t>(kv_heads) * size + 3;
  const size_t scores_stride = static_cast<size_t>(count) + 2;
  const AttentionShape shape{.heads = heads,
                             .kv_mul = kv_mul,
                             .head_size = size,
                             .stride = stride,
                             .scores_stride = scores_stride};
  std::vector<float> q(static_cast<size_t>(heads) * size);
  std::vector<float> keys(count * stride);
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = static_cast<float>(i % 5) * 0.5F - 1.0F;
  }
  for (size_t i = 0; i < keys.size(); ++i) {
    keys[i] = static_cast<float>((i * 13) % 7) - 3.0F;
  }
  std::vector<float> scores(heads * scores_stride, -7.0F);
  k.scores(q.data(), keys.data(), shape, count, 2.0F, scores.data());
  for (int32_t h = 0; h < heads; ++h) {
    const float* key = keys.data() + static_cast<size_t>(h / kv_mul) * size;
    for (int32_t t = 0; t < count; ++t) {
      float expect = 0;
      for (int32_t c = 0; c < size; ++c) {
        expect += key[t * stride + c] * q[static_cast<size_t>(h) * size + c];
      }
      EXPECT_FLOAT_EQ(scores[h * scores_stride + t], expect / 2.0F)
          << what << " head " << h << " score " << t;
    }
  }
  // The weighted sum of the same rows as values, with weights of every head.
  for (int32_t h = 0; h < heads; ++h) {
    for (int32_t t = 0; t < count; ++t) {
      scores[h * scores_stride + t] = 0.1F * static_cast<float>(t + 1 + h);
    }
  }
  std::vector<float> out(static_cast<size_t>(heads) * size, -1.0F);
  k.weighted_sum(scores.data(), keys.data(), shape, count, out.data());
  for (int32_t h = 0; h < heads; ++h) {
    const float* value = keys.data() + static_cast<size_t>(h / kv_mul) * size;
    for (int32_t c = 0; c < size; ++c) {
      float expect = 0;
      for (int32_t t = 0; t < count; ++t) {
        expect += scores[h * scores_stride + t] * value[t * stride + c];
      }
      EXPECT_NEAR(out[static_cast<size_t>(h) * size + c], expect,
                  1e-5F * (1.0F + std::fabs(expect)))
          << what << " head " << h << " sum " << c;
    }
  }
}

// Heads sharing kv heads (kv_mul > 1), head sizes off the vector width, counts on and off a
// multiple of four (the kernels take four positions' worth of heads at a time below that).
TEST(KernelsTest, AttentionAgreesWithLoopsHeadByHead) {
  for (MatVecKernel kind : SupportedKernels()) {
    Kernels k = SelectKernels(kind);
    for (int32_t size : {1, 7, 16, 17, 33, 64, 100}) {
      for (auto [heads, kv_mul] :
           {std::pair{1, 1}, std::pair{3, 1}, std::pair{6, 3}, std::pair{5, 5}}) {
        for (int32_t count : {1, 4, 7, 9}) {
          const std::string what = std::string(MatVecKernelName(kind)) + " size " +
                                   std::to_string(size) + " heads " + std::to_string(heads) + "/" +
                                   std::to_string(kv_mul) + " count " + std::to_string(count);
          CheckAttention(k, what, size, heads, kv_mul, count);
        }
      }
    }
  }
}

// A prompt faults in, before writing them, its positions' rows of each layer's cache and on to
// the end of the last one's kKvPadding block (PositionsToPopulate), and nothing past them.
TEST(ForwardCacheTest, APromptFaultsInItsBlocksAndNoMore) {
  ModelConfig c = testing::TinyConfig();
  c.dim = 256;  // rows of a KiB, so a block of 32 positions is 8 pages
  c.n_heads = 4;
  c.n_kv_heads = 4;
  c.seq_len = 1024;
  Result<std::vector<std::byte>> bytes = GenerateModel(c, 11);
  ASSERT_TRUE(bytes) << bytes.error().message();
  Result<ModelWeights> w = ParseCheckpoint(*bytes, "generated");
  ASSERT_TRUE(w) << w.error().message();
  Result<RunState> s = RunState::Create(c, c.seq_len, KvPrecision::kF32);
  ASSERT_TRUE(s) << s.error().message();
  const std::vector<int32_t> prompt(40, 7);
  ASSERT_NE(Forward(*w, SelectKernels(MatVecKernel::kAuto), *s, prompt, 0), nullptr);
  const size_t row = static_cast<size_t>(c.kv_dim()) * sizeof(float);
  const size_t populated = 64 * row;  // positions 0-63: two blocks
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  for (const float* cache : {s->key_cache, s->value_cache}) {
    for (size_t l = 0; l < static_cast<size_t>(c.n_layers); ++l) {
      const float* layer = cache + l * static_cast<size_t>(c.seq_len) * c.kv_dim();
      EXPECT_EQ(*ResidentBytesIn(layer, populated), populated) << "layer " << l;
      // The layer's stretch may straddle one more page (the caches are aligned to a cache line).
      EXPECT_LE(*ResidentBytesIn(layer, static_cast<size_t>(c.seq_len) * row), populated + page)
          << "layer " << l;
    }
  }
}

}  // namespace
}  // namespace cellhouse::engine
