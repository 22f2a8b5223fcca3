#include "engine/gguf_forward.h"

#include <algorithm>
#include <array>
#include <cmath>
#include <cstring>
#include <initializer_list>
#include <span>

#include "base/mapping.h"
#include "engine/ggml_ops.h"
#include "engine/kernels/half.h"

namespace cellhouse::engine {

namespace {

float* Row(float* base, int32_t row, int64_t width) {
  return base + static_cast<size_t>(row) * static_cast<size_t>(width);
}
const float* Row(const float* base, int32_t row, int64_t width) {
  return base + static_cast<size_t>(row) * static_cast<size_t>(width);
}

// One product of a projection: y[n][w.rows] = x[n][w.cols] · w^T (+ bias).
struct Product {
  const WeightMatrix* w;
  float* y;
  std::span<const float> bias;
};

// Rows of a product per part are a multiple of this: the kernels' row tiles (8 for Q4_0's
// interleaved order) stay whole.
constexpr int64_t kRowsPerPart = 16;

// One matrix product for the kernels, over all its output rows.
struct Job {
  const TypeKernels* k;
  MatMulArgs args;
};

// Jobs that read one rounded input, in one dispatch over `parallel`'s parts: each part takes its
// range of every job's output rows in turn, so the threads meet once for all of them rather than
// once per matrix. A row's value does not depend on the range it is computed in (the kernels'
// tests check every range), so the split changes no bit.
void RunJobs(std::span<const Job> jobs, gguf_steps::RowParallel* parallel) {
  if (jobs.empty()) return;
  if (parallel == nullptr || parallel->parts() <= 1) {
    for (const Job& job : jobs) job.k->Multiply(job.args);
    return;
  }
  parallel->Run(
      [](void* c, int part, int parts) {
        for (const Job& job : *static_cast<const std::span<const Job>*>(c)) {
          const MatMulArgs& all = job.args;
          const int64_t units = (all.row_end - all.row_begin + kRowsPerPart - 1) / kRowsPerPart;
          MatMulArgs mine = all;
          mine.row_begin = all.row_begin + units * part / parts * kRowsPerPart;
          mine.row_end =
              std::min(all.row_end, all.row_begin + units * (part + 1) / parts * kRowsPerPart);
          if (mine.row_begin < mine.row_end) job.k->Multiply(mine);
        }
      },
      &jobs);
}

// The products of one input with each matrix in turn. The input is rounded to each partner type
// once, however many matrices share it (Q4_K and Q6_K both take Q8_K), and the products that
// share a rounding run in one dispatch.
// Rows [0, prompt_rows) are a prompt's: where a weight's prompt order differs (Q8_0, K-quants),
// they are one job with its kernels and the decode rows another, in the same dispatch.
void Project(KernelIsa isa, const float* x, int32_t n, int32_t prompt_rows, int64_t cols,
             std::byte* typed, gguf_steps::RowParallel* parallel,
             std::initializer_list<Product> products) {
  constexpr size_t kMaxJobs = 8;  // q, k and v at most, each in two orders
  std::array<Job, kMaxJobs> jobs{};
  prompt_rows = std::clamp(prompt_rows, 0, n);
  size_t pending = 0;
  TensorType quantized_for = TensorType::kF32;
  size_t row_bytes = 0;
  for (const Product& p : products) {
    const TypeKernels& k = GetTypeKernels(p.w->type, isa, p.w->order);
    if (pending == 0 || k.partner != quantized_for) {
      // The rounded input is about to be overwritten: its products run first.
      RunJobs(std::span<const Job>(jobs.data(), pending), parallel);
      pending = 0;
      row_bytes = static_cast<size_t>(*ActivationRowBytes(p.w->type, cols));
      k.quantize_activations(x, n, cols, typed);
      quantized_for = k.partner;
    }
    if (pending + 2 > kMaxJobs) {
      RunJobs(std::span<const Job>(jobs.data(), pending), parallel);
      pending = 0;
    }
    const DotOrder prompt_order = PromptOrder(p.w->type, p.w->order);
    const TypeKernels& kp =
        prompt_order == p.w->order ? k : GetTypeKernels(p.w->type, isa, prompt_order);
    // Tokens [first, first + count) with kernels `with`.
    const auto add = [&](const TypeKernels& with, int32_t first, int32_t count) {
      if (count == 0) return;
      jobs[pending++] = {
          .k = &with,
          .args = {.w = p.w->data,
                   .w_row_bytes = p.w->row_bytes,
                   .cols = cols,
                   .row_begin = 0,
                   .row_end = p.w->rows,
                   .x = typed + static_cast<size_t>(first) * row_bytes,
                   .x_row_bytes = row_bytes,
                   .n = count,
                   .y = p.y + static_cast<size_t>(first) * static_cast<size_t>(p.w->rows),
                   .y_stride = static_cast<size_t>(p.w->rows)}};
    };
    if (&kp == &k) {
      add(k, 0, n);
    } else {
      add(kp, 0, prompt_rows);
      add(k, prompt_rows, n - prompt_rows);
    }
  }
  RunJobs(std::span<const Job>(jobs.data(), pending), parallel);
  for (const Product& p : products) {
    if (p.bias.empty()) continue;
    for (int32_t b = 0; b < n; ++b) {
      float* y = Row(p.y, b, p.w->rows);
      for (size_t i = 0; i < p.bias.size(); ++i) {
        y[i] += p.bias[i];
      }
    }
  }
}

RopeParams RopeOf(const GgufWeights& w) {
  return {.dims = w.config.rotated_dims(),
          .base = w.config.rope_base,
          .freq_scale = w.rope_freq_scale,
          .style = w.config.rope_style,
          .freq_factors = w.rope_freqs.empty() ? nullptr : w.rope_freqs.data()};
}

}  // namespace

namespace gguf_steps {

void Embed(const GgufWeights& w, KernelIsa isa, std::span<const int32_t> tokens, float* x) {
  const TypeKernels& k = GetTypeKernels(w.token_embedding.type, isa);
  for (size_t b = 0; b < tokens.size(); ++b) {
    k.dequantize(w.token_embedding.Row(tokens[b]), w.config.dim,
                 Row(x, static_cast<int32_t>(b), w.config.dim));
  }
}

void AttentionInputs(const GgufWeights& w, KernelIsa isa, int32_t layer, int32_t n,
                     const Buffers& b) {
  const ModelConfig& c = w.config;
  const GgufLayer& lw = w.layers[static_cast<size_t>(layer)];
  for (int32_t t = 0; t < n; ++t) {
    RmsNorm(Row(b.x, t, c.dim), lw.attn_norm.data(), c.dim, c.rms_eps, Row(b.h, t, c.dim));
  }
  Project(isa, b.h, n, b.prompt_rows, c.dim, b.typed_input, b.parallel,
          {{&lw.wq, b.q, lw.bq}, {&lw.wk, b.k, lw.bk}, {&lw.wv, b.v, lw.bv}});
  if (!lw.q_norm.empty()) {
    const int32_t hd = c.head_size();
    for (int32_t t = 0; t < n; ++t) {
      for (int32_t h = 0; h < c.n_heads; ++h) {
        float* head = Row(b.q, t, c.q_dim()) + static_cast<size_t>(h) * hd;
        RmsNorm(head, lw.q_norm.data(), hd, c.rms_eps, head);
      }
      for (int32_t h = 0; h < c.n_kv_heads; ++h) {
        float* head = Row(b.k, t, c.kv_dim()) + static_cast<size_t>(h) * hd;
        RmsNorm(head, lw.k_norm.data(), hd, c.rms_eps, head);
      }
    }
  }
}

void RotateQueriesAndKeys(const GgufWeights& w, KernelIsa isa, int32_t pos, int32_t n, float* q,
                          float* k, float* angles) {
  const ModelConfig& c = w.config;
  const RopeParams rope = RopeOf(w);
  const int32_t hd = c.head_size();
  for (int32_t t = 0; t < n; ++t) {
    RopeAngles(rope, pos + t, angles);
    for (int32_t h = 0; h < c.n_heads; ++h) {
      Rope(rope, angles, Row(q, t, c.q_dim()) + static_cast<size_t>(h) * hd, isa);
    }
    for (int32_t h = 0; h < c.n_kv_heads; ++h) {
      Rope(rope, angles, Row(k, t, c.kv_dim()) + static_cast<size_t>(h) * hd, isa);
    }
  }
}

namespace {

// One kv head's values ([padded / kKvPadding][hd][kKvPadding] from `head`) as hd rows of
// `padded` positions at `rows`: a line at a time, read in address order.
void GatherValueRows(const uint16_t* head, int32_t hd, int32_t padded, uint16_t* rows) {
  for (int32_t b = 0; b < padded / kKvPadding; ++b) {
    const uint16_t* block = head + static_cast<size_t>(b) * hd * kKvPadding;
    for (int32_t r = 0; r < hd; ++r) {
      std::memcpy(rows + static_cast<size_t>(r) * padded + static_cast<size_t>(b) * kKvPadding,
                  block + static_cast<size_t>(r) * kKvPadding, kKvPadding * sizeof(uint16_t));
    }
  }
}

// Faults in the pages of one layer's cache (keys at `keys`, values at `values`, laid out as Attend
// writes them) for PositionsToPopulate(pos, n): a 256-token prompt of the 110m model writes 2,300
// pages, which faulted in one at a time by the writes took 17% of its prefill on these VMs.
void PopulateCache(const ModelConfig& c, size_t capacity, uint16_t* keys, uint16_t* values,
                   int32_t pos, int32_t n) {
  const PositionRange range = PositionsToPopulate(pos, n, static_cast<int32_t>(capacity));
  const auto from = static_cast<size_t>(range.from);
  const auto to = static_cast<size_t>(range.to);
  if (from == to) {
    return;
  }
  const auto hd = static_cast<size_t>(c.head_size());
  const size_t block_from = from / kKvPadding * kKvPadding;  // values go by blocks of positions
  for (size_t kvh = 0; kvh < static_cast<size_t>(c.n_kv_heads); ++kvh) {
    PopulateForWrite(keys + (kvh * capacity + from) * hd, (to - from) * hd * sizeof(uint16_t));
    PopulateForWrite(values + (kvh * capacity + block_from) * hd,
                     (to - block_from) * hd * sizeof(uint16_t));
  }
}

// Writes tokens [0, n)'s keys and values (rows of k and v) at positions [pos, pos + n) of one
// layer's cache. Keys by kv head, then position ([kv heads][capacity][hd]): a head's keys are
// one contiguous run, which its scores read at the memory's speed (by position, each head's piece
// of a position 2 * kv_dim bytes from the next read at half of it). Values by dimension in blocks
// of kKvPadding positions (run_state.h), written a dimension at a time so that each dimension's
// new positions fill whole cache lines. Both are rounded by ToHalves (the bits of FloatToHalf),
// the values a block of tokens and dimensions at a time.
void WriteCache(const ModelConfig& c, KernelIsa isa, size_t capacity, int32_t pos, int32_t n,
                const float* k, const float* v, uint16_t* keys, uint16_t* values) {
  const int32_t hd = c.head_size();
  const int32_t kv_dim = c.kv_dim();
  for (int32_t t = 0; t < n; ++t) {
    for (int32_t kvh = 0; kvh < c.n_kv_heads; ++kvh) {
      ToHalves(Row(k, t, kv_dim) + static_cast<size_t>(kvh) * hd, hd,
               keys + (static_cast<size_t>(kvh) * capacity + static_cast<size_t>(pos + t)) * hd,
               isa);
    }
  }
  // Dimension `dim`'s values: position p at dim_values(dim) + (p / kKvPadding) * hd * kKvPadding
  // + p % kKvPadding (one division by hd per dimension, not per value).
  const auto dim_values = [&](int32_t dim) {
    return values + static_cast<size_t>(dim / hd) * hd * capacity +
           static_cast<size_t>(dim % hd) * kKvPadding;
  };
  const auto block_step = static_cast<size_t>(hd) * kKvPadding;
  constexpr int32_t kTokens = 16;
  constexpr int32_t kDims = 64;
  std::array<uint16_t, static_cast<size_t>(kTokens) * kDims> rounded{};
  for (int32_t t0 = 0; t0 < n; t0 += kTokens) {
    const int32_t tokens = std::min(kTokens, n - t0);
    for (int32_t j0 = 0; j0 < kv_dim; j0 += kDims) {
      const int32_t dims = std::min(kDims, kv_dim - j0);
      for (int32_t t = 0; t < tokens; ++t) {
        ToHalves(v + static_cast<size_t>(t0 + t) * kv_dim + static_cast<size_t>(j0), dims,
                 rounded.data() + static_cast<size_t>(t) * kDims, isa);
      }
      for (int32_t j = 0; j < dims; ++j) {
        uint16_t* dim_at = dim_values(j0 + j);
        for (int32_t t = 0; t < tokens; ++t) {
          const size_t p = static_cast<size_t>(pos) + static_cast<size_t>(t0 + t);
          dim_at[p / kKvPadding * block_step + p % kKvPadding] =
              rounded[static_cast<size_t>(t) * kDims + static_cast<size_t>(j)];
        }
      }
    }
  }
}

// What both kinds of attention read: one layer's cache (keys and values, laid out as WriteCache
// writes them) and the state's scratch for queries and weights rounded to halves.
struct LayerAttention {
  LayerAttention(const ModelConfig& c, KernelIsa isa, RunState& s, const uint16_t* layer_keys,
                 const uint16_t* layer_values)
      : keys(layer_keys),
        values(layer_values),
        capacity(static_cast<size_t>(s.kv_capacity())),
        hd(c.head_size()),
        kv_mul(c.n_heads / c.n_kv_heads),
        scale(1.0F / std::sqrt(static_cast<float>(c.head_size()))),
        padded_seq(static_cast<size_t>(PadToKv(c.seq_len))),
        f16(GetTypeKernels(TensorType::kF16, isa)),
        weights_half(s.attention_half),
        q_half(s.attention_half + kPromptQueries * padded_seq) {}

  // The start of kv head `g / hd`'s run in a layer's keys or values.
  const uint16_t* KeysOf(size_t g) const { return keys + g * capacity; }
  const uint16_t* ValuesOf(size_t g) const { return values + g * capacity; }

  const uint16_t* keys;
  const uint16_t* values;
  size_t capacity;
  int32_t hd;
  int32_t kv_mul;
  float scale;
  size_t padded_seq;
  const TypeKernels& f16;
  float* weights_half;  // [kPromptQueries][padded_seq]
  float* q_half;        // [max(q_dim, kPromptQueries * hd)]
};

// A prompt's attention, in llama.cpp's tinyBLAS order (see ggml_ops.h). Head by head, then a
// group of tokens at a time: up to kPromptQueries tokens whose lengths pad to the same value read
// the head's keys and value rows together, each with its own chain (LanesDotsF16), so a group
// gives each token the bits it would have alone. The tokens share a kv head's values gathered
// into rows once (their stride fits the last token; each token reads its own padded stretch).
void AttendPrompt(const ModelConfig& c, KernelIsa isa, RunState& s, const LayerAttention& a,
                  int32_t pos, int32_t n, const float* q, float* out) {
  const int32_t hd = a.hd;
  const size_t padded_seq = a.padded_seq;
  const auto stride = static_cast<size_t>(PadToKv(pos + n));
  for (int32_t h = 0; h < c.n_heads; ++h) {
    const size_t g = static_cast<size_t>(h / a.kv_mul) * hd;
    const uint16_t* keys = a.KeysOf(g);
    if (h % a.kv_mul == 0) {
      GatherValueRows(a.ValuesOf(g), hd, static_cast<int32_t>(stride), s.value_rows_half);
    }
    for (int32_t t = 0; t < n;) {
      const auto padded = static_cast<int32_t>(PadToKv(pos + t + 1));
      int32_t group = 1;
      while (group < kPromptQueries && t + group < n && PadToKv(pos + t + group + 1) == padded) {
        ++group;
      }
      // Rounding is value by value: the head's slice alone gets the bits the whole row would.
      for (int32_t i = 0; i < group; ++i) {
        a.f16.quantize_activations(
            Row(q, t + i, c.q_dim()) + static_cast<size_t>(h) * hd, 1, hd,
            reinterpret_cast<std::byte*>(a.q_half + static_cast<ptrdiff_t>(i) * hd));
      }
      // Every token's scores over the group's last one's keys: an earlier token's later keys are
      // past its count, where the causal mask overwrites them.
      const int32_t last_count = pos + t + group;
      if (hd % 16 == 0) {
        LanesDotsF16(keys, hd, last_count, a.q_half, hd, group, hd, isa, s.scores, padded_seq);
      } else {
        for (int32_t i = 0; i < group; ++i) {
          DotsF16(keys, hd, last_count, a.q_half + static_cast<ptrdiff_t>(i) * hd, hd, isa,
                  s.scores + i * padded_seq);
        }
      }
      for (int32_t i = 0; i < group; ++i) {
        float* scores = s.scores + i * padded_seq;
        std::fill(scores + pos + t + i + 1, scores + padded, -INFINITY);  // the causal mask
        SoftMax(scores, padded, a.scale, isa);
        a.f16.quantize_activations(scores, 1, padded,
                                   reinterpret_cast<std::byte*>(a.weights_half + i * padded_seq));
      }
      LanesDotsF16(s.value_rows_half, stride, hd, a.weights_half, padded_seq, group, padded, isa,
                   Row(out, t, c.q_dim()) + static_cast<size_t>(h) * hd, c.q_dim());
      t += group;
    }
  }
}

// Decode rows' attention, a row at a time, head by head, in the F16 kernel's order; each reads
// the cache's value blocks in place (a copy would cost as much as the dots).
void AttendDecode(const ModelConfig& c, KernelIsa isa, RunState& s, const LayerAttention& a,
                  int32_t pos, int32_t n, const float* q, float* out) {
  static_assert(kKvPadding == kF16Block);
  const int32_t hd = a.hd;
  for (int32_t h = 0; h < c.n_heads; ++h) {
    const size_t g = static_cast<size_t>(h / a.kv_mul) * hd;
    float* qh = a.q_half + static_cast<size_t>(h) * hd;
    float* scores = s.scores + static_cast<size_t>(h) * a.padded_seq;
    for (int32_t t = 0; t < n; ++t) {
      const int32_t count = pos + t + 1;
      const auto padded = static_cast<int32_t>(PadToKv(count));
      a.f16.quantize_activations(Row(q, t, c.q_dim()) + static_cast<size_t>(h) * hd, 1, hd,
                                 reinterpret_cast<std::byte*>(qh));
      DotsF16(a.KeysOf(g), hd, count, qh, hd, isa, scores);
      std::fill(scores + count, scores + padded, -INFINITY);  // the causal mask
      SoftMax(scores, padded, a.scale, isa);
      a.f16.quantize_activations(scores, 1, padded, reinterpret_cast<std::byte*>(a.weights_half));
      DotsF16Blocks(a.ValuesOf(g), static_cast<size_t>(hd) * kKvPadding, hd, a.weights_half, padded,
                    isa, s.value_rows_half, Row(out, t, c.q_dim()) + static_cast<size_t>(h) * hd);
    }
  }
}

}  // namespace

void Attend(const GgufWeights& w, KernelIsa isa, RunState& s, int32_t layer, int32_t pos, int32_t n,
            StepKind kind, const float* q, const float* k, const float* v, float* out) {
  const ModelConfig& c = w.config;
  const int32_t kv_dim = c.kv_dim();
  const size_t capacity = static_cast<size_t>(s.kv_capacity());
  uint16_t* keys = s.key_cache_half + static_cast<size_t>(layer) * capacity * kv_dim;
  uint16_t* values = s.value_cache_half + static_cast<size_t>(layer) * kv_dim * capacity;
  PopulateCache(c, capacity, keys, values, pos, n);
  WriteCache(c, isa, capacity, pos, n, k, v, keys, values);
  const LayerAttention inputs(c, isa, s, keys, values);
  if (kind == StepKind::kPrompt) {
    AttendPrompt(c, isa, s, inputs, pos, n, q, out);
  } else {
    AttendDecode(c, isa, s, inputs, pos, n, q, out);
  }
}

void AttentionOutputAndFeedForward(const GgufWeights& w, KernelIsa isa, int32_t layer, int32_t n,
                                   const Buffers& b) {
  const ModelConfig& c = w.config;
  const GgufLayer& lw = w.layers[static_cast<size_t>(layer)];
  Project(isa, b.h, n, b.prompt_rows, c.q_dim(), b.typed_input, b.parallel, {{&lw.wo, b.h2, {}}});
  for (size_t i = 0; i < static_cast<size_t>(n) * c.dim; ++i) {
    b.x[i] += b.h2[i];
  }
  for (int32_t t = 0; t < n; ++t) {
    RmsNorm(Row(b.x, t, c.dim), lw.ffn_norm.data(), c.dim, c.rms_eps, Row(b.h, t, c.dim));
  }
  Project(isa, b.h, n, b.prompt_rows, c.dim, b.typed_input, b.parallel,
          {{&lw.w_gate, b.gate, {}}, {&lw.w_up, b.up, {}}});
  SiluMul(b.gate, b.up, static_cast<int64_t>(n) * c.hidden_dim, isa);
  Project(isa, b.gate, n, b.prompt_rows, c.hidden_dim, b.typed_input, b.parallel,
          {{&lw.w_down, b.h2, {}}});
  for (size_t i = 0; i < static_cast<size_t>(n) * c.dim; ++i) {
    b.x[i] += b.h2[i];
  }
}

void Logits(const GgufWeights& w, KernelIsa isa, const float* x_rows, int32_t n, const Buffers& b,
            float* logits) {
  const ModelConfig& c = w.config;
  for (int32_t t = 0; t < n; ++t) {
    RmsNorm(Row(x_rows, t, c.dim), w.output_norm.data(), c.dim, c.rms_eps, Row(b.h, t, c.dim));
  }
  // Each session's logits are one row, in decode order, whatever the step's kind.
  Project(isa, b.h, n, /*prompt_rows=*/0, c.dim, b.typed_input, b.parallel,
          {{&w.classifier, logits, {}}});
}

}  // namespace gguf_steps

const float* ForwardGguf(const GgufWeights& w, KernelIsa isa, RunState& s,
                         std::span<const int32_t> tokens, int32_t pos) {
  return ForwardGguf(w, isa, s, tokens, pos, KindByCount(tokens.size()));
}

const float* ForwardGguf(const GgufWeights& w, KernelIsa isa, RunState& s,
                         std::span<const int32_t> tokens, int32_t pos, StepKind kind) {
  const ModelConfig& c = w.config;
  gguf_steps::Buffers b{.x = s.x,
                        .h = s.xb,
                        .h2 = s.xb2,
                        .q = s.q,
                        .k = s.kv_new,
                        .v = s.kv_new + static_cast<size_t>(kMaxBatch) * c.kv_dim(),
                        .gate = s.hb,
                        .up = s.hb2,
                        .typed_input = s.typed_input};
  const float* logits = nullptr;
  for (size_t start = 0; start < tokens.size(); start += kMaxBatch) {
    const size_t count = std::min<size_t>(kMaxBatch, tokens.size() - start);
    const auto n = static_cast<int32_t>(count);
    const int32_t at = pos + static_cast<int32_t>(start);
    b.prompt_rows = kind == StepKind::kPrompt ? n : 0;
    gguf_steps::Embed(w, isa, tokens.subspan(start, count), b.x);
    for (int32_t l = 0; l < c.n_layers; ++l) {
      gguf_steps::AttentionInputs(w, isa, l, n, b);
      gguf_steps::RotateQueriesAndKeys(w, isa, at, n, b.q, b.k, s.rope_cos);
      gguf_steps::Attend(w, isa, s, l, at, n, kind, b.q, b.k, b.v, b.h);
      gguf_steps::AttentionOutputAndFeedForward(w, isa, l, n, b);
    }
    if (start + count == tokens.size()) {
      gguf_steps::Logits(w, isa, Row(b.x, n - 1, c.dim), 1, b, s.logits);
      logits = s.logits;
    }
  }
  return logits;
}

}  // namespace cellhouse::engine
