// Which data is compressed: the administrator's file-type policy.
//
// Rules are globs (rsync-style wildmatch, case-insensitive) tried in order,
// first match wins: --compress and --store rules as given, then the
// defaults: already-compressed types (images, audio, video, archives,
// fonts, ...) are stored, everything else is compressed. A pattern without
// '/' matches the file name, one with '/' the whole path.
#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cm::assign {

class Policy {
 public:
  // Adds comma-separated globs.
  void add(bool compress, std::string_view globs);
  bool compress(std::string_view path) const;
  static const std::vector<std::string>& default_store();

 private:
  struct Rule {
    bool compress;
    std::string glob;
  };
  std::vector<Rule> rules_;
};

}  // namespace cm::assign
