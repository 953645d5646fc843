#include <gtest/gtest.h>

#include "delta/manifest.hpp"

using namespace cm;
using namespace cm::delta;

namespace {
fs::Stat stamp(uint64_t size, int64_t mtime, uint64_t ino) {
  fs::Stat st;
  st.size = size;
  st.mtime_ns = mtime;
  st.ctime_ns = mtime;
  st.ino = ino;
  return st;
}
constexpr int64_t kNow = 5'000'000'000'000;
}  // namespace

TEST(Manifest, RoundTripAndLookup) {
  Manifest m;
  Digest h = sha256("x");
  m.record("a/b", stamp(1, 1000, 7), h, kNow);
  auto parsed = Manifest::parse(m.serialize(), "test");
  ASSERT_TRUE(parsed.ok()) << parsed.error().message;
  EXPECT_EQ(parsed->lookup("a/b", stamp(1, 1000, 7)), h);
  // Any change of the stamp makes the entry stale.
  EXPECT_FALSE(parsed->lookup("a/b", stamp(2, 1000, 7)).has_value());
  EXPECT_FALSE(parsed->lookup("a/b", stamp(1, 1001, 7)).has_value());
  EXPECT_FALSE(parsed->lookup("a/b", stamp(1, 1000, 8)).has_value());
  EXPECT_FALSE(parsed->lookup("other", stamp(1, 1000, 7)).has_value());
}

TEST(Manifest, RecentlyChangedFilesAreNotCached) {
  Manifest m;
  m.record("racy", stamp(1, kNow - 1'000'000'000, 1), sha256("x"), kNow);
  EXPECT_EQ(m.size(), 0u);
}

TEST(Manifest, DamageIsDetected) {
  Manifest m;
  m.record("a", stamp(1, 1000, 1), sha256("x"), kNow);
  std::string bytes = m.serialize();
  for (size_t i = 0; i < bytes.size(); i++) {
    std::string bad = bytes;
    bad[i] ^= 1;
    EXPECT_FALSE(Manifest::parse(bad, "t").ok()) << "flip at " << i;
  }
  EXPECT_FALSE(Manifest::parse(bytes.substr(0, bytes.size() - 1), "t").ok());
  EXPECT_FALSE(Manifest::parse("", "t").ok());
}

TEST(Manifest, RetainDropsEntries) {
  Manifest m;
  m.record("a", stamp(1, 1000, 1), sha256("x"), kNow);
  m.record("b", stamp(1, 1000, 2), sha256("y"), kNow);
  m.retain([](const std::string& p) { return p == "a"; });
  EXPECT_EQ(m.size(), 1u);
}
