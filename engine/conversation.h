// Conversation: one session's dialogue with the model — its token history, its KV cache and
// its sampler — over a Model and Tokenizer it does not own (the zygote's, shared by all).
//
//   CH_ASSIGN_OR_RETURN(Conversation chat, Conversation::Create(model, tokenizer, 1024));
//   CH_ASSIGN_OR_RETURN(Conversation::TurnStats stats,
//       chat.Turn("Once upon a time", {.max_new_tokens = 200, .temperature = 0.8F,
//                                      .top_p = 0.9F, .seed = 42},
//                 [](int32_t token, std::string_view piece) { Send(piece); return true; }));
//
// Semantics are llama2.c's `run`: the first turn's prompt is BOS + encode(prompt), no EOS; each
// position's logits pick the next token; generation stops at BOS (not emitted). With a GGUF
// vocabulary, BOS is added if the file says so and generation stops at its end-of-generation ids
// (EOS, end of turn), as llama.cpp's do. The last token
// a turn emits is in the history but not yet processed; the next turn processes it first.
//
// After Create(), Turn() allocates nothing per token and makes no system call other than
// memory management (mmap/munmap/madvise/brk for the history and encoder), futex (OpenBLAS)
// and clock_gettime (vDSO): it runs under the worker's seccomp filter.
#ifndef CELLHOUSE_ENGINE_CONVERSATION_H_
#define CELLHOUSE_ENGINE_CONVERSATION_H_

#include <cstdint>
#include <functional>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/sampler.h"
#include "engine/tokenizer/tokenizer.h"

namespace cellhouse::engine {

class Conversation {
 public:
  struct Options {
    MatVecKernel matvec = MatVecKernel::kAuto;  // decode kernel; benchmarks compare them
  };
  // context_length in 1..seq_len: the positions this conversation may use (its KV cache size).
  // The conversation keeps pointers to `model` and `tokenizer`: both must outlive it and stay
  // where they are (not be moved). The tokenizer must match the model's vocabulary size.
  static Result<Conversation> Create(const Model& model, const Tokenizer& tokenizer,
                                     int32_t context_length, Options options);
  static Result<Conversation> Create(const Model& model, const Tokenizer& tokenizer,
                                     int32_t context_length) {
    return Create(model, tokenizer, context_length, Options{});
  }

  Conversation(Conversation&&) noexcept = default;
  Conversation& operator=(Conversation&&) noexcept = default;

  enum class StopReason {
    kMaxTokens,    // max_new_tokens were generated
    kEndOfText,    // the model produced an end-of-generation token (BOS for llama2.c)
    kContextFull,  // the next token would not fit in the context
    kCancelled,    // on_token returned false
  };
  struct TurnOptions {
    int32_t max_new_tokens = 256;
    float temperature = 0.0F;
    float top_p = 0.9F;
    uint64_t seed = 0;
  };
  struct TurnStats {
    int32_t prompt_tokens = 0;     // tokens this turn added before generating (BOS included)
    int32_t generated_tokens = 0;  // tokens passed to on_token
    int64_t time_to_first_token_ns = 0;
    int64_t prefill_ns = 0;  // processing the prompt (and the previous turn's last token)
    int64_t decode_ns = 0;   // everything after the first generated token
    StopReason stop = StopReason::kMaxTokens;
  };
  // Called with every generated token and its text (raw bytes; see Tokenizer::Decode). Returning
  // false cancels the turn after that token.
  using TokenCallback = std::function<bool(int32_t token, std::string_view piece)>;

  // Adds `prompt` (first turn: BOS + encode(prompt); later: encode(prompt)) to the history,
  // processes what has not been processed yet, then generates up to max_new_tokens. A prompt
  // that does not fit in the remaining context, or bad options, is an error and changes nothing.
  Result<TurnStats> Turn(std::string_view prompt, const TurnOptions& options,
                         const TokenCallback& on_token);

  // Why the last Turn() failed: the caller tells a full context from a bad request by this,
  // not by the message. kNone after a turn that succeeded.
  enum class Failure { kNone, kInvalid, kContextFull };
  Failure last_failure() const { return last_failure_; }

  // Positions whose keys and values are in the cache.
  int32_t context_used() const { return processed_; }
  int32_t context_length() const { return state_.context_length(); }
  uint64_t KvBytesInUse() const;
  // Every token so far: prompts and generated tokens, BOS first.
  const std::vector<int32_t>& tokens() const { return tokens_; }
  MatVecKernel matvec_kernel() const { return kernels_.kind; }

 private:
  Conversation(const Model& model, const Tokenizer& tokenizer, RunState state, Kernels kernels);
  Status CheckOptions(const TurnOptions& options) const;

  const Model* model_;
  const Tokenizer* tokenizer_;
  RunState state_;
  Kernels kernels_;
  Sampler sampler_;
  std::vector<int32_t> tokens_;
  int32_t processed_ = 0;  // tokens_[0 .. processed_) are in the KV cache
  Failure last_failure_ = Failure::kNone;
};

std::string_view StopReasonName(Conversation::StopReason reason);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_CONVERSATION_H_
