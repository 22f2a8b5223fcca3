#include "engine/formats/gguf.h"

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstring>
#include <limits>
#include <numeric>

#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

static_assert(std::endian::native == std::endian::little,
              "the GGUF reader reads little-endian numbers with memcpy");

namespace {

constexpr uint32_t kLastType = static_cast<uint32_t>(GgufType::kFloat64);

// Bytes of one element of a fixed-size type; 0 for strings and arrays.
uint64_t FixedSize(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
    case GgufType::kInt8:
    case GgufType::kBool:
      return 1;
    case GgufType::kUint16:
    case GgufType::kInt16:
      return 2;
    case GgufType::kUint32:
    case GgufType::kInt32:
    case GgufType::kFloat32:
      return 4;
    case GgufType::kUint64:
    case GgufType::kInt64:
    case GgufType::kFloat64:
      return 8;
    case GgufType::kString:
    case GgufType::kArray:
      return 0;
  }
  return 0;
}

// The fewest bytes a value of `type` can take: what bounds a count by the bytes left.
uint64_t MinimumSize(GgufType type) {
  if (type == GgufType::kString) {
    return 8;  // the length
  }
  if (type == GgufType::kArray) {
    return 12;  // element type and count
  }
  return FixedSize(type);
}

template <typename T>
T Load(const std::byte* p) {
  T value;
  std::memcpy(&value, p, sizeof(T));
  return value;
}

// A read position over the file. Every read checks the bytes left first.
class Cursor {
 public:
  explicit Cursor(std::span<const std::byte> file) : file_(file) {}

  uint64_t position() const { return pos_; }
  uint64_t left() const { return file_.size() - pos_; }
  std::span<const std::byte> Span(uint64_t begin, uint64_t end) const {
    return file_.subspan(begin, end - begin);
  }

  template <typename T>
  std::optional<T> Read() {
    if (left() < sizeof(T)) {
      return std::nullopt;
    }
    T value = Load<T>(file_.data() + pos_);
    pos_ += sizeof(T);
    return value;
  }
  bool Skip(uint64_t bytes) {
    if (left() < bytes) {
      return false;
    }
    pos_ += bytes;
    return true;
  }
  const std::byte* here() const { return file_.data() + pos_; }

 private:
  std::span<const std::byte> file_;
  uint64_t pos_ = 0;
};

std::string Quoted(std::string_view text) {
  // Names come from the file: keep messages printable and short.
  std::string out = "'";
  for (char c : text.substr(0, 96)) {
    const auto u = static_cast<unsigned char>(c);
    out += u >= 0x20 && u < 0x7F ? c : '?';
  }
  return out + (text.size() > 96 ? "...'" : "'");
}

// Parses the values of a file, stopping at the first problem. `what` says where the cursor is
// ("key 'x'", "tensor 3"), for messages.
class Parser {
 public:
  explicit Parser(std::span<const std::byte> file) : cur_(file) {}

  Cursor& cursor() { return cur_; }

  // A string at the cursor.
  Result<std::string_view> String(const std::string& what) {
    const uint64_t at = cur_.position();
    std::optional<uint64_t> length = cur_.Read<uint64_t>();
    if (!length) {
      return Error(what + ": the file ends in a string's length at byte " + std::to_string(at));
    }
    if (*length > cur_.left()) {
      return Error(what + ": a string at byte " + std::to_string(at) + " claims " +
                   std::to_string(*length) + " bytes but only " + std::to_string(cur_.left()) +
                   " remain");
    }
    std::string_view text(reinterpret_cast<const char*>(cur_.here()), *length);
    static_cast<void>(cur_.Skip(*length));
    return text;
  }

  Result<GgufType> Type(const std::string& what) {
    std::optional<uint32_t> raw = cur_.Read<uint32_t>();
    if (!raw) {
      return Error(what + ": the file ends in a value type");
    }
    if (*raw > kLastType) {
      return Error(what + ": unknown value type " + std::to_string(*raw) + " (GGUF defines 0..12)");
    }
    return static_cast<GgufType>(*raw);
  }

  // Checks and skips one value of `type`, returning the span of its encoding.
  Result<std::span<const std::byte>> Value(GgufType type, const std::string& what, int depth) {
    const uint64_t begin = cur_.position();
    CH_RETURN_IF_ERROR(Check(type, what, depth));
    return cur_.Span(begin, cur_.position());
  }

 private:
  Status Check(GgufType type, const std::string& what, int depth) {
    if (type == GgufType::kString) {
      Result<std::string_view> text = String(what);
      if (!text) {
        return std::move(text).error();
      }
      return Ok();
    }
    if (type == GgufType::kBool) {
      std::optional<uint8_t> b = cur_.Read<uint8_t>();
      if (!b) {
        return Error(what + ": the file ends in a bool");
      }
      if (*b > 1) {
        return Error(what + ": a bool is " + std::to_string(*b) + ", must be 0 or 1");
      }
      return Ok();
    }
    if (type != GgufType::kArray) {
      if (!cur_.Skip(FixedSize(type))) {
        return Error(what + ": the file ends in a " + std::string(GgufTypeName(type)));
      }
      return Ok();
    }
    if (depth >= kGgufMaxArrayDepth) {
      return Error(what + ": arrays nested more than " + std::to_string(kGgufMaxArrayDepth) +
                   " deep");
    }
    CH_ASSIGN_OR_RETURN(GgufType element, Type(what + ", array element"));
    std::optional<uint64_t> count = cur_.Read<uint64_t>();
    if (!count) {
      return Error(what + ": the file ends in an array's length");
    }
    // Every element takes at least MinimumSize bytes: a count that cannot fit is refused here,
    // before any loop or allocation depends on it.
    if (*count > cur_.left() / MinimumSize(element)) {
      return Error(what + ": an array of " + std::to_string(*count) + " " +
                   std::string(GgufTypeName(element)) + " cannot fit in the " +
                   std::to_string(cur_.left()) + " bytes left");
    }
    const uint64_t fixed = FixedSize(element);
    if (fixed != 0 && element != GgufType::kBool) {
      static_cast<void>(cur_.Skip(*count * fixed));  // fits: checked above
      return Ok();
    }
    for (uint64_t i = 0; i < *count; ++i) {
      CH_RETURN_IF_ERROR(Check(element, what, depth + 1));
    }
    return Ok();
  }

  Cursor cur_;
};

bool IsIntegerType(GgufType type) {
  return type != GgufType::kFloat32 && type != GgufType::kFloat64 && type != GgufType::kBool &&
         type != GgufType::kString && type != GgufType::kArray;
}

// Bytes of the encoding of a value Parse has checked, starting at p.
size_t EncodedSize(GgufType type, const std::byte* p) {
  if (type == GgufType::kString) {
    return 8 + Load<uint64_t>(p);
  }
  if (type != GgufType::kArray) {
    return FixedSize(type);
  }
  const auto element = static_cast<GgufType>(Load<uint32_t>(p));
  const auto count = Load<uint64_t>(p + 4);
  if (FixedSize(element) != 0) {
    return 12 + count * FixedSize(element);
  }
  size_t size = 12;
  for (uint64_t i = 0; i < count; ++i) {
    size += EncodedSize(element, p + size);
  }
  return size;
}

// What a value is, for "key 'x' is <...>, expected ...".
std::string Kind(const GgufValue& v) {
  if (v.type() == GgufType::kArray) {
    return "an array of " + std::string(GgufTypeName(v.array_type()));
  }
  return "a " + std::string(GgufTypeName(v.type()));
}

std::string SupportedTypeNames() {
  std::string names;
  for (const TypeInfo& info : kTypeInfos) {
    if (info.weight) {
      names += (names.empty() ? "" : ", ") + std::string(info.name);
    }
  }
  return names;
}

std::string DimsText(uint32_t n_dims, const std::array<uint64_t, kGgufMaxDims>& dims) {
  std::string text = "[";
  for (uint32_t i = 0; i < n_dims; ++i) {
    text += (i == 0 ? "" : ", ") + std::to_string(dims[i]);
  }
  return text + "]";
}

}  // namespace

bool IsGguf(std::span<const std::byte> file) {
  return file.size() >= kGgufMagic.size() &&
         std::memcmp(file.data(), kGgufMagic.data(), kGgufMagic.size()) == 0;
}

std::string_view GgufTypeName(GgufType type) {
  switch (type) {
    case GgufType::kUint8:
      return "uint8";
    case GgufType::kInt8:
      return "int8";
    case GgufType::kUint16:
      return "uint16";
    case GgufType::kInt16:
      return "int16";
    case GgufType::kUint32:
      return "uint32";
    case GgufType::kInt32:
      return "int32";
    case GgufType::kFloat32:
      return "float32";
    case GgufType::kBool:
      return "bool";
    case GgufType::kString:
      return "string";
    case GgufType::kArray:
      return "array";
    case GgufType::kUint64:
      return "uint64";
    case GgufType::kInt64:
      return "int64";
    case GgufType::kFloat64:
      return "float64";
  }
  return "?";
}

// ---- GgufValue ----

bool GgufValue::is_integer() const { return IsIntegerType(type_); }

bool GgufValue::is_float() const {
  return type_ == GgufType::kFloat32 || type_ == GgufType::kFloat64;
}

std::optional<uint64_t> GgufValue::AsUint64() const {
  if (is_integer() && (type_ == GgufType::kUint8 || type_ == GgufType::kUint16 ||
                       type_ == GgufType::kUint32 || type_ == GgufType::kUint64)) {
    uint64_t value = 0;
    std::memcpy(&value, encoded_.data(), encoded_.size());  // little-endian: zero-extends
    return value;
  }
  std::optional<int64_t> signed_value = AsInt64();
  if (signed_value && *signed_value >= 0) {
    return static_cast<uint64_t>(*signed_value);
  }
  return std::nullopt;
}

std::optional<int64_t> GgufValue::AsInt64() const {
  const std::byte* p = encoded_.data();
  switch (type_) {
    case GgufType::kInt8:
      return Load<int8_t>(p);
    case GgufType::kInt16:
      return Load<int16_t>(p);
    case GgufType::kInt32:
      return Load<int32_t>(p);
    case GgufType::kInt64:
      return Load<int64_t>(p);
    case GgufType::kUint8:
      return Load<uint8_t>(p);
    case GgufType::kUint16:
      return Load<uint16_t>(p);
    case GgufType::kUint32:
      return Load<uint32_t>(p);
    case GgufType::kUint64: {
      const auto u = Load<uint64_t>(p);
      if (u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
        return std::nullopt;
      }
      return static_cast<int64_t>(u);
    }
    default:
      return std::nullopt;
  }
}

std::optional<double> GgufValue::AsDouble() const {
  if (type_ == GgufType::kFloat32) {
    return Load<float>(encoded_.data());
  }
  if (type_ == GgufType::kFloat64) {
    return Load<double>(encoded_.data());
  }
  return std::nullopt;
}

std::optional<bool> GgufValue::AsBool() const {
  if (type_ != GgufType::kBool) {
    return std::nullopt;
  }
  return Load<uint8_t>(encoded_.data()) != 0;
}

std::optional<std::string_view> GgufValue::AsString() const {
  if (type_ != GgufType::kString) {
    return std::nullopt;
  }
  return std::string_view(reinterpret_cast<const char*>(encoded_.data()) + 8, encoded_.size() - 8);
}

GgufType GgufValue::array_type() const {
  if (type_ != GgufType::kArray) {
    return GgufType::kUint8;
  }
  return static_cast<GgufType>(Load<uint32_t>(encoded_.data()));
}

uint64_t GgufValue::array_size() const {
  return type_ == GgufType::kArray ? Load<uint64_t>(encoded_.data() + 4) : 0;
}

void GgufValue::ForEachElement(const std::function<bool(const GgufValue&)>& visit) const {
  if (type_ != GgufType::kArray) {
    return;
  }
  const GgufType element = array_type();
  const uint64_t count = array_size();  // Parse checked that the elements fit in the value
  size_t pos = 12;
  for (uint64_t i = 0; i < count; ++i) {
    const size_t size = EncodedSize(element, encoded_.data() + pos);
    if (!visit(GgufValue(element, encoded_.subspan(pos, size)))) {
      return;
    }
    pos += size;
  }
}

std::vector<GgufValue> GgufValue::Elements() const {
  std::vector<GgufValue> out;
  ForEachElement([&out](const GgufValue& e) {
    out.push_back(e);
    return true;
  });
  return out;
}

std::string GgufValue::Describe() const {
  if (type_ == GgufType::kArray) {
    return "array of " + std::to_string(array_size()) + " " +
           std::string(GgufTypeName(array_type()));
  }
  std::string text(GgufTypeName(type_));
  if (std::optional<std::string_view> s = AsString()) {
    return text + " " + Quoted(*s);
  }
  if (std::optional<bool> b = AsBool()) {
    return text + (*b ? " true" : " false");
  }
  if (std::optional<double> d = AsDouble()) {
    return text + " " + std::to_string(*d);
  }
  if (std::optional<int64_t> i = AsInt64()) {
    return text + " " + std::to_string(*i);
  }
  if (std::optional<uint64_t> u = AsUint64()) {
    return text + " " + std::to_string(*u);
  }
  return text;
}

std::string GgufTensor::Describe() const {
  return Quoted(name) + " (" + std::string(GetTypeInfo(type).name) + " " + DimsText(n_dims, dims) +
         ")";
}

// ---- GgufFile ----

Error GgufFile::Refuse(const std::string& why) const {
  return Error("reading GGUF '" + name_ + "': " + why);
}

namespace {

// One tensor info (name, dimensions, type, relative offset), checked against the type's block
// layout and for overflow; the offset is made absolute once the data section is known.
Result<GgufTensor> ReadTensorInfo(Parser& parser, uint64_t i) {
  Cursor& cur = parser.cursor();
  const std::string entry = "tensor info " + std::to_string(i);
  CH_ASSIGN_OR_RETURN(std::string_view tensor_name, parser.String(entry + "'s name"));
  GgufTensor t{.name = tensor_name};
  const std::string what = "tensor " + Quoted(t.name);
  std::optional<uint32_t> n_dims = cur.Read<uint32_t>();
  if (!n_dims) {
    return Error("the file ends in " + what + "'s info");
  }
  if (*n_dims < 1 || *n_dims > kGgufMaxDims) {
    return Error(what + " has " + std::to_string(*n_dims) + " dimensions (must be 1.." +
                 std::to_string(kGgufMaxDims) + ")");
  }
  t.n_dims = *n_dims;
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    std::optional<uint64_t> dim = cur.Read<uint64_t>();
    if (!dim) {
      return Error("the file ends in " + what + "'s info");
    }
    t.dims[d] = *dim;
  }
  std::optional<uint32_t> raw_type = cur.Read<uint32_t>();
  std::optional<uint64_t> offset = cur.Read<uint64_t>();
  if (!raw_type || !offset) {
    return Error("the file ends in " + what + "'s info");
  }
  const TypeInfo* info = FindTypeInfo(*raw_type);
  if (info == nullptr) {
    return Error(what + " has type id " + std::to_string(*raw_type) +
                 ", which ggml does not define");
  }
  if (!info->weight) {
    return Error(what + " has type " + std::string(info->name) +
                 ", which cellhouse does not support (supported: " + SupportedTypeNames() + ")");
  }
  t.type = info->type;
  for (uint32_t d = 0; d < t.n_dims; ++d) {
    if (t.dims[d] == 0) {
      return Error(what + " has a zero dimension " + DimsText(t.n_dims, t.dims));
    }
  }
  std::optional<uint64_t> row_bytes = RowBytes(*info, t.dims[0]);
  if (!row_bytes) {
    return Error(what + " has rows of " + std::to_string(t.dims[0]) + " values, not a whole " +
                 "number of " + std::string(info->name) + "'s blocks of " +
                 std::to_string(info->block_size));
  }
  std::optional<uint64_t> elements = CheckedMul({t.dims[0], t.dims[1], t.dims[2], t.dims[3]});
  std::optional<uint64_t> bytes = CheckedMul({*row_bytes, t.dims[1], t.dims[2], t.dims[3]});
  if (!elements || !bytes || *elements > static_cast<uint64_t>(INT64_MAX)) {
    return Error(what + " with dimensions " + DimsText(t.n_dims, t.dims) + " is too large");
  }
  t.bytes = *bytes;
  t.offset = *offset;
  return t;
}

// Makes t's offset absolute and points its data into the file, after checking that it is
// aligned and inside the file.
Status PlaceTensor(GgufTensor& t, uint64_t data_offset, uint64_t alignment,
                   std::span<const std::byte> file) {
  const std::string what = "tensor " + t.Describe();
  if (t.offset % alignment != 0) {
    return Error(what + " has data offset " + std::to_string(t.offset) +
                 ", not a multiple of the alignment " + std::to_string(alignment));
  }
  std::optional<uint64_t> begin = CheckedAdd(data_offset, t.offset);
  std::optional<uint64_t> end = begin ? CheckedAdd(*begin, t.bytes) : std::nullopt;
  if (!end || *end > file.size()) {
    return Error(what + " (" + std::to_string(t.bytes) + " bytes at data offset " +
                 std::to_string(t.offset) + ") ends past the end of the " +
                 std::to_string(file.size()) + "-byte file (truncated?)");
  }
  // Floats and halves are read in place: keep them naturally aligned whatever the alignment.
  const uint64_t natural = t.type == TensorType::kF32 ? 4 : 2;
  if (*begin % natural != 0) {
    return Error(what + " starts at byte " + std::to_string(*begin) + ", not a multiple of " +
                 std::to_string(natural));
  }
  t.offset = *begin;
  t.data = file.subspan(*begin, t.bytes);
  return Ok();
}

// No two tensors share a byte: sorted by offset, each ends before the next begins.
Status CheckDisjoint(const std::vector<GgufTensor>& tensors) {
  std::vector<size_t> order(tensors.size());
  std::iota(order.begin(), order.end(), size_t{0});
  std::sort(order.begin(), order.end(),
            [&tensors](size_t a, size_t b) { return tensors[a].offset < tensors[b].offset; });
  for (size_t i = 1; i < order.size(); ++i) {
    const GgufTensor& prev = tensors[order[i - 1]];
    const GgufTensor& next = tensors[order[i]];
    if (prev.offset + prev.bytes > next.offset) {
      return Error("tensor " + prev.Describe() + " (bytes " + std::to_string(prev.offset) + ".." +
                   std::to_string(prev.offset + prev.bytes) + ") overlaps tensor " +
                   next.Describe() + " (from byte " + std::to_string(next.offset) + ")");
    }
  }
  return Ok();
}

}  // namespace

Result<GgufFile> GgufFile::Parse(std::span<const std::byte> file, std::string_view name) {
  GgufFile g;
  g.name_ = std::string(name);
  g.file_bytes_ = file.size();
  auto refuse = [&g](const std::string& why) { return g.Refuse(why); };
  if (!IsGguf(file)) {
    return refuse("the file does not start with the magic \"GGUF\"");
  }
  Parser parser(file);
  Cursor& cur = parser.cursor();
  static_cast<void>(cur.Skip(kGgufMagic.size()));
  std::optional<uint32_t> version = cur.Read<uint32_t>();
  std::optional<uint64_t> tensor_count = cur.Read<uint64_t>();
  std::optional<uint64_t> metadata_count = cur.Read<uint64_t>();
  if (!version || !tensor_count || !metadata_count) {
    return refuse("the file is " + std::to_string(file.size()) +
                  " bytes, shorter than the 24-byte header");
  }
  if (*version == 1) {
    return refuse(
        "GGUF version 1 (from before August 2023) is not supported; convert the model "
        "again with a current llama.cpp");
  }
  if (*version == 0x02000000U || *version == 0x03000000U) {
    return refuse("the file is big-endian GGUF; only little-endian files are supported");
  }
  if (*version != 2 && *version != 3) {
    return refuse("unknown GGUF version " + std::to_string(*version) + " (supported: 2, 3)");
  }
  g.version_ = *version;
  // A metadata entry takes at least 13 bytes (key length, type, one byte of value); a tensor
  // info at least 32 (name length, n_dims, one dim, type, offset).
  if (*metadata_count > cur.left() / 13) {
    return refuse("the header claims " + std::to_string(*metadata_count) +
                  " metadata entries, more than the " + std::to_string(cur.left()) +
                  " bytes left can hold");
  }
  if (*tensor_count > cur.left() / 32) {
    return refuse("the header claims " + std::to_string(*tensor_count) +
                  " tensors, more than the " + std::to_string(cur.left()) + " bytes left can hold");
  }

  // The counts are only bounded by the file's size; real files have tens of keys and at most some
  // thousands of tensors, so reserve no more than that and let a larger count grow as it parses.
  constexpr uint64_t kReserveAtMost = 4096;
  g.metadata_.reserve(std::min(*metadata_count, kReserveAtMost));
  for (uint64_t i = 0; i < *metadata_count; ++i) {
    const std::string entry = "metadata entry " + std::to_string(i);
    Result<std::string_view> key = parser.String(entry + "'s key");
    if (!key) {
      return refuse(key.error().message());
    }
    if (key->empty()) {
      return refuse(entry + " has an empty key");
    }
    const std::string what = "key " + Quoted(*key);
    Result<GgufType> type = parser.Type(what);
    if (!type) {
      return refuse(type.error().message());
    }
    Result<std::span<const std::byte>> encoded = parser.Value(*type, what, 0);
    if (!encoded) {
      return refuse(encoded.error().message());
    }
    if (!g.metadata_index_.emplace(*key, g.metadata_.size()).second) {
      return refuse(what + " appears twice");
    }
    g.metadata_.push_back({*key, GgufValue(*type, *encoded)});
  }

  if (const GgufValue* alignment = g.Find("general.alignment")) {
    if (alignment->type() != GgufType::kUint32) {
      return refuse("key 'general.alignment' is " + Kind(*alignment) + ", expected a uint32");
    }
    const auto value = static_cast<uint32_t>(*alignment->AsUint64());
    if (value == 0 || !std::has_single_bit(value)) {
      return refuse("key 'general.alignment' is " + std::to_string(value) + ", not a power of two");
    }
    g.alignment_ = value;
  }

  g.tensors_.reserve(std::min(*tensor_count, kReserveAtMost));
  for (uint64_t i = 0; i < *tensor_count; ++i) {
    Result<GgufTensor> read = ReadTensorInfo(parser, i);
    if (!read) {
      return refuse(read.error().message());
    }
    GgufTensor& t = *read;
    const std::string what = "tensor " + Quoted(t.name);
    if (!g.tensor_index_.emplace(t.name, g.tensors_.size()).second) {
      return refuse(what + " appears twice");
    }
    g.tensors_.push_back(t);
  }

  // The data section starts at the next multiple of the alignment.
  const uint64_t infos_end = cur.position();
  std::optional<uint64_t> padded = CheckedAdd(infos_end, g.alignment_ - 1);
  if (!padded) {
    return refuse("the data section's offset overflows");
  }
  g.data_offset_ = *padded / g.alignment_ * g.alignment_;
  if (!g.tensors_.empty() && g.data_offset_ > file.size()) {
    return refuse("the file ends at byte " + std::to_string(file.size()) +
                  " before its data section (at " + std::to_string(g.data_offset_) +
                  "; truncated?)");
  }
  for (GgufTensor& t : g.tensors_) {
    if (Status placed = PlaceTensor(t, g.data_offset_, g.alignment_, file); !placed) {
      return refuse(placed.error().message());
    }
  }
  if (Status disjoint = CheckDisjoint(g.tensors_); !disjoint) {
    return refuse(disjoint.error().message());
  }
  return g;
}

const GgufValue* GgufFile::Find(std::string_view key) const {
  auto it = metadata_index_.find(key);
  return it == metadata_index_.end() ? nullptr : &metadata_[it->second].value;
}

const GgufTensor* GgufFile::FindTensor(std::string_view tensor_name) const {
  auto it = tensor_index_.find(tensor_name);
  return it == tensor_index_.end() ? nullptr : &tensors_[it->second];
}

Result<const GgufValue*> GgufFile::Require(std::string_view key) const {
  const GgufValue* value = Find(key);
  if (value == nullptr) {
    return Refuse("the required key " + Quoted(key) + " is missing");
  }
  return value;
}

Error GgufFile::WrongType(std::string_view key, const GgufValue& value,
                          std::string_view expected) const {
  return Refuse("key " + Quoted(key) + " is " + Kind(value) + " (" + value.Describe() +
                "), expected " + std::string(expected));
}

Result<std::string_view> GgufFile::GetString(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  std::optional<std::string_view> s = v->AsString();
  if (!s) {
    return WrongType(key, *v, "a string");
  }
  return *s;
}

Result<uint64_t> GgufFile::GetUint64(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  std::optional<uint64_t> u = v->AsUint64();
  if (!u) {
    return WrongType(key, *v, "a non-negative integer");
  }
  return *u;
}

Result<uint32_t> GgufFile::GetUint32(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  std::optional<uint64_t> u = v->AsUint64();
  if (!u || *u > std::numeric_limits<uint32_t>::max()) {
    return WrongType(key, *v, "an integer in 0..4294967295");
  }
  return static_cast<uint32_t>(*u);
}

Result<int64_t> GgufFile::GetInt64(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  std::optional<int64_t> i = v->AsInt64();
  if (!i) {
    return WrongType(key, *v, "an integer");
  }
  return *i;
}

Result<float> GgufFile::GetFloat32(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  std::optional<double> d = v->AsDouble();
  if (!d) {
    return WrongType(key, *v, "a float");
  }
  return static_cast<float>(*d);
}

Result<bool> GgufFile::GetBool(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  std::optional<bool> b = v->AsBool();
  if (!b) {
    return WrongType(key, *v, "a bool");
  }
  return *b;
}

Result<uint32_t> GgufFile::GetUint32Or(std::string_view key, uint32_t absent) const {
  return Has(key) ? GetUint32(key) : Result<uint32_t>(absent);
}

Result<float> GgufFile::GetFloat32Or(std::string_view key, float absent) const {
  return Has(key) ? GetFloat32(key) : Result<float>(absent);
}

Result<bool> GgufFile::GetBoolOr(std::string_view key, bool absent) const {
  return Has(key) ? GetBool(key) : Result<bool>(absent);
}

Result<std::vector<std::string_view>> GgufFile::GetStringArray(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  if (v->type() != GgufType::kArray || v->array_type() != GgufType::kString) {
    return WrongType(key, *v, "an array of string");
  }
  std::vector<std::string_view> out;
  out.reserve(v->array_size());  // each at least 8 bytes of the file
  v->ForEachElement([&out](const GgufValue& e) {
    out.push_back(*e.AsString());
    return true;
  });
  return out;
}

Result<std::vector<float>> GgufFile::GetFloat32Array(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  if (v->type() != GgufType::kArray ||
      (v->array_type() != GgufType::kFloat32 && v->array_type() != GgufType::kFloat64)) {
    return WrongType(key, *v, "an array of float32");
  }
  std::vector<float> out;
  out.reserve(v->array_size());  // each at least 4 bytes of the file
  v->ForEachElement([&out](const GgufValue& e) {
    out.push_back(static_cast<float>(*e.AsDouble()));
    return true;
  });
  return out;
}

Result<std::vector<int32_t>> GgufFile::GetInt32Array(std::string_view key) const {
  CH_ASSIGN_OR_RETURN(const GgufValue* v, Require(key));
  if (v->type() != GgufType::kArray || !IsIntegerType(v->array_type())) {
    return WrongType(key, *v, "an array of integers");
  }
  std::vector<int32_t> out;
  out.reserve(v->array_size());
  std::optional<Error> refused;
  v->ForEachElement([&](const GgufValue& e) {
    std::optional<int64_t> i = e.AsInt64();
    if (!i || *i < std::numeric_limits<int32_t>::min() ||
        *i > std::numeric_limits<int32_t>::max()) {
      refused = Refuse("key " + Quoted(key) + ": element " + std::to_string(out.size()) + " (" +
                       e.Describe() + ") does not fit in an int32");
      return false;
    }
    out.push_back(static_cast<int32_t>(*i));
    return true;
  });
  if (refused) {
    return std::move(*refused);
  }
  return out;
}

}  // namespace cellhouse::engine
