#include "tests/engine/greedy_agreement.h"

#include <algorithm>
#include <sstream>
#include <vector>

#include <gtest/gtest.h>

#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/run_state.h"

namespace cellhouse::engine::testing {

namespace {

struct Line {
  std::string prompt;
  int tokens = 0;
  std::string text;
};

// A token's text as llama.cpp prints it: byte pieces as their byte, control pieces as written,
// with tabs and newlines shown as spaces (the TSV's convention).
std::string PrintedPiece(const Tokenizer& tok, int32_t id) {
  std::string piece(tok.DisplayPiece(id));
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

}  // namespace

std::string Flatten(std::string text) {
  std::replace(text.begin(), text.end(), '\t', ' ');
  std::replace(text.begin(), text.end(), '\n', ' ');
  return text;
}

Agreement GreedyAgreement(const Model& model, const Tokenizer& tok, const std::string& prompt_text,
                          int tokens, const std::string& reference) {
  const Line line{prompt_text, tokens, reference};
  Agreement result;
  Result<std::vector<int32_t>> prompt = tok.Encode(line.prompt, {.add_bos = tok.add_bos()});
  if (!prompt) {
    result.note = prompt.error().message();
    return result;
  }
  std::string ours;
  for (int32_t id : *prompt) {
    ours += PrintedPiece(tok, id);
  }
  if (line.text.compare(0, ours.size(), ours) != 0) {
    result.note =
        "the prompt's tokens print as '" + ours + "', the reference's line is '" + line.text + "'";
    return result;
  }
  result.prompt_matches = true;
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
          note << ", the reference's '" << p << "'? (logit " << logits[id] << ")";
        }
      }
      result.note = note.str();
    }
    ours += piece;
    logits = Forward(model.weights(), kernels, state, std::span(&next, 1), pos++);
  }
  return result;
}

}  // namespace cellhouse::engine::testing
