// cm-elect's message decoder and the elector fed with whatever decodes:
// any datagram is dropped or handled, never a crash.
#include <cstddef>
#include <cstdint>
#include <string>

#include "elect/elector.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cm::elect::Elector* e = [] {
    cm::elect::Config c;
    c.id = "fuzz";
    c.priority = 500;
    auto* el = new cm::elect::Elector(c);
    el->start(0, 0);
    return el;
  }();
  static int64_t now = 0;
  auto m = cm::elect::decode(std::string_view(reinterpret_cast<const char*>(data), size), nullptr);
  now += 1000000;
  if (m.ok())
    e->recv(*m, now, now / 1000000);
  e->tick(now, now / 1000000);
  (void)e->take_outgoing();
  (void)e->take_events();
  return 0;
}
