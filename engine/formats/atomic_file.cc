#include "engine/formats/atomic_file.h"

#include <fcntl.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <utility>

#include "base/io.h"

namespace cellhouse::engine {

Result<AtomicFile> AtomicFile::Create(const std::string& path, mode_t mode) {
  std::string temp = path + ".tmp.XXXXXX";
  UniqueFd fd(::mkostemp(temp.data(), O_CLOEXEC));
  if (!fd.valid()) {
    return Error::FromErrno(errno, "creating a temporary file beside '" + path + "'");
  }
  AtomicFile file(path, temp, std::move(fd));
  // mkostemp(3) creates the file 0600; a model is meant to be read by the service's users.
  if (::fchmod(file.fd_.get(), mode) != 0) {
    return Error::FromErrno(errno, "fchmod '" + temp + "'");
  }
  return file;
}

AtomicFile::AtomicFile(AtomicFile&& other) noexcept
    : path_(std::move(other.path_)),
      temp_path_(std::exchange(other.temp_path_, std::string())),
      fd_(std::move(other.fd_)) {}

AtomicFile::~AtomicFile() {
  if (!temp_path_.empty()) {
    static_cast<void>(::unlink(temp_path_.c_str()));
  }
}

Status AtomicFile::Write(std::span<const std::byte> data) {
  return WriteFull(fd_.get(), data, "'" + temp_path_ + "'");
}

Status AtomicFile::Commit() {
  if (::fsync(fd_.get()) != 0) {
    return Error::FromErrno(errno, "fsync '" + temp_path_ + "'");
  }
  if (::close(fd_.release()) != 0) {
    return Error::FromErrno(errno, "close '" + temp_path_ + "'");
  }
  if (std::rename(temp_path_.c_str(), path_.c_str()) != 0) {
    return Error::FromErrno(errno, "renaming '" + temp_path_ + "' to '" + path_ + "'");
  }
  temp_path_.clear();
  return Ok();
}

}  // namespace cellhouse::engine
