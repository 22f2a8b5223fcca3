#include "engine/sampler.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <limits>
#include <string>

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

Status ValidateSamplingParams(const SamplingParams& p, int32_t vocab_size) {
  auto in_range = [](float v, float low, float high) {
    return std::isfinite(v) && v >= low && v <= high;
  };
  if (!in_range(p.temperature, 0.0F, 100.0F)) {
    return Error("temperature must be a number from 0 to 100");
  }
  if (!std::isfinite(p.top_p) || p.top_p <= 0.0F || p.top_p > 1.0F) {
    return Error("top_p must be in (0, 1]");
  }
  if (p.top_k < 0 || p.top_k > vocab_size) {
    return Error("top_k must be from 0 (off) to the vocabulary size " + std::to_string(vocab_size));
  }
  if (!in_range(p.min_p, 0.0F, 1.0F)) return Error("min_p must be a number from 0 to 1");
  if (!std::isfinite(p.repetition_penalty) || p.repetition_penalty <= 0.0F ||
      p.repetition_penalty > 10.0F) {
    return Error("repetition_penalty must be in (0, 10] (1 is off)");
  }
  if (!in_range(p.frequency_penalty, -2.0F, 2.0F)) {
    return Error("frequency_penalty must be a number from -2 to 2");
  }
  if (!in_range(p.presence_penalty, -2.0F, 2.0F)) {
    return Error("presence_penalty must be a number from -2 to 2");
  }
  return Ok();
}

int32_t Sampler::Sample(std::span<float> logits, const SamplingParams& params, Rng& rng,
                        std::span<const int32_t> recent) {
  if (params.UsesPenalties() && !recent.empty()) {
    // llama.cpp's penalties: each distinct token of the window once, with its count.
    const std::span<const int32_t> window =
        recent.size() > kPenaltyWindow ? recent.last(kPenaltyWindow) : recent;
    for (size_t i = 0; i < window.size(); ++i) {
      const int32_t t = window[i];
      if (t < 0 || static_cast<size_t>(t) >= logits.size() ||
          std::find(window.begin(), window.begin() + static_cast<ptrdiff_t>(i), t) !=
              window.begin() + static_cast<ptrdiff_t>(i)) {
        continue;  // out of range, or counted already
      }
      const auto count = static_cast<float>(std::count(window.begin(), window.end(), t));
      float& l = logits[static_cast<size_t>(t)];
      l = l > 0.0F ? l / params.repetition_penalty : l * params.repetition_penalty;
      l -= count * params.frequency_penalty + params.presence_penalty;
    }
  }
  if (params.temperature == 0.0F || logits.size() == 1) {
    return ArgMax(logits);
  }
  if (params.top_k > 0 || params.min_p > 0.0F) return SampleChain(logits, params, rng);
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

int32_t Sampler::SampleChain(std::span<float> logits, const SamplingParams& params, Rng& rng) {
  float max_val = -std::numeric_limits<float>::infinity();
  for (float& l : logits) {
    l /= params.temperature;
    max_val = std::max(max_val, l);
  }
  float sum = 0.0F;
  for (float& l : logits) {
    l = std::exp(l - max_val);
    sum += l;
  }
  // The most likely token has probability 1/sum before normalising: min-p keeps those at least
  // min_p of it. Cut before sorting, so that the sort sees few candidates.
  const float floor = params.min_p * (1.0F / sum);
  size_t n = 0;
  for (size_t i = 0; i < logits.size(); ++i) {
    const float p = logits[i] / sum;
    logits[i] = p;
    if (p >= floor && p > 0.0F) candidates_[n++] = {p, static_cast<int32_t>(i)};
  }
  if (n == 0) return ArgMax(logits);
  auto begin = candidates_.begin();
  auto by_prob = [](const Candidate& a, const Candidate& b) {
    return a.prob > b.prob || (a.prob == b.prob && a.index < b.index);
  };
  if (params.top_k > 0 && static_cast<size_t>(params.top_k) < n) {
    std::partial_sort(begin, begin + params.top_k, begin + static_cast<ptrdiff_t>(n), by_prob);
    n = static_cast<size_t>(params.top_k);
  } else {
    std::sort(begin, begin + static_cast<ptrdiff_t>(n), by_prob);
  }
  float kept = 0.0F;
  for (size_t i = 0; i < n; ++i) kept += candidates_[i].prob;
  // Top-p over what is left, renormalised; always at least one token.
  if (params.top_p < 1.0F) {
    float cumulative = 0.0F;
    for (size_t i = 0; i < n; ++i) {
      cumulative += candidates_[i].prob / kept;
      if (cumulative >= params.top_p) {
        n = i + 1;
        break;
      }
    }
    kept = 0.0F;
    for (size_t i = 0; i < n; ++i) kept += candidates_[i].prob;
  }
  const float r = rng.NextFloat() * kept;
  float cdf = 0.0F;
  for (size_t i = 0; i < n; ++i) {
    cdf += candidates_[i].prob;
    if (r < cdf) return candidates_[i].index;
  }
  return candidates_[n - 1].index;  // rounding
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
