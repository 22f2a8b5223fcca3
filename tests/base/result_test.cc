#include "base/result.h"

#include <cerrno>
#include <memory>

#include <gtest/gtest.h>

namespace cellhouse {
namespace {

Result<int> Half(int x) {
  if (x % 2 != 0) return Error("odd: " + std::to_string(x));
  return x / 2;
}

Result<int> Quarter(int x) {
  CH_ASSIGN_OR_RETURN(int h, Half(x));
  CH_ASSIGN_OR_RETURN(int q, Half(h));
  return q;
}

Status CheckEven(int x) {
  CH_RETURN_IF_ERROR(Half(x));
  return Ok();
}

TEST(ResultTest, PropagatesValueAndError) {
  ASSERT_TRUE(Quarter(8).has_value());
  EXPECT_EQ(*Quarter(8), 2);
  Result<int> r = Quarter(6);
  ASSERT_FALSE(r.has_value());
  EXPECT_EQ(r.error().message(), "odd: 3");
  EXPECT_TRUE(CheckEven(2));
  EXPECT_FALSE(CheckEven(3));
}

TEST(ResultTest, MoveOnlyValues) {
  Result<std::unique_ptr<int>> r = std::make_unique<int>(7);
  ASSERT_TRUE(r);
  std::unique_ptr<int> p = std::move(r).value();
  EXPECT_EQ(*p, 7);
}

TEST(ResultTest, ErrnoMessageNamesOperationAndReason) {
  Error e = Error::FromErrno(ENOENT, "open '/nope'");
  EXPECT_EQ(e.sys_errno(), ENOENT);
  EXPECT_EQ(e.message(), "open '/nope': No such file or directory (ENOENT)");
  Error c = std::move(e).Context("loading model");
  EXPECT_EQ(c.message(), "loading model: open '/nope': No such file or directory (ENOENT)");
  EXPECT_EQ(c.sys_errno(), ENOENT);
}

}  // namespace
}  // namespace cellhouse
