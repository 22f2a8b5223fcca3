// Problems found in a policy file, and where in the file they are. The loader collects every
// problem of every file before it refuses, so an admin fixes a directory in one pass.
//
//   SourceMap map;                       // filled by the parser: field path -> line:column
//   std::vector<Problem> problems;
//   problems.push_back({.field = "cgroup.memory_high_bytes", .message = "... Refusing."});
//   std::string text = FormatProblems("/etc/cellhouse/policies/x.textproto", map, problems);
//   // "/etc/cellhouse/policies/x.textproto:7:3: cgroup.memory_high_bytes: ... Refusing."
//
// Field paths are proto field names joined by '.', with "[i]" after repeated fields:
// "seccomp.rules[2].args[0].index". Text format and JSON files use the same paths.
#ifndef CELLHOUSE_POLICY_PROBLEM_H_
#define CELLHOUSE_POLICY_PROBLEM_H_

#include <map>
#include <string>
#include <string_view>
#include <vector>

namespace cellhouse::policy {

// 1-based; 0 means unknown.
struct SourcePosition {
  int line = 0;
  int column = 0;
};

// Where each field of a parsed file was written.
class SourceMap {
 public:
  void Add(std::string path, SourcePosition pos) { positions_.emplace(std::move(path), pos); }
  // The position of `path`, else of its nearest enclosing field that has one, else {0, 0}.
  SourcePosition Find(std::string_view path) const;

 private:
  std::map<std::string, SourcePosition, std::less<>> positions_;
};

struct Problem {
  // The file the problem is in, when it is not the policy file itself (an imported profile).
  std::string file;
  // Set when the file has no source map entry for `field` (parse errors).
  SourcePosition position;
  // The field path, or "" for the file as a whole.
  std::string field;
  // A sentence for the admin: what is wrong and what to change.
  std::string message;
};

// One line per problem: "FILE:LINE:COL: FIELD: MESSAGE" (parts that are unknown are left out).
std::string FormatProblem(std::string_view file, const SourceMap& map, const Problem& problem);
std::string FormatProblems(std::string_view file, const SourceMap& map,
                           const std::vector<Problem>& problems);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_PROBLEM_H_
