#include "engine/formats/gguf_convert.h"

#include <cstring>
#include <span>

#include "base/str_cat.h"
#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine {

namespace {

struct FileTypeRow {
  GgufFileType type;
  std::string_view name;
  TensorType tensors;
  uint32_t llama_ftype;  // general.file_type: llama.cpp's llama_ftype
};

constexpr FileTypeRow kFileTypes[] = {
    {GgufFileType::kF32, "F32", TensorType::kF32, 0},
    {GgufFileType::kF16, "F16", TensorType::kF16, 1},
    {GgufFileType::kQ8_0, "Q8_0", TensorType::kQ8_0, 7},
    {GgufFileType::kQ4_0, "Q4_0", TensorType::kQ4_0, 2},
    {GgufFileType::kQ4_K_M, "Q4_K_M", TensorType::kQ4_K, 15},
    {GgufFileType::kQ6_K, "Q6_K", TensorType::kQ6_K, 18},
};

const FileTypeRow& Row(GgufFileType type) {
  for (const FileTypeRow& row : kFileTypes) {
    if (row.type == type) {
      return row;
    }
  }
  return kFileTypes[0];
}

// llama.cpp's use_more_bits: the layers Q4_K_M gives Q6_K attn_v and ffn_down.
bool MoreBits(int32_t layer, int32_t layers) {
  return layer < layers / 8 || layer >= 7 * layers / 8 || (layer - layers / 8) % 3 == 2;
}

// llama2.c writes its BOS and EOS pieces with newlines around them.
std::string SentencePiece(std::string_view piece) {
  if (piece == "\n<s>\n") {
    return "<s>";
  }
  if (piece == "\n</s>\n") {
    return "</s>";
  }
  std::string out;
  for (char c : piece) {
    if (c == ' ') {
      out += "\xE2\x96\x81";
    } else {
      out += c;
    }
  }
  return out;
}

bool IsBytePiece(std::string_view piece) {
  return piece.size() == 6 && piece.substr(0, 3) == "<0x" && piece[5] == '>';
}

// A matrix of rows x cols floats as a tensor of `type`, quantized when written.
void AddMatrix(GgufWriter& w, const std::string& name, TensorType type, const float* data,
               int64_t rows, int64_t cols) {
  w.AddTensor(name, type, {static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)},
              [type, data, rows, cols, name](std::span<std::byte> out) -> Status {
                if (!QuantizeWeights(type, data, rows * cols, out.data())) {
                  return Error(StrCat("writing GGUF: tensor '", name, "' cannot be written as ",
                                      GetTypeInfo(type).name));
                }
                return Ok();
              });
}

void AddVector(GgufWriter& w, const std::string& name, const float* data, int64_t n) {
  std::vector<std::byte> bytes(static_cast<size_t>(n) * sizeof(float));
  std::memcpy(bytes.data(), data, bytes.size());
  w.AddTensor(name, TensorType::kF32, {static_cast<uint64_t>(n)}, std::move(bytes));
}

}  // namespace

std::string_view GgufFileTypeName(GgufFileType type) { return Row(type).name; }

std::optional<GgufFileType> ParseGgufFileType(std::string_view name) {
  for (const FileTypeRow& row : kFileTypes) {
    if (row.name == name) {
      return row.type;
    }
  }
  return std::nullopt;
}

TensorType GgufTensorType(GgufFileType file_type, std::string_view role, int32_t layer,
                          int32_t layers, int64_t cols) {
  TensorType type = Row(file_type).tensors;
  const bool k_mix = file_type == GgufFileType::kQ4_K_M;
  // llama-quantize gives the classifier, and (K mixes) some layers' attn_v and ffn_down, Q6_K.
  const bool classifier = role == "output" && (file_type == GgufFileType::kQ4_0 || k_mix);
  const bool more_bits =
      k_mix && (role == "attn_v" || role == "ffn_down") && MoreBits(layer, layers);
  if (classifier || more_bits) type = TensorType::kQ6_K;
  // llama-quantize's fallbacks for rows that are not whole 256-value super-blocks; Q6_K's
  // fallback for the classifier is Q8_0 too.
  if (cols % 256 != 0) {
    if (type == TensorType::kQ4_K) {
      type = TensorType::kQ5_0;
    } else if (type == TensorType::kQ6_K) {
      type = TensorType::kQ8_0;
    }
  }
  // Rows that are not even whole 32-value blocks stay f16, as llama-quantize leaves them.
  if (cols % GetTypeInfo(type).block_size != 0) {
    type = TensorType::kF16;
  }
  return type;
}

Result<GgufWriter> GgufFromCheckpoint(const ModelWeights& mw, const Tokenizer& tok,
                                      const GgufConvertOptions& options) {
  const ModelConfig& c = mw.config;
  if (tok.vocab_size() != c.vocab_size) {
    return Error(StrCat("converting to GGUF: the tokenizer has ", tok.vocab_size(),
                        " pieces but the model's vocabulary is ", c.vocab_size));
  }
  const FileTypeRow& ft = Row(options.type);
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetString("general.name", options.name);
  w.SetUint32("general.file_type", ft.llama_ftype);
  if (options.type != GgufFileType::kF32 && options.type != GgufFileType::kF16) {
    w.SetUint32("general.quantization_version", 2);
  }
  w.SetUint32("llama.context_length", static_cast<uint32_t>(c.seq_len));
  w.SetUint32("llama.embedding_length", static_cast<uint32_t>(c.dim));
  w.SetUint32("llama.block_count", static_cast<uint32_t>(c.n_layers));
  w.SetUint32("llama.feed_forward_length", static_cast<uint32_t>(c.hidden_dim));
  w.SetUint32("llama.rope.dimension_count", static_cast<uint32_t>(c.head_size()));
  w.SetUint32("llama.attention.head_count", static_cast<uint32_t>(c.n_heads));
  w.SetUint32("llama.attention.head_count_kv", static_cast<uint32_t>(c.n_kv_heads));
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", c.rms_eps);
  w.SetFloat32("llama.rope.freq_base", c.rope_base);
  w.SetUint32("llama.vocab_size", static_cast<uint32_t>(c.vocab_size));

  // The vocabulary, as SentencePiece would have it (see the header).
  std::vector<std::string> pieces;
  std::vector<float> scores;
  std::vector<int32_t> types;
  for (int32_t id = 0; id < tok.vocab_size(); ++id) {
    const std::string_view piece = tok.Piece(id);
    pieces.push_back(SentencePiece(piece));
    scores.push_back(tok.Score(id));
    // llama_token_type: 1 normal, 2 unknown, 3 control, 6 byte.
    types.push_back(id == kUnkToken                      ? 2
                    : id == tok.bos() || id == tok.eos() ? 3
                    : IsBytePiece(piece)                 ? 6
                                                         : 1);
  }
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", pieces);
  w.SetFloat32Array("tokenizer.ggml.scores", scores);
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.SetUint32("tokenizer.ggml.bos_token_id", static_cast<uint32_t>(tok.bos()));
  w.SetUint32("tokenizer.ggml.eos_token_id", static_cast<uint32_t>(tok.eos()));
  w.SetUint32("tokenizer.ggml.unknown_token_id", static_cast<uint32_t>(kUnkToken));
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  w.SetBool("tokenizer.ggml.add_eos_token", false);

  const int64_t dim = c.dim;
  const int64_t hidden = c.hidden_dim;
  const int64_t kv = c.kv_dim();
  const int32_t layers = c.n_layers;
  auto type_of = [&](std::string_view role, int32_t layer, int64_t cols) {
    return GgufTensorType(options.type, role, layer, layers, cols);
  };
  const int64_t vocab = c.vocab_size;
  AddMatrix(w, "token_embd.weight", type_of(c.shared_classifier ? "output" : "token_embd", -1, dim),
            mw.token_embedding.data(), vocab, dim);
  for (int32_t l = 0; l < layers; ++l) {
    const std::string p = StrCat("blk.", l, ".");
    auto layer = [&](std::span<const float> t) { return ModelWeights::Layer(t, layers, l); };
    AddVector(w, p + "attn_norm.weight", layer(mw.rms_att), dim);
    AddMatrix(w, p + "attn_q.weight", type_of("attn_q", l, dim), layer(mw.wq), dim, dim);
    AddMatrix(w, p + "attn_k.weight", type_of("attn_k", l, dim), layer(mw.wk), kv, dim);
    AddMatrix(w, p + "attn_v.weight", type_of("attn_v", l, dim), layer(mw.wv), kv, dim);
    AddMatrix(w, p + "attn_output.weight", type_of("attn_output", l, dim), layer(mw.wo), dim, dim);
    AddVector(w, p + "ffn_norm.weight", layer(mw.rms_ffn), dim);
    AddMatrix(w, p + "ffn_gate.weight", type_of("ffn_gate", l, dim), layer(mw.w1), hidden, dim);
    AddMatrix(w, p + "ffn_down.weight", type_of("ffn_down", l, hidden), layer(mw.w2), dim, hidden);
    AddMatrix(w, p + "ffn_up.weight", type_of("ffn_up", l, dim), layer(mw.w3), hidden, dim);
  }
  AddVector(w, "output_norm.weight", mw.rms_final.data(), dim);
  if (!c.shared_classifier) {
    AddMatrix(w, "output.weight", type_of("output", -1, dim), mw.classifier.data(), vocab, dim);
  }
  return w;
}

Status WriteGgufModel(const ModelWeights& weights, const Tokenizer& tokenizer,
                      const GgufConvertOptions& options, const std::string& path) {
  CH_ASSIGN_OR_RETURN(GgufWriter w, GgufFromCheckpoint(weights, tokenizer, options));
  return w.WriteFile(path);
}

}  // namespace cellhouse::engine
