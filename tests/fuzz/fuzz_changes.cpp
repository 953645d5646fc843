// The change record parser (cm-apply's .cm/changes/<id>): any bytes give a
// record or an error; a record read back encodes to what was read.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <string_view>

#include "apply/spare.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string_view in(reinterpret_cast<const char*>(data), size);
  auto r = cm::apply::decode_changes(in, "fuzz");
  if (r.ok()) {
    auto again = cm::apply::decode_changes(cm::apply::encode_changes(*r), "fuzz");
    if (!again.ok() || again->base != r->base || again->paths.size() != r->paths.size())
      std::abort();
  }
  return 0;
}
