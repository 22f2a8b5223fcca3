// Every policy shipped in policy/examples/ serves a real session: celld loads the file as an admin
// would install it, a client opens a session under it and generates a few tokens, and the session
// ends as its client asked (not killed by its own sandbox). Only who may use the policy and its
// host uid range are changed, so the test runs as root beside other tests.
#include <regex>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "cli/cellctl/session_client.h"
#include "tests/support/celld_fixture.h"

namespace cellhouse {
namespace {

using testing::CommandResult;
using testing::RunCellctl;

// The shipped examples, by name.
const std::vector<std::string>& ExampleNames() {
  static const std::vector<std::string> kNames = [] {
    std::vector<std::string> out;
    auto files = ListDirectory(testing::SourceDir() + "/policy/examples");
    EXPECT_TRUE(files) << files.error().message();
    if (!files) return out;
    for (const std::string& f : *files) {
      if (f.ends_with(".textproto")) out.push_back(f.substr(0, f.size() - 10));
    }
    return out;
  }();
  return kNames;
}

// The example as shipped, made usable by root and given a host uid range of this test process.
std::string Adapted(const std::string& name, uint32_t host_first) {
  auto text =
      ReadFileToString(testing::SourceDir() + "/policy/examples/" + name + ".textproto", 1 << 20);
  EXPECT_TRUE(text) << text.error().message();
  std::string out =
      std::regex_replace(text ? *text : "", std::regex(R"(\nhost_uids \{[^}]*\})"),
                         "\nhost_uids { first: " + std::to_string(host_first) + " count: 4096 }");
  EXPECT_NE(out, *text) << name << ": no host_uids line to replace";
  return out + "\nuids: 0\n";
}

class ExamplesTest : public testing::CelldTest {};

TEST_F(ExamplesTest, ThereAreExamplesToTest) {
  EXPECT_GE(ExampleNames().size(), 3u);  // default, strict, gpu
}

TEST_F(ExamplesTest, EveryShippedExampleServesASession) {
  // The gpu example needs a device: an inventory naming a stand-in node (/dev/null) gives it one.
  ASSERT_TRUE(CreateFileWithContent(
      local_.File("gpus"), "0 | GPU-0000feed-0000-4000-8000-00000000beef | fake | 8G | /dev/null\n",
      0644));
  uint32_t base = 0x50000000u + (static_cast<uint32_t>(::getpid()) % 4096) * 0x10000u;
  uint32_t n = 0;
  for (const std::string& name : ExampleNames()) {
    ASSERT_TRUE(CreateFileWithContent(policies_ + "/" + name + ".textproto",
                                      Adapted(name, base + 0x1000u * n++), 0644));
  }
  StartCelld({.extra_args = {"--gpu-inventory", local_.File("gpus")}});
  for (const std::string& name : ExampleNames()) {
    SCOPED_TRACE("policy " + name);
    auto session = cli::SessionClient::Open(celld_->socket(), {.policy = name});
    ASSERT_TRUE(session) << session.error().message() << "\n" << celld_->Log();
    // No seed, no temperature: what `cellctl generate` sends by default (a random seed the worker
    // draws itself).
    api::Generate g;
    g.set_prompt("Once upon a time");
    g.set_max_new_tokens(8);
    int pieces = 0;
    auto done = session->Generate(g, [&](const api::Piece&) { ++pieces; });
    ASSERT_TRUE(done) << done.error().message() << "\n" << celld_->Log();
    EXPECT_EQ(done->generated_tokens(), static_cast<uint32_t>(pieces));
    EXPECT_GT(pieces, 0);
    // A second turn, with a client seed, in the same conversation.
    g.set_seed(7);
    g.set_prompt(" Then");
    ASSERT_TRUE(session->Generate(g, [](const api::Piece&) {})) << celld_->Log();
    EXPECT_TRUE(session->Close());
  }
  // cellctl, as a user would run it.
  for (const std::string& name : ExampleNames()) {
    CommandResult r = RunCellctl(
        celld_->socket(), {"generate", "--policy", name, "--prompt", "Hello", "--max-tokens", "4"});
    EXPECT_EQ(r.exit_code, 0) << name << ": " << r.err;
  }
  std::string log = celld_->Log();
  for (const char* bad : {"SECCOMP_VIOLATION", "WORKER_CRASHED", "SETUP_FAILED"}) {
    EXPECT_EQ(log.find(bad), std::string::npos) << bad << "\n" << log;
  }
  EXPECT_NE(log.find("outcome CLOSED"), std::string::npos) << log;
}

}  // namespace
}  // namespace cellhouse
