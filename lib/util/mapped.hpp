// A file mapped read-only, to read a large basis without copying it into
// fresh memory: memory a process touches for the first time is the dearest
// part of a patch (a 2 MiB buffer cost 0.5-5 ms of page faults and zeroing
// in a cm-apply publish on a VM; mapping the file, 0.1-0.2 ms).
//
// A mapped file that someone truncates while it is read makes the reader
// fault with SIGBUS, which would kill the process. While a Mapped lives, a
// fault inside it is answered with a page of zeros instead and remembered:
// after reading, cut() says the file changed underneath, and the caller
// throws away what it made from it. A SIGBUS anywhere else keeps its
// previous handling (by default, the process dies).
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace cm {

class Mapped {
 public:
  // The first `size` bytes (> 0) of the file open at fd, mapped and read in
  // ahead. Fails when the mapping or a guard slot cannot be had (the caller
  // reads the file instead).
  static Result<Mapped> map(int fd, size_t size, const std::string& name);

  Mapped(Mapped&& o) noexcept;
  Mapped& operator=(Mapped&&) = delete;
  Mapped(const Mapped&) = delete;
  Mapped& operator=(const Mapped&) = delete;
  ~Mapped();

  std::string_view view() const { return {data_, size_}; }
  // Whether a read faulted past the file's end (it was cut short meanwhile).
  bool cut() const;

 private:
  Mapped(const char* data, size_t size, size_t len, int slot)
      : data_(data), size_(size), len_(len), slot_(slot) {}
  const char* data_;
  size_t size_;  // bytes of the file
  size_t len_;   // bytes mapped (whole pages)
  int slot_;     // -1 when moved from
};

}  // namespace cm
