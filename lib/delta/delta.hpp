// Comparing the shadow copy (BASE) with the staging tree (NEW) and writing
// the delta table that turns one into the other.
#pragma once

#include <cstdint>
#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "delta/manifest.hpp"
#include "delta/table.hpp"
#include "fs/filter.hpp"
#include "fs/tree.hpp"
#include "util/result.hpp"

namespace cm::delta {

// Files smaller than this are always sent whole: a delta cannot save much.
inline constexpr uint64_t kMinDeltaSize = 128;

struct Options {
  bool checksum = false;    // compare every file by content, not size+mtime first
  bool whole_file = false;  // never send librsync deltas
  size_t block_len = 0;     // 0: choose_block_len()
  const fs::Filter* filter = nullptr;
  Manifest* manifest = nullptr;  // BASE's hash cache, read and updated
  int64_t now_ns = 0;            // the clock, for the manifest
  unsigned threads = 2;          // for comparing touched files byte by byte
};

struct Stats {
  uint64_t entries = 0;
  uint64_t dirs_added = 0, dirs_deleted = 0;
  uint64_t files_added = 0, files_changed = 0, files_deleted = 0;
  uint64_t symlinks_added = 0, symlinks_changed = 0, symlinks_deleted = 0;
  uint64_t mode_changes = 0;
  uint64_t sent_whole = 0, sent_patch = 0, sent_copy = 0;
  uint64_t data_bytes = 0;      // bytes of file data and deltas in the table
  uint64_t new_tree_files = 0;  // regular files in NEW
  uint64_t new_tree_bytes = 0;  // their total size
  uint64_t hashed_bytes = 0;    // bytes read to hash or diff
  uint64_t skipped_special = 0;
};

struct Progress {
  const char* phase = "";  // "scanning", "comparing"
  uint64_t scanned = 0;
  uint64_t done = 0, total = 0;
  uint64_t bytes = 0;
};

struct Callbacks {
  std::function<void(const std::string&)> warning;
  std::function<void(const Progress&)> progress;
  std::function<void(const Entry&)> entry;  // each entry, as it is decided
};

// One tree entry as the scan saw it.
struct Node {
  std::string path;
  fs::Stat st;
  std::string link;  // symlink target
};

// Walks a tree depth first, siblings sorted by name bytes (fs::path_less
// order), without following symlinks; skips excluded paths (and the
// contents of excluded directories) and special files (with a warning).
Result<std::vector<Node>> scan(fs::Tree& tree, const fs::Filter* filter, const Callbacks& cb,
                               uint64_t* skipped_special = nullptr);

// Whether a changed file of `new_size` bytes is worth a delta attempt
// against a basis of `basis_size` bytes, and the largest delta worth
// sending instead of the whole file.
bool worth_delta(uint64_t new_size, uint64_t basis_size);
uint64_t delta_limit(uint64_t new_size);

// Compares BASE with NEW. With `out`, writes the whole table (begin ...
// finish); without, only computes what it would contain (a dry run).
Result<Stats> compute(fs::Tree& base, fs::Tree& next, const Options& opt, Sink* out, const Callbacks& cb);

std::string summary_text(const Stats& s);
nlohmann::json summary_json(const Stats& s);

}  // namespace cm::delta
