// cm-sched's database: sites, content groups, servers, jobs, runs,
// per-server reports, snapshots and checkpoints (schema in cm-sched(5)).
// Every check on what an administrator asks happens before anything is
// written; every write is one transaction.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "sched/db.hpp"

namespace cm::sched {

inline constexpr const char* kJobTypes[] = {"publish",  "replicate", "synchronize", "restore",
                                            "rollback", "remove",    "checkpoint"};
bool valid_job_type(const std::string& t);
bool valid_name(const std::string& n);  // letters, digits, . _ - ; 1..64

struct Site {
  std::string name, staging, shadow;
  int64_t next_id = 1;        // the next assignment id to hand out
  int64_t sequence = 0;       // the content sequence the shadow copy holds
  int64_t last_sequence = 0;  // the highest ever published (a rollback goes back; numbers do not)
};

struct Group {
  std::string name;
  std::string segments;  // comma-separated cm-elect segments: cm-push --group
  std::string leaders;   // or a leaders file: cm-push --leaders
};

struct Job {
  std::string name, type, site, group, schedule;
  nlohmann::json policy = nlohmann::json::object();
  std::string state = "idle";  // idle queued running done failed disabled
  std::optional<int64_t> next_run;
  int64_t attempt = 0;  // failed attempts of the current occurrence
  std::optional<int64_t> run;
  int64_t owner_pid = 0, owner_start = 0, child_pid = 0;
  std::string message;
};

struct Server {
  std::string id, segment, leader, address;
  std::string status = "unknown";  // ok failed missing unknown
  int64_t last_seen = 0;
};

struct Run {
  int64_t id = 0;
  std::string job, type, site, status;  // running succeeded failed interrupted cancelled refused
  int64_t started = 0;
  std::optional<int64_t> finished;
  int64_t attempt = 0, exit_code = -1;
  std::optional<int64_t> sequence;
  std::string message, log;
  nlohmann::json result;
};

class Store {
 public:
  static Result<std::unique_ptr<Store>> open(const std::string& path, bool create, bool read_only = false);
  Db& db() { return *db_; }

  Result<std::optional<Site>> site(const std::string& name);
  Result<std::vector<Site>> sites();
  Status put_site(const Site& s, bool replace);
  Status remove_site(const std::string& name);

  Result<std::optional<Group>> group(const std::string& name);
  Result<std::vector<Group>> groups();
  Status put_group(const Group& g, bool replace);
  Status remove_group(const std::string& name);

  Result<std::optional<Job>> job(const std::string& name);
  Result<std::vector<Job>> jobs();
  Status put_job(const Job& j, bool replace);
  Status remove_job(const std::string& name);

  Result<std::vector<Server>> servers();
  // The servers of a group: those in its segments.
  Result<std::vector<Server>> group_servers(const Group& g);
  Status put_server(const Server& s);
  Result<int64_t> server_sequence(const std::string& server, const std::string& site);
  // Every (server, site) -> sequence, in one query.
  Result<std::map<std::pair<std::string, std::string>, int64_t>> all_sequences();
  Status set_server_sequence(const std::string& server, const std::string& site, int64_t seq, int64_t now);

  Result<int64_t> add_run(const Run& r);
  Status finish_run(const Run& r);
  Result<std::vector<Run>> runs(const std::string& job, int64_t limit);
  Result<std::optional<Run>> run(int64_t id);
  Status add_report(int64_t run, const std::string& server, const std::string& leader,
                    const std::string& status, const nlohmann::json& detail);
  Result<nlohmann::json> reports(int64_t run);

  Status add_snapshot(const std::string& site, int64_t seq, const std::string& job, int64_t run, int64_t time,
                      const nlohmann::json& details);
  Result<nlohmann::json> snapshots(const std::string& site);
  Status add_checkpoint(const std::string& site, int64_t seq, int64_t time, const std::string& path,
                        int64_t bytes);
  // Checkpoints of a site, newest first: id, sequence, time, path, bytes.
  Result<nlohmann::json> checkpoints(const std::string& site);
  Status remove_checkpoint(const std::string& site, int64_t id);

  Result<std::string> config(const std::string& key, const std::string& fallback);
  Status set_config(const std::string& key, const std::string& value);

 private:
  std::unique_ptr<Db> db_;
};

Job job_from(Stmt& s);

}  // namespace cm::sched
