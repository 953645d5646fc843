// The shadow manifest: SHA-256 of every regular file of the shadow copy,
// keyed by path and stamped with the file's size, mtime, ctime and inode,
// so cm-delta does not re-read an unchanged shadow on every run. It is a
// cache: a missing, stale or damaged manifest costs time, never
// correctness. Layout in cm-delta(5).
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>

#include "fs/tree.hpp"
#include "util/hash.hpp"
#include "util/result.hpp"

namespace cm::delta {

inline constexpr char kManifestMagic[8] = {'C', 'M', 'M', 'A', 'N', 'I', 'F', '\n'};
inline constexpr uint64_t kManifestVersion = 1;

struct ManifestEntry {
  uint64_t size = 0;
  int64_t mtime_ns = 0;
  int64_t ctime_ns = 0;
  uint64_t ino = 0;
  Digest hash{};
};

class Manifest {
 public:
  // Parses a manifest; an Error (kExitBadInput) says what is wrong.
  static Result<Manifest> parse(std::string_view bytes, const std::string& name);
  // Loads from a file; a missing file is an empty manifest.
  static Result<Manifest> load(const std::string& path);

  // The cached hash when the stamp still matches the file.
  std::optional<Digest> lookup(const std::string& path, const fs::Stat& st) const;
  // Records a hash computed now. Files changed within the last two seconds
  // are not cached: a change in the same clock tick would go unnoticed.
  void record(const std::string& path, const fs::Stat& st, const Digest& hash, int64_t now_ns);
  // Keeps only the entries for which keep(path) is true.
  template <class F>
  void retain(F&& keep) {
    for (auto it = entries_.begin(); it != entries_.end();) {
      if (keep(it->first)) {
        ++it;
      } else {
        it = entries_.erase(it);
        changed_ = true;
      }
    }
  }

  std::string serialize() const;
  Status save(const std::string& path) const;
  bool changed() const { return changed_; }
  size_t size() const { return entries_.size(); }

 private:
  std::map<std::string, ManifestEntry> entries_;
  bool changed_ = false;
};

}  // namespace cm::delta

namespace cm::delta {
// Where the manifest of a shadow copy lives by default: beside it, as
// "<shadow>.cm-manifest" (absolute path; empty for "/").
std::string default_manifest_path(const std::string& shadow);
}  // namespace cm::delta
