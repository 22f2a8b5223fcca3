// The model flags: NAME=PATH, plain paths, a models directory, and names checked before anything
// starts.
#include "supervisor/models.h"

#include <sys/stat.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "tests/support/test_env.h"

namespace cellhouse::supervisor {
namespace {

TEST(ModelsTest, AFlagIsNameEqualsPathOrAPathNamedAfterItsFile) {
  Result<ModelSpec> named = ParseModelFlag("qwen=/srv/m/qwen3-0.6b.gguf");
  ASSERT_TRUE(named) << named.error().message();
  EXPECT_EQ(named->name, "qwen");
  EXPECT_EQ(named->path, "/srv/m/qwen3-0.6b.gguf");
  Result<ModelSpec> plain = ParseModelFlag("/srv/m/qwen3-0.6b.gguf");
  ASSERT_TRUE(plain);
  EXPECT_EQ(plain->name, "qwen3-0.6b");
  // '=' in a path whose prefix is not a name stays part of the path.
  Result<ModelSpec> odd = ParseModelFlag("/srv/a=b/tiny.bin");
  ASSERT_TRUE(odd);
  EXPECT_EQ(odd->path, "/srv/a=b/tiny.bin");
  EXPECT_EQ(odd->name, "tiny");
  EXPECT_FALSE(ParseModelFlag("x="));
  EXPECT_FALSE(ParseModelFlag("/srv/m/.hidden"));  // stem ".hidden" is not a name
  EXPECT_EQ(ModelStem("/a/b/c.tar.gz"), "c.tar");
  EXPECT_EQ(ModelStem("model"), "model");
}

TEST(ModelsTest, NamesAreUniqueAndValid) {
  EXPECT_TRUE(CheckModelNames(std::vector<ModelSpec>{{"a", "/a", ""}, {"b", "/b", ""}}));
  Status twice = CheckModelNames(std::vector<ModelSpec>{{"a", "/a", ""}, {"a", "/b", ""}});
  ASSERT_FALSE(twice);
  EXPECT_NE(twice.error().message().find("two models are named 'a'"), std::string::npos)
      << twice.error().message();
  EXPECT_FALSE(CheckModelNames(std::vector<ModelSpec>{{"bad name", "/a", ""}}));
  EXPECT_FALSE(CheckModelNames(std::vector<ModelSpec>{}));
}

TEST(ModelsTest, ADirectoryYieldsGgufFilesAndCheckpointsWithTokenizers) {
  testing::TempDir dir;
  ASSERT_TRUE(CreateFileWithContent(dir.File("qwen.gguf"), std::string("GGUF\x03\0\0\0", 8), 0644));
  ASSERT_TRUE(CreateFileWithContent(dir.File("tiny.bin"), "weights", 0644));
  ASSERT_TRUE(CreateFileWithContent(dir.File("tiny.bin.tokenizer"), "vocab", 0644));
  ASSERT_TRUE(CreateFileWithContent(dir.File("lonely.bin"), "no tokenizer beside it", 0644));
  ASSERT_TRUE(CreateFileWithContent(dir.File(".hidden.gguf"), "GGUF", 0644));
  ASSERT_EQ(::mkdir(dir.File("sub.gguf").c_str(), 0755), 0);
  Result<std::vector<ModelSpec>> found = ScanModelsDirectory(dir.path());
  ASSERT_TRUE(found) << found.error().message();
  ASSERT_EQ(found->size(), 2u);
  EXPECT_EQ((*found)[0].name, "qwen");
  EXPECT_EQ((*found)[1].name, "tiny");
  EXPECT_EQ((*found)[1].path, dir.File("tiny.bin"));

  testing::TempDir empty;
  Result<std::vector<ModelSpec>> none = ScanModelsDirectory(empty.path());
  ASSERT_FALSE(none);
  EXPECT_NE(none.error().message().find("holds no model"), std::string::npos);
  EXPECT_FALSE(ScanModelsDirectory(empty.File("missing")));
}

TEST(ModelsTest, PoliciesAreCheckedAgainstEveryModelAtOnce) {
  policy::ModelFacts a{.seq_len = 2048,
                       .kv_bytes_per_token = 100,
                       .state_fixed_bytes = 7,
                       .worker_overhead_bytes = 1};
  policy::ModelFacts b{.seq_len = 512,
                       .kv_bytes_per_token = 300,
                       .state_fixed_bytes = 5,
                       .worker_overhead_bytes = 1};
  policy::ModelFacts both = EnvelopeFacts(std::vector<policy::ModelFacts>{a, b});
  EXPECT_EQ(both.seq_len, 2048u);
  EXPECT_EQ(both.kv_bytes_per_token, 300u);
  EXPECT_EQ(both.state_fixed_bytes, 7u);
}

}  // namespace
}  // namespace cellhouse::supervisor
