// libprotobuf's complaints reach celld's log through spdlog, once per connection and a few per
// window in all, attributed to the client whose bytes caused them.
#include "supervisor/protobuf_log.h"

#include <memory>
#include <sstream>
#include <string>

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>
#include <spdlog/spdlog.h>

#include "ipc/api.pb.h"

namespace cellhouse::supervisor {
namespace {

TEST(LogRateLimiterTest, LetsABurstThroughPerWindowAndCountsTheRest) {
  LogRateLimiter limiter(2, 10);
  uint64_t suppressed = 99;
  EXPECT_TRUE(limiter.Allow(0, &suppressed));
  EXPECT_EQ(suppressed, 0u);
  EXPECT_TRUE(limiter.Allow(1, &suppressed));
  EXPECT_FALSE(limiter.Allow(2, &suppressed));
  EXPECT_FALSE(limiter.Allow(9, &suppressed));
  EXPECT_TRUE(limiter.Allow(10, &suppressed));
  EXPECT_EQ(suppressed, 2u);
  EXPECT_TRUE(limiter.Allow(11, &suppressed));
  EXPECT_EQ(suppressed, 0u);
}

TEST(ProtobufLogTest, InvalidUtf8IsLoggedOncePerConnectionThroughSpdlog) {
  std::ostringstream captured;
  auto previous = spdlog::default_logger();
  auto logger = std::make_shared<spdlog::logger>(
      "test", std::make_shared<spdlog::sinks::ostream_sink_st>(captured));
  logger->set_pattern("%l %v");
  spdlog::set_default_logger(logger);
  InstallProtobufLogHandler();

  // Request{open: OpenSession{policy: "\xff\xfe"}}: a string field that is not UTF-8.
  const std::string wire("\x0a\x04\x0a\x02\xff\xfe", 6);
  uint32_t first_connection = 0, second_connection = 0;
  for (int i = 0; i < 50; ++i) {
    ProtobufLogScope scope("uid 1000", &first_connection);
    api::Request r;
    EXPECT_FALSE(r.ParseFromString(wire));
  }
  {
    ProtobufLogScope scope("uid 2000", &second_connection);
    api::Request r;
    EXPECT_FALSE(r.ParseFromString(wire));
  }
  spdlog::set_default_logger(previous);

  std::string log = captured.str();
  size_t lines = 0;
  for (char c : log) lines += c == '\n' ? 1 : 0;
  EXPECT_EQ(lines, 2u) << log;
  EXPECT_NE(log.find("warning uid 1000 sent a request libprotobuf complained about: "),
            std::string::npos)
      << log;
  EXPECT_NE(log.find("invalid UTF-8"), std::string::npos) << log;
  EXPECT_NE(log.find("uid 2000"), std::string::npos) << log;
  EXPECT_EQ(first_connection, 50u);
}

}  // namespace
}  // namespace cellhouse::supervisor
