#include "tests/engine/kernel_inputs.h"

#include <cmath>
#include <cstring>

#include "engine/kernels/half.h"

namespace cellhouse::engine::testing {

namespace {

// Uniform in [0, 1).
double Unit(uint64_t bits) { return static_cast<double>(bits >> 11) * 0x1.0p-53; }

uint16_t ScaleHalf(uint64_t bits, ScaleRange range) {
  const auto sign = static_cast<uint16_t>((bits & 1U) << 15);
  if (range == ScaleRange::kExtreme) {
    switch ((bits >> 1) % 5) {
      case 0:
        return sign;  // zero
      case 1:
        return static_cast<uint16_t>(sign | 0x7BFF);  // 65504
      case 2:
        return static_cast<uint16_t>(sign | (1 + (bits >> 8) % 0x3FF));  // subnormal
      default:
        break;
    }
  }
  const double magnitude =
      std::ldexp(1.0 + Unit(Mix(bits)), -4 - static_cast<int>((bits >> 4) % 7));
  return static_cast<uint16_t>(sign | FloatToHalf(static_cast<float>(magnitude)));
}

void PutHalf(std::byte* p, uint16_t h) { std::memcpy(p, &h, sizeof(h)); }

// kExtreme: some values huge, some subnormal, for the type (F16 stays finite).
float FloatValue(uint64_t bits, ScaleRange range, TensorType type) {
  double v = 2.0 * Unit(bits) - 1.0;
  if (range == ScaleRange::kExtreme) {
    const bool half = type == TensorType::kF16;
    switch ((bits >> 3) % 4) {
      case 0:
        v = std::ldexp(v, half ? 15 : 20);
        break;
      case 1:
        v = std::ldexp(v, half ? -20 : -140);  // subnormal
        break;
      default:
        break;
    }
  }
  return static_cast<float>(v);
}

}  // namespace

uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

std::vector<std::byte> KernelWeights(TensorType type, int64_t rows, int64_t cols, uint64_t seed,
                                     ScaleRange range) {
  const TypeInfo& info = GetTypeInfo(type);
  const uint64_t count = static_cast<uint64_t>(rows) * static_cast<uint64_t>(cols);
  std::vector<std::byte> out(*RowBytes(info, count));
  uint64_t state = Mix(seed * 0x100000001B3ULL + static_cast<uint64_t>(type));
  auto next = [&state] { return state = Mix(state); };
  switch (type) {
    case TensorType::kF32:
      for (uint64_t i = 0; i < count; ++i) {
        const float v = FloatValue(next(), range, type);
        std::memcpy(out.data() + 4 * i, &v, sizeof(v));
      }
      return out;
    case TensorType::kF16:
      for (uint64_t i = 0; i < count; ++i) {
        PutHalf(out.data() + 2 * i, FloatToHalf(FloatValue(next(), range, type)));
      }
      return out;
    case TensorType::kBF16:
      for (uint64_t i = 0; i < count; ++i) {
        const float v = FloatValue(next(), range, type);
        uint32_t bits = 0;
        std::memcpy(&bits, &v, sizeof(bits));
        PutHalf(out.data() + 2 * i, static_cast<uint16_t>(bits >> 16));  // truncated: any bf16
      }
      return out;
    default:
      break;
  }
  for (std::byte& b : out) {
    b = static_cast<std::byte>(next() & 0xFF);
  }
  // The scale fields of each block (byte offsets, ggml-common.h).
  std::vector<size_t> fields;
  switch (type) {
    case TensorType::kQ4_0:
    case TensorType::kQ5_0:
    case TensorType::kQ8_0:
      fields = {0};
      break;
    case TensorType::kQ4_1:
    case TensorType::kQ5_1:
    case TensorType::kQ4_K:
    case TensorType::kQ5_K:
      fields = {0, 2};
      break;
    case TensorType::kQ6_K:
      fields = {208};
      break;
    default:
      break;
  }
  for (size_t b = 0; b < out.size() / info.block_bytes; ++b) {
    for (size_t f : fields) {
      PutHalf(out.data() + b * info.block_bytes + f, ScaleHalf(next(), range));
    }
  }
  return out;
}

std::vector<float> KernelActivations(int64_t n, int64_t cols, uint64_t seed) {
  std::vector<float> x(static_cast<size_t>(n * cols));
  uint64_t state = Mix(seed ^ 0x5DEECE66DULL);
  for (int64_t t = 0; t < n; ++t) {
    for (int64_t c = 0; c < cols; ++c) {
      state = Mix(state);
      double v = 4.0 * Unit(state) - 2.0;
      switch (state % 61) {
        case 0:
          v *= 20.0;  // an outlier
          break;
        case 1:
          v = 0.0;
          break;
        case 2:
          v = std::floor(v * 4.0) / 4.0 + 0.125;  // often a tie once scaled
          break;
        default:
          break;
      }
      x[static_cast<size_t>(t * cols + c)] = static_cast<float>(v);
    }
    if (cols > 64) {
      const int64_t block = 1 + static_cast<int64_t>(Mix(seed + static_cast<uint64_t>(t)) %
                                                     static_cast<uint64_t>(cols / 32 - 1));
      for (int64_t c = 32 * block; c < 32 * block + 32; ++c) {
        x[static_cast<size_t>(t * cols + c)] = 0.0F;
      }
    }
  }
  return x;
}

uint64_t Fnv64(const void* data, size_t size) {
  const auto* p = static_cast<const unsigned char*>(data);
  uint64_t h = 0xCBF29CE484222325ULL;
  for (size_t i = 0; i < size; ++i) {
    h = (h ^ p[i]) * 0x100000001B3ULL;
  }
  return h;
}

}  // namespace cellhouse::engine::testing
