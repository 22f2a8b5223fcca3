#include "policy/byte_sizes.h"

#include <algorithm>
#include <cctype>
#include <cstdint>
#include <optional>

#include "base/str_cat.h"
#include "base/strings.h"
#include "policy/parse.h"

namespace cellhouse::policy {
namespace {

bool IsDigit(char c) { return std::isdigit(static_cast<unsigned char>(c)) != 0; }
bool IsAlnum(char c) { return std::isalnum(static_cast<unsigned char>(c)) != 0; }
bool IsIdentifierStart(char c) {
  return std::isalpha(static_cast<unsigned char>(c)) != 0 || c == '_';
}
bool IsBlank(char c) { return c == ' ' || c == '\t'; }

// A value that starts with a digit and holds a letter: a number with a unit, or a mistake. Hex
// numbers (0x...) are protobuf's to read.
bool HasUnit(std::string_view token) {
  if (token.empty() || !IsDigit(token.front())) {
    return false;
  }
  if (token.size() > 1 && token[0] == '0' && (token[1] == 'x' || token[1] == 'X')) {
    return false;
  }
  return std::any_of(token.begin(), token.end(),
                     [](char c) { return std::isalpha(static_cast<unsigned char>(c)) != 0; });
}

// The byte count `token` names, or a problem at `position`.
std::optional<uint64_t> ReadSize(std::string_view field, std::string_view token,
                                 SourcePosition position, std::vector<Problem>* problems) {
  Result<uint64_t> bytes = ParseByteSize(token, field);
  if (bytes) {
    return *bytes;
  }
  problems->push_back(
      {.position = position,
       .message = StrCat(bytes.error().message(),
                         ". Write a number of bytes, or one with a unit: K, M, G or T, each 1024 "
                         "times the one before (512M is 536870912; 512Mi, 512MB and 512MiB mean "
                         "the same). Refusing.")});
  return std::nullopt;
}

}  // namespace

void ColumnShifts::Add(int line, int column, int delta) {
  if (delta != 0) {
    shifts_.push_back({line, column, delta});
  }
}

SourcePosition ColumnShifts::ToWritten(SourcePosition rewritten) const {
  SourcePosition out = rewritten;
  for (const Shift& s : shifts_) {
    if (s.line == rewritten.line && rewritten.column >= s.column) {
      out.column -= s.delta;
    }
  }
  return out;
}

bool RewriteTextByteSizes(std::string_view content, std::string* out, ColumnShifts* shifts,
                          std::vector<Problem>* problems) {
  out->clear();
  out->reserve(content.size());
  bool ok = true;
  int line = 1;
  size_t line_start = 0;
  int line_delta = 0;  // how far rewriting moved this line's columns so far
  size_t i = 0;
  const size_t n = content.size();
  while (i < n) {
    const char c = content[i];
    if (c == '\n') {
      out->push_back(c);
      ++i;
      ++line;
      line_start = i;
      line_delta = 0;
      continue;
    }
    if (c == '#') {  // a comment, to the end of the line
      size_t end = content.find('\n', i);
      end = end == std::string_view::npos ? n : end;
      out->append(content.substr(i, end - i));
      i = end;
      continue;
    }
    if (c == '"' || c == '\'') {  // a string, with escapes; text format strings end at the line
      size_t j = i + 1;
      while (j < n && content[j] != c && content[j] != '\n') {
        j += content[j] == '\\' && j + 1 < n && content[j + 1] != '\n' ? 2 : 1;
      }
      if (j < n && content[j] == c) {
        ++j;
      }
      out->append(content.substr(i, j - i));
      i = j;
      continue;
    }
    if (!IsIdentifierStart(c)) {
      out->push_back(c);
      ++i;
      continue;
    }
    size_t name_end = i;
    while (name_end < n && (IsAlnum(content[name_end]) || content[name_end] == '_')) {
      ++name_end;
    }
    const std::string_view name = content.substr(i, name_end - i);
    out->append(name);
    i = name_end;
    if (!name.ends_with("_bytes")) {
      continue;
    }
    size_t j = i;
    while (j < n && IsBlank(content[j])) {
      ++j;
    }
    if (j >= n || content[j] != ':') {
      continue;
    }
    ++j;
    while (j < n && IsBlank(content[j])) {
      ++j;
    }
    size_t k = j;
    while (k < n && (IsAlnum(content[k]) || content[k] == '.')) {
      ++k;
    }
    const std::string_view token = content.substr(j, k - j);
    if (!HasUnit(token)) {
      continue;
    }
    out->append(content.substr(i, j - i));  // ':' and the blanks as written
    const SourcePosition at{.line = line, .column = static_cast<int>(j - line_start) + 1};
    std::optional<uint64_t> bytes = ReadSize(name, token, at, problems);
    if (!bytes) {
      ok = false;
      out->append(token);
    } else {
      const std::string number = std::to_string(*bytes);
      const int delta = static_cast<int>(number.size()) - static_cast<int>(token.size());
      out->append(number);
      shifts->Add(line, static_cast<int>(k - line_start) + 1 + line_delta + delta, delta);
      line_delta += delta;
    }
    i = k;
  }
  return ok;
}

bool RewriteJsonByteSizes(std::string_view content, std::string* out,
                          std::vector<Problem>* problems) {
  out->clear();
  out->reserve(content.size());
  bool ok = true;
  int line = 1;
  size_t line_start = 0;
  size_t copied = 0;  // content[0, copied) is in `out` already
  // The end of the string that starts at `open` (the index after its closing quote).
  auto string_end = [&](size_t open) {
    size_t j = open + 1;
    while (j < content.size() && content[j] != '"') {
      j += content[j] == '\\' && j + 1 < content.size() ? 2 : 1;
    }
    return std::min(j + 1, content.size());
  };
  size_t i = 0;
  while (i < content.size()) {
    const char c = content[i];
    if (c == '\n') {
      ++line;
      line_start = i + 1;
    }
    if (c != '"') {
      ++i;
      continue;
    }
    const size_t key_end = string_end(i);
    const std::string_view key = content.substr(i + 1, key_end - i - 2);
    size_t j = key_end;
    while (j < content.size() && (IsBlank(content[j]) || content[j] == '\r')) {
      ++j;
    }
    if (j >= content.size() || content[j] != ':') {
      i = key_end;  // a value, not a key
      continue;
    }
    ++j;
    while (j < content.size() && (IsBlank(content[j]) || content[j] == '\r')) {
      ++j;
    }
    i = j;
    if (j >= content.size() || content[j] != '"' ||
        !(key.ends_with("Bytes") || key.ends_with("_bytes"))) {
      continue;
    }
    const size_t value_end = string_end(j);
    const std::string_view value = content.substr(j + 1, value_end - j - 2);
    i = value_end;
    if (!HasUnit(value)) {
      continue;
    }
    const SourcePosition at{.line = line, .column = static_cast<int>(j - line_start) + 1};
    std::optional<uint64_t> bytes = ReadSize(JsonNameToFieldName(key), value, at, problems);
    if (!bytes) {
      ok = false;
      continue;
    }
    out->append(content.substr(copied, j + 1 - copied));  // up to the value's opening quote
    out->append(std::to_string(*bytes));
    copied = value_end - 1;  // its closing quote onwards
  }
  out->append(content.substr(copied));
  return ok;
}

}  // namespace cellhouse::policy
