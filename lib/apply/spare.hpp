// Staging a version at the cost of its changes, not of the tree.
//
// A staging tree starts as a hard-link clone of its base: one link(2) per
// file and one mkdir(2) per directory, whatever the assignment changes.
// Instead, a site keeps a *spare*: a complete version no longer needed
// (the oldest one dropped from the rollback history, or a clone of live
// made after a switch). Each version built on a base records the paths
// its assignment touched (SITE_DIR/.cm/changes/<id>). To stage on base B
// from spare S, follow B's records back to S; the union of the touched
// paths is everything where B and S can differ, and catch_up() makes S
// equal B at those paths (hard links to B's files, B's symlinks and
// directories). Paths a version removed are marked "deep": a directory
// there is rebuilt whole, since what it held went without a record.
//
// A change record is a small file format:
//   "cm-changes 1\n" "base " DECIMAL "\n"
//   then per path: one flag byte ('P' plain, 'D' deep), the path, a NUL.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "apply/applier.hpp"
#include "util/result.hpp"

namespace cm::apply {

struct Touched {
  std::string path;
  bool deep = false;  // removed at some point: rebuild a directory whole
};

struct ChangeRecord {
  uint64_t base = 0;  // the version this one was built on
  std::vector<Touched> paths;
};

std::string encode_changes(const ChangeRecord& r);
// Any bytes give a record or an error naming `name`.
Result<ChangeRecord> decode_changes(std::string_view data, const std::string& name);

// Sorts (parents first) and merges duplicates, a path deep if any was.
void normalize(std::vector<Touched>& paths);

// Makes the tree at `to` equal the tree at `from` at every listed path
// (normalized), leaving the rest alone. Regular files become hard links
// to `from`'s; nothing under `from` is modified. What it changed goes to
// `changed` (for sync_changed()). Names are for messages.
Status catch_up(int from, int to, const std::vector<Touched>& paths, const std::string& from_name,
                const std::string& to_name, Changed& changed);

}  // namespace cm::apply
