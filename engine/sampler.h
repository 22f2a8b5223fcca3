// Sampler: picks the next token from logits as llama2.c's sampler does — greedy (argmax) at
// temperature 0; otherwise softmax(logits / temperature) then top-p (nucleus) sampling, or
// plain sampling from the whole distribution when top_p is outside (0, 1). The random numbers
// come from a seeded xorshift64* generator, so a given seed always yields the same tokens.
//
//   Sampler sampler(config.vocab_size);         // allocates its workspace once
//   Rng rng(seed);
//   int32_t next = sampler.Sample(logits, {.temperature = 0.8F, .top_p = 0.9F}, rng);
#ifndef CELLHOUSE_ENGINE_SAMPLER_H_
#define CELLHOUSE_ENGINE_SAMPLER_H_

#include <cstdint>
#include <span>
#include <vector>

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

struct SamplingParams {
  float temperature = 0.0F;  // 0: greedy
  float top_p = 0.9F;        // nucleus mass; <= 0 or >= 1 samples from the full distribution
};

class Sampler {
 public:
  explicit Sampler(int32_t vocab_size);

  // Picks a token. Modifies `logits` in place (scaled and normalised) unless greedy.
  int32_t Sample(std::span<float> logits, const SamplingParams& params, Rng& rng);

 private:
  struct Candidate {
    float prob;
    int32_t index;
  };
  int32_t SampleTopP(std::span<const float> probs, float top_p, float coin);

  std::vector<Candidate> candidates_;  // workspace for top-p, sized once
};

// Index of the largest value; the first one on a tie.
int32_t ArgMax(std::span<const float> values);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_SAMPLER_H_
