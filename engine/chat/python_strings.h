// Python's str methods that chat templates call (Jinja runs on Python strings): strip() with its
// Unicode whitespace, strip(chars), split() pieces. Rendering must match them byte for byte.
//
//   PyStrip("  padded\u3000")  == "padded"   // str.strip(): every Unicode whitespace
//   PyStrip("\nthink\n", "\n") == "think"    // str.strip('\n')
#ifndef CELLHOUSE_ENGINE_CHAT_PYTHON_STRINGS_H_
#define CELLHOUSE_ENGINE_CHAT_PYTHON_STRINGS_H_

#include <string>
#include <string_view>
#include <vector>

namespace cellhouse::engine::chat {

// str.isspace() for one code point: Unicode White_Space plus U+001C..U+001F (which Python counts
// as separators).
bool PyIsSpace(char32_t cp);

// Bytes of leading / trailing whitespace (str.lstrip() / rstrip() with no argument). Text that
// is not valid UTF-8 stops the scan.
size_t PyLeadingSpace(std::string_view text);
size_t PyTrailingSpace(std::string_view text);

std::string_view PyStrip(std::string_view text);
std::string_view PyLStrip(std::string_view text, std::string_view chars);
std::string_view PyRStrip(std::string_view text, std::string_view chars);
std::string_view PyStrip(std::string_view text, std::string_view chars);

// text.split(sep)[0] and text.split(sep)[-1].
std::string_view PySplitFirst(std::string_view text, std::string_view sep);
std::string_view PySplitLast(std::string_view text, std::string_view sep);

}  // namespace cellhouse::engine::chat

#endif  // CELLHOUSE_ENGINE_CHAT_PYTHON_STRINGS_H_
