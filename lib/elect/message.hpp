// cm-elect's control messages, layout in cm-elect(7):
//
//   "CMEL" version(1) kind(1) flags(1) body [mac(16)]
//
// LA leader alive, LC leader claim, LR leader resigns, REG a member
// registers (and keeps itself alive), RR the leader's registration report.
// With a key every message carries HMAC-SHA256 (first 16 bytes) over all
// that precedes it, and the replay guard rejects old or repeated ones.
#pragma once

#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "crypto/keys.hpp"
#include "util/result.hpp"

namespace cm::elect {

enum class Kind : uint8_t { LeaderAlive = 1, LeaderClaim = 2, LeaderResign = 3, Register = 4, Report = 5 };
const char* kind_name(Kind k);

inline constexpr size_t kMaxId = 64;
inline constexpr size_t kMaxCaps = 1024;
inline constexpr size_t kMaxMessage = 16 * 1024;
inline constexpr size_t kReportChunk = 512;  // member hashes per report datagram

struct Message {
  Kind kind = Kind::LeaderAlive;
  std::string sender;     // node id
  uint32_t priority = 0;  // voting priority, 0..65535; 0 never leads
  uint64_t boot = 0;      // random per process start
  uint64_t counter = 0;   // per boot, increasing
  int64_t time_ms = 0;    // sender's wall clock
  // LA
  uint32_t interval_ms = 0;  // the leader's LA interval: members time out on it
  uint32_t members = 0;      // members the leader knows
  // REG
  std::string name;     // host name
  std::string address;  // where the member receives data ("10.0.0.5")
  uint32_t port = 0;
  std::string caps;  // capabilities, JSON text
  // RR
  uint64_t report_seq = 0;
  uint32_t part = 0, parts = 1;
  std::vector<uint64_t> hashes;  // of registered member ids
};

// The 64-bit hash of a member id used in reports.
uint64_t id_hash(const std::string& id);

std::string encode(const Message& m, const crypto::SymmetricKey* key);
// Checks magic, version, bounds, and the MAC when a key is given (a
// message without one is then refused).
Result<Message> decode(std::string_view bytes, const crypto::SymmetricKey* key);

// Rejects replayed and stale messages: a message older than `window_ms`
// by the sender's clock, or not newer (by counter) than one already seen
// from the same sender and boot.
class ReplayGuard {
 public:
  explicit ReplayGuard(int64_t window_ms = 30000) : window_ms_(window_ms) {}
  bool accept(const Message& m, int64_t now_ms);

 private:
  struct Boot {
    uint64_t boot;
    uint64_t counter;
    int64_t seen_ms;
  };
  int64_t window_ms_;
  std::map<std::string, std::deque<Boot>> senders_;
};

}  // namespace cm::elect
