#include "gateway/text_stream.h"

#include <algorithm>
#include <cstdint>

namespace cellhouse::gateway {
namespace {

constexpr std::string_view kReplacement = "\xEF\xBF\xBD";  // U+FFFD

bool IsContinuation(uint8_t b) { return (b & 0xC0) == 0x80; }

// The length of the sequence a lead byte starts, and the range its second byte must be in
// (Unicode 15, table 3-7: no overlongs, no surrogates, nothing above U+10FFFF); 0 if `lead`
// cannot start a sequence.
int SequenceLength(uint8_t lead, uint8_t* second_min, uint8_t* second_max) {
  *second_min = 0x80;
  *second_max = 0xBF;
  if (lead < 0x80) return 1;
  if (lead >= 0xC2 && lead <= 0xDF) return 2;
  if (lead >= 0xE0 && lead <= 0xEF) {
    if (lead == 0xE0) *second_min = 0xA0;
    if (lead == 0xED) *second_max = 0x9F;
    return 3;
  }
  if (lead >= 0xF0 && lead <= 0xF4) {
    if (lead == 0xF0) *second_min = 0x90;
    if (lead == 0xF4) *second_max = 0x8F;
    return 4;
  }
  return 0;
}

}  // namespace

void AppendValidUtf8(std::string_view bytes, std::string* pending, std::string* out, bool final) {
  std::string buffer = std::move(*pending);
  pending->clear();
  buffer.append(bytes);
  size_t i = 0;
  while (i < buffer.size()) {
    auto lead = static_cast<uint8_t>(buffer[i]);
    uint8_t lo = 0;
    uint8_t hi = 0;
    int length = SequenceLength(lead, &lo, &hi);
    if (length == 0) {
      out->append(kReplacement);
      ++i;
      continue;
    }
    // How many bytes after the lead are valid continuations for it.
    size_t good = 1;
    while (good < static_cast<size_t>(length) && i + good < buffer.size()) {
      auto b = static_cast<uint8_t>(buffer[i + good]);
      bool ok = good == 1 ? (b >= lo && b <= hi) : IsContinuation(b);
      if (!ok) break;
      ++good;
    }
    if (good == static_cast<size_t>(length)) {
      out->append(buffer, i, good);
      i += good;
    } else if (i + good == buffer.size() && !final) {
      pending->assign(buffer, i, good);  // may complete with the next piece
      return;
    } else {
      out->append(kReplacement);  // the maximal ill-formed subpart
      i += good;
    }
  }
}

std::string TextStream::Push(std::string_view bytes) {
  if (stopped_) return std::string();
  AppendValidUtf8(bytes, &pending_bytes_, &held_, /*final=*/false);
  return Release();
}

std::string TextStream::Finish() {
  if (stopped_) return std::string();
  AppendValidUtf8("", &pending_bytes_, &held_, /*final=*/true);
  std::string out = Release();
  if (!stopped_) {
    out += held_;
    held_.clear();
  }
  return out;
}

std::string TextStream::Release() {
  // The earliest complete match ends the text.
  size_t match = std::string::npos;
  for (const std::string& s : stop_) match = std::min(match, held_.find(s));
  if (match != std::string::npos) {
    stopped_ = true;
    std::string out = held_.substr(0, match);
    held_.clear();
    return out;
  }
  // Keep the longest tail that is a proper prefix of a stop sequence.
  size_t keep = 0;
  for (const std::string& s : stop_) {
    for (size_t n = std::min(s.size() - 1, held_.size()); n > keep; --n) {
      if (held_.compare(held_.size() - n, n, s, 0, n) == 0) {
        keep = n;
        break;
      }
    }
  }
  std::string out = held_.substr(0, held_.size() - keep);
  held_.erase(0, held_.size() - keep);
  return out;
}

}  // namespace cellhouse::gateway
