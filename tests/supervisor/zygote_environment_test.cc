// The zygote's environment is a fixed one plus a short list of tuning variables, never celld's.
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "supervisor/zygote_process.h"

namespace cellhouse::supervisor {
namespace {

using ::testing::UnorderedElementsAre;

TEST(ZygoteEnvironmentTest, FixedVariablesAndOnlyTheTuningOnesPassed) {
  std::vector<std::string> parent = {"AWS_SECRET_ACCESS_KEY=hunter2",
                                     "LISTEN_FDS=2",
                                     "NOTIFY_SOCKET=/run/systemd/notify",
                                     "OPENBLAS_NUM_THREADS=8",
                                     "OPENBLAS_CORETYPE=Haswell",
                                     "OPENBLAS_CORETYPEX=nope",
                                     "PATH=/home/someone/bin",
                                     "LD_PRELOAD=/tmp/evil.so"};
  std::vector<char*> environ_like;
  environ_like.reserve(parent.size() + 1);
  for (std::string& e : parent) environ_like.push_back(e.data());
  environ_like.push_back(nullptr);
  EXPECT_THAT(ZygoteEnvironment(environ_like.data()),
              UnorderedElementsAre("OPENBLAS_NUM_THREADS=1", "PATH=/usr/sbin:/usr/bin:/sbin:/bin",
                                   "LANG=C.UTF-8", "OPENBLAS_CORETYPE=Haswell"));
}

}  // namespace
}  // namespace cellhouse::supervisor
