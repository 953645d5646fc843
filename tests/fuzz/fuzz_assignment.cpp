// The assignment reader (header, commands, data members, trailer, and a
// verify pass over all of it): any bytes give a clean error or a pack,
// never a crash, a hang or an unbounded allocation.
#include <cstddef>
#include <cstdint>
#include <string>

#include "assign/inspect.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cm::StringReader in(std::string(reinterpret_cast<const char*>(data), size), "fuzz");
  cm::assign::BufferedInput buf(in, "fuzz");
  for (int part = 0; part < 4; part++) {
    cm::assign::PackReader pack(buf, cm::assign::Keys{});
    if (!pack.open().ok())
      return 0;
    auto rep =
        cm::assign::verify(pack, false, [](const cm::assign::Command& c) { (void)cm::assign::describe(c); });
    if (!rep.ok())
      return 0;
    auto end = buf.at_end();
    if (!end.ok() || *end)
      return 0;
  }
  return 0;
}
