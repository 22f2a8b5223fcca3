#include "base/flags.h"

#include <gtest/gtest.h>

namespace cellhouse {
namespace {

struct Opts {
  std::string model;
  int64_t steps = 256;
  double temperature = 1.0;
  bool json = false;
  uint64_t budget = 0;
  std::vector<std::string> policies;
};

FlagSet Make(Opts* o) {
  FlagSet f("tool run", "Runs.");
  f.String("model", &o->model, "FILE", "checkpoint");
  f.Int("steps", &o->steps, "N", "positions");
  f.Double("temperature", &o->temperature, "T", "sampling temperature");
  f.Bool("json", &o->json, "JSON output");
  f.ByteSize("budget", &o->budget, "BYTES", "memory budget");
  f.StringList("policy", &o->policies, "NAME", "policy");
  f.Alias('m', "model");
  return f;
}

TEST(FlagsTest, ParsesAllForms) {
  Opts o;
  FlagSet f = Make(&o);
  auto pos = f.Parse(std::vector<std::string>{"-m", "a.bin", "--steps=10", "x", "--json",
                                              "--temperature", "0.5", "--budget", "1G", "--policy",
                                              "p1", "--policy=p2", "--", "--y"});
  ASSERT_TRUE(pos) << pos.error().message();
  EXPECT_EQ(o.model, "a.bin");
  EXPECT_EQ(o.steps, 10);
  EXPECT_TRUE(o.json);
  EXPECT_DOUBLE_EQ(o.temperature, 0.5);
  EXPECT_EQ(o.budget, 1ull << 30);
  EXPECT_EQ(o.policies, (std::vector<std::string>{"p1", "p2"}));
  EXPECT_EQ(*pos, (std::vector<std::string>{"x", "--y"}));
  EXPECT_TRUE(f.IsSet("steps"));
  EXPECT_FALSE(f.IsSet("help"));
}

TEST(FlagsTest, ErrorsNameTheFlag) {
  Opts o;
  FlagSet f = Make(&o);
  EXPECT_EQ(f.Parse(std::vector<std::string>{"--nope"}).error().message(),
            "unknown option --nope; see --help");
  FlagSet g = Make(&o);
  EXPECT_EQ(g.Parse(std::vector<std::string>{"--steps"}).error().message(),
            "option --steps needs a value (N)");
  FlagSet h = Make(&o);
  EXPECT_EQ(h.Parse(std::vector<std::string>{"--steps", "ten"}).error().message(),
            "option --steps: --steps: 'ten' is not an integer");
}

TEST(FlagsTest, HelpListsEveryFlag) {
  Opts o;
  FlagSet f = Make(&o);
  ASSERT_TRUE(f.Parse(std::vector<std::string>{"--help"}));
  EXPECT_TRUE(f.help_requested());
  std::string usage = f.Usage();
  for (const char* name : {"--model", "--steps", "--temperature", "--json", "--budget", "-m,"}) {
    EXPECT_NE(usage.find(name), std::string::npos) << name;
  }
  EXPECT_NE(usage.find("(default: 256)"), std::string::npos);
}

}  // namespace
}  // namespace cellhouse
