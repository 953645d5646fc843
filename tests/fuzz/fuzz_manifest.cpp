// The shadow manifest parser: any bytes give a manifest or an error.
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "delta/manifest.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  auto m = cm::delta::Manifest::parse(std::string_view(reinterpret_cast<const char*>(data), size), "fuzz");
  if (m.ok())
    (void)m->serialize();
  return 0;
}
