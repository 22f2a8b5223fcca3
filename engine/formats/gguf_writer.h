// GgufWriter: writes a GGUF version 3 file (the layout gguf.h reads): metadata in the order it
// was set, tensor infos in the order they were added, each tensor's data at the next multiple of
// the alignment. `cellmodel convert` writes models with it; tests build well-formed and
// deliberately broken files with it (Serialize, then corrupt the bytes).
//
//   GgufWriter w;
//   w.SetString("general.architecture", "llama");
//   w.SetUint32("llama.block_count", 12);
//   w.SetStringArray("tokenizer.ggml.tokens", pieces);
//   w.AddTensor("token_embd.weight", TensorType::kQ8_0, {768, 32000}, std::move(bytes));
//   w.AddTensor("blk.0.attn_q.weight", TensorType::kQ4_K, {768, 768},
//               [&](std::span<std::byte> out) { return Quantize(..., out); });  // streamed
//   CH_RETURN_IF_ERROR(w.WriteFile("model.gguf"));   // atomically: temporary file + rename
//
// Tensor data given as a function is produced when the file is written, one tensor at a time, so
// converting a large model holds one tensor in memory, not all of them.
#ifndef CELLHOUSE_ENGINE_FORMATS_GGUF_WRITER_H_
#define CELLHOUSE_ENGINE_FORMATS_GGUF_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <functional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/formats/gguf.h"
#include "engine/kernels/tensor_type.h"

namespace cellhouse::engine {

class GgufWriter {
 public:
  // Fills exactly out.size() bytes (the tensor's size) or fails.
  using TensorFill = std::function<Status(std::span<std::byte> out)>;

  explicit GgufWriter(uint32_t alignment = kGgufDefaultAlignment);

  // Metadata, in the order set; setting a key again replaces its value in place.
  void SetUint32(std::string_view key, uint32_t value);
  void SetInt32(std::string_view key, int32_t value);
  void SetUint64(std::string_view key, uint64_t value);
  void SetFloat32(std::string_view key, float value);
  void SetBool(std::string_view key, bool value);
  void SetString(std::string_view key, std::string_view value);
  void SetStringArray(std::string_view key, std::span<const std::string> values);
  void SetFloat32Array(std::string_view key, std::span<const float> values);
  void SetInt32Array(std::string_view key, std::span<const int32_t> values);
  // A value already encoded (its bytes after the type tag), for tests that write odd values.
  void SetRaw(std::string_view key, GgufType type, std::vector<std::byte> encoded);

  // dims[0] varies fastest: a matrix of R rows of C values is {C, R}. The data must be exactly
  // the tensor's size (checked when writing).
  void AddTensor(std::string_view name, TensorType type, std::vector<uint64_t> dims,
                 std::vector<std::byte> data);
  void AddTensor(std::string_view name, TensorType type, std::vector<uint64_t> dims,
                 TensorFill fill);

  // The whole file in memory.
  Result<std::vector<std::byte>> Serialize() const;
  // Streams the file to `path` atomically.
  Status WriteFile(const std::string& path) const;

  // Drop a key or a tensor (tests that build incomplete files); false when absent.
  bool Remove(std::string_view key);
  bool RemoveTensor(std::string_view name);

  // Encodings of single values, for SetRaw.
  static std::vector<std::byte> EncodeString(std::string_view text);

 private:
  struct Entry {
    std::string key;
    GgufType type;
    std::vector<std::byte> encoded;
  };
  struct Tensor {
    std::string name;
    TensorType type;
    std::vector<uint64_t> dims;
    std::vector<std::byte> data;
    TensorFill fill;
    uint64_t bytes = 0;   // computed when writing
    uint64_t offset = 0;  // from the start of the data section
  };
  using Sink = std::function<Status(std::span<const std::byte>)>;
  void Set(std::string_view key, GgufType type, std::vector<std::byte> encoded);
  Status Write(const Sink& sink) const;

  uint32_t alignment_;
  std::vector<Entry> entries_;
  std::vector<Tensor> tensors_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_GGUF_WRITER_H_
