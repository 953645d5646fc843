// One distribution's state machine, as the manager sees it: who holds a
// copy, who fetches from whom, who failed. No sockets and no clock of its
// own: `serve` feeds it what leaders say and the time, and carries out the
// notifications it returns, so the tree's logic is unit-tested without a
// network (the mosh way).
//
// The tree (seed, Figs. 6 and 7): the manager serves the first leaders;
// every leader that holds a copy asks "whom next?" and is given the next
// leader waiting, preferring its own location, until none is left. With
// cut-through, a leader that has been notified already counts as a holder
// (it serves what it has verified as it arrives), so the tree is set up in
// a few round trips and the file streams through it like a pipeline. A
// leader that dies or stalls is marked failed; those it was serving are
// handed to another holder with enough of the file, or to the manager, and
// resume from the bytes they have.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/udp.hpp"
#include "push/job.hpp"

namespace cm::push {

inline constexpr const char* kManager = "manager";

struct Leader {
  std::string id;  // its certificate's name
  net::Endpoint agent;
  std::string location, segment;
  uint32_t priority = 0;
};

struct LeaderState {
  Leader who;
  // pending notified receiving complete delivered failed
  std::string state = "pending";
  std::string source;  // who serves it
  std::vector<std::string> failed_sources;
  uint64_t bytes = 0;    // verified so far
  unsigned serving = 0;  // leaders fetching from it now
  int64_t last_heard = 0;
  int64_t started_ms = 0, completed_ms = 0;
  int deliver_exit = -1;
  nlohmann::json group;  // the deliver command's report
  std::string failure;
};

// "Fetch the job from that source": for serve to send.
struct Notice {
  std::string leader;
  std::string source;
};

struct PlanOptions {
  unsigned manager_fanout = 1;
  unsigned leader_fanout = 1;
  // A job whose copies for all leaders come to at most this many bytes
  // goes from the manager to every leader at once (a star): each hop of
  // the tree costs round trips, which a small file never earns back.
  // 0: always the tree (cm-push serve sets --star, 1 MiB by default).
  uint64_t star_bytes = 0;
  int64_t stall_ms = 10000;  // a leader silent this long has failed
};

struct Answer {
  enum Kind { Target, Wait, None } kind = None;
  std::string leader;  // for Target
  int wait_ms = 0;
};

class Plan {
 public:
  Plan() = default;
  Plan(JobMeta meta, std::vector<Leader> leaders, size_t quorum, bool cut_through, PlanOptions opt);

  // Time is steady milliseconds, wall is for the report.
  std::vector<Notice> start(int64_t now, int64_t wall);
  Answer next(const std::string& holder, int64_t now, int64_t wall, std::vector<Notice>& out);
  // What a leader says: "receiving" (with bytes), "complete", or
  // "source-failed" (naming the source). Returns an error message for a
  // stranger.
  std::string status(const std::string& leader, const std::string& state, uint64_t bytes,
                     const std::string& source, const std::string& why, int64_t now, int64_t wall,
                     std::vector<Notice>& out);
  std::string delivered(const std::string& leader, int exit, const nlohmann::json& group, int64_t now,
                        int64_t wall);
  // Notifying a leader failed.
  void unreachable(const std::string& leader, const std::string& why, int64_t now, int64_t wall,
                   std::vector<Notice>& out);
  // Leaders silent too long fail.
  void tick(int64_t now, int64_t wall, std::vector<Notice>& out);
  // A segment whose leader failed has a new one (cm-elect elected it): it
  // joins the job, and the manager or a holder serves it.
  bool replace_leader(const Leader& fresh, int64_t now, int64_t wall, std::vector<Notice>& out);
  // Asked when a leader fails: the current leader of its segment, if
  // another (serve looks in its registry). Not saved with the plan.
  void set_successor(std::function<std::optional<Leader>(const LeaderState&)> f) {
    successor_ = std::move(f);
  }
  // After a restart: every leader counts as just heard from; those notified
  // are notified again.
  std::vector<Notice> resume(int64_t now);
  // A leader's agent (re)started and lost what it held in memory: notified
  // again, it resumes from the verified part on its disk (one receiving,
  // from the same source; one complete whose report is still to come, from
  // the best holder). One that was given up on meanwhile joins again, unless
  // its segment has another leader now. False when there is nothing to tell
  // it: the job is over, or the leader is waiting, delivered or a stranger.
  bool rejoin(const std::string& leader, int64_t now, int64_t wall, std::vector<Notice>& out);

  bool done() const { return done_; }
  int64_t finished_ms() const { return finished_ms_; }  // wall ms when it became done
  bool cut_through() const { return cut_through_; }
  bool succeeded() const;
  size_t leaders_ok() const;
  const JobMeta& meta() const { return meta_; }
  const std::vector<LeaderState>& leaders() const { return leaders_; }
  const LeaderState* find(const std::string& id) const;

  // The report; and back from it (with the chunk table kept apart).
  nlohmann::json json() const;
  static Plan from_json(const nlohmann::json& j, JobMeta meta, PlanOptions opt);

 private:
  LeaderState* get(const std::string& id);
  bool holder(const LeaderState& l) const;
  // Failed, and its segment has a leader in the job that has not: what it
  // says later (complete, delivered) is not counted, its segment's is.
  bool replaced(const LeaderState& l) const;
  void fail(LeaderState& l, const std::string& why, int64_t now, int64_t wall, std::vector<Notice>& out);
  // A new source for l; `lost`: the source l just reported lost, not yet
  // given up on.
  void reassign(LeaderState& l, int64_t now, int64_t wall, std::vector<Notice>& out,
                const LeaderState* lost = nullptr);
  void fill_manager(int64_t now, int64_t wall, std::vector<Notice>& out);
  void release_source(const LeaderState& l);
  void notify(LeaderState& l, const std::string& source, int64_t now, int64_t wall, std::vector<Notice>& out);
  void check(int64_t wall);

  JobMeta meta_;
  std::vector<LeaderState> leaders_;
  size_t quorum_ = 0;
  bool cut_through_ = true;
  PlanOptions opt_;
  unsigned manager_serving_ = 0;
  bool done_ = false;
  int64_t created_ms_ = 0, finished_ms_ = 0;
  std::function<std::optional<Leader>(const LeaderState&)> successor_;
};

}  // namespace cm::push
