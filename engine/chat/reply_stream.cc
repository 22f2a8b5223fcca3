#include "engine/chat/reply_stream.h"

#include <algorithm>
#include <utility>

namespace cellhouse::engine::chat {
namespace {

constexpr std::string_view kThinkOpen = "<think>";
constexpr std::string_view kThinkClose = "</think>";

// The length of the longest suffix of `text` that is a proper prefix of `word`.
size_t PartialSuffix(std::string_view text, std::string_view word) {
  const size_t longest = std::min(text.size(), word.size() - 1);
  for (size_t n = longest; n > 0; --n) {
    if (text.substr(text.size() - n) == word.substr(0, n)) return n;
  }
  return 0;
}

}  // namespace

ReplyStream::ReplyStream(Options options) : options_(std::move(options)) {
  std::erase_if(options_.stop, [](const std::string& s) { return s.empty(); });
  if (!options_.thinking) phase_ = Phase::kContent;
}

ReplyStream::Out ReplyStream::Append(std::string_view bytes) {
  out_content_.clear();
  out_reasoning_.clear();
  if (stopped_) return {};
  scratch_.clear();
  utf8_.Append(bytes, scratch_);
  Release(scratch_, false);
  return {out_content_, out_reasoning_};
}

ReplyStream::Out ReplyStream::Finish() {
  out_content_.clear();
  out_reasoning_.clear();
  if (!stopped_) {
    scratch_.clear();
    utf8_.Finish(scratch_);
    Release(scratch_, true);
  }
  return {out_content_, out_reasoning_};
}

void ReplyStream::Release(std::string_view text, bool final) {
  if (options_.stop.empty()) {
    Split(text, final);
    return;
  }
  held_.append(text);
  // The earliest stop string ends the reply there.
  size_t first = std::string::npos;
  for (const std::string& s : options_.stop) first = std::min(first, held_.find(s));
  if (first != std::string::npos) {
    stopped_ = true;
    const std::string before = held_.substr(0, first);
    held_.clear();
    Split(before, true);
    return;
  }
  size_t keep = 0;
  if (!final) {
    for (const std::string& s : options_.stop) keep = std::max(keep, PartialSuffix(held_, s));
  }
  const std::string ready = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  Split(ready, final);
}

void ReplyStream::EmitContent(std::string_view t) {
  out_content_.append(t);
  content_.append(t);
}

void ReplyStream::EmitReasoning(std::string_view t) {
  out_reasoning_.append(t);
  reasoning_.append(t);
}

void ReplyStream::Split(std::string_view text, bool final) {
  if (phase_ == Phase::kContent) {
    EmitContent(text);
    return;
  }
  split_held_.append(text);
  while (Step(final)) {
  }
}

bool ReplyStream::Step(bool final) {
  switch (phase_) {
    case Phase::kStart:
      return StepStart(final);
    case Phase::kThinkOpened:
      // The newlines after <think> belong to neither channel.
      return SkipNewlines(Phase::kReasoning);
    case Phase::kReasoning:
      return StepReasoning(final);
    case Phase::kAfterThink:
      // The newlines between </think> and the answer belong to neither.
      if (!SkipNewlines(Phase::kContent)) return false;
      [[fallthrough]];
    case Phase::kContent:
      EmitContent(split_held_);
      split_held_.clear();
      return false;
  }
  return false;
}

bool ReplyStream::StepStart(bool final) {
  // Whitespace, then "<think>" opens the reasoning; anything else is the answer.
  const size_t lead = split_held_.find_first_not_of(" \t\r\n");
  if (lead == std::string::npos) {
    if (final) {
      EmitContent(split_held_);
      split_held_.clear();
    }
    return false;
  }
  const std::string_view rest = std::string_view(split_held_).substr(lead);
  if (rest.starts_with(kThinkOpen)) {
    split_held_.erase(0, lead + kThinkOpen.size());
    phase_ = Phase::kThinkOpened;
    return true;
  }
  if (!final && kThinkOpen.starts_with(rest)) return false;  // "<thi": wait
  phase_ = Phase::kContent;
  EmitContent(split_held_);
  split_held_.clear();
  return false;
}

bool ReplyStream::StepReasoning(bool final) {
  const size_t close = split_held_.find(kThinkClose);
  if (close != std::string::npos) {
    EmitReasoning(std::string_view(split_held_).substr(0, close));
    split_held_.erase(0, close + kThinkClose.size());
    phase_ = Phase::kAfterThink;
    return true;
  }
  const size_t keep = final ? 0 : PartialSuffix(split_held_, kThinkClose);
  EmitReasoning(std::string_view(split_held_).substr(0, split_held_.size() - keep));
  split_held_.erase(0, split_held_.size() - keep);
  return false;
}

bool ReplyStream::SkipNewlines(Phase next) {
  const size_t lead = split_held_.find_first_not_of('\n');
  if (lead == std::string::npos) {
    split_held_.clear();
    return false;
  }
  split_held_.erase(0, lead);
  phase_ = next;
  return true;
}

}  // namespace cellhouse::engine::chat
