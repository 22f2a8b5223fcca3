// GGUF models against the reference runtime: for every line of ../shared/models/gguf/*.greedy.tsv
// (llama.cpp's llama-simple: the prompt with BOS, then N greedy tokens), our greedy continuation of
// the same prompt must agree with llama.cpp's for at least the first 32 of the 48 tokens; the test
// prints the agreement per file and prompt, and where a continuation parts from the reference, the
// logits of both choices. Skipped when ../shared is absent.
#include <algorithm>
#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"
#include "tests/support/test_env.h"

namespace cellhouse::engine {
namespace {

constexpr int kRequiredAgreement = 32;

struct Line {
  std::string prompt;
  int tokens = 0;
  std::string text;
};

std::vector<Line> ReadTsv(const std::string& path) {
  std::vector<Line> lines;
  std::ifstream in(path);
  std::string row;
  while (std::getline(in, row)) {
    const size_t a = row.find('\t');
    const size_t b = a == std::string::npos ? a : row.find('\t', a + 1);
    if (b == std::string::npos) {
      continue;
    }
    lines.push_back({row.substr(0, a), std::stoi(row.substr(a + 1, b - a - 1)), row.substr(b + 1)});
  }
  return lines;
}

// A token's text as llama.cpp prints it: byte pieces as their byte, control pieces as written,
// with tabs and newlines shown as spaces (the TSV's convention).
std::string PrintedPiece(const Tokenizer& tok, int32_t id) {
  std::string piece(tok.Piece(id));
  if (piece.size() == 6 && piece.rfind("<0x", 0) == 0) {
    piece = std::string(tok.Decode(-1, id));
  }
  std::replace(piece.begin(), piece.end(), '\t', ' ');
  std::replace(piece.begin(), piece.end(), '\n', ' ');
  return piece;
}

int32_t Argmax(const float* logits, int32_t n) {
  int32_t best = 0;
  for (int32_t i = 1; i < n; ++i) {
    if (logits[i] > logits[best]) {
      best = i;
    }
  }
  return best;
}

struct Agreement {
  int agreed = 0;     // generated tokens whose text matches the reference's, from the first
  int generated = 0;  // tokens we generated
  std::string note;   // where and how it parted
};

Agreement Compare(const Model& model, const Tokenizer& tok, const Line& line) {
  Agreement result;
  Result<std::vector<int32_t>> prompt = tok.Encode(line.prompt, {.add_bos = tok.add_bos()});
  EXPECT_TRUE(prompt);
  std::string ours;
  for (int32_t id : *prompt) {
    ours += PrintedPiece(tok, id);
  }
  if (line.text.compare(0, ours.size(), ours) != 0) {
    ADD_FAILURE() << "the prompt's tokens print as '" << ours << "', llama.cpp's as the start of '"
                  << line.text << "'";
    return result;
  }
  const int32_t vocab = model.config().vocab_size;
  const auto context = static_cast<int32_t>(prompt->size()) + line.tokens;
  RunState state = *RunState::Create(model.config(), context, model.kv_precision());
  const Kernels kernels = SelectKernels(MatVecKernel::kAuto);
  const float* logits = Forward(model.weights(), kernels, state, *prompt, 0);
  int32_t pos = static_cast<int32_t>(prompt->size());
  bool agreeing = true;
  for (int i = 0; i < line.tokens; ++i) {
    const int32_t next = Argmax(logits, vocab);
    if (tok.IsEndOfGeneration(next)) {
      break;
    }
    const std::string piece = PrintedPiece(tok, next);
    ++result.generated;
    if (agreeing && line.text.compare(ours.size(), piece.size(), piece) == 0 && !piece.empty()) {
      ++result.agreed;
    } else if (agreeing) {
      agreeing = false;
      // Which tokens llama.cpp may have chosen: any whose text starts the rest of its line.
      const std::string rest = line.text.substr(ours.size());
      std::ostringstream note;
      note << "parted at token " << i << ": ours '" << piece << "' (logit " << logits[next] << ")";
      for (int32_t id = 0; id < vocab; ++id) {
        const std::string p = PrintedPiece(tok, id);
        if (!p.empty() && rest.compare(0, p.size(), p) == 0 && p.size() >= 2) {
          note << ", llama.cpp's '" << p << "'? (logit " << logits[id] << ")";
        }
      }
      result.note = note.str();
    }
    ours += piece;
    logits = Forward(model.weights(), kernels, state, std::span(&next, 1), pos++);
  }
  return result;
}

TEST(GgufReferenceTest, GreedyContinuationsAgreeWithLlamaCpp) {
  std::optional<std::string> dir = cellhouse::testing::SharedModelPath("gguf");
  if (!dir) {
    GTEST_SKIP() << "../shared/models/gguf absent: skipping the comparison with llama.cpp";
  }
  int lines = 0;
  std::printf("%-24s %-28s %s\n", "file", "prompt", "agreement");
  for (const char* name : {"llama-spm-Q8_0", "llama-spm-Q4_K_M", "llama-spm-Q4_0", "qwen2-spm-F16",
                           "qwen2-spm-Q8_0"}) {
    const std::string base = *dir + "/" + name;
    Result<Model> model = Model::Open(base + ".gguf");
    ASSERT_TRUE(model) << model.error().message();
    Result<Tokenizer> tok = TokenizerFromGguf(*model->gguf());
    ASSERT_TRUE(tok) << tok.error().message();
    for (const Line& line : ReadTsv(base + ".greedy.tsv")) {
      ++lines;
      const Agreement a = Compare(*model, *tok, line);
      std::printf("%-24s %-28s %d/%d %s\n", name, line.prompt.c_str(), a.agreed, line.tokens,
                  a.note.c_str());
      EXPECT_GE(a.agreed, std::min(kRequiredAgreement, line.tokens))
          << name << " '" << line.prompt << "': " << a.note;
    }
  }
  std::fflush(stdout);
  EXPECT_EQ(lines, 15);
}

}  // namespace
}  // namespace cellhouse::engine
