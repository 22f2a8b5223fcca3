// celld's handle on the zygote: executes it once at start-up (before any client is accepted),
// waits until it reports the model mapped and ready, then exchanges spawn requests and replies
// over a SOCK_SEQPACKET channel that is the zygote's fd 3.
//
//   CH_ASSIGN_OR_RETURN(ZygoteProcess zygote, ZygoteProcess::Start(options));
//   log("model: {}", zygote.ready().model_description());
//   CH_RETURN_IF_ERROR(zygote.SendSpawn(request, fds));
//   ... when zygote.channel_fd() is readable:
//   CH_ASSIGN_OR_RETURN(auto reply, zygote.ReceiveReply());
#ifndef CELLHOUSE_SUPERVISOR_ZYGOTE_PROCESS_H_
#define CELLHOUSE_SUPERVISOR_ZYGOTE_PROCESS_H_

#include <span>
#include <string>
#include <vector>

#include "base/process.h"
#include "base/result.h"
#include "base/unique_fd.h"
#include "ipc/packet.h"
#include "ipc/zygote.pb.h"

namespace cellhouse::supervisor {

struct ZygoteOptions {
  std::string binary;  // path of cell-zygote
  std::string model;
  std::string tokenizer;
  std::string chat_template;           // --chat-template: the family for policies that name none
  int64_t ctx_size = 0;                // cap on the model's context (0: the model's own)
  bool lock_weights = true;            // mlock the weights (see the design brief, "Memory")
  int64_t ready_timeout_ms = 300'000;  // mapping and pre-faulting a large model takes a while
  std::vector<std::string> extra_args;
};

// The zygote's fd for its channel to celld.
inline constexpr int kZygoteChannelFd = 3;

// The zygote's whole environment, and so every worker's: never celld's own, which may hold
// anything its parent set (credentials, paths, systemd's sockets). OPENBLAS_NUM_THREADS=1,
// since OpenBLAS would otherwise start threads from its constructor and a threaded process
// cannot create user namespaces; a fixed PATH and LANG=C.UTF-8; and from celld's environment
// only the variables in kZygotePassedVariables, which tune the BLAS or a GPU runtime.
inline constexpr const char* kZygotePassedVariables[] = {
    "OPENBLAS_CORETYPE", "OPENBLAS_VERBOSE", "CUDA_MPS_PIPE_DIRECTORY", "CUDA_MPS_LOG_DIRECTORY"};
std::vector<std::string> ZygoteEnvironment(char** parent_environment);

class ZygoteProcess {
 public:
  // Starts the zygote with a fixed environment (ZygoteEnvironment) and waits for ZygoteReady. A
  // zygote that exits, times out, closes its channel or sends something else first is ended and
  // the error says how.
  static Result<ZygoteProcess> Start(const ZygoteOptions& options);

  const zygote::ZygoteReady& ready() const { return ready_; }
  int channel_fd() const { return channel_.get(); }
  ChildProcess& process() { return process_; }

  Status SendSpawn(const zygote::SpawnRequest& request, std::span<const int> fds);
  // Non-blocking; would_block when nothing is there.
  Result<ipc::ReceivedMessage<zygote::SpawnReply>> ReceiveReply();
  // Closes the channel (the zygote exits on EOF).
  void CloseChannel() { channel_.reset(); }

 private:
  ZygoteProcess(ChildProcess process, UniqueFd channel, zygote::ZygoteReady ready)
      : process_(std::move(process)), channel_(std::move(channel)), ready_(std::move(ready)) {}

  ChildProcess process_;
  UniqueFd channel_;
  zygote::ZygoteReady ready_;
};

}  // namespace cellhouse::supervisor

#endif  // CELLHOUSE_SUPERVISOR_ZYGOTE_PROCESS_H_
