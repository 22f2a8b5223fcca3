// End to end: one celld serving several models (--model NAME=PATH, --models-dir), each from its
// own zygote and mapping; opens choose one by name, policies restrict which.
#include <sys/stat.h>

#include <filesystem>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "cli/cellctl/session_client.h"
#include "ipc/client.h"
#include "tests/support/celld_fixture.h"
#include "tests/support/celld_harness.h"

namespace cellhouse {
namespace {

using testing::CommandResult;
using testing::PolicySpec;
using testing::RunCellctl;

class ModelsTest : public testing::CelldTest {
 protected:
  void SetUp() override {
    CelldTest::SetUp();
    if (IsSkipped()) return;
    // A second model, different weights from the fixture's.
    second_ = testing::GenerateModel(local_, "tiny", 23);
    testing::WritePolicy(policies_, PolicySpec{});
    PolicySpec only_first;
    only_first.name = "only-first";
    only_first.extra_text = "models: \"tiny-11\"\n";
    testing::WritePolicy(policies_, only_first);
  }

  api::ServerStatus Status() {
    api::Request status;
    status.mutable_status();
    auto reply = cli::AdminRequest(celld_->socket(), status);
    EXPECT_TRUE(reply && reply->has_status());
    return reply && reply->has_status() ? reply->status() : api::ServerStatus();
  }

  CommandResult Generate(const std::vector<std::string>& extra) {
    std::vector<std::string> args = {
        "generate", "--prompt", "Once upon a time", "--max-tokens", "16", "--temperature", "1",
        "--seed",   "7"};
    args.insert(args.end(), extra.begin(), extra.end());
    return RunCellctl(celld_->socket(), args);
  }

  static std::string Reference(const std::string& model) {
    return testing::EngineReference(model, "Once upon a time", 16, 1.0, 7) + "\n";
  }

  std::string second_;
};

TEST_F(ModelsTest, EachModelServesItsOwnOutputAndStatusListsThem) {
  StartCelld({.extra_args = {"--model", "second=" + second_}});
  api::ServerStatus s = Status();
  ASSERT_EQ(s.models_size(), 2) << s.DebugString();
  // Sorted by name: "second", "tiny-11"; the first given (the fixture's) is the default.
  EXPECT_EQ(s.models(0).name(), "second");
  EXPECT_FALSE(s.models(0).is_default());
  EXPECT_EQ(s.models(1).name(), "tiny-11");
  EXPECT_TRUE(s.models(1).is_default());
  EXPECT_EQ(s.weights_bytes(), s.models(0).weights_bytes() + s.models(1).weights_bytes());
  EXPECT_GT(s.models(0).context_length(), 0u);

  const std::string first_text = Reference(Model());
  const std::string second_text = Reference(second_);
  ASSERT_NE(first_text, second_text) << "the two generated models should differ";
  CommandResult by_default = Generate({});
  ASSERT_EQ(by_default.exit_code, 0) << by_default.err << celld_->Log();
  EXPECT_EQ(by_default.out, first_text);
  CommandResult second = Generate({"--model", "second"});
  ASSERT_EQ(second.exit_code, 0) << second.err << celld_->Log();
  EXPECT_EQ(second.out, second_text);
  CommandResult named_first = Generate({"--model", "tiny-11"});
  EXPECT_EQ(named_first.out, first_text);

  // A session shows its model.
  auto held = cli::SessionClient::Open(celld_->socket(), {.model = "second"});
  ASSERT_TRUE(held) << held.error().message();
  EXPECT_EQ(held->opened().model(), "second");
  // The generations' sessions end once celld has reaped their workers, which may be a moment
  // after cellctl has its answer: only the held one stays.
  std::vector<api::SessionInfo> sessions;
  testing::PollUntil(
      [&] {
        sessions = Sessions();
        return sessions.size() <= 1;
      },
      5000);
  ASSERT_EQ(sessions.size(), 1u);
  EXPECT_EQ(sessions[0].model(), "second");
}

TEST_F(ModelsTest, UnknownAndDisallowedModelsAreRefusedByName) {
  StartCelld({.extra_args = {"--model", "second=" + second_}});
  std::optional<api::Error> refusal;
  EXPECT_FALSE(cli::SessionClient::Open(celld_->socket(), {.model = "nope"}, &refusal));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->code(), api::UNKNOWN_MODEL);
  EXPECT_NE(refusal->message().find("second, tiny-11"), std::string::npos) << refusal->message();
  // A hostile name is not echoed.
  refusal.reset();
  EXPECT_FALSE(cli::SessionClient::Open(celld_->socket(), {.model = "\x1b[2Jx"}, &refusal));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->message().find('\x1b'), std::string::npos);

  refusal.reset();
  EXPECT_FALSE(cli::SessionClient::Open(celld_->socket(),
                                        {.policy = "only-first", .model = "second"}, &refusal));
  ASSERT_TRUE(refusal);
  EXPECT_EQ(refusal->code(), api::UNKNOWN_MODEL);
  EXPECT_NE(refusal->message().find("does not allow"), std::string::npos) << refusal->message();
  EXPECT_TRUE(cli::SessionClient::Open(celld_->socket(), {.policy = "only-first"}));

  CommandResult r = Generate({"--model", "nope"});
  EXPECT_EQ(r.exit_code, 1);
  EXPECT_NE(r.err.find("[UNKNOWN_MODEL]"), std::string::npos) << r.err;
}

TEST_F(ModelsTest, AModelsDirectoryServesEveryModelInIt) {
  const std::string dir = local_.File("models");
  ASSERT_EQ(::mkdir(dir.c_str(), 0755), 0);
  std::filesystem::copy_file(second_, dir + "/other.bin");
  std::filesystem::copy_file(second_ + ".tokenizer", dir + "/other.bin.tokenizer");
  ASSERT_TRUE(CreateFileWithContent(dir + "/README", "not a model\n", 0644));
  // With the fixture's --model (tiny-11, the default) and the directory's one model.
  StartCelld({.extra_args = {"--models-dir", dir}});
  api::ServerStatus s = Status();
  ASSERT_EQ(s.models_size(), 2) << s.DebugString();
  EXPECT_EQ(s.models(0).name(), "other");
  EXPECT_TRUE(s.models(1).is_default());
  CommandResult other = Generate({"--model", "other"});
  ASSERT_EQ(other.exit_code, 0) << other.err << celld_->Log();
  EXPECT_EQ(other.out, Reference(second_));
}

}  // namespace
}  // namespace cellhouse
