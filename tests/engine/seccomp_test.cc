// The worker's contract: once the model is open and BLAS warmed up, Turn() needs only memory
// system calls (mmap, munmap, mremap, brk, and madvise only to fault in pages ahead of writes, as
// the @strict list allows it), futex and clock_gettime. A forked child installs exactly that
// allow-list (anything else kills it with SIGSYS) and runs turns.
#include <seccomp.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <string>

#include <gtest/gtest.h>

#include "base/mapping.h"
#include "engine/chat/chat_template.h"
#include "engine/conversation.h"
#include "engine/formats/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "tests/engine/gguf_test_models.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

#if defined(__SANITIZE_ADDRESS__)
constexpr bool kSanitized = true;
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
constexpr bool kSanitized = true;
#else
constexpr bool kSanitized = false;
#endif
#else
constexpr bool kSanitized = false;
#endif

// In the child: the worker's memory-only allow-list, default kill. With `no_exec`, mmap is
// allowed only without PROT_EXEC (and mprotect not at all), as MemoryDenyWriteExecute leaves it:
// a regex JIT could not get executable memory.
bool InstallFilterInChild(bool no_exec = false) {
  scmp_filter_ctx ctx = seccomp_init(SCMP_ACT_KILL_PROCESS);
  if (ctx == nullptr) {
    return false;
  }
  bool ok = true;
  if (no_exec) {
    // SCMP_A2 is a C99 compound literal; spelled out for C++.
    const scmp_arg_cmp no_exec_prot{
        .arg = 2, .op = SCMP_CMP_MASKED_EQ, .datum_a = PROT_EXEC, .datum_b = 0};
    ok = seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 1, &no_exec_prot) == 0;
  } else {
    ok = seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(mmap), 0) == 0;
  }
  const scmp_arg_cmp populate_write{
      .arg = 2, .op = SCMP_CMP_EQ, .datum_a = MADV_POPULATE_WRITE, .datum_b = 0};
  ok =
      ok && seccomp_rule_add_array(ctx, SCMP_ACT_ALLOW, SCMP_SYS(madvise), 1, &populate_write) == 0;
  for (int nr : {SCMP_SYS(munmap), SCMP_SYS(mremap), SCMP_SYS(brk), SCMP_SYS(futex),
                 SCMP_SYS(clock_gettime), SCMP_SYS(exit_group), SCMP_SYS(exit)}) {
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, nr, 0) == 0;
  }
  // The sanitizer runtime (not the engine) sets an alternate signal stack as it goes; allowing
  // it in the ASan build keeps the test about the engine's own system calls.
  if (kSanitized) {
    ok = ok && seccomp_rule_add(ctx, SCMP_ACT_ALLOW, SCMP_SYS(sigaltstack), 0) == 0;
  }
  ok = ok && prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) == 0 && seccomp_load(ctx) == 0;
  seccomp_release(ctx);
  return ok;
}

// In the child: two turns (prefill in chunks, then decode, greedy and sampled). Exit codes:
// 0 success, 1 filter not installed, 2 a turn failed.
[[noreturn]] void RunTurnsInChild(Conversation& chat, const std::string& long_prompt) {
  if (!InstallFilterInChild()) {
    _exit(1);
  }
  auto ignore = [](int32_t, std::string_view) { return true; };
  bool ok = chat.Turn(long_prompt, {.max_new_tokens = 20, .temperature = 0.0F}, ignore) &&
            chat.Turn(" and then", {.max_new_tokens = 20, .temperature = 0.8F, .seed = 3}, ignore);
  _exit(ok ? 0 : 2);
}

// One model: two turns in a forked child under the filter, with each kernel family.
void RunTurnsUnderTheFilter(const Model& model, const Tokenizer& tok, int32_t context,
                            const std::string& what) {
  // What the zygote does before forking workers.
  SetBlasThreads(1);
  WarmUpBlas();
  // A prompt longer than one prefill chunk.
  std::string long_prompt;
  while (tok.Encode(long_prompt, {.add_bos = true})->size() <= kMaxBatch + 10) {
    long_prompt += "the little dog ran ";
  }
  for (MatVecKernel kernel : {MatVecKernel::kOpenBlas, MatVecKernel::kAuto}) {
    Result<Conversation> chat = Conversation::Create(model, tok, context, {.matvec = kernel});
    ASSERT_TRUE(chat) << chat.error().message();
    const pid_t pid = fork();
    ASSERT_GE(pid, 0);
    if (pid == 0) {
      RunTurnsInChild(*chat, long_prompt);
    }
    int status = 0;
    ASSERT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
        << what << ", kernel " << MatVecKernelName(kernel) << ": "
        << (WIFSIGNALED(status)
                ? "killed by signal " + std::to_string(WTERMSIG(status)) +
                      (WTERMSIG(status) == SIGSYS ? " (a forbidden system call)" : "")
                : "exit status " + std::to_string(WEXITSTATUS(status)));
  }
}

// fp32, int8 and GGUF models alike.
TEST(SeccompTest, TurnsRunUnderTheWorkerAllowList) {
  cellhouse::testing::TempDir dir;
  ModelConfig config = testing::TinyConfig();
  config.seq_len = 400;  // room for a prompt of two prefill chunks and two turns
  for (const testing::ModelFiles& files : {testing::WriteModelFiles(dir, config, 4),
                                           testing::WriteQuantizedModelFiles(dir, config, 5)}) {
    Result<Model> model = Model::Open(files.model);
    ASSERT_TRUE(model) << model.error().message();
    Result<Tokenizer> tok = Tokenizer::Open(files.tokenizer, model->config().vocab_size);
    ASSERT_TRUE(tok) << tok.error().message();
    RunTurnsUnderTheFilter(*model, *tok, config.seq_len, files.model);
  }
  const std::string gguf = dir.File("m.gguf");
  ASSERT_TRUE(
      testing::MakeGgufModel({.context = 400, .matrices = TensorType::kQ8_0}).WriteFile(gguf));
  Result<Model> model = Model::Open(gguf);
  ASSERT_TRUE(model) << model.error().message();
  Result<Tokenizer> tok = TokenizerFromGguf(*model->gguf());
  ASSERT_TRUE(tok) << tok.error().message();
  RunTurnsUnderTheFilter(*model, *tok, 400, gguf);
}

// The tokenizers of model files (PCRE2 for byte-level BPE, in its interpreter) and the chat
// templates run under the filter with no executable memory to be had.
TEST(SeccompTest, TokenizingRunsWithoutExecutableMemory) {
  std::vector<Tokenizer> tokenizers;
  for (const char* name : {"llama3-vocab-Q8_0", "qwen-vocab-Q8_0", "llama-spm-Q8_0"}) {
    std::optional<std::string> path =
        cellhouse::testing::SharedModelPath(std::string("gguf/") + name + ".gguf");
    if (!path) GTEST_SKIP() << "../shared/models/gguf absent: skipping";
    Result<Mapping> mapping = Mapping::MapFile(path->c_str());
    ASSERT_TRUE(mapping);
    Result<GgufFile> gguf = GgufFile::Parse(mapping->bytes(), *path);
    ASSERT_TRUE(gguf);
    Result<Tokenizer> tok = TokenizerFromGguf(*gguf);
    ASSERT_TRUE(tok) << tok.error().message();
    tokenizers.push_back(std::move(*tok));
  }
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!InstallFilterInChild(/*no_exec=*/true)) _exit(1);
    std::string text;
    for (int i = 0; i < 200; ++i) {
      text += "Hello, world! don't 12345 caf\xC3\xA9 \xE4\xBD\xA0\xE5\xA5\xBD  \t\n";
    }
    for (const Tokenizer& tok : tokenizers) {
      Result<std::vector<int32_t>> ids = tok.Encode(text, {.add_bos = tok.add_bos()});
      if (!ids || tok.Detokenize(*ids) != text) _exit(2);
      Result<chat::ChatTemplate> tmpl = chat::ChatTemplate::ForModel(tok, "");
      if (!tmpl) continue;  // the Llama 2 vocabulary's template is llama2: tried below
      Result<chat::Prompt> prompt = tmpl->Render({{"user", text, {}}}, {});
      if (!prompt || !prompt->Encode(tok)) _exit(3);
    }
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0)
      << (WIFSIGNALED(status) ? "killed by signal " + std::to_string(WTERMSIG(status))
                              : "exit status " + std::to_string(WEXITSTATUS(status)));
}

TEST(SeccompTest, TheFilterDoesKillOtherSystemCalls) {
  const pid_t pid = fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    if (!InstallFilterInChild()) {
      _exit(1);
    }
    static_cast<void>(getppid());  // not on the list
    _exit(0);
  }
  int status = 0;
  ASSERT_EQ(waitpid(pid, &status, 0), pid);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGSYS);
}

}  // namespace
}  // namespace cellhouse::engine
