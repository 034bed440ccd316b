// Errors as values for the hot path: Result<T> holds a T or an Error.
#pragma once

#include <string>
#include <utility>
#include <variant>

namespace guardant::engine {

struct Error {
  std::string code;     // short machine-readable kind, e.g. "invalid_config"
  std::string message;  // what an operator reads
};

template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}      // NOLINT: implicit by design
  Result(Error error) : v_(std::move(error)) {}  // NOLINT
  static Result failure(std::string code, std::string message) {
    return Result(Error{std::move(code), std::move(message)});
  }

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const Error& error() const& { return std::get<1>(v_); }

 private:
  std::variant<T, Error> v_;
};

// Result of an operation that yields nothing but may fail.
struct Ok {};
using Status = Result<Ok>;

}  // namespace guardant::engine
