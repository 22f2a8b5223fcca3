// Sessions share the weights: processes that map the same model file hold one copy of it in the
// page cache, so each is charged (PSS, proportional set size, proc(5) /proc/PID/smaps) the
// mapping's size divided by the number of processes mapping it — for int8 and GGUF models exactly
// as for fp32 (a GGUF model's workers compute from the file's own blocks: nothing is copied). Two
// layouts: two processes that each open the file (two workers of two zygotes), and the zygote's own
// (the parent maps and prefaults, then forks two workers that inherit it). Each child first runs a
// prompt and some decode tokens through the model, and for int8 and GGUF models the anonymous
// memory that makes beyond its run state must stay far below the model's size: a per-session
// dequantized or repacked copy would show there (checked by adding one: the test fails).
//
// Also: the sizes admission control works from (KvCacheBytesPerToken, StateFixedBytes) are the
// same for both formats, and bound what a conversation on an int8 model reserves.
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <optional>
#include <string>
#include <vector>

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include "base/io.h"
#include "base/strings.h"
#include "engine/conversation.h"
#include "engine/forward.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "tests/engine/test_models.h"

namespace cellhouse::engine {
namespace {

struct MappingMemory {
  uint64_t rss = 0;
  uint64_t pss = 0;
  // Anonymous memory the child made while it ran a prompt and some decode tokens, beyond its
  // run state's own pages: where a per-session dequantized or repacked copy would show.
  int64_t private_growth = 0;
};

// Rss and Pss of the mappings of `path` in /proc/self/smaps (the header line of a mapping ends
// in its path).
Result<MappingMemory> MeasureMapping(const std::string& path) {
  CH_ASSIGN_OR_RETURN(
      std::vector<std::string> fields,
      testing::SmapsFields([&path](std::string_view h) { return h.ends_with(" " + path); }));
  MappingMemory m;
  for (std::string_view line : fields) {
    for (auto [name, total] : {std::pair{std::string_view("Rss:"), &m.rss},
                               std::pair{std::string_view("Pss:"), &m.pss}}) {
      if (line.starts_with(name)) {
        std::string_view value = line.substr(name.size());
        while (value.starts_with(' ')) {
          value.remove_prefix(1);
        }
        CH_ASSIGN_OR_RETURN(int64_t kib, ParseInt64(value.substr(0, value.find(' ')), name));
        *total += static_cast<uint64_t>(kib) * 1024;
      }
    }
  }
  return m;
}

// Pipes between the test and its children. Each child writes one byte to `ready` (its failure
// step, or 0 once it maps the file), waits for its byte of `go`, writes one Report, then waits
// until the test closes `done` — so that all children are still mapping the file while each
// measures. (Waiting for the end of `go` instead would let a fast child read a slow one's byte.)
// Every child writes exactly one byte and, if it got ready, one Report, so a failing child
// cannot leave the test waiting.
struct Pipes {
  FdPair ready = std::move(*MakePipe());
  FdPair go = std::move(*MakePipe());
  FdPair results = std::move(*MakePipe());
  FdPair done = std::move(*MakePipe());
};

struct Report {
  int32_t failed_step = 0;  // 0: measured
  MappingMemory memory;
};

// The process's anonymous memory (/proc/self/smaps_rollup's "Anonymous:"), in bytes.
Result<uint64_t> AnonymousBytes() {
  CH_ASSIGN_OR_RETURN(std::string rollup, ReadFileToString("/proc/self/smaps_rollup", 1 << 16));
  constexpr std::string_view kField = "\nAnonymous:";
  const size_t at = rollup.find(kField);
  if (at == std::string::npos) return Error("smaps_rollup has no Anonymous line");
  std::string_view value = std::string_view(rollup).substr(at + kField.size());
  while (value.starts_with(' ')) value.remove_prefix(1);
  CH_ASSIGN_OR_RETURN(int64_t kib, ParseInt64(value.substr(0, value.find(' ')), "Anonymous"));
  return static_cast<uint64_t>(kib) * 1024;
}

// A prompt of 8 tokens, then 4 decode tokens, through the model's own forward pass; returns the
// anonymous memory it made beyond the run state's resident pages.
Result<int64_t> PrivateGrowthOfATurn(const Model& model) {
  CH_ASSIGN_OR_RETURN(uint64_t before, AnonymousBytes());
  CH_ASSIGN_OR_RETURN(RunState state, RunState::Create(model.config(), 16, model.kv_precision()));
  const Kernels kernels = SelectKernels(MatVecKernel::kAuto);
  const std::vector<int32_t> prompt = {1, 5, 9, 13, 17, 21, 25, 29};
  Forward(model.weights(), kernels, state, prompt, 0);
  for (int32_t pos = 8; pos < 12; ++pos) {
    const std::array<int32_t, 1> token = {pos * 7};
    Forward(model.weights(), kernels, state, token, pos);
  }
  CH_ASSIGN_OR_RETURN(uint64_t after, AnonymousBytes());
  CH_ASSIGN_OR_RETURN(uint64_t state_bytes, state.ResidentBytes());
  return static_cast<int64_t>(after) - static_cast<int64_t>(before) -
         static_cast<int64_t>(state_bytes);
}

// In the child: optionally opens the model itself, prefaults it, then the protocol above.
[[noreturn]] void ChildMeasures(Pipes& p, const std::string& path, const Model* inherited) {
  p.go.second.reset();
  p.done.second.reset();  // only the test holds it, so its close reaches every child as EOF
  // A worker that inherits the mapping starts with none of its pages in its page tables (fork
  // does not copy them for a shared file mapping); it faults them in as it reads the weights,
  // which Prefault does at once.
  std::optional<Result<Model>> own;
  char step = 0;
  if (inherited == nullptr) {
    own.emplace(Model::Open(path));
    step = own->has_value() ? 0 : 1;
    inherited = own->has_value() ? &**own : nullptr;
  }
  if (step == 0 && !inherited->Prefault()) {
    step = 2;
  }
  if (!WriteFull(p.ready.second.get(), std::string_view(&step, 1), "ready") || step != 0) {
    _exit(1);
  }
  std::array<std::byte, 1> go{};
  Report report;
  Result<int64_t> growth = PrivateGrowthOfATurn(*inherited);
  if (!ReadFull(p.go.first.get(), go, "go")) {
    report.failed_step = 3;
  } else if (!growth) {
    report.failed_step = 5;
  } else if (Result<MappingMemory> m = MeasureMapping(path); m) {
    report.memory = *m;
    report.memory.private_growth = *growth;
  } else {
    report.failed_step = 4;
  }
  if (!WriteFull(p.results.second.get(), std::as_bytes(std::span(&report, 1)), "results")) {
    _exit(1);
  }
  static_cast<void>(::read(p.done.first.get(), &step, 1));  // returns at EOF
  _exit(0);
}

// Forks `children` processes that map `path` (inheriting `inherited` if given, else opening it
// each), and returns what each measured while all were mapping it.
std::vector<MappingMemory> MeasureInChildren(const std::string& path, int children,
                                             const Model* inherited) {
  Pipes p;
  std::vector<pid_t> pids;
  for (int i = 0; i < children; ++i) {
    const pid_t pid = fork();
    if (pid == 0) {
      ChildMeasures(p, path, inherited);
    }
    EXPECT_GT(pid, 0);
    pids.push_back(pid);
  }
  // Only the children write these: a child that dies shows as EOF, not a hang.
  p.ready.second.reset();
  p.results.second.reset();
  std::vector<char> ready(static_cast<size_t>(children), 99);
  EXPECT_TRUE(ReadFull(p.ready.first.get(), std::as_writable_bytes(std::span(ready)), "ready"));
  const auto measuring = static_cast<size_t>(std::count(ready.begin(), ready.end(), 0));
  EXPECT_EQ(measuring, ready.size()) << "a child failed to map the model, at step "
                                     << static_cast<int>(ready[0] != 0 ? ready[0] : ready[1]);
  const std::vector<char> go(measuring, 'g');
  EXPECT_TRUE(WriteFull(p.go.second.get(), std::string_view(go.data(), go.size()), "go"));
  std::vector<MappingMemory> figures;
  for (size_t i = 0; i < measuring; ++i) {
    Report r;
    EXPECT_TRUE(
        ReadFull(p.results.first.get(), std::as_writable_bytes(std::span(&r, 1)), "results"));
    EXPECT_EQ(r.failed_step, 0);
    figures.push_back(r.memory);
  }
  p.done.second.reset();
  for (pid_t pid : pids) {
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "child status " << status;
  }
  return figures;
}

ModelConfig SharedConfig() {
  // A few MiB even when quantized, so that page rounding is noise.
  return {.dim = 512,
          .hidden_dim = 1024,
          .n_layers = 8,
          .n_heads = 8,
          .n_kv_heads = 8,
          .vocab_size = 4096,
          .seq_len = 64,
          .shared_classifier = false};
}

std::string RealPath(const std::string& path) {
  char resolved[PATH_MAX];
  return ::realpath(path.c_str(), resolved) != nullptr ? resolved : path;
}

// `own_kernels`: the model computes with cellhouse's kernels straight from the mapping (int8 and
// GGUF), so a turn's private memory is checked too; an fp32 model's prompts go through OpenBLAS,
// whose buffers a worker inherits warm from its zygote (WarmUpBlas) but a child here makes itself.
void ExpectShared(const std::vector<MappingMemory>& figures, uint64_t size, int sharers,
                  const std::string& what, bool own_kernels) {
  const uint64_t page = static_cast<uint64_t>(::sysconf(_SC_PAGESIZE));
  const uint64_t mapped = (size + page - 1) / page * page;
  for (const MappingMemory& m : figures) {
    std::printf(
        "[ figures  ] %s: mapping %llu KiB, Rss %llu KiB, Pss %llu KiB (size / %d = %llu "
        "KiB)\n",
        what.c_str(), static_cast<unsigned long long>(mapped / 1024),
        static_cast<unsigned long long>(m.rss / 1024),
        static_cast<unsigned long long>(m.pss / 1024), sharers,
        static_cast<unsigned long long>(mapped / sharers / 1024));
    EXPECT_EQ(m.rss, mapped) << what << ": every page is mapped";
    // Computing from the mapping copies nothing: a turn's anonymous memory beyond its run state
    // is the kernels' first-use tables and the allocator's, far below the model's size (a
    // dequantized or repacked copy would be at least the file's size).
    std::printf("[ figures  ] %s: a turn's private memory beyond its run state: %lld KiB\n",
                what.c_str(), static_cast<long long>(m.private_growth / 1024));
    if (own_kernels) {
      EXPECT_LT(m.private_growth, static_cast<int64_t>(std::min<uint64_t>(size / 4, 2 << 20)))
          << what;
    }
    // smaps rounds each figure to a KiB; allow that, and a page or two of slack.
    EXPECT_NEAR(static_cast<double>(m.pss), static_cast<double>(mapped) / sharers,
                2.0 * static_cast<double>(page) + 0.001 * static_cast<double>(mapped))
        << what;
  }
}

TEST(SharingTest, ProcessesMappingAModelEachPayTheirShare) {
  cellhouse::testing::TempDir dir;
  const testing::ModelFiles fp32 = testing::WriteModelFiles(dir, SharedConfig(), 1);
  const testing::ModelFiles q8 = testing::WriteQuantizedModelFiles(dir, SharedConfig(), 2);
  const testing::ModelFiles gguf = {
      testing::WriteGgufModelFiles(dir, SharedConfig(), 4, GgufFileType::kQ4_K_M), ""};
  for (const testing::ModelFiles* files : {&gguf, &q8, &fp32}) {
    const std::string path = RealPath(files->model);
    const uint64_t size = Model::Open(path)->bytes().size();
    const bool own_kernels = files != &fp32;
    ExpectShared(MeasureInChildren(path, 2, nullptr), size, 2, path + ", opened by 2 processes",
                 own_kernels);
    // The zygote's way: it maps and prefaults, its workers inherit the mapping.
    Result<Model> zygote = Model::Open(path);
    ASSERT_TRUE(zygote) << zygote.error().message();
    ASSERT_TRUE(zygote->Prefault());
    const std::vector<MappingMemory> workers = MeasureInChildren(path, 2, &*zygote);
    ExpectShared(workers, size, 3, path + ", zygote + 2 workers (measured in a worker)",
                 own_kernels);
  }
}

// The fixed buffers are the same for both formats; an int8 model's KV cache is fp16, half the
// bytes per position of an fp32 model's. Admission control counts exactly what is reserved.
TEST(SharingTest, AdmissionSizesFollowEachFormatsCache) {
  cellhouse::testing::TempDir dir;
  const ModelConfig config = testing::TinyConfig();
  const testing::ModelFiles fp32_files = testing::WriteModelFiles(dir, config, 3);
  const testing::ModelFiles q8_files = testing::WriteQuantizedModelFiles(dir, config, 3);
  Model fp32 = std::move(*Model::Open(fp32_files.model));
  Model q8 = std::move(*Model::Open(q8_files.model));
  ASSERT_EQ(q8.format(), WeightFormat::kQ8);
  EXPECT_EQ(q8.config(), fp32.config());
  ASSERT_EQ(q8.kv_precision(), KvPrecision::kF16);
  ASSERT_EQ(fp32.kv_precision(), KvPrecision::kF32);
  const uint64_t q8_kv = KvCacheBytesPerToken(q8.config(), q8.kv_precision());
  EXPECT_EQ(2 * q8_kv, KvCacheBytesPerToken(fp32.config(), fp32.kv_precision()));
  EXPECT_EQ(StateFixedBytes(q8.config()), StateFixedBytes(fp32.config()));
  Tokenizer tok = std::move(*Tokenizer::Open(q8_files.tokenizer, config.vocab_size));
  constexpr int32_t kContext = 100;
  Conversation chat = std::move(*Conversation::Create(q8, tok, kContext));
  ASSERT_TRUE(chat.Turn("Once upon a time", {.max_new_tokens = 20},
                        [](int32_t, std::string_view) { return true; }));
  EXPECT_EQ(chat.KvBytesInUse(), static_cast<uint64_t>(chat.context_used()) * q8_kv);
  // A GGUF model keeps fp16 keys and values too, and the same fixed buffers.
  const std::string gguf_path = testing::WriteGgufModelFiles(dir, config, 3, GgufFileType::kQ8_0);
  Model gguf = std::move(*Model::Open(gguf_path));
  ASSERT_EQ(gguf.format(), WeightFormat::kGguf);
  ASSERT_EQ(gguf.kv_precision(), KvPrecision::kF16);
  EXPECT_EQ(KvCacheBytesPerToken(gguf.config(), gguf.kv_precision()), q8_kv);
  EXPECT_EQ(StateFixedBytes(gguf.config()), StateFixedBytes(fp32.config()));
  // What the state reserves, its int8 buffers included, is what admission control counts.
  for (KvPrecision precision : {KvPrecision::kF32, KvPrecision::kF16}) {
    Result<RunState> state = RunState::Create(config, kContext, precision);
    ASSERT_TRUE(state);
    EXPECT_LE(state->ReservedBytes(),
              StateFixedBytes(config) + kContext * KvCacheBytesPerToken(config, precision) + 4096)
        << KvPrecisionName(precision);
  }
}

}  // namespace
}  // namespace cellhouse::engine
