#include "supervisor/audit.h"

#include <gtest/gtest.h>

namespace cellhouse::supervisor {
namespace {

TEST(AuditTest, ParsesTheKernelsSeccompRecord) {
  // As this kernel printed it for a process killed on getppid (x86_64 syscall 110).
  auto r = ParseSeccompRecord(
      "audit(1795248242.142:3): auid=4294967295 uid=0 gid=0 ses=4294967295 pid=6338 "
      "comm=\"sk\" exe=\"/tmp/sk\" sig=31 arch=c000003e syscall=110 compat=0 "
      "ip=0x7f1caa1824f7 code=0x80000000");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pid, 6338);
  EXPECT_EQ(r->syscall, 110);
  EXPECT_EQ(r->arch, 0xc000003eu);
  EXPECT_EQ(r->code, 0x80000000u);
  EXPECT_EQ(r->syscall_name, "getppid");
}

TEST(AuditTest, RefusesWhatIsNotASeccompRecord) {
  EXPECT_FALSE(ParseSeccompRecord(""));
  EXPECT_FALSE(ParseSeccompRecord("audit(1:2): pid=12 syscall=3"));  // no arch, no code
  EXPECT_FALSE(ParseSeccompRecord("audit(1:2): pid=-4 arch=c000003e syscall=1 code=0x0"));
  EXPECT_FALSE(ParseSeccompRecord("audit(1:2): pid=4 arch=zz syscall=1 code=0x0"));
  // A key that merely ends in "pid" is not the pid.
  auto r = ParseSeccompRecord("audit(1:2): ppid=9 pid=4 arch=c000003e syscall=1 code=0x0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->pid, 4);
  EXPECT_EQ(r->syscall_name, "write");
}

TEST(AuditTest, UnknownNumbersAreNamedByNumber) {
  auto r = ParseSeccompRecord("audit(1:2): pid=4 arch=c000003e syscall=99999 code=0x0");
  ASSERT_TRUE(r);
  EXPECT_EQ(r->syscall_name, "syscall 99999");
}

}  // namespace
}  // namespace cellhouse::supervisor
