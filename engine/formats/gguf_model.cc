#include "engine/formats/gguf_model.h"

#include <algorithm>
#include <climits>
#include <cmath>
#include <string>

#include "base/str_cat.h"

namespace cellhouse::engine {

namespace {

struct ArchitectureRow {
  GgufArchitecture arch;
  std::string_view name;
  RopeStyle rope;
  bool qkv_bias_required;
  bool qk_norm;
};

// llama.cpp's rope type per architecture: LLAMA_ROPE_TYPE_NORM for llama, NEOX for the Qwens.
constexpr ArchitectureRow kArchitectures[] = {
    {GgufArchitecture::kLlama, "llama", RopeStyle::kInterleaved, false, false},
    {GgufArchitecture::kQwen2, "qwen2", RopeStyle::kNeox, true, false},
    {GgufArchitecture::kQwen3, "qwen3", RopeStyle::kNeox, false, true},
};

std::string Dims(uint64_t cols, uint64_t rows) { return StrCat("[", cols, ", ", rows, "]"); }

// Finds and checks the tensors of one file, naming the tensor in every refusal.
class TensorLoader {
 public:
  explicit TensorLoader(const GgufFile& gguf) : gguf_(gguf) {}

  // A matrix of `rows` rows of `cols` values, in any weight type. `what` explains the shape.
  Result<WeightMatrix> Matrix(const std::string& name, int64_t rows, int64_t cols,
                              const std::string& what, WeightUse use) const {
    const GgufTensor* t = gguf_.FindTensor(name);
    if (t == nullptr) {
      return gguf_.Refuse("the tensor '" + name + "' is missing");
    }
    return Matrix(*t, rows, cols, what, use);
  }
  Result<WeightMatrix> Matrix(const GgufTensor& t, int64_t rows, int64_t cols,
                              const std::string& what, WeightUse use) const {
    if (t.dims[2] != 1 || t.dims[3] != 1 || t.cols() != static_cast<uint64_t>(cols) ||
        t.rows() != static_cast<uint64_t>(rows)) {
      return gguf_.Refuse("tensor " + t.Describe() + " should be " +
                          Dims(static_cast<uint64_t>(cols), static_cast<uint64_t>(rows)) + " (" +
                          what + ")");
    }
    return WeightMatrix{.name = t.name,
                        .type = t.type,
                        .order = ReferenceDotOrder(t.type, rows, use),
                        .rows = rows,
                        .cols = cols,
                        .row_bytes = static_cast<size_t>(t.bytes / static_cast<uint64_t>(rows)),
                        .data = t.data.data()};
  }

  // An f32 vector of `size` values; empty when absent and not required.
  Result<std::span<const float>> Vector(const std::string& name, int64_t size,
                                        const std::string& what, bool required) const {
    const GgufTensor* t = gguf_.FindTensor(name);
    if (t == nullptr) {
      if (required) {
        return gguf_.Refuse("the tensor '" + name + "' is missing");
      }
      return std::span<const float>();
    }
    if (t->elements() != static_cast<uint64_t>(size) || t->cols() != static_cast<uint64_t>(size)) {
      return gguf_.Refuse("tensor " + t->Describe() + " should have " + std::to_string(size) +
                          " values (" + what + ")");
    }
    if (t->type != TensorType::kF32) {
      return gguf_.Refuse("tensor " + t->Describe() + " should be f32");
    }
    // The reader checked that f32 data starts on a multiple of 4 bytes of the mapping.
    return std::span<const float>(reinterpret_cast<const float*>(t->data.data()),
                                  static_cast<size_t>(size));
  }

 private:
  const GgufFile& gguf_;
};

// A metadata count that must be a positive int32.
Result<int32_t> PositiveKey(const GgufFile& g, const std::string& key) {
  CH_ASSIGN_OR_RETURN(uint32_t value, g.GetUint32(key));
  if (value == 0 || value > static_cast<uint32_t>(INT32_MAX / 16)) {
    return g.Refuse("key '" + key + "' is " + std::to_string(value) + ", outside 1.." +
                    std::to_string(INT32_MAX / 16));
  }
  return static_cast<int32_t>(value);
}

Result<int32_t> PositiveKeyOr(const GgufFile& g, const std::string& key, int32_t absent) {
  return g.Has(key) ? PositiveKey(g, key) : Result<int32_t>(absent);
}

// One block's tensors: norms, attention projections (with qwen2's biases or qwen3's per-head
// norms) and the feed-forward matrices, each checked against the configuration's shape.
Status LoadLayer(const TensorLoader& t, const ArchitectureRow& row, const ModelConfig& c, int32_t l,
                 GgufLayer& layer) {
  const int64_t dim = c.dim;
  const int64_t q_dim = c.q_dim();
  const int64_t kv_dim = c.kv_dim();
  const int64_t hidden = c.hidden_dim;
  const std::string q_shape = "embedding_length x head_count * key_length";
  const std::string kv_shape = "embedding_length x head_count_kv * key_length";
  const std::string ffn_shape = "embedding_length x feed_forward_length";
  const std::string p = "blk." + std::to_string(l) + ".";
  const WeightUse mm = WeightUse::kMatMul;
  CH_ASSIGN_OR_RETURN(layer.attn_norm,
                      t.Vector(p + "attn_norm.weight", dim, "embedding_length", true));
  CH_ASSIGN_OR_RETURN(layer.wq, t.Matrix(p + "attn_q.weight", q_dim, dim, q_shape, mm));
  CH_ASSIGN_OR_RETURN(layer.wk, t.Matrix(p + "attn_k.weight", kv_dim, dim, kv_shape, mm));
  CH_ASSIGN_OR_RETURN(layer.wv, t.Matrix(p + "attn_v.weight", kv_dim, dim, kv_shape, mm));
  CH_ASSIGN_OR_RETURN(layer.wo, t.Matrix(p + "attn_output.weight", dim, q_dim,
                                         "head_count * key_length x embedding_length", mm));
  if (row.arch != GgufArchitecture::kQwen3) {
    const bool req = row.qkv_bias_required;
    CH_ASSIGN_OR_RETURN(layer.bq, t.Vector(p + "attn_q.bias", q_dim, "queries", req));
    CH_ASSIGN_OR_RETURN(layer.bk, t.Vector(p + "attn_k.bias", kv_dim, "keys", req));
    CH_ASSIGN_OR_RETURN(layer.bv, t.Vector(p + "attn_v.bias", kv_dim, "values", req));
  }
  if (row.qk_norm) {
    CH_ASSIGN_OR_RETURN(layer.q_norm,
                        t.Vector(p + "attn_q_norm.weight", c.head_size(), "key_length", true));
    CH_ASSIGN_OR_RETURN(layer.k_norm,
                        t.Vector(p + "attn_k_norm.weight", c.head_size(), "key_length", true));
  }
  CH_ASSIGN_OR_RETURN(layer.ffn_norm,
                      t.Vector(p + "ffn_norm.weight", dim, "embedding_length", true));
  CH_ASSIGN_OR_RETURN(layer.w_gate, t.Matrix(p + "ffn_gate.weight", hidden, dim, ffn_shape, mm));
  CH_ASSIGN_OR_RETURN(layer.w_up, t.Matrix(p + "ffn_up.weight", hidden, dim, ffn_shape, mm));
  CH_ASSIGN_OR_RETURN(layer.w_down, t.Matrix(p + "ffn_down.weight", dim, hidden,
                                             "feed_forward_length x embedding_length", mm));
  return Ok();
}

// rope.scaling: none, or linear with its factor (as rope_freq_scale = 1 / factor).
Status ReadRopeScaling(const GgufFile& g, const std::string& a, float& freq_scale) {
  const GgufValue* scaling = g.Find(a + ".rope.scaling.type");
  if (scaling == nullptr) return Ok();
  std::optional<std::string_view> type = scaling->AsString();
  if (!type || (*type != "none" && *type != "linear")) {
    return g.Refuse("key '" + a + ".rope.scaling.type' is " + scaling->Describe() +
                    "; supported: none, linear");
  }
  if (*type == "linear") {
    CH_ASSIGN_OR_RETURN(float factor, g.GetFloat32(a + ".rope.scaling.factor"));
    if (!(factor >= 1.0F) || factor > 1e6F) {
      return g.Refuse("key '" + a + ".rope.scaling.factor' is " + std::to_string(factor) +
                      ", must be at least 1");
    }
    freq_scale = 1.0F / factor;
  }
  return Ok();
}

// Every supported layer has at least 9 tensors (two norms, four attention and three feed-forward
// matrices); a larger count is refused before anything is sized by it.
Status CheckLayerCount(const GgufFile& g, const std::string& a, int32_t n_layers) {
  constexpr uint64_t kTensorsPerLayer = 9;
  const uint64_t needed = static_cast<uint64_t>(n_layers) * kTensorsPerLayer;
  if (needed > g.tensors().size()) {
    return g.Refuse("key '" + a + ".block_count' is " + std::to_string(n_layers) +
                    ": that many layers need at least " + std::to_string(needed) +
                    " tensors, and the file has " + std::to_string(g.tensors().size()));
  }
  return Ok();
}

// The hyperparameters the forward pass cannot use, refused with the GGUF key named (not
// ModelConfig's field, as its own Validate would).
Status CheckHyperparameters(const GgufFile& g, const std::string& a, const ModelConfig& c) {
  if (!(c.rms_eps > 0.0F && c.rms_eps <= 1.0F)) {
    return g.Refuse("key '" + a + ".attention.layer_norm_rms_epsilon' is " +
                    std::to_string(c.rms_eps) + ", outside (0, 1]");
  }
  if (!(c.rope_base > 0.0F) || !std::isfinite(c.rope_base)) {
    return g.Refuse("key '" + a + ".rope.freq_base' is " + std::to_string(c.rope_base) +
                    ", not a positive number");
  }
  if (c.n_kv_heads > c.n_heads || c.n_heads % c.n_kv_heads != 0) {
    return g.Refuse("key '" + a + ".attention.head_count_kv' is " + std::to_string(c.n_kv_heads) +
                    ", which does not divide attention.head_count " + std::to_string(c.n_heads));
  }
  if (c.head_dim % 2 != 0) {
    return g.Refuse("heads of " + std::to_string(c.head_dim) +
                    " values (attention.key_length, or embedding_length / attention.head_count) "
                    "are odd; RoPE rotates pairs of dimensions");
  }
  if (c.rope_dims % 2 != 0 || c.rope_dims > c.head_dim) {
    return g.Refuse("key '" + a + ".rope.dimension_count' is " + std::to_string(c.rope_dims) +
                    " for heads of " + std::to_string(c.head_dim) +
                    ": it must be even and at most the head size");
  }
  return Ok();
}

}  // namespace

std::string_view GgufArchitectureName(GgufArchitecture arch) {
  for (const ArchitectureRow& row : kArchitectures) {
    if (row.arch == arch) {
      return row.name;
    }
  }
  return "?";
}

std::string_view SupportedGgufArchitectures() { return "llama, qwen2, qwen3"; }

Result<GgufWeights> LoadGgufWeights(const GgufFile& g, const GgufLoadOptions& options) {
  CH_ASSIGN_OR_RETURN(std::string_view arch_name, g.GetString("general.architecture"));
  const ArchitectureRow* row = nullptr;
  for (const ArchitectureRow& r : kArchitectures) {
    if (r.name == arch_name) {
      row = &r;
    }
  }
  if (row == nullptr) {
    return g.Refuse("architecture '" + std::string(arch_name.substr(0, 64)) +
                    "' is not supported (supported: " + std::string(SupportedGgufArchitectures()) +
                    ")");
  }
  const std::string a(arch_name);
  GgufWeights w;
  w.architecture = row->arch;
  ModelConfig& c = w.config;
  CH_ASSIGN_OR_RETURN(c.dim, PositiveKey(g, a + ".embedding_length"));
  CH_ASSIGN_OR_RETURN(c.hidden_dim, PositiveKey(g, a + ".feed_forward_length"));
  CH_ASSIGN_OR_RETURN(c.n_layers, PositiveKey(g, a + ".block_count"));
  CH_RETURN_IF_ERROR(CheckLayerCount(g, a, c.n_layers));
  CH_ASSIGN_OR_RETURN(c.n_heads, PositiveKey(g, a + ".attention.head_count"));
  CH_ASSIGN_OR_RETURN(c.n_kv_heads, PositiveKeyOr(g, a + ".attention.head_count_kv", c.n_heads));
  CH_ASSIGN_OR_RETURN(int32_t context, PositiveKey(g, a + ".context_length"));
  w.file_context_length = static_cast<uint32_t>(context);
  c.seq_len = options.max_context > 0 ? std::min(context, options.max_context) : context;
  CH_ASSIGN_OR_RETURN(c.rms_eps, g.GetFloat32(a + ".attention.layer_norm_rms_epsilon"));
  CH_ASSIGN_OR_RETURN(c.rope_base, g.GetFloat32Or(a + ".rope.freq_base", 10000.0F));
  const int32_t default_head = c.dim % c.n_heads == 0 ? c.dim / c.n_heads : 0;
  CH_ASSIGN_OR_RETURN(c.head_dim, PositiveKeyOr(g, a + ".attention.key_length", default_head));
  if (c.head_dim == 0) {
    return g.Refuse("embedding_length " + std::to_string(c.dim) +
                    " is not a multiple of attention.head_count " + std::to_string(c.n_heads) +
                    " and the file has no attention.key_length");
  }
  CH_ASSIGN_OR_RETURN(int32_t value_length,
                      PositiveKeyOr(g, a + ".attention.value_length", c.head_dim));
  if (value_length != c.head_dim) {
    return g.Refuse("attention.value_length " + std::to_string(value_length) +
                    " differs from attention.key_length " + std::to_string(c.head_dim) +
                    "; cellhouse supports equal key and value heads only");
  }
  CH_ASSIGN_OR_RETURN(c.rope_dims, PositiveKeyOr(g, a + ".rope.dimension_count", c.head_dim));
  CH_RETURN_IF_ERROR(CheckHyperparameters(g, a, c));
  c.rope_style = row->rope;
  CH_ASSIGN_OR_RETURN(uint32_t experts, g.GetUint32Or(a + ".expert_count", 0));
  if (experts > 0) {
    return g.Refuse("the model is a mixture of " + std::to_string(experts) +
                    " experts, which cellhouse does not support");
  }
  CH_RETURN_IF_ERROR(ReadRopeScaling(g, a, w.rope_freq_scale));

  TensorLoader t(g);
  const GgufTensor* embd = g.FindTensor("token_embd.weight");
  if (embd == nullptr) {
    return g.Refuse("the tensor 'token_embd.weight' is missing");
  }
  if (embd->rows() > static_cast<uint64_t>(INT32_MAX / 16)) {
    return g.Refuse("tensor " + embd->Describe() + " has too many rows");
  }
  c.vocab_size = static_cast<int32_t>(embd->rows());
  if (const GgufValue* tokens = g.Find("tokenizer.ggml.tokens");
      tokens != nullptr && tokens->type() != GgufType::kArray) {
    return g.Refuse("key 'tokenizer.ggml.tokens' is " + tokens->Describe() +
                    ", expected an array of string");
  } else if (tokens != nullptr && tokens->array_size() != embd->rows()) {
    return g.Refuse("the vocabulary has " + std::to_string(tokens->array_size()) +
                    " tokens but tensor " + embd->Describe() + " has a row per token");
  }
  const GgufTensor* output = g.FindTensor("output.weight");
  c.shared_classifier = output == nullptr;
  if (Status valid = c.Validate(); !valid) {
    return g.Refuse("the model's hyperparameters are inconsistent: " + valid.error().message());
  }

  const int64_t dim = c.dim;
  const int64_t vocab = c.vocab_size;
  CH_ASSIGN_OR_RETURN(
      w.token_embedding,
      t.Matrix(*embd, vocab, dim, "embedding_length x vocabulary",
               c.shared_classifier ? WeightUse::kEmbeddingAndMatMul : WeightUse::kMatMul));
  if (output != nullptr) {
    CH_ASSIGN_OR_RETURN(w.classifier, t.Matrix(*output, vocab, dim, "embedding_length x vocabulary",
                                               WeightUse::kMatMul));
  } else {
    w.classifier = w.token_embedding;
  }
  CH_ASSIGN_OR_RETURN(w.output_norm, t.Vector("output_norm.weight", dim, "embedding_length", true));
  CH_ASSIGN_OR_RETURN(w.rope_freqs, t.Vector("rope_freqs.weight", c.rotated_dims() / 2,
                                             "rope.dimension_count / 2", false));
  w.layers.resize(static_cast<size_t>(c.n_layers));
  for (int32_t l = 0; l < c.n_layers; ++l) {
    CH_RETURN_IF_ERROR(LoadLayer(t, *row, c, l, w.layers[static_cast<size_t>(l)]));
  }
  for (const GgufTensor& tensor : g.tensors()) {
    w.parameters += tensor.elements();
  }
  return w;
}

}  // namespace cellhouse::engine
