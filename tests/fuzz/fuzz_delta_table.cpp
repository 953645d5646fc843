// The delta table reader must reject any malformed input with an error,
// never crash, hang or read out of bounds.
#include <cstddef>
#include <cstdint>
#include <string>

#include <nlohmann/json.hpp>

#include "delta/table.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  cm::StringReader in(std::string(reinterpret_cast<const char*>(data), size));
  cm::delta::TableReader r(in, "fuzz");
  if (!r.open().ok())
    return 0;
  char buf[4096];
  for (int i = 0; i < 100000; i++) {
    auto e = r.next();
    if (!e.ok() || !*e)
      return 0;
    (void)cm::delta::describe(**e);
    (void)cm::delta::to_json(**e).dump();
    for (;;) {
      auto got = r.read_data(buf, sizeof buf);
      if (!got.ok() || *got == 0)
        break;
    }
  }
  return 0;
}
