#include "policy/parse.h"

#include <google/protobuf/descriptor.h>
#include <google/protobuf/io/tokenizer.h>
#include <google/protobuf/text_format.h>
#include <google/protobuf/util/json_util.h>

#include <algorithm>
#include <cctype>
#include <set>

#include "base/str_cat.h"
#include "base/strings.h"
#include "policy/byte_sizes.h"

namespace cellhouse::policy {
namespace {

using google::protobuf::Descriptor;
using google::protobuf::EnumDescriptor;
using google::protobuf::FieldDescriptor;
using google::protobuf::Message;
using google::protobuf::Reflection;
using google::protobuf::TextFormat;

// Nesting deeper than any policy or profile needs is refused before protobuf sees it.
constexpr int kMaxJsonDepth = 32;
// Levenshtein distance up to which a field name counts as a likely typo.
constexpr size_t kMaxSuggestionDistance = 3;

size_t EditDistance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) {
    row[j] = j;
  }
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t diagonal = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t above = row[j];
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, diagonal + (a[i - 1] == b[j - 1] ? 0 : 1)});
      diagonal = above;
    }
  }
  return row[b.size()];
}

// " Did you mean 'name'? Fields of Policy: a, b, c." for an unknown field `name` of `type`.
std::string SuggestField(const Descriptor* type, std::string_view name) {
  if (type == nullptr) {
    return "";
  }
  std::string snake = JsonNameToFieldName(name);
  std::string best;
  size_t best_distance = kMaxSuggestionDistance + 1;
  std::string all;
  for (int i = 0; i < type->field_count(); ++i) {
    const std::string& f = type->field(i)->name();
    all += StrCat(all.empty() ? "" : ", ", f);
    size_t d = EditDistance(snake, f);
    if (d < best_distance) {
      best_distance = d;
      best = f;
    }
  }
  std::string out;
  if (!best.empty()) {
    out += StrCat(" Did you mean '", best, "'?");
  }
  out += StrCat(" The fields of ", type->name(), " are: ", all, ".");
  return out;
}

std::string EnumValues(const EnumDescriptor* type) {
  std::string all;
  for (int i = 0; i < type->value_count(); ++i) {
    if (type->value(i)->number() == 0) {
      continue;  // *_UNSPECIFIED: never a valid choice
    }
    all += StrCat(all.empty() ? "" : ", ", type->value(i)->name());
  }
  return all;
}

// Any enum field called `field_name` in `type` or the messages below it (text format errors
// name the field but not its message).
const EnumDescriptor* FindEnumField(const Descriptor* type, std::string_view field_name,
                                    std::set<const Descriptor*>* seen) {
  if (type == nullptr || !seen->insert(type).second) {
    return nullptr;
  }
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (f->name() == field_name && f->enum_type() != nullptr) {
      return f->enum_type();
    }
  }
  for (int i = 0; i < type->field_count(); ++i) {
    const FieldDescriptor* f = type->field(i);
    if (f->message_type() == nullptr) {
      continue;
    }
    if (const EnumDescriptor* e = FindEnumField(f->message_type(), field_name, seen)) {
      return e;
    }
  }
  return nullptr;
}

// Text between the first two '"' after `after` in `message`.
std::string QuotedAfter(std::string_view message, std::string_view after) {
  size_t at = message.find(after);
  if (at == std::string_view::npos) {
    return "";
  }
  size_t open = message.find('"', at + after.size());
  if (open == std::string_view::npos) {
    return "";
  }
  size_t close = message.find('"', open + 1);
  if (close == std::string_view::npos) {
    return "";
  }
  return std::string(message.substr(open + 1, close - open - 1));
}

// Adds what to change to protobuf's text format messages.
std::string ExplainTextError(const Descriptor* root, const std::string& message) {
  if (message.find("has no field named") != std::string::npos) {
    const Descriptor* type =
        root->file()->pool()->FindMessageTypeByName(QuotedAfter(message, "Message type"));
    return message + SuggestField(type, QuotedAfter(message, "has no field named"));
  }
  if (message.find("Unknown enumeration value") != std::string::npos) {
    std::set<const Descriptor*> seen;
    const EnumDescriptor* e = FindEnumField(root, QuotedAfter(message, "for field"), &seen);
    if (e != nullptr) {
      return StrCat(message, " Expected one of: ", EnumValues(e), ".");
    }
  }
  if (message.find("Expected identifier") != std::string::npos ||
      message.find("Expected \":\"") != std::string::npos) {
    return message + " Each line is `field: value` or `field { ... }`; comments start with #.";
  }
  return message;
}

// Line `line` (0-based) of `content`, trimmed and shortened, for quoting in a message.
std::string LineOf(std::string_view content, int line) {
  constexpr size_t kMaxQuoted = 100;
  for (int i = 0; i < line; ++i) {
    size_t nl = content.find('\n');
    if (nl == std::string_view::npos) {
      return "";
    }
    content.remove_prefix(nl + 1);
  }
  std::string_view text = Trim(content.substr(0, content.find('\n')));
  if (text.size() > kMaxQuoted) {
    text = text.substr(0, kMaxQuoted);
  }
  return std::string(text);
}

class TextErrorCollector : public google::protobuf::io::ErrorCollector {
 public:
  // `content` is the file as written, `shifts` where rewriting byte sizes moved its columns.
  TextErrorCollector(const Descriptor* root, std::string_view content, const ColumnShifts& shifts,
                     std::vector<Problem>* problems)
      : root_(root), content_(content), shifts_(shifts), problems_(problems) {}
  void AddError(int line, google::protobuf::io::ColumnNumber column,
                const std::string& message) override {
    std::string explained = ExplainTextError(root_, message);
    if (line >= 0) {
      std::string text = LineOf(content_, line);
      if (!text.empty()) {
        explained += StrCat(" (the line reads: ", Quote(text), ")");
      }
    }
    // The tokenizer counts from 0; people and editors from 1. Line -1 means "at the end".
    SourcePosition at{.line = line < 0 ? 0 : line + 1, .column = column < 0 ? 0 : column + 1};
    problems_->push_back(Problem{.position = line < 0 ? at : shifts_.ToWritten(at),
                                 .message = std::move(explained)});
  }
  void AddWarning(int line, google::protobuf::io::ColumnNumber column,
                  const std::string& message) override {
    // Warnings (deprecated fields) are refusals too: a policy means exactly what it says.
    AddError(line, column, message);
  }

 private:
  const Descriptor* root_;
  std::string_view content_;
  const ColumnShifts& shifts_;
  std::vector<Problem>* problems_;
};

void MapTextLocations(const Message& message, const TextFormat::ParseInfoTree* tree,
                      const std::string& prefix, const ColumnShifts& shifts, SourceMap* map) {
  const Reflection* reflection = message.GetReflection();
  std::vector<const FieldDescriptor*> fields;
  reflection->ListFields(message, &fields);
  for (const FieldDescriptor* f : fields) {
    const std::string path = prefix.empty() ? f->name() : StrCat(prefix, ".", f->name());
    const int count = f->is_repeated() ? reflection->FieldSize(message, f) : 1;
    for (int i = 0; i < count; ++i) {
      const int index = f->is_repeated() ? i : -1;
      const std::string item = f->is_repeated() ? StrCat(path, "[", i, "]") : path;
      TextFormat::ParseLocation loc = tree->GetLocation(f, index);
      if (loc.line >= 0) {
        SourcePosition pos = shifts.ToWritten({.line = loc.line + 1, .column = loc.column + 1});
        if (i == 0) {
          map->Add(path, pos);
        }
        map->Add(item, pos);
      }
      if (f->cpp_type() != FieldDescriptor::CPPTYPE_MESSAGE) {
        continue;
      }
      const TextFormat::ParseInfoTree* nested = tree->GetTreeForNested(f, index);
      if (nested == nullptr) {
        continue;
      }
      const Message& sub = f->is_repeated() ? reflection->GetRepeatedMessage(message, f, i)
                                            : reflection->GetMessage(message, f);
      MapTextLocations(sub, nested, item, shifts, map);
    }
  }
}

// ---- A strict JSON scanner (RFC 8259) that records where each key is. ----

class JsonScanner {
 public:
  JsonScanner(std::string_view text, SourceMap* map) : text_(text), map_(map) {}

  // On failure, `error_` and `error_at_` say what and where.
  bool Scan() {
    SkipSpace();
    if (!Value("", 0)) {
      return false;
    }
    SkipSpace();
    if (pos_ != text_.size()) {
      return Fail("unexpected text after the end of the JSON value");
    }
    return true;
  }
  const std::string& error() const { return error_; }
  SourcePosition ErrorAt() const { return error_at_; }

 private:
  SourcePosition Here() const {
    return {.line = line_, .column = static_cast<int>(pos_ - line_start_) + 1};
  }
  bool Fail(std::string why) {
    if (error_.empty()) {
      error_ = std::move(why);
      error_at_ = Here();
    }
    return false;
  }
  void SkipSpace() {
    while (pos_ < text_.size()) {
      char c = text_[pos_];
      if (c == '\n') {
        ++line_;
        line_start_ = ++pos_;
      } else if (c == ' ' || c == '\t' || c == '\r') {
        ++pos_;
      } else {
        break;
      }
    }
  }
  bool Value(const std::string& path, int depth) {
    if (depth > kMaxJsonDepth) {
      return Fail("JSON nested too deeply");
    }
    if (pos_ >= text_.size()) {
      return Fail("unexpected end of file: a value is missing");
    }
    char c = text_[pos_];
    if (c == '{') {
      return Object(path, depth);
    }
    if (c == '[') {
      return Array(path, depth);
    }
    if (c == '"') {
      return String(nullptr);
    }
    if (c == '-' || (c >= '0' && c <= '9')) {
      return Number();
    }
    for (std::string_view word : {"true", "false", "null"}) {
      if (text_.substr(pos_, word.size()) == word) {
        pos_ += word.size();
        return true;
      }
    }
    return Fail("expected a value (an object, array, string, number, true, false or null)");
  }
  bool Object(const std::string& path, int depth) {
    ++pos_;  // '{'
    std::set<std::string> keys;
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == '}') {
      ++pos_;
      return true;
    }
    while (true) {
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != '"') {
        return Fail("expected a key in double quotes (no trailing comma before '}')");
      }
      SourcePosition key_at = Here();
      std::string key;
      if (!String(&key)) {
        return false;
      }
      if (!keys.insert(key).second) {
        error_at_ = key_at;
        error_ = StrCat("duplicate key ", Quote(key), ": each field may appear once");
        return false;
      }
      std::string field = JsonNameToFieldName(key);
      std::string child = path.empty() ? field : StrCat(path, ".", field);
      map_->Add(child, key_at);
      SkipSpace();
      if (pos_ >= text_.size() || text_[pos_] != ':') {
        return Fail("expected ':' after the key");
      }
      ++pos_;
      SkipSpace();
      if (!Value(child, depth + 1)) {
        return false;
      }
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        continue;
      }
      if (pos_ < text_.size() && text_[pos_] == '}') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or '}' after a value");
    }
  }
  bool Array(const std::string& path, int depth) {
    ++pos_;  // '['
    SkipSpace();
    if (pos_ < text_.size() && text_[pos_] == ']') {
      ++pos_;
      return true;
    }
    for (int index = 0;; ++index) {
      SkipSpace();
      std::string item = StrCat(path, "[", index, "]");
      map_->Add(item, Here());
      if (!Value(item, depth + 1)) {
        return false;
      }
      SkipSpace();
      if (pos_ < text_.size() && text_[pos_] == ',') {
        ++pos_;
        SkipSpace();
        if (pos_ < text_.size() && text_[pos_] == ']') {
          return Fail("trailing comma before ']'");
        }
        continue;
      }
      if (pos_ < text_.size() && text_[pos_] == ']') {
        ++pos_;
        return true;
      }
      return Fail("expected ',' or ']' after an array element");
    }
  }
  // Reads a string; decodes it into `out` when given (keys are compared decoded).
  bool String(std::string* out) {
    ++pos_;  // '"'
    while (pos_ < text_.size()) {
      auto c = static_cast<unsigned char>(text_[pos_]);
      if (c == '"') {
        ++pos_;
        return true;
      }
      if (c < 0x20) {
        return Fail("control character inside a string (escape it, e.g. \\n)");
      }
      if (c != '\\') {
        if (out != nullptr) {
          out->push_back(static_cast<char>(c));
        }
        ++pos_;
        continue;
      }
      if (pos_ + 1 >= text_.size()) {
        break;
      }
      char e = text_[pos_ + 1];
      static constexpr std::string_view kSimple = "\"\\/bfnrt";
      static constexpr std::string_view kDecoded = "\"\\/\b\f\n\r\t";
      size_t simple = kSimple.find(e);
      if (simple != std::string_view::npos) {
        if (out != nullptr) {
          out->push_back(kDecoded[simple]);
        }
        pos_ += 2;
        continue;
      }
      if (e != 'u') {
        return Fail("invalid escape in a string");
      }
      if (pos_ + 6 > text_.size()) {
        break;
      }
      for (size_t k = 2; k < 6; ++k) {
        if (!std::isxdigit(static_cast<unsigned char>(text_[pos_ + k]))) {
          return Fail("invalid \\u escape: four hex digits expected");
        }
      }
      // Keys that need \u escapes are never field names; keep the escape as written.
      if (out != nullptr) {
        out->append(text_.substr(pos_, 6));
      }
      pos_ += 6;
    }
    return Fail("unterminated string");
  }
  bool Number() {
    size_t start = pos_;
    if (text_[pos_] == '-') {
      ++pos_;
    }
    auto digits = [&] {
      size_t from = pos_;
      while (pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9') {
        ++pos_;
      }
      return pos_ - from;
    };
    size_t int_start = pos_;
    if (digits() == 0) {
      return Fail("invalid number");
    }
    if (pos_ - int_start > 1 && text_[int_start] == '0') {
      return Fail("leading zeros in a number");
    }
    if (pos_ < text_.size() && text_[pos_] == '.') {
      ++pos_;
      if (digits() == 0) {
        return Fail("invalid number: digits expected after '.'");
      }
    }
    if (pos_ < text_.size() && (text_[pos_] == 'e' || text_[pos_] == 'E')) {
      ++pos_;
      if (pos_ < text_.size() && (text_[pos_] == '+' || text_[pos_] == '-')) {
        ++pos_;
      }
      if (digits() == 0) {
        return Fail("invalid number: digits expected in the exponent");
      }
    }
    return pos_ > start;
  }

  std::string_view text_;
  SourceMap* map_;
  size_t pos_ = 0;
  int line_ = 1;
  size_t line_start_ = 0;
  std::string error_;
  SourcePosition error_at_;
};

// The message type at `path` below `root` ("cgroup" -> Cgroup), or nullptr.
const FieldDescriptor* FieldAtPath(const Descriptor* root, std::string_view path) {
  const FieldDescriptor* field = nullptr;
  const Descriptor* type = root;
  for (std::string_view part : Split(path, '.')) {
    size_t bracket = part.find('[');
    if (bracket != std::string_view::npos) {
      part = part.substr(0, bracket);
    }
    if (type == nullptr) {
      return nullptr;
    }
    field = type->FindFieldByName(std::string(part));
    if (field == nullptr) {
      return nullptr;
    }
    type = field->message_type();
  }
  return field;
}

// Turns protobuf's JSON error ("(cgroup) memoryMaxByte: Cannot find field.") into a problem
// naming the field, its position and what to write instead.
Problem ExplainJsonError(const Descriptor* root, std::string_view message, const SourceMap& map) {
  std::string path;
  std::string_view rest = message;
  if (!rest.empty() && rest.front() == '(') {
    size_t close = rest.find(')');
    if (close != std::string_view::npos) {
      path = std::string(rest.substr(1, close - 1));
      rest = Trim(rest.substr(close + 1));
    }
  }
  Problem p{.field = path, .message = std::string(rest)};
  const size_t cannot = rest.find(": Cannot find field.");
  if (cannot != std::string_view::npos) {
    std::string key(rest.substr(0, cannot));
    const Descriptor* type = root;
    if (!path.empty()) {
      const FieldDescriptor* f = FieldAtPath(root, path);
      type = f != nullptr ? f->message_type() : nullptr;
    }
    p.field = path.empty() ? JsonNameToFieldName(key) : StrCat(path, ".", JsonNameToFieldName(key));
    p.message = StrCat("unknown field ", Quote(key), ".", SuggestField(type, key));
  } else if (rest.find("invalid value") != std::string_view::npos) {
    const FieldDescriptor* f = FieldAtPath(root, path);
    if (f != nullptr && f->enum_type() != nullptr) {
      p.message = StrCat(rest, ". Expected one of: ", EnumValues(f->enum_type()), ".");
    } else if (f != nullptr) {
      p.message = StrCat(rest, ". Expected a ", f->type_name(), " value.");
    }
  }
  if (p.field.empty() && p.message.empty()) {
    p.message = std::string(message);
  }
  p.position = map.Find(p.field);
  return p;
}

}  // namespace

std::string JsonNameToFieldName(std::string_view json_name) {
  std::string out;
  out.reserve(json_name.size() + 4);
  for (char c : json_name) {
    if (c >= 'A' && c <= 'Z') {
      out.push_back('_');
      out.push_back(static_cast<char>(c - 'A' + 'a'));
    } else {
      out.push_back(c);
    }
  }
  return out;
}

bool ParseTextMessage(std::string_view content, Message* message, SourceMap* map,
                      std::vector<Problem>* problems) {
  const size_t before = problems->size();
  std::string rewritten;
  ColumnShifts shifts;
  if (!RewriteTextByteSizes(content, &rewritten, &shifts, problems)) {
    return false;
  }
  TextErrorCollector collector(message->GetDescriptor(), content, shifts, problems);
  TextFormat::Parser parser;
  parser.RecordErrorsTo(&collector);
  TextFormat::ParseInfoTree tree;
  parser.WriteLocationsTo(&tree);
  parser.AllowUnknownField(false);
  parser.AllowFieldNumber(false);
  parser.SetRecursionLimit(kMaxJsonDepth);
  const bool ok = parser.ParseFromString(rewritten, message);
  if (!ok && problems->size() == before) {
    problems->push_back({.message = "the file is not valid protobuf text format"});
  }
  if (!ok || problems->size() != before) {
    return false;
  }
  MapTextLocations(*message, &tree, "", shifts, map);
  return true;
}

bool ParseJsonMessage(std::string_view content, Message* message, SourceMap* map,
                      std::vector<Problem>* problems) {
  JsonScanner scanner(content, map);
  if (!scanner.Scan()) {
    problems->push_back({.position = scanner.ErrorAt(), .message = scanner.error()});
    return false;
  }
  std::string_view trimmed = Trim(content);
  if (trimmed.empty() || trimmed.front() != '{') {
    problems->push_back({.position = {1, 1}, .message = "expected a JSON object ({ ... })"});
    return false;
  }
  // Positions were recorded on the file as written; protobuf reads it with byte sizes rewritten.
  std::string rewritten;
  if (!RewriteJsonByteSizes(content, &rewritten, problems)) {
    return false;
  }
  google::protobuf::util::JsonParseOptions options;
  options.ignore_unknown_fields = false;
  auto status = google::protobuf::util::JsonStringToMessage(rewritten, message, options);
  if (!status.ok()) {
    problems->push_back(
        ExplainJsonError(message->GetDescriptor(), status.message().as_string(), *map));
    return false;
  }
  return true;
}

}  // namespace cellhouse::policy
