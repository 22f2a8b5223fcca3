// StrCat: joins pieces of text (and integers) into one std::string with one allocation, for
// building messages. It also sidesteps g++ 12's -Wrestrict false positive on
// `"literal" + std::to_string(n)` (GCC bug 105329), which -Werror turns into a build failure.
//
//   return Error(StrCat("policy ", Quote(name), ": ", count, " problems"));
#ifndef CELLHOUSE_BASE_STR_CAT_H_
#define CELLHOUSE_BASE_STR_CAT_H_

#include <charconv>
#include <concepts>
#include <cstddef>
#include <string>
#include <string_view>

namespace cellhouse {
namespace str_cat_internal {

// One piece: a view of text, or an integer formatted into the piece's own buffer.
class Piece {
 public:
  // NOLINTNEXTLINE(google-explicit-constructor): pieces convert implicitly, as absl::AlphaNum.
  Piece(std::string_view text) : view_(text) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Piece(const std::string& text) : view_(text) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Piece(const char* text) : view_(text) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Piece(char c) : buffer_{c}, view_(buffer_, 1) {}
  template <std::integral T>
  requires(!std::same_as<T, char> && !std::same_as<T, bool>)
      // NOLINTNEXTLINE(google-explicit-constructor)
      Piece(T value) {
    auto [end, ec] = std::to_chars(buffer_, buffer_ + sizeof(buffer_), value);
    view_ = std::string_view(buffer_, static_cast<size_t>(end - buffer_));
  }
  Piece(const Piece&) = delete;
  Piece& operator=(const Piece&) = delete;
  std::string_view View() const { return view_; }

 private:
  char buffer_[24] = {};
  std::string_view view_;
};

inline std::string Join(std::initializer_list<std::string_view> views) {
  size_t size = 0;
  for (std::string_view v : views) {
    size += v.size();
  }
  std::string out;
  out.reserve(size);
  for (std::string_view v : views) {
    out.append(v);
  }
  return out;
}

}  // namespace str_cat_internal

template <typename... Args>
std::string StrCat(const Args&... args) {
  return str_cat_internal::Join({str_cat_internal::Piece(args).View()...});
}

}  // namespace cellhouse

#endif  // CELLHOUSE_BASE_STR_CAT_H_
