#include "tests/support/celld_fixture.h"

#include <sys/stat.h>
#include <unistd.h>

#include "cli/cellctl/session_client.h"

namespace cellhouse::testing {

const std::string& CelldTest::Model() {
  // Leaked on purpose: it must outlive every test, and TempDir's destructor removes the files.
  static TempDir* dir = new TempDir();
  static const std::string* model = new std::string(GenerateModel(*dir, "tiny", 11));
  return *model;
}

void CelldTest::SetUp() {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root: celld creates namespaces and cgroups";
  policies_ = local_.File("policies");
  ::mkdir(policies_.c_str(), 0755);
}

void CelldTest::TearDown() {
  if (celld_ && celld_->running()) {
    ExitStatus st = celld_->Terminate();
    EXPECT_TRUE(st.Success()) << st.ToString() << "\n" << celld_->Log();
  }
}

void CelldTest::StartCelld(CelldOptions options) {
  if (options.model.empty()) options.model = Model();
  if (options.policy_dir.empty()) options.policy_dir = policies_;
  auto started = CelldProcess::Start(local_, options);
  ASSERT_TRUE(started) << started.error().message();
  celld_ = std::move(*started);
}

std::vector<api::SessionInfo> CelldTest::Sessions() {
  api::Request list;
  list.mutable_list_sessions();
  auto r = cli::AdminRequest(celld_->socket(), list);
  EXPECT_TRUE(r && r->has_sessions());
  std::vector<api::SessionInfo> out;
  if (r && r->has_sessions()) {
    for (const auto& s : r->sessions().sessions()) out.push_back(s);
  }
  return out;
}

}  // namespace cellhouse::testing
