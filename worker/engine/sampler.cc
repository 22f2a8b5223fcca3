#include "worker/engine/sampler.h"

#include <algorithm>
#include <cmath>

namespace cellhouse::engine {

int32_t ArgMax(std::span<const float> values) {
  int32_t best = 0;
  for (size_t i = 1; i < values.size(); ++i) {
    if (values[i] > values[static_cast<size_t>(best)]) {
      best = static_cast<int32_t>(i);
    }
  }
  return best;
}

Sampler::Sampler(int32_t vocab_size) : candidates_(static_cast<size_t>(vocab_size)) {}

int32_t Sampler::Sample(std::span<float> logits, const SamplingParams& params, Rng& rng) {
  if (params.temperature == 0.0F || logits.size() == 1) {
    return ArgMax(logits);
  }
  for (float& l : logits) {
    l /= params.temperature;
  }
  // Softmax, as llama2.c's softmax().
  float max_val = *std::max_element(logits.begin(), logits.end());
  float sum = 0.0F;
  for (float& l : logits) {
    l = std::exp(l - max_val);
    sum += l;
  }
  for (float& l : logits) {
    l /= sum;
  }
  const float coin = rng.NextFloat();
  if (params.top_p > 0.0F && params.top_p < 1.0F) {
    return SampleTopP(logits, params.top_p, coin);
  }
  // sample_mult(): the first index whose cumulative probability exceeds the coin.
  float cdf = 0.0F;
  for (size_t i = 0; i < logits.size(); ++i) {
    cdf += logits[i];
    if (coin < cdf) {
      return static_cast<int32_t>(i);
    }
  }
  return static_cast<int32_t>(logits.size()) - 1;  // rounding
}

// llama2.c's sample_topp(): the smallest set of most likely tokens whose mass exceeds top_p,
// sampled in proportion. Tokens below (1 - top_p) / (n - 1) cannot be in that set and are
// dropped before sorting. Ties sort by index, so the order (and the pick) never depends on the
// sort algorithm, where llama2.c's qsort leaves it unspecified.
int32_t Sampler::SampleTopP(std::span<const float> probs, float top_p, float coin) {
  const float cutoff = (1.0F - top_p) / static_cast<float>(probs.size() - 1);
  size_t n = 0;
  for (size_t i = 0; i < probs.size(); ++i) {
    if (probs[i] >= cutoff) {
      candidates_[n++] = {probs[i], static_cast<int32_t>(i)};
    }
  }
  if (n == 0) {
    return ArgMax(probs);  // only when every probability is NaN
  }
  auto begin = candidates_.begin();
  auto end = begin + static_cast<ptrdiff_t>(n);
  std::sort(begin, end, [](const Candidate& a, const Candidate& b) {
    return a.prob > b.prob || (a.prob == b.prob && a.index < b.index);
  });
  float cumulative = 0.0F;
  size_t last = n - 1;
  for (size_t i = 0; i < n; ++i) {
    cumulative += candidates_[i].prob;
    if (cumulative > top_p) {
      last = i;
      break;
    }
  }
  const float r = coin * cumulative;
  float cdf = 0.0F;
  for (size_t i = 0; i <= last; ++i) {
    cdf += candidates_[i].prob;
    if (r < cdf) {
      return candidates_[i].index;
    }
  }
  return candidates_[last].index;  // rounding
}

}  // namespace cellhouse::engine
