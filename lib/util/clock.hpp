// The clocks as integers: steady for timers and timeouts (it never jumps),
// wall for what people and other hosts read (report times, state files).
#pragma once

#include <chrono>
#include <cstdint>

namespace cm {

template <class Clock, class Unit>
int64_t clock_count() {
  return std::chrono::duration_cast<Unit>(Clock::now().time_since_epoch()).count();
}

inline int64_t steady_ns() {
  return clock_count<std::chrono::steady_clock, std::chrono::nanoseconds>();
}
inline int64_t steady_ms() {
  return clock_count<std::chrono::steady_clock, std::chrono::milliseconds>();
}
inline int64_t wall_ns() {
  return clock_count<std::chrono::system_clock, std::chrono::nanoseconds>();
}
inline int64_t wall_ms() {
  return clock_count<std::chrono::system_clock, std::chrono::milliseconds>();
}

}  // namespace cm
