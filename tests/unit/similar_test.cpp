#include <gtest/gtest.h>

#include "delta/similar.hpp"

using namespace cm::delta;

TEST(Similar, HashedAssetNamesShareAKey) {
  EXPECT_EQ(similarity_key("assets/search-index.3f2a9c81.js"),
            similarity_key("assets/search-index.88bb0177.js"));
  EXPECT_EQ(similarity_key("_next/static/a1b2c3/pages/index.js"),
            similarity_key("_next/static/d4e5f6/pages/index.js"));
  EXPECT_NE(similarity_key("a/x.js"), similarity_key("a/x.css"));
  EXPECT_NE(similarity_key("a/x.js"), similarity_key("b/x.js"));
}

TEST(Similar, NamesDifferingByAHashRunAreAlike) {
  EXPECT_GT(name_similarity("search-index.3f2a9c81.js", "search-index.88bb0177.js"), 0);
  // The hashes share a first character: the run is still compared whole.
  EXPECT_GT(name_similarity("main.3f2a9c.js", "main.3e11b0.js"), 0);
  // Vite-style base64url hashes, with '-' and '_' inside.
  EXPECT_GT(name_similarity("index-BxH7aK3p.js", "index-Cq9_zL0-.js"), 0);
  // Equal names (in directories with hashed names) score highest.
  EXPECT_GT(name_similarity("a1b2c3/search-index.3f2a9c81.js", "d4e5f6/search-index.3f2a9c81.js"),
            name_similarity("a1b2c3/search-index.3f2a9c81.js", "d4e5f6/search-index.88bb0177.js"));
}

TEST(Similar, OrdinaryDifferentNamesAreNot) {
  EXPECT_LT(name_similarity("about.html", "contact.html"), 0);
  EXPECT_LT(name_similarity("a.js", "b.js"), 0);
  EXPECT_LT(name_similarity("app.js", "app.min.js"), 0);
}
