// The checkpoint half of generator.h: presets and pseudo-random weights.
#include <array>
#include <cmath>
#include <cstring>
#include <functional>
#include <span>

#include "engine/formats/atomic_file.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/generator.h"

namespace cellhouse::engine {

namespace {

struct Preset {
  std::string_view name;
  ModelConfig config;
};

constexpr std::array<Preset, 4> kPresets = {{
    {"tiny",
     {.dim = 64,
      .hidden_dim = 176,
      .n_layers = 2,
      .n_heads = 4,
      .n_kv_heads = 2,
      .vocab_size = 512,
      .seq_len = 256,
      .shared_classifier = true}},
    {"15m",
     {.dim = 288,
      .hidden_dim = 768,
      .n_layers = 6,
      .n_heads = 6,
      .n_kv_heads = 6,
      .vocab_size = 32000,
      .seq_len = 256,
      .shared_classifier = true}},
    {"110m",
     {.dim = 768,
      .hidden_dim = 2048,
      .n_layers = 12,
      .n_heads = 12,
      .n_kv_heads = 12,
      .vocab_size = 32000,
      .seq_len = 1024,
      .shared_classifier = true}},
    {"1b",
     {.dim = 2048,
      .hidden_dim = 5632,
      .n_layers = 22,
      .n_heads = 32,
      .n_kv_heads = 4,
      .vocab_size = 32000,
      .seq_len = 2048,
      .shared_classifier = false}},
}};

// splitmix64: a counter-based generator, so any element's value is a function of (seed, tensor,
// index) alone and tensors can be produced in pieces of any size.
uint64_t Mix(uint64_t x) {
  x += 0x9E3779B97F4A7C15ULL;
  x = (x ^ (x >> 30)) * 0xBF58476D1CE4E5B9ULL;
  x = (x ^ (x >> 27)) * 0x94D049BB133111EBULL;
  return x ^ (x >> 31);
}

// Uniform in [-amplitude, amplitude).
float Uniform(uint64_t key, uint64_t index, float amplitude) {
  const uint64_t bits = Mix(key + index);
  const float unit = static_cast<float>(bits >> 40) * (1.0F / 16777216.0F);  // [0, 1)
  return (2.0F * unit - 1.0F) * amplitude;
}

// Amplitude of a uniform distribution with standard deviation `stddev`.
float AmplitudeFor(double stddev) { return static_cast<float>(std::sqrt(3.0) * stddev); }

using Sink = std::function<Status(std::span<const std::byte>)>;

class WeightWriter {
 public:
  WeightWriter(const ModelConfig& c, uint64_t seed) : c_(c), seed_(Mix(seed)) {}

  Status Write(const CheckpointLayout& layout, const Sink& sink) const {
    std::array<std::byte, kCheckpointHeaderBytes> header = EncodeHeader(c_);
    CH_RETURN_IF_ERROR(sink(header));
    std::vector<float> buffer(kBufferFloats);
    for (int t = 0; t < CheckpointLayout::kTensorCount; ++t) {
      const uint64_t count = layout.sections[static_cast<size_t>(t)].count;
      for (uint64_t begin = 0; begin < count; begin += kBufferFloats) {
        const auto n = static_cast<size_t>(std::min<uint64_t>(kBufferFloats, count - begin));
        Fill(static_cast<CheckpointLayout::Tensor>(t), begin, std::span(buffer.data(), n));
        CH_RETURN_IF_ERROR(sink(std::as_bytes(std::span(buffer.data(), n))));
      }
    }
    return Ok();
  }

 private:
  static constexpr uint64_t kBufferFloats = uint64_t{1} << 20;

  // Elements [begin, begin + out.size()) of tensor t.
  void Fill(CheckpointLayout::Tensor t, uint64_t begin, std::span<float> out) const {
    using L = CheckpointLayout;
    const double dim = c_.dim;
    const double depth = std::sqrt(2.0 * c_.n_layers);
    // Logits of standard deviation ~3: peaked enough to read like text, not one-hot.
    const float classifier = AmplitudeFor(3.0 / std::sqrt(dim));
    float amplitude = 0;
    switch (t) {
      case L::kRmsAtt:
      case L::kRmsFfn:
      case L::kRmsFinal:
        std::fill(out.begin(), out.end(), 1.0F);
        return;
      case L::kRopeReal:
      case L::kRopeImag:
        FillRope(t == L::kRopeReal, begin, out);
        return;
      case L::kTokenEmbedding:
        amplitude = c_.shared_classifier ? classifier : AmplitudeFor(1.0);
        break;
      case L::kClassifier:
        amplitude = classifier;
        break;
      case L::kWq:
      case L::kWk:
      case L::kWv:
      case L::kW1:
      case L::kW3:
        amplitude = AmplitudeFor(1.0 / std::sqrt(dim));
        break;
      case L::kWo:
        amplitude = AmplitudeFor(1.0 / std::sqrt(dim) / depth);
        break;
      case L::kW2:
        amplitude = AmplitudeFor(1.0 / std::sqrt(static_cast<double>(c_.hidden_dim)) / depth);
        break;
      case L::kTensorCount:
        return;
    }
    const uint64_t key = Mix(seed_ ^ (static_cast<uint64_t>(t) << 56));
    for (size_t i = 0; i < out.size(); ++i) {
      out[i] = Uniform(key, begin + i, amplitude);
    }
    if (t == L::kClassifier || (t == L::kTokenEmbedding && c_.shared_classifier)) {
      ZeroRows(begin, out);
    }
  }

  // The classifier rows of BOS (1) and EOS (2) are zero, as in the reference checkpoint.
  void ZeroRows(uint64_t begin, std::span<float> out) const {
    const auto dim = static_cast<uint64_t>(c_.dim);
    for (uint64_t i = std::max(begin, dim); i < std::min(begin + out.size(), 3 * dim); ++i) {
      out[i - begin] = 0.0F;
    }
  }

  // The tables llama2.c's export writes (and nobody reads): cos/sin of pos * freq.
  void FillRope(bool real, uint64_t begin, std::span<float> out) const {
    const auto half = static_cast<uint64_t>(c_.head_size() / 2);
    for (size_t i = 0; i < out.size(); ++i) {
      const uint64_t pos = (begin + i) / half;
      const uint64_t j = (begin + i) % half;
      const double freq = 1.0 / std::pow(10000.0, 2.0 * static_cast<double>(j) / c_.head_size());
      const double val = static_cast<double>(pos) * freq;
      out[i] = static_cast<float>(real ? std::cos(val) : std::sin(val));
    }
  }

  const ModelConfig& c_;
  const uint64_t seed_;
};

Result<CheckpointLayout> LayoutFor(const ModelConfig& config) {
  Status valid = config.Validate();
  if (!valid) {
    return std::move(valid).error().Context("generating a model");
  }
  return ComputeLayout(config);
}

}  // namespace

Result<ModelConfig> PresetConfig(std::string_view name) {
  for (const Preset& p : kPresets) {
    if (p.name == name) {
      return p.config;
    }
  }
  std::string known;
  for (const Preset& p : kPresets) {
    known += (known.empty() ? "" : ", ") + std::string(p.name);
  }
  return Error("unknown preset '" + std::string(name) + "' (known: " + known + ")");
}

std::vector<std::string_view> PresetNames() {
  std::vector<std::string_view> names;
  names.reserve(kPresets.size());
  for (const Preset& p : kPresets) {
    names.push_back(p.name);
  }
  return names;
}

Result<std::vector<std::byte>> GenerateModel(const ModelConfig& config, uint64_t seed) {
  CH_ASSIGN_OR_RETURN(CheckpointLayout layout, LayoutFor(config));
  std::vector<std::byte> bytes;
  bytes.reserve(layout.file_bytes);
  CH_RETURN_IF_ERROR(WeightWriter(config, seed).Write(layout, [&](auto data) {
    bytes.insert(bytes.end(), data.begin(), data.end());
    return Ok();
  }));
  return bytes;
}

Status WriteModel(const ModelConfig& config, uint64_t seed, const std::string& path) {
  CH_ASSIGN_OR_RETURN(CheckpointLayout layout, LayoutFor(config));
  CH_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, 0644));
  CH_RETURN_IF_ERROR(
      WeightWriter(config, seed).Write(layout, [&](auto data) { return file.Write(data); }));
  return file.Commit();
}

}  // namespace cellhouse::engine
