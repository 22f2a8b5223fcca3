#include "tests/support/test_env.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <system_error>

#include <gtest/gtest.h>

#include "base/process.h"

namespace cellhouse::testing {

namespace {
std::string EnvOr(const char* name, const char* fallback) {
  const char* v = std::getenv(name);  // NOLINT(concurrency-mt-unsafe): tests read env only
  return v != nullptr && *v != '\0' ? v : fallback;
}
}  // namespace

TempDir::TempDir() {
  std::string templ = EnvOr("TMPDIR", "/tmp") + "/ch.XXXXXX";
  char* made = ::mkdtemp(templ.data());
  if (made == nullptr) {
    ADD_FAILURE() << "mkdtemp " << templ << " failed";
    return;
  }
  path_ = made;
  ::chmod(path_.c_str(), 0755);
}

TempDir::~TempDir() {
  if (path_.empty()) return;
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string SourceDir() { return EnvOr("CELLHOUSE_SOURCE_DIR", CELLHOUSE_SOURCE_DIR_DEFAULT); }

std::string BinPath(const std::string& name) {
  // Every binary of the build lands in one directory, the test's own among them.
  auto self = SelfExeDir();
  return EnvOr("CELLHOUSE_BIN_DIR", self ? self->c_str() : ".") + "/" + name;
}

std::optional<std::string> SharedModelPath(const std::string& name) {
  std::string path = SourceDir() + "/../shared/models/" + name;
  if (::access(path.c_str(), R_OK) != 0) return std::nullopt;
  return path;
}

}  // namespace cellhouse::testing
