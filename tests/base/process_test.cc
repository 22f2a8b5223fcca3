#include "base/process.h"

#include <signal.h>

#include <gtest/gtest.h>

#include "base/io.h"

namespace cellhouse {
namespace {

TEST(ProcessTest, SpawnPassesPlannedFdsAndReportsExit) {
  auto pipe = MakePipe();
  ASSERT_TRUE(pipe);
  auto child = SpawnProgram(
      {.argv = {"/bin/sh", "-c", "echo hi >&5; exit 3"}, .fds = {{5, pipe->second.get()}}});
  ASSERT_TRUE(child) << child.error().message();
  pipe->second.reset();
  auto st = child->Wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->kind, ExitStatus::Kind::kExited);
  EXPECT_EQ(st->code, 3);
  EXPECT_EQ(st->ToString(), "exited with status 3");
  char buf[8] = {};
  EXPECT_EQ(read(pipe->first.get(), buf, sizeof(buf)), 3);
  EXPECT_STREQ(buf, "hi\n");
}

TEST(ProcessTest, ExecFailureIsReportedNotHidden) {
  auto child = SpawnProgram({.argv = {"/nonexistent/binary"}});
  ASSERT_FALSE(child);
  EXPECT_NE(child.error().message().find("ENOENT"), std::string::npos) << child.error().message();
}

TEST(ProcessTest, KillAndReapThroughPidfd) {
  auto child = SpawnProgram({.argv = {"/bin/sleep", "30"}});
  ASSERT_TRUE(child);
  auto early = child->TryReap();
  ASSERT_TRUE(early);
  EXPECT_FALSE(early->has_value());
  ASSERT_TRUE(child->Kill(SIGKILL));
  auto st = child->Wait();
  ASSERT_TRUE(st);
  EXPECT_EQ(st->kind, ExitStatus::Kind::kSignaled);
  EXPECT_EQ(st->signal, SIGKILL);
  EXPECT_EQ(st->ToString(), "killed by signal SIGKILL (Killed)");
  EXPECT_TRUE(child->reaped());
  EXPECT_TRUE(child->Kill(SIGKILL));  // already gone: not an error
}

}  // namespace
}  // namespace cellhouse
