#include "ipc/frame.h"

#include <sys/socket.h>

#include <gtest/gtest.h>

#include "base/io.h"
#include "ipc/api.pb.h"

namespace cellhouse::ipc {
namespace {

api::Request GenerateRequest(const std::string& prompt) {
  api::Request r;
  r.mutable_generate()->set_prompt(prompt);
  r.mutable_generate()->set_max_new_tokens(7);
  return r;
}

TEST(FrameTest, RoundTripThroughDecoderByteByByte) {
  std::string wire;
  for (int i = 0; i < 3; ++i) {
    AppendFrame(GenerateRequest(std::string(size_t{200} * i, 'x')), &wire);
  }
  FrameDecoder decoder(kDefaultMaxFrameBytes);
  std::vector<api::Request> got;
  for (char c : wire) {
    ASSERT_TRUE(decoder.Feed(std::string_view(&c, 1)));
    auto frame = decoder.Next();
    ASSERT_TRUE(frame);
    if (!frame->has_value()) continue;
    api::Request r;
    ASSERT_TRUE(r.ParseFromString(**frame));
    got.push_back(r);
  }
  ASSERT_EQ(got.size(), 3u);
  EXPECT_EQ(got[2].generate().prompt().size(), 400u);
  EXPECT_EQ(got[1].generate().max_new_tokens(), 7u);
  EXPECT_EQ(decoder.buffered(), 0u);
}

TEST(FrameTest, MatchesProtobufDelimitedLayout) {
  // writeDelimitedTo: varint(size) then the message. 300 = 0xAC 0x02.
  api::Request r = GenerateRequest(std::string(292, 'a'));
  std::string wire = EncodeFrame(r);
  size_t size = r.ByteSizeLong();
  ASSERT_EQ(size, 300u);
  EXPECT_EQ(static_cast<uint8_t>(wire[0]), 0xAC);
  EXPECT_EQ(static_cast<uint8_t>(wire[1]), 0x02);
  EXPECT_EQ(wire.size(), size + 2);
}

TEST(FrameTest, OversizedPrefixRefusedBeforePayloadArrives) {
  FrameDecoder decoder(1024);
  std::string prefix = "\x81\x08";  // 1025
  Status st = decoder.Feed(prefix);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().message(), "frame of 1025 bytes is larger than the limit of 1024 bytes");
  EXPECT_FALSE(decoder.Feed(std::string_view("x")));
  EXPECT_FALSE(decoder.Next());
}

TEST(FrameTest, MalformedVarintRefused) {
  FrameDecoder decoder(1024);
  EXPECT_FALSE(decoder.Feed(std::string_view("\xff\xff\xff\xff\xff\x01", 6)));
  EXPECT_EQ(DecodeLengthPrefix(std::as_bytes(std::span<const char>("\xff\xff", 2))).state,
            VarintPrefix::State::kIncomplete);
}

TEST(FrameTest, SecondFrameTooLargeDoesNotLoseFirst) {
  FrameDecoder decoder(64);
  std::string wire = EncodeFrame(GenerateRequest("hi"));
  wire += "\xc0\x01";  // 192 > 64
  // Feed checks only the head prefix: the first frame is fine.
  ASSERT_TRUE(decoder.Feed(wire));
  auto first = decoder.Next();
  ASSERT_TRUE(first);
  ASSERT_TRUE(first->has_value());
  EXPECT_FALSE(decoder.Next());
}

TEST(FrameTest, ExactReaderLeavesFollowingBytesInSocket) {
  auto pair = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(pair);
  std::string wire = EncodeFrame(GenerateRequest("first")) + EncodeFrame(GenerateRequest("next"));
  ASSERT_TRUE(WriteFull(pair->first.get(), wire, "socket"));
  ASSERT_TRUE(SetNonBlocking(pair->second.get()));
  ExactFrameReader reader(kDefaultMaxFrameBytes);
  auto state = reader.ReadFrom(pair->second.get());
  ASSERT_TRUE(state);
  ASSERT_EQ(*state, ExactFrameReader::State::kComplete);
  api::Request r;
  ASSERT_TRUE(r.ParseFromString(reader.frame()));
  EXPECT_EQ(r.generate().prompt(), "first");
  // The second frame is still entirely in the socket.
  FrameDecoder rest(kDefaultMaxFrameBytes);
  char buf[256];
  ssize_t n = read(pair->second.get(), buf, sizeof(buf));
  ASSERT_GT(n, 0);
  ASSERT_TRUE(rest.Feed(std::string_view(buf, static_cast<size_t>(n))));
  auto next = rest.Next();
  ASSERT_TRUE(next && next->has_value());
  ASSERT_TRUE(r.ParseFromString(**next));
  EXPECT_EQ(r.generate().prompt(), "next");
}

TEST(FrameTest, ExactReaderStates) {
  auto pair = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(pair);
  ASSERT_TRUE(SetNonBlocking(pair->second.get()));
  ExactFrameReader reader(16);
  ASSERT_EQ(*reader.ReadFrom(pair->second.get()), ExactFrameReader::State::kIncomplete);
  ASSERT_TRUE(WriteFull(pair->first.get(),
                        std::string_view("\x05"
                                         "ab"),
                        "s"));
  ASSERT_EQ(*reader.ReadFrom(pair->second.get()), ExactFrameReader::State::kIncomplete);
  pair->first.reset();
  ASSERT_EQ(*reader.ReadFrom(pair->second.get()), ExactFrameReader::State::kEndOfFile);

  auto pair2 = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(pair2);
  ASSERT_TRUE(WriteFull(pair2->first.get(), std::string_view("\x80\x80\x04"), "s"));
  ExactFrameReader big(16);
  ASSERT_EQ(*big.ReadFrom(pair2->second.get()), ExactFrameReader::State::kTooLarge);
  EXPECT_EQ(big.announced_length(), 65536u);
}

TEST(FrameTest, ExactReaderGrowsWithTheBytesThatArriveAndAsksItsBudget) {
  auto pair = MakeSocketPair(SOCK_STREAM);
  ASSERT_TRUE(pair);
  ASSERT_TRUE(SetNonBlocking(pair->second.get()));
  // 1 MiB announced, 1000 bytes sent.
  ASSERT_TRUE(WriteFull(pair->first.get(), std::string("\x80\x80\x40", 3), "prefix"));
  ASSERT_TRUE(WriteFull(pair->first.get(), std::string(1000, 'a'), "payload"));
  size_t granted = 0;
  ExactFrameReader reader(kDefaultMaxFrameBytes);
  auto budget = [&granted](size_t bytes) {
    granted += bytes;
    return true;
  };
  ASSERT_EQ(*reader.ReadFrom(pair->second.get(), budget), ExactFrameReader::State::kIncomplete);
  EXPECT_EQ(reader.announced_length(), size_t{1} << 20);
  EXPECT_EQ(reader.received(), 1000u);
  EXPECT_EQ(reader.held_bytes(), granted);
  EXPECT_LE(granted, 2048u) << "the buffer grew to the claim, not to what arrived";

  // A budget that refuses: the read stops there.
  ASSERT_TRUE(WriteFull(pair->first.get(), std::string(100'000, 'b'), "payload"));
  auto stingy = [&granted](size_t bytes) {
    if (granted + bytes > 50'000) return false;
    granted += bytes;
    return true;
  };
  ASSERT_EQ(*reader.ReadFrom(pair->second.get(), stingy), ExactFrameReader::State::kOverBudget);
  EXPECT_LE(reader.held_bytes(), 50'000u);
}

}  // namespace
}  // namespace cellhouse::ipc
