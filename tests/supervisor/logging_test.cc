// Lines about a session carry structured fields under the journal (journalctl SESSION_ID=...),
// and stay plain lines on standard error otherwise.
#include "supervisor/logging.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <spdlog/spdlog.h>

namespace cellhouse::supervisor {
namespace {

using ::testing::ElementsAre;

TEST(LoggingTest, JournalEntriesCarryTheSessionsFields) {
  EXPECT_THAT(
      JournalFields(
          spdlog::level::warn,
          {.session_id = "3f9c", .tenant_uid = 1000, .policy = "default", .outcome = "OOM_KILLED"},
          "session 3f9c ended: ..."),
      ElementsAre("MESSAGE=session 3f9c ended: ...", "PRIORITY=4", "SYSLOG_IDENTIFIER=celld",
                  "SESSION_ID=3f9c", "TENANT=1000", "POLICY=default", "OUTCOME=OOM_KILLED"));
}

TEST(LoggingTest, UnderTheJournalSessionLinesAreSentWithTheirFields) {
  std::vector<std::vector<std::string>> sent;
  ASSERT_TRUE(SetupLogging("info", {.journal = true, .send = [&](const auto& fields) {
                                      sent.push_back(fields);
                                      return 0;
                                    }}));
  LogSession(spdlog::level::info, {.session_id = "ab", .tenant_uid = 7, .policy = "p"},
             "session ab started");
  LogSession(spdlog::level::debug, {.session_id = "ab"}, "below the level: not sent");
  ASSERT_EQ(sent.size(), 1u);
  EXPECT_THAT(sent[0],
              ElementsAre("MESSAGE=session ab started", "PRIORITY=6", "SYSLOG_IDENTIFIER=celld",
                          "SESSION_ID=ab", "TENANT=7", "POLICY=p"));
  // Not under the journal: nothing is sent (the line goes to standard error as any other).
  sent.clear();
  ASSERT_TRUE(SetupLogging("info", {.journal = false, .send = [&](const auto& fields) {
                                      sent.push_back(fields);
                                      return 0;
                                    }}));
  LogSession(spdlog::level::info, {.session_id = "ab"}, "session ab started");
  EXPECT_TRUE(sent.empty());
  ASSERT_TRUE(SetupLogging("info"));
}

}  // namespace
}  // namespace cellhouse::supervisor
