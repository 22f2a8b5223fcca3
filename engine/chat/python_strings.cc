#include "engine/chat/python_strings.h"

#include "engine/tokenizer/utf8.h"

namespace cellhouse::engine::chat {

bool PyIsSpace(char32_t cp) {
  return (cp >= 0x09 && cp <= 0x0D) || (cp >= 0x1C && cp <= 0x20) || cp == 0x85 || cp == 0xA0 ||
         cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x2028 || cp == 0x2029 ||
         cp == 0x202F || cp == 0x205F || cp == 0x3000;
}

size_t PyLeadingSpace(std::string_view text) {
  size_t pos = 0;
  while (pos < text.size()) {
    const size_t n = ValidSequenceLength(text, pos);
    if (n == 0 || !PyIsSpace(DecodeSequence(text, pos, n))) break;
    pos += n;
  }
  return pos;
}

size_t PyTrailingSpace(std::string_view text) {
  size_t end = text.size();
  while (end > 0) {
    size_t start = end - 1;
    // Back to the lead byte of the last character (at most 3 continuation bytes).
    while (start > 0 && end - start < 4 &&
           (static_cast<unsigned char>(text[start]) & 0xC0U) == 0x80U) {
      --start;
    }
    const size_t n = ValidSequenceLength(text, start);
    if (n != end - start || !PyIsSpace(DecodeSequence(text, start, n))) break;
    end = start;
  }
  return text.size() - end;
}

std::string_view PyStrip(std::string_view text) {
  text.remove_prefix(PyLeadingSpace(text));
  text.remove_suffix(PyTrailingSpace(text));
  return text;
}

// `chars` is ASCII in every template we render ("\n"), so a byte test is exact.
std::string_view PyLStrip(std::string_view text, std::string_view chars) {
  const size_t first = text.find_first_not_of(chars);
  return first == std::string_view::npos ? std::string_view() : text.substr(first);
}

std::string_view PyRStrip(std::string_view text, std::string_view chars) {
  const size_t last = text.find_last_not_of(chars);
  return last == std::string_view::npos ? std::string_view() : text.substr(0, last + 1);
}

std::string_view PyStrip(std::string_view text, std::string_view chars) {
  return PyRStrip(PyLStrip(text, chars), chars);
}

std::string_view PySplitFirst(std::string_view text, std::string_view sep) {
  const size_t at = text.find(sep);
  return at == std::string_view::npos ? text : text.substr(0, at);
}

std::string_view PySplitLast(std::string_view text, std::string_view sep) {
  const size_t at = text.rfind(sep);
  return at == std::string_view::npos ? text : text.substr(at + sep.size());
}

}  // namespace cellhouse::engine::chat
