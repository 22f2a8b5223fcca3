// GGUF (versions 2 and 3), read strictly as a pure function over the bytes of a mapping: the
// header, every metadata key and value (all thirteen value types, arrays of any of them, arrays of
// arrays), the tensor infos and where each tensor's data lies. Nothing is copied: strings, arrays
// and tensor data are views into the bytes, which must outlive the GgufFile.
//
//   CH_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Parse(mapping.bytes(), path));
//   CH_ASSIGN_OR_RETURN(std::string_view arch, gguf.GetString("general.architecture"));
//   CH_ASSIGN_OR_RETURN(uint32_t layers, gguf.GetUint32(std::string(arch) + ".block_count"));
//   CH_ASSIGN_OR_RETURN(std::vector<std::string_view> pieces,
//                       gguf.GetStringArray("tokenizer.ggml.tokens"));
//   const GgufTensor* wq = gguf.FindTensor("blk.0.attn_q.weight");   // nullptr when absent
//   // wq->type, wq->dims[0] (values per row), wq->rows(), wq->data (wq->bytes of them)
//
// Layout (all little-endian; github.com/ggml-org/ggml docs/gguf.md): "GGUF", u32 version, u64
// tensor count, u64 metadata count; each metadata entry a string key, a u32 value type and the
// value; each tensor info a string name, u32 n_dims (1..4), u64 dims[n_dims] (dims[0] varies
// fastest: a matrix of R rows of C values is {C, R}), u32 type (ggml_type, tensor_type.h) and a
// u64 offset from the start of the data section; then padding to `general.alignment` (u32, default
// 32) and the data. A string is a u64 length and that many bytes (no terminator); an array a u32
// element type, a u64 count and the elements.
//
// Checked before anything is used, with overflow-safe arithmetic: every length and count against
// the bytes left (a count of a billion 8-byte elements in a 1 MiB file is refused before any
// allocation), array nesting depth, unique keys and tensor names, bools that are 0 or 1,
// general.alignment a u32 power of two, dims positive with dims[0] a whole number of the type's
// blocks and the byte size within 64 bits, every tensor's data inside the file, its offset a
// multiple of the alignment, and no two tensors overlapping. Errors name the file and the key or
// tensor and say what is wrong. Parse never crashes on any input (fuzzed:
// tests/engine/parser_fuzzer.cc).
//
// The reader knows no architecture: which keys a model needs is gguf_model.h's business.
#ifndef CELLHOUSE_ENGINE_FORMATS_GGUF_H_
#define CELLHOUSE_ENGINE_FORMATS_GGUF_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/kernels/tensor_type.h"

namespace cellhouse::engine {

// "GGUF" as the first four bytes.
inline constexpr std::array<char, 4> kGgufMagic = {'G', 'G', 'U', 'F'};
inline constexpr uint32_t kGgufDefaultAlignment = 32;
inline constexpr uint32_t kGgufMaxDims = 4;  // GGML_MAX_DIMS
// Arrays of arrays may nest this deep (no real file nests at all; the limit bounds recursion).
inline constexpr int kGgufMaxArrayDepth = 8;

// True when `file` starts with the GGUF magic (whatever follows).
bool IsGguf(std::span<const std::byte> file);

// The metadata value types, as the file numbers them.
enum class GgufType : uint32_t {
  kUint8 = 0,
  kInt8 = 1,
  kUint16 = 2,
  kInt16 = 3,
  kUint32 = 4,
  kInt32 = 5,
  kFloat32 = 6,
  kBool = 7,
  kString = 8,
  kArray = 9,
  kUint64 = 10,
  kInt64 = 11,
  kFloat64 = 12,
};
// "uint32", "string", "array", ...
std::string_view GgufTypeName(GgufType type);

// One metadata value: a view of its encoding in the file (already checked by Parse, so reading it
// cannot fail or go out of bounds). For an array, `type` is kArray and the elements follow their
// own type.
class GgufValue {
 public:
  GgufValue() = default;
  GgufValue(GgufType type, std::span<const std::byte> encoded) : type_(type), encoded_(encoded) {}

  GgufType type() const { return type_; }
  bool is_integer() const;  // u8..i64
  bool is_float() const;    // f32, f64

  // Scalars. Integer getters succeed for any integer type whose value fits; the float getter for
  // f32 and f64 (f64 rounded to float). Errors say what the value is instead.
  std::optional<uint64_t> AsUint64() const;
  std::optional<int64_t> AsInt64() const;
  std::optional<double> AsDouble() const;
  std::optional<bool> AsBool() const;
  std::optional<std::string_view> AsString() const;

  // Arrays (nullopt / 0 / empty for anything else).
  GgufType array_type() const;
  uint64_t array_size() const;
  // Calls `visit` with every element, in order (strings and nested arrays included), until it
  // returns false. Nothing is allocated per element: an array may be as long as the file allows.
  void ForEachElement(const std::function<bool(const GgufValue&)>& visit) const;
  // Every element, in order (24 bytes each: for small arrays, tests and descriptions).
  std::vector<GgufValue> Elements() const;

  // "uint32 7", "string \"llama\"", "array of 32000 string", for messages and `cellmodel info`.
  std::string Describe() const;

 private:
  GgufType type_ = GgufType::kUint8;
  std::span<const std::byte> encoded_;  // the value's bytes (after its type tag)
};

struct GgufMetadata {
  std::string_view key;
  GgufValue value;
};

struct GgufTensor {
  std::string_view name;
  TensorType type = TensorType::kF32;
  uint32_t n_dims = 0;
  std::array<uint64_t, kGgufMaxDims> dims = {1, 1, 1, 1};  // dims[0] varies fastest
  uint64_t offset = 0;                                     // bytes from the start of the file
  uint64_t bytes = 0;
  std::span<const std::byte> data;

  uint64_t cols() const { return dims[0]; }
  uint64_t rows() const { return dims[1] * dims[2] * dims[3]; }  // fits: bytes did
  uint64_t elements() const { return cols() * rows(); }
  // "blk.0.attn_q.weight q8_0 [256, 256]"
  std::string Describe() const;
};

class GgufFile {
 public:
  // Parses and checks `file` (see the top of this file). `name` (usually the path) prefixes every
  // message: "reading GGUF 'm.gguf': tensor 'blk.0.attn_q.weight' (q8_0 [256, 256]) ends at byte
  // 70000, past the end of the 65536-byte file (truncated?)".
  static Result<GgufFile> Parse(std::span<const std::byte> file, std::string_view name);

  GgufFile(GgufFile&&) noexcept = default;
  GgufFile& operator=(GgufFile&&) noexcept = default;

  uint32_t version() const { return version_; }
  uint32_t alignment() const { return alignment_; }
  uint64_t data_offset() const { return data_offset_; }  // where the data section starts
  uint64_t file_bytes() const { return file_bytes_; }
  const std::string& name() const { return name_; }

  // In file order.
  std::span<const GgufMetadata> metadata() const { return metadata_; }
  const GgufValue* Find(std::string_view key) const;  // nullptr when absent
  bool Has(std::string_view key) const { return Find(key) != nullptr; }

  // Typed access. A missing key or one of another type is an error naming the key, the file and
  // what the value is ("key 'llama.block_count' is a string, expected an unsigned integer").
  Result<std::string_view> GetString(std::string_view key) const;
  Result<uint32_t> GetUint32(std::string_view key) const;  // any integer type, if it fits
  Result<uint64_t> GetUint64(std::string_view key) const;
  Result<int64_t> GetInt64(std::string_view key) const;
  Result<float> GetFloat32(std::string_view key) const;  // f32 or f64
  Result<bool> GetBool(std::string_view key) const;
  // Arrays: the element type must match (strings), or be any integer (ints: each must fit) or
  // any float (floats).
  Result<std::vector<std::string_view>> GetStringArray(std::string_view key) const;
  Result<std::vector<float>> GetFloat32Array(std::string_view key) const;
  Result<std::vector<int32_t>> GetInt32Array(std::string_view key) const;
  // The same, with a default for an absent key (a present key of the wrong type is still an
  // error).
  Result<uint32_t> GetUint32Or(std::string_view key, uint32_t absent) const;
  Result<float> GetFloat32Or(std::string_view key, float absent) const;
  Result<bool> GetBoolOr(std::string_view key, bool absent) const;

  // In file order.
  std::span<const GgufTensor> tensors() const { return tensors_; }
  const GgufTensor* FindTensor(std::string_view tensor_name) const;  // nullptr when absent

  // "reading GGUF '<name>': <why>", for the model loader's own refusals.
  Error Refuse(const std::string& why) const;

 private:
  GgufFile() = default;
  Result<const GgufValue*> Require(std::string_view key) const;
  Error WrongType(std::string_view key, const GgufValue& value, std::string_view expected) const;

  std::string name_;
  uint32_t version_ = 0;
  uint32_t alignment_ = kGgufDefaultAlignment;
  uint64_t data_offset_ = 0;
  uint64_t file_bytes_ = 0;
  std::vector<GgufMetadata> metadata_;
  std::vector<GgufTensor> tensors_;
  // Keys and names view the file's bytes, which never move. Ordered maps: a file cannot choose
  // names that collide (a hash table's worst case would make parsing quadratic).
  std::map<std::string_view, size_t, std::less<>> metadata_index_;
  std::map<std::string_view, size_t, std::less<>> tensor_index_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_GGUF_H_
