// The int8 kernels: quantizing a matrix and reading a row back; every vector variant's
// activation quantization and matrix product bit-identical to the portable one (for any weight
// byte, -128 included, and any shape: partial row blocks and groups, both group sizes, one token
// or many); the portable product against a double-precision evaluation of the same int8 values.
#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/formats/quantize.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/q8_matrix.h"

namespace cellhouse::engine {
namespace {

// splitmix64, so that every input is a pure function of its seed.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Uniform in [-1, 1), scaled; a few values ten times larger, as activations have outliers.
std::vector<float> RandomFloats(size_t count, uint64_t seed, float scale) {
  std::vector<float> v(count);
  for (size_t i = 0; i < count; ++i) {
    const uint64_t bits = Mix(seed * 1000003 + i);
    const float unit = static_cast<float>(bits >> 40) * (1.0F / 16777216.0F);
    v[i] = (2.0F * unit - 1.0F) * scale * ((bits & 0xFF) == 0 ? 10.0F : 1.0F);
  }
  return v;
}

std::vector<Q8Kernel> VectorVariants() {
  std::vector<Q8Kernel> kernels;
  for (Q8Kernel k : {Q8Kernel::kAvx2, Q8Kernel::kAvx512Vnni}) {
    if (Q8KernelSupported(k)) {
      kernels.push_back(k);
    }
  }
  return kernels;
}

Kernels Variant(Q8Kernel q8) {
  Kernels k = SelectKernels(MatVecKernel::kAuto, q8);
  EXPECT_EQ(k.q8_kind, q8);
  return k;
}

// Activation buffers for n vectors of `cols` values, at either group size.
struct ActivationStore {
  ActivationStore(int32_t n, int32_t cols) {
    const Q8ActivationCapacity c = Q8ActivationBytes(n, cols);
    q.assign(c.q_bytes, int8_t{99});  // not zero: padding must be written
    scale.assign(c.groups, -1.0F);
    offset_sum.assign(c.groups, -1);
  }
  Q8ActivationBuffer Buffer() { return {q.data(), scale.data(), offset_sum.data()}; }
  std::vector<int8_t> q;
  std::vector<float> scale;
  std::vector<int32_t> offset_sum;
};

bool SameBits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

bool SameBits(std::span<const float> a, std::span<const float> b) {
  return std::equal(a.begin(), a.end(), b.begin(), b.end(),
                    [](float x, float y) { return SameBits(x, y); });
}

TEST(Q8MatrixTest, QuantizedRowsReadBackWithinHalfAStep) {
  for (int32_t group_size : {32, 64}) {
    const Q8Shape shape{.rows = 21, .cols = 70, .group_size = group_size};
    EXPECT_EQ(shape.RowBlocks(), 2);
    EXPECT_EQ(shape.Groups(), group_size == 32 ? 3 : 2);
    EXPECT_EQ(shape.TileBytes(), static_cast<size_t>(16 * group_size + 64));
    std::vector<float> w = RandomFloats(static_cast<size_t>(shape.rows) * shape.cols, 5, 0.2F);
    w[3] = 0.0F;  // a zero among others; and an all-zero group:
    for (int32_t c = 0; c < std::min(group_size, shape.cols); ++c) {
      w[static_cast<size_t>(2) * shape.cols + c] = 0.0F;
    }
    std::vector<std::byte> tiles(*shape.Bytes());
    ASSERT_TRUE(QuantizeMatrix(w.data(), shape, tiles.data()));
    const Q8Matrix m{.data = tiles.data(), .shape = shape};
    std::vector<float> row(shape.cols);
    for (int32_t r = 0; r < shape.rows; ++r) {
      DequantizeRow(m, r, row.data());
      for (int32_t g = 0; g < shape.Groups(); ++g) {
        float amax = 0;
        for (int32_t c = g * group_size; c < std::min(shape.cols, (g + 1) * group_size); ++c) {
          amax = std::max(amax, std::fabs(w[static_cast<size_t>(r) * shape.cols + c]));
        }
        for (int32_t c = g * group_size; c < std::min(shape.cols, (g + 1) * group_size); ++c) {
          const float original = w[static_cast<size_t>(r) * shape.cols + c];
          EXPECT_LE(std::fabs(row[c] - original), amax / 127.0F * 0.5F * 1.0001F)
              << "row " << r << " col " << c;
        }
      }
    }
  }
}

TEST(Q8MatrixTest, NonFiniteWeightsAreRefused) {
  const Q8Shape shape{.rows = 3, .cols = 40, .group_size = 32};
  std::vector<float> w(120, 0.5F);
  w[47] = std::numeric_limits<float>::infinity();
  std::vector<std::byte> tiles(*shape.Bytes());
  Status s = QuantizeMatrix(w.data(), shape, tiles.data());
  ASSERT_FALSE(s);
  EXPECT_EQ(s.error().message(), "row 1 column 7 is not a finite number");
}

// Every value within half a step of its group's scale (zero past the last column, or in a group
// with a non-finite value); offset_sum 128 × Σ q.
void ExpectFaithful(const Q8Activations& a, const std::vector<float>& x, int32_t cols,
                    const std::string& what) {
  for (int32_t t = 0; t < a.n; ++t) {
    for (int32_t g = 0; g < a.groups; ++g) {
      const size_t at = static_cast<size_t>(g) * a.n + t;
      const float scale = a.scale[at];
      int32_t sum = 0;
      for (int32_t j = 0; j < a.group_size; ++j) {
        const int32_t col = g * a.group_size + j;
        const int8_t q = a.q[at * a.group_size + j];
        sum += q;
        EXPECT_GE(q, -127);
        if (col >= cols || std::isnan(scale)) {
          EXPECT_EQ(q, 0) << what;
        } else {
          EXPECT_LE(
              std::fabs(static_cast<float>(q) * scale - x[static_cast<size_t>(t) * cols + col]),
              scale * 0.5F * 1.0001F)
              << what;
        }
      }
      EXPECT_EQ(a.offset_sum[at], 128 * sum) << what;
    }
  }
}

// Activations with outliers, a NaN, an infinity and a group of zeros where the shape allows.
std::vector<float> TestActivations(int32_t n, int32_t cols) {
  std::vector<float> x = RandomFloats(static_cast<size_t>(n) * cols, cols + n, 3.0F);
  if (cols > 40) {
    x[5] = std::numeric_limits<float>::quiet_NaN();        // group 0 of token 0
    x[cols - 1] = std::numeric_limits<float>::infinity();  // last group of token 0
    if (n > 1) {
      std::fill_n(x.begin() + cols, std::min(cols, 32), 0.0F);  // zeros: token 1
    }
  }
  return x;
}

TEST(Q8KernelsTest, ActivationQuantizationIsIdenticalInEveryVariant) {
  const Kernels portable = Variant(Q8Kernel::kPortable);
  for (Q8Kernel variant : VectorVariants()) {
    const Kernels k = Variant(variant);
    for (int32_t group_size : {32, 64}) {
      for (int32_t cols : {1, 7, 31, 32, 33, 64, 100, 768}) {
        for (int32_t n : {1, 3}) {
          const std::vector<float> x = TestActivations(n, cols);
          ActivationStore a(n, cols);
          ActivationStore b(n, cols);
          const Q8Activations qa = portable.q8_quantize(x.data(), n, cols, group_size, a.Buffer());
          const Q8Activations qb = k.q8_quantize(x.data(), n, cols, group_size, b.Buffer());
          const std::string what = std::string(Q8KernelName(variant)) + " group " +
                                   std::to_string(group_size) + " cols " + std::to_string(cols) +
                                   " n " + std::to_string(n);
          ASSERT_EQ(qa.groups, (cols + group_size - 1) / group_size) << what;
          ASSERT_EQ(qb.groups, qa.groups) << what;
          const size_t entries = static_cast<size_t>(qa.groups) * n;
          EXPECT_TRUE(std::equal(a.q.begin(), a.q.begin() + entries * group_size, b.q.begin()))
              << what;
          EXPECT_TRUE(
              SameBits(std::span(a.scale).first(entries), std::span(b.scale).first(entries)))
              << what;
          EXPECT_TRUE(std::equal(a.offset_sum.begin(), a.offset_sum.begin() + entries,
                                 b.offset_sum.begin()))
              << what;
          ExpectFaithful(qa, x, cols, what);
        }
      }
    }
  }
}

struct ProductCase {
  Q8Shape shape;
  int32_t n;
};

// Random tile bytes, all 256 values (so -128 too, which the quantizer never writes), with
// ordinary scales.
std::vector<std::byte> RandomTiles(const Q8Shape& shape, uint64_t seed) {
  std::vector<std::byte> tiles(*shape.Bytes());
  for (size_t i = 0; i < tiles.size(); ++i) {
    tiles[i] = static_cast<std::byte>(Mix(seed + i) & 0xFF);
  }
  const size_t tile_bytes = shape.TileBytes();
  for (size_t t = 0; t < tiles.size() / tile_bytes; ++t) {
    std::vector<float> scales = RandomFloats(kQ8TileRows, seed * 31 + t, 0.01F);
    std::memcpy(tiles.data() + (t + 1) * tile_bytes - kQ8LineBytes, scales.data(), kQ8LineBytes);
  }
  return tiles;
}

std::vector<ProductCase> ProductCases() {
  std::vector<ProductCase> cases;
  for (int32_t group_size : {32, 64}) {
    for (int32_t rows : {1, 15, 16, 17, 40}) {
      for (int32_t cols : {1, 20, 32, 33, 64, 100, 129}) {
        for (int32_t n : {1, 2, 5}) {
          cases.push_back({{.rows = rows, .cols = cols, .group_size = group_size}, n});
        }
      }
    }
  }
  cases.push_back({{.rows = 48, .cols = 256, .group_size = 32}, 130});
  return cases;
}

std::string Describe(const ProductCase& c) {
  return std::to_string(c.shape.rows) + "x" + std::to_string(c.shape.cols) + " groups of " +
         std::to_string(c.shape.group_size) + ", n " + std::to_string(c.n);
}

// The portable product against the same int8 values in double precision.
void ExpectExact(const Q8Matrix& w, const Q8Activations& a, const std::vector<float>& y,
                 const std::string& what) {
  const Q8Shape& s = w.shape;
  for (int32_t t = 0; t < a.n; ++t) {
    for (int32_t r = 0; r < s.rows; ++r) {
      const int32_t lane = r % kQ8TileRows;
      double sum = 0;
      double magnitude = 0;
      for (int32_t g = 0; g < a.groups; ++g) {
        const std::byte* tile = w.Tile(r / kQ8TileRows, g);
        float sw = 0;
        std::memcpy(&sw, tile + Q8ScaleOffset(s, lane), sizeof(sw));
        const size_t at = static_cast<size_t>(g) * a.n + t;
        for (int32_t k = 0; k < s.group_size; ++k) {
          const auto wq = static_cast<int8_t>(tile[Q8WeightOffset(lane, k)]);
          const double term = static_cast<double>(sw) * wq * a.scale[at] *
                              a.q[at * static_cast<size_t>(s.group_size) + k];
          sum += term;
          magnitude += std::fabs(term);
        }
      }
      EXPECT_NEAR(y[static_cast<size_t>(t) * s.rows + r], sum, 2e-6 * magnitude + 1e-30)
          << what << " token " << t << " row " << r;
    }
  }
}

// Each token quantized and multiplied alone gives the batch's row of results bit for bit.
void ExpectTokenByTokenSame(const Q8Matrix& w, const std::vector<float>& x, int32_t n,
                            const std::vector<float>& batch, const std::string& what) {
  const Q8Shape& s = w.shape;
  const Kernels portable = Variant(Q8Kernel::kPortable);
  for (int32_t t = 0; t < n; ++t) {
    ActivationStore one(1, s.cols);
    const Q8Activations a1 = portable.q8_quantize(x.data() + static_cast<size_t>(t) * s.cols, 1,
                                                  s.cols, s.group_size, one.Buffer());
    std::vector<float> y(s.rows);
    for (Q8Kernel variant : {Q8Kernel::kPortable, Q8Kernel::kAvx2, Q8Kernel::kAvx512Vnni}) {
      if (!Q8KernelSupported(variant)) {
        continue;
      }
      Variant(variant).q8_matmul(w, a1, y.data());
      EXPECT_TRUE(SameBits(y, std::span(batch).subspan(static_cast<size_t>(t) * s.rows, s.rows)))
          << Q8KernelName(variant) << " " << what << ": token " << t << " alone";
    }
  }
}

TEST(Q8KernelsTest, ProductsAreIdenticalInEveryVariantAndForAnyBatch) {
  const Kernels portable = Variant(Q8Kernel::kPortable);
  uint64_t seed = 1;
  for (const ProductCase& c : ProductCases()) {
    ++seed;
    const std::string what = Describe(c);
    const std::vector<std::byte> tiles = RandomTiles(c.shape, seed);
    const Q8Matrix w{.data = tiles.data(), .shape = c.shape};
    const std::vector<float> x =
        RandomFloats(static_cast<size_t>(c.n) * c.shape.cols, seed * 7, 2.0F);
    ActivationStore store(c.n, c.shape.cols);
    const Q8Activations a =
        portable.q8_quantize(x.data(), c.n, c.shape.cols, c.shape.group_size, store.Buffer());
    const size_t outputs = static_cast<size_t>(c.n) * c.shape.rows;
    // A guard value past the end: nothing may write beyond the last row.
    std::vector<float> expected(outputs + 1, 123.0F);
    portable.q8_matmul(w, a, expected.data());
    ASSERT_EQ(expected[outputs], 123.0F) << what;
    ExpectExact(w, a, expected, what);
    for (Q8Kernel variant : VectorVariants()) {
      std::vector<float> y(outputs + 1, 123.0F);
      Variant(variant).q8_matmul(w, a, y.data());
      EXPECT_TRUE(SameBits(y, expected)) << Q8KernelName(variant) << " " << what;
    }
    if (c.n > 1) {
      ExpectTokenByTokenSame(w, x, c.n, expected, what);
    }
  }
}

}  // namespace
}  // namespace cellhouse::engine
