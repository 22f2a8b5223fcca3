// JSON output of cellctl's --json and the benchmarks (objects of scalars, nested raw JSON and
// arrays of them), written by nlohmann-json: ids as hex strings, numbers as numbers, strings
// escaped (invalid UTF-8 replaced, never an exception), keys in the order added.
//
//   JsonObject o;
//   o.Add("id", "ab12").Add("tokens", 42).Add("attached", true);
//   std::puts(o.Render().c_str());   // {"id":"ab12","tokens":42,"attached":true}
#ifndef CELLHOUSE_CLI_CELLCTL_JSON_H_
#define CELLHOUSE_CLI_CELLCTL_JSON_H_

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

namespace cellhouse::cli {

// `text` as a JSON string literal, quotes included.
std::string JsonString(std::string_view text);

class JsonObject {
 public:
  JsonObject& Add(std::string_view key, std::string_view value);
  JsonObject& Add(std::string_view key, const char* value) {
    return Add(key, std::string_view(value));
  }
  JsonObject& Add(std::string_view key, uint64_t value);
  JsonObject& Add(std::string_view key, int64_t value);
  JsonObject& Add(std::string_view key, uint32_t value) { return Add(key, uint64_t{value}); }
  JsonObject& Add(std::string_view key, int32_t value) { return Add(key, int64_t{value}); }
  // A value that is not finite is written as null.
  JsonObject& Add(std::string_view key, double value);
  JsonObject& Add(std::string_view key, bool value);
  // `raw` is already JSON (an object or array); what does not parse is written as null.
  JsonObject& AddRaw(std::string_view key, std::string_view raw);
  std::string Render() const;

 private:
  nlohmann::ordered_json value_ = nlohmann::ordered_json::object();
};

// A JSON array of already rendered items (each parsed back; one that does not parse is null).
std::string JsonArray(const std::vector<std::string>& rendered_items);

}  // namespace cellhouse::cli

#endif  // CELLHOUSE_CLI_CELLCTL_JSON_H_
