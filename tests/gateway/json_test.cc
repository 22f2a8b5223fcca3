// The JSON adapter: limits hold (depth, numbers, UTF-8) and nothing throws.
#include "gateway/json.h"

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

namespace cellhouse::gateway {
namespace {

using ::testing::HasSubstr;

TEST(JsonTest, ParsesDocumentsAndReadsTypedValues) {
  Result<Json> j = ParseJson(R"({"a": "x", "b": 2, "c": 2.5, "d": true, "e": null, "f": [1]})");
  ASSERT_TRUE(j) << j.error().message();
  EXPECT_EQ(AsString(*Member(*j, "a")), "x");
  EXPECT_EQ(AsInteger(*Member(*j, "b")), 2);
  EXPECT_EQ(AsNumber(*Member(*j, "b")), 2.0);
  EXPECT_EQ(AsNumber(*Member(*j, "c")), 2.5);
  EXPECT_FALSE(AsInteger(*Member(*j, "c")));
  EXPECT_EQ(AsBool(*Member(*j, "d")), true);
  EXPECT_FALSE(AsString(*Member(*j, "b")));
  EXPECT_EQ(Member(*j, "missing"), nullptr);
  EXPECT_EQ(Member(*Member(*j, "f"), "x"), nullptr);  // not an object
  EXPECT_EQ(TypeName(*Member(*j, "f")), "array");
}

TEST(JsonTest, RefusesDeepNestingBeforeBuildingIt) {
  std::string bomb(100000, '[');
  Result<Json> j = ParseJson(bomb, {.max_depth = 32});
  ASSERT_FALSE(j);
  EXPECT_THAT(j.error().message(), HasSubstr("deeper than 32"));
  std::string ok = std::string(32, '[') + std::string(32, ']');
  EXPECT_TRUE(ParseJson(ok, {.max_depth = 32}));
  std::string deep_objects;
  for (int i = 0; i < 40; ++i) deep_objects += "{\"a\":";
  deep_objects += "1" + std::string(40, '}');
  EXPECT_FALSE(ParseJson(deep_objects, {.max_depth = 32}));
}

TEST(JsonTest, RefusesNumbersThatOverflowAndAcceptsBigIntegersAsNumbers) {
  Result<Json> j = ParseJson(R"({"n": 1e999})");
  ASSERT_FALSE(j);
  EXPECT_THAT(j.error().message(), HasSubstr("number overflow"));
  EXPECT_FALSE(ParseJson("-1e400"));
  Result<Json> big = ParseJson("123456789012345678901234567890");
  ASSERT_TRUE(big);
  EXPECT_FALSE(AsInteger(*big));  // too big for int64: a number, never a wrapped integer
  EXPECT_TRUE(AsNumber(*big));
}

TEST(JsonTest, RefusesInvalidUtf8AndMalformedText) {
  EXPECT_FALSE(ParseJson("\"\xff\xfe\""));
  EXPECT_FALSE(ParseJson("\"\xc0\xaf\""));  // overlong
  EXPECT_FALSE(ParseJson(R"({"a": 1} x)"));
  EXPECT_FALSE(ParseJson(R"({"a": })"));
  EXPECT_FALSE(ParseJson(""));
  Result<Json> j = ParseJson("{\"a\": 1,}");
  ASSERT_FALSE(j);
  EXPECT_THAT(j.error().message(), HasSubstr("invalid JSON at byte"));
}

TEST(JsonTest, DumpReplacesInvalidUtf8InsteadOfThrowing) {
  Json j = Json::object();
  j["text"] = std::string("ok\xff");
  EXPECT_EQ(DumpJson(j), "{\"text\":\"ok\xEF\xBF\xBD\"}");
}

TEST(JsonTest, DuplicateKeysKeepTheLastValue) {
  Result<Json> j = ParseJson(R"({"a": 1, "a": 2})");
  ASSERT_TRUE(j);
  EXPECT_EQ(AsInteger(*Member(*j, "a")), 2);
}

}  // namespace
}  // namespace cellhouse::gateway
