#include "base/io.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>

#include <gtest/gtest.h>

#include "base/mapping.h"
#include "base/random.h"
#include "tests/support/test_env.h"

namespace cellhouse {
namespace {

TEST(IoTest, FileRoundTripAndLimits) {
  testing::TempDir dir;
  std::string path = dir.File("f");
  ASSERT_TRUE(CreateFileWithContent(path, "hello", 0600));
  EXPECT_EQ(*ReadFileToString(path, 100), "hello");
  Result<std::string> too_big = ReadFileToString(path, 4);
  ASSERT_FALSE(too_big);
  EXPECT_NE(too_big.error().message().find("larger than the limit"), std::string::npos);
  ASSERT_TRUE(WriteStringToFile(path, "bye"));
  EXPECT_EQ(*ReadFileToString(path, 100), "byelo");  // no O_TRUNC: cgroupfs semantics
  EXPECT_FALSE(ReadFileToString(dir.File("missing"), 10));
  auto names = ListDirectory(dir.path());
  ASSERT_TRUE(names);
  EXPECT_EQ(*names, std::vector<std::string>{"f"});
}

TEST(IoTest, MappingIsReadOnlyView) {
  testing::TempDir dir;
  std::string path = dir.File("m");
  ASSERT_TRUE(CreateFileWithContent(path, "abcdef", 0600));
  auto m = Mapping::MapFile(path.c_str());
  ASSERT_TRUE(m) << m.error().message();
  ASSERT_EQ(m->size(), 6u);
  EXPECT_EQ(static_cast<char>(m->bytes()[2]), 'c');
  ASSERT_TRUE(CreateFileWithContent(dir.File("empty"), "", 0600));
  EXPECT_FALSE(Mapping::MapFile(dir.File("empty").c_str()));
  EXPECT_FALSE(Mapping::MapFile(dir.path().c_str()));
}

TEST(IoTest, PipesAndFullReads) {
  auto p = MakePipe();
  ASSERT_TRUE(p);
  ASSERT_TRUE(WriteFull(p->second.get(), std::string_view("xyz"), "pipe"));
  p->second.reset();
  std::byte buf[2];
  ASSERT_TRUE(ReadFull(p->first.get(), buf, "pipe"));
  std::byte more[2];
  Status st = ReadFull(p->first.get(), more, "pipe");
  ASSERT_FALSE(st);
  EXPECT_NE(st.error().message().find("unexpected end of file after 1 of 2"), std::string::npos);
  EXPECT_TRUE(fcntl(p->first.get(), F_GETFD) & FD_CLOEXEC);
}

TEST(IoTest, RandomBytesDiffer) {
  std::byte a[16], b[16];
  ASSERT_TRUE(FillRandom(a));
  ASSERT_TRUE(FillRandom(b));
  EXPECT_NE(0, memcmp(a, b, sizeof(a)));
}

}  // namespace
}  // namespace cellhouse

namespace cellhouse {
namespace {

TEST(MappingTest, ResidentBytesFollowsThePageCache) {
  testing::TempDir dir;
  std::string path = dir.File("r");
  std::string content(3 * 4096 + 100, 'x');
  ASSERT_TRUE(CreateFileWithContent(path, content, 0600));
  auto m = Mapping::MapFile(path.c_str());
  ASSERT_TRUE(m);
  // Just written: in the page cache, though this mapping never touched it.
  auto resident = m->ResidentBytes();
  ASSERT_TRUE(resident) << resident.error().message();
  EXPECT_EQ(*resident, content.size());
  EXPECT_EQ(*Mapping().ResidentBytes(), 0u);
}

TEST(MappingTest, PopulateForWriteFaultsInTheRangeAndKeepsWhatIsWritten) {
  const auto page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  auto m = Mapping::Anonymous(16 * page, "test memory");
  ASSERT_TRUE(m);
  std::byte* base = m->mutable_data();
  base[5 * page + 7] = std::byte{42};  // already written: must survive
  ASSERT_EQ(*m->ResidentBytes(), page);
  // From inside page 4 to inside page 9: pages 4 to 9, and nothing else.
  if (!PopulateForWrite(base + 4 * page + 100, 5 * page)) {
    ASSERT_EQ(errno, EINVAL) << "madvise(MADV_POPULATE_WRITE) failed with another errno";
    GTEST_SKIP() << "this kernel has no MADV_POPULATE_WRITE (Linux 5.14 on)";
  }
  EXPECT_EQ(*ResidentBytesIn(base + 4 * page, 6 * page), 6 * page);
  EXPECT_EQ(*m->ResidentBytes(), 6 * page);
  EXPECT_EQ(base[5 * page + 7], std::byte{42});
  EXPECT_EQ(base[4 * page], std::byte{0});
  EXPECT_TRUE(PopulateForWrite(nullptr, 0));
}

}  // namespace
}  // namespace cellhouse
