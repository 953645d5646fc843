// Byte streams over file descriptors and memory, and the one place where
// "-" means standard input or output.
#pragma once

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/result.hpp"

namespace cm {

// "what 'path': strerror(err)", the shape of every system error message; a
// path quote_path() would quote (control characters, invalid UTF-8, " or \)
// is shown C-quoted instead (show_path).
Error sys_error(std::string_view what, std::string_view path, int err);

// A byte buffer that is never zero-filled: its bytes are whatever was last
// put there. Grown on demand (the contents are not kept). From 1 MiB on it
// is an anonymous mapping aligned to 2 MiB and advised for huge pages: one
// page fault per 2 MiB, not 512 (a fresh 2 MiB buffer cost 1-3 ms of page
// faults in a cm-apply publish on a VM).
class Buffer {
 public:
  Buffer() = default;
  explicit Buffer(size_t n) { (void)at_least(n); }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  ~Buffer() { release(); }

  // At least n bytes; throws std::bad_alloc when they cannot be had.
  char* at_least(size_t n);
  char* data() const { return p_; }
  size_t size() const { return size_; }

 private:
  void release();
  char* p_ = nullptr;
  size_t size_ = 0;
  bool mapped_ = false;
};

// Owns a file descriptor.
class Fd {
 public:
  Fd() = default;
  explicit Fd(int fd) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(o.release()) {}
  Fd& operator=(Fd&& o) noexcept;
  Fd(const Fd&) = delete;
  Fd& operator=(const Fd&) = delete;
  ~Fd();

  int get() const { return fd_; }
  bool valid() const { return fd_ >= 0; }
  int release() {
    int f = fd_;
    fd_ = -1;
    return f;
  }
  void reset(int fd = -1);

 private:
  int fd_ = -1;
};

class Reader {
 public:
  virtual ~Reader() = default;
  // Reads up to n bytes; returns 0 only at end of input.
  virtual Result<size_t> read(void* buf, size_t n) = 0;
  // Name for error messages ("-" is shown as "standard input").
  virtual const std::string& name() const = 0;
};

class Writer {
 public:
  virtual ~Writer() = default;
  virtual Status write(const void* buf, size_t n) = 0;
  virtual Status flush() { return {}; }
  Status write(std::string_view s) { return write(s.data(), s.size()); }
};

// Reads exactly n bytes or fails ("unexpected end of input").
Status read_exact(Reader& r, void* buf, size_t n);
// Reads until end of input or until more than `limit` bytes arrived.
Result<std::string> read_all(Reader& r, size_t limit);

class FdReader : public Reader {
 public:
  FdReader(Fd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  FdReader(int borrowed, std::string name) : borrowed_(borrowed), name_(std::move(name)) {}
  Result<size_t> read(void* buf, size_t n) override;
  const std::string& name() const override { return name_; }
  int fd() const { return fd_.valid() ? fd_.get() : borrowed_; }

 private:
  Fd fd_;
  int borrowed_ = -1;
  std::string name_;
};

class StringReader : public Reader {
 public:
  explicit StringReader(std::string data, std::string name = "<memory>")
      : data_(std::move(data)), name_(std::move(name)) {}
  Result<size_t> read(void* buf, size_t n) override;
  const std::string& name() const override { return name_; }

 private:
  std::string data_;
  size_t pos_ = 0;
  std::string name_;
};

// Buffered writer to a descriptor; EPIPE and ENOSPC come back as errors.
class FdWriter : public Writer {
 public:
  using Writer::write;
  FdWriter(int borrowed, std::string name);
  ~FdWriter() override = default;
  Status write(const void* buf, size_t n) override;
  Status flush() override;
  const std::string& name() const { return name_; }

 private:
  int fd_;
  std::string name_;
  std::string buf_;
};

class StringWriter : public Writer {
 public:
  using Writer::write;
  Status write(const void* buf, size_t n) override {
    data_.append(static_cast<const char*>(buf), n);
    return {};
  }
  std::string& data() { return data_; }

 private:
  std::string data_;
};

// Counts the bytes that pass through to another writer.
class CountingWriter : public Writer {
 public:
  explicit CountingWriter(Writer& inner) : inner_(inner) {}
  Status write(const void* buf, size_t n) override {
    count_ += n;
    return inner_.write(buf, n);
  }
  Status flush() override { return inner_.flush(); }
  uint64_t count() const { return count_; }

 private:
  Writer& inner_;
  uint64_t count_ = 0;
};

// Input named on a command line: "-" is standard input.
Result<std::unique_ptr<FdReader>> open_input(const std::string& path);

// Output named on a command line: "-" is standard output; a file is
// written to a temporary file beside it and renamed into place by commit(),
// so a failed run never leaves a file that looks complete (through a
// symbolic link: beside the file it points to); a device, FIFO or socket
// (/dev/null, /dev/stdout) is written in place.
class Output {
 public:
  static Result<std::unique_ptr<Output>> open(const std::string& path);
  ~Output();
  Writer& writer() { return *writer_; }
  // Flushes, fsyncs and renames into place (files); flushes (stdout).
  Status commit();
  // The same, renaming to another name in the same directory.
  Status commit_as(const std::string& final_path);
  // Flushes and fsyncs a file without renaming it yet.
  Status sync();
  const std::string& path() const { return path_; }
  bool is_stdout() const { return path_ == "-"; }

 private:
  Output() = default;
  std::string path_;
  std::string tmp_;
  std::string final_;  // what tmp_ is renamed to (path_, or through a link)
  Fd fd_;
  std::unique_ptr<FdWriter> writer_;
  bool committed_ = false;
  bool direct_ = false;  // a device or FIFO, written in place
};

// Writes a whole file atomically (temporary file + fsync + rename); a
// device or FIFO in place. A symbolic link there is replaced, not
// followed (daemons write their own files with this). With `unsynced`,
// the file is renamed unsynced and its descriptor handed over: the caller
// syncs it before anything relies on it (left invalid for a device).
Status write_file_atomic(const std::string& path, std::string_view data, unsigned mode = 0644,
                         Fd* unsynced = nullptr);

// "DIR/.NAME.tmp." for path DIR/NAME: what the temporary files that
// write_file_atomic() and write_temp_beside() make beside it start with.
std::string temp_prefix(const std::string& path);

// The first half of write_file_atomic(): `data` written whole to a new
// file beside `path`, not synced and not renamed. The caller syncs `fd`,
// then renames `name` to `path` (or removes it).
struct TempBeside {
  Fd fd;
  std::string name;
};
Result<TempBeside> write_temp_beside(const std::string& path, std::string_view data, unsigned mode);

}  // namespace cm

namespace cm {

// A temporary spool: appended to, read back at any offset. Held in memory
// up to kInMemory bytes (an assignment's command list, a small build's
// members: no file to create, write and read back); beyond, an unlinked
// file in $TMPDIR or /tmp, gone when closed.
class TempFile : public Writer {
 public:
  static constexpr size_t kInMemory = 1 << 20;
  static Result<TempFile> create();
  using Writer::write;
  TempFile(TempFile&&) = default;
  TempFile& operator=(TempFile&&) = default;
  Status write(const void* p, size_t n) override;
  Status flush() override { return writer_ ? writer_->flush() : Status{}; }
  Result<size_t> pread(void* p, size_t n, uint64_t offset);
  uint64_t size() const { return size_; }
  // Empties the spool for reuse.
  Status clear();
  // Copies [offset, offset+n) to `out`.
  Status copy_to(Writer& out, uint64_t offset, uint64_t n);

 private:
  TempFile() = default;
  // Moves what is in memory to a file.
  Status spill();
  std::string mem_;
  Fd fd_;
  std::unique_ptr<FdWriter> writer_;  // once spilled
  uint64_t size_ = 0;
};

}  // namespace cm
