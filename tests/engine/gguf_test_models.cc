#include "tests/engine/gguf_test_models.h"

#include <cmath>
#include <cstdio>
#include <cstring>

#include <gtest/gtest.h>

#include "engine/kernels/type_kernels.h"

namespace cellhouse::engine::testing {

namespace {

// xorshift64*: the same values on every machine.
class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed * 0x9E3779B97F4A7C15ULL + 1) {}
  float Uniform(float scale) {  // in [-scale, scale)
    state_ ^= state_ >> 12;
    state_ ^= state_ << 25;
    state_ ^= state_ >> 27;
    const uint64_t r = state_ * 0x2545F4914F6CDD1DULL;
    return (static_cast<float>(r >> 40) / static_cast<float>(1 << 24) * 2.0F - 1.0F) * scale;
  }

 private:
  uint64_t state_;
};

struct Builder {
  const GgufSpec& spec;
  GgufWriter& w;
  GgufFloats* floats;
  Random rng;

  void Tensor(const std::string& name, TensorType type, int64_t rows, int64_t cols, float scale,
              float center = 0.0F) {
    std::vector<float> values(static_cast<size_t>(rows * cols));
    for (float& v : values) {
      v = center + rng.Uniform(scale);
    }
    const TypeInfo& info = GetTypeInfo(type);
    std::vector<std::byte> bytes(*RowBytes(info, static_cast<uint64_t>(cols)) *
                                 static_cast<size_t>(rows));
    EXPECT_TRUE(QuantizeWeights(type, values.data(), rows * cols, bytes.data())) << name;
    std::vector<uint64_t> dims = {static_cast<uint64_t>(cols)};
    if (rows > 1) {
      dims.push_back(static_cast<uint64_t>(rows));
    }
    w.AddTensor(name, type, dims, std::move(bytes));
    if (floats != nullptr) {
      (*floats)[name] = std::move(values);
    }
  }
};

}  // namespace

GgufWriter MakeGgufModel(const GgufSpec& s, GgufFloats* floats) {
  GgufWriter w;
  const std::string a = s.arch;
  const int32_t hd = s.head_dim != 0 ? s.head_dim : s.dim / s.heads;
  w.SetString("general.architecture", a);
  w.SetString("general.name", "test " + a);
  w.SetUint32(a + ".context_length", static_cast<uint32_t>(s.context));
  w.SetUint32(a + ".embedding_length", static_cast<uint32_t>(s.dim));
  w.SetUint32(a + ".block_count", static_cast<uint32_t>(s.layers));
  w.SetUint32(a + ".feed_forward_length", static_cast<uint32_t>(s.hidden));
  w.SetUint32(a + ".attention.head_count", static_cast<uint32_t>(s.heads));
  w.SetUint32(a + ".attention.head_count_kv", static_cast<uint32_t>(s.kv_heads));
  if (s.head_dim != 0) {
    w.SetUint32(a + ".attention.key_length", static_cast<uint32_t>(s.head_dim));
    w.SetUint32(a + ".attention.value_length", static_cast<uint32_t>(s.head_dim));
  }
  w.SetFloat32(a + ".attention.layer_norm_rms_epsilon", s.rms_eps);
  w.SetFloat32(a + ".rope.freq_base", s.rope_base);
  // The vocabulary: control pieces, byte pieces, then words.
  std::vector<std::string> tokens = {"<unk>", "<s>", "</s>"};
  std::vector<int32_t> types = {2, 3, 3};
  for (int b = 0; b < 256; ++b) {
    char name[8];
    static_cast<void>(std::snprintf(name, sizeof(name), "<0x%02X>", b));
    tokens.emplace_back(name);
    types.push_back(6);
  }
  // Then U+2581 (a space), the letters, and words: a space and one or two letters.
  const std::string space = "\xE2\x96\x81";
  std::vector<std::string> words = {space};
  for (char c = 'a'; c <= 'z'; ++c) {
    words.emplace_back(1, c);
  }
  for (int i = 0; static_cast<int32_t>(words.size() + tokens.size()) < s.vocab; ++i) {
    std::string word = space;
    word += static_cast<char>('a' + i % 26);
    if (i >= 26) {
      word += static_cast<char>('a' + (i / 26 - 1) % 26);
    }
    words.push_back(word);
  }
  for (const std::string& word : words) {
    if (static_cast<int32_t>(tokens.size()) < s.vocab) {
      tokens.push_back(word);
      types.push_back(1);
    }
  }
  std::vector<float> scores(tokens.size());
  for (size_t i = 0; i < scores.size(); ++i) {
    scores[i] = i < 259 ? 0.0F : -static_cast<float>(i);
  }
  w.SetString("tokenizer.ggml.model", "llama");
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  w.SetFloat32Array("tokenizer.ggml.scores", scores);
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.SetUint32("tokenizer.ggml.bos_token_id", 1);
  w.SetUint32("tokenizer.ggml.eos_token_id", 2);

  Builder b{s, w, floats, Random(s.seed)};
  const int64_t q_dim = static_cast<int64_t>(hd) * s.heads;
  const int64_t kv_dim = static_cast<int64_t>(hd) * s.kv_heads;
  b.Tensor("token_embd.weight", s.embedding, s.vocab, s.dim, 1.0F);
  if (s.rope_freqs) {
    b.Tensor("rope_freqs.weight", TensorType::kF32, 1, hd / 2, 0.5F, 2.0F);
  }
  for (int32_t l = 0; l < s.layers; ++l) {
    const std::string p = "blk." + std::to_string(l) + ".";
    const float in_scale = 1.0F / std::sqrt(static_cast<float>(s.dim));
    b.Tensor(p + "attn_norm.weight", TensorType::kF32, 1, s.dim, 0.2F, 1.0F);
    b.Tensor(p + "attn_q.weight", s.matrices, q_dim, s.dim, 2.0F * in_scale);
    b.Tensor(p + "attn_k.weight", s.matrices, kv_dim, s.dim, 2.0F * in_scale);
    b.Tensor(p + "attn_v.weight", s.matrices, kv_dim, s.dim, 2.0F * in_scale);
    if (s.biases) {
      b.Tensor(p + "attn_q.bias", TensorType::kF32, 1, q_dim, 0.5F);
      b.Tensor(p + "attn_k.bias", TensorType::kF32, 1, kv_dim, 0.5F);
      b.Tensor(p + "attn_v.bias", TensorType::kF32, 1, kv_dim, 0.5F);
    }
    if (s.qk_norm) {
      b.Tensor(p + "attn_q_norm.weight", TensorType::kF32, 1, hd, 0.3F, 1.0F);
      b.Tensor(p + "attn_k_norm.weight", TensorType::kF32, 1, hd, 0.3F, 1.0F);
    }
    b.Tensor(p + "attn_output.weight", s.matrices, s.dim, q_dim,
             1.0F / std::sqrt(static_cast<float>(q_dim)));
    b.Tensor(p + "ffn_norm.weight", TensorType::kF32, 1, s.dim, 0.2F, 1.0F);
    b.Tensor(p + "ffn_gate.weight", s.matrices, s.hidden, s.dim, 2.0F * in_scale);
    b.Tensor(p + "ffn_up.weight", s.matrices, s.hidden, s.dim, 2.0F * in_scale);
    b.Tensor(p + "ffn_down.weight", s.matrices, s.dim, s.hidden,
             1.0F / std::sqrt(static_cast<float>(s.hidden)));
  }
  b.Tensor("output_norm.weight", TensorType::kF32, 1, s.dim, 0.2F, 1.0F);
  if (!s.tied) {
    b.Tensor("output.weight", s.embedding, s.vocab, s.dim, 1.0F);
  }
  return w;
}

void WriteGgufModelFile(const GgufSpec& spec, const std::string& path) {
  Status st = MakeGgufModel(spec).WriteFile(path);
  ASSERT_TRUE(st) << st.error().message();
}

}  // namespace cellhouse::engine::testing
