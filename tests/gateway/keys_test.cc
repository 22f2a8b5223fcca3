// API keys: made random, stored hashed, checked exactly; the file's format and its guards.
#include "gateway/keys.h"

#include <sys/stat.h>

#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "tests/support/test_env.h"

namespace cellhouse::gateway {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

// The secret of "sk-cell-<id>-<secret>". Split by position: the base64url secret may itself hold
// '-', so the last '-' is not where it starts.
std::string SecretOf(const NewKey& key) {
  return key.key.substr(std::string("sk-cell-").size() + key.record.id.size() + 1);
}

TEST(KeysTest, AMadeKeyAuthenticatesItsTenantAndNothingElseDoes) {
  Result<NewKey> a = MakeKey("alice", 100);
  Result<NewKey> b = MakeKey("bob", 100);
  ASSERT_TRUE(a && b);
  EXPECT_THAT(a->key, StartsWith("sk-cell-" + a->record.id + "-"));
  EXPECT_EQ(a->key.size(), std::string("sk-cell-").size() + 16 + 1 + 43);
  EXPECT_NE(a->key, b->key);
  KeyStore keys;
  keys.Add(a->record);
  keys.Add(b->record);
  EXPECT_EQ(keys.Authenticate(a->key), "alice");
  EXPECT_EQ(keys.Authenticate(b->key), "bob");
  std::string wrong = a->key;
  wrong.back() = wrong.back() == 'A' ? 'B' : 'A';
  EXPECT_FALSE(keys.Authenticate(wrong));
  // a's id with b's secret
  std::string mixed = "sk-cell-" + a->record.id + "-" + SecretOf(*b);
  EXPECT_FALSE(keys.Authenticate(mixed));
  EXPECT_FALSE(keys.Authenticate(""));
  EXPECT_FALSE(keys.Authenticate("sk-cell-"));
  EXPECT_FALSE(keys.Authenticate("Bearer " + a->key));
  EXPECT_FALSE(keys.Authenticate(a->key + "x"));
}

TEST(KeysTest, TheFileHoldsHashesOnlyAndRoundTrips) {
  Result<NewKey> a = MakeKey("alice", 1733000000);
  ASSERT_TRUE(a);
  KeyStore keys;
  keys.Add(a->record);
  std::string text = keys.Serialize();
  EXPECT_THAT(text, Not(HasSubstr(SecretOf(*a))));
  EXPECT_THAT(text, HasSubstr(a->record.id + " alice 1733000000 "));
  Result<KeyStore> parsed = KeyStore::Parse(text, "keys");
  ASSERT_TRUE(parsed) << parsed.error().message();
  EXPECT_EQ(parsed->Authenticate(a->key), "alice");
}

TEST(KeysTest, MalformedLinesAreRefusedWithFileAndLine) {
  auto error = [](const std::string& text) {
    Result<KeyStore> k = KeyStore::Parse(text, "FILE");
    return k ? std::string() : k.error().message();
  };
  EXPECT_THAT(error("# c\n\nabc alice 1 00 00\n"), HasSubstr("FILE:3: the key id"));
  EXPECT_THAT(error("0123456789abcdef alice 1\n"), HasSubstr("FILE:1: expected"));
  EXPECT_THAT(error("0123456789abcdef al/ice 1 " + std::string(32, '0') + " " +
                    std::string(64, '0') + "\n"),
              HasSubstr("tenant name"));
  EXPECT_THAT(error("0123456789abcdef alice 1 00 " + std::string(64, '0') + "\n"),
              HasSubstr("SALT"));
  std::string line =
      "0123456789abcdef alice 1 " + std::string(32, '0') + " " + std::string(64, '0') + "\n";
  EXPECT_THAT(error(line + line), HasSubstr("appears twice"));
}

TEST(KeysTest, TenantNames) {
  EXPECT_TRUE(CheckTenantName("alice"));
  EXPECT_TRUE(CheckTenantName("team-7.prod_a"));
  EXPECT_FALSE(CheckTenantName(""));
  EXPECT_FALSE(CheckTenantName("-x"));
  EXPECT_FALSE(CheckTenantName("a b"));
  EXPECT_FALSE(CheckTenantName(std::string(65, 'a')));
  EXPECT_FALSE(MakeKey("no/slash", 0));
}

TEST(KeysTest, EditKeyFileAddsAndRemovesAndTheFileIsNotGroupWritable) {
  testing::TempDir dir;
  std::string path = dir.File("keys");
  std::string made;
  ASSERT_TRUE(EditKeyFile(path, [&](KeyStore& keys) -> Status {
    CH_ASSIGN_OR_RETURN(NewKey k, MakeKey("alice", 1));
    made = k.key;
    keys.Add(k.record);
    return Ok();
  }));
  struct stat st {};
  ASSERT_EQ(::stat(path.c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 0777, 0640u);
  Result<KeyStore> loaded = KeyStore::Load(path);
  ASSERT_TRUE(loaded);
  EXPECT_EQ(loaded->Authenticate(made), "alice");
  ASSERT_TRUE(EditKeyFile(path, [&](KeyStore& keys) -> Status {
    EXPECT_EQ(keys.RemoveTenant("alice"), 1u);
    return Ok();
  }));
  loaded = KeyStore::Load(path);
  ASSERT_TRUE(loaded);
  EXPECT_FALSE(loaded->Authenticate(made));

  ASSERT_EQ(::chmod(path.c_str(), 0666), 0);
  Result<KeyStore> refused = KeyStore::Load(path);
  ASSERT_FALSE(refused);
  EXPECT_THAT(refused.error().message(), HasSubstr("writable by group or others"));
}

}  // namespace
}  // namespace cellhouse::gateway
