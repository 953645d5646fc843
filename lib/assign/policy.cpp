#include "assign/policy.hpp"

#include "fs/filter.hpp"

namespace cm::assign {

namespace {

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z')
      c = static_cast<char>(c - 'A' + 'a');
  return out;
}

bool match(const std::string& glob, std::string_view path) {
  std::string p = lower(path);
  if (glob.find('/') != std::string::npos)
    return fs::wildmatch(glob, p);
  size_t slash = p.rfind('/');
  return fs::wildmatch(glob, slash == std::string::npos ? p : p.substr(slash + 1));
}

}  // namespace

const std::vector<std::string>& Policy::default_store() {
  static const std::vector<std::string> globs = {
      // images
      "*.jpg", "*.jpeg", "*.png", "*.gif", "*.webp", "*.avif", "*.heic", "*.jxl",
      // audio and video
      "*.mp3", "*.m4a", "*.aac", "*.ogg", "*.oga", "*.opus", "*.flac", "*.mp4", "*.m4v", "*.webm", "*.mkv",
      "*.mov", "*.avi",
      // archives and compressed files
      "*.gz", "*.tgz", "*.bz2", "*.xz", "*.txz", "*.zst", "*.lz", "*.lz4", "*.br", "*.zip", "*.7z", "*.rar",
      "*.jar", "*.war", "*.apk", "*.deb", "*.rpm", "*.cab",
      // fonts
      "*.woff", "*.woff2",
      // documents that are zip or deflate inside
      "*.pdf", "*.docx", "*.xlsx", "*.pptx", "*.odt", "*.ods", "*.odp", "*.epub"};
  return globs;
}

void Policy::add(bool compress, std::string_view globs) {
  size_t start = 0;
  while (start <= globs.size()) {
    size_t comma = globs.find(',', start);
    if (comma == std::string_view::npos)
      comma = globs.size();
    std::string_view g = globs.substr(start, comma - start);
    while (!g.empty() && g.front() == ' ')
      g.remove_prefix(1);
    while (!g.empty() && g.back() == ' ')
      g.remove_suffix(1);
    if (!g.empty())
      rules_.push_back(Rule{compress, lower(g)});
    start = comma + 1;
  }
}

bool Policy::compress(std::string_view path) const {
  for (const Rule& r : rules_)
    if (match(r.glob, path))
      return r.compress;
  for (const std::string& g : default_store())
    if (match(g, path))
      return false;
  return true;
}

}  // namespace cm::assign
