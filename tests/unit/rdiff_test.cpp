#include <gtest/gtest.h>

#include <cstring>
#include <random>

#include "delta/rdiff.hpp"
#include "support.hpp"

using namespace cm;
using namespace cm::delta;
using cm::test::random_bytes;

namespace {

class StringFile : public fs::File {
 public:
  explicit StringFile(std::string d) : d_(std::move(d)) {}
  Result<size_t> read(void* buf, size_t n) override {
    CM_ASSIGN(size_t k, pread(buf, n, pos_));
    pos_ += k;
    return k;
  }
  Result<size_t> pread(void* buf, size_t n, uint64_t off) override {
    if (off >= d_.size())
      return size_t{0};
    size_t k = std::min<size_t>(n, d_.size() - off);
    std::memcpy(buf, d_.data() + off, k);
    return k;
  }
  Result<fs::Stat> stat() override { return fs::Stat{}; }
  const std::string& name() const override { return name_; }

 private:
  std::string d_;
  std::string name_ = "mem";
  uint64_t pos_ = 0;
};

std::string roundtrip(const std::string& basis, const std::string& next, uint64_t* delta_size) {
  StringReader br(basis);
  Digest bh;
  auto sig = make_signature(br, choose_block_len(basis.size()), &bh);
  EXPECT_TRUE(sig.ok());
  EXPECT_EQ(bh, sha256(basis));
  StringReader nr(next);
  StringWriter delta;
  auto fits = make_delta(*sig, nr, delta, UINT64_MAX);
  EXPECT_TRUE(fits.ok() && *fits);
  *delta_size = delta.data().size();
  StringFile bf(basis);
  StringReader dr(delta.data());
  StringWriter out;
  Status s = apply_delta(bf, dr, out);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return out.data();
}

}  // namespace

TEST(Rdiff, SmallEditGivesSmallDelta) {
  std::string basis = random_bytes(200000, 1);
  std::string next = basis;
  next[100000] ^= 1;
  next.insert(5000, "inserted");
  uint64_t size = 0;
  EXPECT_EQ(roundtrip(basis, next, &size), next);
  EXPECT_LT(size, 1000u);
}

TEST(Rdiff, EmptyAndUnrelatedFiles) {
  uint64_t size = 0;
  EXPECT_EQ(roundtrip("", "new content", &size), "new content");
  EXPECT_EQ(roundtrip("old", "", &size), "");
  std::string a = random_bytes(5000, 2), b = random_bytes(5000, 3);
  EXPECT_EQ(roundtrip(a, b, &size), b);
}

TEST(Rdiff, StopsEarlyPastTheLimit) {
  std::string a = random_bytes(100000, 4), b = random_bytes(100000, 5);
  StringReader br(a);
  auto sig = make_signature(br, 64);
  ASSERT_TRUE(sig.ok());
  StringReader nr(b);
  StringWriter delta;
  auto fits = make_delta(*sig, nr, delta, 50000);
  ASSERT_TRUE(fits.ok());
  EXPECT_FALSE(*fits);
  EXPECT_LE(delta.data().size(), 50000u);
}

TEST(Rdiff, BlockLengthBoundsTheSignature) {
  EXPECT_EQ(choose_block_len(1000), choose_block_len(0));
  for (uint64_t size : {uint64_t{1} << 20, uint64_t{1} << 30, uint64_t{1} << 36})
    EXPECT_LE(size / choose_block_len(size), kMaxBlocks) << size;
  EXPECT_LE(choose_block_len(uint64_t{1} << 30), 4096u);  // a few changed bytes cost a few KiB
}

TEST(Rdiff, CorruptDeltaIsAnError) {
  StringFile bf("basis");
  StringReader dr("not a delta at all");
  StringWriter out;
  Status s = apply_delta(bf, dr, out);
  EXPECT_FALSE(s.ok());
}

TEST(Rdiff, SpillBufferKeepsEverything) {
  SpillBuffer buf(10);
  std::string data = random_bytes(100000, 6);
  ASSERT_TRUE(buf.write(data.data(), 7).ok());
  ASSERT_TRUE(buf.write(data.data() + 7, data.size() - 7).ok());
  EXPECT_EQ(buf.size(), data.size());
  StringWriter out;
  ASSERT_TRUE(buf.replay(out).ok());
  EXPECT_EQ(out.data(), data);
}

namespace {
std::string positional_roundtrip(const std::string& basis, const std::string& next, uint64_t* size,
                                 uint64_t limit = UINT64_MAX) {
  StringReader br(basis), nr(next);
  StringWriter delta;
  auto r = positional_delta(br, nr, delta, limit);
  EXPECT_TRUE(r.ok());
  if (!r.ok() || !r->fits)
    return "<did not fit>";
  EXPECT_EQ(r->basis_hash, sha256(basis));
  EXPECT_EQ(r->next_hash, sha256(next));
  EXPECT_EQ(r->next_size, next.size());
  *size = delta.data().size();
  StringFile bf(basis);
  StringReader dr(delta.data());
  StringWriter out;
  Status s = apply_delta(bf, dr, out);
  EXPECT_TRUE(s.ok()) << (s.ok() ? "" : s.error().message);
  return out.data();
}
}  // namespace

TEST(Positional, ZerosWithAFewChangedBytes) {
  std::string basis(8 << 20, '\0');
  std::string next = basis;
  next.replace(1000, 7, "CHANGED");
  next.replace(5000000, 3, "abc");
  uint64_t size = 0;
  EXPECT_EQ(positional_roundtrip(basis, next, &size), next);
  EXPECT_LT(size, 100u);
}

TEST(Positional, AppendsShrinksAndShortGaps) {
  std::string basis = random_bytes(300000, 7);
  uint64_t size = 0;
  std::string appended = basis + "tail data";
  EXPECT_EQ(positional_roundtrip(basis, appended, &size), appended);
  std::string shrunk = basis.substr(0, 1000);
  EXPECT_EQ(positional_roundtrip(basis, shrunk, &size), shrunk);
  std::string gaps = basis;
  for (size_t i = 100; i < 200; i += 5)
    gaps[i] ^= 1;  // differences with equal gaps shorter than kMinCopy
  EXPECT_EQ(positional_roundtrip(basis, gaps, &size), gaps);
  EXPECT_EQ(positional_roundtrip("", "", &size), "");
  EXPECT_EQ(positional_roundtrip("abc", "", &size), "");
  EXPECT_EQ(positional_roundtrip("", "abc", &size), "abc");
}

TEST(Positional, GivesUpWhenContentShifted) {
  std::string basis = random_bytes(4 << 20, 8);
  std::string next = "x" + basis;  // everything moves by one byte
  StringReader br(basis), nr(next);
  StringWriter delta;
  auto r = positional_delta(br, nr, delta, next.size() / 2);
  ASSERT_TRUE(r.ok());
  EXPECT_FALSE(r->fits);
  EXPECT_LT(delta.data().size(), (2u << 20));  // stopped early, not after reading everything
}
