#include "base/flags.h"

#include <algorithm>
#include <cstdio>

#include "base/strings.h"

namespace cellhouse {

FlagSet::FlagSet(std::string usage_line, std::string description)
    : usage_line_(std::move(usage_line)), description_(std::move(description)) {}

void FlagSet::Add(Flag flag) { flags_.push_back(std::move(flag)); }

void FlagSet::String(std::string_view name, std::string* out, std::string_view metavar,
                     std::string_view help) {
  Add({std::string(name), std::string(metavar), std::string(help), *out, [out](std::string_view v) {
         *out = std::string(v);
         return Ok();
       }});
}

void FlagSet::StringList(std::string_view name, std::vector<std::string>* out,
                         std::string_view metavar, std::string_view help) {
  Add({std::string(name), std::string(metavar), std::string(help) + " (repeatable)", "",
       [out](std::string_view v) {
         out->emplace_back(v);
         return Ok();
       }});
}

void FlagSet::Int(std::string_view name, int64_t* out, std::string_view metavar,
                  std::string_view help) {
  std::string flag = "--" + std::string(name);
  Add({std::string(name), std::string(metavar), std::string(help), std::to_string(*out),
       [out, flag](std::string_view v) -> Status {
         CH_ASSIGN_OR_RETURN(*out, ParseInt64(v, flag));
         return Ok();
       }});
}

void FlagSet::Double(std::string_view name, double* out, std::string_view metavar,
                     std::string_view help) {
  std::string flag = "--" + std::string(name);
  char buf[32];
  static_cast<void>(std::snprintf(buf, sizeof(buf), "%g", *out));
  Add({std::string(name), std::string(metavar), std::string(help), buf,
       [out, flag](std::string_view v) -> Status {
         CH_ASSIGN_OR_RETURN(*out, ParseDouble(v, flag));
         return Ok();
       }});
}

void FlagSet::ByteSize(std::string_view name, uint64_t* out, std::string_view metavar,
                       std::string_view help) {
  std::string flag = "--" + std::string(name);
  Add({std::string(name), std::string(metavar), std::string(help),
       *out == 0 ? std::string() : FormatBytes(*out), [out, flag](std::string_view v) -> Status {
         CH_ASSIGN_OR_RETURN(*out, ParseByteSize(v, flag));
         return Ok();
       }});
}

void FlagSet::Bool(std::string_view name, bool* out, std::string_view help) {
  Add({std::string(name), "", std::string(help), "", [out](std::string_view v) -> Status {
         if (v == "true" || v == "1" || v.empty()) {
           *out = true;
         } else if (v == "false" || v == "0") {
           *out = false;
         } else {
           return Error("expected true or false, got " + Quote(v));
         }
         return Ok();
       }});
}

void FlagSet::Alias(char short_name, std::string_view long_name) {
  aliases_.emplace_back(short_name, std::string(long_name));
}

FlagSet::Flag* FlagSet::Find(std::string_view name) {
  for (Flag& f : flags_) {
    if (f.name == name) return &f;
  }
  return nullptr;
}

bool FlagSet::IsSet(std::string_view name) const {
  for (const Flag& f : flags_) {
    if (f.name == name) return f.seen;
  }
  return false;
}

Result<std::vector<std::string>> FlagSet::Parse(int argc, char* const* argv) {
  std::vector<std::string> args;
  args.reserve(static_cast<size_t>(std::max(argc, 0)));
  for (int i = 0; i < argc; ++i) args.emplace_back(argv[i]);
  return Parse(args);
}

Result<std::vector<std::string>> FlagSet::Parse(const std::vector<std::string>& args) {
  std::vector<std::string> positional;
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& arg = args[i];
    if (arg == "--") {
      positional.insert(positional.end(), args.begin() + static_cast<ptrdiff_t>(i) + 1, args.end());
      break;
    }
    if (arg == "-h" || arg == "--help") {
      help_ = true;
      continue;
    }
    std::string name;
    std::string value;
    bool has_value = false;
    if (StartsWith(arg, "--")) {
      name = arg.substr(2);
      if (size_t eq = name.find('='); eq != std::string::npos) {
        value = name.substr(eq + 1);
        name.resize(eq);
        has_value = true;
      }
    } else if (arg.size() == 2 && arg[0] == '-' && arg[1] != '-') {
      auto it = std::find_if(aliases_.begin(), aliases_.end(),
                             [&](const auto& a) { return a.first == arg[1]; });
      if (it == aliases_.end()) {
        return Error("unknown option " + Quote(arg) + "; see --help");
      }
      name = it->second;
    } else {
      positional.push_back(arg);
      continue;
    }
    Flag* flag = Find(name);
    if (flag == nullptr) return Error("unknown option --" + name + "; see --help");
    if (!flag->metavar.empty() && !has_value) {
      if (i + 1 >= args.size()) {
        return Error("option --" + name + " needs a value (" + flag->metavar + ")");
      }
      value = args[++i];
    }
    Status st = flag->set(value);
    if (!st) return std::move(st).error().Context("option --" + name);
    flag->seen = true;
  }
  return positional;
}

std::string FlagSet::Usage() const {
  std::string out = "usage: " + usage_line_ + "\n\n" + description_ + "\n";
  if (!flags_.empty()) out += "\noptions:\n";
  for (const Flag& f : flags_) {
    std::string left = "  ";
    for (const auto& [c, long_name] : aliases_) {
      if (long_name == f.name) left += std::string("-") + c + ", ";
    }
    left += "--" + f.name;
    if (!f.metavar.empty()) left += " " + f.metavar;
    if (left.size() < 30) {
      left.resize(30, ' ');
    } else {
      left += "\n" + std::string(30, ' ');
    }
    out += left + f.help;
    if (!f.default_text.empty() && !f.metavar.empty()) out += " (default: " + f.default_text + ")";
    out += "\n";
  }
  out += "  -h, --help                  show this help\n";
  return out;
}

}  // namespace cellhouse
