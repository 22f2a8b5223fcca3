// A scripted TurnEngine for tests of everything around the model: each turn consumes one
// context position per prompt byte and emits "t0 ", "t1 ", ... (padded to piece_bytes), `delay`
// apart.
#ifndef CELLHOUSE_TESTS_SUPPORT_FAKE_ENGINE_H_
#define CELLHOUSE_TESTS_SUPPORT_FAKE_ENGINE_H_

#include <algorithm>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

#include "worker/session/turn_engine.h"

namespace cellhouse::testing {

using session::TokenCallback;
using session::TurnEngine;
using session::TurnErrorKind;
using session::TurnRequest;
using session::TurnResult;

class FakeEngine final : public TurnEngine {
 public:
  Result<TurnResult> Turn(const TurnRequest& request, const TokenCallback& on_token) override {
    last_prompt = std::string(request.prompt);
    last_seed = request.seed;
    last_request_stop = request.stop;
    if (request.chat != nullptr) {
      // A chat turn counts its messages' content as its prompt.
      last_prompt.clear();
      for (const auto& m : request.chat->messages()) last_prompt += m.content();
    }
    int32_t prompt_tokens = static_cast<int32_t>(last_prompt.size());
    if (used_ + prompt_tokens > length_) {
      kind_ = TurnErrorKind::kContextFull;
      return Error("the prompt does not fit in the context");
    }
    used_ += prompt_tokens;
    TurnResult r;
    r.prompt_tokens = prompt_tokens;
    for (int32_t i = 0; i < request.max_new_tokens; ++i) {
      if (used_ >= length_) {
        r.stop = api::Done::CONTEXT_FULL;
        return r;
      }
      std::this_thread::sleep_for(delay);
      ++used_;
      ++r.generated_tokens;
      // (Built with += : g++ 12 gives a false -Wrestrict on "t" + to_string(i) + " ".)
      std::string piece = "t";
      piece += std::to_string(i);
      piece += ' ';
      piece.resize(std::max(piece.size(), piece_bytes), '.');
      if (!on_token({.token = i, .text = piece})) {
        r.stop = api::Done::CANCELLED;
        return r;
      }
    }
    r.stop = api::Done::MAX_TOKENS;
    return r;
  }
  TurnErrorKind last_error_kind() const override { return kind_; }
  int32_t context_used() const override { return used_; }
  int32_t context_length() const override { return length_; }
  uint64_t KvBytesInUse() const override { return static_cast<uint64_t>(used_) * 100; }
  std::string Describe() const override { return "fake"; }

  std::chrono::milliseconds delay{0};
  size_t piece_bytes = 0;
  std::string last_prompt;
  uint64_t last_seed = 0;
  std::vector<std::string> last_request_stop;

 private:
  int32_t used_ = 0;
  int32_t length_ = 1000;

 public:
  void set_context_length(int32_t n) { length_ = n; }
  TurnErrorKind kind_ = TurnErrorKind::kInternal;
};

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_SUPPORT_FAKE_ENGINE_H_
