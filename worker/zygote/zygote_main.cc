// The zygote's main: started once by celld (never by hand). Maps the model read-only, validates it,
// pre-faults (and by default locks) the weights so their page cache is charged to celld's
// cgroup, makes its one BLAS call, reports ready, then forks a sandboxed worker per request.
// See worker/zygote/zygote.h and docs/ARCHITECTURE.md.
#include <unistd.h>

#include <climits>
#include <cstdio>

#include <memory>
#include <optional>
#include <string>
#include <variant>

#include "base/flags.h"
#include "base/journal.h"
#include "base/print.h"
#include "base/strings.h"
#include "engine/executor_compute.h"
#include "engine/formats/gguf.h"
#include "engine/kernels/kernels.h"
#include "engine/kernels/type_kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/gguf_vocabulary.h"
#include "engine/tokenizer/tokenizer.h"
#include "executor/executor_process.h"
#include "ipc/zygote.pb.h"
#include "worker/session/engine_turn_engine.h"
#include "worker/zygote/zygote_main.h"

namespace cellhouse::zygote_runtime {

std::optional<ExecutorSupport> GgufExecutorSupport(const engine::Model& model) {
  const auto* weights = std::get_if<engine::GgufWeights>(&model.weights());
  if (weights == nullptr) return std::nullopt;
  ExecutorSupport support;
  support.shape = engine::GgufSlotShape(model.config(), kExecutorChunkRows);
  if (Status st = executor::ValidateShape(support.shape); !st) {
    Printf(stderr, "%scell-zygote: no shared executor for this model: %s\n",
           JournalPrefix(kJournalWarning), st.error().message().c_str());
    return std::nullopt;
  }
  // Runs in the executor, contained: the compute's scratch is allocated there.
  support.entry = [weights](executor::ExecutorChannels channels, const zygote::ExecutorSpec& spec) {
    const uint32_t batch_rows = executor::OptionsFromSpec(spec).max_batch_rows;
    return executor::RunExecutorWith(
        std::move(channels), spec, [&]() -> Result<std::unique_ptr<executor::StepCompute>> {
          CH_ASSIGN_OR_RETURN(std::unique_ptr<engine::GgufStepCompute> compute,
                              engine::GgufStepCompute::Create(*weights, engine::BestKernelIsa(),
                                                              kExecutorChunkRows, batch_rows));
          return std::unique_ptr<executor::StepCompute>(std::move(compute));
        });
  };
  return support;
}

int ZygoteMain(int argc, char** argv, const EngineFactoryWrapper& wrap) {
  return ZygoteMain(argc, argv, ZygoteHooks{.wrap_engine = wrap, .executor = GgufExecutorSupport});
}

int ZygoteMain(int argc, char** argv, const ZygoteHooks& hooks) {
  std::string model_path, tokenizer_path, chat_template;
  int64_t channel_fd = 3;
  int64_t ctx_size = 0;
  bool no_mlock = false;
  FlagSet flags("cell-zygote --model FILE [--tokenizer FILE] [--channel-fd N]",
                "The cellhouse zygote. celld starts it; it is not meant to be run by hand.");
  flags.String("model", &model_path, "FILE", "model to map (llama2.c, int8 or GGUF)");
  flags.String("tokenizer", &tokenizer_path, "FILE",
               "tokenizer (default: <model>.tokenizer; a GGUF file has its own vocabulary)");
  flags.Int("ctx-size", &ctx_size, "N", "cap on the model's context (0: the model's own)");
  flags.Int("channel-fd", &channel_fd, "N", "descriptor of the SOCK_SEQPACKET channel to celld");
  flags.Bool("no-mlock", &no_mlock, "do not lock the weights in memory");
  flags.String("chat-template", &chat_template, "NAME",
               "chat-template family for sessions whose policy names none");
  auto rest = flags.Parse(argc - 1, argv + 1);
  if (!rest || !rest->empty() || model_path.empty() || channel_fd < 0 || ctx_size < 0 ||
      ctx_size > INT32_MAX) {
    Printf(stderr, "cell-zygote: %s\n%s",
           rest ? "--model is required" : rest.error().message().c_str(), flags.Usage().c_str());
    return 2;
  }
  if (flags.help_requested()) {
    WriteAndFlush(stdout, flags.Usage().c_str());
    return 0;
  }
  if (tokenizer_path.empty()) tokenizer_path = model_path + ".tokenizer";
  auto fail = [](const Error& e) {
    Printf(stderr, "%scell-zygote: %s\n", JournalPrefix(kJournalError), e.message().c_str());
    return 1;
  };
  Result<engine::Model> model =
      engine::Model::Open(model_path, {.max_context = static_cast<int32_t>(ctx_size)});
  if (!model) return fail(model.error());
  // A GGUF file carries its own vocabulary; a llama2.c checkpoint has a tokenizer file beside it.
  Result<engine::Tokenizer> tokenizer =
      model->gguf() != nullptr
          ? engine::TokenizerFromGguf(*model->gguf())
          : engine::Tokenizer::Open(tokenizer_path, model->config().vocab_size);
  if (!tokenizer) return fail(tokenizer.error());
  // Pre-fault while still in celld's cgroup: the page cache is charged here, not to whichever
  // session touches a page first. Locking keeps it from being evicted and re-charged.
  if (Status st = model->Prefault(); !st) return fail(st.error());
  bool locked = false;
  if (!no_mlock) {
    Status st = model->Lock();
    locked = st.has_value();
    if (!locked) {
      Printf(stderr, "%scell-zygote: warning: weights not locked in memory: %s\n",
             JournalPrefix(kJournalWarning), st.error().message().c_str());
    }
  }
  // OpenBLAS allocates its buffer (mmap + mbind) on the first call; do it here, not in a
  // worker under seccomp.
  engine::WarmUpBlas();

  zygote::ZygoteReady ready;
  ready.set_model_path(model_path);
  ready.set_model_description(model->Describe());
  ready.set_weights_bytes(model->bytes().size());
  Result<uint64_t> resident = model->ResidentBytes();
  ready.set_weights_resident_bytes(resident ? *resident : 0);
  ready.set_chunk_count(static_cast<uint32_t>(model->ChunkCount()));
  ready.set_weights_locked(locked);
  ready.set_seq_len(static_cast<uint32_t>(model->config().seq_len));
  ready.set_kv_bytes_per_token(
      engine::KvCacheBytesPerToken(model->config(), model->kv_precision()));
  ready.set_state_fixed_bytes(engine::StateFixedBytes(model->config()));
  ready.set_vocab_size(static_cast<uint32_t>(model->config().vocab_size));
  ready.set_pid(::getpid());

  const engine::Model& m = *model;
  const engine::Tokenizer& t = *tokenizer;
  // A session with a slot steps through the model's shared executor (a GGUF model's), falling
  // back to its own process; one without computes alone.
  EngineFactory factory = [&m, &t, &chat_template](const zygote::SessionLimits& limits,
                                                   executor::WorkerSlot slot) {
    return session::EngineTurnEngine::Create(
        m, t,
        {.context_length = limits.context_length(),
         // The policy's template first, then celld's --chat-template, then the model's own.
         .chat_template = limits.chat_template().empty() ? chat_template : limits.chat_template(),
         .drop_oldest_messages = limits.drop_oldest_messages(),
         .slot = slot});
  };
  if (hooks.wrap_engine) factory = hooks.wrap_engine(std::move(factory));
  std::optional<ExecutorSupport> executor;
  if (hooks.executor) executor = hooks.executor(m);
  Zygote zygote(UniqueFd(static_cast<int>(channel_fd)), ready,
                MakeSessionWorkerEntry(std::move(factory)), std::move(executor));
  Status st = zygote.Run();
  if (!st) return fail(st.error());
  return 0;
}

}  // namespace cellhouse::zygote_runtime
