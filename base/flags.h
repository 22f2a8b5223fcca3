// A small command-line parser shared by every binary, so all of them spell flags the same way:
// `--name value`, `--name=value`, `--flag` for booleans, `--` ends the flags, `-h`/`--help`.
// Unknown flags, missing values and malformed numbers are errors that name the flag.
//
//   FlagSet flags("cellmodel info FILE", "Shows a checkpoint's configuration.");
//   bool json = false;
//   flags.Bool("json", &json, "print JSON");
//   CH_ASSIGN_OR_RETURN(std::vector<std::string> args, flags.Parse(argc - 2, argv + 2));
//   if (flags.help_requested()) { std::fputs(flags.Usage().c_str(), stdout); return 0; }
#ifndef CELLHOUSE_BASE_FLAGS_H_
#define CELLHOUSE_BASE_FLAGS_H_

#include <cstdint>
#include <functional>
#include <string>
#include <string_view>
#include <vector>

#include "base/result.h"

namespace cellhouse {

class FlagSet {
 public:
  FlagSet(std::string usage_line, std::string description);

  void String(std::string_view name, std::string* out, std::string_view metavar,
              std::string_view help);
  // Each occurrence appends.
  void StringList(std::string_view name, std::vector<std::string>* out, std::string_view metavar,
                  std::string_view help);
  void Int(std::string_view name, int64_t* out, std::string_view metavar, std::string_view help);
  void Double(std::string_view name, double* out, std::string_view metavar, std::string_view help);
  // Accepts 512M, 2G, ... (see ParseByteSize).
  void ByteSize(std::string_view name, uint64_t* out, std::string_view metavar,
                std::string_view help);
  void Bool(std::string_view name, bool* out, std::string_view help);
  // A one-letter alias: `-o FILE` for `--out FILE`.
  void Alias(char short_name, std::string_view long_name);

  // Parses `args` (without the program or subcommand name). Returns the positional arguments.
  Result<std::vector<std::string>> Parse(int argc, char* const* argv);
  Result<std::vector<std::string>> Parse(const std::vector<std::string>& args);

  bool help_requested() const { return help_; }
  // True when the flag appeared on the command line (its default was not used).
  bool IsSet(std::string_view name) const;
  std::string Usage() const;

 private:
  struct Flag {
    std::string name;
    std::string metavar;  // empty for booleans
    std::string help;
    std::string default_text;
    std::function<Status(std::string_view)> set;
    bool seen = false;
  };
  Flag* Find(std::string_view name);
  void Add(Flag flag);

  std::string usage_line_;
  std::string description_;
  std::vector<Flag> flags_;
  std::vector<std::pair<char, std::string>> aliases_;
  bool help_ = false;
};

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_FLAGS_H_
