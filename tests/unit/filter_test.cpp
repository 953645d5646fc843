#include <gtest/gtest.h>

#include "fs/filter.hpp"

using cm::fs::Filter;
using cm::fs::wildmatch;

TEST(Wildmatch, StarStaysInComponent) {
  EXPECT_TRUE(wildmatch("*.js", "app.js"));
  EXPECT_FALSE(wildmatch("*.js", "dir/app.js"));
  EXPECT_TRUE(wildmatch("**.js", "dir/app.js"));
  EXPECT_TRUE(wildmatch("a/**/b", "a/x/y/b"));
  EXPECT_TRUE(wildmatch("a/**/b", "a/b"));
  EXPECT_FALSE(wildmatch("a/*/b", "a/x/y/b"));
}

TEST(Wildmatch, QuestionClassesAndEscapes) {
  EXPECT_TRUE(wildmatch("?.txt", "a.txt"));
  EXPECT_FALSE(wildmatch("?.txt", "/.txt"));
  EXPECT_TRUE(wildmatch("[a-c]x", "bx"));
  EXPECT_FALSE(wildmatch("[!a-c]x", "bx"));
  EXPECT_TRUE(wildmatch("[^a-c]x", "dx"));
  EXPECT_TRUE(wildmatch("\\*", "*"));
  EXPECT_FALSE(wildmatch("\\*", "a"));
  EXPECT_TRUE(wildmatch("[]]", "]"));
  EXPECT_TRUE(wildmatch("[", "["));  // malformed class: literal
}

TEST(Filter, BasenamePatternsMatchAtAnyDepth) {
  Filter f;
  f.add(false, "*.tmp");
  EXPECT_TRUE(f.excluded("a.tmp", false));
  EXPECT_TRUE(f.excluded("x/y/a.tmp", false));
  EXPECT_FALSE(f.excluded("a.tmpx", false));
}

TEST(Filter, AnchoredPatternsMatchFromTheRoot) {
  Filter f;
  f.add(false, "/cache");
  EXPECT_TRUE(f.excluded("cache", true));
  EXPECT_FALSE(f.excluded("sub/cache", true));
}

TEST(Filter, UnanchoredPathPatternsMatchTheEnd) {
  Filter f;
  f.add(false, "foo/bar");
  EXPECT_TRUE(f.excluded("foo/bar", false));
  EXPECT_TRUE(f.excluded("x/foo/bar", false));
  EXPECT_FALSE(f.excluded("xfoo/bar", false));
}

TEST(Filter, TrailingSlashMeansDirectoriesOnly) {
  Filter f;
  f.add(false, "logs/");
  EXPECT_TRUE(f.excluded("logs", true));
  EXPECT_FALSE(f.excluded("logs", false));
}

TEST(Filter, FirstMatchWins) {
  Filter f;
  f.add(true, "keep.log");
  f.add(false, "*.log");
  EXPECT_FALSE(f.excluded("keep.log", false));
  EXPECT_TRUE(f.excluded("other.log", false));

  Filter g;  // the other order: the exclude wins
  g.add(false, "*.log");
  g.add(true, "keep.log");
  EXPECT_TRUE(g.excluded("keep.log", false));
}

TEST(Filter, PlusMinusPrefixesOverrideTheOption) {
  Filter f;
  f.add(false, "+ important.bak");
  f.add(false, "- *.bak");
  EXPECT_FALSE(f.excluded("important.bak", false));
  EXPECT_TRUE(f.excluded("x.bak", false));
}

TEST(Filter, TripleStarMatchesDirAndContents) {
  Filter f;
  f.add(false, "/build/***");
  EXPECT_TRUE(f.excluded("build", true));
  EXPECT_TRUE(f.excluded("build/a/b.o", false));
  EXPECT_FALSE(f.excluded("builder", true));
}
