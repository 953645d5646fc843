#include <gtest/gtest.h>

#include "util/hash.hpp"
#include "util/text.hpp"
#include "util/wire.hpp"

using namespace cm;

TEST(Wire, VarintRoundTrip) {
  for (uint64_t v : {0ull, 1ull, 127ull, 128ull, 300ull, 1ull << 35, ~0ull}) {
    std::string s;
    ByteWriter(s).varint(v);
    ByteReader r(s);
    EXPECT_EQ(r.varint(), v);
    EXPECT_TRUE(r.ok());
    EXPECT_TRUE(r.at_end());
  }
}

TEST(Wire, SignedVarintRoundTrip) {
  for (int64_t v : {int64_t{0}, int64_t{-1}, int64_t{1}, INT64_MIN, INT64_MAX, int64_t{-1234567890123}}) {
    std::string s;
    ByteWriter(s).svarint(v);
    ByteReader r(s);
    EXPECT_EQ(r.svarint(), v);
    EXPECT_TRUE(r.ok());
  }
}

TEST(Wire, RejectsOverlongAndOverflowingVarints) {
  ByteReader overlong(std::string_view("\x80\x00", 2));
  overlong.varint();
  EXPECT_FALSE(overlong.ok());
  ByteReader overflow(std::string_view("\xff\xff\xff\xff\xff\xff\xff\xff\xff\x02", 10));
  overflow.varint();
  EXPECT_FALSE(overflow.ok());
  ByteReader truncated(std::string_view("\x80", 1));
  truncated.varint();
  EXPECT_FALSE(truncated.ok());
  EXPECT_STREQ(truncated.problem(), "truncated");
}

TEST(Wire, BytesRespectBound) {
  std::string s;
  ByteWriter(s).bytes("hello");
  ByteReader ok(s);
  EXPECT_EQ(ok.bytes(5), "hello");
  ByteReader tight(s);
  tight.bytes(4);
  EXPECT_FALSE(tight.ok());
  EXPECT_STREQ(tight.problem(), "length field too large");
}

TEST(Text, ParseSize) {
  EXPECT_EQ(*parse_size("0", "--x"), 0u);
  EXPECT_EQ(*parse_size("100", "--x"), 100u);
  EXPECT_EQ(*parse_size("64K", "--x"), 65536u);
  EXPECT_EQ(*parse_size("1.5M", "--x"), 1572864u);
  EXPECT_EQ(*parse_size("4GiB", "--x"), 4ull << 30);
  for (const char* bad : {"", "K", "-1", "1Q", "nan", "inf", "0x10", "1e30"}) {
    auto r = parse_size(bad, "--star");
    ASSERT_FALSE(r.ok()) << bad;
    EXPECT_NE(r.error().message.find("--star"), std::string::npos) << r.error().message;
  }
}

TEST(Hex, BytesRoundTripAndRejects) {
  std::string bytes("a/\0\xff", 4), back;
  std::string hex = to_hex(reinterpret_cast<const uint8_t*>(bytes.data()), bytes.size());
  EXPECT_EQ(hex, "612f00ff");
  ASSERT_TRUE(from_hex(hex, back));
  EXPECT_EQ(back, bytes);
  EXPECT_TRUE(from_hex("612F00FF", back));
  EXPECT_EQ(back, bytes);
  EXPECT_FALSE(from_hex("612", back));  // odd
  EXPECT_FALSE(from_hex("6g", back));   // not hex
  Digest d{};
  EXPECT_FALSE(from_hex(hex, d));  // not 32 bytes
}
