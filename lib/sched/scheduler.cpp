#include "sched/scheduler.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cmath>
#include <cstring>
#include <fstream>
#include <map>
#include <set>
#include <sstream>
#include <thread>

#include "fs/tree.hpp"
#include "sched/cron.hpp"
#include "util/clock.hpp"
#include "util/io.hpp"
#include "util/proc.hpp"
#include "util/quorum.hpp"
#include "util/text.hpp"

namespace cm::sched {

namespace {

constexpr int64_t kIdsPerRun = 10;  // assignment ids reserved for each run

std::string dir_of(const std::string& path) {
  size_t slash = path.rfind('/');
  return slash == std::string::npos ? "." : slash == 0 ? "/" : path.substr(0, slash);
}

int64_t pol_int(const Job& j, const char* key, int64_t fallback) {
  auto it = j.policy.find(key);
  return it != j.policy.end() && it->is_number_integer() ? it->get<int64_t>() : fallback;
}

std::string pol_str(const Job& j, const char* key, const std::string& fallback = "") {
  auto it = j.policy.find(key);
  return it != j.policy.end() && it->is_string() ? it->get<std::string>() : fallback;
}

std::string join(const std::vector<std::string>& v, const std::string& sep) {
  std::string out;
  for (const std::string& s : v)
    out += (out.empty() ? "" : sep) + s;
  return out;
}

class Scheduler {
 public:
  Scheduler(Store& s, const SchedOptions& o) : store_(s), opt_(o) {}

  Result<std::vector<Event>> tick();
  Result<std::vector<Event>> run_now(const std::string& name);
  Result<std::vector<Event>> recover();

 private:
  void log(const std::string& m) {
    if (opt_.log)
      opt_.log(m);
  }
  void event(const std::string& job, const std::string& action, const std::string& msg, int64_t run = 0) {
    events_.push_back(Event{job, action, msg, run});
    log(job + ": " + action + (msg.empty() ? "" : ": " + msg));
  }
  Result<std::string> conflict_with(const Job& j, std::string& why);
  Result<std::optional<Job>> claim_next();
  Status claim(Job& j);
  Status execute(Job j);
  Status finish(Job& j, Run& r, bool ok);
  void prune_runs(int64_t newest);
  Status record(const Job& j, Run& r, const Site& site, const nlohmann::json& result);
  void run_hook(const Job& j, const char* which, const std::vector<std::string>& servers,
                const std::string& dir);
  int64_t now() const { return opt_.now + (steady_ms() / 1000 - started_); }
  // Where runs' directories go: config work_dir, or runs/ beside the database.
  Result<std::string> work_dir() { return store_.config("work_dir", dir_of(opt_.db_path) + "/runs"); }

  Store& store_;
  const SchedOptions& opt_;
  std::vector<Event> events_;
  std::set<std::string> skipped_;  // handled in this tick already
  int64_t started_ = steady_ms() / 1000;
};

Result<std::set<std::string>> server_ids(Store& store, const Group& g) {
  CM_ASSIGN(auto v, store.group_servers(g));
  std::set<std::string> ids;
  for (const Server& s : v)
    ids.insert(s.id);
  return ids;
}

// The seed's run-time conflict: a running job distributing to the same
// hosted site on any of the same servers. With no servers known for a
// group, its segments stand for them (none or "all": every server).
Result<std::string> Scheduler::conflict_with(const Job& j, std::string& why) {
  CM_ASSIGN(auto jobs, store_.jobs());
  CM_ASSIGN(auto g, store_.group(j.group));
  if (!g)
    return Error("job '" + j.name + "': no group '" + j.group + "'", kExitFailure);
  CM_ASSIGN(auto mine, server_ids(store_, *g));
  for (const Job& o : jobs) {
    if (o.name == j.name || o.state != "running" || o.site != j.site)
      continue;
    if (j.type == "checkpoint" || o.type == "checkpoint") {
      why = "both use the shadow copy of site '" + j.site + "'";
      return o.name;
    }
    CM_ASSIGN(auto og, store_.group(o.group));
    if (!og)
      continue;
    CM_ASSIGN(auto theirs, server_ids(store_, *og));
    std::vector<std::string> shared;
    std::set_intersection(mine.begin(), mine.end(), theirs.begin(), theirs.end(), std::back_inserter(shared));
    if (!shared.empty()) {
      if (shared.size() > 5)
        shared.resize(5), shared.push_back("...");
      why = "site '" + j.site + "' on servers " + join(shared, ", ");
      return o.name;
    }
    if (mine.empty() || theirs.empty()) {
      std::set<std::string> a, b;
      std::stringstream sa(g->segments), sb(og->segments);
      for (std::string x; std::getline(sa, x, ',');)
        a.insert(x);
      for (std::string x; std::getline(sb, x, ',');)
        b.insert(x);
      bool every = a.empty() || b.empty() || a.count("all") || b.count("all");
      std::vector<std::string> common;
      std::set_intersection(a.begin(), a.end(), b.begin(), b.end(), std::back_inserter(common));
      if (every || !common.empty()) {
        why = "site '" + j.site + "' on the same segments (servers not known yet)";
        return o.name;
      }
    }
  }
  return std::string();
}

Status Scheduler::claim(Job& j) {
  CM_ASSIGN(auto site, store_.site(j.site));
  if (!site)
    return Error("job '" + j.name + "': no site '" + j.site + "'", kExitFailure);
  Run r;
  r.job = j.name;
  r.type = j.type;
  r.site = j.site;
  r.started = now();
  r.status = "running";
  r.attempt = j.attempt + 1;
  r.sequence = site->next_id;  // the first reserved id until the job says otherwise
  CM_ASSIGN(int64_t id, store_.add_run(r));
  site->next_id += kIdsPerRun;
  CM_TRY(store_.put_site(*site, true));
  j.state = "running";
  j.run = id;
  j.owner_pid = ::getpid();
  j.owner_start = process_start(::getpid());
  j.child_pid = 0;
  return store_.put_job(j, true);
}

// Under the write lock: the first due job that can run now. Conflicting ones
// are queued or cancelled on the way, as their policy says.
Result<std::optional<Job>> Scheduler::claim_next() {
  Transaction t(store_.db());
  CM_TRY(t.begin());
  CM_ASSIGN(Stmt s,
            store_.db().prepare(
                "SELECT name, type, site, grp, schedule, policy, state, next_run, attempt, run, owner_pid, "
                "owner_start, child_pid, message FROM jobs WHERE state IN ('idle', 'queued') AND next_run "
                "IS NOT NULL AND next_run <= ? ORDER BY next_run, name"));
  s.bind(1, opt_.now);
  std::vector<Job> due;
  CM_TRY(s.each([&] { due.push_back(job_from(s)); }));
  for (Job& j : due) {
    if (skipped_.count(j.name))
      continue;
    std::string why;
    CM_ASSIGN(std::string other, conflict_with(j, why));
    if (other.empty()) {
      CM_TRY(claim(j));
      CM_TRY(t.commit());
      return std::optional<Job>(j);
    }
    std::string msg = "conflicts with running job '" + other + "': " + why;
    skipped_.insert(j.name);
    if (pol_str(j, "on_conflict", "queue") == "cancel") {
      Run r;
      r.job = j.name;
      r.type = j.type;
      r.site = j.site;
      r.started = r.finished.emplace(now());
      r.status = "cancelled";
      r.message = msg;
      CM_ASSIGN(int64_t id, store_.add_run(r));
      CM_ASSIGN(j.next_run, next_due(j.schedule, opt_.now));
      j.state = j.next_run ? "idle" : "done";
      j.message = "cancelled: " + msg;
      CM_TRY(store_.put_job(j, true));
      event(j.name, "cancelled", msg, id);
    } else {
      if (j.state != "queued" || j.message != "queued: " + msg) {
        j.state = "queued";
        j.message = "queued: " + msg;
        CM_TRY(store_.put_job(j, true));
      }
      event(j.name, "queued", msg);
    }
  }
  CM_TRY(t.commit());
  return std::optional<Job>();
}

void Scheduler::run_hook(const Job& j, const char* which, const std::vector<std::string>& servers,
                         const std::string& dir) {
  auto hooks = j.policy.find("hooks");
  if (hooks == j.policy.end() || !hooks->is_object() || !hooks->contains(which) ||
      !(*hooks)[which].is_string())
    return;
  Spawn sp;
  sp.command = (*hooks)[which].get<std::string>();
  sp.env = {"CM_HOOK=" + std::string(which), "CM_JOB=" + j.name, "CM_SITE=" + j.site, "CM_GROUP=" + j.group,
            "CM_SERVERS=" + join(servers, " ")};
  sp.output_file = dir + "/log";
  auto r = run_shell(sp);
  if (!r.ok() || exit_code_of(r->status) != 0)
    log(j.name + ": the " + which +
        " hook failed: " + (r.ok() ? describe_status(r->status) : r.error().message));
}

Status Scheduler::finish(Job& j, Run& r, bool ok) {
  Transaction t(store_.db());
  CM_TRY(t.begin());
  CM_ASSIGN(auto fresh, store_.job(j.name));
  if (fresh)
    j.policy = fresh->policy, j.schedule = fresh->schedule;  // edited meanwhile: keep the edit
  r.finished = now();
  CM_TRY(store_.finish_run(r));
  j.owner_pid = j.owner_start = j.child_pid = 0;
  if (ok) {
    j.attempt = 0;
    j.message.clear();
    CM_ASSIGN(j.next_run, next_due(j.schedule, opt_.now));
  } else {
    j.attempt++;
    int64_t retries = pol_int(j, "retries", 0), backoff = pol_int(j, "backoff", 60);
    if (j.attempt <= retries) {
      int64_t wait = std::min<int64_t>(backoff << std::min<int64_t>(j.attempt - 1, 20), 86400);
      j.next_run = opt_.now + wait;
      j.message = "attempt " + std::to_string(j.attempt) + " failed (" + r.message + "); retry " +
                  std::to_string(j.attempt) + " of " + std::to_string(retries) + " at " +
                  format_time(*j.next_run);
    } else {
      j.message = "gave up after " + std::to_string(j.attempt) + " attempt" + (j.attempt > 1 ? "s" : "") +
                  ": " + r.message;
      j.attempt = 0;
      CM_ASSIGN(j.next_run, next_due(j.schedule, opt_.now));
    }
  }
  j.state = j.next_run ? "idle" : ok ? "done" : "failed";
  if (fresh && fresh->state == "disabled")
    j.state = "disabled";
  CM_TRY(store_.put_job(j, true));
  CM_TRY(t.commit());
  event(j.name, r.status, r.message, r.id);
  prune_runs(r.id);
  return {};
}

// Keeps the work directories (log, packs, delta table) of the last
// keep_runs runs, counted by run number over all jobs; older ones of runs
// that have finished go. A cron-driven site otherwise keeps a copy of every
// assignment it ever sent. The runs stay in the database.
void Scheduler::prune_runs(int64_t newest) {
  auto work = work_dir();
  auto keep_s = store_.config("keep_runs", std::to_string(kKeepRuns));
  if (!work.ok() || !keep_s.ok())
    return;
  int64_t keep = std::atoll(keep_s->c_str());
  if (keep <= 0)
    return;  // 0: keep everything
  Fd dir(::open(work->c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!dir.valid())
    return;
  std::vector<int64_t> old;
  if (DIR* d = ::fdopendir(::dup(dir.get()))) {
    while (struct dirent* e = ::readdir(d)) {
      std::string name = e->d_name;
      if (name.empty() || name.size() > 18 || name.find_first_not_of("0123456789") != std::string::npos)
        continue;
      int64_t id = std::atoll(name.c_str());
      if (id > 0 && id <= newest - keep)
        old.push_back(id);
    }
    ::closedir(d);
  }
  // The last run of each job keeps its directory however old: its log is
  // what the job's message points to (a failure waiting for its retry).
  std::set<int64_t> last;
  if (auto jobs = store_.jobs(); jobs.ok())
    for (const Job& j : *jobs)
      if (auto runs = store_.runs(j.name, 1); runs.ok() && !runs->empty())
        last.insert(runs->front().id);
  for (int64_t id : old) {
    // Only a run this database knows, and that has ended.
    auto run = store_.run(id);
    if (last.count(id) || !run.ok() || !*run || (*run)->status == "running")
      continue;
    std::string name = std::to_string(id);
    Status st = fs::remove_tree_at(dir.get(), name, *work + "/" + name);
    if (!st.ok())
      log("cannot remove the work directory of run " + name + ": " + st.error().message);
  }
}

// What the job command reported: per-server reports (from the group
// reports inside cm-push's reports), the site's new sequence, a snapshot,
// a checkpoint.
Status Scheduler::record(const Job& j, Run& r, const Site& site_before, const nlohmann::json& result) {
  Transaction t(store_.db());
  CM_TRY(t.begin());
  CM_ASSIGN(auto site, store_.site(j.site));
  if (!site)
    return Error("site '" + j.site + "' was removed during the run", kExitFailure);
  std::vector<std::string> failed;
  int64_t at = now();
  std::map<std::string, Server> known;
  {
    CM_ASSIGN(auto all, store_.servers());
    for (Server& k : all)
      known[k.id] = std::move(k);
  }
  if (result.contains("pushes") && result["pushes"].is_array())
    for (const auto& push : result["pushes"]) {
      if (!push.is_object() || !push.contains("leaders") || !push["leaders"].is_array())
        continue;
      for (const auto& l : push["leaders"]) {
        if (!l.is_object())
          continue;
        std::string leader = l.value("id", std::string());
        const auto& group = l.contains("group") ? l["group"] : nlohmann::json();
        if (l.value("state", std::string()) == "failed" || !group.is_object()) {
          CM_TRY(store_.add_report(r.id, leader, leader, "leader-failed",
                                   {{"failure", l.value("failure", std::string())}}));
          failed.push_back(leader);
          continue;
        }
        for (const auto& m : group.value("members", nlohmann::json::array())) {
          if (!m.is_object() || !m.contains("id") || !m["id"].is_string())
            continue;
          std::string id = m["id"].get<std::string>();
          bool ok = m.value("succeeded", false);
          nlohmann::json out = m.contains("output") ? m["output"] : nlohmann::json();
          CM_TRY(store_.add_report(r.id, id, leader, ok ? "ok" : "failed", m));
          Server sv;
          if (auto k = known.find(id); k != known.end())
            sv = k->second;
          sv.id = id;
          if (sv.leader.empty())
            sv.leader = leader;
          sv.status = ok ? "ok" : "failed";
          sv.last_seen = at;
          CM_TRY(store_.put_server(sv));
          known[id] = sv;
          if (!ok)
            failed.push_back(id);
          if (ok && out.is_object() && out.contains("live_sequence") &&
              out["live_sequence"].is_number_integer() && out.value("site", j.site) == j.site &&
              out.value("result", std::string()) != "staged")
            CM_TRY(store_.set_server_sequence(id, j.site, out["live_sequence"].get<int64_t>(), at));
        }
      }
    }
  if (result.contains("sequence") && result["sequence"].is_number_integer())
    site->sequence = result["sequence"].get<int64_t>();
  r.sequence = site->sequence;
  CM_TRY(store_.put_site(*site, true));
  if (result.contains("snapshot") && result["snapshot"].is_object() && site->sequence != site_before.sequence)
    CM_TRY(store_.add_snapshot(j.site, site->sequence, j.name, r.id, at, result["snapshot"]));
  std::vector<std::string> drop;
  if (result.contains("checkpoint") && result["checkpoint"].is_object()) {
    const auto& c = result["checkpoint"];
    CM_TRY(store_.add_checkpoint(j.site, site->sequence, at, c.value("path", std::string()),
                                 c.value("bytes", int64_t{0})));
    CM_ASSIGN(auto all, store_.checkpoints(j.site));
    int64_t keep = std::max<int64_t>(pol_int(j, "keep", 3), 1);
    for (size_t i = static_cast<size_t>(keep); i < all.size(); i++) {
      CM_TRY(store_.remove_checkpoint(j.site, all[i]["id"].get<int64_t>()));
      drop.push_back(all[i]["path"].get<std::string>());
    }
  }
  CM_TRY(t.commit());
  for (const std::string& p : drop)
    if (!p.empty() && ::unlink(p.c_str()) != 0 && errno != ENOENT)
      log(j.name + ": cannot remove the old checkpoint '" + p + "': " + std::strerror(errno));
  if (!failed.empty())
    run_hook(j, "failed", failed, dir_of(r.log));
  return {};
}

Status Scheduler::execute(Job j) {
  CM_ASSIGN(auto run, store_.run(j.run.value_or(0)));
  if (!run.has_value())
    return Error("job '" + j.name + "': its run is gone from the database", kExitFailure);
  Run r = std::move(run).value();
  CM_ASSIGN(auto site, store_.site(j.site));
  CM_ASSIGN(auto group, store_.group(j.group));
  if (!site || !group) {
    r.status = "failed";
    r.message = "its site or group was removed";
    return finish(j, r, false);
  }
  CM_ASSIGN(std::string work, work_dir());
  std::string dir = work + "/" + std::to_string(r.id);
  for (const std::string& d : {work, dir})
    if (::mkdir(d.c_str(), 0750) != 0 && errno != EEXIST) {
      r.status = "failed";
      r.message = sys_error("cannot create", d, errno).message;
      return finish(j, r, false);
    }
  r.log = dir + "/log";
  event(j.name, "started",
        j.type + " of site '" + j.site + "' to group '" + j.group + "' (run " + std::to_string(r.id) +
            ", attempt " + std::to_string(r.attempt) + ")",
        r.id);

  // The servers of the group, and the quorum of them that must be reachable.
  CM_ASSIGN(auto servers, store_.group_servers(*group));
  CM_ASSIGN(std::string reach_s, store_.config("reachable_seconds", "600"));
  int64_t reach = std::atoll(reach_s.c_str());
  std::vector<std::string> stale;
  std::ostringstream list;
  size_t reachable = 0;
  CM_ASSIGN(auto sequences, store_.all_sequences());
  for (const Server& s : servers) {
    auto found = sequences.find({s.id, j.site});
    int64_t seq = found == sequences.end() ? 0 : found->second;
    bool up = s.last_seen >= opt_.now - reach;
    reachable += up;
    list << s.id << " " << s.segment << " " << seq << " " << (up ? "reachable" : "unreachable") << "\n";
    if (seq < site->sequence)
      stale.push_back(s.id);
  }
  CM_TRY(write_file_atomic(dir + "/servers", list.str()));
  if (j.type != "checkpoint") {
    // None in the policy, or a blank one an older cm-sched stored: all.
    // Checked when the policy was set; a database edited by hand is
    // refused by name rather than read as some other quorum.
    auto it = j.policy.find("quorum");
    auto parsed = it == j.policy.end() || stored_quorum_blank(j.policy)
                      ? Result<Quorum>(Quorum{})
                      : parse_quorum(it->is_string() ? it->get<std::string>() : it->dump());
    if (!parsed.ok()) {
      r.status = "refused";
      r.message =
          "job '" + j.name + "': " + parsed.error().message + " (cm-sched job set " + j.name + " --quorum)";
      return finish(j, r, false);
    }
    size_t need = parsed->of(servers.size());
    if (reachable < need) {
      r.status = "refused";
      r.message = "quorum of reachable servers not met: " + std::to_string(reachable) + " of " +
                  std::to_string(servers.size()) + " servers of group '" + j.group + "' seen in the last " +
                  std::to_string(reach) + " s, " + std::to_string(need) + " needed" +
                  (servers.empty() ? " (no servers known: cm-sched server import)" : "");
      return finish(j, r, false);
    }
  }
  if (j.type == "synchronize") {
    if (stale.empty()) {
      r.status = "succeeded";
      r.message = "no stale servers";
      return finish(j, r, true);
    }
    run_hook(j, "stale", stale, dir);
  }
  std::string checkpoint;
  if (j.type == "restore") {
    CM_ASSIGN(auto cps, store_.checkpoints(j.site));
    int64_t want = pol_int(j, "checkpoint", 0);
    for (const auto& c : cps)
      if (checkpoint.empty() && (want == 0 || c["id"].get<int64_t>() == want))
        checkpoint = c["path"].get<std::string>();
    if (checkpoint.empty()) {
      r.status = "failed";
      r.message = want == 0 ? "site '" + j.site + "' has no checkpoint to restore"
                            : "site '" + j.site + "' has no checkpoint " + std::to_string(want);
      return finish(j, r, false);
    }
  }
  // The job's policy as options of the stage programs, shell-quoted.
  std::string delta_opts, assign_opts, sign_opts, apply_opts;
  if (j.policy.contains("filters") && j.policy["filters"].is_array())
    for (const auto& f : j.policy["filters"])
      if (f.is_array() && f.size() == 2 && f[0].is_string() && f[1].is_string())
        delta_opts += " --" + f[0].get<std::string>() + " " + shell_quote(f[1].get<std::string>());
  for (const char* k : {"compress", "store"})
    if (!pol_str(j, k).empty())
      assign_opts += std::string(" --") + k + " " + shell_quote(pol_str(j, k));
  if (pol_int(j, "level", 0) > 0)
    assign_opts += " --level " + std::to_string(pol_int(j, "level", 0));
  if (!pol_str(j, "sign_key").empty())
    sign_opts += " --sign-key " + shell_quote(pol_str(j, "sign_key"));
  if (!pol_str(j, "encrypt_key").empty()) {
    sign_opts += " --encrypt-key " + shell_quote(pol_str(j, "encrypt_key"));
    apply_opts += " --key " + shell_quote(pol_str(j, "encrypt_key"));
  }
  assign_opts += sign_opts;
  std::string hook_before, hook_after;
  if (j.policy.contains("hooks") && j.policy["hooks"].is_object()) {
    hook_before = j.policy["hooks"].value("before", std::string());
    hook_after = j.policy["hooks"].value("after", std::string());
  }
  CM_ASSIGN(std::string push, store_.config("push_options", ""));
  CM_ASSIGN(std::string cpdir, store_.config("checkpoint_dir", dir_of(opt_.db_path) + "/checkpoints"));
  std::string result_path = dir + "/result.json";
  ::unlink(result_path.c_str());
  RunSpec spec;
  spec.command = opt_.job_cmd;
  spec.log = r.log;
  spec.timeout_s = static_cast<int>(pol_int(j, "timeout", 0));
  spec.env = {"CM_DB=" + opt_.db_path,
              "CM_JOB=" + j.name,
              "CM_RUN=" + std::to_string(r.id),
              "CM_TYPE=" + j.type,
              "CM_SITE=" + j.site,
              "CM_STAGING=" + site->staging,
              "CM_SHADOW=" + site->shadow,
              "CM_GROUP=" + j.group,
              "CM_SEGMENTS=" + group->segments,
              "CM_LEADERS=" + group->leaders,
              "CM_QUORUM=" + pol_str(j, "quorum"),
              "CM_SEQUENCE=" + std::to_string(site->sequence),
              "CM_LAST_SEQUENCE=" + std::to_string(std::max(site->sequence, site->last_sequence)),
              "CM_ID_FIRST=" + std::to_string(*r.sequence),
              "CM_ID_LAST=" + std::to_string(*r.sequence + kIdsPerRun - 1),
              "CM_WORK=" + dir,
              "CM_RESULT=" + result_path,
              "CM_SERVERS=" + dir + "/servers",
              "CM_STALE=" + join(stale, " "),
              "CM_CHECKPOINT=" + checkpoint,
              "CM_CHECKPOINT_DIR=" + cpdir,
              "CM_PUSH_OPTIONS=" + push,
              "CM_POLICY=" + json_text(j.policy),
              "CM_DELTA_OPTIONS=" + delta_opts,
              "CM_ASSIGN_OPTIONS=" + assign_opts,
              "CM_SIGN_OPTIONS=" + sign_opts,
              "CM_APPLY_OPTIONS=" + apply_opts,
              "CM_HOOK_BEFORE=" + hook_before,
              "CM_HOOK_AFTER=" + hook_after,
              "CM_NOW=" + std::to_string(opt_.now)};
  auto code = opt_.runner->run(spec, [&](pid_t pid) {
    // Recorded, so a tick that dies leaves enough for the next to stop it.
    auto fresh = store_.job(j.name);
    if (fresh.ok() && *fresh) {
      Job k = **fresh;
      k.child_pid = pid;
      Status st = store_.put_job(k, true);
      if (!st.ok())
        log(st.error().message);
    }
  });
  nlohmann::json result = nlohmann::json::object();
  auto text = [&]() -> Result<std::string> {
    CM_ASSIGN(auto in, open_input(result_path));
    return read_all(*in, 64u << 20);
  }();
  if (text.ok()) {
    auto parsed = nlohmann::json::parse(*text, nullptr, false);
    if (parsed.is_object())
      result = parsed;
  }
  r.result = result;
  r.exit_code = code.ok() ? *code : -1;
  bool ok = code.ok() && *code == 0;
  r.status = ok ? "succeeded" : (code.ok() && *code == 124 && spec.timeout_s > 0) ? "timed-out" : "failed";
  r.message = result.value("message", std::string());
  if (!code.ok())
    r.message = code.error().message;
  else if (r.message.empty() && !ok)
    r.message = "the job command exited " + std::to_string(*code) + " (see " + r.log + ")";
  Status rec = record(j, r, *site, result);
  if (!rec.ok()) {
    ok = false;
    r.status = "failed";
    r.message = rec.error().message;
  }
  return finish(j, r, ok);
}

Result<std::vector<Event>> Scheduler::recover() {
  CM_ASSIGN(auto jobs, store_.jobs());
  for (Job& j : jobs) {
    if (j.state != "running" || opt_.runner->alive(static_cast<pid_t>(j.owner_pid), j.owner_start))
      continue;
    if (j.child_pid > 0)
      opt_.runner->stop(static_cast<pid_t>(j.child_pid));
    Run r;
    if (j.run) {
      CM_ASSIGN(auto old, store_.run(*j.run));
      if (old.has_value())
        r = std::move(old).value();
    }
    r.status = "interrupted";
    r.message = "the cm-sched that ran it (pid " + std::to_string(j.owner_pid) + ") died";
    event(j.name, "recovered", r.message, r.id);
    if (r.id == 0) {
      r.job = j.name;
      r.type = j.type;
      r.site = j.site;
      r.started = now();
      CM_ASSIGN(r.id, store_.add_run(r));
    }
    CM_TRY(finish(j, r, false));
  }
  return events_;
}

Result<std::vector<Event>> Scheduler::tick() {
  CM_TRY(recover());
  // Bounded: each job runs at most once per tick.
  for (size_t n = 0; n < 100000; n++) {
    CM_ASSIGN(auto j, claim_next());
    if (!j)
      break;
    skipped_.insert(j->name);
    CM_TRY(execute(*j));
  }
  return events_;
}

Result<std::vector<Event>> Scheduler::run_now(const std::string& name) {
  CM_TRY(recover());
  std::optional<Job> claimed;
  {
    Transaction t(store_.db());
    CM_TRY(t.begin());
    CM_ASSIGN(auto j, store_.job(name));
    if (!j)
      return Error("no job '" + name + "'", kExitFailure);
    if (j->state == "running")
      return Error("job '" + name + "' is running now (run " + std::to_string(j->run.value_or(0)) + ")",
                   kExitBusy);
    std::string why;
    CM_ASSIGN(std::string other, conflict_with(*j, why));
    if (!other.empty())
      return Error("job '" + name + "' conflicts with running job '" + other + "': " + why, kExitBusy);
    CM_TRY(claim(*j));
    CM_TRY(t.commit());
    claimed = *j;
  }
  CM_TRY(execute(*claimed));
  return events_;
}

}  // namespace

int64_t process_start(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/stat");
  std::string s((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  size_t close = s.rfind(')');
  if (close == std::string::npos)
    return 0;
  std::istringstream rest(s.substr(close + 2));
  std::string field;
  // Fields after the command: state is 3rd overall; starttime is the 22nd.
  for (int i = 3; i <= 22 && rest >> field; i++)
    if (i == 22)
      return std::atoll(field.c_str());
  return 0;
}

bool ShellRunner::alive(pid_t pid, int64_t start) {
  if (pid <= 0 || (::kill(pid, 0) != 0 && errno == ESRCH))
    return false;
  return start == 0 || process_start(pid) == start;
}

void ShellRunner::stop(pid_t pid) {
  if (pid <= 0 || ::kill(-pid, 0) != 0)
    return;
  ::kill(-pid, SIGTERM);
  for (int i = 0; i < 50 && ::kill(-pid, 0) == 0; i++)
    std::this_thread::sleep_for(std::chrono::milliseconds(100));
  ::kill(-pid, SIGKILL);
}

Result<int> ShellRunner::run(const RunSpec& spec, const std::function<void(pid_t)>& started) {
  // Signals to this process stop the job command too, and are recorded.
  // SIGCHLD is waited for with them: the job's end is seen at once, not
  // at the next look.
  sigset_t mask, old;
  sigemptyset(&mask);
  for (int sig : {SIGTERM, SIGINT, SIGHUP, SIGCHLD})
    sigaddset(&mask, sig);
  pthread_sigmask(SIG_BLOCK, &mask, &old);
  Spawn sp;
  sp.command = spec.command;
  sp.env = spec.env;
  sp.output_file = spec.log;
  sp.new_group = true;
  auto child = spawn_shell(sp);
  if (!child.ok()) {
    pthread_sigmask(SIG_SETMASK, &old, nullptr);
    return child.error();
  }
  pid_t pid = child->pid;
  if (started)
    started(pid);
  auto t0 = std::chrono::steady_clock::now();
  int status = 0;
  int signalled = 0;
  bool timed_out = false;
  for (;;) {
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid)
      break;
    if (w < 0 && errno != EINTR) {
      pthread_sigmask(SIG_SETMASK, &old, nullptr);
      return sys_error("cannot wait for", spec.command, errno);
    }
    timespec ts{0, 100 * 1000 * 1000};
    int sig = sigtimedwait(&mask, nullptr, &ts);
    if (sig == SIGCHLD)
      continue;
    if (sig > 0 && signalled == 0) {
      signalled = sig;
      ::kill(-pid, SIGTERM);
    }
    if (!timed_out && spec.timeout_s > 0 &&
        std::chrono::steady_clock::now() - t0 > std::chrono::seconds(spec.timeout_s)) {
      timed_out = true;
      ::kill(-pid, SIGTERM);
    }
  }
  pthread_sigmask(SIG_SETMASK, &old, nullptr);
  if (signalled != 0)
    return Error("interrupted by signal " + std::to_string(signalled) + "; the job command was stopped",
                 kExitFailure);
  if (timed_out)
    return 124;
  return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}

bool stored_quorum_blank(const nlohmann::json& policy) {
  auto it = policy.find("quorum");
  return it != policy.end() && it->is_string() && quorum_blank(it->get<std::string>());
}

Result<std::optional<int64_t>> next_due(const std::string& schedule, int64_t after) {
  CM_ASSIGN(Schedule s, Schedule::parse(schedule));
  return s.next(after);
}

Result<std::vector<Event>> tick(Store& store, const SchedOptions& opt) {
  return Scheduler(store, opt).tick();
}

Result<std::vector<Event>> run_now(Store& store, const std::string& job, const SchedOptions& opt) {
  return Scheduler(store, opt).run_now(job);
}

Result<std::vector<Event>> recover(Store& store, const SchedOptions& opt) {
  return Scheduler(store, opt).recover();
}

Result<size_t> import_servers(Store& store, const nlohmann::json& report, int64_t now) {
  std::vector<nlohmann::json> reports;
  if (report.is_array())
    reports.assign(report.begin(), report.end());
  else if (report.is_object() && report.contains("clusters") && report["clusters"].is_array())
    reports.assign(report["clusters"].begin(), report["clusters"].end());
  else
    reports.push_back(report);
  Transaction t(store.db());
  CM_TRY(t.begin());
  CM_ASSIGN(auto known, store.servers());
  std::map<std::string, Server> by_id;
  for (Server& s : known)
    by_id[s.id] = s;
  std::set<std::string> new_segments;
  size_t n = 0;
  for (const auto& r : reports) {
    if (!r.is_object() || !r.contains("members") || !r["members"].is_array())
      return Error("not a cluster report (cm-elect's JSON, with members)", kExitBadInput);
    std::string segment = r.value("segment", std::string());
    std::string leader =
        r.contains("leader") && r["leader"].is_object() ? r["leader"].value("id", std::string()) : "";
    for (const auto& m : r["members"]) {
      if (!m.is_object() || !m.contains("id") || !m["id"].is_string() ||
          !valid_name(m["id"].get<std::string>()))
        return Error("a member of a cluster report has no usable id", kExitBadInput);
      Server s;
      std::string id = m["id"].get<std::string>();
      auto it = by_id.find(id);
      if (it != by_id.end())
        s = it->second;
      else
        new_segments.insert(segment);
      s.id = id;
      s.segment = segment;
      s.leader = leader;
      s.address = m.value("address", s.address);
      s.last_seen = now;
      CM_TRY(store.put_server(s));
      by_id[id] = s;
      n++;
    }
  }
  // The seed: a server new to a content group triggers a replicate.
  if (!new_segments.empty()) {
    CM_ASSIGN(auto jobs, store.jobs());
    for (Job& j : jobs) {
      if (j.type != "replicate" || j.state == "running" || j.state == "disabled")
        continue;
      CM_ASSIGN(auto g, store.group(j.group));
      if (!g)
        continue;
      std::string segs = "," + g->segments + ",";
      bool hit = g->segments.empty() || g->segments == "all";
      for (const std::string& s : new_segments)
        hit |= segs.find("," + s + ",") != std::string::npos;
      if (hit) {
        j.next_run = now;
        j.state = "idle";
        j.message = "due: a new server joined the group";
        CM_TRY(store.put_job(j, true));
      }
    }
  }
  CM_TRY(t.commit());
  return n;
}

Result<nlohmann::json> status(Store& store, int64_t now) {
  nlohmann::json out;
  CM_ASSIGN(auto jobs, store.jobs());
  nlohmann::json jl = nlohmann::json::array();
  for (const Job& j : jobs) {
    nlohmann::json x{{"name", j.name},       {"type", j.type},         {"site", j.site},
                     {"group", j.group},     {"schedule", j.schedule}, {"state", j.state},
                     {"attempt", j.attempt}, {"policy", j.policy},     {"message", j.message}};
    x["next_run"] = j.next_run ? nlohmann::json(*j.next_run) : nlohmann::json();
    CM_ASSIGN(auto last, store.runs(j.name, 1));
    if (!last.empty())
      x["last_run"] = {{"id", last[0].id},
                       {"status", last[0].status},
                       {"started", last[0].started},
                       {"finished", last[0].finished ? nlohmann::json(*last[0].finished) : nlohmann::json()},
                       {"message", last[0].message}};
    jl.push_back(x);
  }
  out["jobs"] = jl;
  CM_ASSIGN(auto sites, store.sites());
  nlohmann::json sl = nlohmann::json::array();
  for (const Site& s : sites)
    sl.push_back({{"name", s.name},
                  {"staging", s.staging},
                  {"shadow", s.shadow},
                  {"sequence", s.sequence},
                  {"next_id", s.next_id}});
  out["sites"] = sl;
  CM_ASSIGN(auto servers, store.servers());
  CM_ASSIGN(std::string reach_s, store.config("reachable_seconds", "600"));
  int64_t reach = std::atoll(reach_s.c_str());
  nlohmann::json vl = nlohmann::json::array();
  CM_ASSIGN(auto sequences, store.all_sequences());
  for (const Server& v : servers) {
    nlohmann::json seqs = nlohmann::json::object();
    nlohmann::json behind = nlohmann::json::array();
    for (const Site& s : sites) {
      auto it = sequences.find({v.id, s.name});
      int64_t q = it == sequences.end() ? 0 : it->second;
      seqs[s.name] = q;
      if (q < s.sequence)
        behind.push_back(s.name);
    }
    vl.push_back({{"id", v.id},
                  {"segment", v.segment},
                  {"leader", v.leader},
                  {"status", v.status},
                  {"last_seen", v.last_seen},
                  {"reachable", v.last_seen >= now - reach},
                  {"sequences", seqs},
                  {"stale", behind}});
  }
  out["servers"] = vl;
  out["now"] = now;
  return out;
}

}  // namespace cm::sched
