// cm-sched's schedule and time parsers: any text is a schedule or a clear
// error, and next() always ends.
#include <cstddef>
#include <cstdint>
#include <string>

#include "sched/cron.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string text(reinterpret_cast<const char*>(data), size);
  auto s = cm::sched::Schedule::parse(text);
  if (s.ok())
    (void)s->next(1795600800);
  (void)cm::sched::parse_time(text);
  return 0;
}
