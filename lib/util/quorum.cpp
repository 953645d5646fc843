#include "util/quorum.hpp"

#include <algorithm>
#include <cmath>
#include <string>

namespace cm {

size_t Quorum::of(size_t n) const {
  double k = percent ? std::ceil(static_cast<double>(n) * value / 100.0 - 1e-9) : value;
  size_t top = std::max<size_t>(n, 1);
  return k >= static_cast<double>(top) ? top : std::max<size_t>(static_cast<size_t>(k), 1);
}

Status Quorum::check_count(size_t n, std::string_view what) const {
  if (!percent && n > 0 && value > static_cast<double>(n))
    return Error("a quorum of " + std::to_string(static_cast<uint64_t>(value)) + " is more than the " +
                     std::to_string(n) + " " + std::string(what),
                 kExitUsage);
  return {};
}

Result<Quorum> parse_quorum(std::string_view text) {
  constexpr const char* kWant = "a count of 1 or more, or a percentage above 0 up to 100% (3, 75%, 66.7%)";
  // Given but empty (--quorum "", a variable that was not set): not read
  // as all, which only leaving the quorum out means.
  if (quorum_blank(text))
    return Error("bad quorum '" + std::string(text) + "': empty; give " + kWant + ", or leave it out for all",
                 kExitUsage);
  auto bad = [&] { return Error("bad quorum '" + std::string(text) + "': " + kWant, kExitUsage); };
  Quorum q;
  q.percent = text.back() == '%';
  std::string_view num = q.percent ? text.substr(0, text.size() - 1) : text;
  size_t dot = num.find('.');
  std::string_view whole = num.substr(0, dot),
                   frac = dot == num.npos ? std::string_view() : num.substr(dot + 1);
  auto digits = [](std::string_view s) {
    return std::all_of(s.begin(), s.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  if (whole.empty() || whole.size() > 9 || !digits(whole) || !digits(frac) || frac.size() > 6 ||
      (dot != num.npos && (!q.percent || frac.empty())))
    return bad();
  q.value = std::stod(std::string(num));
  if (!(q.value > 0) || (q.percent && q.value > 100))
    return bad();
  return q;
}

bool quorum_blank(std::string_view text) {
  return text.find_first_not_of(" \t\n\r\f\v") == std::string_view::npos;
}

}  // namespace cm
