#include "apply/applier.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <functional>
#include <future>
#include <memory>
#include <optional>
#include <span>
#include <system_error>
#include <utility>
#include <vector>

#include "delta/rdiff.hpp"
#include "delta/zpatch.hpp"
#include "fs/tree.hpp"
#include "util/mapped.hpp"
#include "util/text.hpp"

namespace cm::apply {

using delta::DeltaFormat;

namespace {

constexpr size_t kBuf = 256 * 1024;

// One copy buffer per thread, kept and never zero-filled: a fresh one per
// file costs page faults each time.
std::span<char> copy_buffer() {
  thread_local Buffer buf(kBuf);
  return {buf.data(), kBuf};
}

// Whether a digest starts with the given check.
bool matches(const Digest& d, const std::string& check) {
  return !check.empty() && check.size() <= d.size() && std::memcmp(d.data(), check.data(), check.size()) == 0;
}

std::string temp_name() {
  return ".cm-tmp." + random_name(12);
}

// Hashes what passes through on its way to a descriptor.
class HashingFdWriter : public Writer {
 public:
  HashingFdWriter(int fd, std::string name) : w_(fd, std::move(name)) {}
  Status write(const void* p, size_t n) override {
    h_.update(p, n);
    size_ += n;
    return w_.write(p, n);
  }
  Status flush() override { return w_.flush(); }
  Digest digest() { return h_.finish(); }
  uint64_t size() const { return size_; }

 private:
  FdWriter w_;
  Sha256 h_;
  uint64_t size_ = 0;
};

// A regular file opened beneath a root, as an fs::File for the patcher.
class PlainFile : public fs::File {
 public:
  PlainFile(Fd fd, std::string name) : fd_(std::move(fd)), name_(std::move(name)) {}
  Result<size_t> read(void* buf, size_t n) override {
    ssize_t got = ::read(fd_.get(), buf, n);
    if (got < 0)
      return sys_error("cannot read", name_, errno);
    return static_cast<size_t>(got);
  }
  Result<size_t> pread(void* buf, size_t n, uint64_t off) override {
    ssize_t got = ::pread(fd_.get(), buf, n, static_cast<off_t>(off));
    if (got < 0)
      return sys_error("cannot read", name_, errno);
    return static_cast<size_t>(got);
  }
  Result<fs::Stat> stat() override { return Error("not supported"); }
  const std::string& name() const override { return name_; }
  int fd() const { return fd_.get(); }

 private:
  Fd fd_;
  std::string name_;
};

// Limits a reader to exactly n bytes (the entry's data).
class Exactly : public Reader {
 public:
  Exactly(Reader& in, uint64_t n) : in_(in), left_(n) {}
  Result<size_t> read(void* buf, size_t n) override {
    if (left_ == 0)
      return size_t{0};
    CM_ASSIGN(size_t got, in_.read(buf, static_cast<size_t>(std::min<uint64_t>(n, left_))));
    if (got == 0)
      return Error("'" + in_.name() + "': data ends early", kExitBadInput);
    left_ -= got;
    return got;
  }
  const std::string& name() const override { return in_.name(); }

 private:
  Reader& in_;
  uint64_t left_;
};

Status pump(Reader& in, Writer& out) {
  std::span<char> buf = copy_buffer();
  for (;;) {
    CM_ASSIGN(size_t got, in.read(buf.data(), buf.size()));
    if (got == 0)
      return {};
    CM_TRY(out.write(buf.data(), got));
  }
}

}  // namespace

Op from_entry(const delta::Entry& e) {
  Op op;
  op.path = e.path;
  op.mode = e.mode;
  op.mtime_ns = e.mtime_ns;
  op.size = e.size;
  op.length = e.data_size;
  op.check = std::string(reinterpret_cast<const char*>(e.hash.data()), e.hash.size());
  switch (e.op) {
    case delta::Op::Mkdir: op.kind = Kind::Mkdir; break;
    case delta::Op::File: op.kind = Kind::Put; break;
    case delta::Op::Patch:
      op.kind = Kind::Patch;
      op.source = e.source;
      op.basis_check = std::string(reinterpret_cast<const char*>(e.source_hash.data()), e.source_hash.size());
      op.format = e.format;
      break;
    case delta::Op::Copy:
      op.kind = e.source_new ? Kind::CopyNew : Kind::Copy;
      op.source = e.source;
      break;
    case delta::Op::Symlink:
      op.kind = Kind::Symlink;
      op.target = e.target;
      break;
    case delta::Op::Delete: op.kind = e.old_type == fs::Type::Directory ? Kind::Rmdir : Kind::Remove; break;
    case delta::Op::Chmod: op.kind = Kind::Chmod; break;
  }
  return op;
}

Op from_command(const assign::Command& c) {
  Op op;
  op.path = c.path;
  op.mode = c.mode;
  op.mtime_ns = c.mtime_ns;
  op.size = c.size;
  op.length = c.length;
  op.check = std::string(reinterpret_cast<const char*>(c.hash.data()), c.hash.size());
  switch (c.op) {
    case assign::Op::Mkdir: op.kind = Kind::Mkdir; break;
    case assign::Op::Put: op.kind = Kind::Put; break;
    case assign::Op::Patch:
      op.kind = Kind::Patch;
      op.source = c.basis();
      op.basis_check = std::string(reinterpret_cast<const char*>(c.basis_check.data()), c.basis_check.size());
      op.format = c.format;
      break;
    case assign::Op::Copy:
      op.kind = Kind::Copy;
      op.source = c.source;
      break;
    case assign::Op::CopyNew:
      op.kind = Kind::CopyNew;
      op.source = c.source;
      break;
    case assign::Op::Symlink:
      op.kind = Kind::Symlink;
      op.target = c.target;
      break;
    case assign::Op::Remove: op.kind = Kind::Remove; break;
    case assign::Op::Rmdir: op.kind = Kind::Rmdir; break;
    case assign::Op::Chmod: op.kind = Kind::Chmod; break;
    case assign::Op::Unpack: break;
  }
  return op;
}

std::string Applier::where(const std::string& rel) const {
  return name_ + "/" + rel;
}

Status Applier::apply(const Op& op, Reader* data) {
  if (!fs::is_safe_relative_path(op.path))
    return Error("unsafe path " + quote_path(op.path), kExitBadInput);
  if ((op.kind == Kind::Patch || op.kind == Kind::Copy || op.kind == Kind::CopyNew) &&
      !fs::is_safe_relative_path(op.source))
    return Error("unsafe source path " + quote_path(op.source), kExitBadInput);
  std::string parent = fs::parent_of(op.path);
  std::string name = fs::name_of(op.path);
  if (opt_.track != nullptr) {
    std::lock_guard<std::mutex> lock(track_mu_);
    opt_.track->dirs.insert(parent);
    if (op.kind == Kind::Mkdir)
      opt_.track->dirs.insert(op.path);
    else if (op.kind == Kind::Chmod)
      opt_.track->inodes.push_back(op.path);
  }
  int pfd = fs::open_beneath(target_, parent, O_RDONLY | O_DIRECTORY);
  if (pfd < 0) {
    // Nothing to remove where there is no directory.
    if ((op.kind == Kind::Remove || op.kind == Kind::Rmdir) &&
        (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
      return {};
    return sys_error("cannot open directory", where(parent.empty() ? "." : parent), errno);
  }
  Fd dir(pfd);

  switch (op.kind) {
    case Kind::Mkdir: {
      if (::mkdirat(dir.get(), name.c_str(), 0700) != 0 && errno != EEXIST)
        return sys_error("cannot create directory", where(op.path), errno);
      // Through a descriptor: a symlink planted at the name is not followed.
      Fd d(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!d.valid())
        return Error("'" + where(op.path) + "' exists and is not a directory");
      if (::fchmod(d.get(), op.mode) != 0)
        return sys_error("cannot set the mode of", where(op.path), errno);
      return {};
    }
    case Kind::Put: {
      if (data == nullptr)
        return Error("no data for " + where(op.path));
      Exactly content(*data, op.length);
      return make_file(
          dir.get(), name, op, [&](Writer& w) { return pump(content, w); }, "file");
    }
    case Kind::Patch:
      if (data == nullptr)
        return Error("no data for " + where(op.path));
      return patch(dir.get(), name, op, *data);
    case Kind::Copy:
    case Kind::CopyNew: return copy(dir.get(), name, op);
    case Kind::Symlink: {
      if (opt_.direct) {
        CM_TRY(make_way(dir.get(), name, op.path));
        if (::symlinkat(op.target.c_str(), dir.get(), name.c_str()) != 0)
          return sys_error("cannot create symlink", where(op.path), errno);
        return {};
      }
      std::string tmp = temp_name();
      int tdir = scratch(dir.get());
      if (::symlinkat(op.target.c_str(), tdir, tmp.c_str()) != 0)
        return sys_error("cannot create symlink", where(op.path), errno);
      if (::renameat(tdir, tmp.c_str(), dir.get(), name.c_str()) != 0) {
        int err = errno;
        ::unlinkat(tdir, tmp.c_str(), 0);
        return sys_error("cannot create symlink", where(op.path), err);
      }
      return {};
    }
    case Kind::Remove:
    case Kind::Rmdir:
      // "Nothing is at this path any more": whatever is there goes, so that
      // running an operation list again over a partly done target (after a
      // kill) is safe even where a path changed type.
      return fs::remove_tree_at(dir.get(), name, where(op.path));
    case Kind::Chmod: return chmod(dir.get(), name, op);
  }
  return Error("unknown operation");
}

Status Applier::make_way(int dir, const std::string& name, const std::string& path) {
  if (::unlinkat(dir, name.c_str(), 0) != 0 && errno != ENOENT)
    return sys_error("cannot replace", where(path), errno);
  return {};
}

Status Applier::make_file(int dir, const std::string& name, const Op& e,
                          const std::function<Status(Writer&)>& fill, const char* what,
                          const std::function<Status()>& vouch) {
  // Written under a temporary name and renamed over `name` when complete,
  // or (direct) at `name` itself: the old file's name goes first (a hard
  // link to the base's inode, whose content stays as it is).
  std::string tmp = opt_.direct ? name : temp_name();
  int tdir = opt_.direct ? dir : scratch(dir);
  // vouch()'s failure wins over any other, a failed write's too (a full
  // disk must not hide a wrong basis).
  auto vouched = [&](Status s) -> Status {
    if (!vouch)
      return s;
    Status v = vouch();
    return v.ok() ? s : v;
  };
  if (opt_.direct)
    if (Status made_way = make_way(dir, name, e.path); !made_way.ok())
      return vouched(std::move(made_way));
  int fd = ::openat(tdir, tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0)
    return vouched(sys_error("cannot create a file in", where(fs::parent_of(e.path)), errno));
  Fd out(fd);
  HashingFdWriter w(out.get(), where(e.path));
  Status s = fill(w);
  if (s.ok())
    s = w.flush();
  s = vouched(std::move(s));
  if (s.ok() && (w.size() != e.size || !matches(w.digest(), e.check)))
    s = Error("'" + where(e.path) + "': the " + what + " does not have the expected content (sha256)",
              kExitBadInput);
  if (s.ok() && ::fchmod(out.get(), e.mode) != 0)
    s = sys_error("cannot set the mode of", where(e.path), errno);
  if (s.ok()) {
    struct timespec times[2];
    times[0].tv_sec = 0;
    times[0].tv_nsec = UTIME_OMIT;
    times[1].tv_sec = e.mtime_ns / 1000000000;
    times[1].tv_nsec = e.mtime_ns % 1000000000;
    if (times[1].tv_nsec < 0) {
      times[1].tv_nsec += 1000000000;
      times[1].tv_sec -= 1;
    }
    if (::futimens(out.get(), times) != 0)
      s = sys_error("cannot set the time of", where(e.path), errno);
  }
  if (s.ok() && opt_.fsync && ::fsync(out.get()) != 0)
    s = sys_error("cannot write", where(e.path), errno);
  if (s.ok() && opt_.track != nullptr && opt_.syncer == nullptr) {
    // A hint: sync_changed()'s fsync reports the errors. (A syncer's
    // fsync starts on another thread right after the rename.)
    (void)::sync_file_range(out.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
    std::lock_guard<std::mutex> lock(track_mu_);
    opt_.track->inodes.push_back(e.path);
  }
  if (s.ok() && !opt_.direct && ::renameat(tdir, tmp.c_str(), dir, name.c_str()) != 0)
    s = sys_error("cannot replace", where(e.path), errno);
  if (!s.ok()) {
    ::unlinkat(tdir, tmp.c_str(), 0);
    return s;
  }
  written_ += w.size();
  if (opt_.track != nullptr && opt_.syncer != nullptr)
    opt_.syncer->add(std::move(out), where(e.path));
  return {};
}

// From this size on, a zstd patch's basis is hashed beside the patching.
constexpr size_t kHashBesideBytes = size_t{1} << 20;
// From this size on, a zstd patch's basis is mapped rather than read.
constexpr uint64_t kMapFrom = 256 * 1024;

Status Applier::patch(int dir, const std::string& name, const Op& e, Reader& delta) {
  int bfd = fs::open_beneath(base_, e.source, O_RDONLY);
  if (bfd < 0)
    return sys_error("cannot open the basis", e.source, errno);
  PlainFile basis(Fd(bfd), e.source);
  auto mismatch = [&] {
    return Error(
        "basis '" + e.source + "' for '" + where(e.path) +
            "' does not have the expected content (sha256): the delta was made against another version",
        kExitFailure);
  };
  auto changed = [&] { return Error("basis '" + e.source + "' changed while it was read", kExitFailure); };
  Exactly in(delta, e.length);
  // librsync may stop before the end of its delta; keep the stream in step.
  auto drain = [&]() -> Status {
    StringWriter rest;
    CM_TRY(pump(in, rest));
    if (!rest.data().empty())
      return Error("'" + where(e.path) + "': trailing bytes after the delta", kExitBadInput);
    return {};
  };
  if (e.format == DeltaFormat::Zstd) {
    // In memory, whole: the basis (the prefix), the delta and the result.
    // Their sizes are bounded like the sender's.
    struct stat st;
    if (::fstat(basis.fd(), &st) != 0)
      return sys_error("cannot read", e.source, errno);
    if (static_cast<uint64_t>(st.st_size) > delta::kMaxZstdPatch)
      return Error("basis '" + e.source + "' is too large for a zstd delta", kExitBadInput);
    if (e.size > delta::kMaxZstdPatch || e.length > delta::kMaxZstdDelta)
      return Error("'" + where(e.path) + "': too large for a zstd delta", kExitBadInput);
    // A large basis is mapped, not copied: no fresh memory to fault in.
    // Buffers kept from one patch to the next, never zero-filled: the
    // bytes are read or decoded straight into them.
    thread_local Buffer whole, zdelta, result;
    std::optional<Mapped> mapped;
    std::string_view prefix;
    if (static_cast<uint64_t>(st.st_size) >= kMapFrom) {
      auto m = Mapped::map(basis.fd(), static_cast<size_t>(st.st_size), e.source);
      if (m.ok()) {
        mapped.emplace(std::move(*m));
        prefix = mapped->view();
      }
    }
    if (!mapped) {
      // Read one byte more than the size: a file that grew meanwhile is caught.
      size_t want = static_cast<size_t>(st.st_size) + 1;
      char* b = whole.at_least(want);
      size_t have = 0;
      for (;;) {
        CM_ASSIGN(size_t got, basis.read(b + have, want - have));
        if (got == 0)
          break;
        have += got;
        if (have == want)
          return changed();
      }
      prefix = std::string_view(b, have);
    }
    char* d = zdelta.at_least(static_cast<size_t>(e.length));
    CM_TRY(read_exact(in, d, static_cast<size_t>(e.length)));
    // A large basis is hashed on another thread while the patch runs and
    // its result is written; a mismatch still stops it before the result
    // is judged or renamed into the tree. A small one (or with no thread
    // to be had) here, first. (The future is declared after the mapping:
    // it is joined before the unmapping.)
    std::future<Digest> hashed;
    if (prefix.size() >= kHashBesideBytes) {
      try {
        hashed = std::async(std::launch::async, [prefix] { return sha256(prefix); });
      } catch (const std::system_error&) {
        // No thread to be had: hashed below.
      }
    }
    // A mapped basis is read where it lies: a change by someone else
    // between the hashing and the patching (a cut within its last page
    // raises no fault) must not pass for a bad delta or a wrong basis.
    // Size and mtime, not ctime: a hard link made to the file meanwhile
    // (a snapshot by cp -al) changes nothing that is read.
    auto moved = [&] {
      struct stat now;
      return mapped && (mapped->cut() || ::fstat(basis.fd(), &now) != 0 || now.st_size != st.st_size ||
                        now.st_mtim.tv_sec != st.st_mtim.tv_sec || now.st_mtim.tv_nsec != st.st_mtim.tv_nsec);
    };
    if (!hashed.valid() && !matches(sha256(prefix), e.basis_check))
      return moved() ? changed() : mismatch();
    // Room for one byte more than expected: a delta that makes more is
    // caught by the size check.
    std::span<char> out(result.at_least(static_cast<size_t>(e.size) + 1), static_cast<size_t>(e.size) + 1);
    auto made = delta::zstd_patch(prefix, std::string_view(d, static_cast<size_t>(e.length)), out, in.name());
    // The basis's verdicts before the delta's, the result's or the
    // write's; worked out once (the future gives its value once).
    std::optional<Status> verdict;
    auto vouch = [&]() -> Status {
      if (!verdict) {
        bool basis_ok = !hashed.valid() || matches(hashed.get(), e.basis_check);
        verdict = moved() ? changed() : !basis_ok ? mismatch() : Status{};
      }
      return *verdict;
    };
    if (!made.ok()) {
      CM_TRY(vouch());
      return std::move(made).error();
    }
    return make_file(
        dir, name, e, [&](Writer& w) { return w.write(out.data(), *made); }, "patched file", vouch);
  }
  // Patching the wrong basis gives garbage silently: check it first.
  CM_ASSIGN(HashedSize hs, sha256_stream(basis));
  if (!matches(hs.digest, e.basis_check))
    return mismatch();
  return make_file(
      dir, name, e,
      [&](Writer& w) -> Status {
        CM_TRY(delta::apply_delta(basis, in, w));
        return drain();
      },
      "patched file");
}

Status Applier::copy(int dir, const std::string& name, const Op& e) {
  int root = e.kind == Kind::CopyNew ? target_ : base_;
  int sfd = fs::open_beneath(root, e.source, O_RDONLY);
  if (sfd < 0)
    return sys_error("cannot open the copy source", e.source, errno);
  PlainFile src(Fd(sfd), e.source);
  return make_file(
      dir, name, e, [&](Writer& w) { return pump(src, w); }, "copy");
}

Status Applier::chmod(int dir, const std::string& name, const Op& e) {
  // Through a descriptor opened without following a symlink at the name.
  int fd = ::openat(dir, name.c_str(), O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK);
  if (fd < 0)
    return sys_error("cannot change the mode of", where(e.path), errno);
  PlainFile src(Fd(fd), where(e.path));
  struct stat st;
  if (::fstat(src.fd(), &st) != 0)
    return sys_error("cannot change the mode of", where(e.path), errno);
  if (S_ISDIR(st.st_mode) || (S_ISREG(st.st_mode) && st.st_nlink == 1)) {
    if (::fchmod(src.fd(), e.mode) != 0)
      return sys_error("cannot change the mode of", where(e.path), errno);
    return {};
  }
  if (!S_ISREG(st.st_mode))
    return Error("'" + where(e.path) + "' is not a file or directory; cannot change its mode");
  // A hard link shares its mode with BASE: give the target its own copy.
  CM_ASSIGN(HashedSize hs, sha256_stream(src));
  if (::lseek(src.fd(), 0, SEEK_SET) < 0)
    return sys_error("cannot read", where(e.path), errno);
  Op copy = e;
  copy.size = hs.size;
  copy.check = std::string(reinterpret_cast<const char*>(hs.digest.data()), hs.digest.size());
  copy.mtime_ns = static_cast<int64_t>(st.st_mtim.tv_sec) * 1000000000 + st.st_mtim.tv_nsec;
  return make_file(
      dir, name, copy, [&](Writer& w) { return pump(src, w); }, "file");
}

// ---- Parallel

Parallel::~Parallel() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
    queue_.clear();
  }
  more_.notify_all();
  for (std::thread& t : pool_)
    t.join();
}

std::optional<Parallel::Failure> Parallel::apply(uint64_t index, Op op, Reader* data, const char* what) {
  auto failure = [&](Status s) { return Failure{index, what, op.path, std::move(s).error()}; };
  std::unique_lock<std::mutex> lock(mu_);
  if (first_) {
    lock.unlock();
    return finish();
  }
  if (threads_ > 0 && data != nullptr && op.takes_data() && op.length <= kMaxBytes &&
      !busy_.contains(op.path)) {
    lock.unlock();
    std::string bytes(static_cast<size_t>(op.length), '\0');
    Exactly exactly(*data, op.length);
    if (Status read = read_exact(exactly, bytes.data(), bytes.size()); !read.ok())
      return earliest(failure(std::move(read)));
    lock.lock();
    if (pool_.size() < threads_ && pool_.size() < pending_ + 1) {
      try {
        pool_.emplace_back([this] { work(); });
      } catch (const std::system_error&) {
        // No thread to be had: written here, below.
      }
    }
    if (!pool_.empty()) {
      // Files in memory stay few.
      room_.wait(lock, [&] { return queue_.size() < 2 * threads_; });
      busy_.insert(op.path);
      pending_++;
      queue_.push_back(Job{index, what, std::move(op), std::move(bytes), data->name()});
      more_.notify_one();
      return std::nullopt;
    }
    lock.unlock();
    StringReader in(std::move(bytes), data->name());
    if (Status s = applier_.apply(op, &in); !s.ok())
      return earliest(failure(std::move(s)));
    lock.lock();
    data_bytes_ += op.length;
    return std::nullopt;
  }
  lock.unlock();
  if (auto f = finish())
    return f;
  if (Status s = applier_.apply(op, data); !s.ok())
    return failure(std::move(s));
  if (op.takes_data()) {
    lock.lock();
    data_bytes_ += op.length;
  }
  return std::nullopt;
}

uint64_t Parallel::data_bytes() {
  std::lock_guard<std::mutex> lock(mu_);
  return data_bytes_;
}

std::optional<Parallel::Failure> Parallel::earliest(Failure f) {
  if (auto queued = finish(); queued && queued->index < f.index)
    return queued;
  return f;
}

void Parallel::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    more_.wait(lock, [&] { return done_ || !queue_.empty(); });
    if (queue_.empty())
      return;
    Job job = std::move(queue_.front());
    queue_.pop_front();
    room_.notify_one();
    // After a failure, the rest are dropped: all come after it.
    if (!first_) {
      lock.unlock();
      Status s;
      try {
        StringReader in(std::move(job.data), std::move(job.from));
        s = applier_.apply(job.op, &in);
      } catch (const std::exception& e) {  // not across the thread's end
        s = Error(std::string("internal error: ") + e.what(), kExitFailure);
      }
      lock.lock();
      if (!s.ok() && (!first_ || job.index < first_->index))
        first_ = Failure{job.index, job.what, job.op.path, std::move(s).error()};
      else if (s.ok())
        data_bytes_ += job.op.length;
    }
    busy_.erase(job.op.path);
    if (--pending_ == 0)
      idle_.notify_all();
  }
}

std::optional<Parallel::Failure> Parallel::finish() {
  std::unique_lock<std::mutex> lock(mu_);
  idle_.wait(lock, [&] { return pending_ == 0; });
  return first_;
}

void Syncer::add(Fd fd, std::string name) {
  std::unique_lock<std::mutex> lock(mu_);
  if (pool_.size() < threads_ && pool_.size() < queue_.size() + busy_ + 1) {
    try {
      pool_.emplace_back([this] { work(); });
    } catch (const std::system_error&) {
      // No thread to be had: this one syncs.
    }
  }
  if (pool_.empty()) {
    lock.unlock();
    sync(std::move(fd), name);
    return;
  }
  room_.wait(lock, [&] { return queue_.size() < 4 * threads_; });
  queue_.emplace_back(std::move(fd), std::move(name));
  more_.notify_one();
}

void Syncer::work() {
  std::unique_lock<std::mutex> lock(mu_);
  for (;;) {
    more_.wait(lock, [&] { return done_ || !queue_.empty(); });
    if (queue_.empty())
      return;
    auto [fd, name] = std::move(queue_.front());
    queue_.pop_front();
    busy_++;
    room_.notify_one();
    lock.unlock();
    sync(std::move(fd), name);
    lock.lock();
    busy_--;
  }
}

void Syncer::sync(Fd fd, const std::string& name) {
  if (::fsync(fd.get()) == 0)
    return;
  int err = errno;
  std::lock_guard<std::mutex> lock(mu_);
  if (first_.ok())
    first_ = sys_error("cannot sync", name, err);
}

Status Syncer::finish() {
  {
    std::lock_guard<std::mutex> lock(mu_);
    done_ = true;
  }
  more_.notify_all();
  for (std::thread& t : pool_)
    t.join();
  pool_.clear();
  std::lock_guard<std::mutex> lock(mu_);
  done_ = false;
  return std::exchange(first_, Status{});
}

Status sync_changed(int root, const Changed& changed, const std::string& root_name, Syncer& syncer) {
  auto sync_one = [&](const std::string& rel) -> Status {
    Fd fd(fs::open_beneath(root, rel, O_RDONLY));
    if (!fd.valid()) {
      // Changed, then removed or replaced by a symlink by a later
      // command: nothing to sync (its directory is synced).
      if (errno == ENOENT || errno == ENOTDIR || errno == ELOOP)
        return {};
      return sys_error("cannot open", root_name + "/" + rel, errno);
    }
    syncer.add(std::move(fd), root_name + "/" + rel);
    return {};
  };
  Status s;
  for (const std::string& f : changed.inodes)
    if (s.ok())
      s = sync_one(f);
  for (const std::string& d : changed.dirs)
    if (s.ok() && !d.empty())
      s = sync_one(d);
  // The root too, beside the rest rather than after it.
  if (s.ok()) {
    Fd again(::dup(root));
    if (again.valid())
      syncer.add(std::move(again), root_name);
    else
      s = sys_error("cannot sync", root_name, errno);
  }
  Status synced = syncer.finish();
  CM_TRY(s);
  return synced;
}

// ---- clone

namespace {

Status clone_dir(int from, int to, const std::string& rel, const std::string& base_name) {
  int dfd = ::dup(from);
  if (dfd < 0)
    return sys_error("cannot read directory", base_name + "/" + rel, errno);
  DIR* d = ::fdopendir(dfd);
  if (d == nullptr) {
    ::close(dfd);
    return sys_error("cannot read directory", base_name + "/" + rel, errno);
  }
  std::vector<std::string> names;
  for (;;) {
    errno = 0;
    struct dirent* de = ::readdir(d);
    if (de == nullptr)
      break;
    if (std::strcmp(de->d_name, ".") != 0 && std::strcmp(de->d_name, "..") != 0)
      names.emplace_back(de->d_name);
  }
  int err = errno;
  ::closedir(d);
  if (err != 0)
    return sys_error("cannot read directory", base_name + "/" + rel, err);
  for (const std::string& n : names) {
    std::string path = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::fstatat(from, n.c_str(), &st, AT_SYMLINK_NOFOLLOW) != 0)
      return sys_error("cannot stat", base_name + "/" + path, errno);
    if (S_ISDIR(st.st_mode)) {
      if (::mkdirat(to, n.c_str(), 0700) != 0)
        return sys_error("cannot create directory", path, errno);
      Fd sub_from(::openat(from, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      Fd sub_to(::openat(to, n.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!sub_from.valid() || !sub_to.valid())
        return sys_error("cannot open directory", path, errno);
      CM_TRY(clone_dir(sub_from.get(), sub_to.get(), path, base_name));
      if (::fchmod(sub_to.get(), st.st_mode & 07777) != 0)
        return sys_error("cannot set the mode of", path, errno);
    } else if (S_ISREG(st.st_mode)) {
      if (::linkat(from, n.c_str(), to, n.c_str(), 0) == 0)
        continue;
      if (errno != EXDEV && errno != EPERM && errno != EMLINK)
        return sys_error("cannot link", path, errno);
      Fd in(::openat(from, n.c_str(), O_RDONLY | O_NOFOLLOW | O_CLOEXEC));
      Fd out(
          ::openat(to, n.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, st.st_mode & 07777));
      if (!in.valid() || !out.valid())
        return sys_error("cannot copy", path, errno);
      std::vector<char> buf(kBuf);
      for (;;) {
        ssize_t got = ::read(in.get(), buf.data(), buf.size());
        if (got < 0)
          return sys_error("cannot read", base_name + "/" + path, errno);
        if (got == 0)
          break;
        FdWriter w(out.get(), path);
        CM_TRY(w.write(buf.data(), static_cast<size_t>(got)));
        CM_TRY(w.flush());
      }
      struct timespec times[2] = {st.st_atim, st.st_mtim};
      ::futimens(out.get(), times);
      ::fchmod(out.get(), st.st_mode & 07777);
    } else if (S_ISLNK(st.st_mode)) {
      CM_ASSIGN(std::string target, fs::read_link_at(from, n, base_name + "/" + path));
      if (::symlinkat(target.c_str(), to, n.c_str()) != 0)
        return sys_error("cannot create symlink", path, errno);
    }
  }
  return {};
}

}  // namespace

Status clone_tree(int base_dir, int target_dir, const std::string& base_name) {
  return clone_dir(base_dir, target_dir, "", base_name);
}

}  // namespace cm::apply
