// When a job runs: a cron expression ("*/5 * * * *", "@daily"), one time
// ("at 2026-11-25T10:00"), or on demand ("manual"). Times are seconds since
// the epoch; fields are read in local time, as cron does.
#pragma once

#include <bitset>
#include <cstdint>
#include <optional>
#include <string>

#include "util/result.hpp"

namespace cm::sched {

class Schedule {
 public:
  static Result<Schedule> parse(const std::string& text);
  // The first time strictly after `after` (to the minute) that matches;
  // nullopt for manual, or a one-time schedule already past.
  std::optional<int64_t> next(int64_t after) const;
  const std::string& text() const { return text_; }
  bool manual() const { return kind_ == Kind::Manual; }
  bool once() const { return kind_ == Kind::Once; }
  // False for a cron expression no date can match ("0 0 31 2 *"): refused
  // when a job is given one, but read from an older database as it is.
  bool can_match() const;

 private:
  enum class Kind { Manual, Once, Cron } kind_ = Kind::Manual;
  std::string text_;
  int64_t at_ = 0;
  std::bitset<60> minute_;
  std::bitset<24> hour_;
  std::bitset<32> mday_;   // 1..31
  std::bitset<13> month_;  // 1..12
  std::bitset<8> wday_;    // 0..6, Sunday 0 (7 is read as 0)
  bool mday_star_ = false, wday_star_ = false;
};

// "2026-11-25T10:00", "2026-11-25 10:00:30" (local time) or "@1795600000".
Result<int64_t> parse_time(const std::string& s);
std::string format_time(int64_t t);  // "2026-11-25 10:00:00"

}  // namespace cm::sched
