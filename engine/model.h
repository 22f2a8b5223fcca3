// Model: a model file mapped read-only and shared (mmap PROT_READ, MAP_SHARED), with immutable
// views of its tensors. The zygote opens it once; every worker inherits the mapping through fork,
// so the page cache holds one copy for all sessions. The file is a llama2.c fp32 checkpoint
// (checkpoint.h), cellhouse's int8 format (quantized_checkpoint.h) or GGUF (gguf.h, gguf_model.h:
// llama, qwen2, qwen3 in their own tensor types), told apart by its first bytes; everything below
// works the same for all three.
//
//   CH_ASSIGN_OR_RETURN(Model model, Model::Open("/var/lib/cellhouse/stories110M.bin"));
//   CH_ASSIGN_OR_RETURN(Model qwen, Model::Open("qwen2.5-0.5b-q4_k_m.gguf", {.max_context =
//   4096})); CH_RETURN_IF_ERROR(model.Prefault());   // charge the page cache to the caller's
//   cgroup CH_RETURN_IF_ERROR(model.Lock());       // keep it resident (counts against
//   RLIMIT_MEMLOCK) std::puts(model.Describe().c_str());
//
// The file is also seen as fixed 16 MiB chunks: residency is measured with mincore(2) (celld's
// status and metrics) and a chunk can be prefetched with madvise(MADV_WILLNEED). Nothing
// prefetches chunks on its own today: a model that is not locked (`celld --no-mlock`)
// pages in by demand faults as workers touch it, and out under memory pressure.
#ifndef CELLHOUSE_ENGINE_MODEL_H_
#define CELLHOUSE_ENGINE_MODEL_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <variant>

#include "base/mapping.h"
#include "base/result.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/gguf.h"
#include "engine/formats/model_config.h"
#include "engine/run_state.h"
#include "engine/weights.h"

namespace cellhouse::engine {

inline constexpr size_t kModelChunkBytes = size_t{16} << 20;

enum class WeightFormat {
  kF32,   // llama2.c fp32
  kQ8,    // int8 groups
  kGguf,  // GGUF, any mix of its tensor types
};
std::string_view WeightFormatName(WeightFormat format);  // "f32", "q8", "gguf"

struct ModelOptions {
  // The longest context a session may use (0: the model's own). A GGUF file's context length
  // (up to 128K for Llama 3.1) sizes every session's attention buffers; this caps it.
  int32_t max_context = 0;
};

class Model {
 public:
  // Maps and parses `path`. Errors name the file.
  static Result<Model> Open(const std::string& path, const ModelOptions& options);
  static Result<Model> Open(const std::string& path) { return Open(path, ModelOptions{}); }

  Model(Model&&) noexcept = default;
  Model& operator=(Model&&) noexcept = default;

  const ModelConfig& config() const { return config_; }
  // Views into the mapping: valid for as long as this Model (moving it keeps them valid).
  const AnyWeights& weights() const { return weights_; }
  WeightFormat format() const {
    if (std::holds_alternative<GgufWeights>(weights_)) {
      return WeightFormat::kGguf;
    }
    return std::holds_alternative<QuantizedWeights>(weights_) ? WeightFormat::kQ8
                                                              : WeightFormat::kF32;
  }
  // The parsed GGUF file (metadata, tensor infos) of a GGUF model; nullptr for the other formats.
  const GgufFile* gguf() const { return gguf_ ? &*gguf_ : nullptr; }
  // Columns per int8 group (32 or 64); 0 for the other formats.
  int32_t group_size() const;
  // Learned parameters: every tensor's values for GGUF, the config's count otherwise.
  uint64_t ParameterCount() const;
  // How a session's KV cache stores keys and values for this model (run_state.h): fp32 for an
  // fp32 model, fp16 for int8 and GGUF ones.
  KvPrecision kv_precision() const {
    return format() == WeightFormat::kF32 ? KvPrecision::kF32 : KvPrecision::kF16;
  }
  std::span<const std::byte> bytes() const { return mapping_.bytes(); }
  const std::string& path() const { return path_; }

  size_t ChunkCount() const;
  // Bytes of the file now in memory (mincore(2)), whole file or one chunk.
  Result<uint64_t> ResidentBytes() const;
  Result<uint64_t> ChunkResidentBytes(size_t chunk) const;
  // Reads one byte of every page, so that the pages are faulted in, and charged, now and by the
  // calling process's cgroup rather than later by whichever session touches them first.
  Status Prefault() const;
  // mlock(2)s the whole mapping. Needs RLIMIT_MEMLOCK (or CAP_IPC_LOCK) covering the file.
  Status Lock() const;
  // madvise(MADV_WILLNEED) for one chunk: asks the kernel to start reading it in.
  Status Prefetch(size_t chunk) const;

  // "dim 768, hidden 2048, 12 layers, ..., shared classifier", and for an int8 file
  // ", int8 weights in groups of 32", for a GGUF one "gguf llama, ..., tensors q4_K x 73, ...".
  std::string Describe() const;

 private:
  Model(std::string path, Mapping mapping, AnyWeights weights, const ModelConfig& config)
      : path_(std::move(path)),
        mapping_(std::move(mapping)),
        weights_(std::move(weights)),
        config_(config) {}
  std::span<const std::byte> Chunk(size_t chunk) const;
  Result<uint64_t> Resident(std::span<const std::byte> range) const;

  std::string path_;
  Mapping mapping_;
  std::optional<GgufFile> gguf_;  // views into mapping_
  AnyWeights weights_;
  ModelConfig config_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_MODEL_H_
