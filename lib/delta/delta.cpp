#include "delta/delta.hpp"

#include <algorithm>
#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <nlohmann/json.hpp>
#include <optional>
#include <system_error>
#include <thread>
#include <unordered_map>

#include "delta/rdiff.hpp"
#include "delta/similar.hpp"
#include "delta/zpatch.hpp"
#include "util/text.hpp"

namespace cm::delta {

// ---- scan

namespace {

Status scan_dir(fs::Tree& tree, const std::string& dir, const fs::Filter* filter, const Callbacks& cb,
                std::vector<Node>& out, uint64_t* skipped) {
  CM_ASSIGN(std::vector<fs::DirEntry> entries, tree.list(dir));
  std::sort(entries.begin(), entries.end(),
            [](const fs::DirEntry& a, const fs::DirEntry& b) { return a.name < b.name; });
  for (fs::DirEntry& e : entries) {
    std::string path = fs::join(dir, e.name);
    bool is_dir = e.st.type == fs::Type::Directory;
    if (filter != nullptr && filter->excluded(path, is_dir))
      continue;
    if (e.st.type == fs::Type::Special) {
      if (skipped != nullptr)
        (*skipped)++;
      if (cb.warning)
        cb.warning("skipping special file '" + tree.display(path) + "'");
      continue;
    }
    if (!fs::is_safe_relative_path(path))
      return Error("path too long: '" + tree.display(path) + "'", kExitFailure);
    Node n{path, e.st, {}};
    if (e.st.type == fs::Type::Symlink) {
      CM_ASSIGN(n.link, tree.readlink(path));
      if (n.link.empty() || n.link.size() > kMaxSymlinkTarget)
        return Error("symlink target too long: '" + tree.display(path) + "'", kExitFailure);
    }
    out.push_back(std::move(n));
    if (cb.progress && (out.size() & 1023) == 0) {
      Progress p;
      p.phase = "scanning";
      p.scanned = out.size();
      cb.progress(p);
    }
    if (is_dir)
      CM_TRY(scan_dir(tree, path, filter, cb, out, skipped));
  }
  return {};
}

}  // namespace

Result<std::vector<Node>> scan(fs::Tree& tree, const fs::Filter* filter, const Callbacks& cb,
                               uint64_t* skipped_special) {
  CM_ASSIGN(fs::Stat root, tree.stat(""));
  if (root.type != fs::Type::Directory)
    return Error("'" + tree.root() + "' is not a directory", kExitFailure);
  std::vector<Node> out;
  CM_TRY(scan_dir(tree, "", filter, cb, out, skipped_special));
  return out;
}

bool worth_delta(uint64_t new_size, uint64_t basis_size) {
  return new_size >= kMinDeltaSize && basis_size >= kMinDeltaSize / 2;
}

// "About half": a delta larger than half the file saves too little to be
// worth the patching work and the risk that comes with a basis.
uint64_t delta_limit(uint64_t new_size) {
  return new_size / 2;
}

// ---- compare and emit

namespace {

struct DigestHash {
  size_t operator()(const Digest& d) const {
    size_t h;
    std::memcpy(&h, d.data(), sizeof h);
    return h;
  }
};

// What to do at one position of the merged walk.
struct Item {
  int base = -1;  // index into base nodes
  int next = -1;  // index into next nodes
};

// Passes table data through as a Writer (for replaying a spilled delta).
class TableData : public Writer {
 public:
  explicit TableData(Sink& t) : t_(t) {}
  Status write(const void* p, size_t n) override { return t_.data(p, n); }

 private:
  Sink& t_;
};

Error changed(const fs::Tree& t, const std::string& path) {
  return Error(show_path(t.display(path)) + " changed during the scan; run again", kExitChanged);
}

class Differ {
 public:
  Differ(fs::Tree& base, fs::Tree& next, const Options& opt, Sink* out, const Callbacks& cb)
      : base_(base), next_(next), opt_(opt), out_(out), cb_(cb) {}

  Result<Stats> run() {
    CM_TRY(scan_both());
    plan();
    for (size_t i = 0; i < b_.size(); i++)
      if (b_[i].st.type == fs::Type::Regular && b_[i].st.size > 0)
        base_by_size_[b_[i].st.size].push_back(static_cast<int>(i));
    for (const Node& n : n_)
      if (n.st.type == fs::Type::Regular) {
        stats_.new_tree_files++;
        stats_.new_tree_bytes += n.st.size;
      }
    precompare();
    if (out_ != nullptr)
      CM_TRY(out_->begin());
    for (size_t i = 0; i < items_.size(); i++) {
      item_ = i;
      CM_TRY(step(items_[i]));
      if (cb_.progress) {
        Progress p;
        p.phase = "comparing";
        p.scanned = b_.size() + n_.size();
        p.done = i + 1;
        p.total = items_.size();
        p.bytes = stats_.hashed_bytes;
        cb_.progress(p);
      }
    }
    if (out_ != nullptr)
      CM_TRY(out_->finish());
    update_manifest();
    return stats_;
  }

 private:
  // Merges the two sorted walks into the order of the table: a path that
  // only BASE has (or whose type changed) is deleted, a directory after its
  // contents; then what NEW has at that path is created.
  void plan() {
    size_t i = 0, j = 0;
    kept_.assign(b_.size(), false);
    auto delete_subtree = [&](size_t at) {
      size_t end = at + 1;
      if (b_[at].st.type == fs::Type::Directory) {
        const std::string prefix = b_[at].path + "/";
        while (end < b_.size() && b_[end].path.compare(0, prefix.size(), prefix) == 0)
          end++;
      }
      for (size_t k = end; k-- > at;)
        items_.push_back(Item{static_cast<int>(k), -1});
      return end;
    };
    while (i < b_.size() || j < n_.size()) {
      if (j >= n_.size() || (i < b_.size() && fs::path_less(b_[i].path, n_[j].path))) {
        i = delete_subtree(i);
      } else if (i >= b_.size() || fs::path_less(n_[j].path, b_[i].path)) {
        items_.push_back(Item{-1, static_cast<int>(j++)});
      } else if (b_[i].st.type != n_[j].st.type) {
        i = delete_subtree(i);
        items_.push_back(Item{-1, static_cast<int>(j++)});
      } else {
        kept_[i] = true;
        items_.push_back(Item{static_cast<int>(i++), static_cast<int>(j++)});
      }
    }
  }

  // The two scans, side by side when both trees allow it (half the wall
  // time of a rebuilt site's stat calls); BASE's warnings go through a
  // lock, its progress is not shown.
  Status scan_both() {
    // One lock for everything that reaches the caller's callbacks (the
    // warning from BASE may redraw the progress line that NEW updates).
    std::mutex mu;
    Callbacks quiet, loud;
    if (cb_.warning) {
      quiet.warning = [&](const std::string& w) {
        std::lock_guard<std::mutex> g(mu);
        cb_.warning(w);
      };
      loud.warning = quiet.warning;
    }
    if (cb_.progress)
      loud.progress = [&](const Progress& p) {
        std::lock_guard<std::mutex> g(mu);
        cb_.progress(p);
      };
    uint64_t base_skipped = 0;
    std::optional<Result<std::vector<Node>>> b;
    std::jthread t;
    if (opt_.threads >= 2 && base_.thread_safe() && next_.thread_safe()) {
      try {
        t = std::jthread([&] {
          try {
            b.emplace(scan(base_, opt_.filter, quiet, &base_skipped));
          } catch (const std::exception& e) {  // not across the thread's end
            b.emplace(Error(std::string("internal error while scanning: ") + e.what(), kExitFailure));
          }
        });
      } catch (const std::system_error&) {
        // no thread: one after the other, below
      }
    }
    if (!t.joinable()) {
      CM_ASSIGN(b_, scan(base_, opt_.filter, cb_, &stats_.skipped_special));
      CM_ASSIGN(n_, scan(next_, opt_.filter, cb_, &stats_.skipped_special));
      return {};
    }
    auto n = scan(next_, opt_.filter, loud, &stats_.skipped_special);
    t.join();
    CM_ASSIGN(b_, std::move(*b));
    CM_ASSIGN(n_, std::move(n));
    stats_.skipped_special += base_skipped;
    return {};
  }

  // Whether file() compares BASE's and NEW's bytes: a touched file (or
  // any, with --checksum) of the same size whose BASE hash is not known.
  bool needs_bytes(int base_idx, const Node& n) {
    if (base_idx < 0)
      return false;
    const Node& b = b_[static_cast<size_t>(base_idx)];
    if (b.st.type != fs::Type::Regular || n.st.type != fs::Type::Regular || b.st.size != n.st.size)
      return false;
    if (!opt_.checksum && b.st.mtime_ns == n.st.mtime_ns)
      return false;
    return !known_base_hash(base_idx);
  }

  // The byte comparisons of a rebuild (every mtime touched: most of an
  // update's reads), done before the pass on opt_.threads threads when
  // both trees allow it. Only their answers are kept; file() uses them in
  // the table's order, so the output does not change, and a comparison
  // that failed (a file changing under the scan) is left to file() to
  // run again and report.
  void precompare() {
    if (opt_.threads < 2 || !base_.thread_safe() || !next_.thread_safe())
      return;
    std::vector<size_t> todo;
    for (size_t i = 0; i < items_.size(); i++)
      if (items_[i].next >= 0 && needs_bytes(items_[i].base, n_[static_cast<size_t>(items_[i].next)]))
        todo.push_back(i);
    if (todo.size() < 2)
      return;
    same_.assign(items_.size(), kUnknown);
    std::atomic<size_t> next{0};
    std::atomic<uint64_t> bytes{0};
    auto work = [&] {
      for (size_t k; (k = next.fetch_add(1)) < todo.size();) {
        const Item& it = items_[todo[k]];
        uint64_t read = 0;
        auto r = compare_bytes(b_[static_cast<size_t>(it.base)], n_[static_cast<size_t>(it.next)], read);
        bytes += read;
        if (r.ok())
          same_[todo[k]] = *r ? kSame : kDiffer;
      }
    };
    std::vector<std::jthread> pool;
    for (unsigned t = 1; t < std::min<size_t>(opt_.threads, todo.size()); t++) {
      try {
        pool.emplace_back(work);
      } catch (const std::system_error&) {
        break;  // fewer threads, same answers
      }
    }
    work();
    pool.clear();  // joins
    stats_.hashed_bytes += bytes;
  }

  static Entry entry(Op op, const std::string& path) {
    Entry e;
    e.op = op;
    e.path = path;
    return e;
  }

  Status emit(const Entry& e) {
    stats_.entries++;
    if (cb_.entry)
      cb_.entry(e);
    if (out_ != nullptr)
      return out_->add(e);
    return {};
  }

  Status step(const Item& it) {
    if (it.next < 0)
      return remove(b_[static_cast<size_t>(it.base)]);
    const Node& n = n_[static_cast<size_t>(it.next)];
    const Node* b = it.base >= 0 ? &b_[static_cast<size_t>(it.base)] : nullptr;
    switch (n.st.type) {
      case fs::Type::Directory: {
        if (b != nullptr)
          return chmod_if_needed(*b, n);
        stats_.dirs_added++;
        Entry e = entry(Op::Mkdir, n.path);
        e.mode = n.st.mode;
        return emit(e);
      }
      case fs::Type::Symlink: {
        if (b != nullptr && b->link == n.link)
          return {};
        (b == nullptr ? stats_.symlinks_added : stats_.symlinks_changed)++;
        Entry e = entry(Op::Symlink, n.path);
        e.target = n.link;
        return emit(e);
      }
      case fs::Type::Regular: return file(it.base, n);
      case fs::Type::Special: break;
    }
    return {};
  }

  Status remove(const Node& b) {
    switch (b.st.type) {
      case fs::Type::Directory: stats_.dirs_deleted++; break;
      case fs::Type::Symlink: stats_.symlinks_deleted++; break;
      default: stats_.files_deleted++; break;
    }
    Entry e = entry(Op::Delete, b.path);
    e.old_type = b.st.type;
    return emit(e);
  }

  Status chmod_if_needed(const Node& b, const Node& n) {
    if (b.st.mode == n.st.mode)
      return {};
    stats_.mode_changes++;
    Entry e = entry(Op::Chmod, n.path);
    e.mode = n.st.mode;
    return emit(e);
  }

  // SHA-256 of a file, checking that it is still the file the scan saw.
  Result<Digest> hash_file(fs::Tree& t, const Node& node) {
    CM_ASSIGN(auto f, t.open(node.path));
    CM_TRY(check_same(t, node, *f));
    CM_ASSIGN(HashedSize hs, sha256_stream(*f));
    stats_.hashed_bytes += hs.size;
    CM_TRY(check_same(t, node, *f));
    if (hs.size != node.st.size)
      return changed(t, node.path);
    return hs.digest;
  }

  Status check_same(fs::Tree& t, const Node& node, fs::File& f) {
    CM_ASSIGN(fs::Stat st, f.stat());
    if (st.size != node.st.size || st.mtime_ns != node.st.mtime_ns || st.ino != node.st.ino)
      return changed(t, node.path);
    return {};
  }

  // A BASE file's hash when it is known without reading the file: computed
  // earlier in this run, or in the manifest with a matching stamp.
  std::optional<Digest> known_base_hash(int idx) {
    if (auto it = base_hash_.find(idx); it != base_hash_.end())
      return it->second;
    const Node& b = b_[static_cast<size_t>(idx)];
    if (opt_.manifest != nullptr)
      if (auto h = opt_.manifest->lookup(b.path, b.st)) {
        base_hash_[idx] = *h;
        return *h;
      }
    return std::nullopt;
  }

  Result<Digest> base_hash(int idx) {
    if (auto h = known_base_hash(idx))
      return *h;
    CM_ASSIGN(Digest h, hash_file(base_, b_[static_cast<size_t>(idx)]));
    learn_base_hash(idx, h);
    return h;
  }

  // Reads up to n bytes at offset, fewer only at the end of the file.
  static Result<size_t> pread_full(fs::File& f, char* buf, size_t n, uint64_t offset) {
    size_t have = 0;
    while (have < n) {
      CM_ASSIGN(size_t got, f.pread(buf + have, n - have, offset + have));
      if (got == 0)
        break;
      have += got;
    }
    return have;
  }

  // Whether two files of the same size have the same bytes, read side by
  // side: the same reads as hashing both, without the SHA-256 (a rebuild
  // touches every mtime, so this is most of the files of an update). Safe
  // from several threads (no member state but the trees); `read` counts
  // the bytes read.
  Result<bool> compare_bytes(const Node& b, const Node& n, uint64_t& read) {
    CM_ASSIGN(auto bf, open_checked(base_, b));
    CM_ASSIGN(auto nf, open_checked(next_, n));
    constexpr size_t kChunk = 256 * 1024;
    thread_local std::unique_ptr<char[]> storage(new char[2 * kChunk]);
    char* x = storage.get();
    char* y = x + kChunk;
    bool same = true;
    uint64_t pos = 0;
    while (pos < n.st.size) {
      size_t want = static_cast<size_t>(std::min<uint64_t>(kChunk, n.st.size - pos));
      CM_ASSIGN(size_t gx, pread_full(*bf, x, want, pos));
      CM_ASSIGN(size_t gy, pread_full(*nf, y, want, pos));
      if (gx != want)
        return changed(base_, b.path);
      if (gy != want)
        return changed(next_, n.path);
      read += 2 * want;
      pos += want;
      if (std::memcmp(x, y, want) != 0) {
        same = false;
        break;
      }
    }
    CM_TRY(check_same(base_, b, *bf));
    CM_TRY(check_same(next_, n, *nf));
    return same;
  }

  Result<bool> same_bytes(const Node& b, const Node& n) {
    if (item_ < same_.size() && same_[item_] != kUnknown)
      return same_[item_] == kSame;
    uint64_t read = 0;
    auto r = compare_bytes(b, n, read);
    stats_.hashed_bytes += read;
    return r;
  }

  void learn_base_hash(int idx, const Digest& h) {
    base_hash_[idx] = h;
    if (opt_.manifest != nullptr)
      opt_.manifest->record(b_[static_cast<size_t>(idx)].path, b_[static_cast<size_t>(idx)].st, h,
                            opt_.now_ns);
  }

  // A BASE file (other than `except`) with this content.
  Result<int> find_copy(const Digest& h, uint64_t size, int except) {
    auto it = base_by_size_.find(size);
    if (it == base_by_size_.end())
      return -1;
    for (int idx : it->second) {
      if (idx == except)
        continue;
      CM_ASSIGN(Digest bh, base_hash(idx));
      if (bh == h)
        return idx;
    }
    return -1;
  }

  // A BASE file whose name differs from n's only by hash-like runs.
  int find_similar(const Node& n) {
    if (similar_.empty() && !b_.empty()) {
      for (size_t i = 0; i < b_.size(); i++)
        if (b_[i].st.type == fs::Type::Regular && b_[i].st.size > 0)
          similar_[similarity_key(b_[i].path)].push_back(static_cast<int>(i));
      similar_[std::string()];  // built, even when empty
    }
    auto it = similar_.find(similarity_key(n.path));
    if (it == similar_.end())
      return -1;
    int best = -1;
    int best_score = -1;
    bool best_deleted = false;
    uint64_t best_gap = 0;
    for (int idx : it->second) {
      const Node& b = b_[static_cast<size_t>(idx)];
      int score = name_similarity(n.path, b.path);
      if (score < 0)
        continue;
      bool deleted = !kept_[static_cast<size_t>(idx)];
      uint64_t gap = b.st.size > n.st.size ? b.st.size - n.st.size : n.st.size - b.st.size;
      if (score > best_score || (score == best_score && deleted && !best_deleted) ||
          (score == best_score && deleted == best_deleted && gap < best_gap)) {
        best = idx;
        best_score = score;
        best_deleted = deleted;
        best_gap = gap;
      }
    }
    return best;
  }

  Status file(int base_idx, const Node& n) {
    const Node* b = base_idx >= 0 ? &b_[static_cast<size_t>(base_idx)] : nullptr;
    // Size and mtime are only a quick check: equal means unchanged unless
    // --checksum; different means "compare the contents".
    if (b != nullptr && !opt_.checksum && b->st.size == n.st.size && b->st.mtime_ns == n.st.mtime_ns)
      return chmod_if_needed(*b, n);
    bool differ = b == nullptr || b->st.size != n.st.size;
    if (needs_bytes(base_idx, n)) {
      CM_ASSIGN(bool same, same_bytes(*b, n));
      if (same)
        return chmod_if_needed(*b, n);
      differ = true;
    }
    // A small file is read once: hashed, and kept for whole() or a zstd
    // delta to send without reading and hashing it again (two passes over
    // every new file were most of an initial publish's cm-delta time).
    next_kept_.clear();
    Digest h;
    if (n.st.size <= kKeepBytes) {
      CM_TRY(read_kept(next_, n, h));
    } else {
      CM_ASSIGN(h, hash_file(next_, n));
    }
    if (!differ) {
      CM_ASSIGN(Digest bh, base_hash(base_idx));
      if (bh == h)
        return chmod_if_needed(*b, n);
    }
    (b == nullptr ? stats_.files_added : stats_.files_changed)++;
    Entry e = entry(Op::Copy, n.path);
    e.mode = n.st.mode;
    e.mtime_ns = n.st.mtime_ns;
    e.size = n.st.size;
    e.hash = h;
    if (n.st.size > 0) {
      CM_ASSIGN(int src, find_copy(h, n.st.size, base_idx));
      if (src >= 0) {
        e.source = b_[static_cast<size_t>(src)].path;
        return copy(e);
      }
      if (auto it = made_.find(h); it != made_.end()) {
        e.source = it->second;
        e.source_new = true;
        return copy(e);
      }
      made_.emplace(h, n.path);
    }
    int basis = base_idx;
    if (basis < 0 && !opt_.whole_file && n.st.size >= kMinDeltaSize)
      basis = find_similar(n);
    if (basis >= 0 && !opt_.whole_file && worth_delta(n.st.size, b_[static_cast<size_t>(basis)].st.size)) {
      CM_ASSIGN(bool sent, patch(e, basis, n));
      if (sent)
        return {};
    }
    return whole(e, n);
  }

  Status copy(Entry& e) {
    stats_.sent_copy++;
    return emit(e);
  }

  // Tries a delta against a basis; false when none is small enough. A
  // positional comparison goes first: it is exact and fast for in-place
  // edits and appends. Then, for files up to kMaxZstdPatch, a zstd frame
  // with the basis as prefix (matches at any offset, entropy-coded); for
  // larger files, librsync's block matcher. The smaller delta wins.
  Result<bool> patch(Entry& e, int basis_idx, const Node& n) {
    const Node& b = b_[static_cast<size_t>(basis_idx)];
    uint64_t limit = delta_limit(n.st.size);
    CM_ASSIGN(auto bf, open_checked(base_, b));
    CM_ASSIGN(auto nf, open_checked(next_, n));
    spill_.clear();
    CM_ASSIGN(PositionalResult pos, positional_delta(*bf, *nf, spill_, limit));
    stats_.hashed_bytes += pos.basis_size + pos.next_size;
    Digest bh{};
    if (pos.fits) {
      CM_TRY(check_same(base_, b, *bf));
      CM_TRY(check_same(next_, n, *nf));
      if (pos.basis_size != b.st.size)
        return changed(base_, b.path);
      if (pos.next_size != n.st.size || pos.next_hash != e.hash)
        return changed(next_, n.path);
      bh = pos.basis_hash;
      learn_base_hash(basis_idx, bh);
      if (spill_.size() <= n.st.size / 32)
        return send_patch(e, b.path, bh, DeltaFormat::Rsync, spill_);
    }
    uint64_t limit2 = pos.fits ? spill_.size() - 1 : limit;
    spill2_.clear();
    bool zstd = b.st.size <= kMaxZstdPatch && n.st.size <= kMaxZstdPatch;
    CM_ASSIGN(bool fits,
              zstd ? zstd_try(e, basis_idx, n, limit2, bh) : rsync_try(e, basis_idx, n, limit2, bh));
    if (fits)
      return send_patch(e, b.path, bh, zstd ? DeltaFormat::Zstd : DeltaFormat::Rsync, spill2_);
    if (pos.fits)
      return send_patch(e, b.path, bh, DeltaFormat::Rsync, spill_);
    return false;
  }

  // Files up to this size are read once into next_kept_ (see file()).
  static constexpr uint64_t kKeepBytes = 1024 * 1024;

  // The bytes of the NEXT file being handled, read and hashed once, when it
  // is at most kKeepBytes; empty otherwise (and for an empty file, which
  // has nothing to read again either).
  struct Kept {
    std::unique_ptr<char[]> buf;  // not zero-filled: every byte used is read
    size_t cap = 0;
    size_t len = 0;
    bool valid = false;
    void clear() {
      len = 0;
      valid = false;
    }
    std::string_view view() const { return {buf.get(), len}; }
  };
  Kept next_kept_;

  // Reads a whole (small) file into buf, which has room for its size and
  // one byte more (to see growth), checking it against the scan.
  Status read_whole(fs::Tree& t, const Node& node, char* buf) {
    CM_ASSIGN(auto f, open_checked(t, node));
    size_t want = static_cast<size_t>(node.st.size) + 1;
    size_t have = 0;
    while (have < want) {
      CM_ASSIGN(size_t got, f->read(buf + have, want - have));
      if (got == 0)
        break;
      have += got;
    }
    stats_.hashed_bytes += have;
    CM_TRY(check_same(t, node, *f));
    if (have != node.st.size)
      return changed(t, node.path);
    return {};
  }

  // Reads a small NEXT file into next_kept_ and hashes it.
  Status read_kept(fs::Tree& t, const Node& node, Digest& hash) {
    size_t want = static_cast<size_t>(node.st.size) + 1;
    if (next_kept_.cap < want) {
      next_kept_.buf.reset(new char[want]);
      next_kept_.cap = want;
    }
    CM_TRY(read_whole(t, node, next_kept_.buf.get()));
    next_kept_.len = static_cast<size_t>(node.st.size);
    next_kept_.valid = true;
    hash = sha256(next_kept_.view());
    return {};
  }

  // Reads a whole (small) file and hashes it.
  Result<std::string> slurp(fs::Tree& t, const Node& node, Digest& hash) {
    std::string data(static_cast<size_t>(node.st.size) + 1, '\0');
    CM_TRY(read_whole(t, node, data.data()));
    data.resize(static_cast<size_t>(node.st.size));
    hash = sha256(data);
    return data;
  }

  Result<bool> zstd_try(const Entry& e, int basis_idx, const Node& n, uint64_t limit, Digest& bh) {
    const Node& b = b_[static_cast<size_t>(basis_idx)];
    CM_ASSIGN(std::string basis, slurp(base_, b, bh));
    learn_base_hash(basis_idx, bh);
    if (next_kept_.valid)
      return zstd_delta(basis, next_kept_.view(), spill2_, limit);
    Digest nh;
    CM_ASSIGN(std::string next, slurp(next_, n, nh));
    if (nh != e.hash)
      return changed(next_, n.path);
    return zstd_delta(basis, next, spill2_, limit);
  }

  Result<bool> rsync_try(const Entry& e, int basis_idx, const Node& n, uint64_t limit, Digest& bh) {
    const Node& b = b_[static_cast<size_t>(basis_idx)];
    CM_ASSIGN(auto bf, open_checked(base_, b));
    uint64_t bsize = 0;
    size_t block = opt_.block_len != 0 ? opt_.block_len : choose_block_len(b.st.size);
    CM_ASSIGN(Signature sig, make_signature(*bf, block, &bh, &bsize));
    stats_.hashed_bytes += bsize;
    CM_TRY(check_same(base_, b, *bf));
    if (bsize != b.st.size)
      return changed(base_, b.path);
    learn_base_hash(basis_idx, bh);
    CM_ASSIGN(auto nf, open_checked(next_, n));
    Digest nh;
    uint64_t nsize = 0;
    CM_ASSIGN(bool fits, make_delta(sig, *nf, spill2_, limit, &nh, &nsize));
    stats_.hashed_bytes += nsize;
    if (!fits)
      return false;
    CM_TRY(check_same(next_, n, *nf));
    if (nsize != n.st.size || nh != e.hash)
      return changed(next_, n.path);
    return true;
  }

  Result<std::unique_ptr<fs::File>> open_checked(fs::Tree& t, const Node& node) {
    CM_ASSIGN(auto f, t.open(node.path));
    CM_TRY(check_same(t, node, *f));
    return f;
  }

  Result<bool> send_patch(Entry& e, const std::string& basis, const Digest& basis_hash, DeltaFormat format,
                          SpillBuffer& delta) {
    e.op = Op::Patch;
    e.format = format;
    e.source = basis;
    e.source_hash = basis_hash;
    e.data_size = delta.size();
    stats_.sent_patch++;
    stats_.data_bytes += e.data_size;
    CM_TRY(emit(e));
    if (out_ != nullptr) {
      TableData d(*out_);
      CM_TRY(delta.replay(d));
    }
    return true;
  }

  Status whole(Entry& e, const Node& n) {
    e.op = Op::File;
    e.data_size = n.st.size;
    e.source.clear();
    stats_.sent_whole++;
    stats_.data_bytes += n.st.size;
    CM_TRY(emit(e));
    if (out_ == nullptr)
      return {};
    if (next_kept_.valid) {
      // Read, hashed and checked against the scan in file().
      for (size_t at = 0; at < next_kept_.len; at += kDataChunk)
        CM_TRY(out_->data(next_kept_.buf.get() + at, std::min(kDataChunk, next_kept_.len - at)));
      return {};
    }
    CM_ASSIGN(auto f, next_.open(n.path));
    CM_TRY(check_same(next_, n, *f));
    Sha256 h;
    uint64_t total = 0;
    std::vector<char> buf(kDataChunk);
    for (;;) {
      CM_ASSIGN(size_t got, f->read(buf.data(), buf.size()));
      if (got == 0)
        break;
      total += got;
      if (total > n.st.size)
        return changed(next_, n.path);
      h.update(buf.data(), got);
      CM_TRY(out_->data(buf.data(), got));
    }
    stats_.hashed_bytes += total;
    if (total != n.st.size || h.finish() != e.hash)
      return changed(next_, n.path);
    return check_same(next_, n, *f);
  }

  // The manifest keeps what it knows about files BASE still has.
  void update_manifest() {
    if (opt_.manifest == nullptr)
      return;
    std::unordered_map<std::string, const fs::Stat*> live;
    for (const Node& b : b_)
      if (b.st.type == fs::Type::Regular)
        live.emplace(b.path, &b.st);
    opt_.manifest->retain([&](const std::string& path) {
      auto it = live.find(path);
      return it != live.end() && opt_.manifest->lookup(path, *it->second).has_value();
    });
  }

  fs::Tree& base_;
  fs::Tree& next_;
  const Options& opt_;
  Sink* out_;
  const Callbacks& cb_;
  std::vector<Node> b_, n_;
  std::vector<Item> items_;
  std::vector<bool> kept_;
  Stats stats_;
  std::unordered_map<int, Digest> base_hash_;
  enum : int8_t { kUnknown, kSame, kDiffer };
  std::vector<int8_t> same_;  // precompare()'s answers, by item
  size_t item_ = 0;           // the item being decided
  std::unordered_map<uint64_t, std::vector<int>> base_by_size_;
  std::unordered_map<std::string, std::vector<int>> similar_;
  std::unordered_map<Digest, std::string, DigestHash> made_;
  SpillBuffer spill_, spill2_;
};

}  // namespace

Result<Stats> compute(fs::Tree& base, fs::Tree& next, const Options& opt, Sink* out, const Callbacks& cb) {
  Differ d(base, next, opt, out, cb);
  return d.run();
}

std::string summary_text(const Stats& s) {
  std::string t;
  t += "files: " + std::to_string(s.files_added) + " added, " + std::to_string(s.files_changed) +
       " changed, " + std::to_string(s.files_deleted) + " deleted";
  t += "; directories: " + std::to_string(s.dirs_added) + " added, " + std::to_string(s.dirs_deleted) +
       " deleted";
  t += "; symlinks: " + std::to_string(s.symlinks_added) + " added, " + std::to_string(s.symlinks_changed) +
       " changed, " + std::to_string(s.symlinks_deleted) + " deleted";
  t += "; modes changed: " + std::to_string(s.mode_changes) + "\n";
  t += "sent as: " + std::to_string(s.sent_whole) + " whole, " + std::to_string(s.sent_patch) + " delta, " +
       std::to_string(s.sent_copy) + " copy of an existing file\n";
  double pct = s.new_tree_bytes == 0
                   ? 0.0
                   : 100.0 * static_cast<double>(s.data_bytes) / static_cast<double>(s.new_tree_bytes);
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.2f%%", pct);
  t += "data: " + with_commas(s.data_bytes) + " bytes to send of " + with_commas(s.new_tree_bytes) +
       " in the new tree (" + buf + ", " + std::to_string(s.new_tree_files) + " files); " +
       std::to_string(s.entries) + " entries\n";
  return t;
}

nlohmann::json summary_json(const Stats& s) {
  return nlohmann::json{
      {"entries", s.entries},
      {"files", {{"added", s.files_added}, {"changed", s.files_changed}, {"deleted", s.files_deleted}}},
      {"directories", {{"added", s.dirs_added}, {"deleted", s.dirs_deleted}}},
      {"symlinks",
       {{"added", s.symlinks_added}, {"changed", s.symlinks_changed}, {"deleted", s.symlinks_deleted}}},
      {"modes_changed", s.mode_changes},
      {"sent", {{"whole", s.sent_whole}, {"delta", s.sent_patch}, {"copy", s.sent_copy}}},
      {"data_bytes", s.data_bytes},
      {"new_tree_files", s.new_tree_files},
      {"new_tree_bytes", s.new_tree_bytes},
      {"hashed_bytes", s.hashed_bytes},
      {"skipped_special", s.skipped_special},
  };
}

}  // namespace cm::delta
