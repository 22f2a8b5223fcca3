// The cellmodel binary end to end: make -> info -> run, and its exit-code contract.
#include <fcntl.h>

#include <cstdlib>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/process.h"
#include "tests/support/test_env.h"

namespace cellhouse {
namespace {

using ::testing::HasSubstr;
using ::testing::StartsWith;

struct ToolResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string CellmodelPath() { return testing::BinPath("cellmodel"); }

ToolResult RunCellmodel(const testing::TempDir& dir, const std::vector<std::string>& tool_args) {
  std::vector<std::string> args = {CellmodelPath()};
  args.insert(args.end(), tool_args.begin(), tool_args.end());
  const std::string out_path = dir.File("stdout");
  const std::string err_path = dir.File("stderr");
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  UniqueFd err(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  EXPECT_TRUE(out.valid() && err.valid());
  ToolResult r;
  Result<ChildProcess> child =
      SpawnProgram({.argv = args, .fds = {{1, out.get()}, {2, err.get()}}});
  EXPECT_TRUE(child) << child.error().message();
  if (!child) {
    return r;
  }
  Result<ExitStatus> status = child->Wait();
  EXPECT_TRUE(status) << status.error().message();
  if (!status) {
    return r;
  }
  const ExitStatus& st = status.value();
  EXPECT_EQ(st.kind, ExitStatus::Kind::kExited) << st.ToString();
  r.exit_code = st.code;
  for (auto [path, text] : {std::pair{&out_path, &r.out}, std::pair{&err_path, &r.err}}) {
    Result<std::string> content = ReadFileToString(*path, 1 << 20);
    EXPECT_TRUE(content) << content.error().message();
    if (content) {
      *text = std::move(content).value();
    }
  }
  return r;
}

TEST(CellmodelTest, MakeInfoRunRoundTrip) {
  testing::TempDir dir;
  const std::string model = dir.File("tiny.bin");
  ToolResult made = RunCellmodel(dir, {"make", "--preset", "tiny", "--seed", "3", "-o", model});
  ASSERT_EQ(made.exit_code, 0) << made.err;

  ToolResult info = RunCellmodel(dir, {"info", model, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_THAT(info.out, HasSubstr("\"dim\": 64"));
  EXPECT_THAT(info.out, HasSubstr("\"vocab_size\": 512"));
  EXPECT_THAT(info.out, HasSubstr("\"chunks\": 1"));
  ToolResult text = RunCellmodel(dir, {"info", model});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("dim 64, hidden 176, 2 layers, 4 heads (2 kv)"));

  // The tokenizer defaults to <model>.tokenizer; steps count positions, prompt included.
  ToolResult run = RunCellmodel(dir, {"run", "--model", model, "--prompt", "Once upon a time",
                                      "--steps", "24", "--temperature", "0"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, StartsWith("Once upon a time"));
  EXPECT_EQ(run.out.back(), '\n');
  EXPECT_THAT(run.err, HasSubstr("prefill:"));
  EXPECT_THAT(run.err, HasSubstr("tokens/s"));
  // Deterministic: the same command prints the same text, with any decode kernel.
  for (const char* kernel : {"openblas", "avx2", "avx512"}) {
    ToolResult again =
        RunCellmodel(dir, {"run", "--model", model, "--prompt", "Once upon a time", "--steps", "24",
                           "--temperature", "0", "--kernel", kernel});
    EXPECT_EQ(again.out, run.out) << kernel;
  }
  ToolResult sampled =
      RunCellmodel(dir, {"run", "--model", model, "--tokenizer", model + ".tokenizer", "--prompt",
                         "Hi", "--max-tokens", "10", "--temperature", "0.9", "--seed", "5"});
  ASSERT_EQ(sampled.exit_code, 0) << sampled.err;
  EXPECT_THAT(sampled.err, HasSubstr("decode: 10 tokens"));
}

TEST(CellmodelTest, ExitCodes) {
  testing::TempDir dir;
  EXPECT_EQ(RunCellmodel(dir, {}).exit_code, 2);
  EXPECT_EQ(RunCellmodel(dir, {"frobnicate"}).exit_code, 2);
  ToolResult help = RunCellmodel(dir, {"run", "--help"});
  EXPECT_EQ(help.exit_code, 0);
  EXPECT_THAT(help.out, HasSubstr("--max-tokens"));
  EXPECT_THAT(help.out, HasSubstr("Exit status"));
  EXPECT_EQ(RunCellmodel(dir, {"make", "--help"}).exit_code, 0);
  EXPECT_EQ(RunCellmodel(dir, {"info", "--help"}).exit_code, 0);
  EXPECT_EQ(RunCellmodel(dir, {"make", "--preset", "tiny"}).exit_code, 2);  // no -o
  EXPECT_EQ(RunCellmodel(dir, {"make", "--preset", "huge", "-o", dir.File("m")}).exit_code, 2);
  EXPECT_EQ(RunCellmodel(dir, {"make", "--heads", "5", "-o", dir.File("m")}).exit_code, 2);
  EXPECT_EQ(RunCellmodel(dir, {"run", "--prompt", "x"}).exit_code, 2);  // no --model
  EXPECT_EQ(
      RunCellmodel(dir, {"run", "--model", "m", "--steps", "3", "--max-tokens", "3"}).exit_code, 2);
  ToolResult missing = RunCellmodel(dir, {"info", dir.File("missing.bin")});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("missing.bin"));
  ToolResult no_tok = RunCellmodel(dir, {"run", "--model", dir.File("missing.bin")});
  EXPECT_EQ(no_tok.exit_code, 1);
}

}  // namespace
}  // namespace cellhouse
