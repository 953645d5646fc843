// The one quorum parser of cm-push, cm-mcast and cm-sched.
#include <gtest/gtest.h>

#include "util/quorum.hpp"

namespace cm {
namespace {

size_t of(const char* text, size_t n) {
  auto q = parse_quorum(text);
  EXPECT_TRUE(q.ok()) << text << ": " << q.error().message;
  return q.ok() ? q->of(n) : 0;
}

TEST(Quorum, CountsAndPercentages) {
  EXPECT_EQ(Quorum{}.of(8), 8u);  // none given: all
  EXPECT_EQ(of("100%", 8), 8u);
  EXPECT_EQ(of("75%", 8), 6u);
  EXPECT_EQ(of("70%", 8), 6u);  // 5.6, rounded up
  EXPECT_EQ(of("66.7%", 3), 3u);
  EXPECT_EQ(of("66.6%", 3), 2u);
  EXPECT_EQ(of("1%", 8), 1u);
  EXPECT_EQ(of("0.5%", 8), 1u);
  EXPECT_EQ(of("3", 8), 3u);
  EXPECT_EQ(of("30", 8), 8u);   // at most n
  EXPECT_EQ(of("50%", 0), 1u);  // nothing expected: cannot be met
  EXPECT_EQ(of("4", 0), 1u);
}

TEST(Quorum, RefusesWhatIsNotACountOrAPercentage) {
  for (const char* bad :
       {"0", "0%",  "0.0%", "150%", "100.1%", "-3",  "+3",  " 5",  "5 ",         "5x",  "x",
        "%", "1e2", "0x10", "inf",  "nan%",   "3.5", "3.%", ".5%", "1234567890", "5%%", "1,5%"}) {
    auto q = parse_quorum(bad);
    ASSERT_FALSE(q.ok()) << bad;
    EXPECT_EQ(q.error().code, kExitUsage);
    EXPECT_NE(q.error().message.find(std::string("bad quorum '") + bad + "'"), std::string::npos)
        << q.error().message;
  }
}

// --quorum "" (or an unset variable in a script): not silently all.
TEST(Quorum, AnEmptyQuorumIsAnError) {
  for (const char* empty : {"", " ", "\t", "  \n"}) {
    auto q = parse_quorum(empty);
    ASSERT_FALSE(q.ok()) << "'" << empty << "'";
    EXPECT_EQ(q.error().code, kExitUsage);
    EXPECT_EQ(q.error().message, std::string("bad quorum '") + empty +
                                     "': empty; give a count of 1 or more, or a percentage above 0 up to "
                                     "100% (3, 75%, 66.7%), or leave it out for all");
  }
}

TEST(Quorum, ACountAboveTheMembersIsAnError) {
  auto q = parse_quorum("5");
  ASSERT_TRUE(q.ok());
  EXPECT_TRUE(q->check_count(5, "leader(s)").ok());
  EXPECT_TRUE(q->check_count(0, "leader(s)").ok());  // unknown yet
  auto e = q->check_count(4, "leader(s)");
  ASSERT_FALSE(e.ok());
  EXPECT_EQ(e.error().message, "a quorum of 5 is more than the 4 leader(s)");
  EXPECT_TRUE(parse_quorum("100%")->check_count(1, "leader(s)").ok());
}

}  // namespace
}  // namespace cm
