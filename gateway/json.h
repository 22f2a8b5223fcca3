// JSON for the gateway: nlohmann-json behind one adapter that never throws. Request bodies are
// parsed with a depth limit (a nested-array bomb is refused before it is built) and strict UTF-8
// (the lexer refuses ill-formed strings); numbers that overflow a double are refused, never
// turned into infinity. Values are read through the typed accessors below, which check the type
// first, so no nlohmann call that throws on a mismatch is made by our code; output is dumped
// with invalid UTF-8 replaced rather than thrown on.
//
//   CH_ASSIGN_OR_RETURN(Json body, ParseJson(text, {.max_depth = 32}));
//   if (const Json* model = Member(body, "model"); model && AsString(*model)) ...
//   std::string wire = DumpJson(Json{{"object", "list"}});
#ifndef CELLHOUSE_GATEWAY_JSON_H_
#define CELLHOUSE_GATEWAY_JSON_H_

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include <nlohmann/json.hpp>

#include "base/result.h"

namespace cellhouse::gateway {

// Ordered: responses list their fields in the order the API reference shows them.
using Json = nlohmann::ordered_json;

struct JsonLimits {
  // Arrays and objects nested deeper than this are refused. The API's deepest legitimate shape
  // (messages → content parts → a part's fields) is four levels.
  size_t max_depth = 32;
};

// Parses one JSON document (nothing but whitespace may follow it). The error says what is wrong
// and at which byte.
Result<Json> ParseJson(std::string_view text, const JsonLimits& limits = {});

// Compact serialisation; bytes that are not UTF-8 become U+FFFD. Never throws.
std::string DumpJson(const Json& value);

// The member `key` of an object, or nullptr (also when `value` is not an object).
const Json* Member(const Json& value, std::string_view key);

// Typed reads: nullopt when the value has another type.
std::optional<std::string_view> AsString(const Json& value);
std::optional<bool> AsBool(const Json& value);
// Any JSON number (integers included).
std::optional<double> AsNumber(const Json& value);
// An integer within int64 (a number written with a fraction or an exponent is not one).
std::optional<int64_t> AsInteger(const Json& value);

// "string", "number", "object", ... for error messages.
std::string_view TypeName(const Json& value);

}  // namespace cellhouse::gateway

#endif  // CELLHOUSE_GATEWAY_JSON_H_
