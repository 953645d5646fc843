#include "mcast/packet.hpp"

#include <cstring>

#include "crypto/mac.hpp"
#include "mcast/fec.hpp"
#include "util/wire.hpp"

namespace cm::mcast {

namespace {
constexpr char kMagic[4] = {'C', 'M', 'M', 'C'};
constexpr uint8_t kVersion = 2;  // 2: repair frames
constexpr size_t kMaxRanges = 4096;
constexpr size_t kMaxHashes = 4096;
}  // namespace

const char* type_name(Type t) {
  switch (t) {
    case Type::Announce: return "ANNOUNCE";
    case Type::Data: return "DATA";
    case Type::PassEnd: return "PASS_END";
    case Type::Join: return "JOIN";
    case Type::Nack: return "NACK";
    case Type::Done: return "DONE";
    case Type::Report: return "REPORT";
    case Type::ReportReq: return "REPORT_REQ";
    case Type::End: return "END";
    case Type::Repair: return "REPAIR";
  }
  return "?";
}

uint64_t member_hash(const std::string& id) {
  Digest d = sha256(id);
  uint64_t h;
  std::memcpy(&h, d.data(), sizeof h);
  return h;
}

namespace {
size_t varint_len(uint64_t v) {
  size_t n = 1;
  while (v >= 0x80) {
    v >>= 7;
    n++;
  }
  return n;
}
}  // namespace

size_t data_header(uint64_t frame, uint32_t pass, bool keyed) {
  return kHeader + varint_len(frame) + varint_len(pass) + (keyed ? crypto::kMacSize : 0);
}

size_t repair_header(uint64_t block, uint32_t pass, uint32_t index, bool keyed) {
  return kHeader + varint_len(block) + varint_len(pass) + varint_len(index) + (keyed ? crypto::kMacSize : 0);
}

size_t data_overhead(uint64_t size, bool keyed) {
  // A repair's block number and index (below 255) take no more than a
  // frame number of the same file and two bytes.
  return kHeader + varint_len(size) + 2 + 2 + (keyed ? crypto::kMacSize : 0);
}

std::string encode(const Packet& p, const crypto::SymmetricKey* key) {
  std::string out(kMagic, sizeof kMagic);
  out.reserve(kHeader + 32 + p.payload.size());
  ByteWriter w(out);
  w.u8(kVersion);
  w.u8(static_cast<uint8_t>(p.type));
  w.u8(key != nullptr ? 1 : 0);
  w.raw(std::string_view(reinterpret_cast<const char*>(&p.session), 8));
  w.varint(p.seq);
  switch (p.type) {
    case Type::Announce:
      w.varint(p.assignment);
      w.bytes(p.name);
      w.varint(p.size);
      w.digest(p.sha256);
      w.varint(p.frame_size);
      w.varint(p.frames);
      w.varint(p.rate);
      w.varint(p.reply_port);
      w.varint(p.expected);
      w.varint(p.fec);
      break;
    case Type::Data:
      w.varint(p.pass);
      w.raw(p.payload);
      break;
    case Type::Repair:
      w.varint(p.pass);
      w.varint(p.index);
      w.raw(p.payload);
      break;
    case Type::PassEnd:
      w.varint(p.pass);
      w.varint(p.sent);
      break;
    case Type::Join:
      w.bytes(p.member);
      w.u8(p.status);
      break;
    case Type::Nack: {
      w.bytes(p.member);
      w.varint(p.pass);
      w.u8(p.status);
      w.varint(p.missing);
      w.varint(p.part);
      w.varint(p.parts);
      w.varint(p.ranges.size());
      uint64_t at = 0;
      for (const Range& r : p.ranges) {
        w.varint(r.start - at);  // ranges ascend: store the gaps
        w.varint(r.count);
        at = r.start + r.count;
      }
      w.varint(p.needs.size());
      at = 0;
      for (const Range& r : p.needs) {
        w.varint(r.start - at);  // blocks ascend
        w.varint(r.count);
        at = r.start + 1;
      }
      break;
    }
    case Type::Done:
      w.bytes(p.member);
      w.varint(p.pass);
      break;
    case Type::Report:
      w.bytes(p.member);
      w.u8(p.status);
      w.svarint(p.exit_code);
      w.varint(p.millis);
      w.bytes(p.output);
      break;
    case Type::ReportReq:
      w.u8(p.mode);
      w.varint(p.hashes.size());
      for (uint64_t h : p.hashes)
        w.raw(std::string_view(reinterpret_cast<const char*>(&h), 8));
      break;
    case Type::End: break;
  }
  if (key != nullptr)
    out += crypto::mac(*key, out);
  return out;
}

Result<Packet> decode(std::string_view bytes, const crypto::SymmetricKey* key) {
  auto bad = [](const std::string& why) { return Error(why, kExitBadInput); };
  if (bytes.size() < kHeader || bytes.size() > kMaxPacket || std::memcmp(bytes.data(), kMagic, 4) != 0)
    return bad("not a cm-mcast packet");
  if (static_cast<uint8_t>(bytes[4]) != kVersion)
    return bad("unsupported cm-mcast version");
  uint8_t type = static_cast<uint8_t>(bytes[5]);
  uint8_t flags = static_cast<uint8_t>(bytes[6]);
  if (type < 1 || type > 10 || flags > 1)
    return bad("unknown packet type or flags");
  if (key != nullptr) {
    if (flags != 1 || bytes.size() < kHeader + crypto::kMacSize)
      return Error("unauthenticated packet", kExitSecurity);
    std::string_view body = bytes.substr(0, bytes.size() - crypto::kMacSize);
    if (!crypto::mac_equal(crypto::mac(*key, body), bytes.substr(body.size())))
      return Error("bad packet authentication code", kExitSecurity);
    bytes = body;
  } else if (flags == 1) {
    if (bytes.size() < kHeader + crypto::kMacSize)
      return bad("truncated packet");
    bytes = bytes.substr(0, bytes.size() - crypto::kMacSize);
  }
  Packet p;
  p.type = static_cast<Type>(type);
  std::memcpy(&p.session, bytes.data() + 7, 8);
  ByteReader r(bytes.substr(kHeader));
  p.seq = r.varint();
  auto u32 = [&](uint64_t v) {
    if (v > UINT32_MAX)
      r.fail("field out of range");
    return static_cast<uint32_t>(v);
  };
  switch (p.type) {
    case Type::Announce:
      p.assignment = r.varint();
      p.name = std::string(r.bytes(kMaxName));
      p.size = r.varint();
      p.sha256 = r.digest();
      p.frame_size = u32(r.varint());
      p.frames = r.varint();
      p.rate = r.varint();
      p.reply_port = u32(r.varint());
      p.expected = u32(r.varint());
      p.fec = u32(r.varint());
      break;
    case Type::Data:
      p.pass = u32(r.varint());
      p.payload = std::string(r.raw(r.remaining()));
      break;
    case Type::Repair:
      p.pass = u32(r.varint());
      p.index = u32(r.varint());
      p.payload = std::string(r.raw(r.remaining()));
      break;
    case Type::PassEnd:
      p.pass = u32(r.varint());
      p.sent = r.varint();
      break;
    case Type::Join:
      p.member = std::string(r.bytes(64));
      p.status = r.u8();
      break;
    case Type::Nack: {
      p.member = std::string(r.bytes(64));
      p.pass = u32(r.varint());
      p.status = r.u8();
      if (p.status > 1)
        r.fail("bad NACK kind");
      p.missing = r.varint();
      p.part = u32(r.varint());
      p.parts = u32(r.varint());
      uint64_t n = r.varint();
      if (n > kMaxRanges)
        r.fail("too many ranges");
      uint64_t at = 0;
      for (uint64_t i = 0; i < n && r.ok(); i++) {
        uint64_t gap = r.varint(), count = r.varint();
        if (count == 0 || gap > UINT64_MAX - at || count > UINT64_MAX - at - gap)
          r.fail("bad range");
        p.ranges.push_back(Range{at + gap, count});
        at += gap + count;
      }
      n = r.varint();
      if (n > kMaxRanges)
        r.fail("too many block needs");
      at = 0;
      for (uint64_t i = 0; i < n && r.ok(); i++) {
        uint64_t gap = r.varint(), need = r.varint();
        if (need == 0 || need > 255 || at == UINT64_MAX || gap > UINT64_MAX - 1 - at)
          r.fail("bad block need");
        p.needs.push_back(Range{at + gap, need});
        at += gap + 1;
      }
      break;
    }
    case Type::Done:
      p.member = std::string(r.bytes(64));
      p.pass = u32(r.varint());
      break;
    case Type::Report:
      p.member = std::string(r.bytes(64));
      p.status = r.u8();
      p.exit_code = static_cast<int32_t>(r.svarint());
      p.millis = u32(r.varint());
      p.output = std::string(r.bytes(kMaxOutput));
      break;
    case Type::ReportReq: {
      p.mode = r.u8();
      uint64_t n = r.varint();
      if (n > kMaxHashes || n * 8 > r.remaining())
        r.fail("bad member count");
      for (uint64_t i = 0; i < n && r.ok(); i++) {
        std::string_view h = r.raw(8);
        uint64_t v = 0;
        if (r.ok())
          std::memcpy(&v, h.data(), 8);
        p.hashes.push_back(v);
      }
      break;
    }
    case Type::End: break;
  }
  if (r.ok() && !r.at_end())
    r.fail("trailing bytes");
  if (!r.ok())
    return bad(std::string("malformed ") + type_name(p.type) + " (" + r.problem() + ")");
  if (p.type == Type::Announce) {
    if (p.frame_size < 64 || p.frame_size > 60000)
      return bad("bad frame size");
    if (p.fec == 1 || p.fec > kMaxFecBlock)
      return bad("bad repair block size");
    // Bounded first: the count below cannot overflow then.
    if (p.frames > kMaxFrames || p.size > kMaxFrames * p.frame_size)
      return bad("too many frames");
    if (p.frames != (p.size + p.frame_size - 1) / p.frame_size + (p.size == 0 ? 1 : 0))
      return bad("frame count does not match the size");
    // Not a dot file: a receiver's own files in its directory start with
    // a dot (.cm-mcast.*), and a sender must not name one of them.
    if (p.name.empty() || p.name[0] == '.' || p.name.find('/') != std::string::npos ||
        p.name.find('\0') != std::string::npos)
      return bad("bad file name");
  }
  if ((p.type == Type::Join || p.type == Type::Nack || p.type == Type::Done || p.type == Type::Report) &&
      p.member.empty())
    return bad("no member id");
  if (p.type == Type::Nack && (p.parts == 0 || p.part >= p.parts))
    return bad("bad NACK part");
  if (p.type == Type::ReportReq && p.mode > 1)
    return bad("bad report request mode");
  return p;
}

}  // namespace cm::mcast
