// An admin's configuration mistakes, end to end: celld refuses a configuration that cannot work
// before it starts anything (no zygote, no model mapped, no cgroup), and `cellctl policy check
// --model` finds without celld what celld would refuse at a reload.
#include <unistd.h>

#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::CommandResult;
using testing::PolicySpec;
using testing::RunCommand;

class ConfigTest : public testing::CelldTest {
 protected:
  CommandResult Celld(const std::vector<std::string>& args, const std::string& subtree) {
    std::vector<std::string> argv = {testing::BinPath("celld"), "--socket", local_.File("c.sock"),
                                     "--cgroup-subtree", subtree};
    argv.insert(argv.end(), args.begin(), args.end());
    return RunCommand(argv, "", std::nullopt, 30'000);
  }
};

TEST_F(ConfigTest, CelldRefusesAConfigurationThatCannotWorkBeforeStartingAnything) {
  testing::WritePolicy(policies_, PolicySpec{});
  std::string subtree = "e2e-config-" + std::to_string(::getpid());
  struct Case {
    std::vector<std::string> args;
    std::string says;
  };
  const Case cases[] = {
      {{"--model", Model(), "--policy-dir", local_.File("no-such-dir")},
       "--policy-dir: opendir '" + local_.File("no-such-dir") + "'"},
      {{"--model", local_.File("no-model.bin"), "--policy-dir", policies_},
       "--model '" + local_.File("no-model.bin") + "': open: No such file"},
      {{"--model", Model(), "--policy-dir", policies_, "--gpu-inventory", local_.File("none")},
       "--gpu-inventory: "},
  };
  for (const Case& c : cases) {
    CommandResult r = Celld(c.args, subtree);
    EXPECT_EQ(r.exit_code, 2) << r.err;
    EXPECT_NE(r.err.find("nothing was started. Refusing."), std::string::npos) << r.err;
    EXPECT_NE(r.err.find(c.says), std::string::npos) << r.err;
    // Nothing was started: no zygote mapped the model, no cgroup was made.
    EXPECT_EQ(r.err.find("zygote"), std::string::npos) << r.err;
    EXPECT_EQ(r.err.find("cgroups:"), std::string::npos) << r.err;
    for (const std::string& dir : testing::CgroupSubtreeDirs(subtree)) {
      EXPECT_NE(::access(dir.c_str(), F_OK), 0) << dir;
    }
  }
  // An invalid policy file is found as early, every problem at once.
  ASSERT_TRUE(CreateFileWithContent(policies_ + "/bad.textproto",
                                    "name: \"bad\"\nuids: 0\ncgroup { memory_max_bytes: 5Q }\n",
                                    0644));
  CommandResult r = Celld({"--model", Model(), "--policy-dir", policies_}, subtree);
  EXPECT_EQ(r.exit_code, 2) << r.err;
  EXPECT_NE(r.err.find("bad.textproto:3:28: memory_max_bytes: '5Q' is not a byte count"),
            std::string::npos)
      << r.err;
  EXPECT_EQ(r.err.find("zygote"), std::string::npos) << r.err;
}

TEST_F(ConfigTest, PolicyCheckWithAModelMakesTheChecksCelldMakes) {
  PolicySpec tight;
  tight.memory_max = 4 << 20;  // below what any session needs (the worker alone is 16 MiB)
  testing::WritePolicy(policies_, tight);
  std::string file = policies_ + "/default.textproto";
  // Without the model the file is valid...
  CommandResult plain = RunCommand({testing::BinPath("cellctl"), "policy", "check", file});
  EXPECT_EQ(plain.exit_code, 0) << plain.err;
  // ... with it, refused as celld would refuse it.
  CommandResult with =
      RunCommand({testing::BinPath("cellctl"), "policy", "check", "--model", Model(), file});
  EXPECT_EQ(with.exit_code, 1) << with.out;
  EXPECT_NE(with.err.find("default.textproto:"), std::string::npos) << with.err;
  EXPECT_NE(with.err.find("a session needs at context_length"), std::string::npos) << with.err;
  // And celld agrees: it refuses the directory once the zygote tells the model's sizes.
  auto celld = testing::CelldProcess::Start(local_, {.model = Model(), .policy_dir = policies_});
  ASSERT_FALSE(celld);
  EXPECT_NE(celld.error().message().find("a session needs at context_length"), std::string::npos)
      << celld.error().message();

  PolicySpec fits;  // 256 MiB
  testing::WritePolicy(policies_, fits);
  CommandResult ok =
      RunCommand({testing::BinPath("cellctl"), "policy", "check", "--model", Model(), file});
  EXPECT_EQ(ok.exit_code, 0) << ok.err;
  EXPECT_NE(ok.out.find("model " + Model() + ": context up to 256 tokens"), std::string::npos)
      << ok.out;
  // A GGUF file gives cellctl the same facts (cellmodel info --json names them alike).
  const std::string gguf = local_.File("tiny-Q8_0.gguf");
  CommandResult convert = RunCommand(
      {testing::BinPath("cellmodel"), "convert", "--in", Model(), "--out", gguf, "--type", "Q8_0"});
  ASSERT_EQ(convert.exit_code, 0) << convert.err;
  CommandResult with_gguf =
      RunCommand({testing::BinPath("cellctl"), "policy", "check", "--model", gguf, file});
  EXPECT_EQ(with_gguf.exit_code, 0) << with_gguf.err;
  EXPECT_NE(with_gguf.out.find("model " + gguf + ": context up to 256 tokens"), std::string::npos)
      << with_gguf.out;
  EXPECT_NE(with_gguf.out.find("of shared-executor slot for a policy that shares it"),
            std::string::npos)
      << with_gguf.out;
  // celld's --ctx-size and --shared-executor=false, as celld would count them.
  CommandResult capped = RunCommand({testing::BinPath("cellctl"), "policy", "check", "--model",
                                     gguf, "--ctx-size", "64", "--shared-executor=false", file});
  EXPECT_EQ(capped.exit_code, 0) << capped.err;
  EXPECT_NE(capped.out.find("model " + gguf + ": context up to 64 tokens"), std::string::npos)
      << capped.out;
  EXPECT_EQ(capped.out.find("shared-executor slot"), std::string::npos) << capped.out;
  testing::WritePolicy(policies_, tight);
  CommandResult tight_gguf =
      RunCommand({testing::BinPath("cellctl"), "policy", "check", "--model", gguf, file});
  EXPECT_EQ(tight_gguf.exit_code, 1) << tight_gguf.out;
  EXPECT_NE(tight_gguf.err.find("a session needs at context_length"), std::string::npos)
      << tight_gguf.err;
  CommandResult missing = RunCommand({testing::BinPath("cellctl"), "policy", "check", "--model",
                                      local_.File("no-model.bin"), file});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_NE(missing.err.find("no-model.bin"), std::string::npos) << missing.err;
}

}  // namespace
}  // namespace cellhouse
