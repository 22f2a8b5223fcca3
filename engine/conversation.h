// Conversation: one session's dialogue with the model — its token history, its KV cache and
// its sampler — over a Model and Tokenizer it does not own (the zygote's, shared by all).
//
//   CH_ASSIGN_OR_RETURN(Conversation chat, Conversation::Create(model, tokenizer, 1024));
//   CH_ASSIGN_OR_RETURN(Conversation::TurnStats stats,
//       chat.Turn("Once upon a time", {.max_new_tokens = 200, .temperature = 0.8F,
//                                      .top_p = 0.9F, .seed = 42},
//                 [](int32_t token, std::string_view piece) { Send(piece); return true; }));
//
// Two kinds of turn. Turn(text) is llama2.c's `run`: the first turn's prompt is BOS +
// encode(prompt), no EOS, later turns append encode(prompt). TurnTokens(ids) takes the whole
// conversation as tokens (a chat template's rendering, engine/chat/): the longest prefix it
// shares with what the cache holds is reused, the rest of the cache is dropped, and only the
// tokens after the shared prefix are evaluated. Either way each position's logits pick the next
// token, and generation stops at an end-of-generation token of the vocabulary (not emitted; for
// a llama2.c tokenizer that is BOS). The last token a turn emits is in the history but not yet
// processed; the next turn processes it first (or, for TurnTokens, drops it if the new
// conversation does not contain it).
//
// After Create(), Turn() allocates nothing per token and makes no system call other than
// memory management (mmap/munmap/madvise/brk for the history and encoder), futex (OpenBLAS)
// and clock_gettime (vDSO): it runs under the worker's seccomp filter.
#ifndef CELLHOUSE_ENGINE_CONVERSATION_H_
#define CELLHOUSE_ENGINE_CONVERSATION_H_

#include <cstdint>
#include <functional>
#include <memory>
#include <span>
#include <string_view>
#include <vector>

#include "base/result.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/sampler.h"
#include "engine/step_path.h"
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
    kEndOfText,    // the model produced an end-of-generation token (llama2.c: BOS)
    kContextFull,  // the next token would not fit in the context
    kCancelled,    // on_token returned false
  };
  struct TurnOptions {
    int32_t max_new_tokens = 256;
    float temperature = 0.0F;
    float top_p = 0.9F;
    uint64_t seed = 0;
    // llama.cpp's other samplers (sampler.h); the defaults leave them off.
    int32_t top_k = 0;
    float min_p = 0.0F;
    float repetition_penalty = 1.0F;
    float frequency_penalty = 0.0F;
    float presence_penalty = 0.0F;
  };
  struct TurnStats {
    int32_t prompt_tokens = 0;     // Turn: tokens added (BOS included); TurnTokens: all of them
    int32_t reused_tokens = 0;     // TurnTokens: the prompt's prefix found in the cache
    int32_t evaluated_tokens = 0;  // positions run through the model before the first sample
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
  // Makes `conversation` (every token, BOS included) the history: reuses the longest prefix it
  // shares with the cache (at least one token is always evaluated, for its logits), evaluates
  // the rest, then generates. A conversation longer than the context, or bad options, is an
  // error and changes nothing.
  Result<TurnStats> TurnTokens(std::span<const int32_t> conversation, const TurnOptions& options,
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

  // Runs every later step through `path` (nullptr: Forward() in this process). Its results are
  // to be Forward()'s (up to how a prompt is cut into chunks), so that a conversation may change
  // path between any two steps.
  void UseStepPath(std::unique_ptr<StepPath> path) { path_ = std::move(path); }
  const StepPath* step_path() const { return path_.get(); }

 private:
  Conversation(const Model& model, const Tokenizer& tokenizer, RunState state, Kernels kernels);
  Status CheckOptions(const TurnOptions& options) const;
  // Generates after the history is processed; fills the generation part of `stats`.
  void Generate(const TurnOptions& options, const TokenCallback& on_token, int64_t start,
                TurnStats& stats);
  // One step: `tokens` (of `kind`) at positions pos .. through the path (or Forward()).
  void Step(std::span<const int32_t> tokens, int32_t pos, StepKind kind);

  const Model* model_;
  const Tokenizer* tokenizer_;
  RunState state_;
  Kernels kernels_;
  Sampler sampler_;
  std::vector<int32_t> tokens_;
  int32_t processed_ = 0;  // tokens_[0 .. processed_) are in the KV cache
  Failure last_failure_ = Failure::kNone;
  std::unique_ptr<StepPath> path_;
};

std::string_view StopReasonName(Conversation::StopReason reason);

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_CONVERSATION_H_
