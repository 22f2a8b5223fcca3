#include "engine/formats/quantize.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <functional>
#include <span>

#include "engine/formats/atomic_file.h"
#include "engine/formats/quantized_checkpoint.h"

namespace cellhouse::engine {

namespace {

using Sink = std::function<Status(std::span<const std::byte>)>;

// Row block `block` of w: shape.Groups() tiles into `out`.
Status QuantizeBlock(const float* w, const Q8Shape& s, int32_t block, std::byte* out) {
  const size_t tile_bytes = s.TileBytes();
  std::memset(out, 0, tile_bytes * static_cast<size_t>(s.Groups()));
  const int32_t rows = std::min(kQ8TileRows, s.rows - block * kQ8TileRows);
  for (int32_t i = 0; i < rows; ++i) {
    const int64_t r = static_cast<int64_t>(block) * kQ8TileRows + i;
    const float* row = w + r * static_cast<int64_t>(s.cols);
    for (int32_t g = 0; g < s.Groups(); ++g) {
      std::byte* tile = out + static_cast<size_t>(g) * tile_bytes;
      const int64_t begin = static_cast<int64_t>(g) * s.group_size;
      const int64_t end = std::min<int64_t>(begin + s.group_size, s.cols);
      float amax = 0;
      for (int64_t col = begin; col < end; ++col) {
        if (!std::isfinite(row[col])) {
          return Error("row " + std::to_string(r) + " column " + std::to_string(col) +
                       " is not a finite number");
        }
        amax = std::max(amax, std::fabs(row[col]));
      }
      const float scale = amax / static_cast<float>(kQ8Max);
      for (int64_t col = begin; col < end && scale > 0; ++col) {
        const float q = std::clamp(std::nearbyint(row[col] / scale), -static_cast<float>(kQ8Max),
                                   static_cast<float>(kQ8Max));
        tile[Q8WeightOffset(i, static_cast<int32_t>(col - begin))] =
            static_cast<std::byte>(static_cast<int8_t>(q));
      }
      std::memcpy(tile + Q8ScaleOffset(s, i), &scale, sizeof(scale));
    }
  }
  return Ok();
}

class QuantizedWriter {
 public:
  QuantizedWriter(const ModelWeights& w, int32_t group_size, const Sink& sink)
      : w_(w), group_size_(group_size), sink_(sink) {}

  Status Write(const QuantizedLayout& layout) {
    QuantizedHeader header{
        .group_size = group_size_, .config = w_.config, .file_bytes = layout.file_bytes};
    CH_RETURN_IF_ERROR(Emit(EncodeQuantizedHeader(header)));
    using L = QuantizedLayout;
    const ModelConfig& c = w_.config;
    for (int i = 0; i < L::kTensorCount; ++i) {
      const auto t = static_cast<L::Tensor>(i);
      CH_RETURN_IF_ERROR(PadTo(layout.sections[static_cast<size_t>(i)].offset));
      Status s = Ok();
      switch (t) {
        case L::kRmsAtt:
          s = Emit(std::as_bytes(w_.rms_att));
          break;
        case L::kRmsFfn:
          s = Emit(std::as_bytes(w_.rms_ffn));
          break;
        case L::kRmsFinal:
          s = Emit(std::as_bytes(w_.rms_final));
          break;
        case L::kTokenEmbedding:
          s = Matrices(t, w_.token_embedding, 1);
          break;
        case L::kClassifier:
          s = c.shared_classifier ? Ok() : Matrices(t, w_.classifier, 1);
          break;
        case L::kWq:
          s = Matrices(t, w_.wq, c.n_layers);
          break;
        case L::kWk:
          s = Matrices(t, w_.wk, c.n_layers);
          break;
        case L::kWv:
          s = Matrices(t, w_.wv, c.n_layers);
          break;
        case L::kWo:
          s = Matrices(t, w_.wo, c.n_layers);
          break;
        case L::kW1:
          s = Matrices(t, w_.w1, c.n_layers);
          break;
        case L::kW2:
          s = Matrices(t, w_.w2, c.n_layers);
          break;
        case L::kW3:
          s = Matrices(t, w_.w3, c.n_layers);
          break;
        case L::kTensorCount:
          break;
      }
      CH_RETURN_IF_ERROR(s);
    }
    return PadTo(layout.file_bytes);
  }

 private:
  Status Emit(std::span<const std::byte> bytes) {
    written_ += bytes.size();
    return sink_(bytes);
  }

  Status PadTo(uint64_t offset) {
    static constexpr std::array<std::byte, kQuantizedAlignment> kZeros{};
    if (offset < written_ || offset - written_ > kZeros.size()) {
      return Error("internal error: quantized layout out of step at byte " +
                   std::to_string(written_));
    }
    return Emit(std::span(kZeros).first(offset - written_));
  }

  // `layers` matrices of tensor t, one row block at a time.
  Status Matrices(QuantizedLayout::Tensor t, std::span<const float> tensor, int32_t layers) {
    const Q8Shape shape = QuantizedShape(w_.config, t, group_size_);
    block_.resize(shape.TileBytes() * static_cast<size_t>(shape.Groups()));
    for (int32_t l = 0; l < layers; ++l) {
      const float* matrix = ModelWeights::Layer(tensor, layers, l);
      for (int32_t b = 0; b < shape.RowBlocks(); ++b) {
        if (Status s = QuantizeBlock(matrix, shape, b, block_.data()); !s) {
          return std::move(s).error().Context(std::string("quantizing tensor ") +
                                              QuantizedLayout::Name(t) + " layer " +
                                              std::to_string(l));
        }
        CH_RETURN_IF_ERROR(Emit(block_));
      }
    }
    return Ok();
  }

  const ModelWeights& w_;
  const int32_t group_size_;
  const Sink& sink_;
  uint64_t written_ = 0;
  std::vector<std::byte> block_;
};

Result<QuantizedLayout> LayoutFor(const ModelWeights& weights, const QuantizeOptions& options) {
  if (!IsQ8GroupSize(options.group_size)) {
    return Error("group size " + std::to_string(options.group_size) + " is not 32 or 64");
  }
  return ComputeQuantizedLayout(weights.config, options.group_size);
}

}  // namespace

Status QuantizeMatrix(const float* w, const Q8Shape& shape, std::byte* out) {
  const size_t block_bytes = shape.TileBytes() * static_cast<size_t>(shape.Groups());
  for (int32_t b = 0; b < shape.RowBlocks(); ++b) {
    CH_RETURN_IF_ERROR(QuantizeBlock(w, shape, b, out + static_cast<size_t>(b) * block_bytes));
  }
  return Ok();
}

Result<std::vector<std::byte>> QuantizeModel(const ModelWeights& weights,
                                             const QuantizeOptions& options) {
  CH_ASSIGN_OR_RETURN(QuantizedLayout layout, LayoutFor(weights, options));
  std::vector<std::byte> bytes;
  bytes.reserve(layout.file_bytes);
  const Sink sink = [&](std::span<const std::byte> data) {
    bytes.insert(bytes.end(), data.begin(), data.end());
    return Ok();
  };
  CH_RETURN_IF_ERROR(QuantizedWriter(weights, options.group_size, sink).Write(layout));
  return bytes;
}

Status WriteQuantizedModel(const ModelWeights& weights, const QuantizeOptions& options,
                           const std::string& path) {
  CH_ASSIGN_OR_RETURN(QuantizedLayout layout, LayoutFor(weights, options));
  CH_ASSIGN_OR_RETURN(AtomicFile file, AtomicFile::Create(path, 0644));
  // Written in whole, aligned 8 MiB pieces rather than tile block by tile block: the page cache
  // keeps a file in folios the size of the writes that filled it, and a model used right after
  // it is written (tests, benchmarks) streams ~30% slower from 16 KiB folios than from 2 MiB
  // ones mapped by PMD (measured here: 21 against 29 GB/s).
  constexpr size_t kPiece = size_t{8} << 20;
  std::vector<std::byte> pending;
  pending.reserve(kPiece);
  const Sink sink = [&](std::span<const std::byte> data) -> Status {
    while (!data.empty()) {
      const size_t n = std::min(data.size(), kPiece - pending.size());
      pending.insert(pending.end(), data.begin(), data.begin() + static_cast<ptrdiff_t>(n));
      data = data.subspan(n);
      if (pending.size() == kPiece) {
        CH_RETURN_IF_ERROR(file.Write(pending));
        pending.clear();
      }
    }
    return Ok();
  };
  CH_RETURN_IF_ERROR(QuantizedWriter(weights, options.group_size, sink).Write(layout));
  CH_RETURN_IF_ERROR(file.Write(pending));
  return file.Commit();
}

}  // namespace cellhouse::engine
