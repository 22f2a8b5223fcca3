#include "policy/problem.h"

#include "base/str_cat.h"

namespace cellhouse::policy {

SourcePosition SourceMap::Find(std::string_view path) const {
  while (!path.empty()) {
    auto it = positions_.find(path);
    if (it != positions_.end()) {
      return it->second;
    }
    // "a.b[2].c" -> "a.b[2]" -> "a.b" -> "a".
    size_t cut = path.find_last_of(".[");
    if (cut == std::string_view::npos) {
      break;
    }
    path = path.substr(0, cut);
  }
  return {};
}

std::string FormatProblem(std::string_view file, const SourceMap& map, const Problem& problem) {
  SourcePosition pos = problem.position;
  if (pos.line == 0 && problem.file.empty()) {
    pos = map.Find(problem.field);
  }
  std::string out(problem.file.empty() ? file : problem.file);
  if (pos.line > 0) {
    out += StrCat(":", pos.line, ":", pos.column);
  }
  out += ": ";
  if (!problem.field.empty()) {
    out += StrCat(problem.field, ": ");
  }
  out += problem.message;
  return out;
}

std::string FormatProblems(std::string_view file, const SourceMap& map,
                           const std::vector<Problem>& problems) {
  std::string out;
  for (const Problem& p : problems) {
    if (!out.empty()) {
      out += '\n';
    }
    out += FormatProblem(file, map, p);
  }
  return out;
}

}  // namespace cellhouse::policy
