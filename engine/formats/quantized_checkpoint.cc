#include "engine/formats/quantized_checkpoint.h"

#include <cstring>
#include <optional>
#include <string>

#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

namespace {

// Byte offsets of the header fields (docs/QUANTIZED_FORMAT.md).
constexpr size_t kVersionAt = 4;
constexpr size_t kKindAt = 8;
constexpr size_t kGroupSizeAt = 12;
constexpr size_t kConfigAt = 16;  // seven int32
constexpr size_t kFlagsAt = 44;
constexpr size_t kFileBytesAt = 48;
constexpr size_t kReservedAt = 56;

Error Refuse(std::string_view name, const std::string& why) {
  return Error("reading quantized checkpoint '" + std::string(name) + "': " + why);
}

template <typename T>
T Load(std::span<const std::byte> file, size_t at) {
  T value{};
  std::memcpy(&value, file.data() + at, sizeof(T));
  return value;
}

template <typename T>
void Store(std::span<std::byte> out, size_t at, T value) {
  std::memcpy(out.data() + at, &value, sizeof(T));
}

std::optional<uint64_t> AlignUp(uint64_t n) {
  std::optional<uint64_t> sum = CheckedAdd(n, kQuantizedAlignment - 1);
  if (!sum) {
    return std::nullopt;
  }
  return *sum / kQuantizedAlignment * kQuantizedAlignment;
}

bool IsMatrix(QuantizedLayout::Tensor t) {
  using L = QuantizedLayout;
  return t != L::kRmsAtt && t != L::kRmsFfn && t != L::kRmsFinal;
}

// Everything in the header but the layout: magic, version, kind, group size, flags, reserved
// bytes and the model's shape.
Result<QuantizedHeader> DecodeHeader(std::span<const std::byte> file, std::string_view name) {
  if (file.size() < kQuantizedHeaderBytes) {
    return Refuse(name, "the file is " + std::to_string(file.size()) +
                            " bytes, shorter than the 64-byte header");
  }
  if (!IsQuantizedCheckpoint(file)) {
    return Refuse(name, "the file does not start with the magic \"CHQ8\"");
  }
  QuantizedHeader h;
  h.version = Load<uint32_t>(file, kVersionAt);
  if (h.version != kQuantizedVersion) {
    return Refuse(name, "format version " + std::to_string(h.version) +
                            " is not supported (this build reads version " +
                            std::to_string(kQuantizedVersion) +
                            "); quantize the fp32 checkpoint again with this cellmodel");
  }
  const auto kind = Load<uint32_t>(file, kKindAt);
  if (kind != static_cast<uint32_t>(QuantKind::kInt8Groups)) {
    return Refuse(name, "quantization kind " + std::to_string(kind) +
                            " is unknown (version 1 knows kind 1, int8 groups)");
  }
  h.kind = QuantKind::kInt8Groups;
  const auto group_size = Load<uint32_t>(file, kGroupSizeAt);
  if (!IsQ8GroupSize(group_size)) {
    return Refuse(name, "group size " + std::to_string(group_size) + " is not 32 or 64");
  }
  h.group_size = static_cast<int32_t>(group_size);
  const auto flags = Load<uint32_t>(file, kFlagsAt);
  if ((flags & ~kQuantFlagSeparateClassifier) != 0) {
    return Refuse(name, "unknown flags " + std::to_string(flags) + " in the header");
  }
  for (size_t i = kReservedAt; i < kQuantizedHeaderBytes; ++i) {
    if (file[i] != std::byte{0}) {
      return Refuse(name, "reserved header byte " + std::to_string(i) + " is not zero");
    }
  }
  std::array<int32_t, 7> c{};
  std::memcpy(c.data(), file.data() + kConfigAt, sizeof(c));
  h.config = {.dim = c[0],
              .hidden_dim = c[1],
              .n_layers = c[2],
              .n_heads = c[3],
              .n_kv_heads = c[4],
              .vocab_size = c[5],
              .seq_len = c[6],
              .shared_classifier = (flags & kQuantFlagSeparateClassifier) == 0};
  if (Status valid = h.config.Validate(); !valid) {
    return Refuse(name, "bad header: " + valid.error().message());
  }
  h.file_bytes = Load<uint64_t>(file, kFileBytesAt);
  return h;
}

}  // namespace

bool IsQuantizedCheckpoint(std::span<const std::byte> file) {
  return file.size() >= kQuantizedMagic.size() &&
         std::memcmp(file.data(), kQuantizedMagic.data(), kQuantizedMagic.size()) == 0;
}

const char* QuantizedLayout::Name(Tensor t) {
  static constexpr std::array<const char*, kTensorCount> kNames = {
      "token_embedding", "rms_att", "wq", "wk", "wv",        "wo",
      "rms_ffn",         "w1",      "w2", "w3", "rms_final", "classifier"};
  return kNames.at(static_cast<size_t>(t));
}

Q8Shape QuantizedShape(const ModelConfig& config, QuantizedLayout::Tensor tensor,
                       int32_t group_size) {
  using L = QuantizedLayout;
  switch (tensor) {
    case L::kTokenEmbedding:
    case L::kClassifier:
      return {.rows = config.vocab_size, .cols = config.dim, .group_size = group_size};
    case L::kWq:
    case L::kWo:
      return {.rows = config.dim, .cols = config.dim, .group_size = group_size};
    case L::kWk:
    case L::kWv:
      return {.rows = config.kv_dim(), .cols = config.dim, .group_size = group_size};
    case L::kW1:
    case L::kW3:
      return {.rows = config.hidden_dim, .cols = config.dim, .group_size = group_size};
    case L::kW2:
      return {.rows = config.dim, .cols = config.hidden_dim, .group_size = group_size};
    default:
      return {};
  }
}

Result<QuantizedLayout> ComputeQuantizedLayout(const ModelConfig& config, int32_t group_size) {
  using L = QuantizedLayout;
  const auto d = static_cast<uint64_t>(config.dim);
  const auto layers = static_cast<uint64_t>(config.n_layers);
  L layout;
  uint64_t offset = kQuantizedHeaderBytes;
  for (int i = 0; i < L::kTensorCount; ++i) {
    const auto t = static_cast<L::Tensor>(i);
    std::optional<uint64_t> bytes;
    if (t == L::kClassifier && config.shared_classifier) {
      bytes = 0;
    } else if (t == L::kRmsFinal) {
      bytes = CheckedMul({d, sizeof(float)});
    } else if (!IsMatrix(t)) {
      bytes = CheckedMul({layers, d, sizeof(float)});
    } else {
      std::optional<uint64_t> one = QuantizedShape(config, t, group_size).Bytes();
      const bool per_layer = t != L::kTokenEmbedding && t != L::kClassifier;
      bytes = one ? CheckedMul({*one, per_layer ? layers : 1}) : std::nullopt;
    }
    std::optional<uint64_t> end = bytes ? CheckedAdd(offset, *bytes) : std::nullopt;
    end = end ? AlignUp(*end) : std::nullopt;
    if (!end) {
      return Error(std::string("the size of tensor ") + L::Name(t) + " overflows 64 bits");
    }
    layout.sections[static_cast<size_t>(i)] = {.offset = offset, .bytes = *bytes};
    offset = *end;
  }
  layout.file_bytes = offset;
  return layout;
}

std::array<std::byte, kQuantizedHeaderBytes> EncodeQuantizedHeader(const QuantizedHeader& h) {
  std::array<std::byte, kQuantizedHeaderBytes> out{};
  std::memcpy(out.data(), kQuantizedMagic.data(), kQuantizedMagic.size());
  Store<uint32_t>(out, kVersionAt, h.version);
  Store<uint32_t>(out, kKindAt, static_cast<uint32_t>(h.kind));
  Store<uint32_t>(out, kGroupSizeAt, static_cast<uint32_t>(h.group_size));
  const ModelConfig& c = h.config;
  const std::array<int32_t, 7> config = {c.dim,        c.hidden_dim, c.n_layers, c.n_heads,
                                         c.n_kv_heads, c.vocab_size, c.seq_len};
  std::memcpy(out.data() + kConfigAt, config.data(), sizeof(config));
  Store<uint32_t>(out, kFlagsAt, c.shared_classifier ? 0U : kQuantFlagSeparateClassifier);
  Store<uint64_t>(out, kFileBytesAt, h.file_bytes);
  return out;
}

Result<QuantizedWeights> ParseQuantizedCheckpoint(std::span<const std::byte> file,
                                                  std::string_view name) {
  CH_ASSIGN_OR_RETURN(QuantizedHeader h, DecodeHeader(file, name));
  const ModelConfig& c = h.config;
  Result<QuantizedLayout> layout = ComputeQuantizedLayout(c, h.group_size);
  if (!layout) {
    return Refuse(name, "header " + c.Describe() + ": " + layout.error().message());
  }
  if (h.file_bytes != layout->file_bytes) {
    return Refuse(name, "the header records " + std::to_string(h.file_bytes) +
                            " bytes but its shape (" + c.Describe() + ", groups of " +
                            std::to_string(h.group_size) + ") implies " +
                            std::to_string(layout->file_bytes));
  }
  if (layout->file_bytes != file.size()) {
    return Refuse(
        name, "the header (" + c.Describe() + ") implies " + std::to_string(layout->file_bytes) +
                  " bytes but the file has " + std::to_string(file.size()) +
                  (file.size() < layout->file_bytes ? " (truncated?)" : " (trailing data)"));
  }
  if (reinterpret_cast<uintptr_t>(file.data()) % alignof(float) != 0) {
    return Refuse(name, "tensor data is not 4-byte aligned in memory");
  }
  // The size check above covers every section: they are laid out in order up to file_bytes.
  using L = QuantizedLayout;
  auto floats = [&](L::Tensor t) {
    const L::Section& s = layout->sections[t];
    return std::span<const float>(reinterpret_cast<const float*>(file.data() + s.offset),
                                  s.bytes / sizeof(float));
  };
  auto matrices = [&](L::Tensor t, int32_t layers) {
    const L::Section& s = layout->sections[t];
    const Q8Shape shape = QuantizedShape(c, t, h.group_size);
    return Q8Tensor{.data = file.data() + s.offset,
                    .layers = layers,
                    .shape = shape,
                    .layer_bytes = *shape.Bytes()};
  };
  QuantizedWeights w{
      .config = c,
      .group_size = h.group_size,
      .token_embedding = matrices(L::kTokenEmbedding, 1),
      .rms_att = floats(L::kRmsAtt),
      .wq = matrices(L::kWq, c.n_layers),
      .wk = matrices(L::kWk, c.n_layers),
      .wv = matrices(L::kWv, c.n_layers),
      .wo = matrices(L::kWo, c.n_layers),
      .rms_ffn = floats(L::kRmsFfn),
      .w1 = matrices(L::kW1, c.n_layers),
      .w2 = matrices(L::kW2, c.n_layers),
      .w3 = matrices(L::kW3, c.n_layers),
      .rms_final = floats(L::kRmsFinal),
      .classifier = matrices(c.shared_classifier ? L::kTokenEmbedding : L::kClassifier, 1)};
  return w;
}

}  // namespace cellhouse::engine
