#include "supervisor/config_check.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <string>
#include <string_view>
#include <vector>

#include "base/strings.h"
#include "base/unique_fd.h"
#include "policy/policy.h"
#include "supervisor/resources/gpu_inventory.h"

namespace cellhouse::supervisor {
namespace {

// `path` opens for reading and is a regular file.
Status CheckReadableFile(const std::string& flag, const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) {
    return Error::FromErrno(errno, flag + " " + Quote(path) + ": open");
  }
  struct stat st {};
  if (::fstat(fd.get(), &st) != 0) return Error::FromErrno(errno, "fstat " + Quote(path));
  if (!S_ISREG(st.st_mode)) return Error(flag + " " + Quote(path) + " is not a regular file");
  return Ok();
}

// Whether PATH starts with GGUF's magic: such a file carries its own vocabulary, so no
// tokenizer file is needed (celld does not link the engine, so the magic is all it reads).
bool LooksLikeGguf(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  std::array<char, 4> magic{};
  return ::pread(fd.get(), magic.data(), magic.size(), 0) == static_cast<ssize_t>(magic.size()) &&
         std::string_view(magic.data(), magic.size()) == "GGUF";
}

}  // namespace

Status CheckConfiguration(const SupervisorOptions& options) {
  std::vector<std::string> problems;
  auto note = [&problems](const Status& st) {
    if (!st) problems.push_back(st.error().message());
  };
  note(CheckReadableFile("--model", options.zygote.model));
  if (!options.zygote.tokenizer.empty()) {
    note(CheckReadableFile("--tokenizer", options.zygote.tokenizer));
  } else if (!LooksLikeGguf(options.zygote.model)) {
    note(CheckReadableFile("--tokenizer", options.zygote.model + ".tokenizer"));
  }
  if (!options.policy_dir.empty()) {
    // Without the model's facts: what depends on the model is checked once the zygote has it.
    Result<policy::PolicySet> loaded = policy::LoadPolicyDirectory(options.policy_dir, nullptr);
    if (!loaded) problems.push_back("--policy-dir: " + loaded.error().message());
  }
  if (!options.gpu_inventory.empty()) {
    Result<resources::GpuInventory> gpus =
        resources::DiscoverGpus({.inventory_file = options.gpu_inventory});
    if (!gpus) problems.push_back("--gpu-inventory: " + gpus.error().message());
  }
  if (problems.empty()) return Ok();
  std::string text = "the configuration has " + std::to_string(problems.size()) +
                     (problems.size() == 1 ? " problem" : " problems") +
                     "; nothing was started. Refusing.";
  for (const std::string& p : problems) text += "\n" + p;
  return Error(text);
}

}  // namespace cellhouse::supervisor
