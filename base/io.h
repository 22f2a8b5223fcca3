// Small, EINTR-safe wrappers over the descriptor and file system calls the project repeats.
// Every descriptor returned is O_CLOEXEC and owned by a UniqueFd.
//
//   CH_ASSIGN_OR_RETURN(std::string text, ReadFileToString("/proc/self/cgroup", 1 << 20));
//   CH_RETURN_IF_ERROR(WriteStringToFile(dir + "/pids.max", "64"));
#ifndef CELLHOUSE_BASE_IO_H_
#define CELLHOUSE_BASE_IO_H_

#include <sys/types.h>

#include <cstddef>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "base/result.h"
#include "base/unique_fd.h"

namespace cellhouse {

struct FdPair {
  UniqueFd first;
  UniqueFd second;
};

// pipe2(O_CLOEXEC | extra_flags): first is the read end, second the write end.
Result<FdPair> MakePipe(int extra_flags = 0);
// socketpair(AF_UNIX, type | SOCK_CLOEXEC | extra).
Result<FdPair> MakeSocketPair(int type);

// Writes all of `data`, retrying on EINTR and short writes. `what` names the peer for errors.
Status WriteFull(int fd, std::span<const std::byte> data, std::string_view what);
Status WriteFull(int fd, std::string_view data, std::string_view what);
// Reads exactly data.size() bytes; an early end of file is an error naming `what`.
Status ReadFull(int fd, std::span<std::byte> data, std::string_view what);

// Reads a whole file; refuses files larger than `max_bytes` rather than truncating.
Result<std::string> ReadFileToString(const std::string& path, size_t max_bytes);
// open(O_WRONLY|O_CLOEXEC[|O_CREAT|O_TRUNC]) + one write: the shape cgroupfs and procfs expect,
// where a value must arrive in a single write(2).
Status WriteStringToFile(const std::string& path, std::string_view content);
Status CreateFileWithContent(const std::string& path, std::string_view content, mode_t mode);
// The names in a directory, without "." and "..", sorted.
Result<std::vector<std::string>> ListDirectory(const std::string& path);

Status SetNonBlocking(int fd);

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_IO_H_
