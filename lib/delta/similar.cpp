#include "delta/similar.hpp"

namespace cm::delta {

namespace {

bool alnum(char c) {
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z');
}
bool run_char(char c) {
  return alnum(c) || c == '-' || c == '_';
}
bool digit(char c) {
  return c >= '0' && c <= '9';
}

// A run of [A-Za-z0-9_-] that looks generated: at least four characters,
// with a digit or with both letter cases.
bool hash_like(std::string_view s) {
  if (s.size() < 4 || s.size() > 64)
    return false;
  bool d = false, lower = false, upper = false;
  for (char c : s) {
    if (!run_char(c))
      return false;
    d |= digit(c);
    lower |= c >= 'a' && c <= 'z';
    upper |= c >= 'A' && c <= 'Z';
  }
  return d || (lower && upper);
}

std::string_view last_component(std::string_view p) {
  size_t slash = p.rfind('/');
  return slash == std::string_view::npos ? p : p.substr(slash + 1);
}

}  // namespace

std::string similarity_key(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view dir = slash == std::string_view::npos ? std::string_view() : path.substr(0, slash);
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  std::string key;
  for (size_t i = 0; i < dir.size();) {
    if (!run_char(dir[i])) {
      key += dir[i++];
      continue;
    }
    size_t j = i;
    bool has_digit = false;
    while (j < dir.size() && run_char(dir[j]))
      has_digit |= digit(dir[j++]);
    if (has_digit)
      key += '*';
    else
      key.append(dir.substr(i, j - i));
    i = j;
  }
  key += '\0';
  size_t dot = name.rfind('.');
  if (dot != std::string_view::npos && dot > 0)
    key.append(name.substr(dot));
  return key;
}

int name_similarity(std::string_view a_path, std::string_view b_path) {
  std::string_view a = last_component(a_path), b = last_component(b_path);
  if (a == b)
    return static_cast<int>(a.size()) + 1;
  size_t n = std::min(a.size(), b.size());
  size_t p = 0;
  while (p < n && a[p] == b[p])
    p++;
  size_t s = 0;
  while (s < n - p && a[a.size() - 1 - s] == b[b.size() - 1 - s])
    s++;
  // Never cut a run of letters and digits: back off to a separator.
  while (p > 0 && alnum(a[p - 1]))
    p--;
  while (s > 0 && alnum(a[a.size() - s]))
    s--;
  std::string_view ma = a.substr(p, a.size() - p - s);
  std::string_view mb = b.substr(p, b.size() - p - s);
  if (!hash_like(ma) || !hash_like(mb))
    return -1;
  return static_cast<int>(p + s);
}

}  // namespace cm::delta
