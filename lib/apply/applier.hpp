// Carrying out file operations (from a delta table or an assignment) on a
// directory.
//
// The target starts as a clone of BASE (clone_tree: directories copied,
// files hard-linked, symlinks recreated) and is turned into NEW operation
// by operation. BASE is only read. Because target files may share their inode with
// BASE, the applier never changes an existing file in place: every written,
// patched, copied or re-moded file is a new file renamed over the old name.
//
// Every path is resolved beneath its root without following symlinks
// (openat2 RESOLVE_BENEATH|RESOLVE_NO_SYMLINKS), so an entry can never
// reach outside the target or through a symlink planted in it.
#pragma once

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <functional>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "assign/format.hpp"
#include "delta/table.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::apply {

enum class Kind : uint8_t { Mkdir, Put, Patch, Copy, CopyNew, Symlink, Remove, Rmdir, Chmod };

// One operation, whatever it came from. Results are checked against a
// prefix of their SHA-256 (all of it from a delta table, 16 bytes from an
// assignment), a patch's basis likewise.
struct Op {
  Kind kind = Kind::Mkdir;
  std::string path;
  std::string source;  // patch: the basis (in BASE); copy: BASE; copy-new: target
  std::string target;  // symlink
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  uint64_t size = 0;        // of the result
  uint64_t length = 0;      // data bytes it takes (put: size; patch: the delta)
  std::string check;        // prefix of the result's SHA-256
  std::string basis_check;  // prefix of the basis's SHA-256
  delta::DeltaFormat format = delta::DeltaFormat::Rsync;

  bool takes_data() const { return kind == Kind::Put || kind == Kind::Patch; }
};

Op from_entry(const delta::Entry& e);
Op from_command(const assign::Command& c);

// What an Applier changed in the target, relative paths: directories whose
// entries or mode changed, and files written or re-moded.
struct Changed {
  std::set<std::string> dirs;
  std::vector<std::string> inodes;
  bool bulk = false;  // whole subtrees too: sync the file system instead
};

// Makes files and directories durable on a few threads while the caller
// goes on: each fsync waits for its own write and the disk's cache flush,
// and the disk takes several at once together (a 29-file publish synced
// file by file spent a fifth of its time there).
class Syncer {
 public:
  explicit Syncer(size_t threads = 8) : threads_(std::max<size_t>(threads, 1)) {}
  ~Syncer() { (void)finish(); }
  Syncer(const Syncer&) = delete;
  Syncer& operator=(const Syncer&) = delete;

  // fsyncs `fd` (and closes it) soon; `name` is for the error. Waits while
  // many are queued, so open descriptors stay few.
  void add(Fd fd, std::string name);
  // Waits for everything added; the first failure, if any.
  Status finish();

 private:
  void work();
  // fsyncs and closes `fd`, keeping the first failure; without mu_ held.
  void sync(Fd fd, const std::string& name);

  size_t threads_;
  std::vector<std::thread> pool_;
  std::mutex mu_;
  std::condition_variable more_, room_;
  std::deque<std::pair<Fd, std::string>> queue_;
  size_t busy_ = 0;
  bool done_ = false;
  Status first_;
};

struct ApplyOptions {
  bool fsync = false;  // fsync every written file before renaming it
  // A directory (on the target's filesystem) for files being written, so
  // that a killed run leaves no half-written file inside the target; -1:
  // beside the final name.
  int scratch_dir = -1;
  // The target is thrown away whenever a run stops before the end (one
  // part, on a tree this run made): files are written at their names
  // (what was there unlinked first), with no temporary name to rename.
  bool direct = false;
  // Note what changed here (for sync_changed()), and start each written
  // file's write-back before it is renamed, so that syncing them later has
  // little to wait for.
  Changed* track = nullptr;
  // With track: written files go here to be synced right away, and are
  // not listed in track->inodes.
  Syncer* syncer = nullptr;
};

// An Applier may carry out operations on several threads at once, as long
// as they are independent (see Parallel).
class Applier {
 public:
  // Borrowed descriptors of the BASE and target directories.
  Applier(int base_dir, int target_dir, std::string target_name, ApplyOptions opt = {})
      : base_(base_dir), target_(target_dir), name_(std::move(target_name)), opt_(opt) {}

  // Carries out one operation; `data` supplies a file's bytes or a patch's
  // delta (exactly op.length bytes) and is unused by other operations.
  Status apply(const Op& op, Reader* data);
  uint64_t bytes_written() const { return written_.load(); }

 private:
  // Creates a new file beside `name` from what fill() writes, checks its
  // size and hash against e, sets mode and mtime, renames it over `name`.
  // `vouch`, if given, runs once the bytes are written (or could not be)
  // and before they are judged: a failure it returns wins over any other
  // (a patch's basis, checked meanwhile on another thread).
  Status make_file(int dir, const std::string& name, const Op& op, const std::function<Status(Writer&)>& fill,
                   const char* what, const std::function<Status()>& vouch = {});
  // Direct: unlinks what is at `name` (nothing there is fine), so that the
  // new file or symlink is created in its place.
  Status make_way(int dir, const std::string& name, const std::string& path);
  Status patch(int dir, const std::string& name, const Op& op, Reader& delta);
  Status copy(int dir, const std::string& name, const Op& op);
  Status chmod(int dir, const std::string& name, const Op& op);
  std::string where(const std::string& rel) const;
  int scratch(int dir) const { return opt_.scratch_dir >= 0 ? opt_.scratch_dir : dir; }

  int base_;
  int target_;
  std::string name_;
  ApplyOptions opt_;
  std::atomic<uint64_t> written_{0};
  std::mutex track_mu_;  // opt_.track
};

// Carries out operations in their order, except that the files written
// from data in memory (puts and patches with at most kMaxBytes of data) are
// made on two threads, beside each other and beside what comes next: one
// file's decoding, hashing and writing overlaps another's. Any other
// operation (a directory made, a removal, a copy from the target ...), and
// any on a path still being written, waits until every file queued before
// it is done, so that each operation sees what came before it.
class Parallel {
 public:
  static constexpr uint64_t kMaxBytes = uint64_t{1} << 20;

  // With no threads, every operation runs on the calling thread, its data
  // streamed as it comes.
  Parallel(Applier& applier, size_t threads) : applier_(applier), threads_(threads) {}
  // Waits for the files being written; drops those queued.
  ~Parallel();
  Parallel(const Parallel&) = delete;
  Parallel& operator=(const Parallel&) = delete;

  struct Failure {
    uint64_t index = 0;
    const char* what = "";  // as given to apply()
    std::string path;
    Error error;
  };
  // Carries out (or queues) operation number `index`; `data` supplies a
  // put's or a patch's op.length bytes; `what` (a string that lives as
  // long) names the operation in a failure. A failure, this operation's or
  // an earlier queued one's, ends the run: the one returned is the
  // earliest by index, once nothing is being written any more. (Files
  // queued after it may have been written: a failed run's tree is not
  // used.)
  std::optional<Failure> apply(uint64_t index, Op op, Reader* data, const char* what);
  // Waits for everything queued; the earliest failure, if any.
  std::optional<Failure> finish();
  // The data (op.length) of the puts and patches done.
  uint64_t data_bytes();

 private:
  struct Job {
    uint64_t index;
    const char* what;
    Op op;
    std::string data;
    std::string from;  // the data's name, for errors
  };
  // `f`, unless one queued before it failed too.
  std::optional<Failure> earliest(Failure f);
  void work();

  Applier& applier_;
  size_t threads_;
  std::vector<std::thread> pool_;
  std::mutex mu_;
  std::condition_variable more_, idle_, room_;
  std::deque<Job> queue_;
  std::set<std::string> busy_;  // paths queued or being written
  size_t pending_ = 0;          // jobs queued or being written
  uint64_t data_bytes_ = 0;
  bool done_ = false;
  std::optional<Failure> first_;
};

// Makes what `changed` lists under `root` durable: fsync of every file and
// directory it names and of root itself, all through `syncer`; returns
// once everything `syncer` was given is done.
Status sync_changed(int root, const Changed& changed, const std::string& root_name, Syncer& syncer);

// Makes `target` (an empty directory) a clone of `base`: directories copied
// with their modes, regular files hard-linked (copied across filesystems),
// symlinks recreated. Special files are skipped.
Status clone_tree(int base_dir, int target_dir, const std::string& base_name);

}  // namespace cm::apply
