// The GGUF type kernels (engine/kernels/type_kernels.h), per type:
//  - rows read back, activations quantized and dot products, against this file's own decoding of
//    the block layouts (ggml-common.h), written here from the layout and not from the kernels;
//  - the exact bits llama.cpp's kernels give for the same inputs (recorded in
//    testdata/ggml_reference_vectors.txt by ggml_reference_vectors.cc);
//  - every instruction set bit-identical to the portable code, on random and extreme inputs;
//  - batch invariance: a row's outputs do not depend on n, the row range or the other rows;
//  - weight quantizers: valid blocks, within each type's error bound.
#include "engine/kernels/type_kernels.h"

#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include "engine/kernels/half.h"
#include "tests/engine/kernel_inputs.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

using testing::KernelActivations;
using testing::KernelWeights;
using testing::ScaleRange;

constexpr TensorType kWeightTypes[] = {
    TensorType::kF32,  TensorType::kF16,  TensorType::kBF16, TensorType::kQ4_0,
    TensorType::kQ4_1, TensorType::kQ5_0, TensorType::kQ5_1, TensorType::kQ8_0,
    TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K,
};

struct Kind {
  TensorType type;
  DotOrder order;
};

std::vector<Kind> AllKinds() {
  std::vector<Kind> kinds;
  for (TensorType t : kWeightTypes) {
    kinds.push_back({t, DotOrder::kVecDot});
  }
  kinds.push_back({TensorType::kQ4_0, DotOrder::kInterleaved8});
  kinds.push_back({TensorType::kQ8_0, DotOrder::kBlockSums});
  kinds.push_back({TensorType::kQ4_K, DotOrder::kBlockSums});
  kinds.push_back({TensorType::kQ5_K, DotOrder::kBlockSums});
  kinds.push_back({TensorType::kQ6_K, DotOrder::kBlockSums});
  return kinds;
}

std::string Name(const Kind& k) {
  return std::string(GetTypeInfo(k.type).name) +
         (k.order == DotOrder::kInterleaved8 ? " (interleaved 8)"
          : k.order == DotOrder::kBlockSums  ? " (block sums)"
                                             : "");
}

// The vector instruction sets this CPU has; the others are skipped with one line each.
std::vector<KernelIsa> VectorIsas() {
  std::vector<KernelIsa> isas;
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (KernelIsaSupported(isa)) {
      isas.push_back(isa);
    } else {
      std::printf("skipping %s: this CPU lacks it\n", std::string(KernelIsaName(isa)).c_str());
    }
  }
  return isas;
}

bool SameBits(float a, float b) { return std::bit_cast<uint32_t>(a) == std::bit_cast<uint32_t>(b); }

// ---- This file's own reading of the layouts (ggml-common.h), in double precision. ----

uint16_t U16(const std::byte* p) {
  return static_cast<uint16_t>(static_cast<unsigned>(p[0]) | (static_cast<unsigned>(p[1]) << 8));
}

double Half(const std::byte* p) {
  const uint16_t h = U16(p);
  const int exponent = (h >> 10) & 31;
  const int mantissa = h & 1023;
  const double magnitude =
      exponent == 0 ? std::ldexp(mantissa, -24) : std::ldexp(1024 + mantissa, exponent - 25);
  return (h & 0x8000) != 0 ? -magnitude : magnitude;
}

uint8_t Byte(const std::byte* p, size_t i) { return static_cast<uint8_t>(p[i]); }

// The 6-bit scale (which = 0) or min (which = 1) of sub-block s of a q4_K/q5_K block's 12 bytes.
int KScale(const std::byte* s, int sub, int which) {
  if (sub < 4) {
    return Byte(s, sub + 4 * which) & 63;
  }
  const int low = which == 0 ? (Byte(s, sub + 4) & 15) : (Byte(s, sub + 4) >> 4);
  return low | ((Byte(s, sub - 4 + 4 * which) >> 6) << 4);
}

// A byte as two's complement.
int Signed(uint8_t b) { return b >= 128 ? b - 256 : b; }

// One block of Q4_0 (d, qs[16]), Q4_1 (d, m, qs[16]), Q5_0 (d, qh[4], qs[16]) or Q5_1 (d, m,
// qh[4], qs[16]): value k < 16 is qs[k]'s low nibble, k >= 16 qs[k - 16]'s high one, and for
// Q5 bit k of qh its fifth bit.
void DecodeNibbleBlock(TensorType type, const std::byte* p, double* y) {
  const bool five = type == TensorType::kQ5_0 || type == TensorType::kQ5_1;
  const bool min = type == TensorType::kQ4_1 || type == TensorType::kQ5_1;
  const size_t qh_at = min ? 4 : 2;
  const size_t qs_at = qh_at + (five ? 4 : 0);
  const uint32_t qh = five ? (static_cast<uint32_t>(U16(p + qh_at)) |
                              (static_cast<uint32_t>(U16(p + qh_at + 2)) << 16))
                           : 0;
  for (size_t k = 0; k < 32; ++k) {
    const int nibble = k < 16 ? (Byte(p, qs_at + k) & 15) : (Byte(p, qs_at + k - 16) >> 4);
    const int q = nibble | (five ? static_cast<int>((qh >> k) & 1) << 4 : 0);
    y[k] = min ? q * Half(p) + Half(p + 2) : (q - (five ? 16 : 8)) * Half(p);
  }
}

// One block of Q4_K (d, dmin, scales[12], qs[128]) or Q5_K (d, dmin, scales[12], qh[32],
// qs[128]): sub-block s of 32 takes the low (s even) or high nibbles of qs[32 (s / 2) ..], and
// for Q5_K bit s of qh[l]. QuantK is value k's q (0-15 or 0-31).
int QuantK(bool five, const std::byte* p, size_t k) {
  const int sub = static_cast<int>(k / 32);
  const size_t l = k % 32;
  const uint8_t byte = Byte(p, (five ? 48 : 16) + 32 * (k / 64) + l);
  int q = sub % 2 == 0 ? (byte & 15) : (byte >> 4);
  if (five) {
    q |= ((Byte(p, 16 + l) >> sub) & 1) << 4;
  }
  return q;
}

// Value = d * scale * q - dmin * min.
void DecodeKBlock(bool five, const std::byte* p, double* y) {
  for (size_t k = 0; k < 256; ++k) {
    const int sub = static_cast<int>(k / 32);
    y[k] =
        Half(p) * KScale(p + 4, sub, 0) * QuantK(five, p, k) - Half(p + 2) * KScale(p + 4, sub, 1);
  }
}

// One Q6_K block (ql[128], qh[64], scales[16], d): value 128h + 32i + l has low bits from
// ql[64h + 32 (i % 2) + l] (low nibble for i < 2), top bits from qh[32h + l] >> 2i. Quant6K is
// value k's q - 32 (-32 to 31).
int Quant6K(const std::byte* p, size_t k) {
  const size_t h = k / 128;
  const size_t i = (k % 128) / 32;
  const size_t l = k % 32;
  const uint8_t low = Byte(p, 64 * h + 32 * (i % 2) + l);
  return ((i < 2 ? (low & 15) : (low >> 4)) | (((Byte(p, 128 + 32 * h + l) >> (2 * i)) & 3) << 4)) -
         32;
}

void DecodeQ6KBlock(const std::byte* p, double* y) {
  for (size_t k = 0; k < 256; ++k) {
    y[k] = Half(p + 208) * Signed(Byte(p, 192 + k / 16)) * Quant6K(p, k);
  }
}

// The values of `cols` weights of `type` at row.
std::vector<double> DecodeRow(TensorType type, const std::byte* row, int64_t cols) {
  std::vector<double> v(static_cast<size_t>(cols));
  if (type == TensorType::kF32 || type == TensorType::kF16 || type == TensorType::kBF16) {
    for (int64_t i = 0; i < cols; ++i) {
      if (type == TensorType::kF32) {
        float f = 0;
        std::memcpy(&f, row + 4 * i, 4);
        v[i] = f;
      } else if (type == TensorType::kF16) {
        v[i] = Half(row + 2 * i);
      } else {
        v[i] = std::bit_cast<float>(static_cast<uint32_t>(U16(row + 2 * i)) << 16);
      }
    }
    return v;
  }
  const TypeInfo& info = GetTypeInfo(type);
  for (int64_t b = 0; b < cols / info.block_size; ++b) {
    const std::byte* p = row + b * info.block_bytes;
    double* y = v.data() + b * info.block_size;
    if (type == TensorType::kQ8_0) {  // d, qs[32]
      for (size_t k = 0; k < 32; ++k) {
        y[k] = Signed(Byte(p, 2 + k)) * Half(p);
      }
    } else if (type == TensorType::kQ4_K || type == TensorType::kQ5_K) {
      DecodeKBlock(type == TensorType::kQ5_K, p, y);
    } else if (type == TensorType::kQ6_K) {
      DecodeQ6KBlock(p, y);
    } else {
      DecodeNibbleBlock(type, p, y);
    }
  }
  return v;
}

// An activation row of the partner type: the values it stands for.
struct DecodedActivations {
  std::vector<double> value;
  std::vector<double> scale;  // per block (Q8_*); empty for float partners
  std::vector<int> q;         // the integers (Q8_*)
  std::vector<double> s;      // Q8_1's s per block
  std::vector<int> bsums;     // Q8_K's per 16 values
};

DecodedActivations DecodeActivations(TensorType partner, const std::byte* row, int64_t cols) {
  DecodedActivations a;
  a.value.resize(static_cast<size_t>(cols));
  if (partner == TensorType::kF32 || partner == TensorType::kF16 || partner == TensorType::kBF16) {
    a.value = DecodeRow(TensorType::kF32, row, cols);  // F16/BF16: rounded, kept as floats
    return a;
  }
  const int block = partner == TensorType::kQ8_K ? 256 : 32;
  const size_t bytes = partner == TensorType::kQ8_0 ? 34 : partner == TensorType::kQ8_1 ? 36 : 292;
  for (int64_t b = 0; b < cols / block; ++b) {
    const std::byte* p = row + b * bytes;
    double d = 0;
    size_t qs = 0;
    if (partner == TensorType::kQ8_K) {
      float f = 0;
      std::memcpy(&f, p, 4);
      d = f;
      qs = 4;
      for (size_t i = 0; i < 16; ++i) {
        a.bsums.push_back(static_cast<int16_t>(U16(p + 260 + 2 * i)));
      }
    } else {
      d = Half(p);
      qs = partner == TensorType::kQ8_1 ? 4 : 2;
      if (partner == TensorType::kQ8_1) {
        a.s.push_back(Half(p + 2));
      }
    }
    a.scale.push_back(d);
    for (int k = 0; k < block; ++k) {
      const int q = Signed(Byte(p, qs + k));
      a.q.push_back(q);
      a.value[b * block + k] = q * d;
    }
  }
  return a;
}

std::vector<std::byte> Quantize(const TypeKernels& k, const std::vector<float>& x, int32_t n,
                                int64_t cols) {
  std::vector<std::byte> out(*ActivationRowBytes(k.type, cols) * n);
  k.quantize_activations(x.data(), n, cols, out.data());
  return out;
}

// ---- Reading rows back. ----

TEST(TypeKernelsTest, RowsReadBackAsTheLayoutSays) {
  for (TensorType t : kWeightTypes) {
    const int64_t cols = 512;
    const std::vector<std::byte> w = KernelWeights(t, 3, cols, 11, ScaleRange::kOrdinary);
    const size_t row_bytes = *RowBytes(GetTypeInfo(t), cols);
    const TypeKernels& k = GetTypeKernels(t, KernelIsa::kPortable);
    std::vector<float> out(cols);
    for (int r = 0; r < 3; ++r) {
      k.dequantize(w.data() + r * row_bytes, cols, out.data());
      const std::vector<double> expected = DecodeRow(t, w.data() + r * row_bytes, cols);
      for (int64_t i = 0; i < cols; ++i) {
        // Exact but for the K-quants' one rounding of a difference (and Q4_1/Q5_1's sum).
        ASSERT_NEAR(out[i], expected[i], std::fabs(expected[i]) * 0x1p-23 + 1e-30)
            << GetTypeInfo(t).name << " row " << r << " value " << i;
      }
    }
  }
}

// ---- Activations. ----

TEST(TypeKernelsTest, Q8_0ActivationsUseTheX86ScaleAndRoundHalvesToEven) {
  // amax 127: d = 1, id = 127 / 127 = 1, so the products are the values: 2.5 -> 2, 3.5 -> 4 and
  // -2.5 -> -2 (ggml's C reference would round them away from zero: 3, 4, -3).
  std::vector<float> x(32, 0.0F);
  x[0] = 127.0F;
  x[1] = 2.5F;
  x[2] = 3.5F;
  x[3] = -2.5F;
  x[4] = 0.49F;
  const TypeKernels& k = GetTypeKernels(TensorType::kQ8_0, KernelIsa::kPortable);
  const std::vector<std::byte> q = Quantize(k, x, 1, 32);
  EXPECT_EQ(U16(q.data()), 0x3C00);  // d = 1.0
  const int expected[] = {127, 2, 4, -2, 0};
  for (int i = 0; i < 5; ++i) {
    EXPECT_EQ(static_cast<int8_t>(q[2 + i]), expected[i]) << i;
  }
  // id = 127 / amax, not 1 / half(d): amax 3 gives d = 3/127 (0x2610 as a half) yet x = 1.5 ->
  // 1.5 * 127 / 3 = 63.5 -> 64 (even), where 1.5 / half(d) = 63.48 would give 63.
  std::fill(x.begin(), x.end(), 0.0F);
  x[0] = 3.0F;
  x[1] = 1.5F;
  const std::vector<std::byte> q2 = Quantize(k, x, 1, 32);
  EXPECT_EQ(static_cast<int8_t>(q2[3]), 64);
}

// F16 activations are rounded in software by the portable kernels and by F16C's vcvtps2ph in
// the vector ones: the same bits for a spread of every float pattern and for the edges (ties,
// the subnormal range, overflow to infinity, NaNs with payloads).
TEST(TypeKernelsTest, F16ActivationsRoundAlikeInEveryVariant) {
  std::vector<uint32_t> bits = {0x00000000U, 0x80000000U, 0x7F800000U, 0xFF800000U, 0x7FC00000U,
                                0x7F800001U, 0xFFA5A5A5U, 0x7FFFFFFFU, 0x477FE000U, 0x477FEFFFU,
                                0x477FF000U, 0x33800000U, 0x33000000U, 0x33000001U, 0x387FC000U,
                                0x38800000U, 0x3F801000U, 0x3F803000U, 0x00000001U, 0x807FFFFFU};
  for (uint64_t b = 0; b <= 0xFFFFFFFFULL; b += 65521) {  // a prime step: every exponent, mixed
    bits.push_back(static_cast<uint32_t>(b));             // low bits
  }
  std::vector<float> x(bits.size());
  for (size_t i = 0; i < bits.size(); ++i) {
    x[i] = std::bit_cast<float>(bits[i]);
  }
  const auto n = static_cast<int64_t>(x.size());
  const std::vector<std::byte> expected =
      Quantize(GetTypeKernels(TensorType::kF16, KernelIsa::kPortable), x, 1, n);
  for (KernelIsa isa : VectorIsas()) {
    const std::vector<std::byte> got = Quantize(GetTypeKernels(TensorType::kF16, isa), x, 1, n);
    ASSERT_EQ(got.size(), expected.size());
    for (int64_t i = 0; i < n; ++i) {
      uint32_t g = 0;
      uint32_t e = 0;
      std::memcpy(&g, got.data() + 4 * i, 4);
      std::memcpy(&e, expected.data() + 4 * i, 4);
      ASSERT_EQ(g, e) << KernelIsaName(isa) << ": float bits 0x" << std::hex << bits[i];
    }
  }
}

// Q8_0 and Q8_1 activations in every variant: a zero block, a block of ties (amax 127 makes the
// products the values), and ordinary blocks each holding one edge: NaN (ignored by the maximum,
// -128 as a product), infinities, huge and tiny values, the ends of the int8 range.
TEST(TypeKernelsTest, Q8ActivationsQuantizeAlikeInEveryVariant) {
  const std::vector<float> edges = {0.0F,     -0.0F, NAN,     -NAN,    INFINITY, -INFINITY,
                                    1e38F,    -3e9F, 1e-40F,  -1e-45F, 127.0F,   -127.0F,
                                    65504.0F, 4.0F,  0.0625F, 3.0F,    12345.0F, -0.5F};
  std::vector<float> x(32, 0.0F);
  for (int i = 0; i < 32; ++i) {
    x.push_back(i == 0 ? 127.0F : static_cast<float>(i % 9) - 4.5F);  // ties to even
  }
  for (size_t e = 0; e < edges.size(); ++e) {
    for (size_t i = 0; i < 32; ++i) {
      const auto k = static_cast<float>(e * 32 + i);
      x.push_back(i == (e * 5 + 16) % 32 ? edges[e]
                                         : std::sin(k) * std::ldexp(3.0F, static_cast<int>(e % 7)));
    }
  }
  // Q8_K's blocks of 256: the same values and 128 more, then a block of zeros and NaNs only (no
  // maximum: all zero) and one whose largest magnitude comes first negative, then positive.
  std::vector<float> x256 = x;
  for (int i = 0; x256.size() % 256 != 0; ++i) {
    x256.push_back(std::cos(static_cast<float>(i)) * 7.0F);
  }
  for (int i = 0; i < 256; ++i) {
    x256.push_back(i % 50 == 3 ? NAN : 0.0F);
  }
  for (int i = 0; i < 256; ++i) {
    x256.push_back(i == 40 ? -9.0F : i == 41 ? 9.0F : static_cast<float>(i % 17) * 0.5F - 4.0F);
  }
  // Partners Q8_0, Q8_1 and Q8_K.
  for (TensorType type : {TensorType::kQ8_0, TensorType::kQ4_1, TensorType::kQ4_K}) {
    const std::vector<float>& v = type == TensorType::kQ4_K ? x256 : x;
    const auto cols = static_cast<int64_t>(v.size());
    const std::vector<std::byte> expected =
        Quantize(GetTypeKernels(type, KernelIsa::kPortable), v, 1, cols);
    for (KernelIsa isa : VectorIsas()) {
      EXPECT_EQ(Quantize(GetTypeKernels(type, isa), v, 1, cols), expected)
          << GetTypeInfo(type).name << " " << KernelIsaName(isa);
    }
  }
}

TEST(TypeKernelsTest, Q8_KActivationsScaleByTheSignedMaximum) {
  std::vector<float> x(256, 0.0F);
  x[7] = -127.0F;  // the largest magnitude: iscale = -127 / -127 = 1
  x[8] = 2.5F;
  x[9] = 127.0F;  // as large, but later: not the maximum
  x[200] = -3.5F;
  const TypeKernels& k = GetTypeKernels(TensorType::kQ4_K, KernelIsa::kPortable);
  const std::vector<std::byte> q = Quantize(k, x, 1, 256);
  const DecodedActivations a = DecodeActivations(TensorType::kQ8_K, q.data(), 256);
  EXPECT_EQ(a.scale[0], 1.0);
  EXPECT_EQ(a.q[7], -127);
  EXPECT_EQ(a.q[8], 2);
  EXPECT_EQ(a.q[9], 127);
  EXPECT_EQ(a.q[200], -4);
  EXPECT_EQ(a.bsums[0], 2);  // q[7] + q[8] + q[9]
  EXPECT_EQ(a.bsums[12], -4);
  // A positive maximum flips the sign: d = 1 / (-127 / 254) = -2.
  x[7] = 254.0F;
  const std::vector<std::byte> q2 = Quantize(k, x, 1, 256);
  const DecodedActivations b = DecodeActivations(TensorType::kQ8_K, q2.data(), 256);
  EXPECT_EQ(b.scale[0], -2.0);
  EXPECT_EQ(b.q[7], -127);
  EXPECT_EQ(b.q[9], -64);  // 127 * -0.5 = -63.5 -> -64 (even)
}

// A float partner: every value rounded to nearest (F16: relative 2^-11 and half subnormals'
// absolute step; BF16: relative 2^-8; F32: exact).
void ExpectRoundedFloats(TensorType partner, const DecodedActivations& a, const float* x,
                         int64_t cols, const std::string& what) {
  const double ulp = partner == TensorType::kF32   ? 0
                     : partner == TensorType::kF16 ? 0x1p-11
                                                   : 0x1p-8;
  const double floor = partner == TensorType::kF16 ? 0x1p-25 : 0;
  for (int64_t i = 0; i < cols; ++i) {
    const double v = x[i];
    ASSERT_LE(std::fabs(a.value[i] - v), std::fabs(v) * ulp + floor) << what << " " << i;
  }
}

// One Q8_* block b: integers in [-127, 127], each value within half a step (amax / 127, the
// unrounded scale the values were divided by; Q8_K's d is that signed, Q8_0's that as a half),
// Q8_1's s and Q8_K's bsums consistent with the integers.
void ExpectQ8Block(TensorType partner, const DecodedActivations& a, const float* x, size_t b,
                   size_t block, const std::string& what) {
  double amax = 0;
  int sum = 0;
  for (size_t i = 0; i < block; ++i) {
    amax = std::max(amax, std::fabs(static_cast<double>(x[b * block + i])));
    const int qi = a.q[b * block + i];
    ASSERT_GE(qi, -127) << what;
    ASSERT_LE(qi, 127) << what;
    sum += qi;
  }
  const double step = amax / 127;
  const double signed_step = partner == TensorType::kQ8_K ? a.scale[b] : step;
  for (size_t i = 0; i < block; ++i) {
    // Half a step, and the float rounding of v * id (relative 2^-24 of up to 127 steps).
    ASSERT_LE(std::fabs(a.q[b * block + i] * signed_step - x[b * block + i]),
              step * (0.5 + 1e-4) + 1e-30)
        << what << " block " << b << " value " << i;
  }
  if (partner == TensorType::kQ8_K) {
    EXPECT_NEAR(std::fabs(a.scale[b]), step, step * 1e-6) << what;
    for (size_t s = 0; s < 16; ++s) {
      int bsum = 0;
      for (size_t i = 0; i < 16; ++i) {
        bsum += a.q[b * block + 16 * s + i];
      }
      EXPECT_EQ(a.bsums[b * 16 + s], bsum) << what;
    }
    return;
  }
  EXPECT_NEAR(a.scale[b], step, step * 0x1p-11) << what;  // stored as a half
  if (partner == TensorType::kQ8_1) {
    EXPECT_NEAR(a.s[b], sum * step, std::fabs(sum * step) * 0x1p-11 + 1e-7) << what;
  }
}

// Every partner: each value within half a step of its block's scale, the integers in
// [-127, 127], zeros for zero blocks, Q8_1's s and Q8_K's bsums consistent with the integers.
TEST(TypeKernelsTest, ActivationsStayWithinHalfAStep) {
  for (TensorType t : kWeightTypes) {
    const TypeKernels& k = GetTypeKernels(t, KernelIsa::kPortable);
    const int64_t cols = 768;
    const std::vector<float> x = KernelActivations(2, cols, 5);
    const std::vector<std::byte> q = Quantize(k, x, 2, cols);
    const size_t row = *ActivationRowBytes(t, cols);
    for (int tok = 0; tok < 2; ++tok) {
      const DecodedActivations a = DecodeActivations(k.partner, q.data() + tok * row, cols);
      const std::string what =
          std::string(GetTypeInfo(k.partner).name) + " token " + std::to_string(tok);
      const float* xt = x.data() + tok * cols;
      if (a.scale.empty()) {
        ExpectRoundedFloats(k.partner, a, xt, cols, what);
        continue;
      }
      for (size_t b = 0; b < a.scale.size(); ++b) {
        ExpectQ8Block(k.partner, a, xt, b, static_cast<size_t>(cols) / a.scale.size(), what);
      }
    }
  }
}

// ---- Dot products against the layout. ----

// Every row's dot product against the same values multiplied in double precision.
void ExpectDotsNearExact(const Kind& kind, KernelIsa isa, int64_t cols,
                         const std::vector<std::byte>& w, const std::vector<float>& x) {
  const size_t row_bytes = *RowBytes(GetTypeInfo(kind.type), cols);
  const TypeKernels& k = GetTypeKernels(kind.type, isa, kind.order);
  const std::vector<std::byte> xq = Quantize(k, x, 1, cols);
  const DecodedActivations a = DecodeActivations(k.partner, xq.data(), cols);
  // Q4_1/Q5_1 meet the offsets through x's s, rounded to a half: their terms may move by 2^-11
  // of the offsets' part.
  const bool offsets = kind.type == TensorType::kQ4_1 || kind.type == TensorType::kQ5_1;
  for (size_t r = 0; r < 4; ++r) {
    const std::vector<double> wv = DecodeRow(kind.type, w.data() + r * row_bytes, cols);
    double exact = 0;
    double magnitude = 0;
    for (int64_t i = 0; i < cols; ++i) {
      exact += wv[i] * a.value[i];
      magnitude += std::fabs(wv[i] * a.value[i]);
    }
    const double tolerance = magnitude * (offsets ? 2e-3 : 1e-5) + 1e-30;
    EXPECT_NEAR(k.dot(w.data() + r * row_bytes, xq.data(), cols), exact, tolerance)
        << Name(kind) << " " << KernelIsaName(isa) << " cols " << cols << " row " << r;
  }
}

TEST(TypeKernelsTest, DotsEqualTheProductsOfTheDecodedValues) {
  for (const Kind& kind : AllKinds()) {
    for (int64_t cols : {int64_t{256}, int64_t{1024}}) {
      const std::vector<std::byte> w = KernelWeights(kind.type, 4, cols, 21, ScaleRange::kOrdinary);
      const std::vector<float> x = KernelActivations(1, cols, 22);
      for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
        if (KernelIsaSupported(isa)) {
          ExpectDotsNearExact(kind, isa, cols, w, x);
        }
      }
    }
  }
}

// ---- llama.cpp's own results. ----

struct RecordedCase {
  std::string type;
  std::string order;
  int64_t cols = 0;
  int64_t rows = 0;
  int32_t tokens = 0;
  uint64_t seed = 0;
  std::map<int, uint64_t> act;
  std::map<int, uint64_t> deq;
  std::map<std::pair<int, int>, uint32_t> dot;
};

std::vector<RecordedCase> ReadRecorded() {
  std::ifstream in(cellhouse::testing::SourceDir() +
                   "/tests/engine/testdata/ggml_reference_vectors.txt");
  std::vector<RecordedCase> cases;
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream s(line);
    std::string word;
    s >> word;
    if (word == "case") {
      RecordedCase c;
      std::string skip;
      s >> c.type >> c.order >> skip >> c.cols >> skip >> c.rows >> skip >> c.tokens >> skip >>
          c.seed;
      cases.push_back(c);
    } else if (word == "act" || word == "deq") {
      int i = 0;
      std::string hex;
      s >> i >> hex;
      (word == "act" ? cases.back().act : cases.back().deq)[i] = std::stoull(hex, nullptr, 16);
    } else if (word == "dot") {
      int r = 0;
      int t = 0;
      std::string hex;
      s >> r >> t >> hex;
      cases.back().dot[{r, t}] = static_cast<uint32_t>(std::stoul(hex, nullptr, 16));
    }
  }
  return cases;
}

// The hash of an activation row in ggml's layout: F16/BF16 rows, which are kept as floats, in
// their 2-byte form (the floats are exact, so nothing is lost).
uint64_t ActivationHash(TensorType type, const std::byte* row, int64_t cols) {
  if (type != TensorType::kF16 && type != TensorType::kBF16) {
    return testing::Fnv64(row, *ActivationRowBytes(type, cols));
  }
  std::vector<uint16_t> narrow(static_cast<size_t>(cols));
  for (int64_t i = 0; i < cols; ++i) {
    float f = 0;
    std::memcpy(&f, row + 4 * i, 4);
    const uint32_t bits = std::bit_cast<uint32_t>(f);
    narrow[i] = type == TensorType::kF16 ? FloatToHalf(f) : static_cast<uint16_t>(bits >> 16);
    EXPECT_EQ(type == TensorType::kF16
                  ? HalfToFloat(narrow[i])
                  : std::bit_cast<float>(static_cast<uint32_t>(narrow[i]) << 16),
              f)
        << "activation " << i << " is not exactly a " << GetTypeInfo(type).name;
  }
  return testing::Fnv64(narrow.data(), narrow.size() * 2);
}

TEST(TypeKernelsTest, EveryVariantGivesLlamaCppsRecordedBits) {
  const std::vector<RecordedCase> cases = ReadRecorded();
  ASSERT_GE(cases.size(), 25U) << "testdata/ggml_reference_vectors.txt missing or short";
  for (const RecordedCase& c : cases) {
    TensorType type = TensorType::kF32;
    for (TensorType t : kWeightTypes) {
      if (GetTypeInfo(t).name == c.type) {
        type = t;
      }
    }
    const DotOrder order = c.order == "x8" ? DotOrder::kInterleaved8 : DotOrder::kVecDot;
    const std::string what = c.type + " " + c.order + " cols " + std::to_string(c.cols);
    const std::vector<std::byte> w =
        KernelWeights(type, c.rows, c.cols, c.seed, ScaleRange::kOrdinary);
    const std::vector<float> x = KernelActivations(c.tokens, c.cols, c.seed + 1);
    const size_t w_row = *RowBytes(GetTypeInfo(type), c.cols);
    const size_t x_row = *ActivationRowBytes(type, c.cols);
    for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
      if (!KernelIsaSupported(isa)) {
        continue;
      }
      const TypeKernels& k = GetTypeKernels(type, isa, order);
      const std::vector<std::byte> xq = Quantize(k, x, c.tokens, c.cols);
      for (const auto& [t, hash] : c.act) {
        EXPECT_EQ(ActivationHash(type, xq.data() + t * x_row, c.cols), hash)
            << what << " token " << t;
      }
      std::vector<float> row(c.cols);
      for (const auto& [r, hash] : c.deq) {
        k.dequantize(w.data() + r * w_row, c.cols, row.data());
        EXPECT_EQ(testing::Fnv64(row.data(), row.size() * 4), hash) << what << " row " << r;
      }
      std::vector<float> y(static_cast<size_t>(c.rows * c.tokens));
      k.Multiply({.w = w.data(),
                  .w_row_bytes = w_row,
                  .cols = c.cols,
                  .row_begin = 0,
                  .row_end = c.rows,
                  .x = xq.data(),
                  .x_row_bytes = x_row,
                  .n = c.tokens,
                  .y = y.data(),
                  .y_stride = static_cast<size_t>(c.rows)});
      for (const auto& [rt, bits] : c.dot) {
        const auto [r, t] = rt;
        EXPECT_EQ(std::bit_cast<uint32_t>(y[t * c.rows + r]), bits)
            << what << " " << KernelIsaName(isa) << " row " << r << " token " << t;
        EXPECT_EQ(
            std::bit_cast<uint32_t>(k.dot(w.data() + r * w_row, xq.data() + t * x_row, c.cols)),
            bits)
            << what << " " << KernelIsaName(isa) << " dot, row " << r << " token " << t;
      }
    }
  }
}

// ---- Instruction sets and batch invariance. ----

struct Shape {
  int64_t rows;
  int64_t cols;
  int32_t n;
};

// The portable dot of each (row, token) is the definition; every variant's matmul over the whole
// range, over split ranges, and one token at a time must give its bits.
void ExpectAllVariantsEqualTheDefinition(const Kind& kind, const Shape& s,
                                         const std::vector<std::byte>& w,
                                         const std::vector<float>& x, const std::string& what) {
  const TypeKernels& portable = GetTypeKernels(kind.type, KernelIsa::kPortable, kind.order);
  const size_t w_row = *RowBytes(GetTypeInfo(kind.type), s.cols);
  const size_t x_row = *ActivationRowBytes(kind.type, s.cols);
  const std::vector<std::byte> xq = Quantize(portable, x, s.n, s.cols);
  std::vector<float> expected(static_cast<size_t>(s.rows * s.n));
  for (int32_t t = 0; t < s.n; ++t) {
    for (int64_t r = 0; r < s.rows; ++r) {
      expected[t * s.rows + r] = portable.dot(w.data() + r * w_row, xq.data() + t * x_row, s.cols);
      ASSERT_FALSE(std::isnan(expected[t * s.rows + r])) << what << ": inputs must stay NaN-free";
    }
  }
  std::vector<KernelIsa> isas = {KernelIsa::kPortable};
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (KernelIsaSupported(isa)) {
      isas.push_back(isa);
    }
  }
  for (KernelIsa isa : isas) {
    const TypeKernels& k = GetTypeKernels(kind.type, isa, kind.order);
    const std::string label = what + " " + std::string(KernelIsaName(isa));
    EXPECT_EQ(Quantize(k, x, s.n, s.cols), xq) << label << ": activations";
    // A guard after each token's outputs: nothing may be written outside the range.
    const size_t stride = static_cast<size_t>(s.rows) + 3;
    std::vector<float> y(stride * s.n);
    MatMulArgs args{.w = w.data(),
                    .w_row_bytes = w_row,
                    .cols = s.cols,
                    .row_begin = 0,
                    .row_end = s.rows,
                    .x = xq.data(),
                    .x_row_bytes = x_row,
                    .n = s.n,
                    .y = y.data(),
                    .y_stride = stride};
    // The whole range in one call (the widest row tiles), then rows in three uneven ranges, as
    // threads or a batched executor would split them.
    const int64_t cut1 = s.rows / 3;
    const int64_t cut2 = std::max(cut1, s.rows - 5);
    using Ranges = std::vector<std::pair<int64_t, int64_t>>;
    for (const Ranges& ranges :
         {Ranges{{0, s.rows}}, Ranges{{0, cut1}, {cut1, cut2}, {cut2, s.rows}}}) {
      std::fill(y.begin(), y.end(), 1234.5F);
      for (auto [begin, end] : ranges) {
        args.row_begin = begin;
        args.row_end = end;
        k.matmul(args);
      }
      for (int32_t t = 0; t < s.n; ++t) {
        for (int64_t r = 0; r < s.rows; ++r) {
          ASSERT_TRUE(SameBits(y[t * stride + r], expected[t * s.rows + r]))
              << label << " batch of " << s.n << " in " << ranges.size() << " ranges: row " << r
              << " token " << t << " " << y[t * stride + r] << " vs " << expected[t * s.rows + r];
        }
        for (int64_t g = s.rows; g < static_cast<int64_t>(stride); ++g) {
          ASSERT_EQ(y[t * stride + g], 1234.5F) << label << ": wrote past the range";
        }
      }
    }
    std::vector<float> one(static_cast<size_t>(s.rows));
    for (int32_t t = 0; t < s.n; ++t) {
      // The same token alone: through the batch kernel and the one decode uses (which may be
      // another instruction set's, type_kernels.cc).
      const MatMulArgs alone{.w = w.data(),
                             .w_row_bytes = w_row,
                             .cols = s.cols,
                             .row_begin = 0,
                             .row_end = s.rows,
                             .x = xq.data() + t * x_row,
                             .x_row_bytes = x_row,
                             .n = 1,
                             .y = one.data(),
                             .y_stride = static_cast<size_t>(s.rows)};
      for (auto [product, how] : {std::pair{k.matmul, "matmul"}, std::pair{k.decode, "decode"}}) {
        std::fill(one.begin(), one.end(), 1234.5F);
        product(alone);
        for (int64_t r = 0; r < s.rows; ++r) {
          ASSERT_TRUE(SameBits(one[r], expected[t * s.rows + r]))
              << label << " alone (" << how << "): row " << r << " token " << t;
        }
      }
      for (int64_t r = 0; r < s.rows; ++r) {
        ASSERT_TRUE(SameBits(k.dot(w.data() + r * w_row, xq.data() + t * x_row, s.cols),
                             expected[t * s.rows + r]))
            << label << " dot: row " << r << " token " << t;
      }
    }
  }
}

// The shapes each kind is tried at: whole and partial tiles, one token to 64.
std::vector<Shape> ShapesFor(const Kind& kind) {
  const int64_t block = GetTypeInfo(kind.type).block_size;
  std::vector<Shape> shapes = {{8, 256, 1}, {24, 512, 5}, {16, 1024, 64}};
  if (block == 1) {
    shapes.push_back({9, 200, 3});  // leftovers past whole steps
    shapes.push_back({5, 37, 2});
    shapes.push_back({11, 235, 8});  // prefill tiles with rows, tokens and columns left over
  } else if (block == 32) {
    shapes.push_back({16, 96, 7});
    // Rows long enough that fewer token pairs fit a prepared tile (128 blocks: 2 pairs), and
    // past what one holds (257 blocks: the unprepared tiles).
    shapes.push_back({6, 4096, 9});
    shapes.push_back({5, 8224, 5});  // and an odd last token after the pairs
    // More rows than one of MatMulPrepared's 256 KiB chunks (60 rows of Q8_0, 112 of Q4_0 at
    // this width), the last chunk partial.
    shapes.push_back({130, 4096, 6});
  }
  if (kind.order == DotOrder::kVecDot) {
    shapes.push_back({13, 256, 3});  // rows not a multiple of any tile
  }
  if (kind.order == DotOrder::kBlockSums || kind.order == DotOrder::kInterleaved8) {
    // The token lanes (AVX-512): rows past the last tile of 8, tokens past the last 16 lanes; 2
    // and 3 tokens (fewer than the lanes take).
    shapes.push_back({13, 256, 20});
    shapes.push_back({9, 512, 2});
    shapes.push_back({16, 512, 3});
  }
  if (block == 256) {
    shapes.push_back({37, 512, 9});  // four row tiles of 8, one of 4, one row; tokens 4 + 4 + 1
  }
  if (block == 256 && kind.order == DotOrder::kVecDot) {
    // The token pairs (AVX-512): rows long enough that only 2 pairs fit a prepared tile (32
    // blocks) or 1, rows past what one holds (65 blocks: the 256-bit tiles), and more rows than
    // a 256 KiB chunk (113 of Q4_K at this width, 78 of Q6_K), each with an odd last token.
    shapes.push_back({6, 8192, 7});
    shapes.push_back({3, 12288, 3});  // one pair a tile (48 blocks)
    shapes.push_back({3, 16640, 3});
    shapes.push_back({130, 4096, 5});
    shapes.push_back({9, 512, 2});  // one whole pair
  }
  if (block == 256 && kind.order == DotOrder::kBlockSums) {
    // The token lanes' slices of 8 blocks (a second one of 1 block) and chunks of rows (Q4_K: 128
    // rows at this width, Q6_K: 36), the last ones partial.
    shapes.push_back({300, 2304, 5});
    shapes.push_back({40, 4096, 17});
  }
  return shapes;
}

// Rows of huge, tiny (a zero scale once rounded to a half) and zero activations: as large as
// keeps every product finite (a half d = amax / 127 overflows past amax 8.3e6, Q8_1's half
// s = d * sum(q) past about 2000, F16 activations past 65504).
void MakeExtreme(const Kind& kind, const Shape& s, std::vector<float>& x) {
  const TensorType partner = GetTypeInfo(kind.type).partner;
  const float huge = partner == TensorType::kQ8_1  ? 50.0F
                     : partner == TensorType::kF16 ? 1e3F
                                                   : 1e5F;
  for (int64_t i = 0; i < s.cols; ++i) {
    x[i] *= huge;
    if (s.n > 1) {
      x[s.cols + i] *= 1e-30F;
    }
    if (s.n > 2) {
      x[2 * s.cols + i] = 0.0F;
    }
  }
}

// DotOrder::kBlockSums from Q8_0's layout (a half scale, then 32 int8 values, for weights and
// activations alike): each block's 32 products summed as integers, then one fma per block.
float BlockSumsFromTheLayout(const std::byte* w, const std::byte* x, int64_t cols) {
  constexpr size_t kBlockBytes = 34;
  const auto half_at = [](const std::byte* p) {
    uint16_t h = 0;
    std::memcpy(&h, p, sizeof h);
    return HalfToFloat(h);
  };
  float acc = 0.0F;
  for (int64_t b = 0; b < cols / 32; ++b) {
    const std::byte* wb = w + static_cast<size_t>(b) * kBlockBytes;
    const std::byte* xb = x + static_cast<size_t>(b) * kBlockBytes;
    int32_t sum = 0;
    for (size_t i = 0; i < 32; ++i) {
      sum += static_cast<int8_t>(wb[2 + i]) * static_cast<int8_t>(xb[2 + i]);
    }
    acc = std::fma(static_cast<float>(sum), half_at(wb) * half_at(xb), acc);
  }
  return acc;
}

// DotOrder::kBlockSums from the K-quants' layouts (DecodeKBlock, DecodeQ6KBlock) and Q8_K's (d
// as a float, 256 int8 values, 16 int16 sums of 16): per block the exact integer sum of
// scale * q * x over its values (Q6_K: q - 32), then one fma; Q4_K and Q5_K then the mins' sum,
// min * (x summed over the sub-block of 32), in a second fma with -dmin * x.d.
float KBlockSumsFromTheLayout(TensorType type, const std::byte* w, const std::byte* x,
                              int64_t cols) {
  const bool six = type == TensorType::kQ6_K;
  const bool five = type == TensorType::kQ5_K;
  const size_t w_bytes = six ? 210 : five ? 176 : 144;
  constexpr size_t kXBytes = 292;
  float acc = 0.0F;
  for (int64_t b = 0; b < cols / 256; ++b) {
    const std::byte* p = w + static_cast<size_t>(b) * w_bytes;
    const std::byte* xb = x + static_cast<size_t>(b) * kXBytes;
    float xd = 0.0F;
    std::memcpy(&xd, xb, sizeof xd);
    int32_t sum = 0;
    int32_t mins = 0;
    for (size_t k = 0; k < 256; ++k) {
      const int xq = Signed(Byte(xb, 4 + k));
      if (six) {
        sum += Signed(Byte(p, 192 + k / 16)) * Quant6K(p, k) * xq;
      } else {
        const int sub = static_cast<int>(k / 32);
        sum += KScale(p + 4, sub, 0) * QuantK(five, p, k) * xq;
        mins += KScale(p + 4, sub, 1) * xq;
      }
    }
    acc =
        std::fma(static_cast<float>(sum), static_cast<float>(Half(p + (six ? 208 : 0))) * xd, acc);
    if (!six) {
      acc = std::fma(static_cast<float>(mins), -static_cast<float>(Half(p + 2)) * xd, acc);
    }
  }
  return acc;
}

void ExpectBlockSumsDefinition(TensorType type, ScaleRange range) {
  constexpr int64_t kCols = 1024;
  constexpr int32_t kTokens = 3;
  const std::vector<std::byte> w = KernelWeights(type, 4, kCols, 31, range);
  std::vector<float> x = KernelActivations(kTokens, kCols, 32);
  if (range == ScaleRange::kExtreme) {
    MakeExtreme({type, DotOrder::kBlockSums}, {4, kCols, kTokens}, x);
  }
  const size_t w_row = *RowBytes(GetTypeInfo(type), kCols);
  for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (!KernelIsaSupported(isa)) continue;
    const TypeKernels& k = GetTypeKernels(type, isa, DotOrder::kBlockSums);
    const std::vector<std::byte> xq = Quantize(k, x, kTokens, kCols);
    const size_t x_row = xq.size() / kTokens;
    for (int32_t t = 0; t < kTokens; ++t) {
      for (size_t r = 0; r < 4; ++r) {
        const std::byte* wr = w.data() + r * w_row;
        const std::byte* xt = xq.data() + static_cast<size_t>(t) * x_row;
        const float want = type == TensorType::kQ8_0 ? BlockSumsFromTheLayout(wr, xt, kCols)
                                                     : KBlockSumsFromTheLayout(type, wr, xt, kCols);
        EXPECT_TRUE(SameBits(k.dot(wr, xt, kCols), want))
            << GetTypeInfo(type).name << " " << KernelIsaName(isa) << " row " << r << " token " << t
            << (range == ScaleRange::kExtreme ? " extreme" : "");
      }
    }
  }
}

// A prompt's order (Q8_0 and the K-quants) gives exactly its definition, in every variant, extreme
// inputs included (the variant test then holds every tile, range and batch to the portable dot).
TEST(TypeKernelsTest, BlockSumsAreOneExactSumAndOneFmaPerBlock) {
  for (TensorType type :
       {TensorType::kQ8_0, TensorType::kQ4_K, TensorType::kQ5_K, TensorType::kQ6_K}) {
    for (ScaleRange range : {ScaleRange::kOrdinary, ScaleRange::kExtreme}) {
      ExpectBlockSumsDefinition(type, range);
    }
  }
}

// Every vector variant's product of the kRows rows at w with the kTokens activation rows x, in
// `order`, against the portable dot's bits; `nan` says which (row, token) must be a NaN (that the
// test's NaN happened).
void ExpectTheSameNaNs(TensorType type, DotOrder order, const std::vector<std::byte>& w,
                       const std::vector<float>& x, int64_t rows, int64_t cols, int32_t tokens,
                       const std::function<bool(int64_t, int32_t)>& nan) {
  const size_t w_row = *RowBytes(GetTypeInfo(type), cols);
  const TypeKernels& portable = GetTypeKernels(type, KernelIsa::kPortable, order);
  const std::vector<std::byte> xq = Quantize(portable, x, tokens, cols);
  const size_t x_row = xq.size() / static_cast<size_t>(tokens);
  for (KernelIsa isa : {KernelIsa::kAvx2, KernelIsa::kAvx512}) {
    if (!KernelIsaSupported(isa)) continue;
    const TypeKernels& k = GetTypeKernels(type, isa, order);
    std::vector<float> y(static_cast<size_t>(rows * tokens));
    k.matmul({.w = w.data(),
              .w_row_bytes = w_row,
              .cols = cols,
              .row_begin = 0,
              .row_end = rows,
              .x = xq.data(),
              .x_row_bytes = x_row,
              .n = tokens,
              .y = y.data(),
              .y_stride = static_cast<size_t>(rows)});
    for (int32_t t = 0; t < tokens; ++t) {
      for (int64_t r = 0; r < rows; ++r) {
        const float want = portable.dot(w.data() + r * w_row, xq.data() + t * x_row, cols);
        EXPECT_TRUE(!nan(r, t) || std::isnan(want)) << "the test's NaN did not happen";
        EXPECT_TRUE(SameBits(y[t * rows + r], want))
            << GetTypeInfo(type).name << " " << KernelIsaName(isa)
            << (order == DotOrder::kVecDot ? " vec_dot" : " block sums") << " row " << r
            << " token " << t << ": " << y[t * rows + r] << " against " << want;
      }
    }
  }
}

// For Q4_K and Q5_K: 8 weight rows of `cols` values and 5 activation rows made from `seed`, as
// `edit` changes them (given the weight row's bytes), through ExpectTheSameNaNs in both orders.
void ExpectTheSameNaNsInTheKQuants(
    int64_t cols, uint64_t seed,
    const std::function<void(size_t, std::vector<std::byte>&, std::vector<float>&)>& edit,
    const std::function<bool(int64_t, int32_t)>& nan) {
  constexpr int64_t kRows = 8;
  constexpr int32_t kTokens = 5;
  for (TensorType type : {TensorType::kQ4_K, TensorType::kQ5_K}) {
    std::vector<std::byte> w = KernelWeights(type, kRows, cols, seed, ScaleRange::kOrdinary);
    std::vector<float> x = KernelActivations(kTokens, cols, seed + 1);
    edit(*RowBytes(GetTypeInfo(type), cols), w, x);
    for (DotOrder order : {DotOrder::kVecDot, DotOrder::kBlockSums}) {
      ExpectTheSameNaNs(type, order, w, x, kRows, cols, kTokens, nan);
    }
  }
}

// An infinite activation makes a Q8_K block's d infinite; against a weight block whose dmin is 0
// the mins' factor is 0 * inf, a NaN. Every variant must give the NaN the same bits (the
// definition negates dmin before the multiply; negating the product instead flipped the sign
// where the vector code did not).
TEST(TypeKernelsTest, AnInfinityGivesTheSameNaNInEveryVariant) {
  constexpr int64_t kCols = 256;
  ExpectTheSameNaNsInTheKQuants(
      kCols, 51,
      [](size_t w_row, std::vector<std::byte>& w, std::vector<float>& x) {
        for (size_t at = 0; at < w.size(); at += w_row) {
          w[at + 2] = std::byte{0};  // dmin, a half
          w[at + 3] = std::byte{0};
        }
        x[5] = INFINITY;
        x[2 * kCols + 9] = -INFINITY;
      },
      [](int64_t, int32_t t) { return t == 0; });
}

// A NaN dmin (a malformed file) against finite activations: each variant negates dmin before
// the multiply, as the definition does, so the NaN keeps its sign (negating the activation's d
// instead flipped it). Only one NaN meets each sum here: where several do, which one an add or
// fma passes on depends on the operand order the compiler picks.
TEST(TypeKernelsTest, ANaNDminGivesTheSameNaNInEveryVariant) {
  constexpr int64_t kNanRow = 6;
  ExpectTheSameNaNsInTheKQuants(
      512, 53,
      [](size_t w_row, std::vector<std::byte>& w, std::vector<float>&) {
        // The row's second block's dmin: the half 0x7E00, a quiet NaN.
        const size_t at = kNanRow * w_row + w_row / 2;
        w[at + 2] = std::byte{0x00};
        w[at + 3] = std::byte{0x7E};
      },
      [](int64_t r, int32_t) { return r == kNanRow; });
}

TEST(TypeKernelsTest, VariantsAndBatchesGiveIdenticalBits) {
  VectorIsas();  // prints the skipped ones
  uint64_t seed = 1000;
  for (const Kind& kind : AllKinds()) {
    for (const Shape& s : ShapesFor(kind)) {
      for (ScaleRange range : {ScaleRange::kOrdinary, ScaleRange::kExtreme}) {
        ++seed;
        const std::string what = Name(kind) + " " + std::to_string(s.rows) + "x" +
                                 std::to_string(s.cols) + " n " + std::to_string(s.n) +
                                 (range == ScaleRange::kExtreme ? " extreme" : "");
        const std::vector<std::byte> w = KernelWeights(kind.type, s.rows, s.cols, seed, range);
        std::vector<float> x = KernelActivations(s.n, s.cols, seed + 7);
        if (range == ScaleRange::kExtreme) {
          MakeExtreme(kind, s, x);
        }
        ExpectAllVariantsEqualTheDefinition(kind, s, w, x, what);
      }
    }
  }
}

// ---- Weight quantizers. ----

struct ErrorBound {
  TensorType type;
  double mean;  // mean |error| / mean |value|, over random rows
  double max;   // the largest |error| / the largest |value| of its block
};

// Rows quantized and read back with this test's own decoding: within the type's bounds, zeros
// kept zeros.
void ExpectRoundTrip(const ErrorBound& b) {
  const int64_t cols = 1024;
  std::vector<float> x = KernelActivations(4, cols, 77);
  std::fill(x.begin() + cols, x.begin() + 2 * cols, 0.0F);        // a row of zeros
  std::fill(x.begin() + 2 * cols, x.begin() + 3 * cols, -0.25F);  // a constant row
  const TypeInfo& info = GetTypeInfo(b.type);
  std::vector<std::byte> q(*RowBytes(info, 4 * cols));
  ASSERT_TRUE(QuantizeWeights(b.type, x.data(), 4 * cols, q.data())) << info.name;
  const std::vector<double> y = DecodeRow(b.type, q.data(), 4 * cols);
  double error = 0;
  double magnitude = 0;
  const int64_t block = std::max<int64_t>(info.block_size, 32);
  for (int64_t start = 0; start < 4 * cols; start += block) {
    double amax = 0;
    for (int64_t i = start; i < start + block; ++i) {
      amax = std::max(amax, std::fabs(static_cast<double>(x[i])));
    }
    for (int64_t i = start; i < start + block; ++i) {
      const double e = std::fabs(y[i] - x[i]);
      error += e;
      magnitude += std::fabs(x[i]);
      ASSERT_LE(e, b.max * amax + 1e-30) << info.name << " value " << i;
    }
  }
  EXPECT_LE(error / magnitude, b.mean) << info.name;
  for (int64_t i = cols; i < 2 * cols; ++i) {
    ASSERT_EQ(y[i], 0.0) << info.name << ": zeros stay zeros";
  }
}

TEST(TypeKernelsTest, QuantizedWeightsReadBackWithinTheTypesError) {
  const ErrorBound bounds[] = {
      {TensorType::kF32, 0, 0},         {TensorType::kF16, 1e-3, 1e-3},
      {TensorType::kBF16, 4e-3, 4e-3},  {TensorType::kQ8_0, 0.012, 0.0045},
      {TensorType::kQ4_0, 0.21, 0.126}, {TensorType::kQ4_1, 0.14, 0.07},
      {TensorType::kQ5_0, 0.10, 0.063}, {TensorType::kQ5_1, 0.07, 0.035},
      {TensorType::kQ4_K, 0.16, 0.15},  {TensorType::kQ5_K, 0.08, 0.08},
      {TensorType::kQ6_K, 0.04, 0.04},
  };
  for (const ErrorBound& b : bounds) {
    ExpectRoundTrip(b);
  }
  std::vector<std::byte> out(64);
  const float x[32] = {};
  EXPECT_FALSE(QuantizeWeights(TensorType::kQ8_K, x, 32, out.data()));  // not a weight type
  EXPECT_FALSE(QuantizeWeights(TensorType::kQ4_0, x, 31, out.data()));  // not whole blocks
}

TEST(TypeKernelsTest, TableAndReferenceOrder) {
  for (TensorType t : kWeightTypes) {
    const TypeKernels* k = FindTypeKernels(t, KernelIsa::kAvx512);
    ASSERT_NE(k, nullptr) << GetTypeInfo(t).name;
    EXPECT_EQ(k->partner, GetTypeInfo(t).partner);
    EXPECT_EQ(FindTypeKernels(t, KernelIsa::kPortable, DotOrder::kInterleaved8) != nullptr,
              t == TensorType::kQ4_0);
    const bool sums = t == TensorType::kQ8_0 || t == TensorType::kQ4_K || t == TensorType::kQ5_K ||
                      t == TensorType::kQ6_K;
    EXPECT_EQ(FindTypeKernels(t, KernelIsa::kPortable, DotOrder::kBlockSums) != nullptr, sums);
    // A prompt's rows: only Q8_0's and the K-quants' kVecDot have an order of their own.
    EXPECT_EQ(PromptOrder(t, DotOrder::kVecDot), sums ? DotOrder::kBlockSums : DotOrder::kVecDot);
  }
  EXPECT_EQ(PromptOrder(TensorType::kQ4_0, DotOrder::kInterleaved8), DotOrder::kInterleaved8);
  EXPECT_EQ(FindTypeKernels(TensorType::kQ8_K, KernelIsa::kPortable), nullptr);
  EXPECT_EQ(FindTypeKernels(TensorType::kQ2_K, KernelIsa::kPortable), nullptr);
  EXPECT_EQ(*ActivationRowBytes(TensorType::kQ4_K, 512), 2U * 292U);
  EXPECT_EQ(*ActivationRowBytes(TensorType::kQ5_1, 64), 2U * 36U);
  EXPECT_EQ(*ActivationRowBytes(TensorType::kF16, 3), 12U);  // kept as floats
  EXPECT_EQ(*ActivationRowBytes(TensorType::kF32, 3), 12U);
  EXPECT_FALSE(ActivationRowBytes(TensorType::kQ6_K, 300));
  EXPECT_EQ(ReferenceDotOrder(TensorType::kQ4_0, 768, WeightUse::kMatMul), DotOrder::kInterleaved8);
  EXPECT_EQ(ReferenceDotOrder(TensorType::kQ4_0, 770, WeightUse::kMatMul), DotOrder::kVecDot);
  EXPECT_EQ(ReferenceDotOrder(TensorType::kQ4_0, 32000, WeightUse::kEmbeddingAndMatMul),
            DotOrder::kVecDot);
  EXPECT_EQ(ReferenceDotOrder(TensorType::kQ8_0, 768, WeightUse::kMatMul), DotOrder::kVecDot);
}

// Every entry has a decode kernel (the variant test holds its bits to the definition); where the
// table has no narrower one to offer, it is the batch kernel itself.
TEST(TypeKernelsTest, EveryEntryHasADecodeKernel) {
  for (TensorType t : kWeightTypes) {
    for (KernelIsa isa : {KernelIsa::kPortable, KernelIsa::kAvx2, KernelIsa::kAvx512}) {
      const TypeKernels& k = GetTypeKernels(t, isa);
      ASSERT_NE(k.decode, nullptr) << GetTypeInfo(t).name << " " << KernelIsaName(k.isa);
      if (k.isa != KernelIsa::kAvx512) {
        EXPECT_EQ(k.decode, k.matmul) << GetTypeInfo(t).name << " " << KernelIsaName(k.isa);
      }
    }
  }
  const TypeKernels& interleaved =
      GetTypeKernels(TensorType::kQ4_0, BestKernelIsa(), DotOrder::kInterleaved8);
  EXPECT_EQ(interleaved.decode, interleaved.matmul);
}

}  // namespace
}  // namespace cellhouse::engine
