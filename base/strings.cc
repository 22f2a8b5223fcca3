#include "base/strings.h"

#include <charconv>
#include <cmath>
#include <cstdio>
#include <limits>

namespace cellhouse {
namespace {

std::string NotA(std::string_view what, std::string_view text, std::string_view kind) {
  return std::string(what) + ": '" + std::string(text) + "' is not " + std::string(kind);
}

}  // namespace

Result<int64_t> ParseInt64(std::string_view text, std::string_view what) {
  int64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec == std::errc::result_out_of_range) return Error(NotA(what, text, "in range"));
  if (ec != std::errc() || ptr != end || text.empty()) {
    return Error(NotA(what, text, "an integer"));
  }
  return value;
}

Result<uint64_t> ParseUint64(std::string_view text, std::string_view what) {
  uint64_t value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec == std::errc::result_out_of_range) return Error(NotA(what, text, "in range"));
  if (ec != std::errc() || ptr != end || text.empty()) {
    return Error(NotA(what, text, "a non-negative integer"));
  }
  return value;
}

Result<double> ParseDouble(std::string_view text, std::string_view what) {
  double value = 0;
  const char* end = text.data() + text.size();
  auto [ptr, ec] = std::from_chars(text.data(), end, value);
  if (ec != std::errc() || ptr != end || text.empty() || !std::isfinite(value)) {
    return Error(NotA(what, text, "a finite number"));
  }
  return value;
}

Result<uint64_t> ParseByteSize(std::string_view text, std::string_view what) {
  std::string_view digits = text;
  uint64_t multiplier = 1;
  // "512", "512B", then a unit, each a power of 1024 (as systemd's MemoryMax=): "512K", "512M",
  // "512G", "512T", optionally followed by "i", "B" or "iB" ("512Mi", "512MB", "512MiB").
  if (digits.size() > 1 && digits.back() == 'B') digits.remove_suffix(1);
  bool binary_marker = false;
  if (digits.size() > 1 && digits.back() == 'i') {
    digits.remove_suffix(1);
    binary_marker = true;
  }
  if (!digits.empty()) {
    switch (digits.back()) {
      case 'K':
      case 'k':
        multiplier = 1ULL << 10;
        break;
      case 'M':
      case 'm':
        multiplier = 1ULL << 20;
        break;
      case 'G':
      case 'g':
        multiplier = 1ULL << 30;
        break;
      case 'T':
      case 't':
        multiplier = 1ULL << 40;
        break;
      default:
        break;
    }
    if (multiplier != 1) digits.remove_suffix(1);
  }
  uint64_t value = 0;
  const char* end = digits.data() + digits.size();
  auto [ptr, ec] = std::from_chars(digits.data(), end, value);
  if (ec != std::errc() || ptr != end || digits.empty() || (binary_marker && multiplier == 1)) {
    return Error(NotA(what, text, "a byte count such as 512M or 2G"));
  }
  if (value > std::numeric_limits<uint64_t>::max() / multiplier) {
    return Error(NotA(what, text, "in range"));
  }
  return value * multiplier;
}

std::string FormatBytes(uint64_t bytes) {
  static constexpr const char* kUnits[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1024.0 && unit + 1 < std::size(kUnits)) {
    value /= 1024.0;
    ++unit;
  }
  char buf[48];
  if (unit == 0) {
    static_cast<void>(
        std::snprintf(buf, sizeof(buf), "%llu B", static_cast<unsigned long long>(bytes)));
  } else {
    static_cast<void>(std::snprintf(buf, sizeof(buf), "%.1f %s", value, kUnits[unit]));
  }
  return buf;
}

std::string HexEncode(std::span<const std::byte> bytes) {
  static constexpr char kDigits[] = "0123456789abcdef";
  std::string out;
  out.reserve(bytes.size() * 2);
  for (std::byte b : bytes) {
    auto v = static_cast<unsigned>(b);
    out.push_back(kDigits[v >> 4]);
    out.push_back(kDigits[v & 15]);
  }
  return out;
}

Result<std::vector<std::byte>> HexDecode(std::string_view hex, std::string_view what) {
  if (hex.size() % 2 != 0) return Error(std::string(what) + ": odd number of hex digits");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
  };
  std::vector<std::byte> out(hex.size() / 2);
  for (size_t i = 0; i < out.size(); ++i) {
    int hi = nibble(hex[2 * i]);
    int lo = nibble(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return Error(std::string(what) + ": not a hex string");
    out[i] = static_cast<std::byte>((hi << 4) | lo);
  }
  return out;
}

std::string_view Trim(std::string_view text) {
  constexpr const char* kSpace = " \t\r\n";
  size_t begin = text.find_first_not_of(kSpace);
  if (begin == std::string_view::npos) return {};
  size_t end = text.find_last_not_of(kSpace);
  return text.substr(begin, end - begin + 1);
}

std::vector<std::string_view> Split(std::string_view text, char sep) {
  std::vector<std::string_view> parts;
  size_t start = 0;
  for (;;) {
    size_t pos = text.find(sep, start);
    if (pos == std::string_view::npos) {
      parts.push_back(text.substr(start));
      return parts;
    }
    parts.push_back(text.substr(start, pos - start));
    start = pos + 1;
  }
}

bool StartsWith(std::string_view text, std::string_view prefix) {
  return text.substr(0, prefix.size()) == prefix;
}

std::string Quote(std::string_view text) {
  std::string out = "'";
  for (char c : text) {
    auto u = static_cast<unsigned char>(c);
    if (u < 0x20 || u == 0x7f || c == '\'' || c == '\\') {
      char buf[8];
      static_cast<void>(std::snprintf(buf, sizeof(buf), "\\x%02x", u));
      out += buf;
    } else {
      out.push_back(c);
    }
  }
  out += "'";
  return out;
}

}  // namespace cellhouse
