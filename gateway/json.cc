#include "gateway/json.h"

#include <cmath>
#include <limits>
#include <vector>

namespace cellhouse::gateway {
namespace {

// Builds the document from nlohmann's SAX events (its own DOM builder has no depth limit).
// Returning false from any event stops the parse there.
class BoundedBuilder {
 public:
  explicit BoundedBuilder(const JsonLimits& limits) : limits_(limits) {}

  bool null() { return Put(Json(nullptr)); }
  bool boolean(bool value) { return Put(Json(value)); }
  bool number_integer(Json::number_integer_t value) { return Put(Json(value)); }
  bool number_unsigned(Json::number_unsigned_t value) { return Put(Json(value)); }
  bool number_float(Json::number_float_t value, const Json::string_t& text) {
    // nlohmann reports an overflowing literal as a parse error itself ("number overflow");
    // this is the guard should that change.
    if (!std::isfinite(value)) return Fail("number overflow parsing " + Shorten(text));
    return Put(Json(value));
  }
  bool string(Json::string_t& value) { return Put(Json(std::move(value))); }
  bool binary(Json::binary_t& /*value*/) { return Fail("binary values are not JSON"); }
  bool start_object(std::size_t /*elements*/) { return Open(Json::object()); }
  bool key(Json::string_t& value) {
    key_ = std::move(value);
    return true;
  }
  bool end_object() { return Close(); }
  bool start_array(std::size_t /*elements*/) { return Open(Json::array()); }
  bool end_array() { return Close(); }
  bool parse_error(std::size_t position, const std::string& /*last_token*/,
                   const nlohmann::detail::exception& error) {
    if (error_.empty()) {
      // nlohmann's text ("[json.exception.parse_error.101] parse error at line 1, column 3:
      // syntax error while parsing value - invalid literal; last read: 'x'") without its tag.
      std::string what = error.what();
      size_t tag_end = what.find("] ");
      if (tag_end != std::string::npos) what = what.substr(tag_end + 2);
      error_ = "invalid JSON at byte " + std::to_string(position) + ": " + what;
    }
    return false;
  }

  Json TakeRoot() { return std::move(root_); }
  const std::string& error() const { return error_; }

 private:
  static std::string Shorten(const std::string& text) {
    return text.size() <= 24 ? text : text.substr(0, 20) + "...";
  }

  bool Fail(std::string message) {
    error_ = std::move(message);
    return false;
  }

  // Places a value in the enclosing container (or as the root); returns where it went.
  Json* Place(Json value) {
    if (stack_.empty()) {
      root_ = std::move(value);
      return &root_;
    }
    Json* top = stack_.back();
    if (top->is_array()) {
      top->push_back(std::move(value));
      return &top->back();
    }
    // Objects: a repeated key keeps the last value, as nlohmann's own parser does.
    Json& slot = (*top)[key_];
    slot = std::move(value);
    return &slot;
  }

  bool Put(Json value) {
    Place(std::move(value));
    return true;
  }

  bool Open(Json container) {
    if (stack_.size() >= limits_.max_depth) {
      return Fail("JSON nested deeper than " + std::to_string(limits_.max_depth) + " levels");
    }
    stack_.push_back(Place(std::move(container)));
    return true;
  }

  bool Close() {
    stack_.pop_back();
    return true;
  }

  JsonLimits limits_;
  Json root_;
  std::vector<Json*> stack_;
  std::string key_;
  std::string error_;
};

}  // namespace

Result<Json> ParseJson(std::string_view text, const JsonLimits& limits) {
  BoundedBuilder builder(limits);
  bool ok = false;
  // sax_parse reports malformed input through parse_error, not by throwing; the handler above
  // never throws either. The catch is the adapter's one guard against a library change.
  try {
    ok = Json::sax_parse(text.begin(), text.end(), &builder, Json::input_format_t::json,
                         /*strict=*/true, /*ignore_comments=*/false);
  } catch (const std::exception& e) {
    return Error(std::string("invalid JSON: ") + e.what());
  }
  if (!ok) {
    return Error(builder.error().empty() ? std::string("invalid JSON") : builder.error());
  }
  return builder.TakeRoot();
}

std::string DumpJson(const Json& value) {
  try {
    return value.dump(-1, ' ', /*ensure_ascii=*/false, Json::error_handler_t::replace);
  } catch (const std::exception& e) {
    // Unreachable with error_handler_t::replace; an empty body is a clear failure downstream.
    return std::string();
  }
}

const Json* Member(const Json& value, std::string_view key) {
  if (!value.is_object()) return nullptr;
  auto it = value.find(key);
  return it == value.end() ? nullptr : &*it;
}

std::optional<std::string_view> AsString(const Json& value) {
  if (const auto* s = value.get_ptr<const Json::string_t*>()) return std::string_view(*s);
  return std::nullopt;
}

std::optional<bool> AsBool(const Json& value) {
  if (const auto* b = value.get_ptr<const Json::boolean_t*>()) return *b;
  return std::nullopt;
}

std::optional<double> AsNumber(const Json& value) {
  if (const auto* f = value.get_ptr<const Json::number_float_t*>()) return *f;
  if (const auto* i = value.get_ptr<const Json::number_integer_t*>()) {
    return static_cast<double>(*i);
  }
  if (const auto* u = value.get_ptr<const Json::number_unsigned_t*>()) {
    return static_cast<double>(*u);
  }
  return std::nullopt;
}

std::optional<int64_t> AsInteger(const Json& value) {
  if (const auto* i = value.get_ptr<const Json::number_integer_t*>()) return *i;
  if (const auto* u = value.get_ptr<const Json::number_unsigned_t*>()) {
    if (*u > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) return std::nullopt;
    return static_cast<int64_t>(*u);
  }
  return std::nullopt;
}

std::string_view TypeName(const Json& value) {
  switch (value.type()) {
    case Json::value_t::null:
      return "null";
    case Json::value_t::object:
      return "object";
    case Json::value_t::array:
      return "array";
    case Json::value_t::string:
      return "string";
    case Json::value_t::boolean:
      return "boolean";
    case Json::value_t::number_integer:
    case Json::value_t::number_unsigned:
      return "integer";
    case Json::value_t::number_float:
      return "number";
    case Json::value_t::binary:
    case Json::value_t::discarded:
      break;
  }
  return "unknown";
}

}  // namespace cellhouse::gateway
