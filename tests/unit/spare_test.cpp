// The spare's parts: the change record format and catch_up(), which makes
// a tree equal another at the listed paths and nowhere else.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "apply/spare.hpp"
#include "support.hpp"
#include "util/io.hpp"

using namespace cm;
using namespace cm::apply;
using namespace cm::test;

namespace {

ino_t inode_of(const std::string& path) {
  struct stat st;
  EXPECT_EQ(::lstat(path.c_str(), &st), 0) << path;
  return st.st_ino;
}

Status run_catch_up(const std::string& from, const std::string& to, std::vector<Touched> paths,
                    Changed* out = nullptr) {
  normalize(paths);
  Fd f(::open(from.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Fd t(::open(to.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Changed changed;
  Status s = catch_up(f.get(), t.get(), paths, from, to, changed);
  if (out != nullptr)
    *out = changed;
  return s;
}

}  // namespace

TEST(ChangeRecord, RoundTrip) {
  ChangeRecord r{42, {{"a/b.txt", false}, {"gone", true}, {std::string("odd\nname\xff", 9), false}}};
  auto back = decode_changes(encode_changes(r), "rec");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->base, 42u);
  ASSERT_EQ(back->paths.size(), 3u);
  EXPECT_EQ(back->paths[0].path, "a/b.txt");
  EXPECT_FALSE(back->paths[0].deep);
  EXPECT_TRUE(back->paths[1].deep);
  EXPECT_EQ(back->paths[2].path, std::string("odd\nname\xff", 9));
  auto empty = decode_changes(encode_changes(ChangeRecord{7, {}}), "rec");
  ASSERT_TRUE(empty.ok());
  EXPECT_TRUE(empty->paths.empty());
}

TEST(ChangeRecord, BadInputIsAClearError) {
  std::string good = encode_changes(ChangeRecord{3, {{"x", false}}});
  auto rec = [](const std::string& body) { return "cm-changes 1\nbase 1\n" + body + std::string(1, '\0'); };
  const std::vector<std::pair<std::string, std::string>> bad = {
      {"", "magic"},
      {"cm-changes 2\nbase 1\n", "magic"},
      {"cm-changes 1\n", "base line"},
      {"cm-changes 1\nbase \n", "base line"},
      {"cm-changes 1\nbase 1x\n", "base number"},
      {"cm-changes 1\nbase 99999999999999999999\n", "base number"},
      {"cm-changes 1\nbase 1\nXa", "flag"},
      {"cm-changes 1\nbase 1\nPa", "truncated"},
      {rec("P../up"), "unsafe"},
      {rec("P/abs"), "unsafe"},
      {rec("P"), "unsafe"},
      {rec("Pa//b"), "unsafe"},
      {good.substr(0, good.size() - 1), "truncated"},
  };
  for (const auto& [data, what] : bad) {
    auto r = decode_changes(data, "rec");
    ASSERT_FALSE(r.ok()) << "accepted: " << data;
    EXPECT_NE(r.error().message.find("'rec'"), std::string::npos) << r.error().message;
    EXPECT_NE(r.error().message.find(what), std::string::npos) << r.error().message;
  }
}

TEST(ChangeRecord, NormalizeSortsParentsFirstAndMergesDeep) {
  std::vector<Touched> p = {{"a/b", false}, {"a", false}, {"a-b", false}, {"a", true}, {"a/b/c", false}};
  normalize(p);
  ASSERT_EQ(p.size(), 4u);
  EXPECT_EQ(p[0].path, "a");
  EXPECT_TRUE(p[0].deep);
  EXPECT_EQ(p[1].path, "a/b");
  EXPECT_EQ(p[2].path, "a/b/c");
  EXPECT_EQ(p[3].path, "a-b");
}

// Every kind of difference at a listed path is repaired; files become
// links to the source's; what is not listed is left alone.
TEST(CatchUp, MakesTheTreeEqualAtTheListedPaths) {
  TempDir tmp;
  std::string from = tmp / "from", to = tmp / "to";
  make_dir(from);
  make_dir(to);
  // Unchanged: the same inode on both sides, as in a hard-link clone.
  write_file(from + "/same.txt", "same");
  ASSERT_EQ(::link((from + "/same.txt").c_str(), (to + "/same.txt").c_str()), 0);
  // Changed content.
  write_file(from + "/changed.txt", "new");
  write_file(to + "/changed.txt", "old");
  // Removed in from.
  write_file(to + "/removed.txt", "bye");
  // Added, in a new directory with a subdirectory.
  make_dir(from + "/new");
  make_dir(from + "/new/sub", 0700);
  write_file(from + "/new/sub/f", "deep new");
  // Symlink retargeted.
  make_symlink("same.txt", from + "/link");
  make_symlink("changed.txt", to + "/link");
  // File became a directory, directory became a file.
  make_dir(from + "/f2d");
  write_file(from + "/f2d/inner", "inner");
  write_file(to + "/f2d", "was a file");
  write_file(from + "/d2f", "now a file");
  make_dir(to + "/d2f");
  write_file(to + "/d2f/old", "old");
  // A directory removed and made again: what it held went without a
  // record of its own (deep).
  make_dir(from + "/re");
  write_file(from + "/re/kept", "k");
  make_dir(to + "/re");
  write_file(to + "/re/kept", "k");
  write_file(to + "/re/stale", "should go");
  // A directory's mode.
  make_dir(from + "/mode", 0750);
  make_dir(to + "/mode", 0755);
  // Not listed: left as it is, even though it differs.
  write_file(from + "/unlisted", "from");
  write_file(to + "/unlisted", "to");

  std::vector<Touched> paths = {{"changed.txt", false}, {"removed.txt", true}, {"new", false},
                                {"new/sub", false},     {"new/sub/f", false},  {"link", false},
                                {"f2d", true},          {"f2d/inner", false},  {"d2f", true},
                                {"re", true},           {"re/kept", false},    {"mode", false}};
  Changed changed;
  Status s = run_catch_up(from, to, paths, &changed);
  ASSERT_TRUE(s.ok()) << s.error().message;
  // What it changed, for the sync: the root's entries, the mode of mode/,
  // and whole subtrees (so the caller syncs the file system).
  EXPECT_TRUE(changed.dirs.count(""));
  EXPECT_TRUE(changed.dirs.count("mode"));
  EXPECT_TRUE(changed.bulk);

  auto diff = tree_diff(from, to);
  ASSERT_EQ(diff.size(), 1u) << (diff.empty() ? "" : diff.front());
  EXPECT_NE(diff.front().find("unlisted"), std::string::npos) << diff.front();
  EXPECT_EQ(read_file(to + "/unlisted"), "to");
  EXPECT_EQ(inode_of(from + "/changed.txt"), inode_of(to + "/changed.txt"));
  EXPECT_EQ(inode_of(from + "/new/sub/f"), inode_of(to + "/new/sub/f"));
  EXPECT_EQ(inode_of(from + "/same.txt"), inode_of(to + "/same.txt"));
  // The source is only read.
  EXPECT_EQ(read_file(from + "/changed.txt"), "new");
  EXPECT_EQ(::access((to + "/re/stale").c_str(), F_OK), -1);
}

// Paths listed below a directory the source no longer has, and in a
// directory gone on both sides, are no error.
TEST(CatchUp, GoneOnBothSidesIsFine) {
  TempDir tmp;
  std::string from = tmp / "from", to = tmp / "to";
  make_dir(from);
  make_dir(to);
  make_dir(to + "/d");
  write_file(to + "/d/f", "x");
  Changed changed;
  Status s = run_catch_up(from, to, {{"d", true}, {"d/f", false}, {"never/there", false}}, &changed);
  ASSERT_TRUE(s.ok()) << s.error().message;
  EXPECT_TRUE(tree_diff(from, to).empty());
  EXPECT_FALSE(changed.bulk);
  EXPECT_EQ(changed.dirs, std::set<std::string>{""});
}

// A spare missing a directory its changes need is an error (the caller
// then clones instead), not a tree silently wrong.
TEST(CatchUp, AMissingParentIsAnError) {
  TempDir tmp;
  std::string from = tmp / "from", to = tmp / "to";
  make_dir(from);
  make_dir(to);
  make_dir(from + "/d");
  write_file(from + "/d/f", "x");
  Status s = run_catch_up(from, to, {{"d/f", false}});
  ASSERT_FALSE(s.ok());
  EXPECT_NE(s.error().message.find("to/d"), std::string::npos) << s.error().message;
}
