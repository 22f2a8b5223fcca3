// The GGUF engine's part of the shared executor (engine/executor_compute.h, executor_rounds.h):
//  - a session's rounds computed on its own give ForwardGguf's bits (every architecture, several
//    tensor types, a prompt and decode steps);
//  - batch invariance: sessions stepping together, several threads splitting the products,
//    prompts and decode tokens of different sessions in one batch, and a neighbour whose rows are
//    garbage: every session gets exactly the logits it gets alone;
//  - failover: a transport that gives up mid-step hands the step to the fallback, same bits.
#include <gtest/gtest.h>

#include <algorithm>
#include <bit>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <optional>
#include <string>
#include <thread>
#include <tuple>
#include <vector>

#include "engine/executor_compute.h"
#include "engine/executor_rounds.h"
#include "engine/gguf_forward.h"
#include "engine/model.h"
#include "engine/thread_rounds.h"
#include "tests/engine/gguf_test_models.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

using testing::GgufSpec;

struct Loaded {
  cellhouse::testing::TempDir dir;
  std::optional<Model> model;
  const GgufWeights& weights() const { return std::get<GgufWeights>(model->weights()); }
};

std::unique_ptr<Loaded> Load(const GgufSpec& spec) {
  auto loaded = std::make_unique<Loaded>();
  const std::string path = loaded->dir.File("m.gguf");
  EXPECT_TRUE(testing::MakeGgufModel(spec, nullptr).WriteFile(path));
  Result<Model> model = Model::Open(path);
  EXPECT_TRUE(model) << model.error().message();
  loaded->model.emplace(std::move(*model));
  return loaded;
}

RunState NewState(const Model& m) { return *RunState::Create(m.config(), 64, m.kv_precision()); }

std::vector<float> Logits(const float* p, int32_t vocab) { return {p, p + vocab}; }

// Bit-for-bit equality, NaN included.
void ExpectSameBits(const std::vector<float>& a, const std::vector<float>& b,
                    const std::string& what) {
  ASSERT_EQ(a.size(), b.size()) << what;
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(a[i]), std::bit_cast<uint32_t>(b[i]))
        << what << ": logit " << i << " " << a[i] << " vs " << b[i];
  }
}

// A session's script: a prompt, then decode tokens one at a time.
struct Script {
  std::vector<int32_t> prompt;
  int32_t decode_steps = 0;
  int32_t Next(int32_t step, int32_t vocab) const { return (31 * step + prompt[0] + 5) % vocab; }
};

// Every step's logits of `script` through `step` (a function of tokens and pos).
template <typename Step>
std::vector<std::vector<float>> RunScript(const Script& script, int32_t vocab, Step&& step) {
  std::vector<std::vector<float>> out;
  const float* logits = step(std::span<const int32_t>(script.prompt), 0);
  out.push_back(Logits(logits, vocab));
  for (int32_t s = 0; s < script.decode_steps; ++s) {
    const int32_t next = script.Next(s, vocab);
    logits =
        step(std::span<const int32_t>(&next, 1), static_cast<int32_t>(script.prompt.size()) + s);
    out.push_back(Logits(logits, vocab));
  }
  return out;
}

struct Case {
  std::string name;
  GgufSpec spec;
};

void PrintTo(const Case& c, std::ostream* os) { *os << c.name; }

class ExecutorComputeTest : public ::testing::TestWithParam<Case> {};

TEST_P(ExecutorComputeTest, OwnRoundsGiveForwardGgufsBits) {
  const auto loaded = Load(GetParam().spec);
  const GgufWeights& w = loaded->weights();
  const KernelIsa isa = BestKernelIsa();
  const Script script{.prompt = {1, 260, 7, 265, 299, 42, 3}, .decode_steps = 6};
  RunState plain = NewState(*loaded->model);
  const auto expected = RunScript(script, w.config.vocab_size, [&](auto tokens, int32_t pos) {
    return ForwardGguf(w, isa, plain, tokens, pos);
  });
  // max_rows 8: the prompt is one chunk, as ForwardGguf takes it.
  std::unique_ptr<LocalRounds> local = *LocalRounds::Create(w, isa, 8);
  RunState own = NewState(*loaded->model);
  const auto got = RunScript(script, w.config.vocab_size, [&](auto tokens, int32_t pos) {
    return ForwardGgufRounds(w, isa, own, tokens, pos, KindByCount(tokens.size()), *local, nullptr);
  });
  for (size_t i = 0; i < expected.size(); ++i) {
    ExpectSameBits(got[i], expected[i], GetParam().name + " step " + std::to_string(i));
  }
}

// A prompt's arithmetic follows its kind, not its chunks: the same prompt in one call, in
// pieces of one token (each a prompt: StepKind::kPrompt) and in uneven pieces gives the same
// bits, on its own and through rounds (Q8_0's prompt rows take their own order, and one token
// alone goes through other tiles than 13 together).
TEST_P(ExecutorComputeTest, APromptGivesTheSameBitsInAnyChunking) {
  const auto loaded = Load(GetParam().spec);
  const GgufWeights& w = loaded->weights();
  const KernelIsa isa = BestKernelIsa();
  const int32_t vocab = w.config.vocab_size;
  const std::vector<int32_t> prompt = {1, 260, 7, 265, 299, 42, 3, 9, 17, 280, 5, 6, 11};
  const auto pieces = [&](std::span<const size_t> sizes, auto&& step) {
    size_t start = 0;
    const float* logits = nullptr;
    for (size_t i = 0; start < prompt.size(); ++i) {
      const size_t count = std::min(sizes[i % sizes.size()], prompt.size() - start);
      logits = step(std::span(prompt).subspan(start, count), static_cast<int32_t>(start));
      start += count;
    }
    return Logits(logits, vocab);
  };
  RunState whole_state = NewState(*loaded->model);
  const std::vector<float> whole =
      Logits(ForwardGguf(w, isa, whole_state, prompt, 0, StepKind::kPrompt), vocab);
  std::unique_ptr<LocalRounds> local = *LocalRounds::Create(w, isa, 4);
  for (const std::vector<size_t>& sizes : {std::vector<size_t>{1}, std::vector<size_t>{5, 2}}) {
    const std::string what = GetParam().name + " pieces of " + std::to_string(sizes[0]);
    RunState alone = NewState(*loaded->model);
    ExpectSameBits(pieces(sizes,
                          [&](std::span<const int32_t> t, int32_t pos) {
                            return ForwardGguf(w, isa, alone, t, pos, StepKind::kPrompt);
                          }),
                   whole, what + ", alone");
    RunState rounds = NewState(*loaded->model);
    ExpectSameBits(pieces(sizes,
                          [&](std::span<const int32_t> t, int32_t pos) {
                            return ForwardGgufRounds(w, isa, rounds, t, pos, StepKind::kPrompt,
                                                     *local, nullptr);
                          }),
                   whole, what + ", rounds");
  }
}

struct BatchSetup {
  int threads;
  uint32_t batch_rows;
  uint32_t max_entries;
};

// Every script run alone through the worker's own rounds, then all of them at once on threads of
// their own, batched in one GgufStepCompute for each setup (with three rows of garbage in every
// batch): each session's logits must have the same bits either way. Returns the widest batch.
uint32_t ExpectBatchedAsAlone(const Loaded& loaded, const std::vector<Script>& scripts,
                              std::initializer_list<BatchSetup> setups, const std::string& what) {
  const GgufWeights& w = loaded.weights();
  const KernelIsa isa = BestKernelIsa();
  const int32_t vocab = w.config.vocab_size;
  constexpr uint32_t kMaxRows = 8;
  std::vector<std::vector<std::vector<float>>> alone;
  for (const Script& s : scripts) {
    std::unique_ptr<LocalRounds> local = *LocalRounds::Create(w, isa, kMaxRows);
    RunState state = NewState(*loaded.model);
    alone.push_back(RunScript(s, vocab, [&](auto tokens, int32_t pos) {
      return ForwardGgufRounds(w, isa, state, tokens, pos, KindByCount(tokens.size()), *local,
                               nullptr);
    }));
  }
  uint32_t widest = 0;
  for (auto [threads, batch_rows, max_entries] : setups) {
    std::unique_ptr<GgufStepCompute> compute =
        *GgufStepCompute::Create(w, isa, kMaxRows, batch_rows, max_entries);
    std::unique_ptr<executor::ThreadPool> pool = *executor::ThreadPool::Start(threads);
    ThreadRounds batcher(*compute, *pool, static_cast<int>(scripts.size()), 3);
    std::vector<std::vector<std::vector<float>>> together(scripts.size());
    std::vector<std::thread> sessions;
    for (size_t i = 0; i < scripts.size(); ++i) {
      sessions.emplace_back([&, i] {
        ThreadRounds::Session transport(batcher);
        RunState state = NewState(*loaded.model);
        together[i] = RunScript(scripts[i], vocab, [&](auto tokens, int32_t pos) {
          return ForwardGgufRounds(w, isa, state, tokens, pos, KindByCount(tokens.size()),
                                   transport, nullptr);
        });
        batcher.Done();
      });
    }
    for (std::thread& t : sessions) {
      t.join();
    }
    EXPECT_GT(batcher.widest(), 1U) << "the sessions never shared a batch";
    widest = std::max(widest, batcher.widest());
    for (size_t i = 0; i < scripts.size(); ++i) {
      EXPECT_EQ(together[i].size(), alone[i].size());
      if (together[i].size() != alone[i].size()) continue;
      for (size_t step = 0; step < alone[i].size(); ++step) {
        ExpectSameBits(together[i][step], alone[i][step],
                       what + " threads " + std::to_string(threads) + " entries " +
                           std::to_string(max_entries) + " session " + std::to_string(i) +
                           " step " + std::to_string(step));
      }
    }
  }
  return widest;
}

TEST_P(ExecutorComputeTest, SessionsInBatchesGetTheirOwnBits) {
  const auto loaded = Load(GetParam().spec);
  // Prompts of different lengths (one longer than a chunk) and decode runs of different lengths,
  // so prompts and decode tokens of different sessions meet in the same rounds.
  const std::vector<Script> scripts = {
      {.prompt = {1, 270, 9}, .decode_steps = 7},
      {.prompt = {1, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14}, .decode_steps = 3},
      {.prompt = {1}, .decode_steps = 9},
      {.prompt = {1, 280, 281, 282, 283}, .decode_steps = 5},
      {.prompt = {1, 299}, .decode_steps = 8}};
  // Three thread counts; the third with batches of at most 12 rows, so that a round's sessions
  // are split over several batches; the last with the logits of two entries at a time, so that
  // the classifier takes several passes over a batch's entries.
  ExpectBatchedAsAlone(*loaded, scripts,
                       {BatchSetup{1, 128, UINT32_MAX}, BatchSetup{2, 128, UINT32_MAX},
                        BatchSetup{3, 12, UINT32_MAX}, BatchSetup{2, 128, 2}},
                       GetParam().name);
}

// The sizes: a session alone, in a batch of 2 and in a batch of 64 (all decoding after
// one-token prompts, so that the 64 meet in batches of up to 64 decode rows).
TEST_P(ExecutorComputeTest, TwoOrSixtyFourSessionsGetTheirOwnBits) {
  const auto loaded = Load(GetParam().spec);
  for (int n : {2, 64}) {
    std::vector<Script> scripts;
    scripts.reserve(static_cast<size_t>(n));
    for (int i = 0; i < n; ++i) {
      scripts.push_back({.prompt = {1 + (i * 37) % 290}, .decode_steps = 3 + i % 3});
    }
    const uint32_t widest =
        ExpectBatchedAsAlone(*loaded, scripts, {BatchSetup{2, 512, UINT32_MAX}},
                             GetParam().name + " " + std::to_string(n) + " sessions");
    EXPECT_GE(widest, static_cast<uint32_t>(n)) << "all " << n << " never met in one batch";
  }
}

// A transport that gives up at one round of one step (as a slot whose executor died).
class Failing final : public StepTransport {
 public:
  Failing(StepTransport& inner, int step, uint32_t round)
      : inner_(inner), fail_step_(step), fail_round_(round) {}
  const executor::SlotShape& shape() const override { return inner_.shape(); }
  float* row(uint32_t r) override { return inner_.row(r); }
  const float* final_output() const override { return inner_.final_output(); }
  bool Exchange(uint32_t round, uint32_t rows, executor::RowKind kind, uint32_t flags) override {
    if (round == 0) {
      ++step_;
    }
    if (failed_ || (step_ == fail_step_ && round == fail_round_)) {
      failed_ = true;
      return false;
    }
    return inner_.Exchange(round, rows, kind, flags);
  }
  bool failed() const { return failed_; }

 private:
  StepTransport& inner_;
  int fail_step_;
  uint32_t fail_round_;
  int step_ = 0;
  bool failed_ = false;
};

TEST_P(ExecutorComputeTest, AStepCutShortGoesOnInTheFallbackWithTheSameBits) {
  const auto loaded = Load(GetParam().spec);
  const GgufWeights& w = loaded->weights();
  const KernelIsa isa = BestKernelIsa();
  const int32_t vocab = w.config.vocab_size;
  // A prompt of two chunks, then decode.
  const Script script{.prompt = {1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11}, .decode_steps = 4};
  std::unique_ptr<LocalRounds> reference_rounds = *LocalRounds::Create(w, isa, 8);
  RunState reference_state = NewState(*loaded->model);
  const auto expected = RunScript(script, vocab, [&](auto tokens, int32_t pos) {
    return ForwardGgufRounds(w, isa, reference_state, tokens, pos, KindByCount(tokens.size()),
                             *reference_rounds, nullptr);
  });
  const auto layers = static_cast<uint32_t>(w.config.n_layers);
  // Cut in the prompt's second chunk (step 2 counts chunks), and in a decode step's last round.
  for (auto [step, round] : {std::pair{2, 1U}, std::pair{4, layers}}) {
    std::unique_ptr<LocalRounds> primary = *LocalRounds::Create(w, isa, 8);
    std::unique_ptr<LocalRounds> fallback = *LocalRounds::Create(w, isa, 8);
    Failing failing(*primary, step, round);
    RunState state = NewState(*loaded->model);
    const auto got = RunScript(script, vocab, [&](auto tokens, int32_t pos) {
      return ForwardGgufRounds(w, isa, state, tokens, pos, KindByCount(tokens.size()), failing,
                               fallback.get());
    });
    EXPECT_TRUE(failing.failed());
    for (size_t i = 0; i < expected.size(); ++i) {
      ExpectSameBits(got[i], expected[i],
                     GetParam().name + " cut at step " + std::to_string(step) + " round " +
                         std::to_string(round) + ", step " + std::to_string(i));
    }
  }
  // Without a fallback the caller is told.
  std::unique_ptr<LocalRounds> primary = *LocalRounds::Create(w, isa, 8);
  Failing failing(*primary, 1, 0);
  RunState state = NewState(*loaded->model);
  EXPECT_EQ(ForwardGgufRounds(w, isa, state, script.prompt, 0, StepKind::kPrompt, failing, nullptr),
            nullptr);
}

TEST(ExecutorComputeShapeTest, TheSlotCarriesARowsResidualAndProjections) {
  const auto loaded = Load({.arch = "qwen3", .head_dim = 24, .qk_norm = true});
  const GgufWeights& w = loaded->weights();
  const ModelConfig& c = w.config;
  const executor::SlotShape s = GgufSlotShape(c, 16);
  EXPECT_EQ(s.rounds, static_cast<uint32_t>(c.n_layers) + 1);
  EXPECT_EQ(s.input_row_floats, static_cast<uint32_t>(c.dim + c.q_dim()));
  EXPECT_EQ(s.output_row_floats, static_cast<uint32_t>(c.dim + c.q_dim() + 2 * c.kv_dim()));
  EXPECT_EQ(s.final_floats, static_cast<uint32_t>(c.vocab_size));
  EXPECT_FALSE(GgufStepCompute::Create(w, KernelIsa::kPortable, 0, 16));
  EXPECT_FALSE(GgufStepCompute::Create(w, KernelIsa::kPortable, kMaxBatch + 1, 1024));
  EXPECT_FALSE(GgufStepCompute::Create(w, KernelIsa::kPortable, 16, 8));
  EXPECT_TRUE(GgufStepCompute::Create(w, KernelIsa::kPortable, 16, 16));
}

// A batch whose decode row comes before a prompt's rows: each row's [x | q | k | v] (floats,
// before any rounding to a cache or a logit) is what gguf_steps computes for it in its own kind,
// so the executor gives a prompt's rows their order (Q8_0: kBlockSums) and decode rows theirs,
// wherever they sit in the batch.
TEST(ExecutorComputeKindTest, EachRowGetsItsKindsArithmetic) {
  const auto loaded =
      Load({.arch = "llama", .matrices = TensorType::kQ8_0, .embedding = TensorType::kQ8_0});
  const GgufWeights& w = loaded->weights();
  const ModelConfig& c = w.config;
  const KernelIsa isa = BestKernelIsa();
  constexpr uint32_t kRows = 5;  // one decode row, then a prompt's four
  std::unique_ptr<GgufStepCompute> compute = *GgufStepCompute::Create(w, isa, 8, 16);
  const executor::SlotShape shape = compute->shape();
  std::vector<float> input(static_cast<size_t>(kRows) * shape.input_row_floats);
  for (size_t i = 0; i < input.size(); ++i) {
    input[i] = std::sin(0.37F * static_cast<float>(i)) * 0.8F;
  }
  std::vector<float> output(static_cast<size_t>(kRows) * shape.output_row_floats);
  const std::vector<executor::BatchEntry> entries = {
      {.first_row = 0,
       .rows = 1,
       .kind = executor::RowKind::kDecode,
       .output = output.data(),
       .output_stride_floats = shape.output_row_floats},
      {.first_row = 1,
       .rows = kRows - 1,
       .kind = executor::RowKind::kPrefill,
       .output = output.data() + shape.output_row_floats,
       .output_stride_floats = shape.output_row_floats}};
  std::unique_ptr<executor::ThreadPool> pool = *executor::ThreadPool::Start(2);
  compute->Run({.round = 0,
                .final_round = false,
                .entries = entries,
                .total_rows = kRows,
                .input = input.data()},
               *pool);
  // The same rows through gguf_steps: the decode row alone, the prompt's rows as a prompt.
  const auto row_floats = static_cast<size_t>(std::max(c.dim, c.hidden_dim));
  std::vector<float> x(kRows * row_floats), h(kRows * row_floats), h2(kRows * row_floats),
      q(kRows * row_floats), k(kRows * row_floats), v(kRows * row_floats), gate(kRows * row_floats),
      up(kRows * row_floats);
  std::vector<std::byte> typed(kRows * row_floats * 4);
  std::vector<float> expected(output.size());
  for (auto [first, count, prompt] : {std::tuple{0U, 1U, false}, std::tuple{1U, kRows - 1, true}}) {
    for (uint32_t r = 0; r < count; ++r) {
      std::copy_n(input.data() + static_cast<size_t>(first + r) * shape.input_row_floats, c.dim,
                  x.data() + static_cast<size_t>(r) * static_cast<size_t>(c.dim));
    }
    const gguf_steps::Buffers b{.x = x.data(),
                                .h = h.data(),
                                .h2 = h2.data(),
                                .q = q.data(),
                                .k = k.data(),
                                .v = v.data(),
                                .gate = gate.data(),
                                .up = up.data(),
                                .typed_input = typed.data(),
                                .prompt_rows = prompt ? static_cast<int32_t>(count) : 0};
    gguf_steps::AttentionInputs(w, isa, 0, static_cast<int32_t>(count), b);
    for (uint32_t r = 0; r < count; ++r) {
      const auto row = static_cast<size_t>(r);
      float* out = expected.data() + static_cast<size_t>(first + r) * shape.output_row_floats;
      out = std::copy_n(x.data() + row * static_cast<size_t>(c.dim), c.dim, out);
      out = std::copy_n(q.data() + row * static_cast<size_t>(c.q_dim()), c.q_dim(), out);
      out = std::copy_n(k.data() + row * static_cast<size_t>(c.kv_dim()), c.kv_dim(), out);
      std::copy_n(v.data() + row * static_cast<size_t>(c.kv_dim()), c.kv_dim(), out);
    }
  }
  ExpectSameBits(output, expected, "round 0 of a decode row and a prompt's rows");
}

INSTANTIATE_TEST_SUITE_P(
    Architectures, ExecutorComputeTest,
    ::testing::Values(
        Case{"llama_q8_0",
             {.arch = "llama", .matrices = TensorType::kQ8_0, .embedding = TensorType::kQ8_0}},
        Case{"llama_f16_untied",
             {.arch = "llama", .matrices = TensorType::kF16, .tied = false, .seed = 2}},
        Case{"qwen2_q4_0",
             {.arch = "qwen2", .matrices = TensorType::kQ4_0, .biases = true, .seed = 5}},
        // Heads narrower than the residual stream (q_dim 32 < dim 64): the attention output's
        // rows are q_dim apart, not dim.
        Case{"qwen3_narrow_heads", {.arch = "qwen3", .head_dim = 8, .qk_norm = true, .seed = 7}},
        Case{"qwen3_q4_k",
             {.arch = "qwen3",
              .dim = 256,
              .hidden = 256,
              .heads = 4,
              .kv_heads = 2,
              .matrices = TensorType::kQ4_K,
              .qk_norm = true,
              .seed = 3}},
        // Q4_K_M files keep some matrices in Q6_K: its batch tiles too.
        Case{"llama_q6_k",
             {.arch = "llama",
              .dim = 256,
              .hidden = 256,
              .heads = 4,
              .kv_heads = 2,
              .matrices = TensorType::kQ6_K,
              .seed = 13}}),
    [](const ::testing::TestParamInfo<Case>& param) { return param.param.name; });

}  // namespace
}  // namespace cellhouse::engine
