// Malformed files: a generated corpus of truncated and lying checkpoints and tokenizers must be
// refused with a message naming the file — never a crash or a read past the input (the ASan
// build runs this).
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "tests/engine/test_models.h"
#include "worker/engine/checkpoint.h"
#include "worker/engine/generator.h"
#include "worker/engine/model.h"
#include "worker/engine/tokenizer.h"

namespace cellhouse::engine {
namespace {

using ::testing::HasSubstr;

ModelConfig SmallConfig() {
  return {.dim = 16,
          .hidden_dim = 24,
          .n_layers = 2,
          .n_heads = 2,
          .n_kv_heads = 1,
          .vocab_size = 8,
          .seq_len = 8,
          .shared_classifier = false};
}

std::vector<std::byte> SmallCheckpoint() { return *GenerateModel(SmallConfig(), 1); }

void SetInt(std::vector<std::byte>& bytes, size_t offset, int32_t value) {
  std::memcpy(bytes.data() + offset, &value, sizeof(value));
}

// Parses a copy of `bytes` in an exactly-sized heap buffer, so ASan sees any overread.
Result<ModelWeights> ParseExact(const std::vector<std::byte>& bytes) {
  return ParseCheckpoint(bytes, "corpus.bin");
}

void ExpectWithin(const ModelWeights& w, const std::vector<std::byte>& bytes) {
  const auto* begin = reinterpret_cast<const float*>(bytes.data());
  const auto* end = reinterpret_cast<const float*>(bytes.data() + bytes.size());
  for (std::span<const float> t : {w.token_embedding, w.rms_att, w.wq, w.wk, w.wv, w.wo, w.rms_ffn,
                                   w.w1, w.w2, w.w3, w.rms_final, w.classifier}) {
    EXPECT_GE(t.data(), begin);
    EXPECT_LE(t.data() + t.size(), end);
  }
}

TEST(MalformedCheckpointTest, TheGeneratedFileParses) {
  std::vector<std::byte> bytes = SmallCheckpoint();
  Result<ModelWeights> w = ParseExact(bytes);
  ASSERT_TRUE(w) << w.error().message();
  EXPECT_EQ(w->config, SmallConfig());
  ExpectWithin(*w, bytes);
}

TEST(MalformedCheckpointTest, EveryTruncationIsRefused) {
  const std::vector<std::byte> full = SmallCheckpoint();
  for (size_t len = 0; len < full.size(); len += (len < 64 || len + 64 > full.size()) ? 1 : 13) {
    std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(len));
    Result<ModelWeights> w = ParseExact(cut);
    ASSERT_FALSE(w) << "accepted a file cut to " << len << " bytes";
    EXPECT_THAT(w.error().message(), HasSubstr("'corpus.bin'"));
  }
}

TEST(MalformedCheckpointTest, TrailingDataIsRefused) {
  std::vector<std::byte> bytes = SmallCheckpoint();
  bytes.resize(bytes.size() + 4);
  Result<ModelWeights> w = ParseExact(bytes);
  ASSERT_FALSE(w);
  EXPECT_THAT(w.error().message(), HasSubstr("trailing data"));
}

TEST(MalformedCheckpointTest, LyingHeaderFieldsAreRefusedOrStayInBounds) {
  const std::vector<std::byte> full = SmallCheckpoint();
  const int32_t values[] = {0, -1, -2,  -16,     1,       2,         3,         7,
                            9, 17, 255, 1 << 16, 1 << 30, INT32_MAX, INT32_MIN, INT32_MIN + 1};
  for (size_t field = 0; field < 7; ++field) {
    for (int32_t v : values) {
      std::vector<std::byte> bytes = full;
      SetInt(bytes, field * 4, v);
      Result<ModelWeights> w = ParseExact(bytes);
      if (w) {
        // Only a lie that happens to describe the same number of floats may pass, and then every
        // view must still be inside the buffer.
        ExpectWithin(*w, bytes);
      } else {
        EXPECT_THAT(w.error().message(), HasSubstr("reading checkpoint 'corpus.bin'"));
      }
    }
  }
}

TEST(MalformedCheckpointTest, SpecificLiesHaveSpecificMessages) {
  struct Case {
    std::vector<int32_t> header;
    std::string message;
  };
  const std::vector<Case> cases = {
      {{0, 24, 2, 2, 1, 8, 8}, "dim is 0"},
      {{16, -24, 2, 2, 1, 8, 8}, "hidden_dim is -24"},
      {{16, 24, 2, 3, 1, 8, 8}, "not a multiple of n_heads"},
      {{16, 24, 2, 2, 3, 8, 8}, "does not divide n_heads"},
      {{18, 24, 2, 2, 1, 8, 8}, "odd"},  // head size 9
      {{16, 24, 2, 2, 1, INT32_MIN, 8}, "INT32_MIN"},
      {{1 << 30, INT32_MAX, INT32_MAX, 2, 1, 8, 8}, "overflows 64 bits"},
      {{1 << 10, 1 << 10, 1 << 10, 2, 1, 8, 8}, "implies"},
  };
  for (const Case& c : cases) {
    std::vector<std::byte> bytes = SmallCheckpoint();
    for (size_t i = 0; i < 7; ++i) {
      SetInt(bytes, i * 4, c.header[i]);
    }
    Result<ModelWeights> w = ParseExact(bytes);
    ASSERT_FALSE(w) << c.message;
    EXPECT_THAT(w.error().message(), HasSubstr(c.message));
  }
}

TEST(MalformedCheckpointTest, ModelOpenNamesThePath) {
  cellhouse::testing::TempDir dir;
  EXPECT_THAT(Model::Open(dir.File("missing.bin")).error().message(), HasSubstr("missing.bin"));
  EXPECT_THAT(Model::Open(dir.path()).error().message(), HasSubstr("not a regular file"));
  testing::WriteBytes(dir.File("empty.bin"), {});
  EXPECT_THAT(Model::Open(dir.File("empty.bin")).error().message(), HasSubstr("empty"));
  std::vector<std::byte> cut = SmallCheckpoint();
  cut.resize(cut.size() / 2);
  testing::WriteBytes(dir.File("cut.bin"), cut);
  EXPECT_THAT(Model::Open(dir.File("cut.bin")).error().message(),
              HasSubstr("reading checkpoint '" + dir.File("cut.bin") + "'"));
}

constexpr int32_t kVocab = 400;

std::vector<std::byte> SmallTokenizer() { return *GenerateTokenizer(kVocab, 1); }

void ExpectTokenizerRefused(const std::vector<std::byte>& bytes, int32_t vocab,
                            const std::string& message) {
  Result<Tokenizer> t = Tokenizer::Parse(bytes, vocab, "tok.bin");
  ASSERT_FALSE(t) << "accepted: " << message;
  EXPECT_THAT(t.error().message(), HasSubstr("reading tokenizer 'tok.bin'"));
  EXPECT_THAT(t.error().message(), HasSubstr(message));
}

TEST(MalformedTokenizerTest, EveryTruncationIsRefused) {
  const std::vector<std::byte> full = SmallTokenizer();
  ASSERT_TRUE(Tokenizer::Parse(full, kVocab, "tok.bin"));
  for (size_t len = 0; len < full.size(); len += (len < 64 || len + 64 > full.size()) ? 1 : 7) {
    std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(len));
    Result<Tokenizer> t = Tokenizer::Parse(cut, kVocab, "tok.bin");
    ASSERT_FALSE(t) << "accepted a tokenizer cut to " << len << " bytes";
    EXPECT_THAT(t.error().message(), HasSubstr("'tok.bin'"));
  }
}

TEST(MalformedTokenizerTest, LiesAreRefused) {
  const std::vector<std::byte> full = SmallTokenizer();
  ExpectTokenizerRefused(full, kVocab + 1, "ends in the record of piece 400");
  ExpectTokenizerRefused(full, kVocab - 1, "bytes follow the last");
  ExpectTokenizerRefused(full, 0, "vocab_size 0");
  ExpectTokenizerRefused(full, -5, "vocab_size -5");
  for (int32_t max_len : {0, -1, INT32_MIN, INT32_MAX, (1 << 16) + 1}) {
    std::vector<std::byte> bytes = full;
    SetInt(bytes, 0, max_len);
    ExpectTokenizerRefused(bytes, kVocab, "max_token_length");
  }
  // The first record (piece 0, "<unk>") starts at byte 4: score, then length.
  for (int32_t len : {-1, INT32_MIN, 1 << 15, INT32_MAX}) {
    std::vector<std::byte> bytes = full;
    SetInt(bytes, 8, len);
    ExpectTokenizerRefused(bytes, kVocab, "piece 0 claims");
  }
  std::vector<std::byte> nan = full;
  const float qnan = __builtin_nanf("");
  std::memcpy(nan.data() + 4, &qnan, sizeof(qnan));
  ExpectTokenizerRefused(nan, kVocab, "NaN");
  // A piece longer than max_token_length (the header understates it).
  std::vector<std::byte> small_max = full;
  SetInt(small_max, 0, 2);
  ExpectTokenizerRefused(small_max, kVocab, "max_token_length is 2");
}

TEST(MalformedTokenizerTest, EveryLengthFieldLieIsRefusedOrInBounds) {
  const std::vector<std::byte> full = SmallTokenizer();
  // Walk the records and overwrite each length with values around and far from the truth.
  size_t pos = 4;
  for (int32_t i = 0; i < kVocab; ++i) {
    int32_t len = 0;
    std::memcpy(&len, full.data() + pos + 4, 4);
    for (int32_t lie : {len + 1, len - 1, len + 1000, -len - 1}) {
      std::vector<std::byte> bytes = full;
      SetInt(bytes, pos + 4, lie);
      Result<Tokenizer> t = Tokenizer::Parse(bytes, kVocab, "tok.bin");
      if (t) {
        for (int32_t id = 0; id < kVocab; ++id) {
          static_cast<void>(t->Piece(id).size());
        }
      }
    }
    pos += 8 + static_cast<size_t>(len);
  }
}

}  // namespace
}  // namespace cellhouse::engine
