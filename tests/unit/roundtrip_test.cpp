// Property: for random trees BASE and NEW, cloning BASE and applying the
// delta table yields NEW exactly (contents, modes, symlinks), and BASE is
// left untouched even though the clone shares its files' inodes.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include <functional>
#include <utility>

#include "apply/applier.hpp"
#include "delta/delta.hpp"
#include "delta/zpatch.hpp"
#include "support.hpp"
#include "util/hash.hpp"

using namespace cm;
using namespace cm::delta;
using namespace cm::test;

namespace {

Status apply_table(const std::string& table, const std::string& base, const std::string& target,
                   apply::ApplyOptions opt = {}) {
  Fd bfd(::open(base.c_str(), O_RDONLY | O_DIRECTORY));
  Fd tfd(::open(target.c_str(), O_RDONLY | O_DIRECTORY));
  CM_TRY(apply::clone_tree(bfd.get(), tfd.get(), base));
  StringReader in(table);
  TableReader reader(in, "table");
  CM_TRY(reader.open());
  apply::Applier applier(bfd.get(), tfd.get(), target, opt);
  EntryData data(reader, "table");
  for (;;) {
    CM_ASSIGN(auto e, reader.next());
    if (!e)
      return {};
    CM_TRY(applier.apply(apply::from_entry(*e), &data));
  }
}

// Makes an empty directory at `path` and opens it, for an Applier.
Fd made_dir(const std::string& path) {
  make_dir(path);
  return Fd(::open(path.c_str(), O_RDONLY | O_DIRECTORY));
}

// A zstd patch from `basis` to `next`, as one operation on "page", and its
// delta.
struct ZstdCase {
  apply::Op op;
  std::string delta;
};
ZstdCase zstd_case(const std::string& basis, const std::string& next) {
  ZstdCase c;
  StringWriter delta;
  auto made = zstd_delta(basis, next, delta, next.size());
  EXPECT_TRUE(made.ok() && *made);
  c.delta = delta.data();
  auto digest = [](std::string_view s) {
    Digest d = sha256(s);
    return std::string(reinterpret_cast<const char*>(d.data()), d.size());
  };
  c.op.kind = apply::Kind::Patch;
  c.op.path = c.op.source = "page";
  c.op.mode = 0644;
  c.op.mtime_ns = 1700000000LL * 1000000000;
  c.op.size = next.size();
  c.op.length = c.delta.size();
  c.op.check = digest(next);
  c.op.basis_check = digest(basis);
  c.op.format = DeltaFormat::Zstd;
  return c;
}

// A delta's reader that first does something to the basis (cuts it, moves
// its mtime): someone else at work while the patch runs.
class MeddlingReader : public Reader {
 public:
  MeddlingReader(const std::string& data, std::function<Status()> meddle)
      : in_(data), meddle_(std::move(meddle)) {}
  Result<size_t> read(void* p, size_t n) override {
    if (meddle_) {
      CM_TRY(std::exchange(meddle_, nullptr)());
    }
    return in_.read(p, n);
  }
  const std::string& name() const override { return in_.name(); }

 private:
  StringReader in_;
  std::function<Status()> meddle_;
};

// While it lives, a write past `bytes` fails with EFBIG (SIGXFSZ ignored):
// a full disk without filling one. Each test runs in its own process.
class FileSizeLimit {
 public:
  explicit FileSizeLimit(rlim_t bytes) {
    ::getrlimit(RLIMIT_FSIZE, &old_);
    old_signal_ = ::signal(SIGXFSZ, SIG_IGN);
    struct rlimit lim = old_;
    lim.rlim_cur = bytes;
    EXPECT_EQ(::setrlimit(RLIMIT_FSIZE, &lim), 0);
  }
  ~FileSizeLimit() {
    ::setrlimit(RLIMIT_FSIZE, &old_);
    ::signal(SIGXFSZ, old_signal_);
  }
  FileSizeLimit(const FileSizeLimit&) = delete;
  FileSizeLimit& operator=(const FileSizeLimit&) = delete;

 private:
  struct rlimit old_ {};
  sighandler_t old_signal_ = SIG_DFL;
};

std::string make_table(const std::string& base, const std::string& next, Stats* stats = nullptr) {
  auto b = fs::open_disk_tree(base);
  auto n = fs::open_disk_tree(next);
  EXPECT_TRUE(b.ok() && n.ok());
  StringWriter out;
  TableWriter w(out);
  auto r = compute(**b, **n, Options{}, &w, {});
  EXPECT_TRUE(r.ok()) << r.error().message;
  if (stats != nullptr && r.ok())
    *stats = *r;
  return out.data();
}

}  // namespace

class RoundTrip : public ::testing::TestWithParam<int> {};

TEST_P(RoundTrip, ApplyingTheTableGivesTheNewTree) {
  TempDir tmp;
  std::string base = tmp / "base", next = tmp / "next", target = tmp / "target";
  make_dir(base);
  make_dir(next);
  make_dir(target);
  RandomTree rt(static_cast<uint64_t>(GetParam()));
  rt.make(base, 60);
  copy_tree(base, next);
  rt.mutate(next, 25);
  std::string before = tree_listing(base);

  std::string table = make_table(base, next);
  Status s = apply_table(table, base, target);
  ASSERT_TRUE(s.ok()) << s.error().message;
  auto diff = tree_diff(next, target);
  EXPECT_TRUE(diff.empty()) << diff.front();
  EXPECT_EQ(tree_listing(base), before) << "BASE was modified";
  // Written in place (a tree thrown away if the run stops): the same tree,
  // and BASE, whose inodes the clone shares, still untouched.
  std::string direct = tmp / "direct";
  make_dir(direct);
  apply::ApplyOptions opt;
  opt.direct = true;
  s = apply_table(table, base, direct, opt);
  ASSERT_TRUE(s.ok()) << s.error().message;
  diff = tree_diff(next, direct);
  EXPECT_TRUE(diff.empty()) << diff.front();
  EXPECT_EQ(tree_listing(base), before) << "BASE was modified in place";
}

INSTANTIATE_TEST_SUITE_P(RandomTrees, RoundTrip, ::testing::Range(1, 41));

TEST(RoundTripFixed, EmptyBaseIsAFullCopy) {
  TempDir tmp;
  make_dir(tmp / "base");
  make_dir(tmp / "next");
  make_dir(tmp / "target");
  RandomTree rt(99);
  rt.make(tmp / "next", 80);
  Stats st;
  std::string table = make_table(tmp / "base", tmp / "next", &st);
  ASSERT_TRUE(apply_table(table, tmp / "base", tmp / "target").ok());
  EXPECT_TRUE(tree_diff(tmp / "next", tmp / "target").empty());
  EXPECT_EQ(st.files_deleted, 0u);
}

// A basis of 1 MiB or more is hashed beside the patching: a wrong one is
// still refused, and nothing takes the file's name.
TEST(RoundTripFixed, PatchAgainstALargeWrongBasisIsRefused) {
  TempDir tmp;
  make_dir(tmp / "base");
  make_dir(tmp / "next");
  make_dir(tmp / "target");
  RandomTree rt(8);
  std::string page = rt.random_content(3 << 20);
  page.resize(3 << 20, 'p');
  write_file(tmp / "base/page", page);
  // An insertion: the positional delta loses to a zstd one.
  write_file(tmp / "next/page", page.substr(0, 1000) + "inserted" + page.substr(1000));
  set_mtime(tmp / "next/page", 1700000000);
  std::string table = make_table(tmp / "base", tmp / "next");
  StringReader in(table);
  TableReader reader(in, "table");
  ASSERT_TRUE(reader.open().ok());
  bool zstd_patch = false;
  for (int i = 0; i < 10; i++) {
    auto e = reader.next();
    ASSERT_TRUE(e.ok());
    if (!e->has_value())
      break;
    if ((*e)->path == "page")
      zstd_patch = (*e)->op == Op::Patch && (*e)->format == DeltaFormat::Zstd;
  }
  ASSERT_TRUE(zstd_patch) << "the table does not patch 'page' with a zstd delta";
  // The right basis: patched.
  make_dir(tmp / "good");
  Status good = apply_table(table, tmp / "base", tmp / "good");
  ASSERT_TRUE(good.ok()) << good.error().message;
  EXPECT_EQ(read_file(tmp / "good/page"), read_file(tmp / "next/page"));
  // A wrong one: refused.
  page[2 << 20] ^= 1;
  write_file(tmp / "base/page", page);
  Status s = apply_table(table, tmp / "base", tmp / "target");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("basis 'page'"), std::string::npos) << s.error().message;
  EXPECT_EQ(read_file(tmp / "target/page"), read_file(tmp / "base/page"));
}

// The basis of 1 MiB or more is judged after the result is written (its
// hash is joined then): a wrong basis is refused even where the patch comes
// out right, because the bytes that differ are ones the delta never uses.
TEST(RoundTripFixed, ALargeWrongBasisIsRefusedEvenWhenThePatchComesOutRight) {
  TempDir tmp;
  make_dir(tmp / "base");
  make_dir(tmp / "next");
  make_dir(tmp / "target");
  RandomTree rt(10);
  std::string page = rt.random_content(3 << 20);
  page.resize(3 << 20, 'p');
  write_file(tmp / "base/page", page);
  // The first 2 MiB with an insertion: the last MiB of the basis is unused.
  write_file(tmp / "next/page", page.substr(0, 1000) + "inserted" + page.substr(1000, (2 << 20) - 1000));
  set_mtime(tmp / "next/page", 1700000000);
  std::string table = make_table(tmp / "base", tmp / "next");
  StringReader in(table);
  TableReader reader(in, "table");
  ASSERT_TRUE(reader.open().ok());
  std::string delta;
  for (int i = 0; i < 10; i++) {
    auto e = reader.next();
    ASSERT_TRUE(e.ok());
    if (!e->has_value())
      break;
    if ((*e)->path == "page") {
      ASSERT_TRUE((*e)->op == Op::Patch && (*e)->format == DeltaFormat::Zstd)
          << "the table does not patch 'page' with a zstd delta";
      char buf[65536];
      for (;;) {
        auto got = reader.read_data(buf, sizeof buf);
        ASSERT_TRUE(got.ok());
        if (*got == 0)
          break;
        delta.append(buf, *got);
      }
    }
  }
  page[(5 << 20) / 2] ^= 1;
  write_file(tmp / "base/page", page);
  // The delta alone gives the new content from this basis too...
  std::string out((2 << 20) + 9, '\0');
  auto made = zstd_patch(page, delta, out, "delta");
  ASSERT_TRUE(made.ok()) << made.error().message;
  out.resize(*made);
  ASSERT_EQ(out, read_file(tmp / "next/page"));
  // ...and still the basis is refused, and nothing takes the file's name.
  Status s = apply_table(table, tmp / "base", tmp / "target");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("basis 'page'"), std::string::npos) << s.error().message;
  EXPECT_EQ(s.error().code, kExitFailure);
  EXPECT_EQ(read_file(tmp / "target/page"), read_file(tmp / "base/page"));
}

// A large basis is mapped, not read: a basis that someone changes while it
// is patched is reported as changed, not taken for a wrong basis or a bad
// delta, and nothing takes the file's name. The delta's reader cuts it.
TEST(RoundTripFixed, ABasisCutWhileItIsPatchedIsReportedAsChanged) {
  RandomTree rt(9);
  std::string basis = rt.random_content(300000);
  basis.resize(300000, 'b');
  std::string next = basis.substr(0, 5000) + "inserted" + basis.substr(5000);
  auto [op, delta] = zstd_case(basis, next);
  // Cut within the last page (no fault: its bytes read as zeros), and cut
  // to nothing (every page gone: faults).
  auto page = static_cast<off_t>(::sysconf(_SC_PAGESIZE));
  off_t last_page = (300000 - 1) / page * page;
  for (off_t cut_to : {last_page + (300000 - last_page) / 2, off_t{0}}) {
    TempDir tmp;
    Fd bfd = made_dir(tmp / "base");
    Fd tfd = made_dir(tmp / "target");
    write_file(tmp / "base/page", basis);
    // Without the cut, the same patch succeeds.
    {
      Fd gfd = made_dir(tmp / "good");
      StringReader in(delta);
      Status ok = apply::Applier(bfd.get(), gfd.get(), tmp / "good").apply(op, &in);
      ASSERT_TRUE(ok.ok()) << ok.error().message;
      EXPECT_EQ(read_file(tmp / "good/page"), next);
    }
    std::string victim = tmp / "base/page";
    MeddlingReader in(delta, [&]() -> Status {
      if (::truncate(victim.c_str(), cut_to) != 0)
        return Error("cannot truncate " + victim);
      return {};
    });
    Status s = apply::Applier(bfd.get(), tfd.get(), tmp / "target").apply(op, &in);
    ASSERT_FALSE(s.ok()) << "cut to " << cut_to;
    EXPECT_NE(s.error().message.find("basis 'page' changed while it was read"), std::string::npos)
        << "cut to " << cut_to << ": " << s.error().message;
    EXPECT_EQ(s.error().code, kExitFailure);
    struct stat st;
    EXPECT_NE(::lstat((tmp / "target/page").c_str(), &st), 0);
  }
}

// The basis's verdict comes before a failed write's: a full disk must not
// hide a wrong basis (1 MiB or more: hashed beside the patching), whether
// the file is written at its name or under a temporary one.
TEST(RoundTripFixed, AWrongLargeBasisIsNamedEvenWhenTheResultCannotBeWritten) {
  RandomTree rt(11);
  std::string basis = rt.random_content(3 << 20);
  basis.resize(3 << 20, 'b');
  auto [op, delta] = zstd_case(basis, basis.substr(0, 5000) + "inserted" + basis.substr(5000));
  basis[100] ^= 1;
  for (bool direct : {false, true}) {
    TempDir tmp;
    Fd bfd = made_dir(tmp / "base");
    Fd tfd = made_dir(tmp / "target");
    write_file(tmp / "base/page", basis);
    ASSERT_TRUE(apply::clone_tree(bfd.get(), tfd.get(), tmp / "base").ok());
    apply::ApplyOptions opt;
    opt.direct = direct;
    StringReader in(delta);
    Status s;
    {
      FileSizeLimit limit(1 << 20);
      s = apply::Applier(bfd.get(), tfd.get(), tmp / "target", opt).apply(op, &in);
    }
    ASSERT_FALSE(s.ok()) << "direct " << direct;
    EXPECT_NE(s.error().message.find("made against another version"), std::string::npos)
        << "direct " << direct << ": " << s.error().message;
    EXPECT_EQ(s.error().code, kExitFailure);
    // Under a temporary name, the old file stays; written at its name (in
    // a tree the caller drops on failure), nothing is left there.
    struct stat st;
    if (direct)
      EXPECT_NE(::lstat((tmp / "target/page").c_str(), &st), 0);
    else
      EXPECT_EQ(read_file(tmp / "target/page"), basis);
  }
}

// The same for a basis that changes while it is read (a mapped one under
// 1 MiB, hashed before the patching, its mtime moved by the delta's reader).
TEST(RoundTripFixed, ABasisChangedWhileReadIsNamedEvenWhenTheResultCannotBeWritten) {
  RandomTree rt(12);
  std::string basis = rt.random_content(600000);
  basis.resize(600000, 'b');
  auto [op, delta] = zstd_case(basis, basis.substr(0, 5000) + "inserted" + basis.substr(5000));
  TempDir tmp;
  Fd bfd = made_dir(tmp / "base");
  Fd tfd = made_dir(tmp / "target");
  write_file(tmp / "base/page", basis);
  std::string victim = tmp / "base/page";
  MeddlingReader in(delta, [&]() -> Status {
    struct timespec times[2] = {{0, UTIME_OMIT}, {1600000000, 0}};
    if (::utimensat(AT_FDCWD, victim.c_str(), times, 0) != 0)
      return Error("cannot touch " + victim);
    return {};
  });
  Status s;
  {
    FileSizeLimit limit(100000);
    s = apply::Applier(bfd.get(), tfd.get(), tmp / "target").apply(op, &in);
  }
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("basis 'page' changed while it was read"), std::string::npos)
      << s.error().message;
  EXPECT_EQ(s.error().code, kExitFailure);
}

TEST(RoundTripFixed, PatchAgainstAWrongBasisIsRefused) {
  TempDir tmp;
  make_dir(tmp / "base");
  make_dir(tmp / "next");
  make_dir(tmp / "target");
  RandomTree rt(7);
  std::string page = rt.random_content(50000);
  page.resize(50000, 'p');
  write_file(tmp / "base/page", page);
  page[100] = '!';
  write_file(tmp / "next/page", page);
  set_mtime(tmp / "next/page", 1700000000);
  std::string table = make_table(tmp / "base", tmp / "next");
  write_file(tmp / "base/page", page + "different basis");
  Status s = apply_table(table, tmp / "base", tmp / "target");
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("expected content"), std::string::npos);
}

// ---- Parallel: files written two at a time, yet each operation sees what
// came before it, and a failure is the earliest one.

namespace {

std::string digest_of(std::string_view s) {
  Digest d = sha256(s);
  return std::string(reinterpret_cast<const char*>(d.data()), d.size());
}

apply::Op put_op(const std::string& path, const std::string& content) {
  apply::Op op;
  op.kind = apply::Kind::Put;
  op.path = path;
  op.mode = 0644;
  op.mtime_ns = 1700000000LL * 1000000000;
  op.size = op.length = content.size();
  op.check = digest_of(content);
  return op;
}

apply::Op op_at(apply::Kind kind, const std::string& path) {
  apply::Op op;
  op.kind = kind;
  op.path = path;
  op.mode = 0755;
  return op;
}

// Gives operations to a Parallel one by one, as cm-apply does, each with
// its data from "the-pack".
struct Feed {
  Feed(int base, int target, const std::string& name, apply::ApplyOptions opt, size_t threads = 2)
      : applier(base, target, name, opt), parallel(applier, threads) {}
  std::optional<apply::Parallel::Failure> add(apply::Op op, const std::string& data = "") {
    StringReader in(data, "the-pack");
    return parallel.apply(++index, std::move(op), &in, "the op");
  }
  apply::Applier applier;
  apply::Parallel parallel;
  uint64_t index = 0;
};

}  // namespace

TEST(Parallel, EachOperationSeesWhatCameBeforeIt) {
  for (bool direct : {false, true}) {
    for (int round = 0; round < 10; round++) {
      SCOPED_TRACE("direct " + std::to_string(direct) + ", round " + std::to_string(round));
      TempDir tmp;
      Fd bfd = made_dir(tmp / "base");
      Fd tfd = made_dir(tmp / "target");
      apply::ApplyOptions opt;
      opt.direct = direct;
      Feed feed(bfd.get(), tfd.get(), tmp / "target", opt);
      std::vector<std::string> content;
      std::string again = random_bytes(30000, round + 7);
      for (int i = 0; i < 40; i++) {
        // 3, 5 and 7 large, so that they are still being written when
        // the next operation comes.
        size_t size = i == 3 || i == 5 || i == 7 ? 900000 : 20000 + 997 * i;
        content.push_back(random_bytes(size, round * 100 + i));
        ASSERT_FALSE(feed.add(put_op("f" + std::to_string(i), content.back()), content.back()));
        // The same path again: the second one wins.
        if (i == 3) {
          ASSERT_FALSE(feed.add(put_op("f3", again), again));
        }
        // A removal and a copy from the target of a file just queued.
        if (i == 5) {
          ASSERT_FALSE(feed.add(op_at(apply::Kind::Remove, "f5")));
        }
        if (i == 7) {
          apply::Op copy = put_op("h", content[7]);
          copy.kind = apply::Kind::CopyNew;
          copy.source = "f7";
          copy.length = 0;
          ASSERT_FALSE(feed.add(copy));
        }
      }
      // Into a directory made after files were queued, beside them.
      ASSERT_FALSE(feed.add(op_at(apply::Kind::Mkdir, "d")));
      for (int i = 0; i < 20; i++)
        ASSERT_FALSE(feed.add(put_op("d/g" + std::to_string(i), content[i]), content[i]));
      // Too large to hold in memory: streamed here, after the rest.
      std::string large = random_bytes(apply::Parallel::kMaxBytes + 1000, round + 9);
      ASSERT_FALSE(feed.add(put_op("d/large", large), large));
      ASSERT_FALSE(feed.parallel.finish());

      for (int i = 0; i < 40; i++) {
        std::string path = tmp / ("target/f" + std::to_string(i));
        if (i == 5)
          EXPECT_NE(::access(path.c_str(), F_OK), 0) << path;
        else
          EXPECT_EQ(read_file(path), i == 3 ? again : content[i]) << path;
      }
      for (int i = 0; i < 20; i++)
        EXPECT_EQ(read_file(tmp / ("target/d/g" + std::to_string(i))), content[i]);
      EXPECT_EQ(read_file(tmp / "target/h"), content[7]);
      EXPECT_EQ(read_file(tmp / "target/d/large"), large);
      uint64_t total = 0;
      for (int i = 0; i < 40; i++)
        total += content[i].size() * (i < 20 ? 2 : 1);
      total += again.size() + content[7].size() + large.size();
      EXPECT_EQ(feed.applier.bytes_written(), total);
    }
  }
}

TEST(Parallel, TheEarliestFailureIsTheOneReported) {
  for (int round = 0; round < 20; round++) {
    SCOPED_TRACE("round " + std::to_string(round));
    TempDir tmp;
    Fd bfd = made_dir(tmp / "base");
    Fd tfd = made_dir(tmp / "target");
    Feed feed(bfd.get(), tfd.get(), tmp / "target", {});
    std::optional<apply::Parallel::Failure> failure;
    for (int i = 1; i <= 40 && !failure; i++) {
      std::string c = random_bytes(i == 10 ? 400000 : 30000, round * 100 + i);
      apply::Op op = put_op("f" + std::to_string(i), c);
      // Number 10 fails last (it is the largest), 11 and 25 first.
      if (i == 10 || i == 11 || i == 25)
        c[0] ^= 1;
      failure = feed.add(op, c);
    }
    if (!failure)
      failure = feed.parallel.finish();
    ASSERT_TRUE(failure);
    EXPECT_EQ(failure->index, 10u);
    EXPECT_EQ(failure->path, "f10");
    EXPECT_STREQ(failure->what, "the op");
    EXPECT_NE(failure->error.message.find("target/f10'"), std::string::npos) << failure->error.message;
    // Nothing runs after a failure: a directory asked for is not made.
    EXPECT_TRUE(feed.add(op_at(apply::Kind::Mkdir, "late")));
    EXPECT_NE(::access((tmp / "target/late").c_str(), F_OK), 0);
  }
}

TEST(Parallel, ErrorsNameWhereTheDataCameFrom) {
  TempDir tmp;
  Fd bfd = made_dir(tmp / "base");
  Fd tfd = made_dir(tmp / "target");
  write_file(tmp / "base/page", std::string(300000, 'b'));
  {
    // A delta that is not one.
    Feed feed(bfd.get(), tfd.get(), tmp / "target", {});
    ZstdCase z = zstd_case(std::string(300000, 'b'), std::string(300000, 'b') + "more");
    std::string junk(z.delta.size(), 'j');
    auto f = feed.add(z.op, junk);
    if (!f)
      f = feed.parallel.finish();
    ASSERT_TRUE(f);
    EXPECT_EQ(f->index, 1u);
    EXPECT_NE(f->error.message.find("the-pack"), std::string::npos) << f->error.message;
  }
  {
    // Data shorter than the operation says.
    Feed feed(bfd.get(), tfd.get(), tmp / "target", {});
    std::string c = "some content";
    auto f = feed.add(put_op("short", c), c.substr(0, 4));
    ASSERT_TRUE(f);
    EXPECT_EQ(f->index, 1u);
    EXPECT_NE(f->error.message.find("'the-pack': data ends early"), std::string::npos) << f->error.message;
  }
}

TEST(Parallel, WithNoThreadsEachOperationIsDoneWhenItReturns) {
  TempDir tmp;
  Fd bfd = made_dir(tmp / "base");
  Fd tfd = made_dir(tmp / "target");
  Feed feed(bfd.get(), tfd.get(), tmp / "target", {}, 0);
  uint64_t total = 0;
  for (int i = 0; i < 20; i++) {
    std::string c = random_bytes(300000, i);
    ASSERT_FALSE(feed.add(put_op("f" + std::to_string(i), c), c));
    total += c.size();
    EXPECT_EQ(read_file(tmp / ("target/f" + std::to_string(i))), c);
    EXPECT_EQ(feed.applier.bytes_written(), total);
    EXPECT_EQ(feed.parallel.data_bytes(), total);
  }
  ASSERT_FALSE(feed.parallel.finish());
}
