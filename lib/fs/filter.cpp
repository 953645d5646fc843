#include "fs/filter.hpp"

#include "util/io.hpp"

namespace cm::fs {

namespace {

// Matches a bracket expression at p[0] == '['. Returns the length of the
// expression, or 0 when it is malformed (then '[' is literal).
size_t match_class(std::string_view p, char c, bool& matched) {
  size_t i = 1;
  bool negate = false;
  if (i < p.size() && (p[i] == '!' || p[i] == '^')) {
    negate = true;
    i++;
  }
  bool hit = false;
  bool first = true;
  while (i < p.size() && (first || p[i] != ']')) {
    first = false;
    char lo = p[i];
    if (lo == '\\' && i + 1 < p.size())
      lo = p[++i];
    char hi = lo;
    if (i + 2 < p.size() && p[i + 1] == '-' && p[i + 2] != ']') {
      hi = p[i + 2];
      if (hi == '\\' && i + 3 < p.size()) {
        hi = p[i + 3];
        i++;
      }
      i += 2;
    }
    if (static_cast<unsigned char>(c) >= static_cast<unsigned char>(lo) &&
        static_cast<unsigned char>(c) <= static_cast<unsigned char>(hi))
      hit = true;
    i++;
  }
  if (i >= p.size())
    return 0;
  matched = hit != negate;
  return i + 1;
}

bool match(std::string_view p, std::string_view t) {
  while (!p.empty()) {
    char c = p[0];
    if (c == '*') {
      bool dbl = p.size() > 1 && p[1] == '*';
      size_t k = 0;
      while (k < p.size() && p[k] == '*')
        k++;
      std::string_view rest = p.substr(k);
      // "**/" also matches no directory at all.
      if (dbl && !rest.empty() && rest[0] == '/' && match(rest.substr(1), t))
        return true;
      if (rest.empty())
        return dbl || t.find('/') == std::string_view::npos;
      for (size_t i = 0; i <= t.size(); i++) {
        if (match(rest, t.substr(i)))
          return true;
        if (i < t.size() && t[i] == '/' && !dbl)
          return false;
      }
      return false;
    }
    if (t.empty())
      return false;
    if (c == '?') {
      if (t[0] == '/')
        return false;
      p.remove_prefix(1);
      t.remove_prefix(1);
      continue;
    }
    if (c == '[') {
      bool hit = false;
      size_t len = match_class(p, t[0], hit);
      if (len > 0) {
        if (!hit || t[0] == '/')
          return false;
        p.remove_prefix(len);
        t.remove_prefix(1);
        continue;
      }
    }
    if (c == '\\' && p.size() > 1) {
      p.remove_prefix(1);
      c = p[0];
    }
    if (c != t[0])
      return false;
    p.remove_prefix(1);
    t.remove_prefix(1);
  }
  return t.empty();
}

}  // namespace

bool wildmatch(std::string_view pattern, std::string_view text) {
  return match(pattern, text);
}

void Filter::add(bool include, std::string_view pattern) {
  if (pattern.size() >= 2 && (pattern[0] == '+' || pattern[0] == '-') && pattern[1] == ' ') {
    include = pattern[0] == '+';
    pattern.remove_prefix(2);
  }
  Rule r{include, false, false, false, std::string(pattern)};
  if (!r.pattern.empty() && r.pattern[0] == '/') {
    r.anchored = true;
    r.pattern.erase(0, 1);
  }
  if (r.pattern.size() > 1 && r.pattern.back() == '/') {
    r.dir_only = true;
    r.pattern.pop_back();
  }
  r.whole_path =
      r.anchored || r.pattern.find('/') != std::string::npos || r.pattern.find("**") != std::string::npos;
  rules_.push_back(std::move(r));
}

Status Filter::add_from_file(const std::string& path, bool include) {
  CM_ASSIGN(auto in, open_input(path));
  CM_ASSIGN(std::string text, read_all(*in, 16 << 20));
  size_t start = 0;
  while (start < text.size()) {
    size_t end = text.find('\n', start);
    if (end == std::string::npos)
      end = text.size();
    std::string_view line(text.data() + start, end - start);
    if (!line.empty() && line.back() == '\r')
      line.remove_suffix(1);
    if (!line.empty() && line[0] != '#' && line[0] != ';')
      add(include, line);
    start = end + 1;
  }
  return {};
}

bool Filter::matches(const Rule& r, std::string_view path) {
  std::string_view pat = r.pattern;
  // "dir/***": dir itself and everything below it.
  if (pat.size() >= 4 && pat.substr(pat.size() - 4) == "/***") {
    Rule base = r;
    base.pattern = std::string(pat.substr(0, pat.size() - 4));
    Rule below = r;
    below.pattern = std::string(pat.substr(0, pat.size() - 1));
    return matches(base, path) || matches(below, path);
  }
  if (!r.whole_path) {
    size_t slash = path.rfind('/');
    return match(pat, slash == std::string_view::npos ? path : path.substr(slash + 1));
  }
  if (r.anchored)
    return match(pat, path);
  // Unanchored: the pattern may match any tail of the path that starts at
  // a component boundary.
  for (size_t i = 0;;) {
    if (match(pat, path.substr(i)))
      return true;
    size_t slash = path.find('/', i);
    if (slash == std::string_view::npos)
      return false;
    i = slash + 1;
  }
}

bool Filter::excluded(std::string_view path, bool is_dir) const {
  for (const Rule& r : rules_) {
    if (r.dir_only && !is_dir)
      continue;
    if (matches(r, path))
      return !r.include;
  }
  return false;
}

}  // namespace cm::fs
