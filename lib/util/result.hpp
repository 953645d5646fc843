// Error values: library functions return these instead of printing or
// exiting, so every program decides how to report and tests can inspect.
#pragma once

#include <cassert>
#include <string>
#include <utility>
#include <variant>

namespace cm {

// Exit codes shared by every program (documented in cm(7)).
enum ExitCode : int {
  kExitOk = 0,
  kExitFailure = 1,   // the operation failed
  kExitUsage = 2,     // bad command line
  kExitBadInput = 3,  // an input file or message is malformed, truncated or corrupt
  kExitSecurity = 4,  // a signature, key or authentication check failed
  kExitChanged = 5,   // the input changed while it was read: run again
  kExitPartial = 6,   // done for some targets only (quorum not met)
  kExitBusy = 7,      // another process holds the lock
};

struct Error {
  std::string message;
  int code = kExitFailure;

  Error() = default;
  explicit Error(std::string msg, int c = kExitFailure) : message(std::move(msg)), code(c) {}
};

// Result<T>: a T or an Error. Result<void> is Status.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}  // NOLINT: implicit by design
  Result(Error e) : v_(std::move(e)) {}      // NOLINT

  bool ok() const { return v_.index() == 0; }
  explicit operator bool() const { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }

  const Error& error() const& {
    assert(!ok());
    return std::get<1>(v_);
  }
  Error&& error() && {
    assert(!ok());
    return std::get<1>(std::move(v_));
  }

 private:
  std::variant<T, Error> v_;
};

class [[nodiscard]] Status {
 public:
  Status() = default;
  Status(Error e) : err_(std::move(e)), ok_(false) {}  // NOLINT
  static Status Ok() { return Status(); }

  bool ok() const { return ok_; }
  explicit operator bool() const { return ok_; }
  const Error& error() const& {
    assert(!ok_);
    return err_;
  }
  Error&& error() && {
    assert(!ok_);
    return std::move(err_);
  }

 private:
  Error err_;
  bool ok_ = true;
};

// Propagate an error from an expression returning Status or Result<T>.
#define CM_TRY(expr)                       \
  do {                                     \
    auto cm_try_r_ = (expr);               \
    if (!cm_try_r_.ok())                   \
      return std::move(cm_try_r_).error(); \
  } while (0)

#define CM_CONCAT_INNER(a, b) a##b
#define CM_CONCAT(a, b) CM_CONCAT_INNER(a, b)
// CM_ASSIGN(auto x, expr): declare x from a Result<T>, or return its error.
#define CM_ASSIGN(decl, expr) CM_ASSIGN_IMPL(CM_CONCAT(cm_assign_r_, __LINE__), decl, expr)
#define CM_ASSIGN_IMPL(tmp, decl, expr) \
  auto tmp = (expr);                    \
  if (!tmp.ok())                        \
    return std::move(tmp).error();      \
  decl = std::move(tmp).value()

}  // namespace cm
