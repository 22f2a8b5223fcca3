// A tiny JSON writer for cellctl's --json output (objects of scalars and arrays of them): ids as
// hex strings, numbers as numbers, no dependency beyond the standard library.
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

namespace cellhouse::cli {

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
  JsonObject& Add(std::string_view key, double value);
  JsonObject& Add(std::string_view key, bool value);
  // `raw` is already JSON (an object or array).
  JsonObject& AddRaw(std::string_view key, std::string_view raw);
  std::string Render() const { return "{" + body_ + "}"; }

 private:
  void Key(std::string_view key);
  std::string body_;
};

std::string JsonArray(const std::vector<std::string>& rendered_items);

}  // namespace cellhouse::cli

#endif  // CELLHOUSE_CLI_CELLCTL_JSON_H_
