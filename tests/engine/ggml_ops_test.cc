// The GGUF forward pass's own operations (engine/ggml_ops.h): ggml_v_expf's arithmetic against the
// exact exponential and at its edges, every instruction-set variant bit-identical to the portable
// one, and the definitions the rest follow (RMSNorm summed in double, the rope cache, softmax
// weights summing to one, the 16-lane f16 product).
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <vector>

#include <gtest/gtest.h>

#include "engine/ggml_ops.h"
#include "engine/kernels/half.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine {
namespace {

uint32_t Bits(float f) {
  uint32_t b = 0;
  std::memcpy(&b, &f, sizeof(b));
  return b;
}

std::vector<float> Values(size_t n, float scale, uint32_t seed) {
  std::vector<float> v(n);
  uint32_t s = seed;
  for (float& x : v) {
    s = s * 1664525U + 1013904223U;
    x = (static_cast<float>(s >> 8) / static_cast<float>(1 << 24) * 2.0F - 1.0F) * scale;
  }
  return v;
}

std::vector<KernelIsa> Isas() {
  std::vector<KernelIsa> isas = {KernelIsa::kPortable};
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (KernelIsaSupported(isa)) {
      isas.push_back(isa);
    }
  }
  return isas;
}

TEST(GgmlOpsTest, ExpIsWithinTwoUlpsAndFlushesAtItsEdges) {
  for (float x = -103.0F; x < 88.0F; x += 0.0137F) {
    const double exact = std::exp(static_cast<double>(x));
    const float ours = GgmlExp(x);
    EXPECT_NEAR(ours, exact, 2.5 * std::ldexp(1.0, std::ilogb(exact) - 23) + 1e-44) << x;
  }
  EXPECT_EQ(GgmlExp(0.0F), 1.0F);
  EXPECT_EQ(GgmlExp(-INFINITY), 0.0F);
  EXPECT_EQ(GgmlExp(-200.0F), 0.0F);
  EXPECT_EQ(GgmlExp(200.0F), INFINITY);
  EXPECT_TRUE(std::isnan(GgmlExp(NAN)));
  // A subnormal result is rounded once, as _mm512_scalef_ps rounds it.
  EXPECT_GT(GgmlExp(-100.0F), 0.0F);
  EXPECT_LT(GgmlExp(-100.0F), 1e-38F);
}

TEST(GgmlOpsTest, EveryVariantGivesThePortableBits) {
  for (int64_t n : {1, 15, 16, 31, 64, 100, 768}) {
    const std::vector<float> x = Values(static_cast<size_t>(n), 12.0F, static_cast<uint32_t>(n));
    const std::vector<float> up = Values(static_cast<size_t>(n), 3.0F, 77);
    std::vector<uint16_t> halves(static_cast<size_t>(n));
    for (size_t i = 0; i < halves.size(); ++i) {
      halves[i] = FloatToHalf(up[i]);
    }
    std::vector<float> soft_ref = x;
    std::vector<float> silu_ref = x;
    SoftMax(soft_ref.data(), n, 0.125F, KernelIsa::kPortable);
    SiluMul(silu_ref.data(), up.data(), n, KernelIsa::kPortable);
    const float dot_ref = LanesDotF16(halves.data(), x.data(), n, KernelIsa::kPortable);
    for (KernelIsa isa : Isas()) {
      std::vector<float> soft = x;
      std::vector<float> silu = x;
      SoftMax(soft.data(), n, 0.125F, isa);
      SiluMul(silu.data(), up.data(), n, isa);
      for (size_t i = 0; i < x.size(); ++i) {
        ASSERT_EQ(Bits(soft[i]), Bits(soft_ref[i])) << KernelIsaName(isa) << " n " << n << " " << i;
        ASSERT_EQ(Bits(silu[i]), Bits(silu_ref[i])) << KernelIsaName(isa) << " n " << n << " " << i;
      }
      EXPECT_EQ(Bits(LanesDotF16(halves.data(), x.data(), n, isa)), Bits(dot_ref))
          << KernelIsaName(isa) << " n " << n;
    }
  }
}

// A head rotated by every variant: both styles, rotated dims of every branch of the NORM order
// (up to three pairs; 4 + 4; 8s then 4; 8s and 1-3 unfused; pairs past rope.dims untouched).
TEST(GgmlOpsTest, RopeGivesThePortableBitsInEveryVariant) {
  for (RopeStyle style : {RopeStyle::kInterleaved, RopeStyle::kNeox}) {
    for (int32_t dims : {2, 6, 8, 24, 30, 64, 128}) {
      const RopeParams rope{.dims = dims, .base = 500000.0F, .style = style};
      std::vector<float> angles(static_cast<size_t>(dims));
      RopeAngles(rope, 1234, angles.data());
      const std::vector<float> head =
          Values(static_cast<size_t>(dims) + 3, 40.0F, static_cast<uint32_t>(dims));
      std::vector<float> ref = head;
      Rope(rope, angles.data(), ref.data(), KernelIsa::kPortable);
      EXPECT_NE(Bits(ref[0]), Bits(head[0])) << "dims " << dims;
      for (KernelIsa isa : Isas()) {
        std::vector<float> got = head;
        Rope(rope, angles.data(), got.data(), isa);
        for (size_t i = 0; i < got.size(); ++i) {
          ASSERT_EQ(Bits(got[i]), Bits(ref[i]))
              << KernelIsaName(isa) << " dims " << dims << " value " << i;
        }
      }
    }
  }
}

// Inputs whose exp underflows to a subnormal or to 0, overflows, or takes ggml_v_expf's
// |n| > 192 branch, in runs of 16 (the vector code's) and past them; and a maximum of zero held as
// both -0 and +0 (the vector code compares in another order, so it may keep the other sign).
TEST(GgmlOpsTest, EveryVariantGivesThePortableBitsAtExpsEdges) {
  const std::vector<float> edges = {-200.0F, 200.0F, -100.0F,  100.0F,  -88.8F,    88.8F,
                                    -103.9F, 89.0F,  -0.0F,    0.0F,    -133.0F,   133.0F,
                                    -150.0F, 150.0F, 1e-30F,   -1e-30F, -87.3F,    -126.0F,
                                    127.9F,  -60.0F, -1000.0F, 1000.0F, -INFINITY, 3.0F};
  std::vector<std::vector<float>> inputs = {{edges.begin(), edges.begin() + 16}, edges, {}};
  for (int copy = 0; copy < 3; ++copy) {
    inputs.back().insert(inputs.back().end(), edges.begin(), edges.end());
  }
  std::vector<float> zeros = Values(40, 5.0F, 23);
  for (size_t i = 0; i < zeros.size(); ++i) {
    const bool zero = i == 3 || i == 20 || i == 38;
    zeros[i] = zero ? (i == 20 ? 0.0F : -0.0F) : -std::fabs(zeros[i]) - 0.5F;
  }
  inputs.push_back(zeros);
  for (const std::vector<float>& x : inputs) {
    const auto n = static_cast<int64_t>(x.size());
    const std::vector<float> up = Values(x.size(), 3.0F, 21);
    for (float scale : {1.0F, 0.125F, 40.0F}) {
      std::vector<float> soft_ref = x;
      std::vector<float> silu_ref = x;
      SoftMax(soft_ref.data(), n, scale, KernelIsa::kPortable);
      SiluMul(silu_ref.data(), up.data(), n, KernelIsa::kPortable);
      for (KernelIsa isa : Isas()) {
        std::vector<float> soft = x;
        std::vector<float> silu = x;
        SoftMax(soft.data(), n, scale, isa);
        SiluMul(silu.data(), up.data(), n, isa);
        for (size_t i = 0; i < x.size(); ++i) {
          ASSERT_EQ(Bits(soft[i]), Bits(soft_ref[i]))
              << KernelIsaName(isa) << " n " << n << " scale " << scale << " " << x[i];
          ASSERT_EQ(Bits(silu[i]), Bits(silu_ref[i]))
              << KernelIsaName(isa) << " n " << n << " " << x[i];
        }
      }
    }
  }
}

// A head's keys (rows of a strided table) at once: each the bits of its own LanesDotF16. Rows of
// head_size (a prompt's scores) and rows as long as a context (its value sums), for row counts
// around the group of 16.
TEST(GgmlOpsTest, BatchedDotsEqualSingleOnes) {
  constexpr int64_t kN = 64;
  constexpr int64_t kLongest = 300;
  constexpr size_t kStride = 320;
  constexpr int64_t kCount = 37;
  const std::vector<float> b = Values(kLongest, 4.0F, 5);
  const std::vector<float> table = Values(kStride * kCount, 2.0F, 9);
  std::vector<uint16_t> halves(table.size());
  for (size_t i = 0; i < halves.size(); ++i) {
    halves[i] = FloatToHalf(table[i]);
  }
  for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    for (int64_t n :
         {kN, kN - 3, int64_t{16}, int64_t{32}, int64_t{7}, int64_t{128}, int64_t{173}, kLongest}) {
      for (int64_t count :
           {int64_t{1}, int64_t{5}, int64_t{15}, int64_t{16}, int64_t{17}, kCount}) {
        std::vector<float> out(static_cast<size_t>(count) + 1, -1.0F);
        LanesDotsF16(halves.data() + 3, kStride, count, b.data(), 0, 1, n, isa, out.data(), 0);
        for (int64_t j = 0; j < count; ++j) {
          ASSERT_EQ(Bits(out[j]), Bits(LanesDotF16(halves.data() + 3 + j * kStride, b.data(), n,
                                                   KernelIsa::kPortable)))
              << KernelIsaName(isa) << " n " << n << " count " << count << " row " << j;
        }
        EXPECT_EQ(out.back(), -1.0F) << "wrote past the last row";
      }
    }
  }
}

// Rows and queries for LanesDotsF16's several-query form: `queries` of kMostQueries query
// vectors against `count` of kCount rows over n columns, checked value by value against
// LanesDotF16 of that row and query alone, and for nothing written past the rows or queries.
class SeveralQueries {
 public:
  static constexpr int kMostQueries = 9;
  static constexpr int64_t kCount = 37;

  SeveralQueries()
      : b_(Values(kQueryStride * kMostQueries, 4.0F, 6)),
        halves_(Halves(Values(kStride * kCount, 2.0F, 10))) {}

  ::testing::AssertionResult Check(KernelIsa isa, int queries, int64_t n, int64_t count) const {
    std::vector<float> out(kOutStride * kMostQueries, -1.0F);
    LanesDotsF16(halves_.data() + 3, kStride, count, b_.data(), kQueryStride, queries, n, isa,
                 out.data(), kOutStride);
    for (int q = 0; q < kMostQueries; ++q) {
      for (int64_t j = 0; j < static_cast<int64_t>(kOutStride); ++j) {
        const float got = out[q * kOutStride + static_cast<size_t>(j)];
        const bool written = q < queries && j < count;
        const float want = written
                               ? LanesDotF16(halves_.data() + 3 + j * kStride,
                                             b_.data() + q * kQueryStride, n, KernelIsa::kPortable)
                               : -1.0F;
        if (Bits(got) != Bits(want)) {
          return ::testing::AssertionFailure()
                 << KernelIsaName(isa) << " queries " << queries << " n " << n << " count " << count
                 << ": query " << q << " row " << j << " is " << got << ", not " << want
                 << (written ? "" : " (past the rows or queries)");
        }
      }
    }
    return ::testing::AssertionSuccess();
  }

 private:
  static constexpr size_t kStride = 320;
  static constexpr size_t kQueryStride = 304;
  static constexpr size_t kOutStride = 40;
  static std::vector<uint16_t> Halves(const std::vector<float>& values) {
    std::vector<uint16_t> halves;
    halves.reserve(values.size());
    for (float v : values) halves.push_back(FloatToHalf(v));
    return halves;
  }

  std::vector<float> b_;
  std::vector<uint16_t> halves_;
};

// A prompt's tokens that read the same rows at once (1 to 9 queries: the groups of four and what
// is left), for rows of head_size, of a context's length and with a tail past the last 16.
TEST(GgmlOpsTest, DotsOfSeveralQueriesEqualSingleOnes) {
  const SeveralQueries rows;
  for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    for (int queries = 1; queries <= SeveralQueries::kMostQueries; ++queries) {
      for (int64_t n : {int64_t{64}, int64_t{61}, int64_t{16}, int64_t{288}, int64_t{300}}) {
        for (int64_t count :
             {int64_t{1}, int64_t{15}, int64_t{16}, int64_t{17}, SeveralQueries::kCount}) {
          ASSERT_TRUE(rows.Check(isa, queries, n, count));
        }
      }
    }
  }
}

// A decode token's attention products, 16 rows at a time: each the bits of the F16 kernel's own
// dot, for lengths with and without a tail past the last whole 64 (a score is 64 long, a value
// row a multiple of 32; from 256 on the rows go 4 at a time) and for row counts around the group
// of 16 and of 4, without writing past them.
TEST(GgmlOpsTest, DecodeDotsEqualTheF16KernelsDot) {
  constexpr size_t kStride = 300;
  constexpr int64_t kMaxCount = 37;
  const TypeKernels& f16 = GetTypeKernels(TensorType::kF16, KernelIsa::kPortable);
  const std::vector<float> raw = Values(kStride, 3.0F, 11);
  std::vector<float> b(raw.size());
  // The kernel's activations: floats already rounded to halves.
  f16.quantize_activations(raw.data(), 1, static_cast<int64_t>(raw.size()),
                           reinterpret_cast<std::byte*>(b.data()));
  const std::vector<float> table = Values(kStride * kMaxCount, 2.0F, 13);
  std::vector<uint16_t> halves(table.size());
  for (size_t i = 0; i < halves.size(); ++i) {
    halves[i] = FloatToHalf(table[i]);
  }
  for (KernelIsa isa : Isas()) {
    for (int64_t n : {1, 7, 32, 63, 64, 65, 96, 128, 160, 191, 256, 290}) {
      for (int64_t count : std::initializer_list<int64_t>{1, 5, 15, 16, 17, 32, kMaxCount}) {
        std::vector<float> out(static_cast<size_t>(count) + 1, -7.0F);
        DotsF16(halves.data(), kStride, count, b.data(), n, isa, out.data());
        for (int64_t j = 0; j < count; ++j) {
          const float want =
              f16.dot(reinterpret_cast<const std::byte*>(halves.data() + j * kStride),
                      reinterpret_cast<const std::byte*>(b.data()), n);
          ASSERT_EQ(Bits(out[j]), Bits(want))
              << KernelIsaName(isa) << " n " << n << " count " << count << " row " << j;
        }
        EXPECT_EQ(out.back(), -7.0F) << "wrote past the last row";
      }
    }
  }
}

TEST(GgmlOpsTest, DecodeDotsOverBlocksEqualDotsOverGatheredRows) {
  // The value cache's layout: runs of kF16Block columns, a block of runs per column block, one
  // run per row in each block (and a block wider than the rows used, as a kv head's is).
  constexpr int64_t kMaxCount = 37;
  constexpr int64_t kMaxN = 290;
  constexpr size_t kBlockStride = (kMaxCount + 3) * kF16Block;
  constexpr size_t kBlocks = (kMaxN + kF16Block - 1) / kF16Block;
  const TypeKernels& f16 = GetTypeKernels(TensorType::kF16, KernelIsa::kPortable);
  const std::vector<float> raw = Values(kMaxN, 3.0F, 17);
  std::vector<float> b(raw.size());
  f16.quantize_activations(raw.data(), 1, kMaxN, reinterpret_cast<std::byte*>(b.data()));
  const std::vector<float> values = Values(kBlocks * kBlockStride, 2.0F, 19);
  std::vector<uint16_t> blocks(values.size());
  for (size_t i = 0; i < blocks.size(); ++i) {
    blocks[i] = FloatToHalf(values[i]);
  }
  // The same rows gathered whole, as DotsF16 reads them.
  std::vector<uint16_t> rows(static_cast<size_t>(kMaxCount * kMaxN));
  for (int64_t j = 0; j < kMaxCount; ++j) {
    for (int64_t i = 0; i < kMaxN; ++i) {
      rows[static_cast<size_t>(j * kMaxN + i)] =
          blocks[static_cast<size_t>(i / kF16Block) * kBlockStride +
                 static_cast<size_t>(j * kF16Block + i % kF16Block)];
    }
  }
  for (KernelIsa isa : Isas()) {
    for (int64_t n :
         std::initializer_list<int64_t>{1, 7, 32, 63, 64, 65, 96, 128, 160, 191, 256, kMaxN}) {
      for (int64_t count : std::initializer_list<int64_t>{1, 5, 15, 16, 17, 32, kMaxCount}) {
        std::vector<float> want(static_cast<size_t>(count));
        DotsF16(rows.data(), kMaxN, count, b.data(), n, isa, want.data());
        std::vector<float> out(static_cast<size_t>(count) + 1, -7.0F);
        std::vector<uint16_t> scratch(static_cast<size_t>(n));
        DotsF16Blocks(blocks.data(), kBlockStride, count, b.data(), n, isa, scratch.data(),
                      out.data());
        for (int64_t j = 0; j < count; ++j) {
          ASSERT_EQ(Bits(out[j]), Bits(want[j]))
              << KernelIsaName(isa) << " n " << n << " count " << count << " row " << j;
        }
        EXPECT_EQ(out.back(), -7.0F) << "wrote past the last row";
      }
    }
  }
}

TEST(GgmlOpsTest, ToHalvesRoundsAsFloatToHalf) {
  std::vector<float> x = Values(1000, 70000.0F, 3);  // past the half range too
  x[5] = NAN;
  x[6] = -INFINITY;
  x[7] = 1e-6F;       // subnormal as a half
  x[8] = 0x1.002p0F;  // a tie, to even
  for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    std::vector<uint16_t> out(x.size() + 1, 0xABCD);
    ToHalves(x.data(), static_cast<int64_t>(x.size()), out.data(), isa);
    for (size_t i = 0; i < x.size(); ++i) {
      ASSERT_EQ(out[i], FloatToHalf(x[i])) << KernelIsaName(isa) << " " << i << " " << x[i];
    }
    EXPECT_EQ(out.back(), 0xABCD) << "wrote past the end";
  }
}

TEST(GgmlOpsTest, TheDefinitions) {
  // Softmax: weights summing to one, the largest where the input is, masked values zero.
  std::vector<float> s = {1.0F, 3.0F, -INFINITY, 2.0F};
  s.resize(32, -INFINITY);
  SoftMax(s.data(), 32, 1.0F, KernelIsa::kPortable);
  double total = 0;
  for (float w : s) {
    total += w;
  }
  EXPECT_NEAR(total, 1.0, 1e-6);
  EXPECT_EQ(s[2], 0.0F);
  EXPECT_NEAR(s[1], std::exp(3.0) / (std::exp(1.0) + std::exp(3.0) + std::exp(2.0)), 1e-6);
  // RMSNorm: x * (1 / sqrt(mean(x²) + eps)) * w.
  const std::vector<float> x = {1.0F, -2.0F, 3.0F, 4.0F};
  const std::vector<float> w = {1.0F, 0.5F, 2.0F, 1.0F};
  std::vector<float> out(4);
  RmsNorm(x.data(), w.data(), 4, 1e-5F, out.data());
  const float scale = 1.0F / std::sqrt(7.5F + 1e-5F);
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(out[i], (x[i] * scale) * w[i]);
  }
  // The rope cache: pair i turns by pos * base^(-2i/dims), the angle accumulated in float.
  const RopeParams rope{.dims = 8, .base = 10000.0F};
  std::vector<float> angles(8);
  RopeAngles(rope, 3, angles.data());
  EXPECT_FLOAT_EQ(angles[0], std::cos(3.0F));
  EXPECT_FLOAT_EQ(angles[3], std::sin(3.0F * std::pow(10000.0F, -0.25F)));
  // NEOX rotates (i, i + dims/2), NORM (2i, 2i + 1): a unit vector in the first slot turns into
  // the partner slot of each style.
  std::vector<float> neox(8, 0.0F);
  std::vector<float> norm(8, 0.0F);
  neox[0] = norm[0] = 1.0F;
  Rope({.dims = 8, .base = 10000.0F, .style = RopeStyle::kNeox}, angles.data(), neox.data(),
       KernelIsa::kPortable);
  Rope({.dims = 8, .base = 10000.0F}, angles.data(), norm.data(), KernelIsa::kPortable);
  EXPECT_FLOAT_EQ(neox[4], std::sin(3.0F));
  EXPECT_EQ(neox[1], 0.0F);
  EXPECT_FLOAT_EQ(norm[1], std::sin(3.0F));
  // The 16-lane product sums exactly when every product is exact and small.
  std::vector<uint16_t> ones(40, FloatToHalf(1.0F));
  std::vector<float> b(40, 0.5F);
  EXPECT_EQ(LanesDotF16(ones.data(), b.data(), 40, KernelIsa::kPortable), 20.0F);
}

}  // namespace
}  // namespace cellhouse::engine
