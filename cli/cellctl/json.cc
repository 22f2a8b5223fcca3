#include "cli/cellctl/json.h"

#include <cmath>

namespace cellhouse::cli {
namespace {

using Json = nlohmann::ordered_json;

std::string Dump(const Json& j) {
  // Invalid UTF-8 (a model's partial piece, a hostile name) is replaced, not thrown about.
  return j.dump(-1, ' ', false, Json::error_handler_t::replace);
}

Json ParseOrNull(std::string_view raw) {
  Json j = Json::parse(raw, nullptr, /*allow_exceptions=*/false);
  return j.is_discarded() ? Json(nullptr) : j;
}

}  // namespace

std::string JsonString(std::string_view text) { return Dump(Json(std::string(text))); }

JsonObject& JsonObject::Add(std::string_view key, std::string_view value) {
  value_[std::string(key)] = std::string(value);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, uint64_t value) {
  value_[std::string(key)] = value;
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, int64_t value) {
  value_[std::string(key)] = value;
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, double value) {
  value_[std::string(key)] = std::isfinite(value) ? Json(value) : Json(nullptr);
  return *this;
}

JsonObject& JsonObject::Add(std::string_view key, bool value) {
  value_[std::string(key)] = value;
  return *this;
}

JsonObject& JsonObject::AddRaw(std::string_view key, std::string_view raw) {
  value_[std::string(key)] = ParseOrNull(raw);
  return *this;
}

std::string JsonObject::Render() const { return Dump(value_); }

std::string JsonArray(const std::vector<std::string>& items) {
  Json array = Json::array();
  for (const std::string& item : items) array.push_back(ParseOrNull(item));
  return Dump(array);
}

}  // namespace cellhouse::cli
