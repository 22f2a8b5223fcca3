// A conversation's steps through the shared executor (engine/shared_step_path.h): a real
// executor process (the BatchLoop over GgufStepCompute, two threads) serves the slot; the
// session gets, at every step, exactly the logits its own process computes, and keeps getting
// them after the executor is killed mid-conversation (it fails over to its own rounds).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <bit>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <variant>
#include <vector>

#include "base/clock.h"
#include "base/process.h"
#include "engine/executor_compute.h"
#include "engine/executor_rounds.h"
#include "engine/model.h"
#include "engine/shared_step_path.h"
#include "executor/batch_loop.h"
#include "executor/slot_client.h"
#include "executor/slot_layout.h"
#include "executor/slot_memory.h"
#include "executor/thread_pool.h"
#include "tests/engine/gguf_test_models.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

constexpr uint32_t kMaxRows = 8;
constexpr uint64_t kSlotId = 7;

// Serves `slot` from a forked process until killed. With `solo`, the executor lets a lone session
// decode in its own process (ExecutorOptions::solo); without, every step comes to it.
ChildProcess StartExecutor(const GgufWeights& w, const executor::SlotMemory& slot,
                           bool solo = false, const executor::SlotMemory* second = nullptr) {
  const pid_t pid = ::fork();
  if (pid == 0) {
    auto compute = GgufStepCompute::Create(w, BestKernelIsa(), kMaxRows, 64);
    auto pool = executor::ThreadPool::Start(2);
    if (!compute || !pool) ::_exit(2);
    executor::ExecutorOptions options;
    options.solo = solo;
    auto loop = executor::BatchLoop::Create(**compute, **pool, options);
    if (!loop || !(*loop)->RegisterLiveness()) ::_exit(3);
    if (!(*loop)->AddSlot(kSlotId, UniqueFd(::fcntl(slot.fd().get(), F_DUPFD_CLOEXEC, 0)))) {
      ::_exit(4);
    }
    if (second != nullptr &&
        !(*loop)->AddSlot(kSlotId + 1, UniqueFd(::fcntl(second->fd().get(), F_DUPFD_CLOEXEC, 0)))) {
      ::_exit(4);
    }
    while ((*loop)->RunOnce({}, MonotonicNanos() + 50 * kNanosPerMilli)) {
    }
    ::_exit(5);  // its sleep failed
  }
  Result<ChildProcess> child = ChildProcess::FromPid(pid);
  EXPECT_TRUE(child) << child.error().message();
  return std::move(*child);
}

std::vector<float> Copy(const float* p, int32_t n) { return {p, p + n}; }

void ExpectSameBits(const std::vector<float>& a, const std::vector<float>& b, int step) {
  ASSERT_EQ(a.size(), b.size());
  for (size_t i = 0; i < a.size(); ++i) {
    ASSERT_EQ(std::bit_cast<uint32_t>(a[i]), std::bit_cast<uint32_t>(b[i]))
        << "step " << step << ", logit " << i;
  }
}

// Every step's logits, bit for bit.
void ExpectSameSteps(const std::vector<std::vector<float>>& got,
                     const std::vector<std::vector<float>>& expected) {
  ASSERT_EQ(got.size(), expected.size());
  for (size_t i = 0; i < expected.size(); ++i) {
    ExpectSameBits(got[i], expected[i], static_cast<int>(i));
  }
}

class SharedStepPathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    const std::string path = dir_.File("m.gguf");
    ASSERT_TRUE(testing::MakeGgufModel({.matrices = TensorType::kQ8_0}, nullptr).WriteFile(path));
    Result<Model> model = Model::Open(path);
    ASSERT_TRUE(model) << model.error().message();
    model_.emplace(std::move(*model));
  }
  const GgufWeights& weights() const { return std::get<GgufWeights>(model_->weights()); }
  RunState NewState() const {
    return *RunState::Create(model_->config(), 64, model_->kv_precision());
  }

  // Each step's logits: a prompt of 11 tokens (two chunks), then `decode` tokens, a turn ending
  // after the third; `before` and `after` (if any) are called around each decode step s.
  std::vector<std::vector<float>> Run(StepPath& path, int decode,
                                      const std::function<void(int s)>& before = {},
                                      const std::function<void(int s)>& after = {}) {
    RunState state = NewState();
    const int32_t vocab = model_->config().vocab_size;
    const std::vector<int32_t> prompt = {1, 5, 260, 7, 8, 299, 10, 11, 12, 13, 14};
    std::vector<std::vector<float>> out;
    out.push_back(Copy(path.Forward(state, prompt, 0, StepKind::kPrompt), vocab));
    for (int s = 0; s < decode; ++s) {
      if (before) before(s);
      const int32_t next = (31 * s + 17) % vocab;
      out.push_back(Copy(path.Forward(state, std::span(&next, 1),
                                      static_cast<int32_t>(prompt.size()) + s, StepKind::kDecode),
                         vocab));
      if (after) after(s);
      if (s == 2) path.TurnEnded();  // a turn boundary in the middle
    }
    return out;
  }

  // The same steps through the session's own rounds.
  std::vector<std::vector<float>> Alone(int decode) {
    class Own final : public StepPath {
     public:
      Own(const GgufWeights& w)
          : w_(w), local_(*LocalRounds::Create(w, BestKernelIsa(), kMaxRows)) {}
      const float* Forward(RunState& s, std::span<const int32_t> t, int32_t pos,
                           StepKind kind) override {
        return ForwardGgufRounds(w_, BestKernelIsa(), s, t, pos, kind, *local_, nullptr);
      }

     private:
      const GgufWeights& w_;
      std::unique_ptr<LocalRounds> local_;
    } own(weights());
    return Run(own, decode);
  }

  cellhouse::testing::TempDir dir_;
  std::optional<Model> model_;
};

TEST_F(SharedStepPathTest, StepsThroughTheExecutorGiveTheSessionsOwnBits) {
  const auto expected = Alone(6);
  auto slot = executor::SlotMemory::Create(GgufSlotShape(model_->config(), kMaxRows));
  ASSERT_TRUE(slot) << slot.error().message();
  ChildProcess executor = StartExecutor(weights(), *slot);
  auto path = MakeSharedStepPath(*model_, slot->worker_view());
  ASSERT_TRUE(path && *path) << (path ? "no path" : path.error().message());
  auto* shared = static_cast<SharedStepPath*>(path->get());
  const auto got = Run(*shared, 6);
  // Every exchange was answered by the executor: the client never failed over.
  EXPECT_TRUE(shared->shared()) << executor::FailoverReasonName(shared->failover_reason());
  EXPECT_EQ(shared->solo_steps(), 0u);
  ExpectSameSteps(got, expected);
  EXPECT_TRUE(executor.Kill(SIGKILL));
}

// Alone, a session's prompt goes to the executor and its decode steps stay in its own process,
// with the same bits; the slot stays shared for when another session comes.
TEST_F(SharedStepPathTest, ALoneSessionDecodesInItsOwnProcessWithTheSameBits) {
  const auto expected = Alone(6);
  auto slot = executor::SlotMemory::Create(GgufSlotShape(model_->config(), kMaxRows));
  ASSERT_TRUE(slot) << slot.error().message();
  ChildProcess executor = StartExecutor(weights(), *slot, /*solo=*/true);
  auto path = MakeSharedStepPath(*model_, slot->worker_view());
  ASSERT_TRUE(path && *path);
  auto* shared = static_cast<SharedStepPath*>(path->get());
  const auto got = Run(*shared, 6);
  EXPECT_TRUE(shared->shared()) << executor::FailoverReasonName(shared->failover_reason());
  // The prompt's answer comes after the executor told the slot it is alone: the three decode
  // steps after it are solo. The turn ends (Idle) after the third; the fourth goes solo if its
  // worker reads the word before the executor takes the Idle, else to the executor, which tells
  // it again; the last two are solo.
  EXPECT_GE(shared->solo_steps(), 5u);
  EXPECT_LE(shared->solo_steps(), 6u);
  ExpectSameSteps(got, expected);
  EXPECT_TRUE(executor.Kill(SIGKILL));
}

// A solo session rejoins the executor's batches when another session becomes busy, and goes solo
// again when that one ends its turn; every step keeps the session's own bits.
TEST_F(SharedStepPathTest, ASoloSessionRejoinsWhenAnotherIsBusyAndLeavesWhenItIsDone) {
  const auto expected = Alone(6);
  const executor::SlotShape shape = GgufSlotShape(model_->config(), kMaxRows);
  auto slot = executor::SlotMemory::Create(shape);
  auto other = executor::SlotMemory::Create(shape);
  ASSERT_TRUE(slot && other);
  ChildProcess executor = StartExecutor(weights(), *slot, /*solo=*/true, &*other);
  auto path = MakeSharedStepPath(*model_, slot->worker_view());
  ASSERT_TRUE(path && *path);
  auto* shared = static_cast<SharedStepPath*>(path->get());
  executor::SlotClient neighbour(other->worker_view());
  const executor::SlotHeader* h = executor::HeaderOf(slot->worker_view().base);
  auto alone_becomes = [h](uint32_t want) {
    for (int i = 0; i < 5000 && h->alone.load() != want; ++i) ::usleep(1000);
    return h->alone.load() == want;
  };
  // Solo for steps 0-1; the neighbour busy for 2-3 (the turn that ends after step 2 leaves the
  // session with nobody's word that it is alone); idle again for 4-5.
  const std::vector<uint64_t> solo_after = {1, 2, 2, 2, 3, 4};
  const auto got = Run(
      *shared, 6,
      [&](int s) {
        if (s == 2) {
          neighbour.Solo();  // busy: the session is not alone any more
          EXPECT_TRUE(alone_becomes(0));
        }
        if (s == 4) {
          neighbour.Idle();
          EXPECT_TRUE(alone_becomes(1));
        }
      },
      [&](int s) {
        EXPECT_EQ(shared->solo_steps(), solo_after[static_cast<size_t>(s)]) << "after step " << s;
      });
  EXPECT_TRUE(shared->shared()) << executor::FailoverReasonName(shared->failover_reason());
  ExpectSameSteps(got, expected);
  EXPECT_TRUE(executor.Kill(SIGKILL));
}

TEST_F(SharedStepPathTest, AKilledExecutorCostsNoToken) {
  const auto expected = Alone(6);
  auto slot = executor::SlotMemory::Create(GgufSlotShape(model_->config(), kMaxRows));
  ASSERT_TRUE(slot) << slot.error().message();
  ChildProcess executor = StartExecutor(weights(), *slot);
  auto path =
      MakeSharedStepPath(*model_, slot->worker_view(),
                         {.response_timeout_ns = 5'000'000'000, .liveness_check_ns = 1'000'000});
  ASSERT_TRUE(path && *path);
  auto* shared = static_cast<SharedStepPath*>(path->get());
  const auto got = Run(*shared, 6, [&executor](int s) {
    if (s != 3) return;
    EXPECT_TRUE(executor.Kill(SIGKILL));
    EXPECT_TRUE(executor.Wait());
  });
  EXPECT_FALSE(shared->shared());
  EXPECT_EQ(shared->failover_reason(), executor::FailoverReason::kExecutorGone);
  ExpectSameSteps(got, expected);
}

// The executor killed in the middle of a decode step (between two of its rounds, in a real
// executor process): the interrupted token restarts at round 0 in the worker's own rounds, and
// every step keeps the bits the session computes alone.
TEST_F(SharedStepPathTest, AnExecutorKilledMidStepRestartsTheTokenInTheWorker) {
  const auto expected = Alone(6);
  auto slot = executor::SlotMemory::Create(GgufSlotShape(model_->config(), kMaxRows));
  ASSERT_TRUE(slot) << slot.error().message();
  ChildProcess executor = StartExecutor(weights(), *slot);
  executor::SlotClient client(
      slot->worker_view(), {.response_timeout_ns = 5'000'000'000, .liveness_check_ns = 1'000'000});
  SlotRounds rounds(client);
  // Kills the executor just before round kRound of the decode step kStep is sent.
  constexpr int kStep = 3;
  constexpr uint32_t kRound = 2;
  class KillingRounds final : public StepTransport {
   public:
    KillingRounds(StepTransport& inner, ChildProcess& executor)
        : inner_(inner), executor_(executor) {}
    const executor::SlotShape& shape() const override { return inner_.shape(); }
    float* row(uint32_t r) override { return inner_.row(r); }
    const float* final_output() const override { return inner_.final_output(); }
    bool Exchange(uint32_t round, uint32_t rows, executor::RowKind kind,
                  uint32_t step_flags) override {
      if (step == kStep && round == kRound) {
        EXPECT_TRUE(executor_.Kill(SIGKILL));
        EXPECT_TRUE(executor_.Wait());
      }
      const bool ok = inner_.Exchange(round, rows, kind, step_flags);
      if (!ok && failed_at_round < 0) failed_at_round = static_cast<int>(round);
      return ok;
    }
    int step = -1;  // the decode step under way (-1: the prompt)
    int failed_at_round = -1;

   private:
    StepTransport& inner_;
    ChildProcess& executor_;
  };
  KillingRounds killing(rounds, executor);
  std::unique_ptr<LocalRounds> local = *LocalRounds::Create(weights(), BestKernelIsa(), kMaxRows);
  class KillingPath final : public StepPath {
   public:
    KillingPath(const GgufWeights& w, KillingRounds& rounds, LocalRounds& local)
        : w_(w), rounds_(rounds), local_(local) {}
    const float* Forward(RunState& s, std::span<const int32_t> t, int32_t pos,
                         StepKind kind) override {
      return ForwardGgufRounds(w_, BestKernelIsa(), s, t, pos, kind, rounds_, &local_);
    }

   private:
    const GgufWeights& w_;
    KillingRounds& rounds_;
    LocalRounds& local_;
  };
  KillingPath path(weights(), killing, *local);
  const auto got = Run(path, 6, [&killing](int s) { killing.step = s; });
  EXPECT_EQ(killing.failed_at_round, static_cast<int>(kRound)) << "it failed over mid-step";
  EXPECT_EQ(client.failover_reason(), executor::FailoverReason::kExecutorGone);
  ExpectSameSteps(got, expected);
}

TEST_F(SharedStepPathTest, NoSlotOrAnotherModelsSlot) {
  auto none = MakeSharedStepPath(*model_, executor::WorkerSlot{});
  ASSERT_TRUE(none);
  EXPECT_EQ(*none, nullptr);  // computes alone
  executor::SlotShape other = GgufSlotShape(model_->config(), kMaxRows);
  other.final_floats += 1;
  auto slot = executor::SlotMemory::Create(other);
  ASSERT_TRUE(slot);
  auto refused = MakeSharedStepPath(*model_, slot->worker_view());
  ASSERT_FALSE(refused);
  EXPECT_NE(refused.error().message().find("does not fit this model"), std::string::npos);
}

}  // namespace
}  // namespace cellhouse::engine
