// The comparison itself, on in-memory trees: walk order, what is sent and
// how, and what happens when the trees change under the scan.
#include <gtest/gtest.h>

#include "delta/delta.hpp"
#include "delta/zpatch.hpp"
#include "mem_tree.hpp"
#include "support.hpp"
#include "util/hash.hpp"

using namespace cm;
using namespace cm::delta;
using cm::test::MemTree;
using cm::test::random_bytes;

namespace {

struct Outcome {
  Status status;
  Stats stats;
  std::vector<Entry> entries;
  std::vector<std::string> warnings;
  std::string table;
};

Outcome run(MemTree& base, MemTree& next, Options opt = {}) {
  Outcome o;
  StringWriter out;
  TableWriter w(out);
  Callbacks cb;
  cb.warning = [&](const std::string& m) { o.warnings.push_back(m); };
  auto r = compute(base, next, opt, &w, cb);
  if (!r.ok()) {
    o.status = std::move(r).error();
    return o;
  }
  o.stats = *r;
  o.table = out.data();
  StringReader in(o.table);
  TableReader tr(in, "t");
  EXPECT_TRUE(tr.open().ok());
  for (;;) {
    auto e = tr.next();
    EXPECT_TRUE(e.ok()) << e.error().message;
    if (!e.ok() || !*e)
      break;
    o.entries.push_back(**e);
  }
  return o;
}

std::vector<std::string> ops(const Outcome& o) {
  std::vector<std::string> v;
  for (const Entry& e : o.entries)
    v.push_back(std::string(op_name(e.op)) + " " + e.path);
  return v;
}

// Pseudo-random lowercase text: no repeats for the matcher to confuse.
std::string text(size_t n, char seed) {
  std::string s;
  uint64_t x = 0x9E3779B97F4A7C15ull * static_cast<uint64_t>(seed + 1);
  for (size_t i = 0; i < n; i++) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    s += static_cast<char>('a' + x % 26);
  }
  return s;
}

}  // namespace

TEST(Scan, DepthFirstWithSiblingsSortedByBytes) {
  MemTree t;
  t.file("b", "");
  t.file("a.c", "");
  t.file("a-b", "");
  t.dir("a");
  t.file("a/b", "");
  t.dir("a/z");
  t.file("a/z/1", "");
  auto nodes = scan(t, nullptr, {});
  ASSERT_TRUE(nodes.ok());
  std::vector<std::string> paths;
  for (auto& n : *nodes)
    paths.push_back(n.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"a", "a/b", "a/z", "a/z/1", "a-b", "a.c", "b"}));
  for (size_t i = 1; i < paths.size(); i++)
    EXPECT_TRUE(fs::path_less(paths[i - 1], paths[i]));
}

TEST(Scan, SkipsSpecialFilesWithAWarning) {
  MemTree t;
  t.special("fifo");
  t.file("f", "x");
  std::vector<std::string> warnings;
  Callbacks cb;
  cb.warning = [&](const std::string& m) { warnings.push_back(m); };
  uint64_t skipped = 0;
  auto nodes = scan(t, nullptr, cb, &skipped);
  ASSERT_TRUE(nodes.ok());
  EXPECT_EQ(nodes->size(), 1u);
  EXPECT_EQ(skipped, 1u);
  ASSERT_EQ(warnings.size(), 1u);
  EXPECT_NE(warnings[0].find("mem/fifo"), std::string::npos);
}

TEST(Scan, ExcludedDirectoriesAreNotEntered) {
  MemTree t;
  t.dir("cache");
  t.file("cache/x", "x");
  t.file("keep", "k");
  std::vector<std::string> listed;
  t.on_list = [&](const std::string& d) { listed.push_back(d); };
  fs::Filter f;
  f.add(false, "cache/");
  auto nodes = scan(t, &f, {});
  ASSERT_TRUE(nodes.ok());
  ASSERT_EQ(nodes->size(), 1u);
  EXPECT_EQ((*nodes)[0].path, "keep");
  EXPECT_EQ(listed, std::vector<std::string>{""});
}

TEST(Delta, IdenticalTreesGiveAnEmptyTable) {
  MemTree a, b;
  for (MemTree* t : {&a, &b}) {
    t->dir("d");
    t->file("d/f", "content");
    t->symlink("l", "d/f");
  }
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_TRUE(o.entries.empty());
  EXPECT_EQ(o.stats.data_bytes, 0u);
}

TEST(Delta, MtimeOnlyChangeSendsNothing) {
  MemTree a, b;
  a.file("page.html", text(5000, 1), 0644, 1000);
  b.file("page.html", text(5000, 1), 0644, 2000);  // rebuilt, same bytes
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_TRUE(o.entries.empty());
}

TEST(Delta, ModeOnlyChangeIsAChmod) {
  MemTree a, b;
  a.file("run.sh", "echo", 0644);
  b.file("run.sh", "echo", 0755);
  a.dir("d", 0755);
  b.dir("d", 0700);
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(ops(o), (std::vector<std::string>{"chmod d", "chmod run.sh"}));
  EXPECT_EQ(o.entries[1].mode, 0755u);
  EXPECT_EQ(o.stats.data_bytes, 0u);
}

TEST(Delta, DeletedDirectoryContentsComeFirst) {
  MemTree a, b;
  a.dir("d");
  a.dir("d/e");
  a.file("d/e/f", "x");
  a.file("d/g", "y");
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(ops(o), (std::vector<std::string>{"delete d/g", "delete d/e/f", "delete d/e", "delete d"}));
  EXPECT_EQ(o.stats.files_deleted, 2u);
  EXPECT_EQ(o.stats.dirs_deleted, 2u);
}

TEST(Delta, TypeChangesDeleteThenCreate) {
  MemTree a, b;
  a.file("x", "was a file");
  b.dir("x");
  b.file("x/inside", "now a directory");
  a.dir("y");
  a.file("y/old", "was a directory");
  b.symlink("y", "x");
  a.symlink("z", "x");
  b.file("z", "was a symlink");
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(ops(o), (std::vector<std::string>{"delete x", "mkdir x", "file x/inside", "delete y/old",
                                              "delete y", "symlink y", "delete z", "file z"}));
}

TEST(Delta, SymlinksAreRecordedNotFollowed) {
  MemTree a, b;
  a.symlink("l", "old-target");
  b.symlink("l", "/etc/passwd");
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  ASSERT_EQ(o.entries.size(), 1u);
  EXPECT_EQ(o.entries[0].op, Op::Symlink);
  EXPECT_EQ(o.entries[0].target, "/etc/passwd");
  EXPECT_EQ(b.opens, 0);
}

TEST(Delta, MovedFileIsACopyNotData) {
  MemTree a, b;
  std::string big = text(50000, 3);
  a.file("old/name.bin", big);
  b.file("new/name.bin", big);
  a.dir("old");
  b.dir("new");
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(o.stats.data_bytes, 0u);
  EXPECT_EQ(o.stats.sent_copy, 1u);
  auto it = std::find_if(o.entries.begin(), o.entries.end(), [](const Entry& e) { return e.op == Op::Copy; });
  ASSERT_NE(it, o.entries.end());
  EXPECT_EQ(it->source, "old/name.bin");
  EXPECT_FALSE(it->source_new);
}

TEST(Delta, DuplicateNewContentIsSentOnce) {
  MemTree a, b;
  std::string lic = text(3000, 4);
  b.file("a/LICENSE", lic);
  b.file("b/LICENSE", lic);
  b.dir("a");
  b.dir("b");
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(o.stats.data_bytes, 3000u);
  EXPECT_EQ(ops(o), (std::vector<std::string>{"mkdir a", "file a/LICENSE", "mkdir b", "copy b/LICENSE"}));
  EXPECT_TRUE(o.entries[3].source_new);
  EXPECT_EQ(o.entries[3].source, "a/LICENSE");
}

TEST(Delta, HashRenamedAssetIsADeltaAgainstTheOldName) {
  MemTree a, b;
  std::string js = text(40000, 5);
  a.file("assets/search-index.3f2a9c81.js", js);
  a.file("assets/other.js", text(40000, 9));
  std::string js2 = js;
  js2.replace(20000, 5, "EDIT!");
  b.file("assets/search-index.88bb0177.js", js2);
  b.file("assets/other.js", text(40000, 9));
  a.dir("assets");
  b.dir("assets");
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  auto it =
      std::find_if(o.entries.begin(), o.entries.end(), [](const Entry& e) { return e.op == Op::Patch; });
  ASSERT_NE(it, o.entries.end());
  EXPECT_EQ(it->path, "assets/search-index.88bb0177.js");
  EXPECT_EQ(it->source, "assets/search-index.3f2a9c81.js");
  EXPECT_EQ(it->source_hash, sha256(js));
  EXPECT_LT(o.stats.data_bytes, 1000u);
}

TEST(Delta, ChangedFileWithSmallEditIsADelta) {
  MemTree a, b;
  std::string page = text(100000, 6);
  a.file("index.html", page, 0644, 1);
  page[500] = '#';
  b.file("index.html", page, 0644, 2);
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  ASSERT_EQ(o.entries.size(), 1u);
  EXPECT_EQ(o.entries[0].op, Op::Patch);
  EXPECT_EQ(o.entries[0].hash, sha256(page));
  EXPECT_LT(o.entries[0].data_size, 500u);
}

TEST(Delta, UnrelatedContentIsSentWhole) {
  MemTree a, b;
  auto noise = [](uint64_t seed) {
    std::string s(20000, '\0');
    for (auto& c : s) {
      seed = seed * 6364136223846793005ull + 1442695040888963407ull;
      c = static_cast<char>(seed >> 56);
    }
    return s;
  };
  a.file("blob", noise(1), 0644, 1);
  std::string y = noise(2);  // no delta can help
  b.file("blob", y, 0644, 2);
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  ASSERT_EQ(o.entries.size(), 1u);
  EXPECT_EQ(o.entries[0].op, Op::File);
  EXPECT_EQ(o.stats.data_bytes, y.size());
}

TEST(Delta, SmallFilesGetZstdDeltasLargeOnesLibrsync) {
  MemTree a, b;
  std::string page = text(100000, 6);
  a.file("page", page, 0644, 1);
  std::string edited = page;
  edited.insert(50000, "an insertion shifts everything after it");
  b.file("page", edited, 0644, 2);
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok());
  ASSERT_EQ(o.entries.size(), 1u);
  EXPECT_EQ(o.entries[0].op, Op::Patch);
  EXPECT_EQ(o.entries[0].format, DeltaFormat::Zstd);
  EXPECT_LT(o.entries[0].data_size, 200u);

  // Past kMaxZstdPatch the basis is not held in memory: librsync.
  MemTree c, d;
  std::string big = text(kMaxZstdPatch + 4096, 7);
  c.file("big", big, 0644, 1);
  big.insert(1000, "shifted");
  d.file("big", big, 0644, 2);
  auto p = run(c, d);
  ASSERT_TRUE(p.status.ok());
  ASSERT_EQ(p.entries.size(), 1u);
  EXPECT_EQ(p.entries[0].format, DeltaFormat::Rsync);
  EXPECT_LT(p.entries[0].data_size, 2000u);
}

TEST(Delta, WholeFileOptionAndTinyFiles) {
  MemTree a, b;
  std::string page = text(100000, 6);
  a.file("big", page, 0644, 1);
  a.file("tiny", "0123456789", 0644, 1);
  page[10] = '#';
  b.file("big", page, 0644, 2);
  b.file("tiny", "0123456780", 0644, 2);
  Options opt;
  opt.whole_file = true;
  auto o = run(a, b, opt);
  ASSERT_TRUE(o.status.ok());
  EXPECT_EQ(o.stats.sent_whole, 2u);
  EXPECT_EQ(o.stats.sent_patch, 0u);
  auto d = run(a, b);
  EXPECT_EQ(d.stats.sent_patch, 1u);  // big
  EXPECT_EQ(d.stats.sent_whole, 1u);  // tiny: below kMinDeltaSize
}

TEST(Delta, DecisionThresholds) {
  EXPECT_FALSE(worth_delta(kMinDeltaSize - 1, 1 << 20));
  EXPECT_TRUE(worth_delta(kMinDeltaSize, kMinDeltaSize));
  EXPECT_FALSE(worth_delta(1 << 20, 10));
  EXPECT_EQ(delta_limit(1000), 500u);
}

TEST(Delta, ChecksumFindsSameSizeSameMtimeChanges) {
  MemTree a, b;
  a.file("f", "aaaa", 0644, 7);
  b.file("f", "bbbb", 0644, 7);
  EXPECT_TRUE(run(a, b).entries.empty());
  Options opt;
  opt.checksum = true;
  auto o = run(a, b, opt);
  ASSERT_EQ(o.entries.size(), 1u);
  EXPECT_EQ(o.entries[0].op, Op::File);
}

TEST(Delta, FileVanishingDuringTheScanIsAnError) {
  MemTree a, b;
  b.file("f", "content", 0644, 2);
  b.on_open = [&](const std::string& p) { b.remove(p); };
  auto o = run(a, b);
  ASSERT_FALSE(o.status.ok());
  EXPECT_EQ(o.status.error().code, kExitChanged);
  EXPECT_NE(o.status.error().message.find("mem/f"), std::string::npos);
}

TEST(Delta, FileChangingBetweenReadsIsAnError) {
  // Files above 1 MiB are hashed first and read again to be sent.
  const size_t size = (1u << 20) + 1000;
  MemTree a, b;
  b.file("f", std::string(size, 'a'), 0644, 2);
  int opened = 0;
  b.on_open = [&](const std::string& p) {
    if (++opened == 2)
      b.at(p).data = std::string(size, 'b');  // same size and mtime: only the content tells
  };
  auto o = run(a, b);
  ASSERT_FALSE(o.status.ok());
  EXPECT_EQ(o.status.error().code, kExitChanged);
}

TEST(Delta, ASmallFileIsReadOnceAndSentAsRead) {
  // Up to 1 MiB a new file is read once: the bytes hashed are the bytes
  // sent, so a change after that read cannot reach the table.
  MemTree a, b;
  b.file("f", std::string(1000, 'a'), 0644, 2);
  int opened = 0;
  b.on_open = [&](const std::string& p) {
    if (++opened == 2)
      b.at(p).data = std::string(1000, 'b');
  };
  auto o = run(a, b);
  ASSERT_TRUE(o.status.ok()) << o.status.error().message;
  EXPECT_EQ(opened, 1);
  ASSERT_EQ(o.entries.size(), 1u);
  EXPECT_EQ(o.entries[0].op, Op::File);
  EXPECT_NE(o.table.find(std::string(1000, 'a')), std::string::npos);
  EXPECT_EQ(o.table.find(std::string(1000, 'b')), std::string::npos);
  EXPECT_EQ(o.entries[0].hash, sha256(std::string(1000, 'a')));
}

TEST(Delta, ManifestSavesRereadingTheShadow) {
  MemTree a, b;
  a.file("f", text(10000, 1), 0644, 1);
  b.file("f", text(10000, 2), 0644, 2);  // the same size, other bytes: a patch
  Manifest m;
  Options opt;
  opt.manifest = &m;
  opt.now_ns = 1'000'000'000'000;
  ASSERT_TRUE(run(a, b, opt).status.ok());
  EXPECT_EQ(m.size(), 1u);  // the basis's hash, learned for the patch
  MemTree c;
  c.file("f", text(10000, 1), 0644, 2);  // a's bytes, another mtime
  int before = a.opens;
  Outcome r = run(a, c, opt);
  ASSERT_TRUE(r.status.ok());
  EXPECT_TRUE(r.entries.empty());
  EXPECT_EQ(a.opens, before);  // the shadow's hash came from the manifest
}

TEST(Delta, SameSizeFilesWithoutAKnownHashAreComparedByteByByte) {
  MemTree a, b;
  a.file("same", text(300000, 1), 0644, 1);
  b.file("same", text(300000, 1), 0644, 2);  // touched, as a rebuild does
  std::string other = text(300000, 1);
  other[299999] ^= 1;  // differs in its last byte, after the first chunk
  a.file("other", text(300000, 1), 0644, 1);
  b.file("other", other, 0644, 2);
  Outcome r = run(a, b);
  ASSERT_TRUE(r.status.ok()) << r.status.error().message;
  ASSERT_EQ(r.entries.size(), 1u);
  EXPECT_EQ(r.entries[0].path, "other");
  EXPECT_EQ(r.entries[0].hash, sha256(other));
  // "same": both read once; "other": both compared, then hashed and
  // diffed. Never more than read side by side plus the delta's reads.
  EXPECT_GE(r.stats.hashed_bytes, 4u * 300000);
}

TEST(Delta, ComparingOnThreadsGivesTheSameTable) {
  // A rebuild: every mtime touched; most files the same, some changed in
  // their last byte, one resized, one new, one gone.
  auto make = [](MemTree& a, MemTree& b) {
    for (MemTree* t : {&a, &b})
      for (int d = 0; d < 4; d++)
        t->dir("d" + std::to_string(d));
    for (int i = 0; i < 40; i++) {
      std::string p = "d" + std::to_string(i % 4) + "/f" + std::to_string(i);
      std::string old = text(5000 + 97 * static_cast<size_t>(i), static_cast<uint64_t>(i));
      a.file(p, old, 0644, 1);
      std::string now = old;
      if (i % 7 == 3)
        now.back() ^= 1;
      if (i == 11)
        now += "more";
      b.file(p, now, 0644, 2);
    }
    a.file("gone", "x", 0644, 1);
    b.file("new", text(4000, 99), 0644, 2);
  };
  MemTree a1, b1, a2, b2;
  make(a1, b1);
  make(a2, b2);
  a2.concurrent = b2.concurrent = true;
  Options one, two;
  one.threads = 1;
  two.threads = 2;
  Outcome o1 = run(a1, b1, one), o2 = run(a2, b2, two);
  ASSERT_TRUE(o1.status.ok());
  ASSERT_TRUE(o2.status.ok());
  EXPECT_EQ(o1.table, o2.table);
  EXPECT_EQ(o1.stats.hashed_bytes, o2.stats.hashed_bytes);
  EXPECT_EQ(o1.stats.files_changed, 7u);  // 3, 10, 17, 24, 31, 38 (last byte) and 11 (resized)
}

TEST(Delta, OutputIsDeterministic) {
  MemTree a, b;
  a.file("x", text(3000, 1), 0644, 1);
  b.file("x", text(3000, 2), 0644, 2);
  b.file("y", "y");
  EXPECT_EQ(run(a, b).table, run(a, b).table);
}

namespace {
std::string zdelta(const std::string& basis, const std::string& next) {
  StringWriter out;
  auto fits = delta::zstd_delta(basis, next, out, UINT64_MAX, 3);
  EXPECT_TRUE(fits.ok() && *fits);
  return out.data();
}
}  // namespace

TEST(ZstdPatch, DecodesInOnePassIntoTheCallersBuffer) {
  std::string basis = random_bytes(300000, 7);
  std::string next = basis.substr(1000) + "appended";
  std::string d = zdelta(basis, next);
  std::string out(next.size() + 1, '\0');
  auto n = delta::zstd_patch(basis, d, out, "d");
  ASSERT_TRUE(n.ok()) << n.error().message;
  EXPECT_EQ(out.substr(0, *n), next);
}

TEST(ZstdPatch, RejectsWhatZstdDeltaDoesNotMake) {
  std::string basis = random_bytes(50000, 8);
  std::string next = basis + "more";
  std::string d = zdelta(basis, next);
  std::string out(next.size() + 1, '\0');
  auto message = [&](std::string_view delta, size_t room) {
    std::string buf(room, '\0');
    auto n = delta::zstd_patch(basis, delta, buf, "d");
    EXPECT_FALSE(n.ok());
    EXPECT_EQ(n.ok() ? 0 : n.error().code, kExitBadInput);
    return n.ok() ? std::string() : n.error().message;
  };
  EXPECT_NE(message("", out.size()).find("empty zstd delta"), std::string::npos);
  EXPECT_NE(message(d.substr(0, d.size() - 3), out.size()).find("truncated"), std::string::npos);
  EXPECT_NE(message(d + d, out.size()).find("trailing bytes"), std::string::npos);
  EXPECT_NE(message(d, next.size() - 1).find("more than expected"), std::string::npos);
  EXPECT_NE(message("not a zstd frame at all", out.size()).find("bad zstd delta"), std::string::npos);
  // Against another basis the frame decodes to something else, or fails:
  // never the new content (the caller's hash check names the basis).
  std::string other = random_bytes(50000, 9);
  auto n = delta::zstd_patch(other, d, out, "d");
  EXPECT_TRUE(!n.ok() || out.substr(0, *n) != next);
}
