// Model: the read-only shared mapping, its chunks, residency, prefault, prefetch and lock; the
// config helpers; RunState sizing; the generator's presets.
#include <sys/resource.h>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "engine/formats/generator.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

using ::testing::HasSubstr;

TEST(ModelConfigTest, HelpersAndDescription) {
  ModelConfig c = *PresetConfig("110m");
  EXPECT_EQ(c.Describe(),
            "dim 768, hidden 2048, 12 layers, 12 heads (12 kv), vocab 32000, seq 1024, shared "
            "classifier");
  EXPECT_EQ(c.head_size(), 64);
  EXPECT_EQ(c.kv_dim(), 768);
  // llama2.c's stories15M: 15,191,712 parameters (without the unused RoPE tables).
  EXPECT_EQ(PresetConfig("15m")->ParameterCount(), 15191712U);
  ModelConfig b = *PresetConfig("1b");
  EXPECT_LT(b.n_kv_heads, b.n_heads);
  EXPECT_EQ(b.kv_dim(), 256);
  EXPECT_FALSE(PresetConfig("2b"));
  for (std::string_view name : PresetNames()) {
    EXPECT_TRUE(PresetConfig(name)->Validate());
  }
  ModelConfig huge = c;
  huge.dim = huge.hidden_dim = huge.n_layers = INT32_MAX - 1;
  huge.n_heads = huge.n_kv_heads = 1;
  EXPECT_EQ(huge.ParameterCount(), UINT64_MAX);
}

TEST(RunStateTest, SizesFollowTheConfig) {
  ModelConfig c = testing::TinyConfig();
  EXPECT_EQ(KvCacheBytesPerToken(c, KvPrecision::kF32),
            sizeof(float) * 2 * c.n_layers * c.kv_dim());
  EXPECT_EQ(KvCacheBytesPerToken(c, KvPrecision::kF16),
            sizeof(uint16_t) * 2 * c.n_layers * c.kv_dim());
  EXPECT_GT(StateFixedBytes(c), static_cast<uint64_t>(kMaxBatch) * c.hidden_dim * 4);
  EXPECT_FALSE(RunState::Create(c, 0, KvPrecision::kF32));
  EXPECT_FALSE(RunState::Create(c, c.seq_len + 1, KvPrecision::kF16));
  const size_t last = static_cast<size_t>(c.n_layers) * c.seq_len * c.kv_dim() - 1;
  Result<RunState> s = RunState::Create(c, c.seq_len, KvPrecision::kF32);
  ASSERT_TRUE(s);
  EXPECT_EQ(s->context_length(), c.seq_len);
  EXPECT_EQ(s->kv_precision(), KvPrecision::kF32);
  EXPECT_EQ(s->key_cache_half, nullptr);
  // The last cache row is writable (inside the allocation).
  s->value_cache[last] = 1.0F;
  Result<RunState> h = RunState::Create(c, c.seq_len, KvPrecision::kF16);
  ASSERT_TRUE(h);
  EXPECT_EQ(h->kv_precision(), KvPrecision::kF16);
  EXPECT_EQ(h->key_cache, nullptr);
  EXPECT_EQ(h->value_cache, nullptr);
  h->value_cache_half[last] = 0x3C00;  // 1.0
  h->kv_new[2 * static_cast<size_t>(kMaxBatch) * c.kv_dim() - 1] = 1.0F;
}

TEST(RunStateTest, UntouchedCachePagesCostNothing) {
  // A long context whose KV cache is far larger than everything else.
  ModelConfig c = {.dim = 256,
                   .hidden_dim = 512,
                   .n_layers = 4,
                   .n_heads = 4,
                   .n_kv_heads = 4,
                   .vocab_size = 512,
                   .seq_len = 4096,
                   .shared_classifier = true};
  Result<RunState> s = RunState::Create(c, c.seq_len, KvPrecision::kF32);
  ASSERT_TRUE(s);
  const uint64_t cache =
      KvCacheBytesPerToken(c, KvPrecision::kF32) * static_cast<uint64_t>(c.seq_len);
  EXPECT_GE(s->ReservedBytes(), cache);
  Result<uint64_t> resident = s->ResidentBytes();
  ASSERT_TRUE(resident) << resident.error().message();
  EXPECT_LT(*resident, cache / 16) << "a fresh state should touch almost nothing";
  // Writing the keys of the first 10 positions touches about that many rows' pages per layer.
  for (int32_t l = 0; l < c.n_layers; ++l) {
    for (int32_t pos = 0; pos < 10; ++pos) {
      s->key_cache[(static_cast<size_t>(l) * c.seq_len + pos) * c.kv_dim()] = 1.0F;
    }
  }
  EXPECT_LT(*s->ResidentBytes(), cache / 16);
}

TEST(RunStateTest, AStepPopulatesToTheEndOfItsLastBlock) {
  static_assert(kKvPadding == 32);
  // A prompt: its positions and on to the end of the last one's block, within the capacity.
  EXPECT_EQ(PositionsToPopulate(0, 40, 1024).to, 64);
  EXPECT_EQ(PositionsToPopulate(40, 24, 1024).from, 40);
  EXPECT_EQ(PositionsToPopulate(40, 24, 1024).to, 64);
  EXPECT_EQ(PositionsToPopulate(1000, 24, 1024).to, 1024);
  EXPECT_EQ(PositionsToPopulate(0, 40, 50).to, 50);
  // Decode: a block's first token populates the block; the others nothing.
  EXPECT_EQ(PositionsToPopulate(64, 1, 1024).to, 96);
  EXPECT_EQ(PositionsToPopulate(65, 1, 1024).to, 65);
  EXPECT_EQ(PositionsToPopulate(65, 1, 1024).from, 65);
}

TEST(RunStateTest, BothCachesAreWholeApartAndWritable) {
  ModelConfig c = testing::TinyConfig();
  for (KvPrecision precision : {KvPrecision::kF16, KvPrecision::kF32}) {
    Result<RunState> s = RunState::Create(c, c.seq_len, precision);
    ASSERT_TRUE(s) << s.error().message();
    const auto* values = precision == KvPrecision::kF16
                             ? static_cast<const void*>(s->value_cache_half)
                             : static_cast<const void*>(s->value_cache);
    const auto* keys = precision == KvPrecision::kF16 ? static_cast<const void*>(s->key_cache_half)
                                                      : static_cast<const void*>(s->key_cache);
    const size_t count = static_cast<size_t>(c.n_layers) * s->kv_capacity() * c.kv_dim();
    const size_t bytes = count * (precision == KvPrecision::kF16 ? 2 : 4);
    EXPECT_GE(static_cast<const std::byte*>(values), static_cast<const std::byte*>(keys) + bytes);
    if (precision == KvPrecision::kF16) {
      s->key_cache_half[count - 1] = 0x3C00;
      s->value_cache_half[count - 1] = 0x3C00;
      EXPECT_EQ(s->key_cache_half[count - 1], 0x3C00);
    } else {
      s->key_cache[count - 1] = 1.0F;
      s->value_cache[count - 1] = 1.0F;
      EXPECT_EQ(s->key_cache[count - 1], 1.0F);
    }
  }
}

class ModelTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Over two chunks: a 1.5-chunk model (dim 512, 8 layers of 512x512 and 512x768 matrices).
    config_ = {.dim = 512,
               .hidden_dim = 768,
               .n_layers = 8,
               .n_heads = 8,
               .n_kv_heads = 8,
               .vocab_size = 512,
               .seq_len = 64,
               .shared_classifier = true};
    files_ = testing::WriteModelFiles(dir_, config_, 1);
  }
  cellhouse::testing::TempDir dir_;
  ModelConfig config_;
  testing::ModelFiles files_;
};

TEST_F(ModelTest, OpensAndDescribesChunks) {
  Result<Model> m = Model::Open(files_.model);
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->config(), config_);
  EXPECT_EQ(m->Describe(), config_.Describe());
  const size_t size = m->bytes().size();
  EXPECT_EQ(size, ComputeLayout(config_)->file_bytes);
  EXPECT_GT(size, kModelChunkBytes);
  EXPECT_EQ(m->ChunkCount(), (size + kModelChunkBytes - 1) / kModelChunkBytes);
  EXPECT_TRUE(m->Prefetch(0));
  EXPECT_TRUE(m->Prefetch(m->ChunkCount() - 1));
  EXPECT_THAT(m->Prefetch(m->ChunkCount()).error().message(), HasSubstr("no chunk"));
  EXPECT_FALSE(m->ChunkResidentBytes(m->ChunkCount()));
  // Views point into the mapping.
  ASSERT_EQ(m->format(), WeightFormat::kF32);
  EXPECT_EQ(reinterpret_cast<const std::byte*>(
                std::get<ModelWeights>(m->weights()).token_embedding.data()),
            m->bytes().data() + kCheckpointHeaderBytes);
  // Moving the model keeps the views valid.
  const float* wq = std::get<ModelWeights>(m->weights()).wq.data();
  Model moved = std::move(*m);
  EXPECT_EQ(std::get<ModelWeights>(moved.weights()).wq.data(), wq);
  EXPECT_EQ(std::get<ModelWeights>(moved.weights()).wq[0], wq[0]);
}

TEST_F(ModelTest, PrefaultMakesEveryPageResident) {
  Model m = *Model::Open(files_.model);
  ASSERT_TRUE(m.Prefault());
  Result<uint64_t> resident = m.ResidentBytes();
  ASSERT_TRUE(resident) << resident.error().message();
  EXPECT_EQ(*resident, m.bytes().size());
  uint64_t sum = 0;
  for (size_t i = 0; i < m.ChunkCount(); ++i) {
    sum += *m.ChunkResidentBytes(i);
  }
  EXPECT_EQ(sum, m.bytes().size());
}

// The VmFlags line of the mapping that starts at `address` in /proc/self/smaps, or "" if none.
std::string VmFlagsOfMappingAt(const void* address) {
  char start[32];
  static_cast<void>(
      std::snprintf(start, sizeof(start), "%lx-", reinterpret_cast<uintptr_t>(address)));
  Result<std::vector<std::string>> fields =
      testing::SmapsFields([&start](std::string_view h) { return h.starts_with(start); });
  for (const std::string& line : fields ? *fields : std::vector<std::string>{}) {
    if (line.starts_with("VmFlags:")) {
      return line;
    }
  }
  return "";
}

// Decode streams the weights from huge pages where the kernel can give them (model.cc): the
// mapping must carry MADV_HUGEPAGE ("hg" in VmFlags) before anything faults it in.
TEST_F(ModelTest, AsksForHugePagesWhereTheKernelHasThem) {
  Result<std::string> thp = ReadFileToString("/sys/kernel/mm/transparent_hugepage/enabled", 4096);
  if (!thp || thp->find("[never]") != std::string::npos) {
    GTEST_SKIP() << "transparent huge pages are off or absent in this kernel";
  }
  Model m = *Model::Open(files_.model);
  const std::string flags = VmFlagsOfMappingAt(m.bytes().data());
  ASSERT_FALSE(flags.empty()) << "no mapping at the model's address in /proc/self/smaps";
  EXPECT_THAT(flags + " ", HasSubstr(" hg ")) << flags;
}

TEST_F(ModelTest, LockSucceedsWithinTheLimitOrSaysWhatToDo) {
  Model m = *Model::Open(files_.model);
  rlimit lim{};
  ASSERT_EQ(getrlimit(RLIMIT_MEMLOCK, &lim), 0);
  Status locked = m.Lock();
  if (lim.rlim_cur != RLIM_INFINITY && lim.rlim_cur < m.bytes().size() && geteuid() != 0) {
    ASSERT_FALSE(locked);
    EXPECT_THAT(locked.error().message(), HasSubstr("RLIMIT_MEMLOCK"));
  } else {
    EXPECT_TRUE(locked) << locked.error().message();
    EXPECT_EQ(*m.ResidentBytes(), m.bytes().size());
  }
}

TEST(GeneratorTest, SameSeedSameBytesAndZeroSpecialRows) {
  ModelConfig c = testing::TinyConfig();
  std::vector<std::byte> a = *GenerateModel(c, 9);
  EXPECT_EQ(a, *GenerateModel(c, 9));
  EXPECT_NE(a, *GenerateModel(c, 10));
  ModelWeights w = *ParseCheckpoint(a, "generated");
  for (int32_t token : {kBosToken, kEosToken}) {
    for (int32_t i = 0; i < c.dim; ++i) {
      EXPECT_EQ(w.classifier[static_cast<size_t>(token) * c.dim + i], 0.0F);
    }
  }
  ModelConfig bad = c;
  bad.n_kv_heads = 3;
  EXPECT_FALSE(GenerateModel(bad, 1));
  cellhouse::testing::TempDir dir;
  EXPECT_FALSE(WriteModel(c, 1, dir.File("no/such/dir/m.bin")));
}

}  // namespace
}  // namespace cellhouse::engine
