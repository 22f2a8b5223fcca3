// The zygote's main: started once by celld (never by hand). Maps the model read-only, validates it,
// pre-faults (and by default locks) the weights so their page cache is charged to celld's
// cgroup, makes its one BLAS call, reports ready, then forks a sandboxed worker per request.
// See worker/zygote/zygote.h and docs/ARCHITECTURE.md.
#include <unistd.h>
#include <cstdio>

#include <string>

#include "base/flags.h"
#include "base/journal.h"
#include "base/print.h"
#include "base/strings.h"
#include "engine/kernels/kernels.h"
#include "engine/model.h"
#include "engine/run_state.h"
#include "engine/tokenizer/tokenizer.h"
#include "ipc/zygote.pb.h"
#include "worker/session/engine_turn_engine.h"
#include "worker/zygote/zygote_main.h"

namespace cellhouse::zygote_runtime {

int ZygoteMain(int argc, char** argv, const EngineFactoryWrapper& wrap) {
  return ZygoteMain(argc, argv, ZygoteHooks{.wrap_engine = wrap, .executor = nullptr});
}

int ZygoteMain(int argc, char** argv, const ZygoteHooks& hooks) {
  std::string model_path, tokenizer_path;
  int64_t channel_fd = 3;
  bool no_mlock = false;
  FlagSet flags("cell-zygote --model FILE [--tokenizer FILE] [--channel-fd N]",
                "The cellhouse zygote. celld starts it; it is not meant to be run by hand.");
  flags.String("model", &model_path, "FILE", "checkpoint to map");
  flags.String("tokenizer", &tokenizer_path, "FILE", "tokenizer (default: <model>.tokenizer)");
  flags.Int("channel-fd", &channel_fd, "N", "descriptor of the SOCK_SEQPACKET channel to celld");
  flags.Bool("no-mlock", &no_mlock, "do not lock the weights in memory");
  auto rest = flags.Parse(argc - 1, argv + 1);
  if (!rest || !rest->empty() || model_path.empty() || channel_fd < 0) {
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
  Result<engine::Model> model = engine::Model::Open(model_path);
  if (!model) return fail(model.error());
  Result<engine::Tokenizer> tokenizer =
      engine::Tokenizer::Open(tokenizer_path, model->config().vocab_size);
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
  // The slot is unused until the engine computes through the executor (issue 17, phase 2b): a
  // session with one computes alone, as every session does today.
  EngineFactory factory = [&m, &t](uint32_t context_length, executor::WorkerSlot /*slot*/) {
    return session::EngineTurnEngine::Create(m, t, context_length);
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
