// The election and registration protocol of one server, as a state
// machine driven by recv() and tick() with the time passed in (no clock,
// no socket, no sleeping inside), so tests run whole clusters in
// simulated time.
//
// The five states of the seed's Fig. 5 and claim 35:
//
//   Known      a leader is known: its LAs keep coming
//   Unknown    LAs stopped (or it resigned): after a delay that is shorter
//              the higher the priority, claim (send LC)
//   Conceding  heard a better claim: wait for that candidate's LA
//   Open       claimed: if no better LC and no leader's LA is heard for
//              the voting window, lead
//   Me         the leader: LA every interval; answer any weaker claim at
//              once with an LA; yield to a better one (with preemption)
//
// Claims are ordered by (priority, id): the highest wins, ties go to the
// greater id. Registration (claims 38-42): members send REG to the leader
// (and again every member interval, which keeps them alive); the leader
// multicasts a report of the registered ids a little after the last new
// registration, and periodically; a member missing from a report
// registers again after a random wait of up to a second.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "elect/message.hpp"

namespace cm::elect {

using Nanos = int64_t;  // a steady clock, in nanoseconds
inline constexpr Nanos kMs = 1000000;

enum class State { Known, Unknown, Conceding, Open, Me };
const char* state_name(State s);

struct Config {
  std::string id;
  uint32_t priority = 100;  // 1..65535; the measured or given priority
  bool never_lead = false;
  bool preempt = true;                 // a better candidate takes over a live leader
  uint32_t preempt_margin = 0;         // ... only when better by more than this
  Nanos la_interval = 200 * kMs;       // LA period
  int dead_factor = 3;                 // LAs missed before the leader is dead
  Nanos vote_window = 0;               // 0: la_interval / 4, at least 20 ms
  Nanos claim_step = 0;                // 0: la_interval / 10; the claim delay per better candidate
  Nanos member_interval = 1000 * kMs;  // a member's REG keepalive
  Nanos member_timeout = 5000 * kMs;   // a silent member is dropped
  Nanos report_delay = 300 * kMs;      // the report goes out this long after the last new REG
  Nanos report_interval = 5000 * kMs;  // and again this often
  Nanos reregister_max = 1000 * kMs;   // a member missing from a report waits up to this
  // What this server tells the leader about itself.
  std::string name, address, caps;
  uint32_t port = 0;
  uint64_t seed = 0;  // for the random waits
};

struct Member {
  std::string id, name, address, caps;
  uint32_t port = 0;
  uint32_t priority = 0;
  Nanos since = 0, last_seen = 0;
};

struct Event {
  enum Type { StateChanged, LeaderChanged, Joined, Left, Registered } type;
  std::string detail;  // new state, new leader, member id
};

class Elector {
 public:
  explicit Elector(Config cfg);

  // Starts listening: a leader's LA within one dead interval is followed;
  // otherwise this server claims (if it may lead).
  void start(Nanos now, int64_t wall_ms);
  void recv(const Message& m, Nanos now, int64_t wall_ms);
  void tick(Nanos now, int64_t wall_ms);
  // A clean shutdown: a leader says it resigns.
  void stop(Nanos now, int64_t wall_ms);
  // When tick() next has something to do.
  Nanos next_wakeup() const;

  // Messages to send (in order), and what happened since the last call.
  std::vector<Message> take_outgoing();
  std::vector<Event> take_events();
  // What the administrator must hear of that changes nothing here: another
  // process sending under this server's id (two hosts with one name).
  std::vector<std::string> take_warnings();

  State state() const { return state_; }
  const std::string& leader() const { return leader_; }
  uint32_t leader_priority() const { return leader_prio_; }
  bool registered() const { return registered_; }
  // The leader's table of registered members (this server included).
  const std::map<std::string, Member>& members() const { return members_; }
  const Config& config() const { return cfg_; }
  void set_priority(uint32_t p) { cfg_.priority = p; }
  uint32_t priority() const;
  uint64_t report_seq() const { return report_seq_; }

 private:
  bool can_lead() const { return !cfg_.never_lead && cfg_.priority > 0; }
  bool beats(uint32_t prio_a, const std::string& id_a, uint32_t prio_b, const std::string& id_b) const;
  bool beats_me(const Message& m) const { return beats(m.priority, m.sender, priority(), cfg_.id); }
  Nanos dead_interval() const;
  // How long to wait before claiming: one step for every live candidate
  // that would beat us (heard within the member timeout), none for a
  // recently deposed leader: the best candidate claims first.
  Nanos claim_delay(Nanos now, const std::string& lost) const;
  void heard(const Message& m, Nanos now);
  Nanos window() const;

  void set_state(State s);
  void set_leader(const std::string& id, uint32_t prio, Nanos interval);
  void send(Kind k, int64_t wall_ms);
  void claim(Nanos now, int64_t wall_ms);
  void become_unknown(Nanos now, const std::string& lost);
  void lead(Nanos now, int64_t wall_ms);
  void concede(const Message& m, Nanos now);
  void on_register(const Message& m, Nanos now);
  void on_report(const Message& m, Nanos now);
  void member_tick(Nanos now, int64_t wall_ms);
  void leader_tick(Nanos now, int64_t wall_ms);
  void send_report(Nanos now, int64_t wall_ms);

  Config cfg_;
  std::mt19937_64 rng_;
  uint64_t boot_;
  uint64_t counter_ = 0;
  State state_ = State::Unknown;
  std::string leader_;
  uint32_t leader_prio_ = 0;
  Nanos leader_interval_ = 0;
  Nanos last_la_ = 0;
  Nanos last_tick_ = 0;
  Nanos claim_at_ = 0;
  Nanos vote_deadline_ = 0;
  Nanos next_lc_ = 0;
  int lc_sent_ = 0;
  Nanos concede_deadline_ = 0;
  std::string conceded_to_;
  Nanos next_la_ = 0;
  Nanos last_led_ = -1;  // when this server last led (for its priority)

  // Registration, member side.
  bool registered_ = false;
  Nanos next_reg_ = 0;
  // Leader side.
  std::map<std::string, Member> members_;
  Nanos report_due_ = -1;
  Nanos next_report_ = 0;
  uint64_t report_seq_ = 0;
  std::map<uint64_t, std::vector<uint64_t>> report_parts_;  // being received
  struct Candidate {
    uint32_t priority;
    Nanos last_heard;
  };
  std::map<std::string, Candidate> candidates_;  // everyone heard who may lead

  std::vector<Message> out_;
  std::vector<Event> events_;
  std::vector<std::string> warnings_;
  std::set<uint64_t> clashing_boots_;  // of other processes using our id
};

}  // namespace cm::elect
