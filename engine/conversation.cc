#include "engine/conversation.h"

#include <algorithm>
#include <cmath>
#include <string>

#include "base/clock.h"
#include "engine/forward.h"

namespace cellhouse::engine {

std::string_view StopReasonName(Conversation::StopReason reason) {
  switch (reason) {
    case Conversation::StopReason::kMaxTokens:
      return "max_tokens";
    case Conversation::StopReason::kEndOfText:
      return "end_of_text";
    case Conversation::StopReason::kContextFull:
      return "context_full";
    case Conversation::StopReason::kCancelled:
      return "cancelled";
  }
  return "?";
}

Conversation::Conversation(const Model& model, const Tokenizer& tokenizer, RunState state,
                           Kernels kernels)
    : model_(&model),
      tokenizer_(&tokenizer),
      state_(std::move(state)),
      kernels_(kernels),
      sampler_(model.config().vocab_size) {
  // The history never outgrows this (the cache, plus one emitted but unprocessed token), so
  // generation never reallocates it.
  tokens_.reserve(static_cast<size_t>(state_.context_length()) + 1);
}

Result<Conversation> Conversation::Create(const Model& model, const Tokenizer& tokenizer,
                                          int32_t context_length, Options options) {
  if (tokenizer.vocab_size() != model.config().vocab_size) {
    return Error("starting a conversation: the tokenizer has " +
                 std::to_string(tokenizer.vocab_size()) + " pieces but model '" + model.path() +
                 "' has a vocabulary of " + std::to_string(model.config().vocab_size));
  }
  CH_ASSIGN_OR_RETURN(RunState state,
                      RunState::Create(model.config(), context_length, model.kv_precision()));
  return Conversation(model, tokenizer, std::move(state), SelectKernels(options.matvec));
}

uint64_t Conversation::KvBytesInUse() const {
  return static_cast<uint64_t>(processed_) *
         KvCacheBytesPerToken(model_->config(), model_->kv_precision());
}

Status Conversation::CheckOptions(const TurnOptions& options) const {
  if (options.max_new_tokens < 0) {
    return Error("max_new_tokens is " + std::to_string(options.max_new_tokens) +
                 ", must not be negative");
  }
  if (!std::isfinite(options.temperature) || options.temperature < 0.0F) {
    return Error("temperature must be a finite number >= 0");
  }
  if (!std::isfinite(options.top_p)) {
    return Error("top_p must be a finite number");
  }
  if (options.top_k != 0 || options.min_p != 0.0F || options.repetition_penalty != 1.0F ||
      options.frequency_penalty != 0.0F || options.presence_penalty != 0.0F) {
    // top_p keeps llama2.c's meaning here (outside (0, 1): off), so check the others alone.
    SamplingParams p{.temperature = options.temperature,
                     .top_p = 1.0F,
                     .top_k = options.top_k,
                     .min_p = options.min_p,
                     .repetition_penalty = options.repetition_penalty,
                     .frequency_penalty = options.frequency_penalty,
                     .presence_penalty = options.presence_penalty};
    CH_RETURN_IF_ERROR(ValidateSamplingParams(p, model_->config().vocab_size));
  }
  return Ok();
}

Result<Conversation::TurnStats> Conversation::Turn(std::string_view prompt,
                                                   const TurnOptions& options,
                                                   const TokenCallback& on_token) {
  const int64_t start = MonotonicNanos();
  last_failure_ = Failure::kInvalid;
  CH_RETURN_IF_ERROR(CheckOptions(options));
  // No token covers more than max_token_length bytes: a prompt longer than the room left times
  // that cannot fit, and is refused before the (n log n) encoding.
  const auto room_bytes = static_cast<uint64_t>(context_length() - processed_) *
                          static_cast<uint64_t>(tokenizer_->max_token_length());
  if (prompt.size() > room_bytes) {
    last_failure_ = Failure::kContextFull;
    return Error("the prompt of " + std::to_string(prompt.size()) + " bytes cannot fit in the " +
                 std::to_string(context_length() - processed_) + " positions left of the context");
  }
  CH_ASSIGN_OR_RETURN(
      std::vector<int32_t> prompt_tokens,
      tokenizer_->Encode(prompt, {.add_bos = tokens_.empty() && tokenizer_->add_bos()}));
  const size_t unprocessed =
      tokens_.size() - static_cast<size_t>(processed_) + prompt_tokens.size();
  if (unprocessed == 0) {
    return Error("the prompt is empty and there is nothing to continue");
  }
  const auto room = static_cast<size_t>(context_length() - processed_);
  if (unprocessed > room) {
    last_failure_ = Failure::kContextFull;
    return Error("the prompt needs " + std::to_string(unprocessed) + " positions but only " +
                 std::to_string(room) + " of the context's " + std::to_string(context_length()) +
                 " are left");
  }
  tokens_.insert(tokens_.end(), prompt_tokens.begin(), prompt_tokens.end());
  last_failure_ = Failure::kNone;

  TurnStats stats{.prompt_tokens = static_cast<int32_t>(prompt_tokens.size()),
                  .evaluated_tokens = static_cast<int32_t>(unprocessed)};
  // Step() leaves the last position's logits in state_.logits, where the sampler reads them.
  Step(std::span(tokens_).subspan(static_cast<size_t>(processed_)), processed_, StepKind::kPrompt);
  processed_ = static_cast<int32_t>(tokens_.size());
  Generate(options, on_token, start, stats);
  return stats;
}

Result<Conversation::TurnStats> Conversation::TurnTokens(std::span<const int32_t> conversation,
                                                         const TurnOptions& options,
                                                         const TokenCallback& on_token) {
  const int64_t start = MonotonicNanos();
  last_failure_ = Failure::kInvalid;
  CH_RETURN_IF_ERROR(CheckOptions(options));
  if (conversation.empty()) return Error("the conversation has no tokens");
  const int32_t vocab = model_->config().vocab_size;
  for (int32_t id : conversation) {
    if (id < 0 || id >= vocab) {
      return Error("token " + std::to_string(id) + " is outside the vocabulary of " +
                   std::to_string(vocab));
    }
  }
  if (std::cmp_greater(conversation.size(), context_length())) {
    last_failure_ = Failure::kContextFull;
    return Error("the conversation needs " + std::to_string(conversation.size()) +
                 " positions but the context has " + std::to_string(context_length()));
  }
  // The longest common prefix with what the cache holds; at least the last token is evaluated
  // again, since its logits pick the first new token.
  const size_t limit =
      std::min({static_cast<size_t>(processed_), tokens_.size(), conversation.size() - 1});
  size_t common = 0;
  while (common < limit && tokens_[common] == conversation[common]) ++common;
  last_failure_ = Failure::kNone;
  // Positions from `common` on are dropped: overwritten as the new tokens are evaluated, never
  // read before (attention reads positions up to the current one only).
  tokens_.resize(common);
  tokens_.insert(tokens_.end(), conversation.begin() + static_cast<ptrdiff_t>(common),
                 conversation.end());
  processed_ = static_cast<int32_t>(common);
  TurnStats stats{.prompt_tokens = static_cast<int32_t>(conversation.size()),
                  .reused_tokens = static_cast<int32_t>(common),
                  .evaluated_tokens = static_cast<int32_t>(conversation.size() - common)};
  Step(std::span(tokens_).subspan(static_cast<size_t>(processed_)), processed_, StepKind::kPrompt);
  processed_ = static_cast<int32_t>(tokens_.size());
  Generate(options, on_token, start, stats);
  return stats;
}

void Conversation::Generate(const TurnOptions& options, const TokenCallback& on_token,
                            int64_t start, TurnStats& stats) {
  const int64_t prefilled = MonotonicNanos();
  stats.prefill_ns = prefilled - start;
  int64_t first_token = prefilled;

  Rng rng(options.seed);
  const SamplingParams params{.temperature = options.temperature,
                              .top_p = options.top_p,
                              .top_k = options.top_k,
                              .min_p = options.min_p,
                              .repetition_penalty = options.repetition_penalty,
                              .frequency_penalty = options.frequency_penalty,
                              .presence_penalty = options.presence_penalty};
  const auto vocab = static_cast<size_t>(model_->config().vocab_size);
  for (;;) {
    if (stats.generated_tokens == options.max_new_tokens) {
      stats.stop = StopReason::kMaxTokens;
      break;
    }
    const int32_t next = sampler_.Sample(std::span(state_.logits, vocab), params, rng, tokens_);
    if (tokenizer_->IsEndOfGeneration(next)) {
      stats.stop = StopReason::kEndOfText;
      break;
    }
    const int32_t prev = tokens_.back();
    tokens_.push_back(next);
    if (++stats.generated_tokens == 1) {
      first_token = MonotonicNanos();
      stats.time_to_first_token_ns = first_token - start;
    }
    if (!on_token(next, tokenizer_->Decode(prev, next))) {
      stats.stop = StopReason::kCancelled;
      break;
    }
    if (stats.generated_tokens == options.max_new_tokens) {
      stats.stop = StopReason::kMaxTokens;
      break;
    }
    if (processed_ == context_length()) {
      stats.stop = StopReason::kContextFull;
      break;
    }
    Step(std::span(&tokens_.back(), 1), processed_, StepKind::kDecode);
    ++processed_;
  }
  if (stats.generated_tokens > 0) {
    stats.decode_ns = MonotonicNanos() - first_token;
  }
  if (path_) path_->TurnEnded();
}

void Conversation::Step(std::span<const int32_t> tokens, int32_t pos, StepKind kind) {
  if (path_) {
    path_->Forward(state_, tokens, pos, kind);
  } else {
    Forward(model_->weights(), kernels_, state_, tokens, pos, kind);
  }
}

}  // namespace cellhouse::engine
