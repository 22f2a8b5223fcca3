// UTF-8 helpers for the tokenizers and for streaming generated text: checking text before a
// regular expression sees it, splitting it into characters, and turning a stream of token bytes
// into text that is always valid UTF-8.
//
//   CH_RETURN_IF_ERROR(CheckUtf8(text, "the message"));
//   Utf8Stream stream;
//   std::string out;
//   for (int32_t token : generated) stream.Append(tokenizer.Decode(prev, token), out);
//   stream.Finish(out);   // a sequence cut off at the end becomes U+FFFD
//
// A token's bytes need not end on a character boundary (byte-fallback and byte-level tokens
// split characters), so Append keeps an incomplete sequence at the end until the next piece
// completes it. A sequence that can no longer become valid becomes U+FFFD at once, one
// replacement per maximal invalid subpart (the WHATWG and Unicode §3.9 practice, as Python and
// browsers decode).
#ifndef CELLHOUSE_ENGINE_TOKENIZER_UTF8_H_
#define CELLHOUSE_ENGINE_TOKENIZER_UTF8_H_

#include <array>
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "base/result.h"

namespace cellhouse::engine {

inline constexpr std::string_view kReplacementCharacter = "\xEF\xBF\xBD";  // U+FFFD

// Bytes of the valid UTF-8 sequence starting at text[pos] (1..4), or 0 when none starts there
// (a stray continuation byte, an overlong form, a surrogate, a value above U+10FFFF, or a
// sequence cut off by the end of `text`).
size_t ValidSequenceLength(std::string_view text, size_t pos);

// Bytes of the longest prefix of text[pos..] that is a prefix of some valid sequence, at least 1:
// the "maximal subpart" an invalid sequence is replaced as a whole.
size_t MaximalSubpartLength(std::string_view text, size_t pos);

// The offset of the first byte that is not part of valid UTF-8, or text.size().
size_t FirstInvalidUtf8(std::string_view text);

// Ok for valid UTF-8; otherwise an error naming `what` and the byte offset.
Status CheckUtf8(std::string_view text, std::string_view what);

// The code point of the valid sequence at text[pos] of `length` bytes (ValidSequenceLength).
char32_t DecodeSequence(std::string_view text, size_t pos, size_t length);

// Appends the UTF-8 encoding of `cp` (which must be a Unicode scalar value).
void AppendUtf8(char32_t cp, std::string& out);

// Invalid sequences replaced by U+FFFD (maximal subparts), valid text unchanged.
std::string ReplaceInvalidUtf8(std::string_view bytes);

class Utf8Stream {
 public:
  // Appends to `out` the valid text `bytes` completes, replacements for invalid sequences, and
  // keeps at most 3 bytes of a sequence that the next bytes may still complete.
  void Append(std::string_view bytes, std::string& out);
  // End of the stream: a kept incomplete sequence becomes U+FFFD.
  void Finish(std::string& out);
  bool has_pending() const { return pending_size_ > 0; }
  void Reset() { pending_size_ = 0; }

 private:
  std::array<char, 4> pending_{};
  size_t pending_size_ = 0;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_TOKENIZER_UTF8_H_
