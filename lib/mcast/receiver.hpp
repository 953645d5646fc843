// The receiving side of one cm-mcast session, driven by recv() and tick()
// with the time passed in. Frames go straight to a sink (a temporary file
// at the frame's offset): memory holds one bit a frame, not the file.
// The SHA-256 is computed as frames arrive in order and finished from the
// sink for what came out of order, so a clean transfer is never read back.
// With repairs (fec.hpp), a block's repairs wait in memory (bounded) until
// the block can be decoded; the frames at hand are read back from the sink
// for that.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mcast/packet.hpp"
#include "mcast/sender.hpp"
#include "util/hash.hpp"

namespace cm::mcast {

class FrameSink {
 public:
  virtual ~FrameSink() = default;
  virtual Status write(uint64_t offset, std::string_view data) = 0;
  virtual Result<size_t> read(uint64_t offset, void* buf, size_t n) = 0;
};

struct ReceiverConfig {
  std::string member;           // this receiver's id
  Nanos backoff_max = 5 * kMs;  // answers to PASS_END and REPORT_REQ wait up to this
  uint64_t seed = 1;
  // Repairs held for blocks not complete yet, at most (bytes; never less
  // than one block's frames). Past it the farthest blocks' repairs make
  // room for nearer ones (and are asked for again), so the nearest
  // incomplete block always completes.
  size_t max_held = 16u << 20;
};

class ReceiverSession {
 public:
  ReceiverSession(const Packet& announce, ReceiverConfig cfg, std::unique_ptr<FrameSink> sink);

  void on_data(const Packet& p);
  void on_repair(const Packet& p);
  void on_pass_end(const Packet& p, Nanos now);
  void on_report_req(const Packet& p, Nanos now);
  Status tick(Nanos now);
  Nanos next_wakeup() const { return reply_at_ >= 0 ? reply_at_ : INT64_MAX; }
  std::vector<Outgoing> take_outgoing();

  // All frames are in and the SHA-256 matched (checked once, when the
  // last frame arrived). A mismatch throws the frames away and starts over.
  bool complete() const { return verified_; }
  uint64_t received_frames() const { return have_; }
  const Packet& announce() const { return announce_; }
  FrameSink& sink() { return *sink_; }
  // The command's outcome, to report (and to repeat when asked).
  void set_report(int32_t exit_code, std::string output, uint32_t millis, Nanos now);
  bool reported() const { return report_.has_value(); }
  uint64_t corrupt_restarts() const { return restarts_; }
  uint64_t repaired_frames() const { return repaired_; }
  size_t held_bytes() const { return held_bytes_; }

 private:
  bool has(uint64_t f) const { return (bits_[f / 64] >> (f % 64)) & 1; }
  size_t frame_length(uint64_t f) const;
  void accept(uint64_t f, std::string_view payload);
  void hash_ahead();
  void early_nack(uint64_t f, uint32_t pass);
  uint32_t block_frames(uint64_t b) const;
  struct Held {
    uint32_t index;
    std::string bytes;
  };
  std::vector<Held> take_held(uint64_t b);  // out of held_, and out of held_bytes_
  uint32_t held_count(uint64_t b) const;    // repairs held for block b
  uint64_t lacks(uint64_t b) const;         // frames block b lacks, less its repairs held
  void decode(uint64_t b);

  Status verify();
  void reply(Nanos now);
  Packet base(Type t);

  Packet announce_;
  ReceiverConfig cfg_;
  std::unique_ptr<FrameSink> sink_;
  std::mt19937_64 rng_;
  std::vector<uint64_t> bits_;
  uint64_t have_ = 0;
  uint64_t frames_ = 0;
  Sha256 hash_;
  uint64_t hashed_frames_ = 0;  // in order, from the start
  bool verified_ = false;
  bool failed_ = false;
  std::string fail_why_;
  void fail(const std::string& why);
  uint32_t pass_ = 0;
  Nanos reply_at_ = -1;
  enum class Reply { None, PassEnd, Report } pending_ = Reply::None;
  std::optional<Packet> report_;
  uint64_t counter_ = 0;
  uint64_t restarts_ = 0;
  uint32_t fec_ = 0;  // frames in a block (0: no repairs)
  std::vector<uint16_t> block_have_;
  std::map<uint64_t, std::vector<Held>> held_;
  size_t held_bytes_ = 0;
  uint64_t repaired_ = 0;
  uint64_t early_from_ = 0;        // the first block no early NACK covered yet
  std::set<uint64_t> early_open_;  // blocks listed early and not complete then
  std::vector<Outgoing> out_;
};

}  // namespace cm::mcast
