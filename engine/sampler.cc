#include "engine/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>

namespace cellhouse::engine {

// The result of a scan from index 0 that moves on only to a strictly larger value (so the first
// of equal values, NaNs skipped), in two passes the compiler vectorizes: greedy decoding calls
// this over the whole vocabulary for every token, and a scan's compare-and-branch chain costs
// about 1% of an int8 model's decode time. First the largest value, in independent lanes with
// the scan's comparison (so the same value, but perhaps for the sign of a zero); then the first
// index holding a value equal to it. A NaN at index 0 stays the scan's answer: no value compares
// larger, none compares equal, and 0 is returned.
int32_t ArgMax(std::span<const float> values) {
  constexpr size_t kLanes = 16;
  std::array<float, kLanes> lanes{};
  lanes.fill(values[0]);
  const size_t full = values.size() - values.size() % kLanes;
  for (size_t i = 0; i < full; i += kLanes) {
    for (size_t k = 0; k < kLanes; ++k) {
      lanes[k] = values[i + k] > lanes[k] ? values[i + k] : lanes[k];
    }
  }
  float best = lanes[0];
  for (size_t k = 1; k < kLanes; ++k) {
    best = lanes[k] > best ? lanes[k] : best;
  }
  for (size_t i = full; i < values.size(); ++i) {
    best = values[i] > best ? values[i] : best;
  }
  for (size_t i = 0; i < full; i += kLanes) {
    int hits = 0;
    for (size_t k = 0; k < kLanes; ++k) {
      hits |= values[i + k] == best ? 1 : 0;
    }
    if (hits != 0) {
      const auto block = values.begin() + static_cast<ptrdiff_t>(i);
      return static_cast<int32_t>(std::find(block, block + kLanes, best) - values.begin());
    }
  }
  const auto tail = std::find(values.begin() + static_cast<ptrdiff_t>(full), values.end(), best);
  return tail == values.end() ? 0 : static_cast<int32_t>(tail - values.begin());
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
