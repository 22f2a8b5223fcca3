// Sampler and Rng: llama2.c's generator sequence, greedy and nucleus sampling, and llama.cpp's
// top-k, min-p and penalties with their range checks.
#include <cmath>
#include <limits>
#include <set>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/sampler.h"

namespace cellhouse::engine {
namespace {

TEST(RngTest, MatchesLlama2cXorshift) {
  // llama2.c's random_u32 with rng_state = 42, computed independently:
  //   s ^= s >> 12; s ^= s << 25; s ^= s >> 27; return (s * 0x2545F4914F6CDD1D) >> 32;
  uint64_t s = 42;
  Rng rng(42);
  for (int i = 0; i < 100; ++i) {
    s ^= s >> 12;
    s ^= s << 25;
    s ^= s >> 27;
    EXPECT_EQ(rng.NextU32(), static_cast<uint32_t>((s * 0x2545F4914F6CDD1DULL) >> 32));
  }
  Rng zero(0);  // a zero state would stay zero forever
  EXPECT_NE(zero.NextU32(), 0U);
  Rng f(7);
  for (int i = 0; i < 1000; ++i) {
    float v = f.NextFloat();
    EXPECT_GE(v, 0.0F);
    EXPECT_LT(v, 1.0F);
  }
}

TEST(SamplerTest, GreedyTakesTheFirstLargest) {
  Sampler s(5);
  Rng rng(1);
  std::vector<float> logits = {0.1F, 3.0F, -1.0F, 3.0F, 2.0F};
  EXPECT_EQ(s.Sample(logits, {.temperature = 0.0F}, rng), 1);
  EXPECT_EQ(ArgMax(logits), 1);
}

// ArgMax is a vectorized two-pass search; it must answer exactly as the plain scan from index 0
// that moves only to a strictly larger value: ties, signed zeros, NaNs anywhere, odd lengths.
TEST(SamplerTest, ArgMaxAnswersAsTheSequentialScan) {
  auto scan = [](const std::vector<float>& v) {
    size_t best = 0;
    for (size_t i = 1; i < v.size(); ++i) {
      if (v[i] > v[best]) {
        best = i;
      }
    }
    return static_cast<int32_t>(best);
  };
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  const std::vector<float> specials = {0.0F, -0.0F, nan, inf, -inf, 1.0F, -1.0F, 2.0F};
  Rng rng(3);
  for (size_t size : {1U, 2U, 15U, 16U, 17U, 33U, 100U, 32000U}) {
    for (int trial = 0; trial < 200; ++trial) {
      std::vector<float> v(size);
      for (float& x : v) {
        // Few distinct values, so ties and specials are common.
        const auto pick = static_cast<size_t>(rng.NextFloat() * 10.0F);
        x = pick < specials.size() ? specials[pick] : -5.0F;
      }
      ASSERT_EQ(ArgMax(v), scan(v)) << "size " << size << " trial " << trial;
    }
  }
}

TEST(SamplerTest, TopPKeepsOnlyTheNucleus) {
  Sampler s(4);
  // Probabilities after softmax at T=1: token 2 alone holds > 0.99 of the mass.
  for (uint64_t seed = 1; seed <= 200; ++seed) {
    Rng rng(seed);
    std::vector<float> logits = {0.0F, 0.0F, 10.0F, 0.0F};
    EXPECT_EQ(s.Sample(logits, {.temperature = 1.0F, .top_p = 0.5F}, rng), 2);
  }
}

TEST(SamplerTest, SamplingFollowsTheDistribution) {
  Sampler s(2);
  Rng rng(99);
  int ones = 0;
  const int n = 4000;
  for (int i = 0; i < n; ++i) {
    std::vector<float> logits = {0.0F, std::log(3.0F)};  // p = 0.25, 0.75
    ones += s.Sample(logits, {.temperature = 1.0F, .top_p = 1.0F}, rng);
  }
  EXPECT_NEAR(static_cast<double>(ones) / n, 0.75, 0.03);
}

TEST(SamplerTest, SameSeedSameChoices) {
  Sampler a(50), b(50);
  Rng ra(5), rb(5);
  for (int i = 0; i < 100; ++i) {
    std::vector<float> la(50), lb;
    for (int j = 0; j < 50; ++j) {
      la[j] = static_cast<float>((i * 31 + j * 17) % 13) * 0.3F;
    }
    lb = la;
    EXPECT_EQ(a.Sample(la, {.temperature = 0.8F, .top_p = 0.9F}, ra),
              b.Sample(lb, {.temperature = 0.8F, .top_p = 0.9F}, rb));
  }
}

TEST(SamplerTest, SingleEntryVocabulary) {
  Sampler s(1);
  Rng rng(3);
  std::vector<float> logits = {1.0F};
  EXPECT_EQ(s.Sample(logits, {.temperature = 1.0F, .top_p = 0.9F}, rng), 0);
}

// Which tokens `params` ever picks from `logits` over many seeds.
std::set<int32_t> Reachable(const std::vector<float>& logits, const SamplingParams& params,
                            const std::vector<int32_t>& recent = {}) {
  Sampler s(static_cast<int32_t>(logits.size()));
  std::set<int32_t> seen;
  for (uint64_t seed = 1; seed <= 400; ++seed) {
    Rng rng(seed);
    std::vector<float> l = logits;
    seen.insert(s.Sample(l, params, rng, recent));
  }
  return seen;
}

TEST(SamplerTest, TopKKeepsOnlyTheKMostLikely) {
  // Nearly flat: without top-k every token turns up.
  const std::vector<float> logits = {0.1F, 0.4F, 0.0F, 0.3F, 0.2F};
  EXPECT_EQ(Reachable(logits, {.temperature = 1.0F, .top_p = 1.0F}).size(), 5U);
  EXPECT_EQ(Reachable(logits, {.temperature = 1.0F, .top_p = 1.0F, .top_k = 2}),
            (std::set<int32_t>{1, 3}));
  EXPECT_EQ(Reachable(logits, {.temperature = 1.0F, .top_p = 1.0F, .top_k = 1}),
            (std::set<int32_t>{1}));
}

TEST(SamplerTest, MinPDropsTokensFarBelowTheMostLikely) {
  // p ∝ e^logit: token 0 is 1, token 1 e^-1 (0.37), token 2 e^-3 (0.05) of the most likely.
  const std::vector<float> logits = {0.0F, -1.0F, -3.0F};
  EXPECT_EQ(Reachable(logits, {.temperature = 1.0F, .top_p = 1.0F}).size(), 3U);
  EXPECT_EQ(Reachable(logits, {.temperature = 1.0F, .top_p = 1.0F, .min_p = 0.2F}),
            (std::set<int32_t>{0, 1}));
  EXPECT_EQ(Reachable(logits, {.temperature = 1.0F, .top_p = 1.0F, .min_p = 0.5F}),
            (std::set<int32_t>{0}));
}

TEST(SamplerTest, PenaltiesTurnGreedyAwayFromRecentTokens) {
  Sampler s(3);
  Rng rng(1);
  // Token 0 leads by 0.5; it was said twice recently.
  const std::vector<float> base = {2.0F, 1.5F, 0.0F};
  const std::vector<int32_t> recent = {0, 2, 0};
  auto greedy = [&](const SamplingParams& p) {
    std::vector<float> l = base;
    return s.Sample(l, p, rng, recent);
  };
  EXPECT_EQ(greedy({}), 0);
  // Repetition: 2.0 / 1.5 = 1.33 < 1.5.
  EXPECT_EQ(greedy({.repetition_penalty = 1.5F}), 1);
  EXPECT_EQ(greedy({.repetition_penalty = 1.2F}), 0);  // 1.67 still leads
  // Frequency: 2.0 - 2 * 0.3 = 1.4 < 1.5, while once (presence) 2.0 - 0.3 = 1.7 leads.
  EXPECT_EQ(greedy({.frequency_penalty = 0.3F}), 1);
  EXPECT_EQ(greedy({.presence_penalty = 0.3F}), 0);
  EXPECT_EQ(greedy({.presence_penalty = 0.6F}), 1);
  // Only the recent window counts: far enough back, token 0 is forgiven.
  std::vector<int32_t> long_ago(kPenaltyWindow + 10, 2);
  long_ago[0] = 0;
  long_ago[1] = 0;
  std::vector<float> l = base;
  EXPECT_EQ(s.Sample(l, {.frequency_penalty = 0.3F}, rng, long_ago), 0);
}

TEST(SamplerTest, OutOfRangeParametersAreRefusedByName) {
  const float nan = std::numeric_limits<float>::quiet_NaN();
  const float inf = std::numeric_limits<float>::infinity();
  struct Case {
    SamplingParams params;
    std::string names;
  };
  const std::vector<Case> cases = {
      {{.temperature = -0.1F}, "temperature"},
      {{.temperature = nan}, "temperature"},
      {{.temperature = 101.0F}, "temperature"},
      {{.top_p = 1.5F}, "top_p"},
      {{.top_p = nan}, "top_p"},
      {{.top_k = -1}, "top_k"},
      {{.top_k = 1001}, "top_k"},
      {{.min_p = -0.5F}, "min_p"},
      {{.min_p = 1.5F}, "min_p"},
      {{.min_p = nan}, "min_p"},
      {{.repetition_penalty = 0.0F}, "repetition_penalty"},
      {{.repetition_penalty = 11.0F}, "repetition_penalty"},
      {{.repetition_penalty = inf}, "repetition_penalty"},
      {{.frequency_penalty = 2.5F}, "frequency_penalty"},
      {{.frequency_penalty = nan}, "frequency_penalty"},
      {{.presence_penalty = -2.5F}, "presence_penalty"},
      {{.presence_penalty = inf}, "presence_penalty"},
  };
  for (const Case& c : cases) {
    Status st = ValidateSamplingParams(c.params, 1000);
    ASSERT_FALSE(st) << "accepted a bad " << c.names;
    EXPECT_NE(st.error().message().find(c.names), std::string::npos) << st.error().message();
  }
  EXPECT_TRUE(ValidateSamplingParams({.temperature = 0.7F,
                                      .top_p = 1.0F,
                                      .top_k = 1000,
                                      .min_p = 1.0F,
                                      .repetition_penalty = 10.0F,
                                      .frequency_penalty = -2.0F,
                                      .presence_penalty = 2.0F},
                                     1000));
}

}  // namespace
}  // namespace cellhouse::engine
