// A directory tree behind a small interface, so the scanner runs against the
// real disk in programs and against an in-memory tree in tests (which can
// make files vanish or change in the middle of a scan).
//
// Paths are relative to the tree's root, '/'-separated, "" for the root
// itself. Symlinks are never followed below the root.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::fs {

enum class Type : uint8_t { Regular, Directory, Symlink, Special };

const char* type_name(Type t);

struct Stat {
  Type type = Type::Regular;
  uint32_t mode = 0;  // permission bits, 07777
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t ino = 0;
  uint64_t dev = 0;

  bool same_file_version(const Stat& o) const {
    return type == o.type && size == o.size && mtime_ns == o.mtime_ns && ctime_ns == o.ctime_ns &&
           ino == o.ino && dev == o.dev;
  }
};

struct DirEntry {
  std::string name;
  Stat st;
};

// An open regular file.
class File : public Reader {
 public:
  virtual Result<size_t> pread(void* buf, size_t n, uint64_t offset) = 0;
  virtual Result<Stat> stat() = 0;
};

class Tree {
 public:
  virtual ~Tree() = default;
  // The root as the user named it, for messages.
  virtual const std::string& root() const = 0;
  // lstat(2) of a path. Every method reports a path that is missing (it
  // vanished or changed type since it was listed) as an Error with code
  // kExitChanged, naming the path.
  virtual Result<Stat> stat(const std::string& rel) = 0;
  // Entries of a directory, without "." and "..", in no particular order.
  virtual Result<std::vector<DirEntry>> list(const std::string& rel) = 0;
  virtual Result<std::string> readlink(const std::string& rel) = 0;
  virtual Result<std::unique_ptr<File>> open(const std::string& rel) = 0;
  // Whether stat, open and the files it opens may be used from several
  // threads at once (the disk: yes; test fakes that count calls: no).
  virtual bool thread_safe() const { return false; }

  // "ROOT/rel", for messages.
  std::string display(const std::string& rel) const;
};

// The tree at a directory on disk. Fails when it is missing or unreadable.
Result<std::unique_ptr<Tree>> open_disk_tree(const std::string& root);

// A tree with nothing in it: the base of a full copy.
std::unique_ptr<Tree> empty_tree(std::string name);

// Joins a relative path and a name.
inline std::string join(const std::string& dir, const std::string& name) {
  return dir.empty() ? name : dir + "/" + name;
}

// The two halves of a relative path: its directory ("" at the top) and
// its last component. join(parent_of(p), name_of(p)) == p.
std::string parent_of(const std::string& rel);
std::string name_of(const std::string& rel);

// The target of the symlink `name` in directory `dir`; errors name
// `display`.
Result<std::string> read_link_at(int dir, const std::string& name, const std::string& display);

// The order of every cm listing: depth first, siblings sorted by the bytes
// of their names. Equivalent to comparing paths with '/' ranked below every
// other byte, so a directory comes right before its contents.
bool path_less(const std::string& a, const std::string& b);

// Opens `rel` beneath the directory `dir` without following any symlink on
// the way, the last component included (openat2 RESOLVE_BENEATH |
// RESOLVE_NO_SYMLINKS; O_NOFOLLOW on kernels without openat2). "" opens
// `dir` itself. Returns a descriptor or -1 with errno set.
int open_beneath(int dir, const std::string& rel, int flags);

// Removes `name` in directory `dir` and, if it is a directory, everything
// below it, without following symlinks. A missing name is not an error.
Status remove_tree_at(int dir, const std::string& name, const std::string& display);
// Removes everything in the directory open as `dir` (borrowed), the same way.
Status empty_dir(int dir, const std::string& display);
// The names in the directory open as `dir` (borrowed), but "." and "..".
Result<std::vector<std::string>> list_names(int dir, const std::string& display);

// A relative path that cannot leave its root: not empty, no leading or
// trailing '/', no empty, "." or ".." components, no NUL byte; at most
// 4096 bytes, components at most 255.
bool is_safe_relative_path(std::string_view p);

}  // namespace cm::fs
