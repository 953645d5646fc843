#include "util/io.hpp"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <span>
#include <vector>

#include "util/text.hpp"

namespace cm {

Error sys_error(std::string_view what, std::string_view path, int err) {
  std::string m(what);
  m += ' ';
  // A name from a tree may hold a newline or a terminal's escape sequence:
  // such a one is shown C-quoted ("a\nb"), any other between single quotes.
  m += show_path(path);
  m += ": ";
  m += std::strerror(err);
  return Error(std::move(m), kExitFailure);
}

namespace {
constexpr size_t kHugePage = size_t{2} << 20;
constexpr size_t kHugeFrom = size_t{1} << 20;
}  // namespace

char* Buffer::at_least(size_t n) {
  if (n <= size_ && p_ != nullptr)
    return p_;
  release();
  if (n < kHugeFrom) {
    p_ = new char[n == 0 ? 1 : n];
    size_ = n;
    return p_;
  }
  // Mapped with a huge page's worth to spare, then trimmed to an aligned run.
  size_t want = (n + kHugePage - 1) / kHugePage * kHugePage;
  void* raw = ::mmap(nullptr, want + kHugePage, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (raw == MAP_FAILED)
    throw std::bad_alloc();
  auto start = reinterpret_cast<uintptr_t>(raw);
  uintptr_t aligned = (start + kHugePage - 1) & ~(uintptr_t{kHugePage} - 1);
  if (aligned > start)
    ::munmap(raw, aligned - start);
  if (size_t tail = start + want + kHugePage - (aligned + want); tail > 0)
    ::munmap(reinterpret_cast<void*>(aligned + want), tail);
  (void)::madvise(reinterpret_cast<void*>(aligned), want, MADV_HUGEPAGE);  // a hint
  p_ = reinterpret_cast<char*>(aligned);
  size_ = want;
  mapped_ = true;
  return p_;
}

void Buffer::release() {
  if (p_ == nullptr)
    return;
  if (mapped_)
    ::munmap(p_, size_);
  else
    delete[] p_;
  p_ = nullptr;
  size_ = 0;
  mapped_ = false;
}

Fd& Fd::operator=(Fd&& o) noexcept {
  if (this != &o)
    reset(o.release());
  return *this;
}

Fd::~Fd() {
  reset();
}

void Fd::reset(int fd) {
  if (fd_ >= 0)
    ::close(fd_);
  fd_ = fd;
}

Status read_exact(Reader& r, void* buf, size_t n) {
  auto* p = static_cast<char*>(buf);
  while (n > 0) {
    CM_ASSIGN(size_t got, r.read(p, n));
    if (got == 0)
      return Error("unexpected end of input in '" + r.name() + "'", kExitBadInput);
    p += got;
    n -= got;
  }
  return {};
}

Result<std::string> read_all(Reader& r, size_t limit) {
  std::string out;
  char buf[65536];
  for (;;) {
    CM_ASSIGN(size_t got, r.read(buf, sizeof buf));
    if (got == 0)
      return out;
    if (out.size() + got > limit)
      return Error("'" + r.name() + "' is larger than " + std::to_string(limit) + " bytes", kExitBadInput);
    out.append(buf, got);
  }
}

Result<size_t> FdReader::read(void* buf, size_t n) {
  for (;;) {
    ssize_t got = ::read(fd(), buf, n);
    if (got >= 0)
      return static_cast<size_t>(got);
    if (errno != EINTR)
      return sys_error("cannot read", name_, errno);
  }
}

Result<size_t> StringReader::read(void* buf, size_t n) {
  size_t k = std::min(n, data_.size() - pos_);
  std::memcpy(buf, data_.data() + pos_, k);
  pos_ += k;
  return k;
}

namespace {
constexpr size_t kWriteBuffer = 256 * 1024;

Status write_all(int fd, const char* p, size_t n, const std::string& name) {
  while (n > 0) {
    ssize_t w = ::write(fd, p, n);
    if (w < 0) {
      if (errno == EINTR)
        continue;
      return sys_error("cannot write", name, errno);
    }
    p += w;
    n -= static_cast<size_t>(w);
  }
  return {};
}
}  // namespace

FdWriter::FdWriter(int borrowed, std::string name) : fd_(borrowed), name_(std::move(name)) {
  buf_.reserve(kWriteBuffer);
}

Status FdWriter::write(const void* buf, size_t n) {
  const char* p = static_cast<const char*>(buf);
  if (buf_.size() + n <= kWriteBuffer) {
    buf_.append(p, n);
    return {};
  }
  CM_TRY(flush());
  if (n >= kWriteBuffer)
    return write_all(fd_, p, n, name_);
  buf_.append(p, n);
  return {};
}

Status FdWriter::flush() {
  if (buf_.empty())
    return {};
  Status s = write_all(fd_, buf_.data(), buf_.size(), name_);
  buf_.clear();
  return s;
}

Result<std::unique_ptr<FdReader>> open_input(const std::string& path) {
  if (path == "-")
    return std::make_unique<FdReader>(0, "standard input");
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0)
    return sys_error("cannot open", path, errno);
  struct stat st;
  if (::fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
    ::close(fd);
    return sys_error("cannot read", path, EISDIR);
  }
  return std::make_unique<FdReader>(Fd(fd), path);
}

std::string temp_prefix(const std::string& path) {
  auto slash = path.rfind('/');
  std::string dir = slash == std::string::npos ? "" : path.substr(0, slash + 1);
  std::string base = slash == std::string::npos ? path : path.substr(slash + 1);
  return dir + "." + base + ".tmp.";
}

namespace {

// temp_prefix(path) and random characters; nothing is created.
std::string temp_name_beside(const std::string& path) {
  return temp_prefix(path) + random_name(8);
}

// Creates "DIR/.NAME.tmp.XXXXXX" beside path.
Result<std::pair<Fd, std::string>> make_temp_beside(const std::string& path) {
  std::string tmpl = temp_prefix(path) + "XXXXXX";
  int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
  if (fd < 0)
    return sys_error("cannot create a temporary file for", path, errno);
  return std::make_pair(Fd(fd), tmpl);
}

// Where an output named `path` goes. A regular file (or none yet) is
// replaced by a temporary file renamed over it; through a symbolic link,
// the file it points to is (the link stays). A device, FIFO or socket is
// written in place: renaming over /dev/null would replace the device.
struct OutputTarget {
  bool direct = false;  // open and write `path` itself
  std::string final;    // else: the file the temporary one is renamed to
};

Result<OutputTarget> output_target(const std::string& path) {
  if (path.empty())
    return Error("an empty file name to write to", kExitUsage);
  struct stat st, lst;
  if (::stat(path.c_str(), &st) != 0) {
    if (errno == ENOENT && ::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode))
      return Error("cannot write to '" + path + "': a symbolic link to a file that does not exist",
                   kExitFailure);
    if (errno != ENOENT)
      return sys_error("cannot write to", path, errno);
    return OutputTarget{false, path};
  }
  if (S_ISDIR(st.st_mode))
    return sys_error("cannot write to", path, EISDIR);
  if (!S_ISREG(st.st_mode))
    return OutputTarget{true, path};
  if (::lstat(path.c_str(), &lst) == 0 && S_ISLNK(lst.st_mode)) {
    char* real = ::realpath(path.c_str(), nullptr);
    if (real == nullptr)
      return sys_error("cannot resolve", path, errno);
    std::string r(real);
    std::free(real);
    return OutputTarget{false, r};
  }
  return OutputTarget{false, path};
}

Result<Fd> open_direct(const std::string& path) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CLOEXEC | O_NOCTTY);
  if (fd < 0)
    return sys_error("cannot open", path, errno);
  return Fd(fd);
}

mode_t current_umask() {
  mode_t m = ::umask(0);
  ::umask(m);
  return m;
}

// Creates a named temporary file beside `path` holding what `fd` holds
// (read from its start), synced; its name.
Result<std::string> copy_beside(int fd, const std::string& path) {
  CM_ASSIGN(auto tmp, make_temp_beside(path));
  std::vector<char> buf(1 << 20);
  off_t at = 0;
  Status s;
  for (;;) {
    ssize_t n = ::pread(fd, buf.data(), buf.size(), at);
    if (n < 0 && errno == EINTR)
      continue;
    if (n < 0) {
      s = sys_error("cannot read back the output for", path, errno);
      break;
    }
    if (n == 0)
      break;
    s = write_all(tmp.first.get(), buf.data(), static_cast<size_t>(n), path);
    if (!s.ok())
      break;
    at += n;
  }
  if (s.ok() && (::fchmod(tmp.first.get(), 0666 & ~current_umask()) != 0 || ::fsync(tmp.first.get()) != 0))
    s = sys_error("cannot write", path, errno);
  if (!s.ok()) {
    ::unlink(tmp.second.c_str());
    return s.error();
  }
  return tmp.second;
}

}  // namespace

Result<std::unique_ptr<Output>> Output::open(const std::string& path) {
  std::unique_ptr<Output> out(new Output());
  out->path_ = path;
  if (path == "-") {
    out->writer_ = std::make_unique<FdWriter>(1, "standard output");
    return out;
  }
  CM_ASSIGN(OutputTarget t, output_target(path));
  if (t.direct) {
    CM_ASSIGN(out->fd_, open_direct(path));
    out->direct_ = true;
  } else {
    out->final_ = t.final;
    // An unnamed file in the target's directory (O_TMPFILE): a run killed
    // by any signal, even SIGKILL, leaves nothing behind; it gets a name
    // only at commit. A file system without O_TMPFILE: a named temporary.
    auto slash = t.final.rfind('/');
    std::string dir = slash == std::string::npos ? "." : slash == 0 ? "/" : t.final.substr(0, slash);
    // (Named at commit through /proc/self/fd: without /proc, a named
    // temporary file from the start.)
    int fd =
        ::access("/proc/self/fd", X_OK) == 0 ? ::open(dir.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600) : -1;
    if (fd >= 0) {
      out->fd_ = Fd(fd);
    } else {
      CM_ASSIGN(auto tmp, make_temp_beside(t.final));
      out->fd_ = std::move(tmp.first);
      out->tmp_ = std::move(tmp.second);
    }
  }
  out->writer_ = std::make_unique<FdWriter>(out->fd_.get(), path);
  return out;
}

Output::~Output() {
  if (!committed_ && !tmp_.empty())
    ::unlink(tmp_.c_str());
}

Status Output::sync() {
  CM_TRY(writer_->flush());
  if (path_ == "-" || direct_)
    return {};
  if (::fchmod(fd_.get(), 0666 & ~current_umask()) != 0)
    return sys_error("cannot set the mode of", path_, errno);
  if (::fsync(fd_.get()) != 0)
    return sys_error("cannot write", path_, errno);
  return {};
}

Status Output::commit() {
  if (direct_) {
    CM_TRY(sync());
    committed_ = true;
    return {};
  }
  return commit_as(final_);
}

Status Output::commit_as(const std::string& final_path) {
  CM_TRY(sync());
  if (path_ == "-") {
    committed_ = true;
    return {};
  }
  if (direct_)
    return Error("cannot write '" + final_path + "': '" + path_ +
                     "' is not a regular file, and this output needs one per part",
                 kExitUsage);
  if (tmp_.empty()) {
    // Unnamed: a name beside the final one first (linkat through /proc,
    // which needs no privilege), then the rename over it.
    std::string proc = "/proc/self/fd/" + std::to_string(fd_.get());
    for (int attempt = 0; tmp_.empty(); attempt++) {
      std::string name = temp_name_beside(final_path);
      if (::linkat(AT_FDCWD, proc.c_str(), AT_FDCWD, name.c_str(), AT_SYMLINK_FOLLOW) == 0) {
        tmp_ = name;
      } else if (errno == EXDEV) {
        // Another file system (a part named beside a symlink whose file is
        // elsewhere): a copy there.
        CM_ASSIGN(tmp_, copy_beside(fd_.get(), final_path));
      } else if (errno != EEXIST || attempt == 9) {
        return sys_error("cannot give a name to the output for", final_path, errno);
      }
    }
  }
  if (::rename(tmp_.c_str(), final_path.c_str()) != 0)
    return sys_error("cannot rename a temporary file to", final_path, errno);
  committed_ = true;
  return {};
}

Result<TempBeside> write_temp_beside(const std::string& path, std::string_view data, unsigned mode) {
  CM_ASSIGN(auto tmp, make_temp_beside(path));
  Status s = write_all(tmp.first.get(), data.data(), data.size(), path);
  if (s.ok() && ::fchmod(tmp.first.get(), mode) != 0)
    s = sys_error("cannot set the mode of", path, errno);
  if (!s.ok()) {
    ::unlink(tmp.second.c_str());
    return std::move(s).error();
  }
  return TempBeside{std::move(tmp.first), std::move(tmp.second)};
}

Status write_file_atomic(const std::string& path, std::string_view data, unsigned mode, Fd* unsynced) {
  // Our own files (state, lists, manifests): a device is written in place,
  // but a symbolic link is replaced, not followed: daemons running as root
  // write these in directories others may write to.
  if (path.empty())
    return Error("an empty file name to write to", kExitUsage);
  struct stat st;
  if (::lstat(path.c_str(), &st) == 0) {
    if (S_ISDIR(st.st_mode))
      return sys_error("cannot write to", path, EISDIR);
    if (!S_ISREG(st.st_mode) && !S_ISLNK(st.st_mode)) {
      CM_ASSIGN(Fd fd, open_direct(path));
      return write_all(fd.get(), data.data(), data.size(), path);
    }
  }
  CM_ASSIGN(auto tmp, make_temp_beside(path));
  Fd fd = std::move(tmp.first);
  const std::string& name = tmp.second;
  Status s = write_all(fd.get(), data.data(), data.size(), path);
  if (s.ok() && ::fchmod(fd.get(), mode) != 0)
    s = sys_error("cannot set the mode of", path, errno);
  if (s.ok() && unsynced == nullptr && ::fsync(fd.get()) != 0)
    s = sys_error("cannot write", path, errno);
  if (s.ok() && ::rename(name.c_str(), path.c_str()) != 0)
    s = sys_error("cannot rename a temporary file to", path, errno);
  if (!s.ok()) {
    ::unlink(name.c_str());
    return s;
  }
  if (unsynced != nullptr)
    *unsynced = std::move(fd);
  return s;
}

}  // namespace cm

namespace cm {

Result<TempFile> TempFile::create() {
  return TempFile();
}

Status TempFile::spill() {
  const char* dir = std::getenv("TMPDIR");
  std::string base = dir != nullptr && *dir ? dir : "/tmp";
  int fd = ::open(base.c_str(), O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (fd < 0) {
    std::string tmpl = base + "/cm-tmp.XXXXXX";
    fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0)
      return sys_error("cannot create a temporary file in", base, errno);
    ::unlink(tmpl.c_str());
  }
  fd_.reset(fd);
  writer_ = std::make_unique<FdWriter>(fd, "temporary file in " + base);
  CM_TRY(writer_->write(mem_.data(), mem_.size()));
  std::string().swap(mem_);
  return {};
}

Status TempFile::write(const void* p, size_t n) {
  if (!writer_) {
    if (mem_.size() + n <= kInMemory) {
      mem_.append(static_cast<const char*>(p), n);
      size_ += n;
      return {};
    }
    CM_TRY(spill());
  }
  size_ += n;
  return writer_->write(p, n);
}

Result<size_t> TempFile::pread(void* p, size_t n, uint64_t offset) {
  if (!writer_) {
    if (offset >= mem_.size())
      return size_t{0};
    size_t k = std::min<size_t>(n, mem_.size() - static_cast<size_t>(offset));
    std::memcpy(p, mem_.data() + offset, k);
    return k;
  }
  CM_TRY(writer_->flush());
  for (;;) {
    ssize_t got = ::pread(fd_.get(), p, n, static_cast<off_t>(offset));
    if (got >= 0)
      return static_cast<size_t>(got);
    if (errno != EINTR)
      return sys_error("cannot read", "temporary file", errno);
  }
}

Status TempFile::clear() {
  size_ = 0;
  mem_.clear();
  if (!writer_)
    return {};
  CM_TRY(writer_->flush());
  if (::ftruncate(fd_.get(), 0) != 0 || ::lseek(fd_.get(), 0, SEEK_SET) < 0)
    return sys_error("cannot truncate", "temporary file", errno);
  return {};
}

Status TempFile::copy_to(Writer& out, uint64_t offset, uint64_t n) {
  // One buffer per thread, not a zeroed one per call (32% of a small build).
  thread_local Buffer storage(256 * 1024);
  std::span<char> buf(storage.data(), 256 * 1024);
  while (n > 0) {
    CM_ASSIGN(size_t got, pread(buf.data(), static_cast<size_t>(std::min<uint64_t>(n, buf.size())), offset));
    if (got == 0)
      return Error("temporary file is shorter than expected");
    CM_TRY(out.write(buf.data(), got));
    offset += got;
    n -= got;
  }
  return {};
}

}  // namespace cm
