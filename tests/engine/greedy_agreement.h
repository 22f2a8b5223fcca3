// How far our greedy continuation of a prompt agrees with a reference runtime's printed one
// (llama.cpp's llama-simple: the prompt's tokens with BOS, then each generated token's piece,
// byte pieces as their byte, tabs and newlines shown as spaces in the recorded files).
//
//   Agreement a = GreedyAgreement(model, tokenizer, "Once upon a time", 48, llama_text);
//   EXPECT_GE(a.agreed, 32) << a.note;
#ifndef CELLHOUSE_TESTS_ENGINE_GREEDY_AGREEMENT_H_
#define CELLHOUSE_TESTS_ENGINE_GREEDY_AGREEMENT_H_

#include <cstdint>
#include <string>

#include "engine/model.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine::testing {

struct Agreement {
  bool prompt_matches = false;  // our prompt tokens print as the start of the reference's text
  int agreed = 0;     // generated tokens whose text matches the reference's, from the first
  int generated = 0;  // tokens we generated (fewer than asked at an end-of-generation token)
  std::string note;   // where and how we parted from the reference, with both choices' logits
};

// `reference`: the reference's printed text, with tabs and newlines as spaces.
Agreement GreedyAgreement(const Model& model, const Tokenizer& tokenizer, const std::string& prompt,
                          int tokens, const std::string& reference);

// Tabs and newlines as spaces, as the recorded files show them.
std::string Flatten(std::string text);

}  // namespace cellhouse::engine::testing

#endif  // CELLHOUSE_TESTS_ENGINE_GREEDY_AGREEMENT_H_
