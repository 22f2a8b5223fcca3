// String helpers: strict number parsing (the whole text must be a number in range, never a
// silent truncation), byte counts with units, hex.
//
//   CH_ASSIGN_OR_RETURN(int64_t n, ParseInt64(text, "--max-tokens"));
//   CH_ASSIGN_OR_RETURN(uint64_t bytes, ParseByteSize("512M", "--memory-budget"));
#ifndef CELLHOUSE_BASE_STRINGS_H_
#define CELLHOUSE_BASE_STRINGS_H_

#include <cstddef>
#include <cstdint>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellhouse {

// `what` names the value in errors ("--steps: 'x' is not an integer").
Result<int64_t> ParseInt64(std::string_view text, std::string_view what);
Result<uint64_t> ParseUint64(std::string_view text, std::string_view what);
Result<double> ParseDouble(std::string_view text, std::string_view what);
// "1048576", "512K", "64M", "2G", "1T": powers of 1024, as systemd's MemoryMax=; "i", "B" or "iB"
// may follow the unit ("512Mi", "512MB", "512MiB" all mean 512 << 20).
Result<uint64_t> ParseByteSize(std::string_view text, std::string_view what);
// 1536 -> "1.5 KiB"
std::string FormatBytes(uint64_t bytes);

std::string HexEncode(std::span<const std::byte> bytes);
// Refuses odd lengths and non-hex characters.
Result<std::vector<std::byte>> HexDecode(std::string_view hex, std::string_view what);

std::string_view Trim(std::string_view text);
std::vector<std::string_view> Split(std::string_view text, char sep);
bool StartsWith(std::string_view text, std::string_view prefix);

// Quotes text for messages, escaping control bytes so hostile input cannot forge log lines.
std::string Quote(std::string_view text);

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_STRINGS_H_
