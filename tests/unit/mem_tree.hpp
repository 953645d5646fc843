// An in-memory fs::Tree for tests: files, directories and symlinks in a
// map, plus hooks that change the tree in the middle of a scan.
#pragma once

#include <atomic>

#include <algorithm>
#include <cstring>
#include <functional>
#include <map>
#include <string>

#include "fs/tree.hpp"

namespace cm::test {

class MemTree : public fs::Tree {
 public:
  struct Node {
    fs::Stat st;
    std::string data;  // file content or symlink target
  };

  explicit MemTree(std::string root = "mem") : root_(std::move(root)) { nodes_[""] = dir_node(0755); }

  void dir(const std::string& path, uint32_t mode = 0755) { nodes_[path] = dir_node(mode); }
  void file(const std::string& path, const std::string& data, uint32_t mode = 0644, int64_t mtime = 1000) {
    Node n;
    n.st.type = fs::Type::Regular;
    n.st.mode = mode;
    n.st.size = data.size();
    n.st.mtime_ns = mtime;
    n.st.ino = next_ino_++;
    n.data = data;
    nodes_[path] = n;
  }
  void symlink(const std::string& path, const std::string& target) {
    Node n;
    n.st.type = fs::Type::Symlink;
    n.st.mode = 0777;
    n.st.size = target.size();
    n.st.ino = next_ino_++;
    n.data = target;
    nodes_[path] = n;
  }
  void special(const std::string& path) {
    Node n;
    n.st.type = fs::Type::Special;
    n.st.ino = next_ino_++;
    nodes_[path] = n;
  }
  void remove(const std::string& path) { nodes_.erase(path); }
  Node& at(const std::string& path) { return nodes_.at(path); }

  // Called with the path before open() returns; may change the tree.
  std::function<void(const std::string&)> on_open;
  // Called with the directory before list() returns its entries.
  std::function<void(const std::string&)> on_list;
  std::atomic<int> opens{0};
  // Claim thread safety (reads only then: no on_open, nodes unchanged).
  bool concurrent = false;

  const std::string& root() const override { return root_; }
  bool thread_safe() const override { return concurrent; }

  Result<fs::Stat> stat(const std::string& rel) override {
    auto it = nodes_.find(rel);
    if (it == nodes_.end())
      return Error("'" + display(rel) + "' vanished or changed type during the scan", kExitChanged);
    return it->second.st;
  }

  Result<std::vector<fs::DirEntry>> list(const std::string& rel) override {
    auto it = nodes_.find(rel);
    if (it == nodes_.end() || it->second.st.type != fs::Type::Directory)
      return Error("'" + display(rel) + "' vanished or changed type during the scan", kExitChanged);
    std::vector<fs::DirEntry> out;
    std::string prefix = rel.empty() ? "" : rel + "/";
    for (auto& [p, n] : nodes_) {
      if (p.empty() || p.compare(0, prefix.size(), prefix) != 0)
        continue;
      std::string rest = p.substr(prefix.size());
      if (rest.empty() || rest.find('/') != std::string::npos)
        continue;
      out.push_back(fs::DirEntry{rest, n.st});
    }
    // Unsorted on purpose: the scanner must sort.
    std::reverse(out.begin(), out.end());
    if (on_list)
      on_list(rel);
    return out;
  }

  Result<std::string> readlink(const std::string& rel) override {
    auto it = nodes_.find(rel);
    if (it == nodes_.end() || it->second.st.type != fs::Type::Symlink)
      return Error("'" + display(rel) + "' vanished or changed type during the scan", kExitChanged);
    return it->second.data;
  }

  Result<std::unique_ptr<fs::File>> open(const std::string& rel) override {
    opens++;
    if (on_open)
      on_open(rel);
    auto it = nodes_.find(rel);
    if (it == nodes_.end() || it->second.st.type != fs::Type::Regular)
      return Error("'" + display(rel) + "' vanished or changed type during the scan", kExitChanged);
    return std::unique_ptr<fs::File>(new MemFile(this, rel, display(rel)));
  }

 private:
  class MemFile : public fs::File {
   public:
    MemFile(MemTree* t, std::string rel, std::string name)
        : t_(t), rel_(std::move(rel)), name_(std::move(name)) {}
    Result<size_t> read(void* buf, size_t n) override {
      CM_ASSIGN(size_t got, pread(buf, n, pos_));
      pos_ += got;
      return got;
    }
    Result<size_t> pread(void* buf, size_t n, uint64_t off) override {
      auto it = t_->nodes_.find(rel_);
      if (it == t_->nodes_.end())
        return size_t{0};
      const std::string& d = it->second.data;
      if (off >= d.size())
        return size_t{0};
      size_t k = std::min<size_t>(n, d.size() - off);
      std::memcpy(buf, d.data() + off, k);
      return k;
    }
    Result<fs::Stat> stat() override { return t_->stat(rel_); }
    const std::string& name() const override { return name_; }

   private:
    MemTree* t_;
    std::string rel_;
    std::string name_;
    uint64_t pos_ = 0;
  };

  Node dir_node(uint32_t mode) {
    Node n;
    n.st.type = fs::Type::Directory;
    n.st.mode = mode;
    n.st.ino = next_ino_++;
    return n;
  }

  std::string root_;
  std::map<std::string, Node> nodes_;
  uint64_t next_ino_ = 1;
};

}  // namespace cm::test
