// What tests need from their environment: a private temporary directory, the built binaries,
// and the shared model data (../shared/models), which may be absent.
//
//   TempDir dir;                       // removed with everything in it at scope end
//   std::string celld = BinPath("celld");
//   std::optional<std::string> tok = SharedModelPath("tok512.bin");
//   if (!tok) GTEST_SKIP() << "../shared/models/tok512.bin absent: skipping";
#ifndef CELLHOUSE_TESTS_SUPPORT_TEST_ENV_H_
#define CELLHOUSE_TESTS_SUPPORT_TEST_ENV_H_

#include <optional>
#include <string>

namespace cellhouse::testing {

class TempDir {
 public:
  // A fresh directory under $TMPDIR (default /tmp) with a short name, so Unix socket paths
  // inside it stay below the 108-byte sun_path limit.
  TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  ~TempDir();
  const std::string& path() const { return path_; }
  std::string File(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

// The source tree ($CELLHOUSE_SOURCE_DIR, else the one this build was configured from).
std::string SourceDir();
// A built binary, e.g. BinPath("celld"): beside the test binary ($CELLHOUSE_BIN_DIR overrides).
std::string BinPath(const std::string& name);
// ../shared/models/<name> beside the source tree, or nullopt when it is not there.
std::optional<std::string> SharedModelPath(const std::string& name);

}  // namespace cellhouse::testing

#endif  // CELLHOUSE_TESTS_SUPPORT_TEST_ENV_H_
