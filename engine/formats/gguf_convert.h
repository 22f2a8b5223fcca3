// Writing a llama2.c checkpoint (and its tokenizer) as a GGUF file of the llama architecture, in
// the tensor types people download, so that cellhouse's benchmarks and tests can make the files
// they need and any GGUF runtime (llama.cpp) can run them to the same text.
//
//   CH_ASSIGN_OR_RETURN(Model fp32, Model::Open("stories110M.bin"));
//   CH_ASSIGN_OR_RETURN(Tokenizer tok, Tokenizer::Open("tokenizer.bin", 32000));
//   CH_RETURN_IF_ERROR(WriteGgufModel(std::get<ModelWeights>(fp32.weights()), tok,
//                                     {.type = GgufFileType::kQ4_K_M}, "stories110M-Q4_K_M.gguf"));
//
// The mapping: llama2.c rotates interleaved pairs, which is the llama architecture's own RoPE
// ("NORM"), so the matrices keep their rows as they are (no permutation, unlike a conversion
// from Hugging Face). Norms stay f32. The vocabulary becomes a SentencePiece one
// (tokenizer.ggml.model = llama): spaces back to U+2581, llama2.c's "\n<s>\n" and "\n</s>\n"
// back to "<s>" and "</s>", token types (unknown, control, byte, normal), BOS 1, EOS 2, BOS added.
//
// Types, as llama-quantize chooses them: every matrix in the file type's type, except that the
// classifier (the token embedding when shared) is Q6_K for Q4_0 and Q4_K_M; Q4_K_M also makes
// attn_v and ffn_down Q6_K in llama.cpp's "more bits" layers (the first and last eighth, and
// every third between); a K-quant whose rows are not a multiple of 256 values falls back to
// Q5_0 (for Q4_K) or Q8_0 (for Q6_K), as llama-quantize does, and rows that are not whole
// 32-value blocks stay F16. Scale searches are the type
// kernels' (QuantizeWeights), simpler than llama-quantize's: other bytes, valid blocks.
#ifndef CELLHOUSE_ENGINE_FORMATS_GGUF_CONVERT_H_
#define CELLHOUSE_ENGINE_FORMATS_GGUF_CONVERT_H_

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/formats/checkpoint.h"
#include "engine/formats/gguf_writer.h"
#include "engine/kernels/tensor_type.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine {

enum class GgufFileType { kF32, kF16, kQ8_0, kQ4_0, kQ4_K_M, kQ6_K };

// "F32", "F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K" (what --type takes).
std::string_view GgufFileTypeName(GgufFileType type);
std::optional<GgufFileType> ParseGgufFileType(std::string_view name);

struct GgufConvertOptions {
  GgufFileType type = GgufFileType::kF16;
  std::string name = "cellhouse";  // general.name
};

// The type a tensor gets. `layer` is -1 for tensors outside the layers.
TensorType GgufTensorType(GgufFileType file_type, std::string_view role, int32_t layer,
                          int32_t layers, int64_t cols);

// The whole file's writer (tensors quantized as the writer writes them). `weights` and
// `tokenizer` must outlive it; the tokenizer must have the model's vocabulary size.
Result<GgufWriter> GgufFromCheckpoint(const ModelWeights& weights, const Tokenizer& tokenizer,
                                      const GgufConvertOptions& options);
// Streams the file to `path` atomically.
Status WriteGgufModel(const ModelWeights& weights, const Tokenizer& tokenizer,
                      const GgufConvertOptions& options, const std::string& path);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_GGUF_CONVERT_H_
