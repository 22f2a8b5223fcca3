// The GGUF forward pass against a plain double-precision implementation written here from each
// architecture's definition (llama: interleaved RoPE; qwen2: q/k/v biases, NEOX RoPE; qwen3:
// per-head RMSNorm of queries and keys before NEOX RoPE, heads of their own size), on small
// generated models with f32 weights. The engine rounds queries, keys, values and attention weights
// to f16 as llama.cpp does, so the logits agree to about 1e-3 of their range, not to the bit; a
// wrong rotation, norm or head layout is off by the whole range.
#include <unistd.h>

#include <algorithm>
#include <cmath>
#include <limits>
#include <numeric>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/mapping.h"
#include "engine/forward.h"
#include "engine/gguf_forward.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "tests/engine/gguf_test_models.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

using testing::GgufFloats;
using testing::GgufSpec;

// The architecture's definition in doubles, one token at a time.
class Reference {
 public:
  Reference(const GgufSpec& spec, const GgufFloats& f)
      : s_(spec),
        f_(f),
        hd_(spec.head_dim != 0 ? spec.head_dim : spec.dim / spec.heads),
        keys_(static_cast<size_t>(spec.layers)),
        values_(static_cast<size_t>(spec.layers)) {}

  std::vector<double> Step(int32_t token, int32_t pos) {
    const std::vector<float>& embd = f_.at("token_embd.weight");
    std::vector<double> x(embd.begin() + static_cast<ptrdiff_t>(token) * s_.dim,
                          embd.begin() + static_cast<ptrdiff_t>(token + 1) * s_.dim);
    const int32_t q_dim = hd_ * s_.heads;
    const int32_t kv_dim = hd_ * s_.kv_heads;
    for (int32_t l = 0; l < s_.layers; ++l) {
      const std::string p = "blk." + std::to_string(l) + ".";
      std::vector<double> h = Norm(x, f_.at(p + "attn_norm.weight"));
      std::vector<double> q = MatVec(p + "attn_q.weight", h, q_dim);
      std::vector<double> k = MatVec(p + "attn_k.weight", h, kv_dim);
      std::vector<double> v = MatVec(p + "attn_v.weight", h, kv_dim);
      if (s_.biases) {
        Add(q, f_.at(p + "attn_q.bias"));
        Add(k, f_.at(p + "attn_k.bias"));
        Add(v, f_.at(p + "attn_v.bias"));
      }
      for (int32_t head = 0; head < s_.heads; ++head) {
        if (s_.qk_norm) {
          NormHead(q, head, f_.at(p + "attn_q_norm.weight"));
        }
        Rotate(q, head, pos);
      }
      for (int32_t head = 0; head < s_.kv_heads; ++head) {
        if (s_.qk_norm) {
          NormHead(k, head, f_.at(p + "attn_k_norm.weight"));
        }
        Rotate(k, head, pos);
      }
      keys_[static_cast<size_t>(l)].push_back(k);
      values_[static_cast<size_t>(l)].push_back(v);
      std::vector<double> attn(static_cast<size_t>(q_dim));
      const auto& ks = keys_[static_cast<size_t>(l)];
      const auto& vs = values_[static_cast<size_t>(l)];
      for (int32_t head = 0; head < s_.heads; ++head) {
        const size_t g = static_cast<size_t>(head / (s_.heads / s_.kv_heads)) * hd_;
        std::vector<double> w(ks.size());
        double max = -std::numeric_limits<double>::infinity();
        for (size_t t = 0; t < ks.size(); ++t) {
          double dot = 0;
          for (int32_t i = 0; i < hd_; ++i) {
            dot += q[static_cast<size_t>(head) * hd_ + i] * ks[t][g + i];
          }
          w[t] = dot / std::sqrt(static_cast<double>(hd_));
          max = std::max(max, w[t]);
        }
        double sum = 0;
        for (double& e : w) {
          e = std::exp(e - max);
          sum += e;
        }
        for (size_t t = 0; t < ks.size(); ++t) {
          for (int32_t i = 0; i < hd_; ++i) {
            attn[static_cast<size_t>(head) * hd_ + i] += w[t] / sum * vs[t][g + i];
          }
        }
      }
      Add(x, MatVec(p + "attn_output.weight", attn, s_.dim));
      h = Norm(x, f_.at(p + "ffn_norm.weight"));
      std::vector<double> gate = MatVec(p + "ffn_gate.weight", h, s_.hidden);
      const std::vector<double> up = MatVec(p + "ffn_up.weight", h, s_.hidden);
      for (size_t i = 0; i < gate.size(); ++i) {
        gate[i] = gate[i] / (1.0 + std::exp(-gate[i])) * up[i];
      }
      Add(x, MatVec(p + "ffn_down.weight", gate, s_.dim));
    }
    return MatVec(s_.tied ? "token_embd.weight" : "output.weight",
                  Norm(x, f_.at("output_norm.weight")), s_.vocab);
  }

 private:
  std::vector<double> MatVec(const std::string& name, const std::vector<double>& x,
                             int32_t rows) const {
    const std::vector<float>& w = f_.at(name);
    std::vector<double> y(static_cast<size_t>(rows));
    for (size_t r = 0; r < y.size(); ++r) {
      for (size_t c = 0; c < x.size(); ++c) {
        y[r] += static_cast<double>(w[r * x.size() + c]) * x[c];
      }
    }
    return y;
  }
  std::vector<double> Norm(const std::vector<double>& x, const std::vector<float>& w) const {
    double ss = 0;
    for (double v : x) {
      ss += v * v;
    }
    const double scale = 1.0 / std::sqrt(ss / static_cast<double>(x.size()) + s_.rms_eps);
    std::vector<double> y(x.size());
    for (size_t i = 0; i < x.size(); ++i) {
      y[i] = x[i] * scale * w[i];
    }
    return y;
  }
  void NormHead(std::vector<double>& v, int32_t head, const std::vector<float>& w) const {
    const auto begin = v.begin() + static_cast<ptrdiff_t>(head) * hd_;
    std::vector<double> part(begin, begin + hd_);
    part = Norm(part, w);
    std::copy(part.begin(), part.end(), begin);
  }
  // Pair i turns by pos / base^(2i / hd) (over its frequency factor): NEOX pairs (i, i + hd/2)
  // for the Qwens, interleaved pairs (2i, 2i + 1) for llama.
  void Rotate(std::vector<double>& v, int32_t head, int32_t pos) const {
    double* x = v.data() + static_cast<size_t>(head) * hd_;
    const bool neox = s_.arch != "llama";
    for (int32_t i = 0; i < hd_ / 2; ++i) {
      double theta = pos * std::pow(static_cast<double>(s_.rope_base), -2.0 * i / hd_);
      if (s_.rope_freqs) {
        theta /= f_.at("rope_freqs.weight")[static_cast<size_t>(i)];
      }
      const int32_t a = neox ? i : 2 * i;
      const int32_t b = neox ? i + hd_ / 2 : 2 * i + 1;
      const double x0 = x[a];
      const double x1 = x[b];
      x[a] = x0 * std::cos(theta) - x1 * std::sin(theta);
      x[b] = x0 * std::sin(theta) + x1 * std::cos(theta);
    }
  }
  static void Add(std::vector<double>& x, const std::vector<double>& y) {
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] += y[i];
    }
  }
  static void Add(std::vector<double>& x, const std::vector<float>& y) {
    for (size_t i = 0; i < x.size(); ++i) {
      x[i] += y[i];
    }
  }

  const GgufSpec& s_;
  const GgufFloats& f_;
  const int32_t hd_;
  std::vector<std::vector<std::vector<double>>> keys_;    // [layer][position][kv_dim]
  std::vector<std::vector<std::vector<double>>> values_;  // [layer][position][kv_dim]
};

struct Case {
  std::string name;
  GgufSpec spec;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class GgufForwardTest : public ::testing::TestWithParam<Case> {};

// Checks `logits` against the reference's `expected`, within the float kernels' error.
void ExpectLogits(const float* logits, const std::vector<double>& expected, int32_t vocab,
                  const std::string& what) {
  double range = 0;
  double worst = 0;
  for (int32_t t = 0; t < vocab; ++t) {
    range = std::max(range, std::fabs(expected[static_cast<size_t>(t)]));
    worst = std::max(worst, std::fabs(logits[t] - expected[static_cast<size_t>(t)]));
  }
  EXPECT_LT(worst, 2e-3 * range + 1e-4) << what << ": logits range " << range;
}

// A prompt of six tokens at once, a chunk of thirty more at once (positions 6-35: across the
// cache's first block of 32), then one at a time to position 70 (across the second); the logits
// at every step against the reference's.
TEST_P(GgufForwardTest, LogitsFollowTheArchitecturesDefinition) {
  const GgufSpec& spec = GetParam().spec;
  GgufFloats floats;
  cellhouse::testing::TempDir dir;
  const std::string path = dir.File("m.gguf");
  ASSERT_TRUE(testing::MakeGgufModel(spec, &floats).WriteFile(path));
  Result<Model> model = Model::Open(path);
  ASSERT_TRUE(model) << model.error().message();
  ASSERT_EQ(model->format(), WeightFormat::kGguf);
  constexpr int32_t kLastPosition = 70;
  ASSERT_GT(spec.context, kLastPosition);
  for (MatVecKernel kind : {MatVecKernel::kAuto, MatVecKernel::kOpenBlas}) {
    const Kernels k = SelectKernels(kind);
    const std::string what = GetParam().name + " " + std::string(MatVecKernelName(kind));
    RunState state = *RunState::Create(model->config(), spec.context, model->kv_precision());
    Reference fresh(spec, floats);
    const auto token_at = [&spec](int32_t pos) { return (37 * pos + 11) % spec.vocab; };
    const std::vector<int32_t> prompt = {1, 300 - 40, 7, 265, 299, 42};
    const float* logits = Forward(model->weights(), k, state, prompt, 0);
    std::vector<double> expected;
    for (size_t i = 0; i < prompt.size(); ++i) {
      expected = fresh.Step(prompt[i], static_cast<int32_t>(i));
    }
    ExpectLogits(logits, expected, spec.vocab, what + " prompt");
    auto pos = static_cast<int32_t>(prompt.size());
    std::vector<int32_t> chunk;
    for (; pos < 36; ++pos) {
      chunk.push_back(token_at(pos));
      expected = fresh.Step(chunk.back(), pos);
    }
    logits = Forward(model->weights(), k, state, chunk, static_cast<int32_t>(prompt.size()));
    ExpectLogits(logits, expected, spec.vocab, what + " chunk");
    for (; pos <= kLastPosition; ++pos) {
      const int32_t next = token_at(pos);
      logits = Forward(model->weights(), k, state, std::span(&next, 1), pos);
      expected = fresh.Step(next, pos);
      ExpectLogits(logits, expected, spec.vocab, what + " position " + std::to_string(pos));
    }
  }
}

uint64_t ResidentIn(const void* p, size_t bytes) {
  Result<uint64_t> resident = ResidentBytesIn(p, bytes);
  EXPECT_TRUE(resident) << resident.error().message();
  return resident ? *resident : 0;
}

// The model of `spec`, written into `dir` and opened; nullopt (the failure reported) otherwise.
std::optional<Model> OpenGgufModel(const GgufSpec& spec, cellhouse::testing::TempDir& dir) {
  const std::string path = dir.File("m.gguf");
  EXPECT_TRUE(testing::MakeGgufModel(spec).WriteFile(path));
  Result<Model> model = Model::Open(path);
  EXPECT_TRUE(model) << model.error().message();
  if (!model) return std::nullopt;
  return std::move(*model);
}

// A session's cache is reached as the conversation grows: its first token writes a page of each
// kv head's keys and values, not a page of every value dimension (as rows across the whole
// context did, half of the values for this shape) nor the whole cache.
TEST(GgufCacheTest, TheFirstTokenTouchesAPageOfEachHead) {
  const GgufSpec spec{.context = 4096, .seed = 8};
  cellhouse::testing::TempDir dir;
  std::optional<Model> model = OpenGgufModel(spec, dir);
  ASSERT_TRUE(model);
  RunState state = *RunState::Create(model->config(), spec.context, model->kv_precision());
  const size_t half =
      KvCacheBytesPerToken(model->config(), model->kv_precision()) / 2 * state.kv_capacity();
  ASSERT_EQ(ResidentIn(state.key_cache_half, half), 0U);
  ASSERT_EQ(ResidentIn(state.value_cache_half, half), 0U);
  const int32_t token = 7;
  ASSERT_NE(
      Forward(model->weights(), SelectKernels(MatVecKernel::kAuto), state, std::span(&token, 1), 0),
      nullptr);
  // A head's first block may straddle two pages (the caches are aligned to a cache line).
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t regions = static_cast<uint64_t>(spec.layers) * spec.kv_heads;
  EXPECT_LE(ResidentIn(state.key_cache_half, half), 2 * regions * page);
  EXPECT_LE(ResidentIn(state.value_cache_half, half), 2 * regions * page);
  EXPECT_GT(ResidentIn(state.value_cache_half, half), 0U);
}

// A prompt faults in, before writing them, its positions' pages to the end of the last one's
// kKvPadding block (PositionsToPopulate), and nothing past them.
TEST(GgufCacheTest, APromptFaultsInItsBlocksAndNoMore) {
  const GgufSpec spec{.dim = 256, .heads = 2, .kv_heads = 2, .context = 4096, .seed = 9};
  cellhouse::testing::TempDir dir;
  std::optional<Model> model = OpenGgufModel(spec, dir);
  ASSERT_TRUE(model);
  RunState state = *RunState::Create(model->config(), spec.context, model->kv_precision());
  const std::vector<int32_t> prompt(40, 7);
  ASSERT_NE(Forward(model->weights(), SelectKernels(MatVecKernel::kAuto), state, prompt, 0),
            nullptr);
  const auto hd = static_cast<size_t>(model->config().head_size());
  const auto capacity = static_cast<size_t>(state.kv_capacity());
  const size_t populated = 64 * hd * sizeof(uint16_t);  // positions 0-63: two blocks
  const auto page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  ASSERT_GT(populated, 2 * page) << "the test wants blocks of several pages";
  for (size_t region = 0;
       region < static_cast<size_t>(spec.layers) * static_cast<size_t>(spec.kv_heads); ++region) {
    const uint16_t* keys = state.key_cache_half + region * capacity * hd;
    const uint16_t* values = state.value_cache_half + region * capacity * hd;
    EXPECT_EQ(ResidentIn(keys, populated), populated) << "region " << region;
    EXPECT_EQ(ResidentIn(values, populated), populated) << "region " << region;
    // A region's stretch may straddle one more page (the caches are aligned to a cache line).
    EXPECT_LE(ResidentIn(keys, capacity * hd * sizeof(uint16_t)), populated + page);
    EXPECT_LE(ResidentIn(values, capacity * hd * sizeof(uint16_t)), populated + page);
  }
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, GgufForwardTest,
    ::testing::Values(
        Case{"qwen3", {.arch = "qwen3", .head_dim = 24, .qk_norm = true, .seed = 3}},
        Case{"qwen3_gqa_untied",
             {.arch = "qwen3",
              .heads = 8,
              .kv_heads = 2,
              .head_dim = 32,
              .tied = false,
              .qk_norm = true,
              .seed = 4}},
        Case{"qwen2", {.arch = "qwen2", .rope_base = 1e6F, .biases = true, .seed = 5}},
        Case{"llama", {.arch = "llama", .kv_heads = 4, .seed = 6}},
        Case{"llama31_rope_freqs", {.arch = "llama", .rope_base = 5e5F, .rope_freqs = true}}),
    [](const ::testing::TestParamInfo<Case>& c) { return c.param.name; });

}  // namespace
}  // namespace cellhouse::engine
