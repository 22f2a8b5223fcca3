// Sampler: picks the next token from logits. With temperature and top-p alone it is llama2.c's
// sampler — greedy (argmax) at temperature 0; otherwise softmax(logits / temperature) then top-p
// (nucleus) sampling, or plain sampling from the whole distribution when top_p is outside
// (0, 1). The other parameters follow llama.cpp's sampler chain: repetition, frequency and
// presence penalties over the last kPenaltyWindow tokens, then (unless greedy) temperature,
// top-k, min-p and top-p. The random numbers come from a seeded xorshift64* generator, so a
// given seed always yields the same tokens.
//
//   Sampler sampler(config.vocab_size);         // allocates its workspace once
//   Rng rng(seed);
//   int32_t next = sampler.Sample(logits, {.temperature = 0.8F, .top_p = 0.9F}, rng);
//   next = sampler.Sample(logits, {.temperature = 0.7F, .top_k = 40, .min_p = 0.05F,
//                                  .repetition_penalty = 1.1F}, rng, recent_tokens);
#ifndef CELLHOUSE_ENGINE_SAMPLER_H_
#define CELLHOUSE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <span>
#include <vector>

#include "base/result.h"

namespace cellhouse::engine {

// llama2.c's random_u32/random_f32 (xorshift64*). Seed 0 would stay 0 forever, so it is
// replaced by a fixed non-zero constant; any other seed is used as is, as llama2.c does.
class Rng {
 public:
  explicit Rng(uint64_t seed) : state_(seed == 0 ? kZeroSeedState : seed) {}
  uint32_t NextU32() {
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    return static_cast<uint32_t>((state_ * 0x2545F4914F6CDD1DULL) >> 32);
  }
  // In [0, 1).
  float NextFloat() { return static_cast<float>(NextU32() >> 8) / 16777216.0F; }

 private:
  static constexpr uint64_t kZeroSeedState = 0x9E3779B97F4A7C15ULL;
  uint64_t state_;
};

// Penalties look at this many of the most recent tokens (llama.cpp's penalty_last_n default).
inline constexpr size_t kPenaltyWindow = 64;

struct SamplingParams {
  float temperature = 0.0F;  // 0: greedy
  float top_p = 0.9F;        // nucleus mass; <= 0 or >= 1 samples from the full distribution
  int32_t top_k = 0;         // keep the k most likely; 0: all
  float min_p = 0.0F;        // drop tokens less likely than min_p times the most likely; 0: off
  float repetition_penalty = 1.0F;  // > 1 discourages recent tokens (divides positive logits)
  float frequency_penalty = 0.0F;   // subtracted once per recent occurrence
  float presence_penalty = 0.0F;    // subtracted once if the token occurred recently

  bool UsesPenalties() const {
    return repetition_penalty != 1.0F || frequency_penalty != 0.0F || presence_penalty != 0.0F;
  }
};

// The ranges a request may ask for: temperature 0..100, top_p in (0, 1], top_k 0..vocab_size,
// min_p 0..1, repetition_penalty in (0, 10], frequency and presence penalties -2..2; NaN and
// infinities refused. The error names the parameter.
Status ValidateSamplingParams(const SamplingParams& params, int32_t vocab_size);

class Sampler {
 public:
  explicit Sampler(int32_t vocab_size);

  // Picks a token. Modifies `logits` in place (penalised, scaled and normalised) unless greedy
  // without penalties. `recent` is the conversation so far; only its last kPenaltyWindow tokens
  // are read, and only when a penalty is set.
  int32_t Sample(std::span<float> logits, const SamplingParams& params, Rng& rng,
                 std::span<const int32_t> recent = {});

 private:
  struct Candidate {
    float prob;
    int32_t index;
  };
  int32_t SampleTopP(std::span<const float> probs, float top_p, float coin);
  // llama.cpp's chain after the penalties: temperature, top-k, min-p, top-p, then a draw.
  int32_t SampleChain(std::span<float> logits, const SamplingParams& params, Rng& rng);

  std::vector<Candidate> candidates_;  // workspace for top-p, sized once
};

// Index of the largest value; the first one on a tie.
int32_t ArgMax(std::span<const float> values);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_SAMPLER_H_
