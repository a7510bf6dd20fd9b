// Status and Result<T>: expected failures (IO, bad input, a missing peer) travel as values that
// carry what a reader needs to act (which file, which key, which offset). Broken invariants are
// not Status: they abort through M1_CHECK (base/check.h).
// Thread safety: plain values, no shared state.
#pragma once

#include <optional>
#include <string>
#include <utility>
#include <variant>

#include <fmt/format.h>

namespace m1 {

class Status {
 public:
  Status() = default;
  static Status ok() { return Status(); }
  static Status error(std::string msg) { return Status(std::move(msg)); }
  template <class... Args>
  static Status errorf(fmt::format_string<Args...> f, Args&&... args) {
    return Status(fmt::format(f, std::forward<Args>(args)...));
  }
  bool is_ok() const { return !msg_.has_value(); }
  explicit operator bool() const { return is_ok(); }
  const std::string& message() const {
    static const std::string kOk = "ok";
    return msg_ ? *msg_ : kOk;
  }
  // Prefixes context ("reading model.safetensors: ...").
  Status with_context(const std::string& ctx) const {
    return is_ok() ? *this : Status(ctx + ": " + *msg_);
  }

 private:
  explicit Status(std::string m) : msg_(std::move(m)) {}
  std::optional<std::string> msg_;
};

template <class T>
class Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT: implicit by design
  Result(Status s) : v_(std::move(s)) {}             // REQUIRES: !s.is_ok()
  bool is_ok() const { return v_.index() == 0; }
  explicit operator bool() const { return is_ok(); }
  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() { return value(); }
  Status status() const { return is_ok() ? Status::ok() : std::get<1>(v_); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace m1

// Returns early with the Status of an expression that failed.
#define M1_RETURN_IF_ERROR(expr)            \
  do {                                      \
    ::m1::Status _st = (expr);              \
    if (!_st.is_ok()) return _st;           \
  } while (0)

#define M1_CONCAT_INNER(a, b) a##b
#define M1_CONCAT(a, b) M1_CONCAT_INNER(a, b)
// M1_ASSIGN_OR_RETURN(auto x, f()): binds the value or returns the error.
#define M1_ASSIGN_OR_RETURN(lhs, expr) M1_ASSIGN_OR_RETURN_I(M1_CONCAT(_res_, __LINE__), lhs, expr)
#define M1_ASSIGN_OR_RETURN_I(tmp, lhs, expr) \
  auto tmp = (expr);                          \
  if (!tmp.is_ok()) return tmp.status();      \
  lhs = std::move(tmp).value()
