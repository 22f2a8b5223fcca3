// Tokenizer: llama2.c's encode/decode semantics, and round trips on ASCII and UTF-8 text with
// the generated tokenizer and with the Llama 2 and 512-piece tokenizers in ../shared/models.
#include <map>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/strings.h"
#include "engine/formats/generator.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

const std::vector<std::string>& Texts() {
  static const std::vector<std::string> kTexts = {
      "Once upon a time, there was a little dog named Sam.",
      "  leading spaces, trailing ones  ",
      "Tabs\tand\nnewlines\r\nand {braces} [brackets] ~!@#$%^&*()_+",
      "Café crème brûlée — naïve",
      "你好，世界",
      "Emoji 😀 and 🐶!",  // 4-byte sequences
      "x",
  };
  return kTexts;
}

// Concatenates the raw pieces, as a client receiving them would.
std::string DecodeAll(const Tokenizer& tok, const std::vector<int32_t>& ids) {
  std::string text;
  for (size_t i = 1; i < ids.size(); ++i) {
    text += tok.Decode(ids[i - 1], ids[i]);
  }
  return text;
}

void ExpectRoundTrips(const Tokenizer& tok) {
  for (const std::string& text : Texts()) {
    Result<std::vector<int32_t>> ids = tok.Encode(text, {.add_bos = true});
    ASSERT_TRUE(ids) << ids.error().message();
    ASSERT_FALSE(ids->empty());
    EXPECT_EQ(ids->front(), kBosToken);
    for (int32_t id : *ids) {
      EXPECT_GE(id, 0);
      EXPECT_LT(id, tok.vocab_size());
    }
    EXPECT_EQ(DecodeAll(tok, *ids), text);
  }
}

Tokenizer Generated(int32_t vocab, uint64_t seed = 3) {
  Result<std::vector<std::byte>> bytes = GenerateTokenizer(vocab, seed);
  EXPECT_TRUE(bytes) << bytes.error().message();
  Result<Tokenizer> tok = Tokenizer::Parse(*bytes, vocab, "generated");
  EXPECT_TRUE(tok) << tok.error().message();
  return std::move(*tok);
}

Tokenizer Shared(const std::string& name, int32_t vocab) {
  std::optional<std::string> path = cellhouse::testing::SharedModelPath(name);
  if (!path) {
    return Generated(kMinGeneratedVocab);  // callers skip first
  }
  Result<Tokenizer> tok = Tokenizer::Open(*path, vocab);
  EXPECT_TRUE(tok) << tok.error().message();
  return std::move(*tok);
}

TEST(TokenizerTest, GeneratedRoundTrips) {
  ExpectRoundTrips(Generated(512));
  ExpectRoundTrips(Generated(32000));
}

TEST(TokenizerTest, Tok512RoundTrips) {
  if (!cellhouse::testing::SharedModelPath("tok512.bin")) {
    GTEST_SKIP() << "../shared/models/tok512.bin absent: skipping";
  }
  ExpectRoundTrips(Shared("tok512.bin", 512));
}

TEST(TokenizerTest, Llama2RoundTripsAndMatchesSentencepiece) {
  if (!cellhouse::testing::SharedModelPath("llama2-tokenizer.bin")) {
    GTEST_SKIP() << "../shared/models/llama2-tokenizer.bin absent: skipping";
  }
  Tokenizer tok = Shared("llama2-tokenizer.bin", 32000);
  ExpectRoundTrips(tok);
  // Llama 2's sentencepiece encodes "Hello world" as BOS, "▁Hello", "▁world".
  Result<std::vector<int32_t>> ids = tok.Encode("Hello world", {.add_bos = true});
  ASSERT_TRUE(ids);
  EXPECT_EQ(*ids, (std::vector<int32_t>{1, 15043, 3186}));
}

TEST(TokenizerTest, EncodeFollowsLlama2cConventions) {
  Tokenizer tok = Generated(512);
  EXPECT_EQ(*tok.Encode("", {.add_bos = true}), std::vector<int32_t>{kBosToken});
  EXPECT_TRUE(tok.Encode("", {})->empty());
  EXPECT_EQ(tok.Encode("hi", {.add_bos = true, .add_eos = true})->back(), kEosToken);
  // The dummy prefix: the first piece carries a leading space, which Decode drops after BOS
  // only.
  std::vector<int32_t> ids = *tok.Encode("x", {.add_bos = true});
  ASSERT_EQ(ids.size(), 3U);  // BOS, " ", "x" (no merge " x" in a 512-piece vocabulary)
  EXPECT_EQ(tok.Piece(ids[1]), " ");
  EXPECT_EQ(tok.Decode(kBosToken, ids[1]), "");
  EXPECT_EQ(tok.Decode(ids[2], ids[1]), " ");
  // Frequent words merge into fewer pieces than characters.
  EXPECT_LT(tok.Encode("the little dog", {})->size(), std::string(" the little dog").size());
}

TEST(TokenizerTest, UnknownCharactersFallBackToBytePieces) {
  Tokenizer tok = Generated(512);
  std::vector<int32_t> ids = *tok.Encode("\xF0\x9F\x98\x80", {});  // 😀 has no piece
  ASSERT_EQ(ids.size(), 5U);                                       // " " + four bytes
  const unsigned char bytes[] = {0xF0, 0x9F, 0x98, 0x80};
  for (size_t i = 0; i < 4; ++i) {
    EXPECT_EQ(ids[i + 1], bytes[i] + kFirstByteToken);
    EXPECT_EQ(tok.Decode(ids[i], ids[i + 1]), std::string(1, static_cast<char>(bytes[i])));
  }
}

TEST(TokenizerTest, DecodeOutOfRangeIsEmpty) {
  Tokenizer tok = Generated(512);
  EXPECT_EQ(tok.Decode(0, -1), "");
  EXPECT_EQ(tok.Decode(0, 512), "");
  EXPECT_EQ(tok.Piece(99999), "");
}

// llama2.c's encode() as written there (rescan every pair after each merge), over a
// Tokenizer's pieces: the reference the engine's heap-based merging must agree with.
std::vector<int32_t> Llama2cEncode(const Tokenizer& tok, std::string_view text) {
  std::map<std::string, int32_t, std::less<>> ids;
  for (int32_t i = tok.vocab_size() - 1; i >= 0; --i) {
    ids[std::string(tok.Piece(i))] = i;  // lowest id wins
  }
  auto lookup = [&](std::string_view s) {
    auto it = ids.find(s);
    return it == ids.end() ? -1 : it->second;
  };
  std::vector<int32_t> tokens = {kBosToken};
  if (!text.empty()) {
    tokens.push_back(lookup(" "));
  }
  std::string buf;
  for (size_t i = 0; i < text.size(); ++i) {
    if ((static_cast<unsigned char>(text[i]) & 0xC0U) != 0x80U) {
      buf.clear();
    }
    buf += text[i];
    if (i + 1 < text.size() && (static_cast<unsigned char>(text[i + 1]) & 0xC0U) == 0x80U &&
        buf.size() < 4) {
      continue;
    }
    const int32_t id = lookup(buf);
    if (id != -1) {
      tokens.push_back(id);
    } else {
      for (char c : buf) {
        tokens.push_back(static_cast<unsigned char>(c) + 3);
      }
    }
    buf.clear();
  }
  for (;;) {
    float best_score = -1e10F;
    int32_t best_id = -1;
    size_t best_idx = 0;
    for (size_t i = 0; i + 1 < tokens.size(); ++i) {
      const int32_t id =
          lookup(std::string(tok.Piece(tokens[i])) + std::string(tok.Piece(tokens[i + 1])));
      if (id != -1 && tok.Score(id) > best_score) {
        best_score = tok.Score(id);
        best_id = id;
        best_idx = i;
      }
    }
    if (best_id == -1) {
      break;
    }
    tokens[best_idx] = best_id;
    tokens.erase(tokens.begin() + static_cast<ptrdiff_t>(best_idx) + 1);
  }
  return tokens;
}

// Random text over an alphabet that mixes common pieces, spaces and multi-byte characters.
std::string RandomText(uint64_t seed, size_t words) {
  static const std::vector<std::string> kParts = {
      "the", " ",  "  ", "e", "th", "ing", "and", " a", "ll", "o", "Once", "é", "你",   "😀",
      "\n",  "\t", "x",  "q", "z",  "up",  "on",  "ti", "me", ".", ",",    "!", "\xC3", "\x80"};
  std::string text;
  uint64_t state = seed * 0x9E3779B97F4A7C15ULL + 1;
  for (size_t i = 0; i < words; ++i) {
    state ^= state << 13;
    state ^= state >> 7;
    state ^= state << 17;
    text += kParts[state % kParts.size()];
  }
  return text;
}

void ExpectMatchesLlama2c(const Tokenizer& tok) {
  for (uint64_t seed = 1; seed <= 60; ++seed) {
    const std::string text = RandomText(seed, 5 + seed * 3);
    Result<std::vector<int32_t>> ids = tok.Encode(text, {.add_bos = true});
    ASSERT_TRUE(ids);
    ASSERT_EQ(*ids, Llama2cEncode(tok, text)) << "text " << Quote(text);
  }
}

TEST(TokenizerTest, MergesAsLlama2cDoes) {
  ExpectMatchesLlama2c(Generated(512));
  ExpectMatchesLlama2c(Generated(4000, 9));
  for (auto [name, vocab] :
       {std::pair{"tok512.bin", 512}, std::pair{"llama2-tokenizer.bin", 32000}}) {
    if (cellhouse::testing::SharedModelPath(name)) {
      ExpectMatchesLlama2c(Shared(name, vocab));
    }
  }
}

TEST(TokenizerTest, LongTextEncodesInReasonableTime) {
  // 200 KB: llama2.c's quadratic merging would take minutes; the heap takes milliseconds. No
  // timing is asserted, but a quadratic regression would time the test out.
  Tokenizer tok = Generated(32000);
  std::string text;
  while (text.size() < 200000) {
    text += "Once upon a time there was a little dog named Sam. ";
  }
  Result<std::vector<int32_t>> ids = tok.Encode(text, {.add_bos = true});
  ASSERT_TRUE(ids);
  EXPECT_EQ(DecodeAll(tok, *ids), text);
}

TEST(TokenizerTest, GeneratorIsDeterministic) {
  EXPECT_EQ(*GenerateTokenizer(1000, 5), *GenerateTokenizer(1000, 5));
  EXPECT_NE(*GenerateTokenizer(1000, 5), *GenerateTokenizer(1000, 6));
  EXPECT_FALSE(GenerateTokenizer(kMinGeneratedVocab - 1, 5));
}

}  // namespace
}  // namespace cellhouse::engine
