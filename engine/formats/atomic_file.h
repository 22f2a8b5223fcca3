// AtomicFile: writes a file that appears at its final path complete or not at all — a temporary
// file in the same directory, written, fsync(2)ed, then rename(2)d over the target. A writer
// that is dropped without Commit() removes its temporary file.
//
//   CH_ASSIGN_OR_RETURN(AtomicFile out, AtomicFile::Create("model.bin", 0644));
//   CH_RETURN_IF_ERROR(out.Write(bytes));
//   CH_RETURN_IF_ERROR(out.Commit());
#ifndef CELLHOUSE_ENGINE_FORMATS_ATOMIC_FILE_H_
#define CELLHOUSE_ENGINE_FORMATS_ATOMIC_FILE_H_

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse::engine {

class AtomicFile {
 public:
  static Result<AtomicFile> Create(const std::string& path, mode_t mode);
  AtomicFile(AtomicFile&& other) noexcept;
  AtomicFile& operator=(AtomicFile&&) = delete;
  AtomicFile(const AtomicFile&) = delete;
  ~AtomicFile();

  Status Write(std::span<const std::byte> data);
  // fsync, close and rename over the target.
  Status Commit();

 private:
  AtomicFile(std::string path, std::string temp_path, UniqueFd fd)
      : path_(std::move(path)), temp_path_(std::move(temp_path)), fd_(std::move(fd)) {}
  std::string path_;
  std::string temp_path_;  // empty once committed or moved from
  UniqueFd fd_;
};

}  // namespace cellhouse::engine

#endif  // CELLHOUSE_ENGINE_FORMATS_ATOMIC_FILE_H_
