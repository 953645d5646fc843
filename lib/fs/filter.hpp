// Include/exclude rules with rsync's semantics, so rsync users can reuse
// their patterns:
//
//   - rules are tried in order; the first that matches decides; no match
//     means included;
//   - a pattern starting with '/' is anchored at the tree's root; otherwise
//     it matches the end of the path, at a component boundary;
//   - a pattern ending with '/' matches directories only;
//   - a pattern without '/' (besides a trailing one) matches the last
//     component only;
//   - '*' matches within one component, '**' across components, '?' one
//     character but '/', '[...]' a class ("[!...]" or "[^...]" negates);
//     "dir/***" matches dir and everything below it; '\' escapes;
//   - a pattern given as "+ PAT" or "- PAT" is an include or an exclude
//     whatever option brought it;
//   - an excluded directory is not descended into.
#pragma once

#include <string>
#include <string_view>
#include <vector>

#include "util/result.hpp"

namespace cm::fs {

// Shell-style matching of a whole string, '*' not crossing '/'.
bool wildmatch(std::string_view pattern, std::string_view text);

class Filter {
 public:
  void add(bool include, std::string_view pattern);
  // One pattern a line; blank lines and lines starting with '#' or ';' are
  // ignored ("-" reads standard input).
  Status add_from_file(const std::string& path, bool include);
  bool excluded(std::string_view path, bool is_dir) const;
  bool empty() const { return rules_.empty(); }

 private:
  struct Rule {
    bool include;
    bool anchored;
    bool dir_only;
    bool whole_path;  // pattern has '/' or "**": match against the path
    std::string pattern;
  };
  static bool matches(const Rule& r, std::string_view path);
  std::vector<Rule> rules_;
};

}  // namespace cm::fs
