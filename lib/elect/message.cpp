#include "elect/message.hpp"

#include <cstring>

#include "crypto/mac.hpp"
#include "util/hash.hpp"
#include "util/text.hpp"
#include "util/wire.hpp"

namespace cm::elect {

namespace {
constexpr char kMagic[4] = {'C', 'M', 'E', 'L'};
constexpr uint8_t kVersion = 1;
}  // namespace

const char* kind_name(Kind k) {
  switch (k) {
    case Kind::LeaderAlive: return "LA";
    case Kind::LeaderClaim: return "LC";
    case Kind::LeaderResign: return "LR";
    case Kind::Register: return "REG";
    case Kind::Report: return "RR";
  }
  return "?";
}

uint64_t id_hash(const std::string& id) {
  Digest d = sha256(id);
  uint64_t h;
  std::memcpy(&h, d.data(), sizeof h);
  return h;
}

std::string encode(const Message& m, const crypto::SymmetricKey* key) {
  std::string out(kMagic, sizeof kMagic);
  ByteWriter w(out);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(m.kind));
  w.u8(key != nullptr ? 1 : 0);
  w.bytes(m.sender);
  w.varint(m.priority);
  w.varint(m.boot);
  w.varint(m.counter);
  w.svarint(m.time_ms);
  switch (m.kind) {
    case Kind::LeaderAlive:
      w.varint(m.interval_ms);
      w.varint(m.members);
      break;
    case Kind::Register:
      w.bytes(m.name);
      w.bytes(m.address);
      w.varint(m.port);
      w.bytes(m.caps);
      break;
    case Kind::Report:
      w.varint(m.report_seq);
      w.varint(m.part);
      w.varint(m.parts);
      w.varint(m.hashes.size());
      for (uint64_t h : m.hashes)
        w.raw(std::string_view(reinterpret_cast<const char*>(&h), sizeof h));
      break;
    default: break;
  }
  if (key != nullptr)
    out += crypto::mac(*key, out);
  return out;
}

Result<Message> decode(std::string_view bytes, const crypto::SymmetricKey* key) {
  auto bad = [](const std::string& why) { return Error(why, kExitBadInput); };
  if (bytes.size() < 7 || bytes.size() > kMaxMessage || std::memcmp(bytes.data(), kMagic, 4) != 0)
    return bad("not a cm-elect message");
  if (static_cast<uint8_t>(bytes[4]) != kVersion)
    return bad("unsupported cm-elect message version " + std::to_string(static_cast<uint8_t>(bytes[4])));
  uint8_t flags = static_cast<uint8_t>(bytes[6]);
  if (flags > 1)
    return bad("unknown flags");
  if (key != nullptr) {
    if (flags != 1 || bytes.size() < 7 + crypto::kMacSize)
      return Error("unauthenticated message", kExitSecurity);
    std::string_view body = bytes.substr(0, bytes.size() - crypto::kMacSize);
    if (!crypto::mac_equal(crypto::mac(*key, body), bytes.substr(body.size())))
      return Error("bad message authentication code", kExitSecurity);
    bytes = body;
  } else if (flags != 0) {
    // Authenticated by someone with a key we do not have: cannot check.
    bytes = bytes.substr(
        0, bytes.size() >= 7 + crypto::kMacSize ? bytes.size() - crypto::kMacSize : bytes.size());
  }
  ByteReader r(bytes.substr(7));
  Message m;
  uint8_t kind = static_cast<uint8_t>(bytes[5]);
  if (kind < 1 || kind > 5)
    return bad("unknown message kind " + std::to_string(kind));
  m.kind = static_cast<Kind>(kind);
  m.sender = std::string(r.bytes(kMaxId));
  uint64_t prio = r.varint();
  if (prio > 65535)
    r.fail("priority out of range");
  m.priority = static_cast<uint32_t>(prio);
  m.boot = r.varint();
  m.counter = r.varint();
  m.time_ms = r.svarint();
  auto u32 = [&](uint64_t v) {
    if (v > UINT32_MAX)
      r.fail("field out of range");
    return static_cast<uint32_t>(v);
  };
  switch (m.kind) {
    case Kind::LeaderAlive:
      m.interval_ms = u32(r.varint());
      m.members = u32(r.varint());
      break;
    case Kind::Register:
      m.name = std::string(r.bytes(255));
      m.address = std::string(r.bytes(64));
      m.port = u32(r.varint());
      m.caps = std::string(r.bytes(kMaxCaps));
      break;
    case Kind::Report: {
      m.report_seq = r.varint();
      m.part = u32(r.varint());
      m.parts = u32(r.varint());
      uint64_t n = r.varint();
      if (n > kReportChunk || n * 8 > r.remaining())
        r.fail("bad member count");
      for (uint64_t i = 0; i < n && r.ok(); i++) {
        std::string_view h = r.raw(8);
        uint64_t v = 0;
        if (r.ok())
          std::memcpy(&v, h.data(), 8);
        m.hashes.push_back(v);
      }
      break;
    }
    default: break;
  }
  if (r.ok() && !r.at_end())
    r.fail("trailing bytes");
  if (!r.ok())
    return bad(std::string("malformed ") + kind_name(m.kind) + " (" + r.problem() + ")");
  if (m.sender.empty())
    return bad("no sender id");
  // They go into the cluster report (JSON) and the logs as they are.
  if (!is_valid_utf8(m.sender) || !is_valid_utf8(m.name) || !is_valid_utf8(m.address) ||
      !is_valid_utf8(m.caps))
    return bad("a name that is not UTF-8");
  if (m.kind == Kind::Report && (m.parts == 0 || m.part >= m.parts || m.parts > 4096))
    return bad("bad report part");
  if (m.kind == Kind::Register && m.port > 65535)
    return bad("bad port");
  return m;
}

bool ReplayGuard::accept(const Message& m, int64_t now_ms) {
  if (m.time_ms < now_ms - window_ms_ || m.time_ms > now_ms + window_ms_)
    return false;
  auto& boots = senders_[m.sender];
  // Forget boots not heard from for longer than the window.
  while (!boots.empty() && boots.front().seen_ms < now_ms - 2 * window_ms_ && boots.size() > 1)
    boots.pop_front();
  for (Boot& b : boots) {
    if (b.boot != m.boot)
      continue;
    if (m.counter <= b.counter)
      return false;
    b.counter = m.counter;
    b.seen_ms = now_ms;
    return true;
  }
  boots.push_back(Boot{m.boot, m.counter, now_ms});
  if (boots.size() > 8)
    boots.pop_front();
  return true;
}

}  // namespace cm::elect
