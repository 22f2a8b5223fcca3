// `cmake --install` into a temporary root (DESTDIR): what lands where, that the installed units
// verify, that the installed celld finds its zygote and serves, and that an admin's edits under
// /etc survive a reinstall.
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <iostream>
#include <set>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/str_cat.h"
#include "base/strings.h"
#include "tests/e2e/ops_support.h"
#include "tests/support/celld_harness.h"

namespace cellhouse {
namespace {

using testing::CommandResult;
using ::testing::HasSubstr;
using testing::kLongWaitMs;
using ::testing::Not;

// Regular files under `root`, as paths relative to it, sorted.
std::set<std::string> Tree(const std::string& root, const std::string& below = "") {
  std::set<std::string> out;
  auto entries = ListDirectory(StrCat(root, below));
  if (!entries) return out;
  for (const std::string& e : *entries) {
    std::string rel = StrCat(below, "/", e);
    struct stat st {};
    if (::lstat(StrCat(root, rel).c_str(), &st) != 0) continue;
    if (S_ISDIR(st.st_mode)) {
      std::set<std::string> sub = Tree(root, rel);
      out.insert(sub.begin(), sub.end());
    } else {
      out.insert(rel.substr(1));
    }
  }
  return out;
}

mode_t Mode(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 ? (st.st_mode & 07777) : 0;
}

std::string Read(const std::string& path) {
  auto text = ReadFileToString(path, 1 << 20);
  EXPECT_TRUE(text) << path;
  return text ? *text : "";
}

class InstallTest : public ::testing::Test {
 protected:
  // cmake --install <build> --prefix PREFIX with DESTDIR=root_.
  CommandResult Install(const std::string& prefix) {
    CommandResult r =
        testing::RunCommand({"/usr/bin/env", "DESTDIR=" + root_, CELLHOUSE_CMAKE_COMMAND,
                             "--install", CELLHOUSE_BUILD_DIR, "--prefix", prefix});
    EXPECT_EQ(r.exit_code, 0) << r.out << r.err;
    return r;
  }

  testing::TempDir dir_;
  std::string root_ = dir_.File("root");
};

TEST_F(InstallTest, PrefixUsrGivesTheDebianLayoutUnderDestdir) {
  // What is there before, outside the temporary root, must still be all there is after.
  const std::vector<std::string> system_paths = {
      "/usr/lib/systemd/system/celld.service", "/lib/systemd/system/celld.service",
      "/etc/default/celld", "/usr/bin/celld", "/usr/libexec/cellhouse/cell-zygote"};
  std::vector<bool> existed(system_paths.size());
  for (size_t i = 0; i < system_paths.size(); ++i) {
    existed[i] = ::access(system_paths[i].c_str(), F_OK) == 0;
  }

  Install("/usr");
  std::set<std::string> tree = Tree(root_);
  std::cout << "installed under DESTDIR=" << root_ << " --prefix /usr:\n";
  for (const std::string& f : tree) {
    std::cout << "  " << std::oct << Mode(root_ + "/" + f) << std::dec << " /" << f << "\n";
  }

  std::set<std::string> expected = {"usr/bin/celld",
                                    "usr/bin/cellctl",
                                    "usr/bin/cellmodel",
                                    "usr/libexec/cellhouse/cell-zygote",
                                    "usr/lib/systemd/system/celld.service",
                                    "usr/lib/systemd/system/celld.socket",
                                    "usr/lib/systemd/system/celld-metrics.socket",
                                    "usr/lib/sysusers.d/cellhouse.conf",
                                    "etc/default/celld",
                                    "etc/cellhouse/policies/default.textproto",
                                    "usr/share/doc/cellhouse/OPERATIONS.md"};
  auto examples = ListDirectory(testing::SourceDir() + "/policy/examples");
  ASSERT_TRUE(examples);
  for (const std::string& e : *examples) expected.insert("usr/share/cellhouse/policies/" + e);
  for (const std::string& f : expected) EXPECT_EQ(tree.count(f), 1u) << f << " not installed";
  for (const std::string& f : tree) {
    EXPECT_TRUE(StartsWith(f, "usr/") || StartsWith(f, "etc/")) << f << " outside /usr and /etc";
  }
  for (size_t i = 0; i < system_paths.size(); ++i) {
    EXPECT_EQ(::access(system_paths[i].c_str(), F_OK) == 0, existed[i])
        << system_paths[i] << ": DESTDIR was not honoured";
  }

  for (const char* bin : {"usr/bin/celld", "usr/bin/cellctl", "usr/bin/cellmodel",
                          "usr/libexec/cellhouse/cell-zygote"}) {
    EXPECT_EQ(Mode(root_ + "/" + bin), 0755u) << bin;
  }
  for (const char* unit : {"celld.service", "celld.socket", "celld-metrics.socket"}) {
    EXPECT_EQ(Mode(root_ + "/usr/lib/systemd/system/" + unit), 0644u) << unit;
  }

  // The units name the installed paths, not the build tree's.
  std::string service = Read(root_ + "/usr/lib/systemd/system/celld.service");
  EXPECT_THAT(service, HasSubstr("\nExecStart=/usr/bin/celld --model ${CELLD_MODEL} "));
  EXPECT_THAT(service, HasSubstr("\nEnvironmentFile=-/etc/default/celld\n"));
  EXPECT_THAT(service, HasSubstr("\nEnvironment=CELLD_POLICY_DIR=/etc/cellhouse/policies\n"));
  EXPECT_THAT(service, HasSubstr("\nDocumentation=file:/usr/share/doc/cellhouse/OPERATIONS.md\n"));
  EXPECT_THAT(service, Not(HasSubstr("@CELLHOUSE")));
  EXPECT_THAT(service, Not(HasSubstr(CELLHOUSE_BUILD_DIR)));
  EXPECT_THAT(Read(root_ + "/etc/default/celld"), HasSubstr("\nCELLD_MODEL="));
  EXPECT_THAT(Read(root_ + "/usr/lib/sysusers.d/cellhouse.conf"), HasSubstr("\ng cellhouse -\n"));
  EXPECT_EQ(Read(root_ + "/etc/cellhouse/policies/default.textproto"),
            Read(testing::SourceDir() + "/policy/examples/default.textproto"));

  // systemd-analyze verify needs the ExecStart= binary where the unit says: point it into the
  // temporary root, in a copy.
  std::string units = dir_.File("units");
  ASSERT_EQ(::mkdir(units.c_str(), 0755), 0);
  std::vector<std::string> verify = {"/usr/bin/systemd-analyze", "verify", "--man=no"};
  for (const char* unit : {"celld.service", "celld.socket", "celld-metrics.socket"}) {
    std::string text = Read(root_ + "/usr/lib/systemd/system/" + unit);
    for (size_t at = text.find("=/usr/bin/"); at != std::string::npos;
         at = text.find("=/usr/bin/", at + root_.size() + 10)) {
      text.insert(at + 1, root_);
    }
    ASSERT_TRUE(CreateFileWithContent(units + "/" + unit, text, 0644));
    verify.push_back(units + "/" + unit);
  }
  CommandResult verified = testing::RunCommand(verify);
  EXPECT_EQ(verified.exit_code, 0) << verified.out << verified.err;
  EXPECT_EQ(verified.err, "");
}

TEST_F(InstallTest, ReinstallKeepsWhatAnAdminEditedUnderEtc) {
  Install("/usr");
  std::string defaults = root_ + "/etc/default/celld";
  std::string policy = root_ + "/etc/cellhouse/policies/default.textproto";
  ASSERT_TRUE(CreateFileWithContent(defaults, "CELLD_MODEL=/srv/models/mine.bin\n", 0644));
  ASSERT_TRUE(CreateFileWithContent(policy, "# edited\n", 0644));
  std::string unit = root_ + "/usr/lib/systemd/system/celld.service";
  ASSERT_TRUE(CreateFileWithContent(unit, "# stale\n", 0644));
  // cmake --install leaves a file whose time is within a second of its source's: make the stale
  // copy clearly older, as an earlier release's would be.
  const timespec old_times[2] = {{.tv_sec = 946684800, .tv_nsec = 0},
                                 {.tv_sec = 946684800, .tv_nsec = 0}};
  ASSERT_EQ(::utimensat(AT_FDCWD, unit.c_str(), old_times, 0), 0);
  CommandResult again = Install("/usr");
  EXPECT_EQ(Read(defaults), "CELLD_MODEL=/srv/models/mine.bin\n");
  EXPECT_EQ(Read(policy), "# edited\n");
  EXPECT_THAT(again.out, HasSubstr("Keeping: " + defaults));
  // The units are the package's own: replaced.
  EXPECT_THAT(Read(unit), HasSubstr("Type=notify"));
}

TEST_F(InstallTest, AnotherPrefixMovesEverythingUnderIt) {
  Install("/opt/cellhouse");
  std::set<std::string> tree = Tree(root_);
  for (const std::string& f : tree) {
    EXPECT_TRUE(StartsWith(f, "opt/cellhouse/")) << f << " outside the prefix";
  }
  EXPECT_EQ(tree.count("opt/cellhouse/bin/celld"), 1u);
  EXPECT_EQ(tree.count("opt/cellhouse/libexec/cellhouse/cell-zygote"), 1u);
  EXPECT_EQ(tree.count("opt/cellhouse/etc/default/celld"), 1u);
  EXPECT_EQ(tree.count("opt/cellhouse/etc/cellhouse/policies/default.textproto"), 1u);
  std::string service = Read(root_ + "/opt/cellhouse/lib/systemd/system/celld.service");
  EXPECT_THAT(service, HasSubstr("\nExecStart=/opt/cellhouse/bin/celld "));
  EXPECT_THAT(service, HasSubstr("\nEnvironmentFile=-/opt/cellhouse/etc/default/celld\n"));
}

TEST_F(InstallTest, InstalledCelldFindsItsZygoteAndServes) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root: celld creates namespaces and cgroups";
  Install("/usr");
  std::string model = testing::GenerateModel(dir_, "tiny", 41);
  std::string socket = dir_.File("c.sock");
  // The installed binaries only: celld finds cell-zygote at ../libexec/cellhouse from itself,
  // whatever prefix the build was configured with; the policies are the installed ones.
  std::vector<std::string> argv =
      testing::CelldArgs(model, root_ + "/etc/cellhouse/policies", {"--socket", socket});
  argv[0] = root_ + "/usr/bin/celld";
  auto celld = testing::Daemon::Spawn({.argv = argv, .log_path = dir_.File("celld.log")});
  ASSERT_TRUE(celld) << celld.error().message();
  ASSERT_TRUE(testing::WaitUntilConnectable(socket, kLongWaitMs)) << celld->Log();
  std::vector<pid_t> zygotes = testing::ZygotesOf(celld->pid());
  ASSERT_EQ(zygotes.size(), 1u);
  char* exe = ::realpath(("/proc/" + std::to_string(zygotes[0]) + "/exe").c_str(), nullptr);
  ASSERT_NE(exe, nullptr);
  EXPECT_EQ(std::string(exe), root_ + "/usr/libexec/cellhouse/cell-zygote");
  std::free(exe);  // NOLINT: realpath(3) allocates with malloc

  CommandResult r = testing::RunCommand({root_ + "/usr/bin/cellctl", "--socket", socket, "generate",
                                         "--prompt", "Once", "--max-tokens", "8"});
  EXPECT_EQ(r.exit_code, 0) << r.err << celld->Log();
  EXPECT_FALSE(r.out.empty());
  ExitStatus st = celld->Terminate();
  EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld->Log();
}

}  // namespace
}  // namespace cellhouse
