// The cellmodel binary end to end: make -> info -> run, make -> quantize -> info -> run,
// make -> convert (every GGUF type) -> info -> run, the converted files in llama.cpp's own
// llama-simple (when ../shared/tools/llama.cpp is present) to the same greedy text, and the
// exit-code contract; tokenize, render and chat against ../shared's GGUF vocabularies and the
// llama.cpp ids and Jinja2 renderings recorded beside them.
#include <fcntl.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <nlohmann/json.hpp>

#include "base/io.h"
#include "base/process.h"
#include "engine/model.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "tests/engine/greedy_agreement.h"
#include "tests/support/test_env.h"

namespace cellhouse {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

struct ToolResult {
  int exit_code = -1;
  std::string out;
  std::string err;
};

std::string CellmodelPath() { return testing::BinPath("cellmodel"); }

ToolResult RunProgram(const testing::TempDir& dir, const std::vector<std::string>& args,
                      const std::string& input = "");

ToolResult RunCellmodel(const testing::TempDir& dir, const std::vector<std::string>& tool_args) {
  std::vector<std::string> args = {CellmodelPath()};
  args.insert(args.end(), tool_args.begin(), tool_args.end());
  return RunProgram(dir, args);
}

// Runs a program with `input` as its standard input (empty: /dev/null's).
ToolResult RunProgram(const testing::TempDir& dir, const std::vector<std::string>& args,
                      const std::string& input) {
  const std::string in_path = dir.File("stdin");
  const std::string out_path = dir.File("stdout");
  const std::string err_path = dir.File("stderr");
  {
    UniqueFd w(::open(in_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    EXPECT_TRUE(w.valid() && WriteFull(w.get(), input, "the program's input"));
  }
  UniqueFd in(::open(in_path.c_str(), O_RDONLY | O_CLOEXEC));
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  UniqueFd err(::open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  EXPECT_TRUE(in.valid() && out.valid() && err.valid());
  ToolResult r;
  Result<ChildProcess> child =
      SpawnProgram({.argv = args, .fds = {{0, in.get()}, {1, out.get()}, {2, err.get()}}});
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

TEST(CellmodelTest, QuantizeInfoRunRoundTrip) {
  testing::TempDir dir;
  const std::string model = dir.File("tiny.bin");
  const std::string q8 = dir.File("tiny.q8");
  ASSERT_EQ(RunCellmodel(dir, {"make", "--preset", "tiny", "--seed", "3", "-o", model}).exit_code,
            0);
  ToolResult quantized = RunCellmodel(dir, {"quantize", "--in", model, "--out", q8});
  ASSERT_EQ(quantized.exit_code, 0) << quantized.err;
  EXPECT_THAT(quantized.err, HasSubstr("int8 weights in groups of 32"));
  EXPECT_THAT(quantized.err, HasSubstr("copied tokenizer"));
  Result<std::string> tokenizer = ReadFileToString(q8 + ".tokenizer", 1 << 20);
  ASSERT_TRUE(tokenizer) << "the tokenizer is copied beside the output";
  EXPECT_EQ(*tokenizer, *ReadFileToString(model + ".tokenizer", 1 << 20));

  ToolResult info = RunCellmodel(dir, {"info", q8, "--json"});
  ASSERT_EQ(info.exit_code, 0) << info.err;
  EXPECT_THAT(info.out, HasSubstr("\"format\": \"q8\", \"group_size\": 32"));
  EXPECT_THAT(info.out, HasSubstr("\"vocab_size\": 512"));
  EXPECT_THAT(info.out, Not(HasSubstr("\"bytes_saved\": -")));
  ToolResult text = RunCellmodel(dir, {"info", q8});
  ASSERT_EQ(text.exit_code, 0) << text.err;
  EXPECT_THAT(text.out, HasSubstr("format:     q8: int8 groups of 32"));
  EXPECT_THAT(text.out, HasSubstr("dim 64, hidden 176, 2 layers, 4 heads (2 kv)"));
  EXPECT_THAT(text.out, HasSubstr("saved:"));
  ToolResult fp32_info = RunCellmodel(dir, {"info", model, "--json"});
  EXPECT_THAT(fp32_info.out, HasSubstr("\"format\": \"f32\", \"group_size\": 0"));
  EXPECT_THAT(fp32_info.out, HasSubstr("\"bytes_saved\": 0"));

  // The tokenizer defaults to <model>.tokenizer, as for fp32; every kernel choice prints the
  // same text (the int8 kernels agree bit for bit).
  ToolResult run = RunCellmodel(dir, {"run", "--model", q8, "--prompt", "Once upon a time",
                                      "--steps", "24", "--temperature", "0"});
  ASSERT_EQ(run.exit_code, 0) << run.err;
  EXPECT_THAT(run.out, StartsWith("Once upon a time"));
  EXPECT_THAT(run.err, HasSubstr("(int8)"));
  EXPECT_THAT(run.err, HasSubstr("decode:"));
  for (const char* kernel : {"openblas", "avx2", "avx512"}) {
    ToolResult again =
        RunCellmodel(dir, {"run", "--model", q8, "--prompt", "Once upon a time", "--steps", "24",
                           "--temperature", "0", "--kernel", kernel});
    EXPECT_EQ(again.out, run.out) << kernel;
  }

  const std::string q64 = dir.File("tiny64.q8");
  ASSERT_EQ(
      RunCellmodel(dir, {"quantize", "--in", model, "-o", q64, "--group-size", "64"}).exit_code, 0);
  EXPECT_THAT(RunCellmodel(dir, {"info", q64, "--json"}).out, HasSubstr("\"group_size\": 64"));
}

TEST(CellmodelTest, QuantizeRefusals) {
  testing::TempDir dir;
  const std::string model = dir.File("tiny.bin");
  const std::string q8 = dir.File("tiny.q8");
  ASSERT_EQ(RunCellmodel(dir, {"make", "--preset", "tiny", "-o", model}).exit_code, 0);
  EXPECT_EQ(RunCellmodel(dir, {"quantize", "--help"}).exit_code, 0);
  EXPECT_EQ(RunCellmodel(dir, {"quantize", "--in", model}).exit_code, 2);
  EXPECT_EQ(RunCellmodel(dir, {"quantize", "--in", model, "--out", model}).exit_code, 2);
  EXPECT_EQ(
      RunCellmodel(dir, {"quantize", "--in", model, "--out", q8, "--group-size", "48"}).exit_code,
      2);
  ToolResult missing = RunCellmodel(dir, {"quantize", "--in", dir.File("none.bin"), "--out", q8});
  EXPECT_EQ(missing.exit_code, 1);
  EXPECT_THAT(missing.err, HasSubstr("none.bin"));
  // A tokenizer given but absent fails before anything is written.
  ToolResult no_tok = RunCellmodel(
      dir, {"quantize", "--in", model, "--out", q8, "--tokenizer", dir.File("none.tok")});
  EXPECT_EQ(no_tok.exit_code, 1);
  EXPECT_THAT(no_tok.err, HasSubstr("none.tok"));
  EXPECT_FALSE(ReadFileToString(q8, 1 << 20)) << "no output after a failure";
  ASSERT_EQ(RunCellmodel(dir, {"quantize", "--in", model, "--out", q8}).exit_code, 0);
  ToolResult twice = RunCellmodel(dir, {"quantize", "--in", q8, "--out", dir.File("again.q8")});
  EXPECT_EQ(twice.exit_code, 1);
  EXPECT_THAT(twice.err, HasSubstr("already quantized"));
  // A corrupted int8 file is refused cleanly by every command that reads it.
  Result<std::string> bytes = ReadFileToString(q8, 1 << 24);
  ASSERT_TRUE(bytes);
  ASSERT_TRUE(
      CreateFileWithContent(dir.File("cut.q8"), bytes->substr(0, bytes->size() - 100), 0644));
  ToolResult cut = RunCellmodel(dir, {"info", dir.File("cut.q8")});
  EXPECT_EQ(cut.exit_code, 1);
  EXPECT_THAT(cut.err, HasSubstr("reading quantized checkpoint"));
  EXPECT_THAT(cut.err, HasSubstr("truncated"));
  EXPECT_EQ(RunCellmodel(dir, {"run", "--model", dir.File("cut.q8"), "--tokenizer",
                               model + ".tokenizer", "--prompt", "x"})
                .exit_code,
            1);
}

TEST(CellmodelTest, ConvertInfoRunRoundTrip) {
  testing::TempDir dir;
  const std::string model = dir.File("15m.bin");
  ToolResult made = RunCellmodel(dir, {"make", "--preset", "15m", "--seed", "5", "-o", model});
  ASSERT_EQ(made.exit_code, 0) << made.err;
  for (const char* type : {"F32", "F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K"}) {
    const std::string gguf = dir.File(std::string(type) + ".gguf");
    ToolResult convert =
        RunCellmodel(dir, {"convert", "--in", model, "--out", gguf, "--type", type});
    ASSERT_EQ(convert.exit_code, 0) << convert.err;
    EXPECT_THAT(convert.out, HasSubstr("gguf llama, dim 288")) << type;
    ToolResult info = RunCellmodel(dir, {"info", gguf});
    ASSERT_EQ(info.exit_code, 0) << info.err;
    EXPECT_THAT(info.out, HasSubstr("architecture:  llama"));
    EXPECT_THAT(info.out, HasSubstr("SentencePiece (llama), 32000 tokens"));
    EXPECT_THAT(info.out, HasSubstr("chat template: none"));
    EXPECT_THAT(info.out, HasSubstr("context:       256 tokens"));
    ToolResult json = RunCellmodel(dir, {"info", "--json", gguf});
    ASSERT_EQ(json.exit_code, 0) << json.err;
    EXPECT_THAT(json.out, HasSubstr("\"format\": \"gguf\""));
    EXPECT_THAT(json.out, HasSubstr("\"parameters\": 15"));
    ToolResult run =
        RunCellmodel(dir, {"run", "--model", gguf, "--prompt", "Once upon a time", "--max-tokens",
                           "8", "--temperature", "0", "--ctx-size", "64"});
    ASSERT_EQ(run.exit_code, 0) << run.err;
    EXPECT_THAT(run.out, StartsWith("Once upon a time"));
    EXPECT_THAT(run.err, HasSubstr("context 18 of 64 (f16 KV cache)"));
  }
  ToolResult q4km = RunCellmodel(dir, {"info", dir.File("Q4_K_M.gguf")});
  EXPECT_THAT(q4km.out, HasSubstr("q5_0")) << "288-value rows fall back from q4_K";
  ToolResult bad =
      RunCellmodel(dir, {"convert", "--in", model, "--out", dir.File("x.gguf"), "--type", "Q3_K"});
  EXPECT_EQ(bad.exit_code, 2);
  EXPECT_THAT(bad.err, HasSubstr("--type 'Q3_K' is not one of"));
}

// The files `convert` writes load in llama.cpp, which continues them to the same greedy text: the
// reference checkpoint (grouped-query, separate classifier) with its 512-piece vocabulary, in
// every type, prompt and continuation compared token by token.
TEST(CellmodelTest, ConvertedFilesRunInLlamaCppToTheSameText) {
  const std::string tools = testing::SourceDir() + "/../shared/tools/llama.cpp/llama-simple";
  std::optional<std::string> ckpt = testing::SharedModelPath("ref-gqa-512.bin");
  std::optional<std::string> tok = testing::SharedModelPath("tok512.bin");
  if (::access(tools.c_str(), X_OK) != 0 || !ckpt || !tok) {
    GTEST_SKIP() << "../shared/tools/llama.cpp or ../shared/models absent: skipping";
  }
  testing::TempDir dir;
  std::printf("%-8s %-20s %s\n", "type", "prompt", "agreement with llama-simple");
  for (const char* type : {"F32", "F16", "Q8_0", "Q4_0", "Q4_K_M", "Q6_K"}) {
    const std::string gguf = dir.File(std::string(type) + ".gguf");
    ToolResult convert = RunCellmodel(
        dir, {"convert", "--in", *ckpt, "--tokenizer", *tok, "--out", gguf, "--type", type});
    ASSERT_EQ(convert.exit_code, 0) << convert.err;
    Result<engine::Model> model = engine::Model::Open(gguf);
    ASSERT_TRUE(model) << model.error().message();
    Result<engine::Tokenizer> vocab = engine::TokenizerFromGguf(*model->gguf());
    ASSERT_TRUE(vocab) << vocab.error().message();
    for (const char* prompt : {"Once upon a time", "The little dog"}) {
      constexpr int kTokens = 48;
      ToolResult llama =
          RunProgram(dir, {tools, "-m", gguf, "-n", std::to_string(kTokens), prompt});
      ASSERT_EQ(llama.exit_code, 0) << llama.err;
      const engine::testing::Agreement a = engine::testing::GreedyAgreement(
          *model, *vocab, prompt, kTokens, engine::testing::Flatten(llama.out));
      std::printf("%-8s %-20s %d/%d %s\n", type, prompt, a.agreed, kTokens, a.note.c_str());
      EXPECT_TRUE(a.prompt_matches) << a.note;
      EXPECT_GE(a.agreed, 32) << type << " '" << prompt << "': " << a.note;
    }
  }
  static_cast<void>(std::fflush(stdout));
}

// The GGUF files of ../shared/models/gguf, or nullopt (the caller skips).
std::optional<std::string> SharedGguf(const std::string& name) {
  return testing::SharedModelPath("gguf/" + name);
}

std::optional<nlohmann::json> SharedJson(const std::string& name) {
  std::optional<std::string> path = testing::SharedModelPath("gguf/" + name);
  if (!path) return std::nullopt;
  Result<std::string> text = ReadFileToString(*path, 64 << 20);
  if (!text) return std::nullopt;
  return nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
}

TEST(CellmodelTest, TokenizePrintsLlamaCppsIdsForEveryVocabulary) {
  std::optional<nlohmann::json> reference = SharedJson("tokenize.json");
  if (!reference || reference->is_discarded()) {
    GTEST_SKIP() << "../shared/models/gguf/tokenize.json absent: skipping";
  }
  testing::TempDir dir;
  int checked = 0;
  for (const auto& [vocabulary, cases] : reference->items()) {
    std::optional<std::string> model = SharedGguf(vocabulary + ".gguf");
    ASSERT_TRUE(model) << vocabulary;
    // Every case is checked in process (GgufTokenizerTest); here the command, on a few.
    int per_vocabulary = 0;
    for (const nlohmann::json& c : cases) {
      if (per_vocabulary == 8) break;
      const std::string text = c.at("text").get<std::string>();
      // argv cannot carry NUL, a leading '-' would be a flag, and the recorded ids parsed
      // special tokens where `tokenize` never does.
      if (text.empty() || text[0] == '-' || text.find('\0') != std::string::npos ||
          text.find("<|") != std::string::npos || text.find("</s>") != std::string::npos ||
          text.find("<s>") != std::string::npos) {
        continue;
      }
      ToolResult r = RunCellmodel(dir, {"tokenize", "--model", *model, "--ids", text});
      ASSERT_EQ(r.exit_code, 0) << r.err;
      nlohmann::json ids = nlohmann::json::parse(r.out, nullptr, false);
      EXPECT_EQ(ids, c.at("ids")) << vocabulary << ": " << text;
      ++checked;
      ++per_vocabulary;
    }
  }
  EXPECT_GE(checked, 20);
}

TEST(CellmodelTest, RenderIsJinja2sRenderingByteForByte) {
  std::optional<nlohmann::json> reference = SharedJson("chat_templates.json");
  if (!reference || reference->is_discarded()) {
    GTEST_SKIP() << "../shared/models/gguf/chat_templates.json absent: skipping";
  }
  // Each template with a vocabulary it fits; Llama 2's is named (no file here carries it).
  struct Pairing {
    std::string family, file, override_name;
  };
  const std::vector<Pairing> pairings = {{"llama3", "llama3-vocab-Q8_0.gguf", ""},
                                         {"qwen3", "qwen-vocab-Q8_0.gguf", ""},
                                         {"llama2", "llama-spm-Q8_0.gguf", "llama2"}};
  testing::TempDir dir;
  int checked = 0;
  for (const Pairing& p : pairings) {
    std::optional<std::string> model = SharedGguf(p.file);
    ASSERT_TRUE(model) << p.file;
    // Every case is checked in process (ChatTemplateTest); here the command, on the first
    // six of each template (Qwen3's include enable_thinking=false).
    const nlohmann::json& cases = reference->at(p.family).at("cases");
    for (size_t i = 0; i < cases.size() && i < 6; ++i) {
      const nlohmann::json& c = cases[i];
      std::vector<std::string> args = {"render", "--model", *model};
      if (!p.override_name.empty()) args.insert(args.end(), {"--chat-template", p.override_name});
      if (!c.at("add_generation_prompt").get<bool>()) args.emplace_back("--no-generation-prompt");
      if (c.contains("enable_thinking") && !c.at("enable_thinking").get<bool>()) {
        args.emplace_back("--no-think");
      }
      ToolResult r = RunProgram(
          dir,
          [&] {
            std::vector<std::string> all = {CellmodelPath()};
            all.insert(all.end(), args.begin(), args.end());
            return all;
          }(),
          c.at("messages").dump());
      ASSERT_EQ(r.exit_code, 0) << r.err;
      EXPECT_EQ(r.out, c.at("rendered").get<std::string>()) << p.family << " " << c.dump();
      ++checked;
    }
  }
  EXPECT_EQ(checked, 18);
}

TEST(CellmodelTest, ChatWithoutATemplateIsRefusedNamingTheOverrideAndTheFamilies) {
  testing::TempDir dir;
  const std::string model = dir.File("tiny.bin");
  ASSERT_EQ(RunCellmodel(dir, {"make", "--preset", "tiny", "--seed", "3", "-o", model}).exit_code,
            0);
  ToolResult refused = RunProgram(dir, {CellmodelPath(), "chat", "--model", model}, "Hello\n");
  EXPECT_NE(refused.exit_code, 0);
  EXPECT_THAT(refused.err, HasSubstr("--chat-template NAME"));
  for (const char* family :
       {"chatml", "qwen3", "llama3", "llama2", "mistral", "gemma", "phi3", "zephyr", "deepseek"}) {
    EXPECT_THAT(refused.err, HasSubstr(family));
  }
  ToolResult unknown = RunProgram(
      dir, {CellmodelPath(), "chat", "--model", model, "--chat-template", "no-such-family"},
      "Hello\n");
  EXPECT_NE(unknown.exit_code, 0);
  EXPECT_THAT(unknown.err, HasSubstr("no-such-family"));
  // The override makes the same model chat.
  ToolResult chatml = RunProgram(
      dir,
      {CellmodelPath(), "chat", "--model", model, "--chat-template", "chatml", "--max-tokens", "4"},
      "Hello\n");
  EXPECT_EQ(chatml.exit_code, 0) << chatml.err;
}

TEST(CellmodelTest, ChatRepliesToEachLineGreedilyAndRepeatably) {
  std::optional<std::string> model = SharedGguf("qwen2-spm-Q8_0.gguf");
  if (!model) GTEST_SKIP() << "../shared/models/gguf absent: skipping";
  testing::TempDir dir;
  const std::vector<std::string> chat = {CellmodelPath(), "chat",         "--model",
                                         *model,          "--max-tokens", "8"};
  ToolResult one = RunProgram(dir, chat, "Hello\n");
  ASSERT_EQ(one.exit_code, 0) << one.err;
  ToolResult a = RunProgram(dir, chat, "Hello\nHow are you?\n");
  ASSERT_EQ(a.exit_code, 0) << a.err;
  ToolResult b = RunProgram(dir, chat, "Hello\nHow are you?\n");
  ASSERT_EQ(b.exit_code, 0) << b.err;
  EXPECT_EQ(a.out, b.out);  // greedy by default
  // The first reply is the same whatever follows; the second line gets a reply of its own.
  EXPECT_THAT(a.out, StartsWith(one.out.substr(0, one.out.find('\n'))));
  EXPECT_GT(a.out.size(), one.out.size());
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
