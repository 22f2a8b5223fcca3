// The GGUF reader (engine/formats/gguf.h) and writer: every value type round-trips, typed
// accessors refuse the wrong type by name, and corrupted files (truncated, tensor past the end,
// misaligned, overlapping, huge counts, unknown or unsupported types, dims that do not fit the
// type) are refused with a message naming the key or tensor — never a crash or an overread (the
// ASan build runs this; every buffer parsed is an exactly-sized heap copy).
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/mapping.h"
#include "engine/formats/gguf.h"
#include "engine/formats/gguf_writer.h"
#include "engine/kernels/tensor_type.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

std::vector<std::byte> Zeros(size_t n) { return std::vector<std::byte>(n); }

// A small valid file: a few keys of each kind and three tensors of different types.
GgufWriter SmallWriter() {
  GgufWriter w;
  w.SetString("general.architecture", "llama");
  w.SetUint32("llama.block_count", 2);
  w.SetFloat32("llama.attention.layer_norm_rms_epsilon", 1e-5F);
  w.SetBool("tokenizer.ggml.add_bos_token", true);
  const std::vector<std::string> tokens = {"<unk>", "<s>", "</s>", "\xE2\x96\x81hi"};
  w.SetStringArray("tokenizer.ggml.tokens", tokens);
  const std::vector<float> scores = {0.0F, -1.5F, 2.25F, 3.0F};
  w.SetFloat32Array("tokenizer.ggml.scores", scores);
  const std::vector<int32_t> types = {2, 3, 3, 1};
  w.SetInt32Array("tokenizer.ggml.token_type", types);
  w.AddTensor("token_embd.weight", TensorType::kQ8_0, {64, 4}, Zeros(size_t{4} * 2 * 34));
  w.AddTensor("output_norm.weight", TensorType::kF32, {64}, Zeros(size_t{64} * 4));
  w.AddTensor("blk.0.attn_q.weight", TensorType::kQ4_K, {256, 3}, Zeros(size_t{3} * 144));
  return w;
}

std::vector<std::byte> SmallFile() { return *SmallWriter().Serialize(); }

Result<GgufFile> ParseCopy(const std::vector<std::byte>& bytes) {
  return GgufFile::Parse(bytes, "t.gguf");
}

// The message of a refusal; fails the test if the file was accepted.
std::string Refusal(const std::vector<std::byte>& bytes) {
  Result<GgufFile> g = ParseCopy(bytes);
  if (g) {
    ADD_FAILURE() << "accepted a corrupted file";
    return "";
  }
  EXPECT_THAT(g.error().message(), HasSubstr("'t.gguf'"));
  return g.error().message();
}

// Where a tensor's info starts after its name: the u32 n_dims.
size_t InfoAfterName(const std::vector<std::byte>& bytes, std::string_view name) {
  for (size_t i = 8; i + name.size() <= bytes.size(); ++i) {
    uint64_t len = 0;
    std::memcpy(&len, bytes.data() + i - 8, 8);
    if (len == name.size() && std::memcmp(bytes.data() + i, name.data(), name.size()) == 0) {
      return i + name.size();
    }
  }
  ADD_FAILURE() << "no tensor info named " << name;
  return 0;
}

template <typename T>
void Put(std::vector<std::byte>& bytes, size_t at, T value) {
  std::memcpy(bytes.data() + at, &value, sizeof(T));
}
template <typename T>
T Get(const std::vector<std::byte>& bytes, size_t at) {
  T value;
  std::memcpy(&value, bytes.data() + at, sizeof(T));
  return value;
}

// Offsets within a 2-dim tensor's info, counted from InfoAfterName.
constexpr size_t kDim0 = 4, kDim1 = 12, kType2 = 20, kOffset2 = 24;

TEST(GgufTest, ValuesAndTensorsRoundTrip) {
  const std::vector<std::byte> bytes = SmallFile();
  Result<GgufFile> g = ParseCopy(bytes);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->version(), 3U);
  EXPECT_EQ(g->alignment(), 32U);
  EXPECT_EQ(g->data_offset() % 32, 0U);
  EXPECT_EQ(*g->GetString("general.architecture"), "llama");
  EXPECT_EQ(*g->GetUint32("llama.block_count"), 2U);
  EXPECT_EQ(*g->GetUint64("llama.block_count"), 2U);
  EXPECT_EQ(*g->GetInt64("llama.block_count"), 2);
  EXPECT_FLOAT_EQ(*g->GetFloat32("llama.attention.layer_norm_rms_epsilon"), 1e-5F);
  EXPECT_TRUE(*g->GetBool("tokenizer.ggml.add_bos_token"));
  EXPECT_THAT(*g->GetStringArray("tokenizer.ggml.tokens"),
              ElementsAre("<unk>", "<s>", "</s>", "\xE2\x96\x81hi"));
  EXPECT_THAT(*g->GetFloat32Array("tokenizer.ggml.scores"), ElementsAre(0.0F, -1.5F, 2.25F, 3.0F));
  EXPECT_THAT(*g->GetInt32Array("tokenizer.ggml.token_type"), ElementsAre(2, 3, 3, 1));
  EXPECT_EQ(*g->GetUint32Or("llama.context_length", 77), 77U);
  EXPECT_EQ(*g->GetFloat32Or("llama.rope.freq_base", 1e4F), 1e4F);
  EXPECT_FALSE(*g->GetBoolOr("absent", false));
  ASSERT_EQ(g->metadata().size(), 7U);
  EXPECT_EQ(g->metadata()[0].key, "general.architecture");

  ASSERT_EQ(g->tensors().size(), 3U);
  const GgufTensor* q = g->FindTensor("blk.0.attn_q.weight");
  ASSERT_NE(q, nullptr);
  EXPECT_EQ(q->type, TensorType::kQ4_K);
  EXPECT_EQ(q->cols(), 256U);
  EXPECT_EQ(q->rows(), 3U);
  EXPECT_EQ(q->bytes, 3U * 144);
  EXPECT_EQ(q->offset % 32, 0U);
  EXPECT_EQ(q->data.data(), bytes.data() + q->offset);
  EXPECT_EQ(q->Describe(), "'blk.0.attn_q.weight' (q4_K [256, 3])");
  EXPECT_EQ(g->FindTensor("output.weight"), nullptr);
  const GgufTensor* norm = g->FindTensor("output_norm.weight");
  ASSERT_NE(norm, nullptr);
  EXPECT_EQ(norm->n_dims, 1U);
  EXPECT_EQ(norm->rows(), 1U);
}

TEST(GgufTest, EveryScalarTypeAndNestedArrays) {
  GgufWriter w(64);
  auto raw = [](auto value) {
    std::vector<std::byte> out(sizeof(value));
    std::memcpy(out.data(), &value, sizeof(value));
    return out;
  };
  w.SetRaw("u8", GgufType::kUint8, raw(uint8_t{200}));
  w.SetRaw("i8", GgufType::kInt8, raw(int8_t{-5}));
  w.SetRaw("u16", GgufType::kUint16, raw(uint16_t{60000}));
  w.SetRaw("i16", GgufType::kInt16, raw(int16_t{-300}));
  w.SetRaw("i32", GgufType::kInt32, raw(int32_t{-70000}));
  w.SetRaw("u64", GgufType::kUint64, raw(uint64_t{1} << 40));
  w.SetRaw("i64", GgufType::kInt64, raw(int64_t{-1} << 40));
  w.SetRaw("f64", GgufType::kFloat64, raw(2.5));
  // [[1, 2], [], [3]] as arrays of uint16 inside an array of arrays.
  std::vector<std::byte> nested = raw(static_cast<uint32_t>(GgufType::kArray));
  auto add = [&nested](const std::vector<std::byte>& more) {
    nested.insert(nested.end(), more.begin(), more.end());
  };
  add(raw(uint64_t{3}));
  for (const std::vector<uint16_t>& inner : std::vector<std::vector<uint16_t>>{{1, 2}, {}, {3}}) {
    add(raw(static_cast<uint32_t>(GgufType::kUint16)));
    add(raw(uint64_t{inner.size()}));
    for (uint16_t v : inner) {
      add(raw(v));
    }
  }
  w.SetRaw("nested", GgufType::kArray, nested);
  std::vector<std::byte> strings = raw(static_cast<uint32_t>(GgufType::kString));
  strings.resize(strings.size() + 8);  // count 0
  w.SetRaw("empty_strings", GgufType::kArray, strings);
  const std::vector<std::byte> bytes = *w.Serialize();
  Result<GgufFile> g = ParseCopy(bytes);
  ASSERT_TRUE(g) << g.error().message();
  EXPECT_EQ(g->alignment(), 64U);
  EXPECT_EQ(*g->GetUint32("u8"), 200U);
  EXPECT_EQ(*g->GetInt64("i8"), -5);
  EXPECT_EQ(*g->GetUint32("u16"), 60000U);
  EXPECT_EQ(*g->GetInt64("i16"), -300);
  EXPECT_EQ(*g->GetInt64("i32"), -70000);
  EXPECT_EQ(*g->GetUint64("u64"), uint64_t{1} << 40);
  EXPECT_EQ(*g->GetInt64("i64"), int64_t{-1} << 40);
  EXPECT_EQ(*g->GetFloat32("f64"), 2.5F);
  EXPECT_TRUE(g->GetStringArray("empty_strings")->empty());
  const GgufValue* n = g->Find("nested");
  ASSERT_NE(n, nullptr);
  EXPECT_EQ(n->Describe(), "array of 3 array");
  std::vector<GgufValue> outer = n->Elements();
  ASSERT_EQ(outer.size(), 3U);
  std::vector<std::vector<uint64_t>> seen;
  for (const GgufValue& inner : outer) {
    seen.emplace_back();
    for (const GgufValue& e : inner.Elements()) {
      seen.back().push_back(*e.AsUint64());
    }
  }
  EXPECT_EQ(seen, (std::vector<std::vector<uint64_t>>{{1, 2}, {}, {3}}));
  // Values that do not fit are refused by the getter, naming the key.
  EXPECT_THAT(g->GetUint32("i8").error().message(), HasSubstr("key 'i8' is a int8"));
  EXPECT_THAT(g->GetUint32("u64").error().message(), HasSubstr("key 'u64'"));
}

TEST(GgufTest, WrongTypesAndMissingKeysAreNamed) {
  const std::vector<std::byte> bytes = SmallFile();
  Result<GgufFile> g = ParseCopy(bytes);
  ASSERT_TRUE(g);
  EXPECT_THAT(g->GetUint32("general.architecture").error().message(),
              HasSubstr("key 'general.architecture' is a string (string 'llama'), expected an "
                        "integer"));
  EXPECT_THAT(g->GetString("llama.block_count").error().message(),
              HasSubstr("key 'llama.block_count' is a uint32 (uint32 2), expected a string"));
  EXPECT_THAT(g->GetFloat32("tokenizer.ggml.add_bos_token").error().message(),
              HasSubstr("expected a float"));
  EXPECT_THAT(g->GetStringArray("tokenizer.ggml.scores").error().message(),
              HasSubstr("key 'tokenizer.ggml.scores' is an array of float32"));
  EXPECT_THAT(g->GetInt32Array("tokenizer.ggml.tokens").error().message(),
              HasSubstr("expected an array of integers"));
  EXPECT_THAT(g->GetUint32("llama.context_length").error().message(),
              HasSubstr("the required key 'llama.context_length' is missing"));
  EXPECT_THAT(g->GetUint32Or("general.architecture", 1).error().message(),
              HasSubstr("'general.architecture'"));
}

TEST(GgufTest, EveryTruncationIsRefused) {
  const std::vector<std::byte> full = SmallFile();
  // The padding after the last tensor's data is not needed: cut there, the file is whole.
  const Result<GgufFile> parsed = ParseCopy(full);
  ASSERT_TRUE(parsed);
  const GgufTensor& last = parsed->tensors().back();
  const size_t end = last.offset + last.bytes;
  ASSERT_LT(end, full.size());
  ASSERT_TRUE(ParseCopy(std::vector<std::byte>(full.begin(), full.begin() + end)));
  for (size_t len = 0; len < end; ++len) {
    std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(len));
    Result<GgufFile> g = ParseCopy(cut);
    ASSERT_FALSE(g) << "accepted a file cut to " << len << " of " << full.size() << " bytes";
  }
  std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<std::ptrdiff_t>(end) - 1);
  EXPECT_THAT(Refusal(cut), HasSubstr("tensor 'blk.0.attn_q.weight' (q4_K [256, 3])"));
  EXPECT_THAT(Refusal(cut), HasSubstr("past the end of the"));
}

TEST(GgufTest, HeaderProblems) {
  std::vector<std::byte> bytes = SmallFile();
  std::vector<std::byte> bad = bytes;
  bad[0] = std::byte{'X'};
  EXPECT_THAT(Refusal(bad), HasSubstr("magic"));
  bad = bytes;
  Put<uint32_t>(bad, 4, 1);
  EXPECT_THAT(Refusal(bad), HasSubstr("version 1"));
  Put<uint32_t>(bad, 4, 0x03000000U);
  EXPECT_THAT(Refusal(bad), HasSubstr("big-endian"));
  Put<uint32_t>(bad, 4, 4);
  EXPECT_THAT(Refusal(bad), HasSubstr("unknown GGUF version 4"));
  bad = bytes;
  Put<uint32_t>(bad, 4, 2);  // version 2 has the same layout
  EXPECT_TRUE(ParseCopy(bad));
  bad = bytes;
  Put<uint64_t>(bad, 8, uint64_t{1} << 60);  // tensors
  EXPECT_THAT(Refusal(bad), HasSubstr("claims 1152921504606846976 tensors"));
  bad = bytes;
  Put<uint64_t>(bad, 16, ~uint64_t{0});  // metadata entries
  EXPECT_THAT(Refusal(bad), HasSubstr("metadata entries"));
}

TEST(GgufTest, HugeLengthsAndCountsAreRefusedBeforeUse) {
  std::vector<std::byte> bytes = SmallFile();
  // The first key's length.
  std::vector<std::byte> bad = bytes;
  Put<uint64_t>(bad, 24, uint64_t{1} << 62);
  EXPECT_THAT(Refusal(bad), HasSubstr("claims 4611686018427387904 bytes"));
  // The token array's count.
  const std::string_view key = "tokenizer.ggml.tokens";
  size_t at = 0;
  for (size_t i = 0; i + key.size() < bytes.size(); ++i) {
    if (std::memcmp(bytes.data() + i, key.data(), key.size()) == 0) {
      at = i + key.size();
      break;
    }
  }
  ASSERT_NE(at, 0U);
  bad = bytes;
  Put<uint64_t>(bad, at + 8, uint64_t{1} << 58);  // after the value type and element type
  EXPECT_THAT(Refusal(bad), HasSubstr("key 'tokenizer.ggml.tokens': an array of "
                                      "288230376151711744 string cannot fit"));
  bad = bytes;
  Put<uint32_t>(bad, at + 4, 13);  // element type
  EXPECT_THAT(Refusal(bad), HasSubstr("unknown value type 13"));
  bad = bytes;
  Put<uint32_t>(bad, at, 99);  // value type
  EXPECT_THAT(Refusal(bad), HasSubstr("key 'tokenizer.ggml.tokens': unknown value type 99"));
}

TEST(GgufTest, BadValues) {
  GgufWriter w;
  w.SetRaw("flag", GgufType::kBool, {std::byte{2}});
  EXPECT_THAT(Refusal(*w.Serialize()), HasSubstr("key 'flag': a bool is 2"));

  GgufWriter twice;
  twice.SetUint32("a", 1);
  twice.SetRaw("b", GgufType::kUint32, Zeros(4));
  std::vector<std::byte> bytes = *twice.Serialize();
  bytes[24 + 8 + 1 + 4 + 4 + 8] = std::byte{'a'};  // rename "b" to "a"
  EXPECT_THAT(Refusal(bytes), HasSubstr("key 'a' appears twice"));

  GgufWriter deep;
  std::vector<std::byte> nested;
  for (int i = 0; i <= kGgufMaxArrayDepth; ++i) {
    std::vector<std::byte> level(12);
    Put<uint32_t>(level, 0, static_cast<uint32_t>(GgufType::kArray));
    Put<uint64_t>(level, 4, 1);
    nested.insert(nested.end(), level.begin(), level.end());
  }
  std::vector<std::byte> innermost(12);
  Put<uint32_t>(innermost, 0, static_cast<uint32_t>(GgufType::kUint8));
  nested.insert(nested.end(), innermost.begin(), innermost.end());
  deep.SetRaw("deep", GgufType::kArray, nested);
  EXPECT_THAT(Refusal(*deep.Serialize()), HasSubstr("nested more than 8 deep"));

  GgufWriter align;
  align.SetUint32("general.alignment", 48);
  EXPECT_THAT(Refusal(*align.Serialize()), HasSubstr("'general.alignment' is 48, not a power"));
  GgufWriter align_type;
  align_type.SetUint64("general.alignment", 32);
  EXPECT_THAT(Refusal(*align_type.Serialize()), HasSubstr("expected a uint32"));
}

TEST(GgufTest, TensorProblemsNameTheTensor) {
  const std::vector<std::byte> bytes = SmallFile();
  const size_t q = InfoAfterName(bytes, "blk.0.attn_q.weight");
  std::vector<std::byte> bad = bytes;
  Put<uint32_t>(bad, q + kType2, 42);
  EXPECT_THAT(Refusal(bad), HasSubstr("tensor 'blk.0.attn_q.weight' has type id 42, which ggml "
                                      "does not define"));
  Put<uint32_t>(bad, q + kType2, static_cast<uint32_t>(TensorType::kQ2_K));
  EXPECT_THAT(Refusal(bad), HasSubstr("tensor 'blk.0.attn_q.weight' has type q2_K, which "
                                      "cellhouse does not support (supported: f32, f16, q4_0"));
  Put<uint32_t>(bad, q + kType2, static_cast<uint32_t>(TensorType::kQ8_K));
  EXPECT_THAT(Refusal(bad), HasSubstr("has type q8_K"));

  bad = bytes;
  Put<uint64_t>(bad, q + kDim0, 250);  // not a multiple of q4_K's 256
  EXPECT_THAT(Refusal(bad), HasSubstr("tensor 'blk.0.attn_q.weight' has rows of 250 values, not "
                                      "a whole number of q4_K's blocks of 256"));
  bad = bytes;
  Put<uint64_t>(bad, q + kDim1, 0);
  EXPECT_THAT(Refusal(bad), HasSubstr("has a zero dimension [256, 0]"));
  bad = bytes;
  Put<uint64_t>(bad, q + kDim1, uint64_t{1} << 60);
  EXPECT_THAT(Refusal(bad), HasSubstr("is too large"));
  bad = bytes;
  Put<uint64_t>(bad, q + kDim1, 1000);
  EXPECT_THAT(Refusal(bad), HasSubstr("tensor 'blk.0.attn_q.weight' (q4_K [256, 1000]) "
                                      "(144000 bytes at data offset"));
  bad = bytes;
  Put<uint32_t>(bad, q, 5);  // n_dims
  EXPECT_THAT(Refusal(bad), HasSubstr("has 5 dimensions (must be 1..4)"));

  bad = bytes;
  Put<uint64_t>(bad, q + kOffset2, Get<uint64_t>(bytes, q + kOffset2) + 4);
  EXPECT_THAT(Refusal(bad), HasSubstr("not a multiple of the alignment 32"));
  bad = bytes;
  Put<uint64_t>(bad, q + kOffset2, ~uint64_t{0} - 31);
  EXPECT_THAT(Refusal(bad), HasSubstr("past the end"));
  // The q4_K tensor moved onto the embedding's bytes.
  bad = bytes;
  Put<uint64_t>(bad, q + kOffset2, 0);
  EXPECT_THAT(Refusal(bad), HasSubstr("overlaps tensor"));

  // A duplicate name.
  GgufWriter twice;
  twice.AddTensor("a.weight", TensorType::kF32, {8}, Zeros(32));
  twice.AddTensor("a.weight", TensorType::kF32, {8}, Zeros(32));
  EXPECT_THAT(Refusal(*twice.Serialize()), HasSubstr("tensor 'a.weight' appears twice"));
}

TEST(GgufTest, WriterRefusesDataOfTheWrongSize) {
  GgufWriter w;
  w.AddTensor("x", TensorType::kQ8_0, {32, 2}, Zeros(67));
  Result<std::vector<std::byte>> bytes = w.Serialize();
  ASSERT_FALSE(bytes);
  EXPECT_THAT(bytes.error().message(), HasSubstr("tensor 'x' has 67 bytes of data, expected 68"));
}

TEST(GgufTest, TheSharedReferenceFilesParse) {
  for (const char* name :
       {"llama-spm-Q8_0.gguf", "llama-spm-Q4_K_M.gguf", "llama-spm-Q4_0.gguf", "qwen2-spm-F16.gguf",
        "qwen2-spm-Q8_0.gguf", "llama3-vocab-Q8_0.gguf", "qwen-vocab-Q8_0.gguf"}) {
    std::optional<std::string> path =
        cellhouse::testing::SharedModelPath(std::string("gguf/") + name);
    if (!path) {
      GTEST_SKIP() << "../shared/models/gguf absent: skipping the reference files";
    }
    Result<Mapping> mapping = Mapping::MapFile(path->c_str());
    ASSERT_TRUE(mapping) << mapping.error().message();
    Result<GgufFile> g = GgufFile::Parse(mapping->bytes(), name);
    ASSERT_TRUE(g) << g.error().message();
    EXPECT_TRUE(g->GetString("general.architecture"));
    EXPECT_TRUE(g->GetStringArray("tokenizer.ggml.tokens")) << name;
    EXPECT_NE(g->FindTensor("token_embd.weight"), nullptr) << name;
  }
}

}  // namespace
}  // namespace cellhouse::engine
