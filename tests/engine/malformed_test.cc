// Malformed files: a generated corpus of truncated and lying checkpoints and tokenizers must be
// refused with a message naming the file — never a crash or a read past the input (the ASan
// build runs this).
#include <climits>
#include <cstring>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "engine/formats/checkpoint.h"
#include "engine/formats/generator.h"
#include "engine/formats/quantize.h"
#include "engine/formats/quantized_checkpoint.h"
#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/test_models.h"

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

// The same model quantized: lies about version, kind, group size, flags, reserved bytes and the
// recorded size join the fp32 format's.
std::vector<std::byte> SmallQuantized(bool shared, int32_t group_size) {
  ModelConfig config = SmallConfig();
  config.shared_classifier = shared;
  const std::vector<std::byte> fp32 = *GenerateModel(config, 1);
  return *QuantizeModel(*ParseCheckpoint(fp32, "fp32"), {.group_size = group_size});
}

Result<QuantizedWeights> ParseQuantizedExact(const std::vector<std::byte>& bytes) {
  return ParseQuantizedCheckpoint(bytes, "corpus.q8");
}

void ExpectWithin(const QuantizedWeights& w, const std::vector<std::byte>& bytes) {
  const std::byte* begin = bytes.data();
  const std::byte* end = bytes.data() + bytes.size();
  for (const Q8Tensor* t :
       {&w.token_embedding, &w.wq, &w.wk, &w.wv, &w.wo, &w.w1, &w.w2, &w.w3, &w.classifier}) {
    EXPECT_GE(t->Span().data(), begin);
    EXPECT_LE(t->Span().data() + t->Span().size(), end);
    EXPECT_EQ(t->Span().size(), *t->shape.Bytes() * static_cast<size_t>(t->layers));
  }
  for (std::span<const float> t : {w.rms_att, w.rms_ffn, w.rms_final}) {
    EXPECT_GE(reinterpret_cast<const std::byte*>(t.data()), begin);
    EXPECT_LE(reinterpret_cast<const std::byte*>(t.data() + t.size()), end);
  }
}

TEST(MalformedQuantizedTest, TheQuantizedFilesParse) {
  for (bool shared : {true, false}) {
    for (int32_t group_size : {32, 64}) {
      std::vector<std::byte> bytes = SmallQuantized(shared, group_size);
      Result<QuantizedWeights> w = ParseQuantizedExact(bytes);
      ASSERT_TRUE(w) << w.error().message();
      ModelConfig expected = SmallConfig();
      expected.shared_classifier = shared;
      EXPECT_EQ(w->config, expected);
      EXPECT_EQ(w->group_size, group_size);
      ExpectWithin(*w, bytes);
      EXPECT_EQ(bytes.size() % kQuantizedAlignment, 0U);
      // Every tensor starts on a 64-byte boundary of the file.
      const QuantizedLayout layout = *ComputeQuantizedLayout(expected, group_size);
      for (const QuantizedLayout::Section& section : layout.sections) {
        EXPECT_EQ(section.offset % kQuantizedAlignment, 0U);
      }
    }
  }
}

TEST(MalformedQuantizedTest, EveryTruncationAndTrailingDataIsRefused) {
  const std::vector<std::byte> full = SmallQuantized(false, 32);
  for (size_t len = 0; len < full.size(); len += (len < 80 || len + 80 > full.size()) ? 1 : 29) {
    std::vector<std::byte> cut(full.begin(), full.begin() + static_cast<ptrdiff_t>(len));
    Result<QuantizedWeights> w = ParseQuantizedExact(cut);
    ASSERT_FALSE(w) << "accepted a file cut to " << len << " bytes";
    EXPECT_THAT(w.error().message(), HasSubstr("'corpus.q8'"));
  }
  std::vector<std::byte> longer = full;
  longer.resize(longer.size() + 64);
  EXPECT_THAT(ParseQuantizedExact(longer).error().message(), HasSubstr("(trailing data)"));
}

TEST(MalformedQuantizedTest, EveryHeaderWordLieIsRefusedOrStaysInBounds) {
  const std::vector<std::byte> full = SmallQuantized(true, 32);
  const int32_t values[] = {0,  -1, 1,   2,   3,       7,       16,        31,        32,
                            33, 64, 255, 576, 1 << 16, 1 << 30, INT32_MAX, INT32_MIN, 2 << 20};
  for (size_t offset = 4; offset < kQuantizedHeaderBytes; offset += 4) {
    for (int32_t v : values) {
      std::vector<std::byte> bytes = full;
      SetInt(bytes, offset, v);
      Result<QuantizedWeights> w = ParseQuantizedExact(bytes);
      if (w) {
        ExpectWithin(*w, bytes);
      } else {
        EXPECT_THAT(w.error().message(), HasSubstr("reading quantized checkpoint 'corpus.q8'"));
      }
    }
  }
}

TEST(MalformedQuantizedTest, SpecificLiesHaveSpecificMessages) {
  struct Case {
    size_t offset;
    int32_t value;
    std::string message;
  };
  const std::vector<Case> cases = {
      {0, 0x38514843 + 1, "does not start with the magic"},
      {4, 2, "format version 2 is not supported (this build reads version 1)"},
      {4, 0, "format version 0 is not supported"},
      {8, 2, "quantization kind 2 is unknown"},
      {12, 48, "group size 48 is not 32 or 64"},
      {12, 0, "group size 0 is not 32 or 64"},
      {16, 0, "dim is 0"},
      {16, 18, "odd"},
      {36, -8, "vocab_size is -8, must be positive"},
      {44, 2, "unknown flags 2"},
      {44, 1, "the header records"},  // a separate classifier would make the file longer
      {48, 64, "the header records 64 bytes"},
      {52, 1, "the header records"},
      {56, 1, "reserved header byte 56 is not zero"},
      {60, 1 << 24, "reserved header byte 63 is not zero"},
  };
  for (const Case& c : cases) {
    std::vector<std::byte> bytes = SmallQuantized(true, 32);
    SetInt(bytes, c.offset, c.value);
    Result<QuantizedWeights> w = ParseQuantizedExact(bytes);
    ASSERT_FALSE(w) << c.message;
    EXPECT_THAT(w.error().message(), HasSubstr(c.message));
  }
  // A shape that overflows when the tiles are counted, recorded size and all.
  std::vector<std::byte> huge = SmallQuantized(true, 32);
  for (int32_t i : {16, 20, 24}) {
    SetInt(huge, static_cast<size_t>(i), 1 << 30);
  }
  SetInt(huge, 28, 2);
  SetInt(huge, 32, 2);
  EXPECT_THAT(ParseQuantizedExact(huge).error().message(), HasSubstr("overflows 64 bits"));
}

TEST(MalformedQuantizedTest, ModelOpenTellsTheFormatsApartAndNamesThePath) {
  cellhouse::testing::TempDir dir;
  std::vector<std::byte> cut = SmallQuantized(true, 64);
  cut.resize(cut.size() - 64);
  testing::WriteBytes(dir.File("cut.q8"), cut);
  EXPECT_THAT(Model::Open(dir.File("cut.q8")).error().message(),
              HasSubstr("reading quantized checkpoint '" + dir.File("cut.q8") + "'"));
  // Three bytes of the magic are not the format: the fp32 parser refuses it.
  std::vector<std::byte> three(cut.begin(), cut.begin() + 3);
  testing::WriteBytes(dir.File("three.bin"), three);
  EXPECT_THAT(Model::Open(dir.File("three.bin")).error().message(),
              HasSubstr("reading checkpoint '"));
  const std::vector<std::byte> whole = SmallQuantized(true, 64);
  testing::WriteBytes(dir.File("whole.q8"), whole);
  Result<Model> m = Model::Open(dir.File("whole.q8"));
  ASSERT_TRUE(m) << m.error().message();
  EXPECT_EQ(m->format(), WeightFormat::kQ8);
  EXPECT_EQ(m->group_size(), 64);
  EXPECT_THAT(m->Describe(), HasSubstr(", int8 weights in groups of 64"));
}

// Corrupted weights cannot be told from real ones (neither format has a checksum), but they must
// not make the engine read out of bounds: the kernels index by shape alone. Every byte of the
// tensor data, flipped in turn (in a few passes), then a short forward pass under ASan.
TEST(MalformedQuantizedTest, CorruptedTensorBytesStillRunInBounds) {
  const std::vector<std::byte> full = SmallQuantized(false, 32);
  const Kernels k = SelectKernels(MatVecKernel::kAuto);
  const std::vector<int32_t> tokens = {1, 5, 7};
  for (size_t stride : {977U, 61U}) {
    std::vector<std::byte> bytes = full;
    for (size_t i = kQuantizedHeaderBytes; i < bytes.size(); i += stride) {
      bytes[i] = ~bytes[i];
    }
    Result<QuantizedWeights> w = ParseQuantizedExact(bytes);
    ASSERT_TRUE(w) << w.error().message();
    RunState state = *RunState::Create(w->config, w->config.seq_len, KvPrecision::kF16);
    static_cast<void>(Forward(*w, k, state, tokens, 0));
    static_cast<void>(Forward(*w, k, state, std::span(tokens).first(1), 3));
  }
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
  size_t accepted = 0;
  for (int32_t i = 0; i < kVocab; ++i) {
    int32_t len = 0;
    std::memcpy(&len, full.data() + pos + 4, 4);
    for (int32_t lie : {len + 1, len - 1, len + 1000, -len - 1}) {
      std::vector<std::byte> bytes = full;
      SetInt(bytes, pos + 4, lie);
      Result<Tokenizer> t = Tokenizer::Parse(bytes, kVocab, "tok.bin");
      if (!t) {
        // Refused: the message names the file (and the reader never read past its end).
        EXPECT_THAT(t.error().message(), HasSubstr("'tok.bin'")) << "piece " << i << " lie " << lie;
        continue;
      }
      // Accepted (the lie happened to frame the same bytes differently): every piece must be
      // within the header's bound, and the records together exactly the file, no byte beyond it.
      ++accepted;
      size_t framed = 4;
      for (int32_t id = 0; id < kVocab; ++id) {
        const size_t piece = t->Piece(id).size();
        EXPECT_LE(piece, static_cast<size_t>(t->max_token_length())) << "piece " << id;
        framed += 8 + piece;
      }
      EXPECT_EQ(framed, bytes.size()) << "piece " << i << " lie " << lie;
    }
    pos += 8 + static_cast<size_t>(len);
  }
  // A length lie shifts every later record: almost all must be refused outright.
  EXPECT_LT(accepted, static_cast<size_t>(kVocab)) << "lies were accepted wholesale";
}

}  // namespace
}  // namespace cellhouse::engine
