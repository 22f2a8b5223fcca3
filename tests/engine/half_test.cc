// Half precision: the portable conversions (half.h) against known values and against every
// kernel variant's vector conversion, and the fp16 attention kernels against the fp32 ones.
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/kernels/half.h"
#include "engine/kernels/kernels.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

using testing::SupportedKernels;

float FromBits(uint32_t bits) {
  float f = 0;
  std::memcpy(&f, &bits, sizeof(f));
  return f;
}

uint32_t Bits(float f) {
  uint32_t bits = 0;
  std::memcpy(&bits, &f, sizeof(bits));
  return bits;
}

TEST(HalfTest, KnownValuesRoundToNearestEven) {
  EXPECT_EQ(FloatToHalf(0.0F), 0x0000);
  EXPECT_EQ(FloatToHalf(-0.0F), 0x8000);
  EXPECT_EQ(FloatToHalf(1.0F), 0x3C00);
  EXPECT_EQ(FloatToHalf(-2.0F), 0xC000);
  EXPECT_EQ(FloatToHalf(0.1F), 0x2E66);
  EXPECT_EQ(FloatToHalf(65504.0F), 0x7BFF);  // the largest half
  EXPECT_EQ(FloatToHalf(65519.0F), 0x7BFF);  // rounds down
  EXPECT_EQ(FloatToHalf(65520.0F), 0x7C00);  // the tie goes to even: infinity
  EXPECT_EQ(FloatToHalf(std::numeric_limits<float>::infinity()), 0x7C00);
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0F, -14)), 0x0400);             // the smallest normal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0F, -24)), 0x0001);             // the smallest subnormal
  EXPECT_EQ(FloatToHalf(std::ldexp(1.0F, -25)), 0x0000);             // a tie: to even, zero
  EXPECT_EQ(FloatToHalf(std::ldexp(1.5F, -25)), 0x0001);             // above the tie
  EXPECT_EQ(FloatToHalf(std::ldexp(3.0F, -25)), 0x0002);             // 1.5 subnormal steps: to even
  EXPECT_EQ(FloatToHalf(1.0F + std::ldexp(1.0F, -11)), 0x3C00);      // a tie below an even: down
  EXPECT_EQ(FloatToHalf(1.0F + 3 * std::ldexp(1.0F, -11)), 0x3C02);  // a tie above an odd: up
  EXPECT_EQ(FloatToHalf(2047.5F), 0x6800);  // the carry moves into the exponent (2048)
  const uint16_t nan = FloatToHalf(std::numeric_limits<float>::quiet_NaN());
  EXPECT_EQ(nan & 0x7C00, 0x7C00);
  EXPECT_NE(nan & 0x03FF, 0);
}

TEST(HalfTest, EveryHalfWidensExactlyAndRoundsBackToItself) {
  for (uint32_t h = 0; h <= 0xFFFF; ++h) {
    const float f = HalfToFloat(static_cast<uint16_t>(h));
    if ((h & 0x7C00) == 0x7C00 && (h & 0x03FF) != 0) {
      EXPECT_TRUE(std::isnan(f)) << std::hex << h;
      continue;
    }
    ASSERT_EQ(FloatToHalf(f), h) << std::hex << h << " widened to " << f;
  }
  EXPECT_EQ(HalfToFloat(0x0001), std::ldexp(1.0F, -24));
  EXPECT_EQ(HalfToFloat(0x3555), 0.333251953125F);
  EXPECT_EQ(HalfToFloat(0xFC00), -std::numeric_limits<float>::infinity());
}

// Every kernel set's to_half (vcvtps2ph in the vector ones) gives FloatToHalf's bits, over a
// sweep of the whole float range: normals, subnormals, both signs, infinities and NaNs.
TEST(HalfTest, EveryVariantConvertsBitForBit) {
  std::vector<float> values;
  for (uint64_t bits = 0; bits <= 0xFFFFFFFFULL; bits += 40503) {
    values.push_back(FromBits(static_cast<uint32_t>(bits)));
  }
  for (float v : {65520.0F, 65519.99F, 2047.5F, std::ldexp(1.0F, -25), std::ldexp(3.0F, -25),
                  -std::numeric_limits<float>::infinity()}) {
    values.push_back(v);
  }
  std::vector<uint16_t> expected(values.size());
  for (size_t i = 0; i < values.size(); ++i) {
    expected[i] = FloatToHalf(values[i]);
  }
  for (MatVecKernel kind : SupportedKernels()) {
    const Kernels k = SelectKernels(kind);
    std::vector<uint16_t> out(values.size() + 1, 0xABCD);
    k.to_half(values.data(), static_cast<int32_t>(values.size()), out.data());
    EXPECT_EQ(out.back(), 0xABCD) << "wrote past the end";
    size_t mismatches = 0;
    for (size_t i = 0; i < values.size(); ++i) {
      if (out[i] != expected[i] && ++mismatches <= 5) {
        ADD_FAILURE() << MatVecKernelName(kind) << ": float bits " << std::hex << Bits(values[i])
                      << " gave " << out[i] << ", FloatToHalf " << expected[i];
      }
    }
    EXPECT_EQ(mismatches, 0U) << MatVecKernelName(kind);
  }
}

// Scores and weighted sum over a cache of halves, against the fp32 kernels of the same set on
// those values widened: the same bits.
void CheckHalfAttention(const Kernels& k, const std::string& what, int32_t size, int32_t heads,
                        int32_t kv_mul, int32_t count) {
  const size_t stride = static_cast<size_t>(heads / kv_mul) * size + 3;  // rows padded
  const AttentionShape shape{.heads = heads,
                             .kv_mul = kv_mul,
                             .head_size = size,
                             .stride = stride,
                             .scores_stride = static_cast<size_t>(count) + 2};
  std::vector<float> q(static_cast<size_t>(heads) * size);
  for (size_t i = 0; i < q.size(); ++i) {
    q[i] = std::sin(static_cast<float>(i) * 0.7F);
  }
  std::vector<uint16_t> halves(count * stride);
  std::vector<float> widened(halves.size());
  for (size_t i = 0; i < halves.size(); ++i) {
    halves[i] = FloatToHalf(std::cos(static_cast<float>(i) * 1.3F) * 3.0F);
    widened[i] = HalfToFloat(halves[i]);
  }
  const size_t score_count = heads * shape.scores_stride;
  std::vector<float> expected(score_count, -7.0F);
  std::vector<float> scores(score_count, -7.0F);
  k.scores(q.data(), widened.data(), shape, count, 8.0F, expected.data());
  k.scores_half(q.data(), halves.data(), shape, count, 8.0F, scores.data());
  for (size_t i = 0; i < score_count; ++i) {
    ASSERT_EQ(Bits(scores[i]), Bits(expected[i])) << what << " score " << i;
  }
  std::vector<float> sum(static_cast<size_t>(heads) * size, -1.0F);
  std::vector<float> expected_sum(sum.size(), -1.0F);
  k.weighted_sum(expected.data(), widened.data(), shape, count, expected_sum.data());
  k.weighted_sum_half(expected.data(), halves.data(), shape, count, sum.data());
  for (size_t i = 0; i < sum.size(); ++i) {
    ASSERT_EQ(Bits(sum[i]), Bits(expected_sum[i])) << what << " output " << i;
  }
}

// The fp16 attention kernels widen each cache value exactly and then do what the fp32 kernels
// do in the same order. Shapes as KernelsTest's: head sizes off the vector widths, shared kv
// heads, counts on and off a multiple of four.
TEST(HalfTest, AttentionOverHalvesIsTheFp32KernelOnTheWidenedValues) {
  for (MatVecKernel kind : SupportedKernels()) {
    const Kernels k = SelectKernels(kind);
    for (int32_t size : {1, 7, 16, 17, 33, 64}) {
      for (auto [heads, kv_mul] : {std::pair{3, 1}, std::pair{6, 3}}) {
        for (int32_t count : {1, 4, 9}) {
          CheckHalfAttention(k,
                             std::string(MatVecKernelName(kind)) + " size " + std::to_string(size) +
                                 " heads " + std::to_string(heads) + " count " +
                                 std::to_string(count),
                             size, heads, kv_mul, count);
        }
      }
    }
  }
}

}  // namespace
}  // namespace cellhouse::engine
