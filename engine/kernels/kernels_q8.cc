// The portable int8 kernels: the definition every vector variant must reproduce bit for bit.
//
// y[t][r] = Σ over groups g, in order, starting from +0.0, of
//           float(Σ_k w[r][k] q[t][k]) × (scale_w[r][g] × scale_x[t][g])
// where the inner sum is over the group's columns in exact int32 arithmetic, and each × and +
// is one IEEE single-precision operation (this file, like the vector ones, is compiled with
// -ffp-contract=off so that no compiler fuses them).
#include <algorithm>
#include <cmath>
#include <cstring>

#include "engine/kernels/kernels.h"
#include "engine/kernels/kernels_q8_common.h"

namespace cellhouse::engine::internal {

namespace {

void QuantizeGroup(const float* v, int32_t count, int32_t group_size, int8_t* q, float* scale,
                   int32_t* offset_sum) {
  float amax = 0.0F;
  bool finite = true;
  for (int32_t k = 0; k < count; ++k) {
    finite = finite && (v[k] - v[k] == 0.0F);
    amax = std::max(amax, std::fabs(v[k]));
  }
  std::fill_n(q, group_size, static_cast<int8_t>(0));
  if (!finite) {
    *scale = kNonFiniteScale;
    *offset_sum = 0;
    return;
  }
  const Q8GroupScale s = GroupScale(amax);
  int32_t sum = 0;
  for (int32_t k = 0; k < count; ++k) {
    float r = v[k] * s.inverse;
    r = r + kRoundMagic;
    r = r - kRoundMagic;
    q[k] = static_cast<int8_t>(static_cast<int32_t>(r));
    sum += q[k];
  }
  *scale = s.scale;
  *offset_sum = kQ8Offset * sum;
}

// The exact integer dot product of row `lane` of a tile with one group of activations.
int32_t GroupSum(const std::byte* tile, int32_t lane, const int8_t* q, int32_t group_size) {
  int32_t sum = 0;
  for (int32_t k = 0; k < group_size; ++k) {
    sum += static_cast<int32_t>(static_cast<int8_t>(tile[Q8WeightOffset(lane, k)])) * q[k];
  }
  return sum;
}

}  // namespace

Q8Activations QuantizeQ8Portable(const float* x, int32_t n, int32_t cols, int32_t group_size,
                                 const Q8ActivationBuffer& out) {
  const int32_t groups = (cols + group_size - 1) / group_size;
  for (int32_t t = 0; t < n; ++t) {
    for (int32_t g = 0; g < groups; ++g) {
      const int32_t begin = g * group_size;
      const size_t at = static_cast<size_t>(g) * n + t;
      QuantizeGroup(x + static_cast<size_t>(t) * cols + begin, std::min(group_size, cols - begin),
                    group_size, out.q + at * group_size, out.scale + at, out.offset_sum + at);
    }
  }
  return {.q = out.q,
          .scale = out.scale,
          .offset_sum = out.offset_sum,
          .n = n,
          .groups = groups,
          .group_size = group_size};
}

void MatMulQ8Portable(const Q8Matrix& w, const Q8Activations& x, float* y) {
  const Q8Shape& s = w.shape;
  for (int32_t b = 0; b < s.RowBlocks(); ++b) {
    const int32_t rows = std::min(kQ8TileRows, s.rows - b * kQ8TileRows);
    for (int32_t t = 0; t < x.n; ++t) {
      float acc[kQ8TileRows] = {};
      for (int32_t g = 0; g < s.Groups(); ++g) {
        const std::byte* tile = w.Tile(b, g);
        const size_t at = static_cast<size_t>(g) * x.n + t;
        const int8_t* q = x.q + at * s.group_size;
        const float sx = x.scale[at];
        for (int32_t i = 0; i < kQ8TileRows; ++i) {
          const int32_t isum = GroupSum(tile, i, q, s.group_size);
          const float sw = LoadFloat(tile + Q8ScaleOffset(s, i));
          const float d = sw * sx;
          const float term = static_cast<float>(isum) * d;
          acc[i] = acc[i] + term;
        }
      }
      std::copy_n(acc, rows,
                  y + static_cast<size_t>(t) * s.rows + static_cast<size_t>(b) * kQ8TileRows);
    }
  }
}

}  // namespace cellhouse::engine::internal
