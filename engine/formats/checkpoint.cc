#include "engine/formats/checkpoint.h"

#include <cstring>
#include <optional>
#include <string>

#include "engine/formats/checked_math.h"

namespace cellhouse::engine {

namespace {

Error Refuse(std::string_view name, const std::string& why) {
  return Error("reading checkpoint '" + std::string(name) + "': " + why);
}

Result<ModelConfig> DecodeHeader(std::span<const std::byte> file, std::string_view name) {
  if (file.size() < kCheckpointHeaderBytes) {
    return Refuse(name, "the file is " + std::to_string(file.size()) +
                            " bytes, shorter than the 28-byte header");
  }
  std::array<int32_t, 7> h{};
  std::memcpy(h.data(), file.data(), kCheckpointHeaderBytes);
  ModelConfig c{.dim = h[0],
                .hidden_dim = h[1],
                .n_layers = h[2],
                .n_heads = h[3],
                .n_kv_heads = h[4],
                .vocab_size = h[5],
                .seq_len = h[6],
                .shared_classifier = h[5] > 0};
  if (c.vocab_size == INT32_MIN) {
    return Refuse(name, "vocab_size in the header is INT32_MIN");
  }
  if (c.vocab_size < 0) {
    c.vocab_size = -c.vocab_size;
  }
  Status valid = c.Validate();
  if (!valid) {
    return Refuse(name, "bad header: " + valid.error().message());
  }
  return c;
}

}  // namespace

const char* CheckpointLayout::Name(Tensor t) {
  static constexpr std::array<const char*, kTensorCount> kNames = {
      "token_embedding", "rms_att",   "wq", "wk", "wv",        "wo",
      "rms_ffn",         "w1",        "w2", "w3", "rms_final", "rope_real",
      "rope_imag",       "classifier"};
  return kNames.at(static_cast<size_t>(t));
}

Result<CheckpointLayout> ComputeLayout(const ModelConfig& config) {
  const auto d = static_cast<uint64_t>(config.dim);
  const auto h = static_cast<uint64_t>(config.hidden_dim);
  const auto l = static_cast<uint64_t>(config.n_layers);
  const auto kv = static_cast<uint64_t>(config.kv_dim());
  const auto v = static_cast<uint64_t>(config.vocab_size);
  const auto rope = static_cast<uint64_t>(config.seq_len) * (config.head_size() / 2);
  using L = CheckpointLayout;
  std::array<std::optional<uint64_t>, L::kTensorCount> counts = {
      CheckedMul({v, d}),
      CheckedMul({l, d}),
      CheckedMul({l, d, d}),
      CheckedMul({l, kv, d}),
      CheckedMul({l, kv, d}),
      CheckedMul({l, d, d}),
      CheckedMul({l, d}),
      CheckedMul({l, h, d}),
      CheckedMul({l, d, h}),
      CheckedMul({l, h, d}),
      d,
      rope,
      rope,
      config.shared_classifier ? 0 : CheckedMul({v, d})};
  L layout;
  uint64_t offset = 0;
  for (size_t i = 0; i < counts.size(); ++i) {
    std::optional<uint64_t> end = counts[i] ? CheckedAdd(offset, *counts[i]) : std::nullopt;
    if (!end) {
      return Error(std::string("the size of tensor ") + L::Name(static_cast<L::Tensor>(i)) +
                   " overflows 64 bits");
    }
    layout.sections[i] = {.offset = offset, .count = *counts[i]};
    offset = *end;
  }
  layout.total_floats = offset;
  std::optional<uint64_t> bytes = CheckedMul({offset, sizeof(float)});
  std::optional<uint64_t> file = bytes ? CheckedAdd(*bytes, kCheckpointHeaderBytes) : std::nullopt;
  if (!file) {
    return Error("the checkpoint size overflows 64 bits");
  }
  layout.file_bytes = *file;
  return layout;
}

std::array<std::byte, kCheckpointHeaderBytes> EncodeHeader(const ModelConfig& config) {
  std::array<int32_t, 7> h = {
      config.dim,        config.hidden_dim,
      config.n_layers,   config.n_heads,
      config.n_kv_heads, config.shared_classifier ? config.vocab_size : -config.vocab_size,
      config.seq_len};
  std::array<std::byte, kCheckpointHeaderBytes> out{};
  std::memcpy(out.data(), h.data(), out.size());
  return out;
}

Result<ModelWeights> ParseCheckpoint(std::span<const std::byte> file, std::string_view name) {
  CH_ASSIGN_OR_RETURN(ModelConfig config, DecodeHeader(file, name));
  Result<CheckpointLayout> layout = ComputeLayout(config);
  if (!layout) {
    return Refuse(name, "header " + config.Describe() + ": " + layout.error().message());
  }
  if (layout->file_bytes != file.size()) {
    return Refuse(name,
                  "the header (" + config.Describe() + ") implies " +
                      std::to_string(layout->file_bytes) + " bytes but the file has " +
                      std::to_string(file.size()) +
                      (file.size() < layout->file_bytes ? " (truncated?)" : " (trailing data)"));
  }
  const std::byte* base = file.data() + kCheckpointHeaderBytes;
  if (reinterpret_cast<uintptr_t>(base) % alignof(float) != 0) {
    return Refuse(name, "tensor data is not 4-byte aligned in memory");
  }
  // The size check above covers every section: they are contiguous and end at total_floats.
  const auto* floats = reinterpret_cast<const float*>(base);
  auto view = [&](CheckpointLayout::Tensor t) {
    const CheckpointLayout::Section& s = layout->sections[t];
    return std::span<const float>(floats + s.offset, s.count);
  };
  using L = CheckpointLayout;
  ModelWeights w{
      .config = config,
      .token_embedding = view(L::kTokenEmbedding),
      .rms_att = view(L::kRmsAtt),
      .wq = view(L::kWq),
      .wk = view(L::kWk),
      .wv = view(L::kWv),
      .wo = view(L::kWo),
      .rms_ffn = view(L::kRmsFfn),
      .w1 = view(L::kW1),
      .w2 = view(L::kW2),
      .w3 = view(L::kW3),
      .rms_final = view(L::kRmsFinal),
      .classifier = config.shared_classifier ? view(L::kTokenEmbedding) : view(L::kClassifier)};
  return w;
}

}  // namespace cellhouse::engine
