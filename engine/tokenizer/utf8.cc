#include "engine/tokenizer/utf8.h"

#include <algorithm>
#include <cstring>

namespace cellhouse::engine {
namespace {

uint8_t Byte(std::string_view text, size_t pos) { return static_cast<uint8_t>(text[pos]); }

// Unicode 15, Table 3-7 (well-formed UTF-8 byte sequences): the length a lead byte announces
// (0: not a lead byte) and the range its second byte must fall in; later bytes are 80..BF.
struct Lead {
  size_t length;
  uint8_t second_low;
  uint8_t second_high;
};

Lead LeadOf(uint8_t b) {
  if (b < 0x80) return {1, 0, 0};
  if (b >= 0xC2 && b <= 0xDF) return {2, 0x80, 0xBF};
  if (b == 0xE0) return {3, 0xA0, 0xBF};
  if (b == 0xED) return {3, 0x80, 0x9F};  // no surrogates
  if (b >= 0xE1 && b <= 0xEF) return {3, 0x80, 0xBF};
  if (b == 0xF0) return {4, 0x90, 0xBF};
  if (b >= 0xF1 && b <= 0xF3) return {4, 0x80, 0xBF};
  if (b == 0xF4) return {4, 0x80, 0x8F};  // nothing above U+10FFFF
  return {0, 0, 0};
}

// How many bytes from pos match a valid sequence's pattern (at most the lead's length).
size_t MatchingPrefix(std::string_view text, size_t pos, const Lead& lead) {
  size_t n = 1;
  while (n < lead.length && pos + n < text.size()) {
    const uint8_t b = Byte(text, pos + n);
    const uint8_t low = n == 1 ? lead.second_low : 0x80;
    const uint8_t high = n == 1 ? lead.second_high : 0xBF;
    if (b < low || b > high) break;
    ++n;
  }
  return n;
}

}  // namespace

size_t ValidSequenceLength(std::string_view text, size_t pos) {
  if (pos >= text.size()) return 0;
  const Lead lead = LeadOf(Byte(text, pos));
  if (lead.length == 0) return 0;
  return MatchingPrefix(text, pos, lead) == lead.length ? lead.length : 0;
}

size_t MaximalSubpartLength(std::string_view text, size_t pos) {
  const Lead lead = LeadOf(Byte(text, pos));
  if (lead.length == 0) return 1;
  return MatchingPrefix(text, pos, lead);
}

size_t FirstInvalidUtf8(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    // ASCII runs dominate real text: skip them eight bytes at a time.
    while (pos + 8 <= text.size()) {
      uint64_t word;
      std::memcpy(&word, text.data() + pos, sizeof(word));
      if ((word & 0x8080808080808080ULL) != 0) break;
      pos += 8;
    }
    if (pos >= text.size()) break;
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0) return pos;
    pos += n;
  }
  return text.size();
}

Status CheckUtf8(std::string_view text, std::string_view what) {
  const size_t bad = FirstInvalidUtf8(text);
  if (bad == text.size()) return Ok();
  return Error(std::string(what) + " is not valid UTF-8 (byte " + std::to_string(bad) + " of " +
               std::to_string(text.size()) + ")");
}

char32_t DecodeSequence(std::string_view text, size_t pos, size_t length) {
  const uint8_t b0 = Byte(text, pos);
  if (length == 1) return b0;
  char32_t cp = b0 & (0x7FU >> length);
  for (size_t i = 1; i < length; ++i) cp = (cp << 6) | (Byte(text, pos + i) & 0x3FU);
  return cp;
}

void AppendUtf8(char32_t cp, std::string& out) {
  if (cp < 0x80) {
    out.push_back(static_cast<char>(cp));
  } else if (cp < 0x800) {
    out.push_back(static_cast<char>(0xC0 | (cp >> 6)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else if (cp < 0x10000) {
    out.push_back(static_cast<char>(0xE0 | (cp >> 12)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  } else {
    out.push_back(static_cast<char>(0xF0 | (cp >> 18)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 12) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | ((cp >> 6) & 0x3F)));
    out.push_back(static_cast<char>(0x80 | (cp & 0x3F)));
  }
}

std::string ReplaceInvalidUtf8(std::string_view bytes) {
  std::string out;
  out.reserve(bytes.size());
  Utf8Stream stream;
  stream.Append(bytes, out);
  stream.Finish(out);
  return out;
}

void Utf8Stream::Append(std::string_view bytes, std::string& out) {
  // Complete (or give up on) a kept sequence first, one byte at a time.
  while (pending_size_ > 0 && !bytes.empty()) {
    pending_[pending_size_++] = bytes.front();
    bytes.remove_prefix(1);
    const std::string_view seq(pending_.data(), pending_size_);
    if (ValidSequenceLength(seq, 0) == pending_size_) {
      out.append(seq);
      pending_size_ = 0;
      break;
    }
    const size_t prefix = MaximalSubpartLength(seq, 0);
    if (prefix == pending_size_) continue;  // still a valid beginning: wait for more
    // The new byte broke the sequence: replace what came before it and look at it afresh.
    out.append(kReplacementCharacter);
    bytes = std::string_view(bytes.data() - 1, bytes.size() + 1);
    pending_size_ = 0;
  }
  size_t pos = 0;
  size_t run = 0;  // start of the valid text not yet appended
  while (pos < bytes.size()) {
    const size_t n = ValidSequenceLength(bytes, pos);
    if (n > 0) {
      pos += n;
      continue;
    }
    out.append(bytes.substr(run, pos - run));
    const size_t prefix = MaximalSubpartLength(bytes, pos);
    if (pos + prefix == bytes.size() && LeadOf(Byte(bytes, pos)).length > prefix) {
      std::memcpy(pending_.data(), bytes.data() + pos, prefix);  // the next piece may finish it
      pending_size_ = prefix;
      return;
    }
    out.append(kReplacementCharacter);
    pos += prefix;
    run = pos;
  }
  out.append(bytes.substr(run));
}

void Utf8Stream::Finish(std::string& out) {
  if (pending_size_ > 0) out.append(kReplacementCharacter);
  pending_size_ = 0;
}

}  // namespace cellhouse::engine
