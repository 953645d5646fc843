// cm-mcast send and recv: the protocol of sender.hpp and receiver.hpp on
// real sockets and files.
#pragma once

#include <netinet/in.h>

#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "crypto/keys.hpp"
#include "mcast/fec.hpp"
#include "mcast/sender.hpp"
#include "net/udp.hpp"

namespace cm::mcast {

inline constexpr uint32_t kDefaultFecBlock = 128;

struct SendOptions {
  std::string file;
  net::Endpoint channel;
  in_addr interface {};
  const crypto::SymmetricKey* key = nullptr;
  uint64_t rate = 500'000'000;
  uint32_t frame_size = 0;                // 0: fits one 1500-byte packet
  uint32_t fec_block = kDefaultFecBlock;  // frames in a block of repairs (0: none)
  std::vector<Expected> expected;
  size_t expect_count = 0;
  std::optional<std::string> quorum;  // "N" or "P%"; none: all
  int max_idle_passes = 5;
  double report_timeout = 60;
  std::function<void(const std::string&)> progress;  // a status line, often
  // The leader is a server too: this command runs on the file here (beside
  // the multicast, once its first pass is out) and counts as the member
  // self_id.
  std::string self_exec, self_id;
  // Cut-through: `file` is still being written, as `follow`, by a process
  // that renames it to `file` once whole and verified (cm-push agent
  // --deliver-early). Frames are sent as their bytes arrive; the size and
  // SHA-256, which cannot be read yet, are given; the self command waits
  // for `file`. It fails when the file does not grow for follow_idle s.
  std::string follow;
  uint64_t follow_size = 0;
  Digest follow_sha256{};
  double follow_idle = 60;
};

struct SendResult {
  std::vector<MemberOutcome> members;
  size_t unheard = 0;  // --expect N: members never heard from (no id to list)
  SenderStats stats;
  bool succeeded = false;
  size_t quorum = 0;
  double seconds = 0;
  uint64_t size = 0;
  uint64_t assignment = 0;
};

Result<SendResult> run_send(const SendOptions& opt);
nlohmann::json to_json(const SendResult& r);
std::string to_text(const SendResult& r);

// The members of a cm-elect cluster report (the sender itself left out);
// `self` is set to the report's own id.
Result<std::vector<Expected>> members_from_report(const std::string& path, uint16_t port,
                                                  std::string* self = nullptr);

struct RecvOptions {
  std::string dir;
  std::string id;
  net::Endpoint channel;
  in_addr interface {};
  const crypto::SymmetricKey* key = nullptr;
  std::string exec;   // run on each complete file; {} is its path
  bool once = false;  // stop after the first file (and its command)
  // Files received kept in `dir` (the newest; 0: all). Only what this
  // daemon received goes: their names are listed in dir/.cm-mcast.received.
  unsigned keep = 20;
  std::function<void(const std::string&)> log;           // what happens (-v)
  std::function<void(const std::string&)> error;         // what failed: always said
  std::function<void(const nlohmann::json&)> completed;  // one per file
};

// Runs until SIGTERM/SIGINT (or, with once, the first file).
Status run_recv(const RecvOptions& opt);

}  // namespace cm::mcast
