// Byte sizes written with a unit in policy files: `memory_max_bytes: 512M` (text format) or
// "memoryMaxBytes": "512M" (JSON) mean 536870912, as celld's --memory-budget and systemd's
// MemoryMax= read them. protobuf's parsers take plain numbers only, so the loader rewrites such
// values first, in fields whose name ends in `_bytes`, and maps positions back to the file as
// written; a value that is not a byte count is one clear problem instead of two parser errors.
//
//   std::string rewritten;
//   ColumnShifts shifts;
//   if (!RewriteTextByteSizes(content, &rewritten, &shifts, &problems)) return false;
//   ... parse `rewritten`; report shifts.ToWritten(position) ...
//
// Units: K, M, G, T, each 1024 times the one before, optionally followed by "i", "B" or "iB"
// (512M, 512Mi, 512MB and 512MiB are all 512 x 2^20 bytes). Decimal (SI) units are not offered:
// a memory limit in powers of ten is almost never what was meant.
#ifndef CELLHOUSE_POLICY_BYTE_SIZES_H_
#define CELLHOUSE_POLICY_BYTE_SIZES_H_

#include <string>
#include <string_view>
#include <vector>

#include "policy/problem.h"

namespace cellhouse::policy {

// Where rewriting moved columns on a line, so that positions in the rewritten text (from the
// parser) can be turned back into positions in the file as written.
class ColumnShifts {
 public:
  // On `line`, everything from `column` (1-based, in the rewritten text) on moved right by
  // `delta` columns.
  void Add(int line, int column, int delta);
  SourcePosition ToWritten(SourcePosition rewritten) const;

 private:
  struct Shift {
    int line;
    int column;
    int delta;
  };
  std::vector<Shift> shifts_;
};

// Text format: `NAME_bytes: 512M` outside strings and comments becomes `NAME_bytes: 536870912`.
// Returns false, with a problem at the value, when a `_bytes` value has letters but is not a
// byte count (or is out of range).
bool RewriteTextByteSizes(std::string_view content, std::string* out, ColumnShifts* shifts,
                          std::vector<Problem>* problems);

// JSON: a string value of a key ending in "Bytes" or "_bytes" ("512M") becomes the decimal string
// ("536870912"), which the proto3 JSON mapping accepts for a uint64. Returns false, with a
// problem, as above.
bool RewriteJsonByteSizes(std::string_view content, std::string* out,
                          std::vector<Problem>* problems);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_BYTE_SIZES_H_
