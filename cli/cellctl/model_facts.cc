#include "cli/cellctl/model_facts.h"

#include <poll.h>
#include <unistd.h>

#include <cerrno>
#include <cmath>
#include <cstdlib>
#include <string>
#include <utility>
#include <vector>

#include <google/protobuf/struct.pb.h>
#include <google/protobuf/util/json_util.h>

#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "policy/choose.h"

namespace cellhouse::cli {
namespace {

constexpr size_t kMaxOutputBytes = 1 << 20;

// cellmodel beside this cellctl (a build tree, an install), else the first one in $PATH.
Result<std::string> FindCellmodel() {
  Result<std::string> dir = SelfExeDir();
  if (dir && ::access((*dir + "/cellmodel").c_str(), X_OK) == 0) return *dir + "/cellmodel";
  // NOLINTNEXTLINE(concurrency-mt-unsafe): cellctl is single-threaded
  const char* path = std::getenv("PATH");
  for (std::string_view entry : Split(path != nullptr ? path : "", ':')) {
    if (entry.empty()) continue;
    std::string candidate = std::string(entry) + "/cellmodel";
    if (::access(candidate.c_str(), X_OK) == 0) return candidate;
  }
  return Error("cellmodel not found beside cellctl nor in $PATH: it reads the model for --model");
}

// A non-negative whole number field of the object.
Result<uint64_t> Field(const google::protobuf::Struct& object, const std::string& key) {
  auto it = object.fields().find(key);
  if (it == object.fields().end() || !it->second.has_number_value()) {
    return Error("cellmodel info --json gave no number \"" + key + "\"");
  }
  double v = it->second.number_value();
  if (!(v >= 0) || v > 9.0e15 || std::floor(v) != v) {
    return Error("cellmodel info --json: \"" + key + "\" is not a count");
  }
  return static_cast<uint64_t>(v);
}

}  // namespace

Result<policy::ModelFacts> ParseModelFacts(std::string_view json) {
  google::protobuf::Struct object;
  auto status = google::protobuf::util::JsonStringToMessage(std::string(json), &object);
  if (!status.ok()) {
    return Error("cellmodel info --json printed something that is not a JSON object: " +
                 std::string(Trim(json)).substr(0, 200));
  }
  policy::ModelFacts facts;
  CH_ASSIGN_OR_RETURN(uint64_t seq_len, Field(object, "seq_len"));
  facts.seq_len = static_cast<uint32_t>(seq_len);
  CH_ASSIGN_OR_RETURN(facts.kv_bytes_per_token, Field(object, "kv_bytes_per_token"));
  CH_ASSIGN_OR_RETURN(facts.state_fixed_bytes, Field(object, "state_fixed_bytes"));
  // GGUF models: a sharing session's executor slot (celld runs an executor for them by default).
  if (object.fields().contains("executor_slot_bytes")) {
    CH_ASSIGN_OR_RETURN(facts.executor_slot_bytes, Field(object, "executor_slot_bytes"));
  }
  // As celld counts a worker (Supervisor::StartPolicies takes the same constant).
  facts.worker_overhead_bytes = policy::kDefaultWorkerOverheadBytes;
  return facts;
}

Result<policy::ModelFacts> ModelFactsFromCellmodel(const std::string& model, int64_t ctx_size) {
  CH_ASSIGN_OR_RETURN(std::string cellmodel, FindCellmodel());
  CH_ASSIGN_OR_RETURN(FdPair out, MakePipe());
  std::vector<std::string> argv = {cellmodel, "info", "--json", model};
  if (ctx_size > 0) {
    argv.push_back("--ctx-size");
    argv.push_back(std::to_string(ctx_size));
  }
  CH_ASSIGN_OR_RETURN(ChildProcess child,
                      SpawnProgram({.argv = std::move(argv),
                                    .fds = {{1, out.second.get()}, {2, out.second.get()}}}));
  out.second.reset();
  std::string text;
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out.first.get(), buf, sizeof(buf));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    text.append(buf, static_cast<size_t>(n));
    if (text.size() > kMaxOutputBytes) break;
  }
  CH_ASSIGN_OR_RETURN(ExitStatus status, child.Wait());
  if (!status.Success()) {
    return Error("reading the model " + Quote(model) + " with " + cellmodel + " failed (" +
                 status.ToString() + "): " + std::string(Trim(text)));
  }
  return ParseModelFacts(text);
}

}  // namespace cellhouse::cli
