// Carrying out delta table entries on a directory.
//
// The target starts as a clone of BASE (clone_tree: directories copied,
// files hard-linked, symlinks recreated) and is turned into NEW entry by
// entry. BASE is only read. Because target files may share their inode with
// BASE, the applier never changes an existing file in place: every written,
// patched, copied or re-moded file is a new file renamed over the old name.
//
// Every path is resolved beneath its root without following symlinks
// (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so an entry can never
// reach outside the target or through a symlink planted in it.
#pragma once

#include <functional>
#include <string>

#include "delta/table.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::delta {

struct ApplyOptions {
  bool fsync = false;  // fsync every written file before renaming it
};

class Applier {
 public:
  // Borrowed descriptors of the BASE and target directories.
  Applier(int base_dir, int target_dir, std::string target_name, ApplyOptions opt = {})
      : base_(base_dir), target_(target_dir), name_(std::move(target_name)), opt_(opt) {}

  // Carries out one entry; `data` supplies a file's bytes or a patch's delta
  // (exactly e.data_size bytes) and is unused by other entries.
  Status apply(const Entry& e, Reader* data);
  uint64_t bytes_written() const { return written_; }

 private:
  // Creates a new file beside `name` from what fill() writes, checks its
  // size and hash against e, sets mode and mtime, renames it over `name`.
  Status make_file(int dir, const std::string& name, const Entry& e,
                   const std::function<Status(Writer&)>& fill, const char* what);
  Status patch(int dir, const std::string& name, const Entry& e, Reader& delta);
  Status copy(int dir, const std::string& name, const Entry& e);
  Status chmod(int dir, const std::string& name, const Entry& e);
  std::string where(const std::string& rel) const;

  int base_;
  int target_;
  std::string name_;
  ApplyOptions opt_;
  uint64_t written_ = 0;
};

// Reads the data of the current entry of a TableReader.
class EntryData : public Reader {
 public:
  explicit EntryData(TableReader& t, std::string name) : t_(t), name_(std::move(name)) {}
  Result<size_t> read(void* buf, size_t n) override { return t_.read_data(buf, n); }
  const std::string& name() const override { return name_; }

 private:
  TableReader& t_;
  std::string name_;
};

// Makes `target` (an empty directory) a clone of `base`: directories copied
// with their modes, regular files hard-linked (copied across filesystems),
// symlinks recreated. Special files are skipped.
Status clone_tree(int base_dir, int target_dir, const std::string& base_name);

}  // namespace cm::delta
