// Finding a basis for a new file that has none at its own path: static site
// generators and bundlers put a content hash in asset names
// ("search-index.3f2a9c81.js", "index-BxH7aK3p.js", "_next/static/<build id>/"),
// so every release "deletes" the old name and "adds" a new one whose
// content is nearly the same.
#pragma once

#include <string>
#include <string_view>

namespace cm::delta {

// A coarse bucket key: the path with every run of [A-Za-z0-9_-] that
// contains a digit replaced by '*', and the extension kept. Paths that may
// differ only by hash-like runs share a key (and so do some that do not:
// name_similarity() decides).
std::string similarity_key(std::string_view path);

// How alike two paths' names are, when they differ only by one hash-like
// run in the last component and by hash-like directory names: the number
// of shared name bytes, or -1 when they are not alike. Equal names score
// highest.
int name_similarity(std::string_view a, std::string_view b);

}  // namespace cm::delta
