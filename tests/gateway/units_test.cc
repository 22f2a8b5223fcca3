// cellgate's systemd units: systemd-analyze verifies them without a word, their exposure score
// stays where docs/OPERATIONS.md says, and they agree with what cellgate expects.
#include <map>
#include <string>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "tests/support/celld_harness.h"

namespace cellhouse::gateway {
namespace {

using ::testing::HasSubstr;

std::string BuiltUnit(const std::string& name) {
  return std::string(CELLHOUSE_BUILD_UNITS_DIR) + "/" + name;
}

std::multimap<std::string, std::string> Settings(const std::string& path) {
  std::multimap<std::string, std::string> out;
  Result<std::string> text = ReadFileToString(path, 1 << 20);
  EXPECT_TRUE(text) << path;
  if (!text) return out;
  for (std::string_view line : Split(*text, '\n')) {
    line = Trim(line);
    if (line.empty() || line[0] == '#' || line[0] == '[') continue;
    size_t eq = line.find('=');
    if (eq != std::string_view::npos) {
      out.emplace(std::string(line.substr(0, eq)), std::string(line.substr(eq + 1)));
    }
  }
  return out;
}

std::string Get(const std::multimap<std::string, std::string>& s, const std::string& key) {
  auto it = s.find(key);
  return it == s.end() ? "<absent>" : it->second;
}

TEST(GatewayUnitsTest, SystemdAnalyzeVerifiesThemWithoutComplaint) {
  cellhouse::testing::CommandResult r = cellhouse::testing::RunCommand(
      {"/usr/bin/systemd-analyze", "verify", "--man=no", BuiltUnit("cellgate.service"),
       BuiltUnit("cellgate.socket"), BuiltUnit("cellgate-metrics.socket")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_EQ(r.err, "");
  EXPECT_EQ(r.out, "");
}

TEST(GatewayUnitsTest, ExposureScoreStaysWhereDocsOperationsSays) {
  // docs/OPERATIONS.md reports 1.5; --threshold=15 fails above it.
  cellhouse::testing::CommandResult r =
      cellhouse::testing::RunCommand({"/usr/bin/systemd-analyze", "security", "--offline=true",
                                      "--threshold=15", BuiltUnit("cellgate.service")});
  EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
  EXPECT_THAT(r.out, HasSubstr("Overall exposure level for cellgate.service: 1.5"));
}

TEST(GatewayUnitsTest, UnitsAgreeWithWhatCellgateExpects) {
  auto service = Settings(BuiltUnit("cellgate.service"));
  EXPECT_EQ(Get(service, "Type"), "notify");
  EXPECT_EQ(Get(service, "User"), "cellgate");
  EXPECT_EQ(Get(service, "SupplementaryGroups"), "cellhouse");  // celld.socket's group
  EXPECT_EQ(Get(service, "CapabilityBoundingSet"), "");
  EXPECT_EQ(Get(service, "NoNewPrivileges"), "yes");
  EXPECT_EQ(Get(service, "ProtectSystem"), "strict");
  EXPECT_EQ(Get(service, "MemoryDenyWriteExecute"), "yes");
  EXPECT_THAT(Get(service, "ExecStart"), HasSubstr("cellgate --keys ${CELLGATE_KEYS}"));
  EXPECT_THAT(Get(service, "ExecReload"), HasSubstr("-HUP $MAINPID"));
  auto socket = Settings(BuiltUnit("cellgate.socket"));
  EXPECT_EQ(Get(socket, "ListenStream"), "127.0.0.1:8080");  // cellgate --listen's default
  EXPECT_EQ(Get(socket, "FileDescriptorName"), "http");
  auto metrics = Settings(BuiltUnit("cellgate-metrics.socket"));
  EXPECT_EQ(Get(metrics, "FileDescriptorName"), "metrics");
  EXPECT_EQ(Get(metrics, "Service"), "cellgate.service");
  EXPECT_THAT(Get(metrics, "ListenStream"), ::testing::StartsWith("127.0.0.1:"));
  Result<std::string> sysusers =
      ReadFileToString(cellhouse::testing::SourceDir() + "/units/cellhouse.sysusers", 1 << 16);
  ASSERT_TRUE(sysusers);
  EXPECT_THAT(*sysusers, HasSubstr("\nu cellgate "));
  EXPECT_THAT(*sysusers, HasSubstr("\nm cellgate cellhouse\n"));
}

}  // namespace
}  // namespace cellhouse::gateway
