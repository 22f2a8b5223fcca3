#include "engine/formats/gguf_writer.h"

#include <cstring>
#include <utility>
#include <vector>

#include "engine/formats/atomic_file.h"
#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

namespace {

template <typename T>
void Append(std::vector<std::byte>& out, T value) {
  const size_t at = out.size();
  out.resize(at + sizeof(T));
  std::memcpy(out.data() + at, &value, sizeof(T));
}

void AppendString(std::vector<std::byte>& out, std::string_view text) {
  Append<uint64_t>(out, text.size());
  const size_t at = out.size();
  out.resize(at + text.size());
  if (!text.empty()) {
    std::memcpy(out.data() + at, text.data(), text.size());
  }
}

template <typename T>
std::vector<std::byte> Scalar(T value) {
  std::vector<std::byte> out;
  Append(out, value);
  return out;
}

template <typename T>
std::vector<std::byte> Array(GgufType element, std::span<const T> values) {
  std::vector<std::byte> out;
  Append<uint32_t>(out, static_cast<uint32_t>(element));
  Append<uint64_t>(out, values.size());
  for (const T& v : values) {
    Append(out, v);
  }
  return out;
}

}  // namespace

GgufWriter::GgufWriter(uint32_t alignment) : alignment_(alignment) {
  if (alignment_ != kGgufDefaultAlignment) {
    SetUint32("general.alignment", alignment_);
  }
}

std::vector<std::byte> GgufWriter::EncodeString(std::string_view text) {
  std::vector<std::byte> out;
  AppendString(out, text);
  return out;
}

void GgufWriter::Set(std::string_view key, GgufType type, std::vector<std::byte> encoded) {
  for (Entry& e : entries_) {
    if (e.key == key) {
      e.type = type;
      e.encoded = std::move(encoded);
      return;
    }
  }
  entries_.push_back({std::string(key), type, std::move(encoded)});
}

void GgufWriter::SetUint32(std::string_view key, uint32_t value) {
  Set(key, GgufType::kUint32, Scalar(value));
}
void GgufWriter::SetInt32(std::string_view key, int32_t value) {
  Set(key, GgufType::kInt32, Scalar(value));
}
void GgufWriter::SetUint64(std::string_view key, uint64_t value) {
  Set(key, GgufType::kUint64, Scalar(value));
}
void GgufWriter::SetFloat32(std::string_view key, float value) {
  Set(key, GgufType::kFloat32, Scalar(value));
}
void GgufWriter::SetBool(std::string_view key, bool value) {
  Set(key, GgufType::kBool, Scalar<uint8_t>(value ? 1 : 0));
}
void GgufWriter::SetString(std::string_view key, std::string_view value) {
  Set(key, GgufType::kString, EncodeString(value));
}
void GgufWriter::SetStringArray(std::string_view key, std::span<const std::string> values) {
  std::vector<std::byte> out;
  Append<uint32_t>(out, static_cast<uint32_t>(GgufType::kString));
  Append<uint64_t>(out, values.size());
  for (const std::string& v : values) {
    AppendString(out, v);
  }
  Set(key, GgufType::kArray, std::move(out));
}
void GgufWriter::SetFloat32Array(std::string_view key, std::span<const float> values) {
  Set(key, GgufType::kArray, Array(GgufType::kFloat32, values));
}
void GgufWriter::SetInt32Array(std::string_view key, std::span<const int32_t> values) {
  Set(key, GgufType::kArray, Array(GgufType::kInt32, values));
}
void GgufWriter::SetRaw(std::string_view key, GgufType type, std::vector<std::byte> encoded) {
  Set(key, type, std::move(encoded));
}

void GgufWriter::AddTensor(std::string_view name, TensorType type, std::vector<uint64_t> dims,
                           std::vector<std::byte> data) {
  tensors_.push_back({.name = std::string(name),
                      .type = type,
                      .dims = std::move(dims),
                      .data = std::move(data),
                      .fill = nullptr});
}

void GgufWriter::AddTensor(std::string_view name, TensorType type, std::vector<uint64_t> dims,
                           TensorFill fill) {
  tensors_.push_back(
      {.name = std::string(name), .type = type, .dims = std::move(dims), .fill = std::move(fill)});
}

bool GgufWriter::Remove(std::string_view key) {
  return std::erase_if(entries_, [key](const Entry& e) { return e.key == key; }) > 0;
}

bool GgufWriter::RemoveTensor(std::string_view name) {
  return std::erase_if(tensors_, [name](const Tensor& t) { return t.name == name; }) > 0;
}

Status GgufWriter::Write(const Sink& sink) const {
  // Sizes and offsets first: the tensor infos carry them.
  std::vector<Tensor> layout;
  layout.reserve(tensors_.size());
  uint64_t data_bytes = 0;
  for (const Tensor& t : tensors_) {
    const TypeInfo& info = GetTypeInfo(t.type);
    std::optional<uint64_t> bytes = t.dims.empty() ? std::nullopt : RowBytes(info, t.dims[0]);
    for (size_t d = 1; d < t.dims.size() && bytes; ++d) {
      bytes = CheckedMul({*bytes, t.dims[d]});
    }
    if (!bytes) {
      return Error("writing GGUF: tensor '" + t.name + "' has dimensions that do not fit type " +
                   std::string(info.name));
    }
    Tensor placed{.name = t.name, .type = t.type, .dims = t.dims};
    placed.bytes = *bytes;
    placed.offset = data_bytes;
    data_bytes += (*bytes + alignment_ - 1) / alignment_ * alignment_;
    layout.push_back(std::move(placed));
  }
  std::vector<std::byte> head;
  head.reserve(kGgufMagic.size() + 20);
  for (char c : kGgufMagic) {
    head.push_back(static_cast<std::byte>(c));
  }
  Append<uint32_t>(head, 3);
  Append<uint64_t>(head, tensors_.size());
  Append<uint64_t>(head, entries_.size());
  for (const Entry& e : entries_) {
    AppendString(head, e.key);
    Append<uint32_t>(head, static_cast<uint32_t>(e.type));
    head.insert(head.end(), e.encoded.begin(), e.encoded.end());
  }
  for (const Tensor& t : layout) {
    AppendString(head, t.name);
    Append<uint32_t>(head, static_cast<uint32_t>(t.dims.size()));
    for (uint64_t d : t.dims) {
      Append<uint64_t>(head, d);
    }
    Append<uint32_t>(head, static_cast<uint32_t>(t.type));
    Append<uint64_t>(head, t.offset);
  }
  head.resize((head.size() + alignment_ - 1) / alignment_ * alignment_);
  CH_RETURN_IF_ERROR(sink(head));
  std::vector<std::byte> buffer;
  for (size_t i = 0; i < tensors_.size(); ++i) {
    const Tensor& source = tensors_[i];
    const uint64_t bytes = layout[i].bytes;
    const uint64_t padded = (bytes + alignment_ - 1) / alignment_ * alignment_;
    if (source.fill) {
      buffer.assign(padded, std::byte{0});
      CH_RETURN_IF_ERROR(source.fill(std::span(buffer).first(bytes)));
    } else {
      if (source.data.size() != bytes) {
        return Error("writing GGUF: tensor '" + source.name + "' has " +
                     std::to_string(source.data.size()) + " bytes of data, expected " +
                     std::to_string(bytes));
      }
      buffer.assign(source.data.begin(), source.data.end());
      buffer.resize(padded, std::byte{0});
    }
    CH_RETURN_IF_ERROR(sink(buffer));
  }
  return Ok();
}

Result<std::vector<std::byte>> GgufWriter::Serialize() const {
  std::vector<std::byte> out;
  CH_RETURN_IF_ERROR(Write([&out](std::span<const std::byte> bytes) {
    out.insert(out.end(), bytes.begin(), bytes.end());
    return Ok();
  }));
  return out;
}

Status GgufWriter::WriteFile(const std::string& path) const {
  CH_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, 0644));
  CH_RETURN_IF_ERROR(
      Write([&file](std::span<const std::byte> bytes) { return file.Write(bytes); }));
  return file.Commit();
}

}  // namespace cellhouse::engine
