#include "supervisor/models.h"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <memory>
#include <set>

#include "base/strings.h"
#include "base/unique_fd.h"
#include "policy/policy.h"

namespace cellhouse::supervisor {
namespace {

bool IsRegularFile(const std::string& path) {
  struct stat st {};
  return ::stat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
}

}  // namespace

std::string ModelStem(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view base = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = base.rfind('.');
  if (dot != std::string_view::npos && dot > 0) base = base.substr(0, dot);
  return std::string(base);
}

Result<ModelSpec> ParseModelFlag(std::string_view value) {
  ModelSpec spec;
  size_t eq = value.find('=');
  // A path may itself hold '='; only a valid name before it makes NAME=PATH.
  if (eq != std::string_view::npos && policy::ValidModelName(value.substr(0, eq))) {
    spec.name = std::string(value.substr(0, eq));
    spec.path = std::string(value.substr(eq + 1));
  } else {
    spec.path = std::string(value);
    spec.name = ModelStem(value);
  }
  if (spec.path.empty()) return Error("--model " + Quote(value) + ": no file named");
  if (!policy::ValidModelName(spec.name)) {
    return Error("--model " + Quote(value) + ": " + Quote(spec.name) +
                 " is not a model name (1 to 64 of A-Z a-z 0-9 . _ : -); give one as NAME=PATH");
  }
  return spec;
}

bool LooksLikeGguf(const std::string& path) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd.valid()) return false;
  std::array<char, 4> magic{};
  return ::pread(fd.get(), magic.data(), magic.size(), 0) == static_cast<ssize_t>(magic.size()) &&
         std::string_view(magic.data(), magic.size()) == "GGUF";
}

Result<std::vector<ModelSpec>> ScanModelsDirectory(const std::string& dir) {
  std::unique_ptr<DIR, int (*)(DIR*)> d(::opendir(dir.c_str()), &::closedir);
  if (!d) return Error::FromErrno(errno, "--models-dir " + Quote(dir) + ": opendir");
  std::vector<ModelSpec> found;
  // readdir's entries are copied out at once; celld is single-threaded at start-up.
  // NOLINTNEXTLINE(concurrency-mt-unsafe)
  while (const dirent* e = ::readdir(d.get())) {
    std::string name = e->d_name;
    if (name.empty() || name[0] == '.') continue;
    if (name.size() > 10 && name.ends_with(".tokenizer")) continue;
    std::string path = dir;
    path += '/';
    path += name;
    if (!IsRegularFile(path)) continue;
    if (!LooksLikeGguf(path) && !IsRegularFile(path + ".tokenizer")) continue;
    found.push_back(ModelSpec{.name = ModelStem(name), .path = path, .tokenizer = ""});
  }
  if (found.empty()) {
    return Error("--models-dir " + Quote(dir) +
                 " holds no model (GGUF files, or checkpoints with a FILE.tokenizer beside them)");
  }
  std::sort(found.begin(), found.end(),
            [](const ModelSpec& a, const ModelSpec& b) { return a.name < b.name; });
  return found;
}

Status CheckModelNames(std::span<const ModelSpec> models) {
  if (models.empty()) return Error("no model to serve: give --model FILE or --models-dir DIR");
  std::set<std::string> seen;
  for (const ModelSpec& m : models) {
    if (!policy::ValidModelName(m.name)) {
      return Error("model name " + Quote(m.name) + " (" + m.path +
                   ") is not valid: 1 to 64 of A-Z a-z 0-9 . _ : -; give one as NAME=PATH");
    }
    if (!seen.insert(m.name).second) {
      return Error("two models are named " + Quote(m.name) + " (the second is " + m.path +
                   "); name them apart with --model NAME=PATH");
    }
  }
  return Ok();
}

policy::ModelFacts EnvelopeFacts(std::span<const policy::ModelFacts> each) {
  policy::ModelFacts out;
  for (const policy::ModelFacts& f : each) {
    out.seq_len = std::max(out.seq_len, f.seq_len);
    out.kv_bytes_per_token = std::max(out.kv_bytes_per_token, f.kv_bytes_per_token);
    out.state_fixed_bytes = std::max(out.state_fixed_bytes, f.state_fixed_bytes);
    out.worker_overhead_bytes = std::max(out.worker_overhead_bytes, f.worker_overhead_bytes);
  }
  return out;
}

}  // namespace cellhouse::supervisor
