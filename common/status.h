// common/status.h — errors as values.
//
// Owns: Status (ok or a message a user can act on) and Result<T> (a value or a Status).
// Must not know: anything about KVM, guests or I/O.
#pragma once

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace minihv {

class [[nodiscard]] Status {
public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string message) { return Status(std::move(message)); }
  // Bad input from the user (a flag, a file): `minihv` exits with status 2 for these.
  static Status invalid(std::string message) {
    Status s(std::move(message));
    s.invalid_ = true;
    return s;
  }
  // "what: strerror(err)"; err defaults to errno at the call.
  static Status from_errno(const std::string& what, int err = errno) {
    return Status(what + ": " + std::strerror(err));
  }

  // The same, as bad input: a path the user gave that does not exist or cannot be opened.
  static Status invalid_from_errno(const std::string& what, int err = errno) {
    return invalid(what + ": " + std::strerror(err));
  }

  bool is_ok() const { return !failed_; }
  bool is_invalid_input() const { return invalid_; }
  explicit operator bool() const { return is_ok(); }
  const std::string& message() const { return message_; }
  Status status() const { return *this; }  // lets MINIHV_TRY take a Status or a Result
  // Prefixes context: Status::error("x").context("loading kernel") -> "loading kernel: x".
  Status context(const std::string& where) const {
    if (!failed_) return *this;
    Status s(where + ": " + message_);
    s.invalid_ = invalid_;
    return s;
  }

private:
  explicit Status(std::string message) : failed_(true), message_(std::move(message)) {}
  bool failed_ = false;
  bool invalid_ = false;
  std::string message_;
};

template <typename T>
class [[nodiscard]] Result {
public:
  Result(T value) : v_(std::move(value)) {}                // NOLINT: implicit by design
  Result(Status status) : v_(std::move(status)) {}         // NOLINT: must be an error
  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T&& operator*() && { return std::move(*this).value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<1>(v_); }
  const std::string& message() const { return std::get<1>(v_).message(); }

private:
  std::variant<T, Status> v_;
};

}  // namespace minihv

// Propagates a failed Status/Result out of the calling function.
#define MINIHV_TRY(expr)                          \
  do {                                            \
    auto minihv_try_s_ = (expr);                  \
    if (!minihv_try_s_.is_ok()) return minihv_try_s_.status();        \
  } while (0)
