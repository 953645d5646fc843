#include <gtest/gtest.h>

#include "delta/table.hpp"

using namespace cm;
using namespace cm::delta;

namespace {

std::vector<Entry> sample_entries() {
  std::vector<Entry> v;
  Entry d;
  d.op = Op::Mkdir;
  d.path = "dir";
  d.mode = 0755;
  v.push_back(d);
  Entry f;
  f.op = Op::File;
  f.path = "dir/new\nline \xff";
  f.mode = 0644;
  f.mtime_ns = -5;
  f.size = 11;
  f.data_size = 11;
  f.hash = sha256("hello world");
  v.push_back(f);
  Entry p;
  p.op = Op::Patch;
  p.path = "p";
  p.mode = 0600;
  p.mtime_ns = 1700000000123456789;
  p.size = 100;
  p.hash = sha256("p");
  p.source = "old/p";
  p.source_hash = sha256("basis");
  p.data_size = 3;
  v.push_back(p);
  Entry c;
  c.op = Op::Copy;
  c.path = "c";
  c.mode = 0644;
  c.size = 11;
  c.hash = sha256("hello world");
  c.source = "dir/new\nline \xff";
  c.source_new = true;
  v.push_back(c);
  Entry s;
  s.op = Op::Symlink;
  s.path = "link";
  s.target = "../anywhere";
  v.push_back(s);
  Entry del;
  del.op = Op::Delete;
  del.path = "gone";
  del.old_type = fs::Type::Directory;
  v.push_back(del);
  Entry m;
  m.op = Op::Chmod;
  m.path = "dir";
  m.mode = 0700;
  v.push_back(m);
  return v;
}

std::string write_sample() {
  StringWriter out;
  TableWriter w(out);
  EXPECT_TRUE(w.begin().ok());
  for (const Entry& e : sample_entries()) {
    EXPECT_TRUE(w.add(e).ok());
    if (e.op == Op::File) {
      EXPECT_TRUE(w.data("hello world", 11).ok());
    }
    if (e.op == Op::Patch) {
      EXPECT_TRUE(w.data("abc", 3).ok());
    }
  }
  EXPECT_TRUE(w.finish().ok());
  return out.data();
}

// Reads a whole table; returns the error message or "" and the entries.
std::string read_all_entries(const std::string& bytes, std::vector<Entry>* entries = nullptr,
                             std::vector<std::string>* data = nullptr) {
  StringReader in(bytes);
  TableReader r(in, "t");
  Status s = r.open();
  if (!s.ok())
    return s.error().message;
  for (;;) {
    auto e = r.next();
    if (!e.ok())
      return e.error().message;
    if (!*e)
      return "";
    std::string d;
    char buf[7];
    for (;;) {
      auto got = r.read_data(buf, sizeof buf);
      if (!got.ok())
        return got.error().message;
      if (*got == 0)
        break;
      d.append(buf, *got);
    }
    if (entries)
      entries->push_back(**e);
    if (data)
      data->push_back(d);
  }
}

}  // namespace

TEST(Table, RoundTrip) {
  std::string bytes = write_sample();
  std::vector<Entry> got;
  std::vector<std::string> data;
  ASSERT_EQ(read_all_entries(bytes, &got, &data), "");
  auto want = sample_entries();
  ASSERT_EQ(got.size(), want.size());
  for (size_t i = 0; i < want.size(); i++) {
    EXPECT_EQ(got[i].op, want[i].op);
    EXPECT_EQ(got[i].path, want[i].path);
    EXPECT_EQ(got[i].mode, want[i].mode);
    EXPECT_EQ(got[i].mtime_ns, want[i].mtime_ns);
    EXPECT_EQ(got[i].size, want[i].size);
    EXPECT_EQ(got[i].hash, want[i].hash);
    EXPECT_EQ(got[i].source, want[i].source);
    EXPECT_EQ(got[i].source_hash, want[i].source_hash);
    EXPECT_EQ(got[i].source_new, want[i].source_new);
    EXPECT_EQ(got[i].target, want[i].target);
    EXPECT_EQ(got[i].old_type, want[i].old_type);
    EXPECT_EQ(got[i].data_size, want[i].data_size);
  }
  EXPECT_EQ(data[1], "hello world");
  EXPECT_EQ(data[2], "abc");
}

TEST(Table, SameInputSameBytes) {
  EXPECT_EQ(write_sample(), write_sample());
}

TEST(Table, EveryTruncationIsAnError) {
  std::string bytes = write_sample();
  for (size_t n = 0; n < bytes.size(); n++)
    EXPECT_NE(read_all_entries(bytes.substr(0, n)), "") << "truncated to " << n;
}

TEST(Table, EveryBitFlipIsAnError) {
  std::string bytes = write_sample();
  for (size_t i = 0; i < bytes.size(); i++)
    for (int bit = 0; bit < 8; bit += 3) {
      std::string bad = bytes;
      bad[i] = static_cast<char>(bad[i] ^ (1 << bit));
      EXPECT_NE(read_all_entries(bad), "") << "flip at byte " << i << " bit " << bit;
    }
}

TEST(Table, ClearErrorsForWrongMagicVersionAndTrailingData) {
  EXPECT_NE(read_all_entries("hello, world").find("not a cm delta table"), std::string::npos);
  std::string bytes = write_sample();
  std::string v2 = bytes;
  v2[8] = 2;
  EXPECT_NE(read_all_entries(v2).find("unsupported delta table version 2"), std::string::npos);
  EXPECT_NE(read_all_entries(bytes + "x").find("after the trailer"), std::string::npos);
}

TEST(Table, WriterRejectsUnsafePathsAndDataMismatch) {
  StringWriter out;
  TableWriter w(out);
  ASSERT_TRUE(w.begin().ok());
  for (const char* bad : {"../x", "/abs", "a//b", "a/./b", "", "a/"}) {
    Entry e;
    e.op = Op::Mkdir;
    e.path = bad;
    EXPECT_FALSE(w.add(e).ok()) << bad;
  }
  Entry f;
  f.op = Op::File;
  f.path = "f";
  f.size = f.data_size = 2;
  ASSERT_TRUE(w.add(f).ok());
  EXPECT_FALSE(w.data("abc", 3).ok());
  EXPECT_FALSE(w.finish().ok());  // 2 bytes still owed
}
