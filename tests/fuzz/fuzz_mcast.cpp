// cm-mcast's packet decoder, and a receiver session and a sender fed with
// whatever decodes: any datagram is dropped or handled, never a crash.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>

#include "mcast/receiver.hpp"

namespace {
// The file in memory, so repairs decode against what was written.
class MemSink : public cm::mcast::FrameSink {
 public:
  cm::Status write(uint64_t off, std::string_view d) override {
    if (off + d.size() <= sizeof data_)
      std::memcpy(data_ + off, d.data(), d.size());
    return {};
  }
  cm::Result<size_t> read(uint64_t off, void* buf, size_t n) override {
    if (off >= sizeof data_)
      return size_t{0};
    n = std::min<size_t>(n, sizeof data_ - off);
    std::memcpy(buf, data_ + off, n);
    return n;
  }

 private:
  char data_[100000] = {};
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static cm::mcast::ReceiverSession* rx = [] {
    cm::mcast::Packet a;
    a.type = cm::mcast::Type::Announce;
    a.session = 1;
    a.name = "f";
    a.size = 100000;
    a.frame_size = 1000;
    a.frames = 100;
    a.fec = 16;  // repairs, in blocks of 16 frames
    return new cm::mcast::ReceiverSession(a, cm::mcast::ReceiverConfig{"m", 1000000, 1},
                                          std::make_unique<MemSink>());
  }();
  static cm::mcast::Sender* tx = [] {
    cm::mcast::SenderConfig c;
    c.session = 1;
    c.name = "f";
    c.size = 100000;
    c.frame_size = 1000;
    c.expect_count = 2;
    c.fec_block = 16;
    auto* s =
        new cm::mcast::Sender(c, [](uint64_t) -> cm::Result<std::string> { return std::string(1000, 'x'); });
    s->start(0);
    return s;
  }();
  static int64_t now = 0;
  now += 1000000;
  auto p = cm::mcast::decode(std::string_view(reinterpret_cast<const char*>(data), size), nullptr);
  if (!p.ok())
    return 0;
  switch (p->type) {
    case cm::mcast::Type::Data: rx->on_data(*p); break;
    case cm::mcast::Type::Repair: rx->on_repair(*p); break;
    case cm::mcast::Type::PassEnd: rx->on_pass_end(*p, now); break;
    case cm::mcast::Type::ReportReq: rx->on_report_req(*p, now); break;
    default: tx->recv(*p, cm::net::Endpoint{}, now); break;
  }
  (void)rx->tick(now);
  (void)rx->take_outgoing();
  (void)tx->tick(now);
  (void)tx->take_outgoing();
  (void)cm::mcast::encode(*p, nullptr);
  return 0;
}
