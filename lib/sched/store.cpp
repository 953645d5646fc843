#include "sched/store.hpp"
#include "util/text.hpp"

#include <algorithm>
#include <cctype>
#include <sstream>

namespace cm::sched {

namespace {

// Schema changes are appended here, never edited: a database is brought up
// to date on open.
const std::vector<std::string> kMigrations = {
    R"sql(
CREATE TABLE config(key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE sites(
  name TEXT PRIMARY KEY, staging TEXT NOT NULL, shadow TEXT NOT NULL,
  next_id INTEGER NOT NULL DEFAULT 1, sequence INTEGER NOT NULL DEFAULT 0,
  last_sequence INTEGER NOT NULL DEFAULT 0);
CREATE TABLE groups(
  name TEXT PRIMARY KEY, segments TEXT NOT NULL DEFAULT '', leaders TEXT NOT NULL DEFAULT '');
CREATE TABLE servers(
  id TEXT PRIMARY KEY, segment TEXT NOT NULL DEFAULT '', leader TEXT NOT NULL DEFAULT '',
  address TEXT NOT NULL DEFAULT '', status TEXT NOT NULL DEFAULT 'unknown', last_seen INTEGER NOT NULL DEFAULT 0);
CREATE INDEX servers_segment ON servers(segment);
CREATE TABLE server_sites(
  server TEXT NOT NULL, site TEXT NOT NULL, sequence INTEGER NOT NULL DEFAULT 0, updated INTEGER,
  PRIMARY KEY(server, site));
CREATE TABLE jobs(
  name TEXT PRIMARY KEY, type TEXT NOT NULL,
  site TEXT NOT NULL REFERENCES sites(name), grp TEXT NOT NULL REFERENCES groups(name),
  schedule TEXT NOT NULL, policy TEXT NOT NULL DEFAULT '{}', state TEXT NOT NULL DEFAULT 'idle',
  next_run INTEGER, attempt INTEGER NOT NULL DEFAULT 0, run INTEGER,
  owner_pid INTEGER NOT NULL DEFAULT 0, owner_start INTEGER NOT NULL DEFAULT 0, child_pid INTEGER NOT NULL DEFAULT 0,
  message TEXT NOT NULL DEFAULT '');
CREATE INDEX jobs_due ON jobs(state, next_run);
CREATE TABLE runs(
  id INTEGER PRIMARY KEY, job TEXT NOT NULL, type TEXT NOT NULL, site TEXT NOT NULL,
  started INTEGER NOT NULL, finished INTEGER, status TEXT NOT NULL, attempt INTEGER NOT NULL DEFAULT 0,
  exit_code INTEGER NOT NULL DEFAULT -1, sequence INTEGER, message TEXT NOT NULL DEFAULT '',
  log TEXT NOT NULL DEFAULT '', result TEXT NOT NULL DEFAULT '{}');
CREATE INDEX runs_job ON runs(job, id);
CREATE TABLE reports(
  run INTEGER NOT NULL, server TEXT NOT NULL, leader TEXT NOT NULL DEFAULT '', status TEXT NOT NULL,
  detail TEXT NOT NULL DEFAULT '{}', PRIMARY KEY(run, server));
CREATE TABLE snapshots(
  site TEXT NOT NULL, sequence INTEGER NOT NULL, job TEXT NOT NULL, run INTEGER NOT NULL, time INTEGER NOT NULL,
  details TEXT NOT NULL DEFAULT '{}', PRIMARY KEY(site, sequence));
CREATE TABLE checkpoints(
  site TEXT NOT NULL, id INTEGER NOT NULL, sequence INTEGER NOT NULL, time INTEGER NOT NULL,
  path TEXT NOT NULL, bytes INTEGER NOT NULL DEFAULT 0, PRIMARY KEY(site, id));
)sql",
};

nlohmann::json parse_json(const std::string& s) {
  auto j = nlohmann::json::parse(s, nullptr, false);
  return j.is_discarded() ? nlohmann::json::object() : j;
}

Site site_from(Stmt& s) {
  return Site{s.text(0), s.text(1), s.text(2), s.i64(3), s.i64(4), s.i64(5)};
}

Group group_from(Stmt& s) {
  return Group{s.text(0), s.text(1), s.text(2)};
}

Server server_from(Stmt& s) {
  Server v;
  v.id = s.text(0);
  v.segment = s.text(1);
  v.leader = s.text(2);
  v.address = s.text(3);
  v.status = s.text(4);
  v.last_seen = s.i64(5);
  return v;
}

Run run_from(Stmt& s) {
  Run r;
  r.id = s.i64(0);
  r.job = s.text(1);
  r.type = s.text(2);
  r.site = s.text(3);
  r.started = s.i64(4);
  r.finished = s.opt_i64(5);
  r.status = s.text(6);
  r.attempt = s.i64(7);
  r.exit_code = s.i64(8);
  r.sequence = s.opt_i64(9);
  r.message = s.text(10);
  r.log = s.text(11);
  r.result = parse_json(s.text(12));
  return r;
}

constexpr const char* kJobColumns =
    "name, type, site, grp, schedule, policy, state, next_run, attempt, run, owner_pid, owner_start, "
    "child_pid, "
    "message";
constexpr const char* kRunColumns =
    "id, job, type, site, started, finished, status, attempt, exit_code, sequence, message, log, result";

template <class T, class F>
Result<std::vector<T>> all(Db& db, const std::string& sql, F from) {
  CM_ASSIGN(Stmt s, db.prepare(sql));
  std::vector<T> out;
  CM_TRY(s.each([&] { out.push_back(from(s)); }));
  return out;
}

}  // namespace

Job job_from(Stmt& s) {
  Job j;
  j.name = s.text(0);
  j.type = s.text(1);
  j.site = s.text(2);
  j.group = s.text(3);
  j.schedule = s.text(4);
  j.policy = parse_json(s.text(5));
  j.state = s.text(6);
  j.next_run = s.opt_i64(7);
  j.attempt = s.i64(8);
  j.run = s.opt_i64(9);
  j.owner_pid = s.i64(10);
  j.owner_start = s.i64(11);
  j.child_pid = s.i64(12);
  j.message = s.text(13);
  return j;
}

bool valid_job_type(const std::string& t) {
  return std::find(std::begin(kJobTypes), std::end(kJobTypes), t) != std::end(kJobTypes);
}

bool valid_name(const std::string& n) {
  if (n.empty() || n.size() > 64 || n[0] == '-' || n[0] == '.')
    return false;
  return std::all_of(n.begin(), n.end(), [](char c) {
    return std::isalnum(static_cast<unsigned char>(c)) || c == '.' || c == '_' || c == '-';
  });
}

Result<std::unique_ptr<Store>> Store::open(const std::string& path, bool create, bool read_only) {
  auto s = std::make_unique<Store>();
  CM_ASSIGN(s->db_, Db::open(path, kMigrations, create, 5000, read_only));
  return s;
}

Result<std::optional<Site>> Store::site(const std::string& name) {
  CM_ASSIGN(Stmt s,
            db_->prepare(
                "SELECT name, staging, shadow, next_id, sequence, last_sequence FROM sites WHERE name = ?"));
  s.bind(1, name);
  CM_ASSIGN(bool row, s.step());
  if (!row)
    return std::optional<Site>();
  return std::optional<Site>(site_from(s));
}

Result<std::vector<Site>> Store::sites() {
  return all<Site>(*db_,
                   "SELECT name, staging, shadow, next_id, sequence, last_sequence FROM sites ORDER BY name",
                   site_from);
}

Status Store::put_site(const Site& v, bool replace) {
  CM_ASSIGN(
      Stmt s,
      db_->prepare(replace ? "UPDATE sites SET staging = ?2, shadow = ?3, next_id = ?4, sequence = ?5, "
                             "last_sequence = ?6 WHERE name = ?1"
                           : "INSERT INTO sites(name, staging, shadow, next_id, sequence, last_sequence) "
                             "VALUES(?1, ?2, ?3, ?4, ?5, ?6)"));
  s.bind(1, v.name).bind(2, v.staging).bind(3, v.shadow).bind(4, v.next_id).bind(5, v.sequence);
  s.bind(6, std::max(v.last_sequence, v.sequence));
  return s.run();
}

Status Store::remove_site(const std::string& name) {
  CM_ASSIGN(Stmt s, db_->prepare("DELETE FROM sites WHERE name = ?"));
  s.bind(1, name);
  return s.run();
}

Result<std::optional<Group>> Store::group(const std::string& name) {
  CM_ASSIGN(Stmt s, db_->prepare("SELECT name, segments, leaders FROM groups WHERE name = ?"));
  s.bind(1, name);
  CM_ASSIGN(bool row, s.step());
  if (!row)
    return std::optional<Group>();
  return std::optional<Group>(group_from(s));
}

Result<std::vector<Group>> Store::groups() {
  return all<Group>(*db_, "SELECT name, segments, leaders FROM groups ORDER BY name", group_from);
}

Status Store::put_group(const Group& g, bool replace) {
  CM_ASSIGN(Stmt s, db_->prepare(replace ? "UPDATE groups SET segments = ?2, leaders = ?3 WHERE name = ?1"
                                         : "INSERT INTO groups(name, segments, leaders) VALUES(?1, ?2, ?3)"));
  s.bind(1, g.name).bind(2, g.segments).bind(3, g.leaders);
  return s.run();
}

Status Store::remove_group(const std::string& name) {
  CM_ASSIGN(Stmt s, db_->prepare("DELETE FROM groups WHERE name = ?"));
  s.bind(1, name);
  return s.run();
}

Result<std::optional<Job>> Store::job(const std::string& name) {
  CM_ASSIGN(Stmt s, db_->prepare(std::string("SELECT ") + kJobColumns + " FROM jobs WHERE name = ?"));
  s.bind(1, name);
  CM_ASSIGN(bool row, s.step());
  if (!row)
    return std::optional<Job>();
  return std::optional<Job>(job_from(s));
}

Result<std::vector<Job>> Store::jobs() {
  return all<Job>(*db_, std::string("SELECT ") + kJobColumns + " FROM jobs ORDER BY name", job_from);
}

Status Store::put_job(const Job& j, bool replace) {
  CM_ASSIGN(
      Stmt s,
      db_->prepare(replace ? "UPDATE jobs SET type = ?2, site = ?3, grp = ?4, schedule = ?5, policy = ?6, "
                             "state = ?7, next_run = ?8, attempt = ?9, run = ?10, owner_pid = ?11, "
                             "owner_start = ?12, child_pid = ?13, message = ?14 WHERE name = ?1"
                           : "INSERT INTO jobs(name, type, site, grp, schedule, policy, state, next_run, "
                             "attempt, run, owner_pid, owner_start, child_pid, message) "
                             "VALUES(?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12, ?13, ?14)"));
  s.bind(1, j.name)
      .bind(2, j.type)
      .bind(3, j.site)
      .bind(4, j.group)
      .bind(5, j.schedule)
      .bind(6, json_text(j.policy));
  s.bind(7, j.state).bind(8, j.next_run).bind(9, j.attempt).bind(10, j.run).bind(11, j.owner_pid);
  s.bind(12, j.owner_start).bind(13, j.child_pid).bind(14, j.message);
  return s.run();
}

Status Store::remove_job(const std::string& name) {
  CM_ASSIGN(Stmt s, db_->prepare("DELETE FROM jobs WHERE name = ?"));
  s.bind(1, name);
  return s.run();
}

Result<std::vector<Server>> Store::servers() {
  return all<Server>(*db_, "SELECT id, segment, leader, address, status, last_seen FROM servers ORDER BY id",
                     server_from);
}

Result<std::vector<Server>> Store::group_servers(const Group& g) {
  if (g.segments.empty() || g.segments == "all")
    return servers();
  // One query through the segment index: a tick over many servers reads
  // only the group's.
  std::vector<std::string> segs;
  std::stringstream ss(g.segments);
  for (std::string x; std::getline(ss, x, ',');)
    if (!x.empty())
      segs.push_back(x);
  std::string sql = "SELECT id, segment, leader, address, status, last_seen FROM servers WHERE segment IN (";
  for (size_t i = 0; i < segs.size(); i++)
    sql += i == 0 ? "?" : ", ?";
  CM_ASSIGN(Stmt s, db_->prepare(sql + ") ORDER BY id"));
  for (size_t i = 0; i < segs.size(); i++)
    s.bind(static_cast<int>(i + 1), segs[i]);
  std::vector<Server> out;
  CM_TRY(s.each([&] { out.push_back(server_from(s)); }));
  return out;
}

Result<std::map<std::pair<std::string, std::string>, int64_t>> Store::all_sequences() {
  CM_ASSIGN(Stmt s, db_->prepare("SELECT server, site, sequence FROM server_sites"));
  std::map<std::pair<std::string, std::string>, int64_t> out;
  CM_TRY(s.each([&] { out[{s.text(0), s.text(1)}] = s.i64(2); }));
  return out;
}

Status Store::put_server(const Server& v) {
  CM_ASSIGN(Stmt s, db_->prepare("INSERT INTO servers(id, segment, leader, address, status, last_seen) "
                                 "VALUES(?1, ?2, ?3, ?4, ?5, ?6) ON CONFLICT(id) DO UPDATE SET segment = ?2, "
                                 "leader = ?3, address = ?4, status = ?5, last_seen = max(last_seen, ?6)"));
  s.bind(1, v.id)
      .bind(2, v.segment)
      .bind(3, v.leader)
      .bind(4, v.address)
      .bind(5, v.status)
      .bind(6, v.last_seen);
  return s.run();
}

Result<int64_t> Store::server_sequence(const std::string& server, const std::string& site) {
  CM_ASSIGN(Stmt s, db_->prepare("SELECT sequence FROM server_sites WHERE server = ? AND site = ?"));
  s.bind(1, server).bind(2, site);
  CM_ASSIGN(bool row, s.step());
  return row ? s.i64(0) : int64_t{0};
}

Status Store::set_server_sequence(const std::string& server, const std::string& site, int64_t seq,
                                  int64_t now) {
  CM_ASSIGN(Stmt s,
            db_->prepare("INSERT INTO server_sites(server, site, sequence, updated) VALUES(?1, ?2, ?3, ?4) "
                         "ON CONFLICT(server, site) DO UPDATE SET sequence = ?3, updated = ?4"));
  s.bind(1, server).bind(2, site).bind(3, seq).bind(4, now);
  return s.run();
}

Result<int64_t> Store::add_run(const Run& r) {
  CM_ASSIGN(Stmt s,
            db_->prepare("INSERT INTO runs(job, type, site, started, finished, status, attempt, exit_code, "
                         "sequence, message, log, result) VALUES(?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"));
  s.bind(1, r.job).bind(2, r.type).bind(3, r.site).bind(4, r.started).bind(5, r.finished).bind(6, r.status);
  s.bind(7, r.attempt).bind(8, r.exit_code).bind(9, r.sequence).bind(10, r.message).bind(11, r.log);
  s.bind(12, r.result.is_null() ? std::string("{}") : json_text(r.result));
  CM_TRY(s.run());
  return db_->last_insert_id();
}

Status Store::finish_run(const Run& r) {
  CM_ASSIGN(Stmt s, db_->prepare("UPDATE runs SET finished = ?2, status = ?3, exit_code = ?4, sequence = ?5, "
                                 "message = ?6, log = ?7, result = ?8 WHERE id = ?1"));
  s.bind(1, r.id).bind(2, r.finished).bind(3, r.status).bind(4, r.exit_code).bind(5, r.sequence);
  s.bind(6, r.message).bind(7, r.log).bind(8, r.result.is_null() ? std::string("{}") : json_text(r.result));
  return s.run();
}

Result<std::vector<Run>> Store::runs(const std::string& job, int64_t limit) {
  std::string sql = std::string("SELECT ") + kRunColumns + " FROM runs" +
                    (job.empty() ? "" : " WHERE job = ?1") + " ORDER BY id DESC LIMIT " +
                    std::to_string(limit);
  CM_ASSIGN(Stmt s, db_->prepare(sql));
  if (!job.empty())
    s.bind(1, job);
  std::vector<Run> out;
  CM_TRY(s.each([&] { out.push_back(run_from(s)); }));
  return out;
}

Result<std::optional<Run>> Store::run(int64_t id) {
  CM_ASSIGN(Stmt s, db_->prepare(std::string("SELECT ") + kRunColumns + " FROM runs WHERE id = ?"));
  s.bind(1, id);
  CM_ASSIGN(bool row, s.step());
  if (!row)
    return std::optional<Run>();
  return std::optional<Run>(run_from(s));
}

Status Store::add_report(int64_t run, const std::string& server, const std::string& leader,
                         const std::string& status, const nlohmann::json& detail) {
  CM_ASSIGN(Stmt s, db_->prepare("INSERT OR REPLACE INTO reports(run, server, leader, status, detail) "
                                 "VALUES(?, ?, ?, ?, ?)"));
  s.bind(1, run).bind(2, server).bind(3, leader).bind(4, status).bind(5, json_text(detail));
  return s.run();
}

Result<nlohmann::json> Store::reports(int64_t run) {
  CM_ASSIGN(Stmt s,
            db_->prepare("SELECT server, leader, status, detail FROM reports WHERE run = ? ORDER BY server"));
  s.bind(1, run);
  nlohmann::json out = nlohmann::json::array();
  CM_TRY(s.each([&] {
    out.push_back({{"server", s.text(0)},
                   {"leader", s.text(1)},
                   {"status", s.text(2)},
                   {"detail", parse_json(s.text(3))}});
  }));
  return out;
}

Status Store::add_snapshot(const std::string& site, int64_t seq, const std::string& job, int64_t run,
                           int64_t time, const nlohmann::json& details) {
  CM_ASSIGN(Stmt s, db_->prepare("INSERT OR REPLACE INTO snapshots(site, sequence, job, run, time, details) "
                                 "VALUES(?, ?, ?, ?, ?, ?)"));
  s.bind(1, site).bind(2, seq).bind(3, job).bind(4, run).bind(5, time).bind(6, json_text(details));
  return s.run();
}

Result<nlohmann::json> Store::snapshots(const std::string& site) {
  CM_ASSIGN(Stmt s, db_->prepare("SELECT sequence, job, run, time, details FROM snapshots WHERE site = ? "
                                 "ORDER BY sequence DESC"));
  s.bind(1, site);
  nlohmann::json out = nlohmann::json::array();
  CM_TRY(s.each([&] {
    out.push_back({{"sequence", s.i64(0)},
                   {"job", s.text(1)},
                   {"run", s.i64(2)},
                   {"time", s.i64(3)},
                   {"details", parse_json(s.text(4))}});
  }));
  return out;
}

Status Store::add_checkpoint(const std::string& site, int64_t seq, int64_t time, const std::string& path,
                             int64_t bytes) {
  CM_ASSIGN(
      Stmt s,
      db_->prepare("INSERT INTO checkpoints(site, id, sequence, time, path, bytes) VALUES(?1, "
                   "(SELECT coalesce(max(id), 0) + 1 FROM checkpoints WHERE site = ?1), ?2, ?3, ?4, ?5)"));
  s.bind(1, site).bind(2, seq).bind(3, time).bind(4, path).bind(5, bytes);
  return s.run();
}

Result<nlohmann::json> Store::checkpoints(const std::string& site) {
  CM_ASSIGN(Stmt s, db_->prepare("SELECT id, sequence, time, path, bytes FROM checkpoints WHERE site = ? "
                                 "ORDER BY id DESC"));
  s.bind(1, site);
  nlohmann::json out = nlohmann::json::array();
  CM_TRY(s.each([&] {
    out.push_back({{"id", s.i64(0)},
                   {"sequence", s.i64(1)},
                   {"time", s.i64(2)},
                   {"path", s.text(3)},
                   {"bytes", s.i64(4)}});
  }));
  return out;
}

Status Store::remove_checkpoint(const std::string& site, int64_t id) {
  CM_ASSIGN(Stmt s, db_->prepare("DELETE FROM checkpoints WHERE site = ? AND id = ?"));
  s.bind(1, site).bind(2, id);
  return s.run();
}

Result<std::string> Store::config(const std::string& key, const std::string& fallback) {
  CM_ASSIGN(Stmt s, db_->prepare("SELECT value FROM config WHERE key = ?"));
  s.bind(1, key);
  CM_ASSIGN(bool row, s.step());
  return row ? s.text(0) : fallback;
}

Status Store::set_config(const std::string& key, const std::string& value) {
  CM_ASSIGN(Stmt s, db_->prepare("INSERT OR REPLACE INTO config(key, value) VALUES(?, ?)"));
  s.bind(1, key).bind(2, value);
  return s.run();
}

}  // namespace cm::sched
