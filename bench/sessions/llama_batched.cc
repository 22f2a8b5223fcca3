#include "bench/sessions/llama_batched.h"

#include <fcntl.h>
#include <unistd.h>

#include <string_view>

#include <nlohmann/json.hpp>

#include "base/io.h"
#include "base/process.h"
#include "base/strings.h"
#include "base/unique_fd.h"

namespace cellhouse::bench {

std::vector<double> LlamaBatchedDecode(const LlamaBatchedRun& run, const std::string& work_dir) {
  std::vector<double> speeds(run.counts.size(), 0.0);
  const std::string program = run.llama_cpp + "/llama-batched-bench";
  if (run.counts.empty() || ::access(program.c_str(), X_OK) != 0) {
    return speeds;
  }
  std::string npl;
  for (int c : run.counts) {
    if (!npl.empty()) {
      npl.push_back(',');
    }
    npl.append(std::to_string(c));
  }
  // Every sequence's prompt and tokens in one context, with room to spare.
  const int context = (run.prompt + run.tokens) * run.counts.back() + 64;
  const std::string out_path = work_dir + "/llama-batched.jsonl";
  UniqueFd out(::open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  UniqueFd devnull(::open("/dev/null", O_WRONLY | O_CLOEXEC));
  if (!out.valid() || !devnull.valid()) {
    return speeds;
  }
  Result<ChildProcess> child = SpawnProgram(
      {.argv = {program, "-m", run.model, "-c", std::to_string(context), "-b", "2048", "-ub", "512",
                "-npp", std::to_string(run.prompt), "-ntg", std::to_string(run.tokens), "-npl", npl,
                "-t", std::to_string(run.threads), "--output-format", "jsonl"},
       .fds = {{1, out.get()}, {2, devnull.get()}}});
  if (!child || !child->Wait()) {
    return speeds;
  }
  Result<std::string> text = ReadFileToString(out_path, 1 << 20);
  if (!text) {
    return speeds;
  }
  for (std::string_view line : Split(*text, '\n')) {
    const nlohmann::json row = nlohmann::json::parse(line, nullptr, /*allow_exceptions=*/false);
    if (!row.is_object() || !row.contains("pl") || !row.contains("speed_tg")) {
      continue;
    }
    const int pl = row["pl"].get<int>();
    for (size_t k = 0; k < run.counts.size(); ++k) {
      if (run.counts[k] == pl) {
        speeds[k] = row["speed_tg"].get<double>();
      }
    }
  }
  return speeds;
}

}  // namespace cellhouse::bench
