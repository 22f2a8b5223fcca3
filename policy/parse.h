// Parsing policy files (and imported OCI profiles) into their protobuf messages, keeping where
// each field was written so that every later problem can name FILE:LINE:COL.
//
//   Policy policy;
//   SourceMap map;
//   std::vector<Problem> problems;
//   if (!ParseTextMessage(content, &policy, &map, &problems)) { /* problems say where and what */ }
//
// Text format goes through google::protobuf::TextFormat::Parser with an io::ErrorCollector and a
// ParseInfoTree. JSON is checked first by a strict RFC 8259 scanner of our own (protobuf's JSON
// parser accepts duplicate keys and trailing commas, and reports no line numbers), which records
// the position of every key, then converted by util::JsonStringToMessage; its errors name a
// field path, which the scanner's positions turn into a line and column.
#ifndef CELLHOUSE_POLICY_PARSE_H_
#define CELLHOUSE_POLICY_PARSE_H_

#include <google/protobuf/message.h>

#include <string>
#include <string_view>
#include <vector>

#include "policy/problem.h"

namespace cellhouse::policy {

// Both return false (with problems appended) when the content does not parse. Problems carry
// positions; their `file` is left empty for the caller's FormatProblems.
bool ParseTextMessage(std::string_view content, google::protobuf::Message* message, SourceMap* map,
                      std::vector<Problem>* problems);
bool ParseJsonMessage(std::string_view content, google::protobuf::Message* message, SourceMap* map,
                      std::vector<Problem>* problems);

// "memoryMaxBytes" -> "memory_max_bytes" (the proto3 JSON mapping, reversed).
std::string JsonNameToFieldName(std::string_view json_name);

}  // namespace cellhouse::policy

#endif  // CELLHOUSE_POLICY_PARSE_H_
