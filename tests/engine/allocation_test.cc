// No allocation per generated token: the global operator new of this test binary counts calls,
// and the count must not move between the first and the last token of a turn.
#include <atomic>
#include <cstdlib>
#include <new>

#include <gtest/gtest.h>

#include "engine/conversation.h"
#include "tests/engine/test_models.h"

namespace {
// The one piece of global mutable state in the tests: replacing operator new is the only way to
// observe every allocation. Relaxed ordering: the counted code runs on this thread.
std::atomic<uint64_t> g_allocations{0};
}  // namespace

void* operator new(size_t size) {
  g_allocations.fetch_add(1, std::memory_order_relaxed);
  if (void* p = std::malloc(size == 0 ? 1 : size)) {
    return p;
  }
  throw std::bad_alloc();
}
void operator delete(void* p) noexcept { std::free(p); }
void operator delete(void* p, size_t /*size*/) noexcept { std::free(p); }

namespace cellhouse::engine {
namespace {

void DecodeWithoutAllocating(const testing::ModelFiles& files) {
  Model model = std::move(Model::Open(files.model).value());
  Tokenizer tok = std::move(Tokenizer::Open(files.tokenizer, model.config().vocab_size).value());
  for (MatVecKernel kernel : {MatVecKernel::kOpenBlas, MatVecKernel::kAuto}) {
    Conversation chat =
        std::move(Conversation::Create(model, tok, 128, {.matvec = kernel}).value());
    for (float temperature : {0.0F, 0.9F}) {
      uint64_t at_first = 0;
      uint64_t at_last = 0;
      int tokens = 0;
      Result<Conversation::TurnStats> stats =
          chat.Turn("Once upon a time", {.max_new_tokens = 40, .temperature = temperature},
                    [&](int32_t, std::string_view) {
                      at_last = g_allocations.load(std::memory_order_relaxed);
                      if (++tokens == 1) {
                        at_first = at_last;
                      }
                      return true;
                    });
      ASSERT_TRUE(stats) << stats.error().message();
      ASSERT_EQ(tokens, 40);
      EXPECT_EQ(at_last, at_first) << "allocations during decoding, " << files.model << ", kernel "
                                   << MatVecKernelName(kernel) << ", temperature " << temperature;
    }
  }
}

// fp32 and int8 models alike.
TEST(AllocationTest, DecodingAllocatesNothing) {
  cellhouse::testing::TempDir dir;
  for (const testing::ModelFiles& files :
       {testing::WriteModelFiles(dir, testing::TinyConfig(), 2),
        testing::WriteQuantizedModelFiles(dir, testing::TinyConfig(), 3)}) {
    DecodeWithoutAllocating(files);
  }
}

}  // namespace
}  // namespace cellhouse::engine
