#include "engine/forward.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <variant>

namespace cellhouse::engine {

namespace {

// llama2.c's rmsnorm(): o = weight * x / sqrt(mean(x²) + 1e-5), summed in index order.
void RmsNorm(float* out, const float* x, const float* weight, int32_t size) {
  float ss = 0.0F;
  for (int32_t j = 0; j < size; ++j) {
    ss += x[j] * x[j];
  }
  ss /= static_cast<float>(size);
  ss += 1e-5F;
  ss = 1.0F / std::sqrt(ss);
  for (int32_t j = 0; j < size; ++j) {
    out[j] = weight[j] * (ss * x[j]);
  }
}

void Softmax(float* x, int32_t size) {
  float max_val = x[0];
  for (int32_t i = 1; i < size; ++i) {
    max_val = std::max(max_val, x[i]);
  }
  float sum = 0.0F;
  for (int32_t i = 0; i < size; ++i) {
    x[i] = std::exp(x[i] - max_val);
    sum += x[i];
  }
  for (int32_t i = 0; i < size; ++i) {
    x[i] /= sum;
  }
}

// What differs between the formats: where one layer's matrix is, how a token's embedding is
// read, and how a matrix multiplies a batch of vectors.
const float* LayerOf(std::span<const float> tensor, int32_t layers, int32_t l) {
  return ModelWeights::Layer(tensor, layers, l);
}
Q8Matrix LayerOf(const Q8Tensor& tensor, int32_t /*layers*/, int32_t l) { return tensor.Layer(l); }

void EmbedRow(const ModelWeights& w, int32_t token, float* out) {
  const auto dim = static_cast<size_t>(w.config.dim);
  std::memcpy(out, w.token_embedding.data() + static_cast<size_t>(token) * dim,
              sizeof(float) * dim);
}
void EmbedRow(const QuantizedWeights& w, int32_t token, float* out) {
  DequantizeRow(w.token_embedding.Layer(0), token, out);
}

// One product of a projection: y[n][rows] = x[n][cols] · matrix^T.
template <typename Matrix>
struct Product {
  Matrix w;
  int32_t rows;
  float* y;
};

// The products of one input x[n][cols] with each matrix in turn.
void Project(const ModelWeights& /*w*/, const Kernels& k, RunState& /*s*/, const float* x,
             int32_t cols, int32_t n, std::initializer_list<Product<const float*>> products) {
  for (const Product<const float*>& p : products) {
    MatMul(k, p.w, p.rows, cols, x, p.y, n);
  }
}
// Int8: the input is quantized once, whatever the number of matrices it meets.
void Project(const QuantizedWeights& w, const Kernels& k, RunState& s, const float* x, int32_t cols,
             int32_t n, std::initializer_list<Product<Q8Matrix>> products) {
  const Q8Activations a = k.q8_quantize(x, n, cols, w.group_size, s.q8_input);
  for (const Product<Q8Matrix>& p : products) {
    k.q8_matmul(p.w, a, p.y);
  }
}

// A view of the weights, state and shape that one chunk of tokens works with. W is ModelWeights
// (fp32) or QuantizedWeights (int8): the pass is the same, but for EmbedRow and Project.
template <typename W>
class ChunkPass {
 public:
  ChunkPass(const W& w, const Kernels& k, RunState& s, std::span<const int32_t> tokens, int32_t pos)
      : w_(w), c_(w.config), k_(k), s_(s), n_(static_cast<int32_t>(tokens.size())), pos_(pos) {
    for (int32_t b = 0; b < n_; ++b) {
      EmbedRow(w_, tokens[b], Row(s_.x, b, c_.dim));
    }
    RopeTables();
  }

  void Layer(int32_t l) {
    Attention(l);
    FeedForward(l);
  }

  // Final norm and classifier for the last token of the chunk.
  const float* Logits() {
    RmsNorm(s_.xb, Row(s_.x, n_ - 1, c_.dim), w_.rms_final.data(), c_.dim);
    Project(w_, k_, s_, s_.xb, c_.dim, 1,
            {{LayerOf(w_.classifier, 1, 0), c_.vocab_size, s_.logits}});
    return s_.logits;
  }

 private:
  static float* Row(float* base, int32_t row, int32_t width) {
    return base + static_cast<size_t>(row) * width;
  }
  template <typename Tensor>
  auto Mat(const Tensor& tensor, int32_t l) const {
    return LayerOf(tensor, c_.n_layers, l);
  }
  template <typename T>
  T* CacheAt(T* cache, int32_t l, int32_t position) const {
    return cache + (static_cast<size_t>(l) * s_.context_length() + position) * c_.kv_dim();
  }
  bool HalfCache() const { return s_.key_cache == nullptr; }

  // Faults in layer l's cache pages for PositionsToPopulate (run_state.h), whose rows are
  // consecutive positions.
  void PopulateCache(int32_t l) const {
    const PositionRange range = PositionsToPopulate(pos_, n_, s_.context_length());
    const auto populate = [&](auto* keys, auto* values) {
      const size_t bytes = static_cast<size_t>(range.to - range.from) * c_.kv_dim() * sizeof(*keys);
      PopulateForWrite(CacheAt(keys, l, range.from), bytes);
      PopulateForWrite(CacheAt(values, l, range.from), bytes);
    };
    HalfCache() ? populate(s_.key_cache_half, s_.value_cache_half)
                : populate(s_.key_cache, s_.value_cache);
  }

  // llama2.c's RoPE frequencies, computed once per position rather than once per layer: the
  // formula depends only on the position and the index within a head.
  void RopeTables() {
    const int32_t head_size = c_.head_size();
    const int32_t half = head_size / 2;
    for (int32_t b = 0; b < n_; ++b) {
      for (int32_t j = 0; j < half; ++j) {
        const int32_t head_dim = 2 * j;
        float freq =
            1.0F / std::pow(10000.0F, static_cast<float>(head_dim) / static_cast<float>(head_size));
        float val = static_cast<float>(pos_ + b) * freq;
        s_.rope_cos[b * half + j] = std::cos(val);
        s_.rope_sin[b * half + j] = std::sin(val);
      }
    }
  }

  void Rotate(float* vec, int32_t b, int32_t size) const {
    const int32_t half = c_.head_size() / 2;
    const float* cos_row = s_.rope_cos + static_cast<size_t>(b) * half;
    const float* sin_row = s_.rope_sin + static_cast<size_t>(b) * half;
    for (int32_t i = 0; i < size; i += 2) {
      const int32_t j = (i % c_.head_size()) / 2;
      const float fcr = cos_row[j];
      const float fci = sin_row[j];
      const float v0 = vec[i];
      const float v1 = vec[i + 1];
      vec[i] = v0 * fcr - v1 * fci;
      vec[i + 1] = v0 * fci + v1 * fcr;
    }
  }

  void Attention(int32_t l) {
    const int32_t dim = c_.dim;
    const int32_t kv_dim = c_.kv_dim();
    for (int32_t b = 0; b < n_; ++b) {
      RmsNorm(Row(s_.xb, b, dim), Row(s_.x, b, dim), Mat(w_.rms_att, l), dim);
    }
    PopulateCache(l);
    // Keys and values go straight into an fp32 cache (the chunk's positions are consecutive
    // rows); for an fp16 one, into kv_new, and are rounded into the cache once rotated.
    float* k_rows = HalfCache() ? s_.kv_new : CacheAt(s_.key_cache, l, pos_);
    float* v_rows = HalfCache() ? s_.kv_new + static_cast<size_t>(kMaxBatch) * kv_dim
                                : CacheAt(s_.value_cache, l, pos_);
    Project(w_, k_, s_, s_.xb, dim, n_,
            {{Mat(w_.wq, l), dim, s_.q},
             {Mat(w_.wk, l), kv_dim, k_rows},
             {Mat(w_.wv, l), kv_dim, v_rows}});
    for (int32_t b = 0; b < n_; ++b) {
      Rotate(Row(s_.q, b, dim), b, dim);
      Rotate(Row(k_rows, b, kv_dim), b, kv_dim);
    }
    if (HalfCache()) {
      const int32_t values = n_ * kv_dim;  // at most kMaxBatch rows
      k_.to_half(k_rows, values, CacheAt(s_.key_cache_half, l, pos_));
      k_.to_half(v_rows, values, CacheAt(s_.value_cache_half, l, pos_));
    }
    for (int32_t b = 0; b < n_; ++b) {
      Attend(l, b);
    }
    Project(w_, k_, s_, s_.xb, dim, n_, {{Mat(w_.wo, l), dim, s_.xb2}});
    for (size_t i = 0; i < static_cast<size_t>(n_) * dim; ++i) {
      s_.x[i] += s_.xb2[i];
    }
  }

  // Every head of token b attends to positions 0 .. pos_ + b. The kernels take all heads at once
  // and read the layer's cached rows in order, once each: head by head, they gathered a few
  // hundred bytes out of every row, which ran at about half the streaming speed.
  void Attend(int32_t l, int32_t b) {
    const int32_t head_size = c_.head_size();
    const int32_t count = pos_ + b + 1;
    const AttentionShape shape{.heads = c_.n_heads,
                               .kv_mul = c_.kv_mul(),
                               .head_size = head_size,
                               .stride = static_cast<size_t>(c_.kv_dim()),
                               .scores_stride = static_cast<size_t>(c_.seq_len)};
    const float divisor = std::sqrt(static_cast<float>(head_size));
    const float* q = Row(s_.q, b, c_.dim);
    if (HalfCache()) {
      k_.scores_half(q, CacheAt(s_.key_cache_half, l, 0), shape, count, divisor, s_.scores);
    } else {
      k_.scores(q, CacheAt(s_.key_cache, l, 0), shape, count, divisor, s_.scores);
    }
    for (int32_t h = 0; h < c_.n_heads; ++h) {
      Softmax(s_.scores + static_cast<size_t>(h) * shape.scores_stride, count);
    }
    float* out = Row(s_.xb, b, c_.dim);
    if (HalfCache()) {
      k_.weighted_sum_half(s_.scores, CacheAt(s_.value_cache_half, l, 0), shape, count, out);
    } else {
      k_.weighted_sum(s_.scores, CacheAt(s_.value_cache, l, 0), shape, count, out);
    }
  }

  void FeedForward(int32_t l) {
    const int32_t dim = c_.dim;
    const int32_t hidden = c_.hidden_dim;
    for (int32_t b = 0; b < n_; ++b) {
      RmsNorm(Row(s_.xb, b, dim), Row(s_.x, b, dim), Mat(w_.rms_ffn, l), dim);
    }
    Project(w_, k_, s_, s_.xb, dim, n_,
            {{Mat(w_.w1, l), hidden, s_.hb}, {Mat(w_.w3, l), hidden, s_.hb2}});
    // SwiGLU: silu(w1·x) * (w3·x), silu(v) = v * sigmoid(v).
    for (size_t i = 0; i < static_cast<size_t>(n_) * hidden; ++i) {
      float val = s_.hb[i];
      val *= (1.0F / (1.0F + std::exp(-val)));
      val *= s_.hb2[i];
      s_.hb[i] = val;
    }
    Project(w_, k_, s_, s_.hb, hidden, n_, {{Mat(w_.w2, l), dim, s_.xb}});
    for (size_t i = 0; i < static_cast<size_t>(n_) * dim; ++i) {
      s_.x[i] += s_.xb[i];
    }
  }

  const W& w_;
  const ModelConfig& c_;
  const Kernels& k_;
  RunState& s_;
  const int32_t n_;
  const int32_t pos_;
};

template <typename W>
const float* ForwardChunks(const W& weights, const Kernels& kernels, RunState& state,
                           std::span<const int32_t> tokens, int32_t pos) {
  const float* logits = nullptr;
  for (size_t start = 0; start < tokens.size(); start += kMaxBatch) {
    const size_t n = std::min<size_t>(kMaxBatch, tokens.size() - start);
    ChunkPass<W> pass(weights, kernels, state, tokens.subspan(start, n),
                      pos + static_cast<int32_t>(start));
    for (int32_t l = 0; l < weights.config.n_layers; ++l) {
      pass.Layer(l);
    }
    // Only the last token's logits are wanted: earlier ones would be thrown away.
    if (start + n == tokens.size()) {
      logits = pass.Logits();
    }
  }
  return logits;
}

}  // namespace

const float* Forward(const ModelWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos) {
  return ForwardChunks(weights, kernels, state, tokens, pos);
}

const float* Forward(const QuantizedWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos) {
  return ForwardChunks(weights, kernels, state, tokens, pos);
}

KernelIsa TypeKernelIsa(const Kernels& kernels) {
  switch (kernels.kind) {
    case MatVecKernel::kAvx512:
      return KernelIsa::kAvx512;
    case MatVecKernel::kAvx2:
      return KernelIsa::kAvx2;
    case MatVecKernel::kOpenBlas:
      return KernelIsa::kPortable;
    case MatVecKernel::kAuto:
      break;
  }
  return BestKernelIsa();
}

const float* Forward(const AnyWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos) {
  return Forward(weights, kernels, state, tokens, pos, KindByCount(tokens.size()));
}

const float* Forward(const AnyWeights& weights, const Kernels& kernels, RunState& state,
                     std::span<const int32_t> tokens, int32_t pos, StepKind kind) {
  if (const auto* gguf = std::get_if<GgufWeights>(&weights)) {
    return ForwardGguf(*gguf, TypeKernelIsa(kernels), state, tokens, pos, kind);
  }
  if (const auto* q8 = std::get_if<QuantizedWeights>(&weights)) {
    return ForwardChunks(*q8, kernels, state, tokens, pos);
  }
  return ForwardChunks(std::get<ModelWeights>(weights), kernels, state, tokens, pos);
}

}  // namespace cellhouse::engine
