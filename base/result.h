// Result<T>: a value or an Error, shaped like C++23 std::expected (which g++ 12 and clang-tidy 14
// cannot use here). Our code does not throw; fallible functions return Result.
//
//   Result<UniqueFd> OpenConfig(const std::string& path);
//
//   Result<Config> LoadConfig(const std::string& path) {
//     CH_ASSIGN_OR_RETURN(UniqueFd fd, OpenConfig(path));
//     CH_RETURN_IF_ERROR(CheckOwner(fd));
//     ...
//   }
//
// An Error carries a message written for a person (operation, quoted object, reason, and for
// admin-facing errors what to do) and, when it came from a system call, the errno.
#ifndef CELLHOUSE_BASE_RESULT_H_
#define CELLHOUSE_BASE_RESULT_H_

#include <cassert>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <variant>

namespace cellhouse {

class [[nodiscard]] Error {
 public:
  // A plain message, no errno.
  explicit Error(std::string message) : message_(std::move(message)) {}
  // "`what`: strerror(err)", remembering err.
  static Error FromErrno(int err, std::string_view what);

  const std::string& message() const { return message_; }
  // The errno this error came from, or 0.
  int sys_errno() const { return errno_; }

  // Prefixes the message with context: "loading policy 'x': <message>".
  Error Context(std::string_view context) &&;

 private:
  Error(std::string message, int err) : message_(std::move(message)), errno_(err) {}
  std::string message_;
  int errno_ = 0;
};

template <typename T>
class [[nodiscard]] Result {
 public:
  // NOLINTNEXTLINE(google-explicit-constructor): implicit like std::expected.
  Result(T value) : storage_(std::in_place_index<0>, std::move(value)) {}
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Error error) : storage_(std::in_place_index<1>, std::move(error)) {}
  template <typename U, typename = std::enable_if_t<std::is_constructible_v<T, U&&> &&
                                                    !std::is_same_v<std::decay_t<U>, T> &&
                                                    !std::is_same_v<std::decay_t<U>, Error> &&
                                                    !std::is_same_v<std::decay_t<U>, Result>>>
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(U&& value) : storage_(std::in_place_index<0>, T(std::forward<U>(value))) {}

  bool has_value() const { return storage_.index() == 0; }
  explicit operator bool() const { return has_value(); }

  T& value() & {
    assert(has_value());
    return std::get<0>(storage_);
  }
  const T& value() const& {
    assert(has_value());
    return std::get<0>(storage_);
  }
  T&& value() && {
    assert(has_value());
    return std::get<0>(std::move(storage_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!has_value());
    return std::get<1>(storage_);
  }
  Error&& error() && {
    assert(!has_value());
    return std::get<1>(std::move(storage_));
  }

 private:
  std::variant<T, Error> storage_;
};

template <>
class [[nodiscard]] Result<void> {
 public:
  Result() = default;
  // NOLINTNEXTLINE(google-explicit-constructor)
  Result(Error error) : error_(std::move(error)), ok_(false) {}

  bool has_value() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return error_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(error_);
  }

 private:
  Error error_{std::string()};
  bool ok_ = true;
};

using Status = Result<void>;

inline Status Ok() { return {}; }

}  // namespace cellhouse

#define CH_INTERNAL_CONCAT2(a, b) a##b
#define CH_INTERNAL_CONCAT(a, b) CH_INTERNAL_CONCAT2(a, b)

// Evaluates `expr` (a Result); returns its error from the enclosing function if it has one.
#define CH_RETURN_IF_ERROR(expr)                                       \
  do {                                                                 \
    auto ch_status_ = (expr);                                          \
    if (!ch_status_.has_value()) return std::move(ch_status_).error(); \
  } while (false)

// `CH_ASSIGN_OR_RETURN(T x, expr);` declares x from a Result<T>, or returns its error.
#define CH_ASSIGN_OR_RETURN(lhs, expr) \
  CH_INTERNAL_ASSIGN_OR_RETURN(CH_INTERNAL_CONCAT(ch_result_, __LINE__), lhs, expr)
// `lhs` is a declaration and `tmp` a name: neither can be parenthesised.
// NOLINTBEGIN(bugprone-macro-parentheses)
#define CH_INTERNAL_ASSIGN_OR_RETURN(tmp, lhs, expr)   \
  auto tmp = (expr);                                   \
  if (!tmp.has_value()) return std::move(tmp).error(); \
  lhs = std::move(tmp).value()
// NOLINTEND(bugprone-macro-parentheses)

#endif  // CELLHOUSE_BASE_RESULT_H_
