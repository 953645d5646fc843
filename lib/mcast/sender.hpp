// The sending side of one cm-mcast session, as a state machine driven by
// recv() and tick() with the time passed in: tests run it against
// simulated receivers on a lossy simulated LAN.
//
//   announce  ANNOUNCE, then wait a moment for JOINs (a member that has
//             the file already says so and sits out)
//   pass k    DATA for every frame still missing somewhere (all of them
//             in pass 1), paced at the rate; then PASS_END
//   collect   NACKs (ranges of missing frames) and DONEs, each receiver
//             after a small random wait; the union of the NACKs is the
//             next pass; the rate halves when a pass loses a quarter.
//             With repairs (fec_block, fec.hpp) a NACK says how many
//             frames each block needs; the next pass sends, per block,
//             that many new repairs for the neediest receiver (the
//             block's frames themselves when one needs them all)
//   reports   every member that has the file reports (after its command
//             ran); missing reports are asked for again, by unicast when
//             few, else by one multicast listing the shorter of the
//             reported and the missing members; bounded rounds
//   end       END; the outcome per member
//
// It stops early after max_idle_passes passes without progress and names
// who is missing.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "mcast/packet.hpp"
#include "net/udp.hpp"

namespace cm::mcast {

using Nanos = int64_t;
inline constexpr Nanos kMs = 1000000;

// Bytes on the wire for a UDP payload of `udp` bytes on a link of `mtu`:
// a datagram larger than one packet goes as IP fragments, each with its
// own IP and Ethernet headers.
uint64_t wire_bytes(uint64_t udp, uint32_t mtu);

struct Expected {
  std::string id;
  std::optional<net::Endpoint> address;  // from the cluster report, when known
};

struct SenderConfig {
  uint64_t session = 0;
  uint64_t assignment = 0;
  std::string name;
  uint64_t size = 0;
  Digest sha256{};
  uint32_t frame_size = 1400;
  uint32_t mtu = 1500;          // of the sending interface: larger frames are fragmented
  uint64_t rate = 100'000'000;  // bits per second on the wire: the cap
  uint32_t reply_port = 0;
  bool keyed = false;
  std::vector<Expected> expected;  // from --members
  size_t expect_count = 0;         // --expect N (when no list)
  size_t quorum = 0;               // 0: all expected
  Nanos join_wait = 30 * kMs;      // before pass 1, unless everyone joined sooner
  // A file this small goes out right behind the announce, without waiting
  // for the members' joins (with expected members): a round trip costs
  // more than sending it to one that had it already.
  uint64_t eager_bytes = 64 * 1024;
  Nanos collect_wait = 40 * kMs;  // for NACKs after a pass
  Nanos announce_every = 250 * kMs;
  int max_idle_passes = 5;
  Nanos max_idle = 3000 * kMs;  // and no progress for this long: stop
  Nanos report_timeout = 60000 * kMs;
  Nanos report_round = 250 * kMs;  // first re-request; then doubling
  uint64_t seed = 1;
  uint32_t fec_block = 0;  // frames in a block of the repair code; 0: none
};

// Reads frame i of the file.
using FrameSource = std::function<Result<std::string>(uint64_t frame)>;

struct Outgoing {
  Packet packet;
  std::optional<net::Endpoint> to;  // unicast; otherwise the channel
};

struct MemberOutcome {
  std::string id;
  std::optional<net::Endpoint> address;
  bool joined = false;
  bool had_it = false;    // held this assignment already
  bool received = false;  // has a verified copy
  bool reported = false;
  int32_t exit_code = -1;  // of its command (-1: none ran)
  std::string output;
  uint32_t millis = 0;
  uint32_t passes = 0;  // pass in which it completed
  // Counted: in the --members list, or any member with --expect. One not
  // listed is served as it comes but neither counts toward the quorum nor
  // holds the session open.
  bool expected = true;
  bool succeeded() const {
    return (received || had_it) && (exit_code == -1 || exit_code == 0) && (reported || had_it);
  }
};

struct SenderStats {
  uint32_t passes = 0;
  uint64_t data_packets = 0, data_bytes = 0;  // payload
  uint64_t wire_bytes = 0;                    // everything sent, with UDP/IP/Ethernet headers
  uint64_t retransmitted = 0;                 // frames and repairs sent after the first pass
  uint64_t repairs = 0;                       // repair frames sent
  uint64_t early_repairs = 0;                 // of them, asked for by early NACKs
  uint64_t rate = 0;                          // at the end
};

class Sender {
 public:
  Sender(SenderConfig cfg, FrameSource source);

  void start(Nanos now);
  void recv(const Packet& p, const net::Endpoint& from, Nanos now);
  Status tick(Nanos now);
  Nanos next_wakeup() const;
  std::vector<Outgoing> take_outgoing();

  bool finished() const { return phase_ == Phase::Finished; }
  bool succeeded() const;  // the quorum succeeded
  size_t quorum() const;
  // Members the sender expects: the --members list, or --expect N.
  size_t expected() const { return cfg_.expected.empty() ? cfg_.expect_count : cfg_.expected.size(); }
  std::vector<MemberOutcome> outcome() const;
  const SenderStats& stats() const { return stats_; }
  std::string phase_name() const;
  // Every frame has been sent once: what follows is waiting (for NACKs,
  // reports) and resending what was missed.
  bool first_pass_sent() const { return phase_ != Phase::Announce && !(phase_ == Phase::Send && pass_ <= 1); }
  uint64_t frames() const { return frames_; }
  size_t complete_members() const;

 private:
  enum class Phase { Announce, Send, Collect, Reports, Finished };
  struct Member {
    MemberOutcome out;
    uint64_t hash = 0;
    bool replied = false;      // to the last PASS_END: every part of its NACK (or a DONE)
    std::set<uint32_t> parts;  // NACK parts heard for the current pass
    uint64_t missing = 0;
    Nanos last_heard = 0;
  };

  Member& member(const std::string& id);
  Packet base(Type t);
  void send(Packet p, std::optional<net::Endpoint> to = std::nullopt);
  void pass_end(Nanos now);
  void next_pass(Nanos now);
  void enter_reports(Nanos now);
  void report_round(Nanos now);
  void finish();
  Packet announce_packet();
  bool all_received() const;
  bool all_reported() const;
  bool needed(const Member& m) const { return !m.out.had_it && !m.out.received; }
  uint64_t wire_cost(size_t payload, uint64_t frame) const;
  uint32_t block_frames(uint64_t b) const;
  struct RepairItem {
    uint64_t block;
    uint32_t first, count;
  };
  // Repairs to send, item after item; an item's repairs are made at once.
  struct RepairQueue {
    std::vector<RepairItem> items;
    size_t index = 0;
    uint32_t sent = 0;  // of items[index]
    std::vector<std::string> cache;
    bool pending() const { return index < items.size(); }
    void clear() {
      items.clear();
      index = 0;
      sent = 0;
      cache.clear();
    }
  };
  void queue_repairs(RepairQueue& q, uint64_t b, uint32_t n);
  Status send_repair(RepairQueue& q);
  void early_needs(const Packet& p);

  SenderConfig cfg_;
  FrameSource source_;
  std::mt19937_64 rng_;
  Phase phase_ = Phase::Announce;
  uint64_t frames_ = 0;
  uint64_t counter_ = 0;
  std::map<std::string, Member> members_;
  uint32_t pass_ = 0;
  std::vector<Range> todo_;  // frames of the current pass
  size_t todo_index_ = 0;
  uint64_t todo_next_ = 0;
  uint64_t pass_sent_ = 0;
  std::vector<Range> missing_;         // union of this pass's NACKs
  uint32_t fec_ = 0;                   // frames in a block (0: no repairs)
  std::vector<uint8_t> need_;          // per block: the most any receiver needs
  std::vector<uint8_t> next_repair_;   // per block: the first repair not sent yet
  RepairQueue repairs_;                // this pass's, from the NACKs after the last
  RepairQueue early_;                  // from early NACKs during this pass, sent first
  std::vector<uint8_t> early_queued_;  // per block: early repairs queued, not sent yet
  Nanos deadline_ = 0;
  bool eager_ = false;  // the first pass went out before the joins
  Nanos pass_end_again_ = 0;
  Nanos next_announce_ = 0;
  Nanos budget_at_ = 0;  // pacing: when the next packet may go
  uint64_t rate_ = 0;
  int idle_passes_ = 0;
  Nanos progress_at_ = 0;  // the last time a member completed or the missing set shrank
  size_t last_complete_ = 0;
  uint64_t last_union_ = UINT64_MAX;
  int report_rounds_ = 0;
  Nanos next_round_ = 0;
  Nanos reports_started_ = 0;
  std::vector<Outgoing> out_;
  SenderStats stats_;
};

// Ranges: a sorted union, and the total they cover.
void add_range(std::vector<Range>& set, Range r);
uint64_t total(const std::vector<Range>& set);

}  // namespace cm::mcast
