// Helpers for tests on real directories: temporary trees, writing files,
// comparing trees, random trees.
#pragma once

#include <cstdint>
#include <random>
#include <string>
#include <vector>

namespace cm::test {

// A temporary directory, removed with everything in it at the end.
class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string operator/(const std::string& rel) const { return path_ + "/" + rel; }

 private:
  std::string path_;
};

void write_file(const std::string& path, const std::string& data, unsigned mode = 0644);
std::string read_file(const std::string& path);
void make_dir(const std::string& path, unsigned mode = 0755);
void make_symlink(const std::string& target, const std::string& path);
void set_mtime(const std::string& path, int64_t sec);
void remove_all(const std::string& path);
void copy_tree(const std::string& from, const std::string& to);

// Differences between two trees (types, modes, contents, symlink targets),
// one line each; empty when identical.
std::vector<std::string> tree_diff(const std::string& a, const std::string& b);

// A listing of a tree: path, type, mode, and content hash or link target.
std::string tree_listing(const std::string& root);

// n pseudo-random bytes, the same for the same seed.
std::string random_bytes(size_t n, uint64_t seed);

// Random trees for property tests.
class RandomTree {
 public:
  explicit RandomTree(uint64_t seed) : rng_(seed) {}
  // Creates a random tree under root (which must exist).
  void make(const std::string& root, int files);
  // Changes a copy of a tree at random: edits, appends, deletions, renames,
  // mode changes, type changes, new symlinks, new directories.
  void mutate(const std::string& root, int changes);
  std::string random_name();
  std::string random_content(size_t max);

 private:
  std::vector<std::string> list(const std::string& root, bool files_only);
  std::mt19937_64 rng_;
};

}  // namespace cm::test
