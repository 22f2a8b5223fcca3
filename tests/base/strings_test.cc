#include "base/strings.h"

#include <gtest/gtest.h>

namespace cellhouse {
namespace {

TEST(StringsTest, ParseIntIsStrict) {
  EXPECT_EQ(*ParseInt64("-42", "x"), -42);
  EXPECT_FALSE(ParseInt64("42x", "x"));
  EXPECT_FALSE(ParseInt64("", "x"));
  EXPECT_FALSE(ParseInt64(" 4", "x"));
  EXPECT_FALSE(ParseInt64("99999999999999999999", "x"));
  EXPECT_FALSE(ParseUint64("-1", "x"));
  EXPECT_EQ(ParseInt64("4z", "--steps").error().message(), "--steps: '4z' is not an integer");
}

TEST(StringsTest, ParseDouble) {
  EXPECT_DOUBLE_EQ(*ParseDouble("0.9", "p"), 0.9);
  EXPECT_FALSE(ParseDouble("nan", "p"));
  EXPECT_FALSE(ParseDouble("1e999", "p"));
}

TEST(StringsTest, ByteSizes) {
  EXPECT_EQ(*ParseByteSize("512", "m"), 512u);
  EXPECT_EQ(*ParseByteSize("4K", "m"), 4096u);
  EXPECT_EQ(*ParseByteSize("64M", "m"), 64u << 20);
  EXPECT_EQ(*ParseByteSize("2GiB", "m"), 2ull << 30);
  EXPECT_EQ(*ParseByteSize("1TB", "m"), 1ull << 40);
  EXPECT_EQ(*ParseByteSize("512Mi", "m"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("512MB", "m"), 512ull << 20);
  EXPECT_EQ(*ParseByteSize("7B", "m"), 7u);
  EXPECT_FALSE(ParseByteSize("M", "m"));
  EXPECT_FALSE(ParseByteSize("512i", "m"));
  EXPECT_FALSE(ParseByteSize("512iB", "m"));
  EXPECT_FALSE(ParseByteSize("512X", "m"));
  EXPECT_FALSE(ParseByteSize("5.5G", "m"));
  EXPECT_FALSE(ParseByteSize("99999999999T", "m"));
  EXPECT_EQ(FormatBytes(1536), "1.5 KiB");
  EXPECT_EQ(FormatBytes(100), "100 B");
}

TEST(StringsTest, HexRoundTrip) {
  std::vector<std::byte> bytes = {std::byte{0x00}, std::byte{0xab}, std::byte{0xff}};
  EXPECT_EQ(HexEncode(bytes), "00abff");
  EXPECT_EQ(*HexDecode("00ABff", "h"), bytes);
  EXPECT_FALSE(HexDecode("0", "h"));
  EXPECT_FALSE(HexDecode("zz", "h"));
}

TEST(StringsTest, SplitTrimQuote) {
  auto parts = Split("a,,b", ',');
  ASSERT_EQ(parts.size(), 3u);
  EXPECT_EQ(parts[1], "");
  EXPECT_EQ(Trim("  x y \n"), "x y");
  EXPECT_EQ(Quote("a\nb'"), "'a\\x0ab\\x27'");
}

}  // namespace
}  // namespace cellhouse

#include "base/text.h"

namespace cellhouse {
namespace {

TEST(TextTest, PrintablePieceDropsLoneUnprintableBytes) {
  EXPECT_EQ(PrintablePiece("a"), "a");
  EXPECT_EQ(PrintablePiece("\n"), "\n");
  EXPECT_EQ(PrintablePiece(std::string_view("\x01", 1)), "");
  EXPECT_EQ(PrintablePiece(std::string_view("\x00", 1)), "");
  EXPECT_EQ(PrintablePiece("\xC3"), "");
  EXPECT_EQ(PrintablePiece("\xC3\xA9"), "\xC3\xA9");
  EXPECT_EQ(PrintablePiece(""), "");
}

}  // namespace
}  // namespace cellhouse
