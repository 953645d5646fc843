#include "fs/tree.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "util/text.hpp"

namespace cm::fs {

const char* type_name(Type t) {
  switch (t) {
    case Type::Regular: return "file";
    case Type::Directory: return "directory";
    case Type::Symlink: return "symlink";
    case Type::Special: return "special file";
  }
  return "?";
}

std::string Tree::display(const std::string& rel) const {
  if (rel.empty())
    return root();
  if (!root().empty() && root().back() == '/')
    return root() + rel;
  return root() + "/" + rel;
}

std::string parent_of(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? std::string() : rel.substr(0, slash);
}

std::string name_of(const std::string& rel) {
  size_t slash = rel.rfind('/');
  return slash == std::string::npos ? rel : rel.substr(slash + 1);
}

Result<std::string> read_link_at(int dir, const std::string& name, const std::string& display) {
  std::string target(4096, '\0');
  ssize_t len = ::readlinkat(dir, name.c_str(), target.data(), target.size());
  if (len < 0)
    return sys_error("cannot read symlink", display, errno);
  target.resize(static_cast<size_t>(len));
  return target;
}

bool path_less(const std::string& a, const std::string& b) {
  size_t n = std::min(a.size(), b.size());
  for (size_t i = 0; i < n; i++) {
    auto ca = static_cast<unsigned char>(a[i]);
    auto cb = static_cast<unsigned char>(b[i]);
    if (ca == cb)
      continue;
    if (ca == '/')
      return true;
    if (cb == '/')
      return false;
    return ca < cb;
  }
  return a.size() < b.size();
}

bool is_safe_relative_path(std::string_view p) {
  if (p.empty() || p.size() > 4096)
    return false;
  size_t start = 0;
  for (;;) {
    size_t end = p.find('/', start);
    std::string_view comp = p.substr(start, end == std::string_view::npos ? p.size() - start : end - start);
    if (comp.empty() || comp == "." || comp == ".." || comp.size() > 255)
      return false;
    if (end == std::string_view::npos)
      break;
    start = end + 1;
  }
  return p.find('\0') == std::string_view::npos;
}

namespace {

Stat from_stat(const struct stat& s) {
  Stat st;
  if (S_ISREG(s.st_mode))
    st.type = Type::Regular;
  else if (S_ISDIR(s.st_mode))
    st.type = Type::Directory;
  else if (S_ISLNK(s.st_mode))
    st.type = Type::Symlink;
  else
    st.type = Type::Special;
  st.mode = s.st_mode & 07777;
  st.size = static_cast<uint64_t>(s.st_size);
  st.mtime_ns = static_cast<int64_t>(s.st_mtim.tv_sec) * 1000000000 + s.st_mtim.tv_nsec;
  st.ctime_ns = static_cast<int64_t>(s.st_ctim.tv_sec) * 1000000000 + s.st_ctim.tv_nsec;
  st.ino = s.st_ino;
  st.dev = s.st_dev;
  return st;
}

}  // namespace

int open_beneath(int root, const std::string& rel, int flags) {
  const char* p = rel.empty() ? "." : rel.c_str();
  struct open_how how;
  std::memset(&how, 0, sizeof how);
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC | O_NOFOLLOW);
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS;
  long fd = ::syscall(SYS_openat2, root, p, &how, sizeof how);
  if (fd >= 0 || errno != ENOSYS)
    return static_cast<int>(fd);
  // No openat2: walk one component at a time, refusing symlinks and "..".
  if (rel.empty())
    return ::openat(root, ".", flags | O_CLOEXEC | O_NOFOLLOW);
  int dir = root;
  size_t start = 0;
  for (;;) {
    size_t end = rel.find('/', start);
    std::string comp = rel.substr(start, end == std::string::npos ? std::string::npos : end - start);
    if (comp.empty() || comp == "." || comp == "..") {
      if (dir != root)
        ::close(dir);
      errno = EXDEV;
      return -1;
    }
    bool last = end == std::string::npos;
    int sub = ::openat(dir, comp.c_str(), (last ? flags : O_RDONLY | O_DIRECTORY) | O_CLOEXEC | O_NOFOLLOW);
    int e = errno;
    if (dir != root)
      ::close(dir);
    if (sub < 0) {
      errno = e;
      return -1;
    }
    if (last)
      return sub;
    dir = sub;
    start = end + 1;
  }
}

namespace {

class DiskFile : public File {
 public:
  DiskFile(Fd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {
    ::posix_fadvise(fd_.get(), 0, 0, POSIX_FADV_SEQUENTIAL);
  }
  Result<size_t> read(void* buf, size_t n) override {
    for (;;) {
      ssize_t got = ::read(fd_.get(), buf, n);
      if (got >= 0)
        return static_cast<size_t>(got);
      if (errno != EINTR)
        return sys_error("cannot read", name_, errno);
    }
  }
  Result<size_t> pread(void* buf, size_t n, uint64_t offset) override {
    for (;;) {
      ssize_t got = ::pread(fd_.get(), buf, n, static_cast<off_t>(offset));
      if (got >= 0)
        return static_cast<size_t>(got);
      if (errno != EINTR)
        return sys_error("cannot read", name_, errno);
    }
  }
  Result<Stat> stat() override {
    struct stat s;
    if (::fstat(fd_.get(), &s) != 0)
      return sys_error("cannot stat", name_, errno);
    return from_stat(s);
  }
  const std::string& name() const override { return name_; }

 private:
  Fd fd_;
  std::string name_;
};

class DiskTree : public Tree {
 public:
  DiskTree(Fd root_fd, std::string root) : fd_(std::move(root_fd)), root_(std::move(root)) {}

  const std::string& root() const override { return root_; }
  bool thread_safe() const override { return true; }

  Result<Stat> stat(const std::string& rel) override {
    struct stat s;
    if (::fstatat(fd_.get(), rel.empty() ? "." : rel.c_str(), &s, AT_SYMLINK_NOFOLLOW) != 0)
      return missing_or(errno, "cannot stat", rel);
    return from_stat(s);
  }

  Result<std::vector<DirEntry>> list(const std::string& rel) override {
    int fd = open_beneath(fd_.get(), rel, O_RDONLY | O_DIRECTORY);
    if (fd < 0)
      return missing_or(errno, "cannot open directory", rel);
    DIR* d = ::fdopendir(fd);
    if (d == nullptr) {
      int e = errno;
      ::close(fd);
      return sys_error("cannot open directory", display(rel), e);
    }
    std::vector<DirEntry> out;
    for (;;) {
      errno = 0;
      struct dirent* de = ::readdir(d);
      if (de == nullptr) {
        if (errno != 0) {
          int e = errno;
          ::closedir(d);
          return sys_error("cannot read directory", display(rel), e);
        }
        break;
      }
      if (std::strcmp(de->d_name, ".") == 0 || std::strcmp(de->d_name, "..") == 0)
        continue;
      struct stat s;
      if (::fstatat(::dirfd(d), de->d_name, &s, AT_SYMLINK_NOFOLLOW) != 0) {
        int e = errno;
        ::closedir(d);
        return missing_or(e, "cannot stat", join(rel, de->d_name));
      }
      out.push_back(DirEntry{de->d_name, from_stat(s)});
    }
    ::closedir(d);
    return out;
  }

  Result<std::string> readlink(const std::string& rel) override {
    std::string buf(4096, '\0');
    ssize_t n = ::readlinkat(fd_.get(), rel.c_str(), buf.data(), buf.size());
    if (n < 0)
      return missing_or(errno, "cannot read symlink", rel);
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  Result<std::unique_ptr<File>> open(const std::string& rel) override {
    int fd = open_beneath(fd_.get(), rel, O_RDONLY);
    if (fd < 0)
      return missing_or(errno, "cannot open", rel);
    return std::unique_ptr<File>(new DiskFile(Fd(fd), display(rel)));
  }

 private:
  // A path that disappeared between listing and use changed under us.
  Error missing_or(int err, const char* what, const std::string& rel) const {
    if (err == ENOENT || err == ENOTDIR || err == ELOOP || err == EXDEV)
      return Error(show_path(display(rel)) + " vanished or changed type during the scan", kExitChanged);
    return sys_error(what, display(rel), err);
  }

  Fd fd_;
  std::string root_;
};

}  // namespace

namespace {
class EmptyTree : public Tree {
 public:
  explicit EmptyTree(std::string name) : name_(std::move(name)) {}
  const std::string& root() const override { return name_; }
  Result<Stat> stat(const std::string& rel) override {
    if (!rel.empty())
      return missing(rel);
    Stat st;
    st.type = Type::Directory;
    st.mode = 0755;
    return st;
  }
  Result<std::vector<DirEntry>> list(const std::string& rel) override {
    if (!rel.empty())
      return missing(rel);
    return std::vector<DirEntry>();
  }
  Result<std::string> readlink(const std::string& rel) override { return missing(rel); }
  Result<std::unique_ptr<File>> open(const std::string& rel) override { return missing(rel); }

 private:
  Error missing(const std::string& rel) const {
    return Error(show_path(display(rel)) + " vanished or changed type during the scan", kExitChanged);
  }
  std::string name_;
};
}  // namespace

Status remove_tree_at(int dir, const std::string& name, const std::string& display) {
  if (::unlinkat(dir, name.c_str(), 0) == 0 || errno == ENOENT)
    return {};
  if (errno != EISDIR && errno != EPERM)
    return sys_error("cannot remove", display, errno);
  Fd fd(::openat(dir, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!fd.valid()) {
    if (errno == ENOENT)
      return {};
    return sys_error("cannot open directory", display, errno);
  }
  CM_TRY(empty_dir(fd.get(), display));
  fd.reset();
  if (::unlinkat(dir, name.c_str(), AT_REMOVEDIR) != 0 && errno != ENOENT)
    return sys_error("cannot remove", display, errno);
  return {};
}

Result<std::vector<std::string>> list_names(int dir, const std::string& display) {
  // Its own descriptor: readdir moves the offset, and closedir closes it.
  int fd = ::openat(dir, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0)
    return sys_error("cannot open directory", display, errno);
  DIR* d = ::fdopendir(fd);
  if (d == nullptr) {
    int err = errno;
    ::close(fd);
    return sys_error("cannot open directory", display, err);
  }
  std::vector<std::string> names;
  int err = 0;
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr) {
      err = errno;
      break;
    }
    if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0)
      names.emplace_back(de->d_name);
  }
  ::closedir(d);
  if (err != 0)
    return sys_error("cannot read directory", display, err);
  return names;
}

Status empty_dir(int dir, const std::string& display) {
  CM_ASSIGN(std::vector<std::string> names, list_names(dir, display));
  for (const std::string& n : names)
    CM_TRY(remove_tree_at(dir, n, display + "/" + n));
  return {};
}

std::unique_ptr<Tree> empty_tree(std::string name) {
  return std::make_unique<EmptyTree>(std::move(name));
}

Result<std::unique_ptr<Tree>> open_disk_tree(const std::string& root) {
  int fd = ::open(root.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) {
    int e = errno;
    if (e == ENOTDIR)
      return Error("'" + root + "' is not a directory", kExitFailure);
    return sys_error("cannot open directory", root, e);
  }
  return std::unique_ptr<Tree>(new DiskTree(Fd(fd), root));
}

}  // namespace cm::fs
