#include "engine/kernels/q8_matrix.h"

#include <cstring>

#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

std::optional<uint64_t> Q8Shape::Bytes() const {
  return CheckedMul({static_cast<uint64_t>(RowBlocks()), static_cast<uint64_t>(Groups()),
                     static_cast<uint64_t>(TileBytes())});
}

void DequantizeRow(const Q8Matrix& m, int32_t row, float* out) {
  const Q8Shape& s = m.shape;
  const int32_t block = row / kQ8TileRows;
  const int32_t lane = row % kQ8TileRows;
  for (int32_t g = 0; g < s.Groups(); ++g) {
    const std::byte* tile = m.Tile(block, g);
    float scale = 0;
    std::memcpy(&scale, tile + Q8ScaleOffset(s, lane), sizeof(scale));
    for (int32_t k = 0; k < s.group_size; ++k) {
      const int64_t col = static_cast<int64_t>(g) * s.group_size + k;
      if (col >= s.cols) {
        return;
      }
      const auto q = static_cast<int8_t>(tile[Q8WeightOffset(lane, k)]);
      out[col] = static_cast<float>(q) * scale;
    }
  }
}

Q8ActivationCapacity Q8ActivationBytes(int64_t n, int64_t cols) {
  // Padded to whole groups: at most the next multiple of 64 at either group size.
  const auto padded = static_cast<uint64_t>((cols + 63) / 64 * 64);
  const auto groups = static_cast<uint64_t>((cols + 31) / 32);
  return {.q_bytes = static_cast<uint64_t>(n) * padded,
          .groups = static_cast<uint64_t>(n) * groups};
}

}  // namespace cellhouse::engine
