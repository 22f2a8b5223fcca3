// TensorType: the one table of tensor element types, as GGUF files number them (ggml's
// `ggml_type` ids, which are the on-disk values). Each row says how the type is laid out: how
// many values a block holds, how many bytes a block takes, and which type the activation vector
// is quantized to before a dot product with it (its "partner", ggml's vec_dot_type).
//
// Layout facts only. The functions for each type (to float, from float, dot product, per
// instruction set) live in the kernel table (kernels/type_kernels.h), keyed by TensorType, so
// that adding a type is adding a row there and here, never a branch in every loop.
//
//   const TypeInfo* info = FindTypeInfo(raw_id);           // nullptr: an id we do not know
//   if (info == nullptr || !info->weight) { ... refuse, naming info ? info->name : raw_id ... }
//   std::optional<uint64_t> bytes = RowBytes(*info, cols);  // nullopt: cols not a whole block
#ifndef CELLHOUSE_ENGINE_KERNELS_TENSOR_TYPE_H_
#define CELLHOUSE_ENGINE_KERNELS_TENSOR_TYPE_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <string_view>

namespace cellhouse::engine {

// ggml's ids (ggml.h `enum ggml_type`); gaps are ids ggml has retired.
enum class TensorType : uint32_t {
  kF32 = 0,
  kF16 = 1,
  kQ4_0 = 2,
  kQ4_1 = 3,
  kQ5_0 = 6,
  kQ5_1 = 7,
  kQ8_0 = 8,
  kQ8_1 = 9,
  kQ2_K = 10,
  kQ3_K = 11,
  kQ4_K = 12,
  kQ5_K = 13,
  kQ6_K = 14,
  kQ8_K = 15,
  kIQ2_XXS = 16,
  kIQ2_XS = 17,
  kIQ3_XXS = 18,
  kIQ1_S = 19,
  kIQ4_NL = 20,
  kIQ3_S = 21,
  kIQ2_S = 22,
  kIQ4_XS = 23,
  kI8 = 24,
  kI16 = 25,
  kI32 = 26,
  kI64 = 27,
  kF64 = 28,
  kIQ1_M = 29,
  kBF16 = 30,
  kTQ1_0 = 34,
  kTQ2_0 = 35,
  kMXFP4 = 39,
};

struct TypeInfo {
  TensorType type;
  std::string_view name;  // as llama.cpp prints it: "q4_K", "f16", ...
  // Layout, for the types cellhouse computes with (0 for the others: named, never read).
  int32_t block_size;  // values per block
  uint32_t block_bytes;
  TensorType partner;  // what activations are quantized to for a dot product with this type
  bool weight;         // cellhouse reads model tensors of this type
  bool activation;     // a partner type: activations are quantized to it, never stored in files
};

// Every id ggml has defined and not retired, in id order. Blocks (ggml-common.h):
//   f32, f16, bf16        one value
//   q4_0  {f16 d; u8 qs[16]}                  32 values, x = d * (q - 8)
//   q4_1  {f16 d, m; u8 qs[16]}               32 values, x = d * q + m
//   q5_0  {f16 d; u8 qh[4]; u8 qs[16]}        32 values, x = d * (q - 16)
//   q5_1  {f16 d, m; u8 qh[4]; u8 qs[16]}     32 values, x = d * q + m
//   q8_0  {f16 d; i8 qs[32]}                  32 values, x = d * q
//   q8_1  {f16 d, s; i8 qs[32]}               32 values, s = d * sum(q) (activations only)
//   q4_K  {f16 d, dmin; u8 scales[12]; u8 qs[128]}            256 values, 8 sub-blocks of 32
//   q5_K  {f16 d, dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]} 256 values
//   q6_K  {u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d}       256 values, 16 sub-blocks of 16
//   q8_K  {f32 d; i8 qs[256]; i16 bsums[16]}  256 values (activations only)
inline constexpr std::array<TypeInfo, 32> kTypeInfos = {{
    {TensorType::kF32, "f32", 1, 4, TensorType::kF32, true, false},
    {TensorType::kF16, "f16", 1, 2, TensorType::kF16, true, true},
    {TensorType::kQ4_0, "q4_0", 32, 18, TensorType::kQ8_0, true, false},
    {TensorType::kQ4_1, "q4_1", 32, 20, TensorType::kQ8_1, true, false},
    {TensorType::kQ5_0, "q5_0", 32, 22, TensorType::kQ8_0, true, false},
    {TensorType::kQ5_1, "q5_1", 32, 24, TensorType::kQ8_1, true, false},
    {TensorType::kQ8_0, "q8_0", 32, 34, TensorType::kQ8_0, true, true},
    {TensorType::kQ8_1, "q8_1", 32, 36, TensorType::kQ8_1, false, true},
    {TensorType::kQ2_K, "q2_K", 0, 0, TensorType::kQ2_K, false, false},
    {TensorType::kQ3_K, "q3_K", 0, 0, TensorType::kQ3_K, false, false},
    {TensorType::kQ4_K, "q4_K", 256, 144, TensorType::kQ8_K, true, false},
    {TensorType::kQ5_K, "q5_K", 256, 176, TensorType::kQ8_K, true, false},
    {TensorType::kQ6_K, "q6_K", 256, 210, TensorType::kQ8_K, true, false},
    {TensorType::kQ8_K, "q8_K", 256, 292, TensorType::kQ8_K, false, true},
    {TensorType::kIQ2_XXS, "iq2_xxs", 0, 0, TensorType::kIQ2_XXS, false, false},
    {TensorType::kIQ2_XS, "iq2_xs", 0, 0, TensorType::kIQ2_XS, false, false},
    {TensorType::kIQ3_XXS, "iq3_xxs", 0, 0, TensorType::kIQ3_XXS, false, false},
    {TensorType::kIQ1_S, "iq1_s", 0, 0, TensorType::kIQ1_S, false, false},
    {TensorType::kIQ4_NL, "iq4_nl", 0, 0, TensorType::kIQ4_NL, false, false},
    {TensorType::kIQ3_S, "iq3_s", 0, 0, TensorType::kIQ3_S, false, false},
    {TensorType::kIQ2_S, "iq2_s", 0, 0, TensorType::kIQ2_S, false, false},
    {TensorType::kIQ4_XS, "iq4_xs", 0, 0, TensorType::kIQ4_XS, false, false},
    {TensorType::kI8, "i8", 0, 0, TensorType::kI8, false, false},
    {TensorType::kI16, "i16", 0, 0, TensorType::kI16, false, false},
    {TensorType::kI32, "i32", 0, 0, TensorType::kI32, false, false},
    {TensorType::kI64, "i64", 0, 0, TensorType::kI64, false, false},
    {TensorType::kF64, "f64", 0, 0, TensorType::kF64, false, false},
    {TensorType::kIQ1_M, "iq1_m", 0, 0, TensorType::kIQ1_M, false, false},
    {TensorType::kBF16, "bf16", 1, 2, TensorType::kBF16, true, true},
    {TensorType::kTQ1_0, "tq1_0", 0, 0, TensorType::kTQ1_0, false, false},
    {TensorType::kTQ2_0, "tq2_0", 0, 0, TensorType::kTQ2_0, false, false},
    {TensorType::kMXFP4, "mxfp4", 0, 0, TensorType::kMXFP4, false, false},
}};

// Where each field of a block lies (byte offsets from the block's start; ggml-common.h), for the
// types above whose layout is given. Halves (f16) and the q8_K float are little-endian. How the
// fields make values:
//   q4_0/q4_1   value k < 16 is the low nibble of qs[k], value k + 16 its high nibble
//   q5_0/q5_1   the same, plus bit k of qh (a little-endian u32) as the nibble's fifth bit
//   q4_K/q5_K   sub-block s (32 values) has a 6-bit scale and min from scales[12] (KScaleMin);
//               values 64j + l (l < 32) are the low nibbles of qs[32j + l], values 64j + 32 + l
//               their high nibbles; q5_K's fifth bits: bit 2j (low) or 2j + 1 (high) of qh[l]
//   q6_K        values 128h + 32i + l (i < 4, l < 32): low 4 bits from ql[64h + l] (i even) or
//               ql[64h + 32 + l] (i odd), the low nibble for i < 2 and the high one for i >= 2;
//               top 2 bits from qh[32h + l] >> 2i; q - 32; sub-block of 16 values s has scale
//               scales[s] (signed)
//   q8_K        bsums[i] = the sum of qs[16i .. 16i + 15]
namespace block {
inline constexpr size_t kQ4_0D = 0, kQ4_0Qs = 2;
inline constexpr size_t kQ4_1D = 0, kQ4_1M = 2, kQ4_1Qs = 4;
inline constexpr size_t kQ5_0D = 0, kQ5_0Qh = 2, kQ5_0Qs = 6;
inline constexpr size_t kQ5_1D = 0, kQ5_1M = 2, kQ5_1Qh = 4, kQ5_1Qs = 8;
inline constexpr size_t kQ8_0D = 0, kQ8_0Qs = 2;
inline constexpr size_t kQ8_1D = 0, kQ8_1S = 2, kQ8_1Qs = 4;
inline constexpr size_t kQ4_KD = 0, kQ4_KDmin = 2, kQ4_KScales = 4, kQ4_KQs = 16;
inline constexpr size_t kQ5_KD = 0, kQ5_KDmin = 2, kQ5_KScales = 4, kQ5_KQh = 16, kQ5_KQs = 48;
inline constexpr size_t kQ6_KQl = 0, kQ6_KQh = 128, kQ6_KScales = 192, kQ6_KD = 208;
inline constexpr size_t kQ8_KD = 0, kQ8_KQs = 4, kQ8_KBsums = 260;

// Sub-block s (0..7) of a q4_K or q5_K block: its 6-bit scale and min, packed in 12 bytes.
struct KScaleMin {
  uint8_t scale;
  uint8_t min;
};
constexpr KScaleMin UnpackKScaleMin(const uint8_t* scales, int s) {
  if (s < 4) {
    return {static_cast<uint8_t>(scales[s] & 63), static_cast<uint8_t>(scales[s + 4] & 63)};
  }
  return {static_cast<uint8_t>((scales[s + 4] & 0xF) | ((scales[s - 4] >> 6) << 4)),
          static_cast<uint8_t>((scales[s + 4] >> 4) | ((scales[s] >> 6) << 4))};
}
}  // namespace block

// The row for a raw id from a file; nullptr for an id ggml never defined (or retired).
constexpr const TypeInfo* FindTypeInfo(uint32_t id) {
  for (const TypeInfo& info : kTypeInfos) {
    if (static_cast<uint32_t>(info.type) == id) {
      return &info;
    }
  }
  return nullptr;
}

// The row for a type; every TensorType has one (the fallback only keeps GCC's null-dereference
// analysis quiet).
constexpr const TypeInfo& GetTypeInfo(TensorType type) {
  const TypeInfo* info = FindTypeInfo(static_cast<uint32_t>(type));
  return info != nullptr ? *info : kTypeInfos[0];
}

// Bytes of `count` values of a computable type; nullopt when count is not a whole number of
// blocks (or the type has no layout here).
constexpr std::optional<uint64_t> RowBytes(const TypeInfo& info, uint64_t count) {
  if (info.block_size <= 0 || count % static_cast<uint64_t>(info.block_size) != 0) {
    return std::nullopt;
  }
  return count / static_cast<uint64_t>(info.block_size) * info.block_bytes;
}

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_KERNELS_TENSOR_TYPE_H_
