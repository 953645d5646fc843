// cm-push's message decoder on a stream, and what the daemons do with a
// decoded message's fields (the job's chunk table, a leaders file): any
// bytes are a message or a clear error, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "push/client.hpp"
#include "push/job.hpp"
#include "push/plan.hpp"
#include "push/proto.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string bytes(reinterpret_cast<const char*>(data), size);
  cm::StringReader r(bytes, "fuzz");
  for (int i = 0; i < 8; i++) {
    auto m = cm::push::receive(r, "fuzz");
    if (!m.ok())
      break;
    (void)m->str("path");
    (void)m->num("job");
    auto meta = cm::push::JobMeta::get(*m);
    if (meta.ok()) {
      (void)meta->inline_data(*m);
      cm::push::Plan p(*meta, {}, 1, true, cm::push::PlanOptions{});
      (void)p.json();
    }
  }
  (void)cm::push::parse_leaders(bytes, "fuzz", 7801);
  return 0;
}
