#include "sched/cron.hpp"

#include <ctime>
#include <sstream>
#include <vector>

namespace cm::sched {

namespace {

Error bad(const std::string& text, const std::string& why) {
  return Error("bad schedule '" + text + "': " + why, kExitUsage);
}

// One field: "*", "*/n", "a", "a-b", "a-b/n", comma lists of those.
template <size_t N>
Result<std::bitset<N>> field(const std::string& text, const std::string& f, int lo, int hi,
                             const char* name) {
  std::bitset<N> bits;
  std::stringstream ss(f);
  std::string part;
  while (std::getline(ss, part, ',')) {
    if (part.empty())
      return bad(text, std::string("empty item in the ") + name + " field");
    int step = 1;
    if (size_t slash = part.find('/'); slash != std::string::npos) {
      std::string s = part.substr(slash + 1);
      if (s.empty() || s.find_first_not_of("0123456789") != std::string::npos || s.size() > 3 ||
          (step = std::stoi(s)) < 1)
        return bad(text, std::string("bad step '") + s + "' in the " + name + " field");
      part = part.substr(0, slash);
    }
    int a = lo, b = hi;
    if (part != "*") {
      size_t dash = part.find('-');
      std::string x = part.substr(0, dash), y = dash == std::string::npos ? x : part.substr(dash + 1);
      for (const std::string& n : {x, y})
        if (n.empty() || n.size() > 2 || n.find_first_not_of("0123456789") != std::string::npos)
          return bad(text, "'" + part + "' is not a number or range in the " + name + " field");
      a = std::stoi(x);
      b = std::stoi(y);
      if (dash == std::string::npos && step > 1)
        b = hi;  // "5/15": from 5, every 15
    }
    // Both ends in the field's range first: "70-5" is out of range, not a
    // range to write the other way round.
    if (a < lo || a > hi || b < lo || b > hi)
      return bad(text, std::string("'") + part + "' is outside " + std::to_string(lo) + "-" +
                           std::to_string(hi) + " in the " + name + " field");
    if (a > b)
      return bad(text, "'" + part + "' is a reversed range in the " + name + " field (write " +
                           std::to_string(b) + "-" + std::to_string(a) + ")");
    for (int v = a; v <= b; v += step)
      bits.set(static_cast<size_t>(v == 7 && N == 8 ? 0 : v));
  }
  return bits;
}

}  // namespace

Result<int64_t> parse_time(const std::string& s) {
  if (!s.empty() && s[0] == '@') {
    std::string n = s.substr(1);
    if (n.empty() || n.size() > 12 || n.find_first_not_of("0123456789") != std::string::npos)
      return Error("bad time '" + s + "': expected @SECONDS since the epoch", kExitUsage);
    return static_cast<int64_t>(std::stoll(n));
  }
  std::tm tm{};
  int y, mo, d, h, mi, sec = 0;
  char sep;
  int n = std::sscanf(s.c_str(), "%4d-%2d-%2d%c%2d:%2d:%2d", &y, &mo, &d, &sep, &h, &mi, &sec);
  if (n < 6 || (sep != 'T' && sep != ' ') || mo < 1 || mo > 12 || d < 1 || d > 31 || h > 23 || mi > 59 ||
      sec > 60 || y < 1970 || y > 9999)
    return Error("bad time '" + s + "': expected YYYY-MM-DDTHH:MM[:SS] (local time) or @SECONDS", kExitUsage);
  tm.tm_year = y - 1900;
  tm.tm_mon = mo - 1;
  tm.tm_mday = d;
  tm.tm_hour = h;
  tm.tm_min = mi;
  tm.tm_sec = sec;
  tm.tm_isdst = -1;
  std::time_t t = std::mktime(&tm);
  if (t == -1 || tm.tm_mday != d)
    return Error("bad time '" + s + "': no such date", kExitUsage);
  return static_cast<int64_t>(t);
}

std::string format_time(int64_t t) {
  std::time_t tt = static_cast<std::time_t>(t);
  std::tm tm{};
  localtime_r(&tt, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%d %H:%M:%S", &tm);
  return buf;
}

Result<Schedule> Schedule::parse(const std::string& text) {
  Schedule s;
  s.text_ = text;
  if (text == "manual" || text == "on-demand")
    return s;
  if (text.rfind("at ", 0) == 0) {
    s.kind_ = Kind::Once;
    CM_ASSIGN(s.at_, parse_time(text.substr(3)));
    return s;
  }
  std::string expr = text;
  if (text == "@hourly")
    expr = "0 * * * *";
  else if (text == "@daily" || text == "@midnight")
    expr = "0 0 * * *";
  else if (text == "@weekly")
    expr = "0 0 * * 0";
  else if (text == "@monthly")
    expr = "0 0 1 * *";
  else if (text == "@yearly" || text == "@annually")
    expr = "0 0 1 1 *";
  else if (!text.empty() && text[0] == '@')
    return bad(text, "unknown shorthand (use @hourly, @daily, @weekly, @monthly or @yearly)");
  std::stringstream ss(expr);
  std::vector<std::string> f;
  for (std::string w; ss >> w;)
    f.push_back(w);
  if (f.size() != 5)
    return bad(text, "expected 5 fields (minute hour day-of-month month day-of-week), 'at TIME' or 'manual'");
  s.kind_ = Kind::Cron;
  CM_ASSIGN(s.minute_, field<60>(text, f[0], 0, 59, "minute"));
  CM_ASSIGN(s.hour_, field<24>(text, f[1], 0, 23, "hour"));
  CM_ASSIGN(s.mday_, field<32>(text, f[2], 1, 31, "day-of-month"));
  CM_ASSIGN(s.month_, field<13>(text, f[3], 1, 12, "month"));
  CM_ASSIGN(s.wday_, field<8>(text, f[4], 0, 7, "day-of-week"));
  s.mday_star_ = f[2] == "*";
  s.wday_star_ = f[4] == "*";
  return s;
}

bool Schedule::can_match() const {
  // Days of the month only (any weekday): one of them must exist in one of
  // the months ("0 0 31 2 *" and "0 0 30 2 *" never come). With a weekday
  // too, either day field may match, and every weekday comes.
  if (kind_ != Kind::Cron || mday_star_ || !wday_star_)
    return true;
  static constexpr int kMaxDays[13] = {0, 31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};
  for (int m = 1; m <= 12; m++)
    for (int d = 1; d <= kMaxDays[m]; d++)
      if (month_.test(static_cast<size_t>(m)) && mday_.test(static_cast<size_t>(d)))
        return true;
  return false;
}

std::optional<int64_t> Schedule::next(int64_t after) const {
  if (kind_ == Kind::Manual)
    return std::nullopt;
  if (kind_ == Kind::Once)
    return at_ > after ? std::optional<int64_t>(at_) : std::nullopt;
  // From the next whole minute on, skipping whole days and hours that
  // cannot match; bounded to a few years (a "31 2 *" never matches).
  std::time_t t = static_cast<std::time_t>(after - (after % 60 + 60) % 60 + 60);
  for (int guard = 0; guard < 5 * 366 * 24 * 60 / 8; guard++) {
    std::tm tm{};
    localtime_r(&t, &tm);
    bool mday = mday_.test(static_cast<size_t>(tm.tm_mday)),
         wday = wday_.test(static_cast<size_t>(tm.tm_wday));
    // cron: when both day fields are restricted, either may match.
    bool day = (mday_star_ || wday_star_) ? (mday && wday) : (mday || wday);
    if (!month_.test(static_cast<size_t>(tm.tm_mon + 1)) || !day) {
      tm.tm_mday += 1;
      tm.tm_hour = 0;
      tm.tm_min = 0;
      tm.tm_sec = 0;
      tm.tm_isdst = -1;
      t = std::mktime(&tm);
      continue;
    }
    if (!hour_.test(static_cast<size_t>(tm.tm_hour))) {
      tm.tm_hour += 1;
      tm.tm_min = 0;
      tm.tm_sec = 0;
      tm.tm_isdst = -1;
      std::time_t n = std::mktime(&tm);
      t = n > t ? n : t + 3600;
      continue;
    }
    if (!minute_.test(static_cast<size_t>(tm.tm_min))) {
      t += 60;
      continue;
    }
    return static_cast<int64_t>(t);
  }
  return std::nullopt;
}

}  // namespace cm::sched
