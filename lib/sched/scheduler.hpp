// The scheduler of the seed: on each tick it recovers jobs whose tick died,
// picks the due jobs one by one, detects run-time conflicts (same site and
// overlapping servers as a running job: queue or cancel, as the job's
// policy says), checks that a quorum of the group's servers is reachable,
// runs the job command (cm-job) and records what it reports: the run, the
// per-server reports, the site's new sequence, snapshots and checkpoints;
// failures are retried with back-off, then given up until the next
// occurrence. The clock is a parameter, so tests move it.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sched/store.hpp"

namespace cm::sched {

// Runs whose work directories are kept (config keep_runs; 0 keeps all).
inline constexpr int64_t kKeepRuns = 50;

struct RunSpec {
  std::string command;
  std::vector<std::string> env;  // NAME=value, added to ours
  std::string log;               // stdout and stderr go here
  int timeout_s = 0;             // 0: none
};

// How a job command is run: a shell command in its own process group in
// production; something in memory in unit tests.
class Runner {
 public:
  virtual ~Runner() = default;
  // Runs to the end; `started` is told the child's pid once it runs.
  // Returns the exit status (128 + signal when killed, 124 on timeout).
  virtual Result<int> run(const RunSpec& spec, const std::function<void(pid_t)>& started) = 0;
  // Whether a process that once ran the command is still alive.
  virtual bool alive(pid_t pid, int64_t start) = 0;
  // Stops a job command left behind by a dead tick.
  virtual void stop(pid_t pid) = 0;
};

class ShellRunner : public Runner {
 public:
  Result<int> run(const RunSpec& spec, const std::function<void(pid_t)>& started) override;
  bool alive(pid_t pid, int64_t start) override;
  void stop(pid_t pid) override;
};

// A process's start time (from /proc), so a reused pid is not mistaken for it.
int64_t process_start(pid_t pid);

struct SchedOptions {
  int64_t now = 0;
  std::string db_path;
  std::string job_cmd;  // default: cm-job beside this program
  Runner* runner = nullptr;
  std::function<void(const std::string&)> log;
};

struct Event {
  std::string job, action, message;  // action: started succeeded failed refused queued cancelled recovered
  int64_t run = 0;
};

// One tick: everything due is run (or queued, cancelled, refused).
Result<std::vector<Event>> tick(Store& store, const SchedOptions& opt);
// One job now, whatever its schedule (a conflict refuses it: kExitBusy).
Result<std::vector<Event>> run_now(Store& store, const std::string& job, const SchedOptions& opt);
// Jobs whose tick died mid-run: their command is stopped, the run marked
// interrupted and retried as a failure.
Result<std::vector<Event>> recover(Store& store, const SchedOptions& opt);

// Whether a job's policy holds an empty or blank quorum: what an older
// cm-sched stored for --quorum '' and ran as all, which it still means
// (new input refuses it).
bool stored_quorum_blank(const nlohmann::json& policy);

// The next time a job is due after `after` by its schedule (nullopt: none).
Result<std::optional<int64_t>> next_due(const std::string& schedule, int64_t after);

// A cm-elect cluster report (or the output of `cm-push status --json`, or
// an array of them): its servers go into the database, seen at `now`.
// A server new to a group makes that group's replicate jobs due.
Result<size_t> import_servers(Store& store, const nlohmann::json& report, int64_t now);

// The status of everything: jobs, their last runs, servers' freshness.
Result<nlohmann::json> status(Store& store, int64_t now);

}  // namespace cm::sched
