#include "engine/model.h"

#include <sys/mman.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <map>
#include <string_view>

#include "base/str_cat.h"

namespace cellhouse::engine {

namespace {

size_t PageSize() { return static_cast<size_t>(::sysconf(_SC_PAGESIZE)); }

// Asks for the mapping to be served from 2 MiB folios mapped by PMD. Where the file system keeps
// large folios in the page cache (ext4 and xfs on 6.x kernels) and THP is "madvise" or "always",
// reading the file through this mapping then allocates them, and decode streams the weights
// without a TLB miss every 4 KiB (the 110m int8 file: 31.6 GB/s against 27.6 here). Only a
// hint: pages the page cache already holds keep their size, and a kernel without THP refuses it
// (EINVAL), which changes nothing else.
void AdviseHugePages(const Mapping& mapping) {
  if (!mapping.empty()) {
    static_cast<void>(::madvise(mapping.address(), mapping.size(), MADV_HUGEPAGE));
  }
}

// The context a session may use: the model's, lowered to the cap.
void CapContext(ModelConfig& config, const ModelOptions& options) {
  if (options.max_context > 0 && options.max_context < config.seq_len) {
    config.seq_len = options.max_context;
  }
}

}  // namespace

Result<Model> Model::Open(const std::string& path, const ModelOptions& options) {
  Result<Mapping> mapping = Mapping::MapFile(path.c_str());
  if (!mapping) {
    return std::move(mapping).error().Context("opening model '" + path + "'");
  }
  AdviseHugePages(*mapping);
  if (IsGguf(mapping->bytes())) {
    CH_ASSIGN_OR_RETURN(GgufFile gguf, GgufFile::Parse(mapping->bytes(), path));
    CH_ASSIGN_OR_RETURN(GgufWeights weights,
                        LoadGgufWeights(gguf, {.max_context = options.max_context}));
    const ModelConfig config = weights.config;
    Model model(path, std::move(*mapping), std::move(weights), config);
    model.gguf_.emplace(std::move(gguf));  // its views point into the mapping, which did not move
    return model;
  }
  if (IsQuantizedCheckpoint(mapping->bytes())) {
    CH_ASSIGN_OR_RETURN(QuantizedWeights weights, ParseQuantizedCheckpoint(mapping->bytes(), path));
    CapContext(weights.config, options);
    const ModelConfig config = weights.config;
    return Model(path, std::move(*mapping), weights, config);
  }
  CH_ASSIGN_OR_RETURN(ModelWeights weights, ParseCheckpoint(mapping->bytes(), path));
  CapContext(weights.config, options);
  const ModelConfig config = weights.config;
  return Model(path, std::move(*mapping), weights, config);
}

std::string_view WeightFormatName(WeightFormat format) {
  switch (format) {
    case WeightFormat::kQ8:
      return "q8";
    case WeightFormat::kGguf:
      return "gguf";
    case WeightFormat::kF32:
      break;
  }
  return "f32";
}

uint64_t Model::ParameterCount() const {
  if (const auto* gguf = std::get_if<GgufWeights>(&weights_)) {
    return gguf->parameters;
  }
  return config_.ParameterCount();
}

int32_t Model::group_size() const {
  const auto* q8 = std::get_if<QuantizedWeights>(&weights_);
  return q8 != nullptr ? q8->group_size : 0;
}

std::string Model::Describe() const {
  if (const auto* gguf = std::get_if<GgufWeights>(&weights_)) {
    // "gguf llama, dim 256, ...": the architecture first, the tensor types last.
    std::map<std::string_view, int> types;
    for (const GgufTensor& t : gguf_->tensors()) {
      ++types[GetTypeInfo(t.type).name];
    }
    std::string text = StrCat("gguf ", GgufArchitectureName(gguf->architecture), ", ",
                              config_.Describe(), ", head size ", config_.head_size(), ", tensors");
    for (const auto& [name, count] : types) {
      text += StrCat(" ", name, " x", count);
    }
    return text;
  }
  std::string text = config_.Describe();
  if (format() == WeightFormat::kQ8) {
    text += ", int8 weights in groups of " + std::to_string(group_size());
  }
  return text;
}

size_t Model::ChunkCount() const {
  return (mapping_.size() + kModelChunkBytes - 1) / kModelChunkBytes;
}

std::span<const std::byte> Model::Chunk(size_t chunk) const {
  size_t begin = chunk * kModelChunkBytes;
  return bytes().subspan(begin, std::min(kModelChunkBytes, mapping_.size() - begin));
}

Result<uint64_t> Model::Resident(std::span<const std::byte> range) const {
  Result<uint64_t> resident = ResidentBytesIn(range.data(), range.size());
  if (!resident) return std::move(resident).error().Context("model '" + path_ + "'");
  return resident;
}

Result<uint64_t> Model::ResidentBytes() const { return Resident(bytes()); }

Result<uint64_t> Model::ChunkResidentBytes(size_t chunk) const {
  if (chunk >= ChunkCount()) {
    return Error("model '" + path_ + "' has no chunk " + std::to_string(chunk));
  }
  return Resident(Chunk(chunk));
}

Status Model::Prefault() const {
  const size_t page = PageSize();
  const auto* data = reinterpret_cast<const volatile unsigned char*>(mapping_.bytes().data());
  unsigned char sink = 0;
  for (size_t offset = 0; offset < mapping_.size(); offset += page) {
    sink ^= data[offset];
  }
  static_cast<void>(sink);
  return Ok();
}

Status Model::Lock() const {
  if (::mlock(mapping_.address(), mapping_.size()) != 0) {
    return Error::FromErrno(errno, "mlock of model '" + path_ + "' (" +
                                       std::to_string(mapping_.size()) +
                                       " bytes; raise RLIMIT_MEMLOCK or run without locking)");
  }
  return Ok();
}

Status Model::Prefetch(size_t chunk) const {
  if (chunk >= ChunkCount()) {
    return Error("model '" + path_ + "' has no chunk " + std::to_string(chunk));
  }
  std::span<const std::byte> range = Chunk(chunk);
  if (::madvise(const_cast<std::byte*>(range.data()), range.size(), MADV_WILLNEED) != 0) {
    return Error::FromErrno(
        errno, "madvise(MADV_WILLNEED) on model '" + path_ + "' chunk " + std::to_string(chunk));
  }
  return Ok();
}

}  // namespace cellhouse::engine
