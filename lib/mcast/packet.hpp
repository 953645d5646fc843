// cm-mcast's packets, layout in cm-mcast(7):
//
//   "CMMC" version(1) type(1) flags(1) session(8) body [mac(16)]
//
// The sender multicasts ANNOUNCE, DATA, REPAIR, PASS_END, REPORT_REQ and
// END on the data channel; receivers answer it by unicast with JOIN, NACK, DONE
// and REPORT. With a key every packet carries HMAC-SHA256 (first 16 bytes)
// over all that precedes it; receivers and sender drop and count packets
// that fail it. Replays are not refused: the session id is random (a
// packet of another session is ignored) and a packet taken twice within
// its session changes no outcome (DATA, a JOIN or a REPORT again is the
// same; a NACK again costs frames sent again at most); the sequence
// numbers control packets carry are not checked.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/keys.hpp"
#include "util/hash.hpp"
#include "util/result.hpp"

namespace cm::mcast {

enum class Type : uint8_t {
  Announce = 1,
  Data = 2,
  PassEnd = 3,
  Join = 4,
  Nack = 5,
  Done = 6,
  Report = 7,
  ReportReq = 8,
  End = 9,
  Repair = 10,
};
const char* type_name(Type t);

inline constexpr size_t kHeader = 15;        // magic, version, type, flags, session
inline constexpr size_t kMaxPacket = 65000;  // one UDP datagram
inline constexpr size_t kMaxOutput = 8192;   // of a report's command output
inline constexpr size_t kMaxName = 255;
inline constexpr size_t kRangesPerNack = 300;  // ranges (or block needs) in one NACK part
// Frames in one session at most: a receiver keeps a bit per frame and a
// count per block, so an announce must not make it allocate without bound
// (2^28 frames: 32 MiB of bits; 389 GB at the default frame size).
inline constexpr uint64_t kMaxFrames = uint64_t{1} << 28;

struct Range {
  uint64_t start = 0, count = 0;
};

struct Packet {
  Type type = Type::Data;
  uint64_t session = 0;
  uint64_t seq = 0;  // control packets: a per-sender counter (replays); DATA: the frame number
  // ANNOUNCE
  uint64_t assignment = 0;  // the assignment id (0 for other files)
  std::string name;
  uint64_t size = 0;
  Digest sha256{};
  uint32_t frame_size = 0;
  uint64_t frames = 0;
  uint64_t rate = 0;        // bits per second
  uint32_t reply_port = 0;  // where to send answers (the sender's port)
  uint32_t expected = 0;    // members the sender expects
  uint32_t fec = 0;         // frames in a block of the repair code (0: no repairs)
  // DATA, REPAIR, PASS_END, NACK, DONE
  uint32_t pass = 0;
  std::string payload;  // DATA, REPAIR
  uint32_t index = 0;   // REPAIR: which repair of block `seq`
  uint64_t sent = 0;    // PASS_END: frames sent in the pass
  // JOIN, NACK, DONE, REPORT
  std::string member;
  uint8_t status = 0;  // JOIN: 0 needs it, 1 has it; REPORT: 1 received;
                       // NACK: 0 answers PASS_END, 1 early (blocks the pass is past)
  // NACK: missing frames, in part `part` of `parts`
  uint64_t missing = 0;
  uint32_t part = 0, parts = 1;
  std::vector<Range> ranges;
  // NACK with repairs: per block (start), how many frames it needs (count)
  std::vector<Range> needs;
  // REPORT
  int32_t exit_code = -1;  // of the command; -1: none run
  std::string output;      // its standard output (JSON for cm-apply --json)
  uint32_t millis = 0;     // how long it ran
  // REPORT_REQ: the members asked to report (mode 1), or those that need
  // not (mode 0), as hashes
  uint8_t mode = 0;
  std::vector<uint64_t> hashes;
};

uint64_t member_hash(const std::string& id);

std::string encode(const Packet& p, const crypto::SymmetricKey* key);
// Checks magic, version, bounds, and the MAC when a key is given.
Result<Packet> decode(std::string_view bytes, const crypto::SymmetricKey* key);

// Bytes a DATA packet carries besides its payload.
size_t data_header(uint64_t frame, uint32_t pass, bool keyed);
// Bytes a REPAIR packet carries besides its payload.
size_t repair_header(uint64_t block, uint32_t pass, uint32_t index, bool keyed);
// The most, for any DATA or REPAIR packet of a file of `size` bytes
// (passes below 16384).
size_t data_overhead(uint64_t size, bool keyed);

}  // namespace cm::mcast
