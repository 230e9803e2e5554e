// Owned descriptors and the error-or-value type shared by the sockbroker C++ API.
#pragma once

#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <variant>

namespace sockbroker {

// Sole owner of one file descriptor: closes it on destruction. Move-only.
class UniqueFd {
 public:
  UniqueFd() noexcept = default;
  explicit UniqueFd(int fd) noexcept : fd_(fd) {}
  UniqueFd(UniqueFd&& other) noexcept : fd_(other.release()) {}
  UniqueFd& operator=(UniqueFd&& other) noexcept {
    if (this != &other) reset(other.release());
    return *this;
  }
  UniqueFd(const UniqueFd&) = delete;
  UniqueFd& operator=(const UniqueFd&) = delete;
  ~UniqueFd() { reset(); }

  [[nodiscard]] int get() const noexcept { return fd_; }
  [[nodiscard]] bool valid() const noexcept { return fd_ >= 0; }
  explicit operator bool() const noexcept { return valid(); }

  // Gives up ownership without closing.
  [[nodiscard]] int release() noexcept { return std::exchange(fd_, -1); }

  void reset(int fd = -1) noexcept {
    int old = std::exchange(fd_, fd);
    if (old >= 0) {
      int saved = errno;  // close() must not clobber the errno a caller is about to report
      ::close(old);
      errno = saved;
    }
  }

 private:
  int fd_ = -1;
};

// What went wrong: a SOCKBROKER_E_* code (or 0 for internal errors that carry
// only an errno), the errno behind it if any, and one line for humans.
struct Error {
  int code = 0;
  int sys_errno = 0;
  std::string message;

  // The line to show: "message: strerror(sys_errno)", or the message alone
  // when no errno is behind it.
  [[nodiscard]] std::string describe() const {
    return sys_errno != 0 ? message + ": " + std::strerror(sys_errno) : message;
  }
};

// A value or an Error; the small subset of std::expected that C++20 lacks.
template <class T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::move(value)) {}          // NOLINT(google-explicit-constructor)
  Result(Error error) : v_(std::move(error)) {}      // NOLINT(google-explicit-constructor)

  [[nodiscard]] bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & { return std::get<0>(v_); }
  const T& value() const& { return std::get<0>(v_); }
  T&& value() && { return std::get<0>(std::move(v_)); }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Error& error() const& { return std::get<1>(v_); }
  Error&& error() && { return std::get<1>(std::move(v_)); }

 private:
  std::variant<T, Error> v_;
};

// Result of an operation with no value.
struct Ok {};
using Status = Result<Ok>;

inline Error errno_error(std::string what, int err = errno) {
  return Error{0, err, std::move(what)};
}

}  // namespace sockbroker
