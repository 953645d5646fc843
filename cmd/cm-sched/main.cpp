// cm-sched: the manager's jobs, schedules, versions and restore
// (cm-sched(1)). Options and wiring only.
#include <unistd.h>

#include <climits>
#include <cmath>
#include <ctime>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "push/proto.hpp"
#include "sched/admin.hpp"
#include "sched/cron.hpp"
#include "sched/scheduler.hpp"
#include "util/io.hpp"
#include "util/quorum.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;
using namespace cm::sched;

namespace {

void db_option(po::options_description& d) {
  d.add_options()("db", po::value<std::string>()->default_value("/var/lib/cm/cm.db")->value_name("FILE"),
                  "the job database");
}

void clock_option(po::options_description& d) {
  d.add_options()("now", po::value<std::string>()->value_name("TIME"),
                  "pretend it is TIME (YYYY-MM-DDTHH:MM, local, or @SECONDS)");
}

Result<int64_t> now_of(const cli::Context& ctx) {
  if (ctx.vm.count("now"))
    return parse_time(ctx.vm["now"].as<std::string>());
  return static_cast<int64_t>(std::time(nullptr));
}

Result<std::unique_ptr<Store>> open_db(const cli::Context& ctx, bool create = false) {
  return Store::open(ctx.vm["db"].as<std::string>(), create);
}

// For the queries (status, history, the lists): they write nothing, so
// they work on another user's database or a read-only mount (monitoring).
Result<std::unique_ptr<Store>> open_db_to_read(const cli::Context& ctx) {
  return Store::open(ctx.vm["db"].as<std::string>(), false, true);
}

bool just_list(const cli::Context& ctx) {
  return ctx.args.size() == 1 && ctx.args[0] == "list";
}

std::string opt_str(const cli::Context& ctx, const char* k) {
  return ctx.vm[k].as<std::string>();
}

std::string when(const nlohmann::json& t) {
  return t.is_number() ? format_time(t.get<int64_t>()) : "-";
}

// ---- init, site, group

void init_options(po::options_description& d) {
  db_option(d);
}

Status run_init(cli::Context& ctx) {
  CM_ASSIGN(auto store, open_db(ctx, true));
  ctx.diag.info("database ready: " + store->db().path());
  return {};
}

void site_options(po::options_description& d) {
  db_option(d);
  d.add_options()                                                                                         //
      ("staging", po::value<std::string>()->value_name("DIR"), "where the site's next release is built")  //
      ("shadow", po::value<std::string>()->value_name("DIR"),
       "the shadow copy: a cm-apply site holding what servers have");
}

Status run_site(cli::Context& ctx) {
  CM_ASSIGN(auto store, just_list(ctx) ? open_db_to_read(ctx) : open_db(ctx));
  const std::string verb = ctx.args[0];
  SiteEdit e;
  if (ctx.vm.count("staging"))
    e.staging = opt_str(ctx, "staging");
  if (ctx.vm.count("shadow"))
    e.shadow = opt_str(ctx, "shadow");
  if (verb == "list" && ctx.args.size() == 1) {
    CM_ASSIGN(auto sites, store->sites());
    for (const Site& s : sites)
      std::cout << (ctx.json ? json_text(nlohmann::json{{"name", s.name},
                                                        {"staging", s.staging},
                                                        {"shadow", s.shadow},
                                                        {"sequence", s.sequence}})
                             : s.name + "  staging " + s.staging + "  shadow " + s.shadow + "  sequence " +
                                   std::to_string(s.sequence))
                << "\n";
    return {};
  }
  if (ctx.args.size() != 2)
    return Error("usage: cm-sched site add|set|rm NAME [options], cm-sched site list", kExitUsage);
  if (verb == "add")
    return add_site(*store, ctx.args[1], e);
  if (verb == "set")
    return set_site(*store, ctx.args[1], e);
  if (verb == "rm")
    return remove_site(*store, ctx.args[1]);
  return Error("unknown verb '" + verb + "': add, set, rm, list", kExitUsage);
}

void group_options(po::options_description& d) {
  db_option(d);
  d.add_options()  //
      ("segments", po::value<std::string>()->value_name("SEG[,SEG...]"),
       "its servers: those of these cm-elect segments (default: all)")  //
      ("leaders", po::value<std::string>()->value_name("FILE"),
       "or a static list of leaders, for cm-push --leaders");
}

Status run_group(cli::Context& ctx) {
  CM_ASSIGN(auto store, just_list(ctx) ? open_db_to_read(ctx) : open_db(ctx));
  const std::string verb = ctx.args[0];
  GroupEdit e;
  if (ctx.vm.count("segments")) {
    e.segments = opt_str(ctx, "segments");
    // Each a segment name: ",," or "a,,b" named none.
    std::string segs = *e.segments;
    if (segs.empty() || segs.front() == ',' || segs.back() == ',' || segs.find(",,") != std::string::npos)
      return Error("--segments must be segment names separated by commas (got '" + segs + "')", kExitUsage);
  }
  if (ctx.vm.count("leaders"))
    e.leaders = opt_str(ctx, "leaders");
  if (verb == "list" && ctx.args.size() == 1) {
    CM_ASSIGN(auto groups, store->groups());
    for (const Group& g : groups) {
      CM_ASSIGN(auto servers, store->group_servers(g));
      std::cout << (ctx.json ? json_text(nlohmann::json{{"name", g.name},
                                                        {"segments", g.segments},
                                                        {"leaders", g.leaders},
                                                        {"servers", servers.size()}})
                             : g.name + "  segments " + g.segments +
                                   (g.leaders.empty() ? "" : "  leaders " + g.leaders) + "  servers " +
                                   std::to_string(servers.size()))
                << "\n";
    }
    return {};
  }
  if (ctx.args.size() != 2)
    return Error("usage: cm-sched group add|set|rm NAME [options], cm-sched group list", kExitUsage);
  if (verb == "add")
    return add_group(*store, ctx.args[1], e);
  if (verb == "set")
    return set_group(*store, ctx.args[1], e);
  if (verb == "rm")
    return remove_group(*store, ctx.args[1]);
  return Error("unknown verb '" + verb + "': add, set, rm, list", kExitUsage);
}

// ---- jobs

void job_options(po::options_description& d) {
  db_option(d);
  clock_option(d);
  d.add_options()  //
      ("type", po::value<std::string>()->value_name("TYPE"),
       "publish, replicate, synchronize, restore, rollback, remove or checkpoint")                 //
      ("site", po::value<std::string>()->value_name("NAME"), "the hosted site")                    //
      ("group", po::value<std::string>()->value_name("NAME"), "the content group: which servers")  //
      ("schedule", po::value<std::string>()->value_name("WHEN"),
       "a cron expression, @daily..., 'at TIME', or 'manual' (the default)")  //
      ("include", po::value<std::vector<std::string>>()->value_name("PATTERN"),
       "publish: rsync-style filter rule")  //
      ("exclude", po::value<std::vector<std::string>>()->value_name("PATTERN"),
       "publish: rsync-style filter rule")                                                                  //
      ("clear-filters", "drop the job's include and exclude rules")                                         //
      ("compress", po::value<std::string>()->value_name("GLOBS"), "cm-assign --compress")                   //
      ("store", po::value<std::string>()->value_name("GLOBS"), "cm-assign --store")                         //
      ("level", po::value<int64_t>()->value_name("N"), "zstd level, 1-19")                                  //
      ("sign-key", po::value<std::string>()->value_name("FILE"), "sign assignments with this key")          //
      ("encrypt-key", po::value<std::string>()->value_name("FILE"), "encrypt assignments with this key")    //
      ("quorum", po::value<std::string>()->value_name("N|P%"), "servers that must succeed (default: all)")  //
      ("retries", po::value<int64_t>()->value_name("N"), "retries after a failure (default 0)")             //
      ("backoff", po::value<int64_t>()->value_name("SECONDS"),
       "first retry delay, doubled each time (default 60)")  //
      ("on-conflict", po::value<std::string>()->value_name("queue|cancel"),
       "when it would overlap a running job (default queue)")                                      //
      ("timeout", po::value<int64_t>()->value_name("SECONDS"), "stop the job command after this")  //
      ("keep", po::value<int64_t>()->value_name("N"), "checkpoint: archives kept (default 3)")     //
      ("checkpoint", po::value<int64_t>()->value_name("ID"),
       "restore: this checkpoint (default: the latest)")  //
      ("hook-before", po::value<std::string>()->value_name("CMD"),
       "run before the update reaches servers")                                            //
      ("hook-after", po::value<std::string>()->value_name("CMD"), "run after it is live")  //
      ("hook-stale", po::value<std::string>()->value_name("CMD"),
       "run with the stale servers (synchronize)")                                                      //
      ("hook-failed", po::value<std::string>()->value_name("CMD"), "run with the servers that failed")  //
      ("disable", "take the job off the schedule")                                                      //
      ("enable", "put it back");
}

JobEdit job_edit(const cli::Context& ctx) {
  JobEdit e;
  for (const char* k : {"type", "site", "group", "schedule"})
    if (ctx.vm.count(k)) {
      std::optional<std::string>& f = std::string(k) == "type"    ? e.type
                                      : std::string(k) == "site"  ? e.site
                                      : std::string(k) == "group" ? e.group
                                                                  : e.schedule;
      f = opt_str(ctx, k);
    }
  // Filters keep their command-line order, as rsync users expect.
  nlohmann::json filters = nlohmann::json::array();
  for (const po::option& o : ctx.ordered)
    if ((o.string_key == "include" || o.string_key == "exclude") && !o.value.empty())
      filters.push_back({o.string_key, o.value[0]});
  if (!filters.empty())
    e.policy["filters"] = filters;
  else if (ctx.vm.count("clear-filters"))
    e.policy["filters"] = nullptr;
  const std::pair<const char*, const char*> strings[] = {
      {"compress", "compress"},       {"store", "store"},   {"sign-key", "sign_key"},
      {"encrypt-key", "encrypt_key"}, {"quorum", "quorum"}, {"on-conflict", "on_conflict"}};
  for (auto [opt, key] : strings)
    if (ctx.vm.count(opt))
      e.policy[key] = opt_str(ctx, opt);
  for (const char* k : {"level", "retries", "backoff", "timeout", "keep", "checkpoint"})
    if (ctx.vm.count(k))
      e.policy[k] = ctx.vm[k].as<int64_t>();
  for (const char* h : {"before", "after", "stale", "failed"}) {
    std::string opt = std::string("hook-") + h;
    if (ctx.vm.count(opt)) {
      std::string cmd = ctx.vm[opt].as<std::string>();
      e.policy["hooks"][h] = cmd.empty() ? nlohmann::json() : nlohmann::json(cmd);
    }
  }
  if (ctx.vm.count("disable"))
    e.enabled = false;
  if (ctx.vm.count("enable"))
    e.enabled = true;
  return e;
}

nlohmann::json job_json(const Job& j) {
  return {
      {"name", j.name},         {"type", j.type},
      {"site", j.site},         {"group", j.group},
      {"schedule", j.schedule}, {"policy", j.policy},
      {"state", j.state},       {"attempt", j.attempt},
      {"message", j.message},   {"next_run", j.next_run ? nlohmann::json(*j.next_run) : nlohmann::json()}};
}

void print_job(const cli::Context& ctx, const Job& j) {
  if (ctx.json)
    std::cout << json_text(job_json(j)) << "\n";
  else
    std::cout << j.name << "  " << j.type << " " << j.site << " -> " << j.group << "  '" << j.schedule
              << "'  " << j.state << "  next " << when(job_json(j)["next_run"])
              << (j.message.empty() ? "" : "  " + j.message) << "\n";
}

Status run_job(cli::Context& ctx) {
  CM_ASSIGN(auto store, just_list(ctx) ? open_db_to_read(ctx) : open_db(ctx));
  CM_ASSIGN(int64_t now, now_of(ctx));
  const std::string verb = ctx.args[0];
  if (ctx.vm.count("disable") && ctx.vm.count("enable"))
    return Error("--disable or --enable, not both", kExitUsage);
  if (verb == "list" && ctx.args.size() == 1) {
    CM_ASSIGN(auto jobs, store->jobs());
    for (const Job& j : jobs)
      print_job(ctx, j);
    return {};
  }
  if (ctx.args.size() != 2)
    return Error("usage: cm-sched job add|set|show|rm NAME [options], cm-sched job list", kExitUsage);
  const std::string& name = ctx.args[1];
  if (verb == "rm")
    return remove_job(*store, name);
  if (verb == "show") {
    CM_ASSIGN(auto j, store->job(name));
    if (!j)
      return Error("no job '" + name + "'", kExitFailure);
    print_job(ctx, *j);
    return {};
  }
  if (verb != "add" && verb != "set")
    return Error("unknown verb '" + verb + "': add, set, show, rm, list", kExitUsage);
  Transaction t(store->db());
  CM_TRY(t.begin());
  CM_ASSIGN(Job j, verb == "add" ? add_job(*store, name, job_edit(ctx), now)
                                 : set_job(*store, name, job_edit(ctx), now));
  CM_TRY(t.commit());
  print_job(ctx, j);
  return {};
}

// ---- servers, config

void server_options(po::options_description& d) {
  db_option(d);
  clock_option(d);
}

Status run_server(cli::Context& ctx) {
  CM_ASSIGN(auto store, open_db(ctx));
  CM_ASSIGN(int64_t now, now_of(ctx));
  if (ctx.args[0] == "import" && ctx.args.size() <= 2) {
    CM_ASSIGN(auto in, open_input(ctx.args.size() == 2 ? ctx.args[1] : "-"));
    CM_ASSIGN(std::string text, read_all(*in, 256u << 20));
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded())
      return Error("'" + in->name() + "' is not JSON (a cm-elect cluster report)", kExitBadInput);
    auto n = import_servers(*store, j, now);
    if (!n.ok())
      return Error("'" + in->name() + "': " + n.error().message, n.error().code);
    ctx.diag.verbose(std::to_string(*n) + " servers seen");
    return {};
  }
  if (ctx.args[0] == "list" && ctx.args.size() == 1) {
    CM_ASSIGN(nlohmann::json st, status(*store, now));
    for (const auto& s : st["servers"])
      std::cout << (ctx.json ? json_text(s)
                             : s["id"].get<std::string>() + "  segment " + s["segment"].get<std::string>() +
                                   "  " + s["status"].get<std::string>() + "  seen " + when(s["last_seen"]) +
                                   (s["stale"].empty() ? "" : "  stale: " + json_text(s["stale"])))
                << "\n";
    return {};
  }
  return Error("usage: cm-sched server import [FILE|-], cm-sched server list", kExitUsage);
}

Status run_config(cli::Context& ctx) {
  CM_ASSIGN(auto store, open_db(ctx));
  static const char* keys[] = {"push_options",   "work_dir",          "keep_runs",
                               "checkpoint_dir", "reachable_seconds", "job_command"};
  if (ctx.args.empty()) {
    nlohmann::json all = nlohmann::json::object();
    for (const char* k : keys) {
      CM_ASSIGN(std::string v, store->config(k, ""));
      if (ctx.json)
        all[k] = v;
      else
        std::cout << k << "=" << v << "\n";
    }
    if (ctx.json)
      std::cout << json_text(all) << "\n";
    return {};
  }
  bool known = false;
  for (const char* k : keys)
    known |= ctx.args[0] == k;
  if (!known)
    return Error("unknown setting '" + ctx.args[0] + "'", kExitUsage);
  if (ctx.args.size() == 1) {
    CM_ASSIGN(std::string v, store->config(ctx.args[0], ""));
    std::cout << (ctx.json ? json_text(nlohmann::json{{ctx.args[0], v}}) : v) << "\n";
    return {};
  }
  const std::string& v = ctx.args[1];
  if ((ctx.args[0] == "keep_runs" || ctx.args[0] == "reachable_seconds") &&
      (v.empty() || v.size() > 9 || v.find_first_not_of("0123456789") != std::string::npos))
    return Error(ctx.args[0] + " must be a whole number, not '" + v + "'", kExitUsage);
  if (ctx.args[0] == "reachable_seconds" && std::stol(v) == 0)
    return Error("reachable_seconds must be at least 1", kExitUsage);
  // Runs' directories and checkpoints are made from wherever a tick runs
  // (cron's directory is not the administrator's): absolute paths only.
  if ((ctx.args[0] == "work_dir" || ctx.args[0] == "checkpoint_dir") && (v.empty() || v[0] != '/'))
    return Error(ctx.args[0] + " must be an absolute path, not '" + v + "'", kExitUsage);
  // Every run would fail on it: said now.
  // (A name without '/' is looked up on PATH when a run starts; '' is
  // the default, cm-job beside cm-sched.)
  if (ctx.args[0] == "job_command" && v.find('/') != std::string::npos && ::access(v.c_str(), X_OK) != 0)
    return sys_error("job_command: cannot run", v, errno);
  return store->set_config(ctx.args[0], v);
}

// ---- tick, run, status, history

std::string job_command(Store& store) {
  auto cfg = store.config("job_command", "");
  if (cfg.ok() && !cfg->empty())
    return *cfg;
  char self[PATH_MAX];
  ssize_t n = ::readlink("/proc/self/exe", self, sizeof self - 1);
  if (n > 0) {
    std::string dir(self, static_cast<size_t>(n));
    dir = dir.substr(0, dir.rfind('/'));
    if (::access((dir + "/cm-job").c_str(), X_OK) == 0)
      return dir + "/cm-job";
  }
  return "cm-job";
}

Status scheduled(cli::Context& ctx, bool one) {
  CM_ASSIGN(auto store, open_db(ctx));
  ShellRunner runner;
  SchedOptions o;
  CM_ASSIGN(o.now, now_of(ctx));
  o.db_path = store->db().path();
  o.job_cmd = job_command(*store);
  o.runner = &runner;
  o.log = [&](const std::string& m) { ctx.diag.info(m); };
  CM_ASSIGN(auto events, one ? run_now(*store, ctx.args[0], o) : tick(*store, o));
  bool bad = false;
  for (const Event& e : events) {
    bad |= e.action == "failed" || e.action == "refused" || e.action == "cancelled" ||
           e.action == "timed-out" || e.action == "interrupted";
    if (ctx.json)
      std::cout << json_text(nlohmann::json{
                       {"job", e.job}, {"action", e.action}, {"message", e.message}, {"run", e.run}})
                << "\n";
  }
  return bad ? Status(Error("", kExitPartial)) : Status();
}

void tick_options(po::options_description& d) {
  db_option(d);
  clock_option(d);
}

Status run_tick(cli::Context& ctx) {
  return scheduled(ctx, false);
}
Status run_run(cli::Context& ctx) {
  return scheduled(ctx, true);
}

Status run_status(cli::Context& ctx) {
  CM_ASSIGN(auto store, open_db_to_read(ctx));
  CM_ASSIGN(int64_t now, now_of(ctx));
  CM_ASSIGN(nlohmann::json st, status(*store, now));
  if (ctx.json) {
    std::cout << json_text(st) << "\n";
    return {};
  }
  std::printf("%-16s %-11s %-10s %-8s %-19s %-10s %s\n", "JOB", "TYPE", "SITE", "STATE", "NEXT RUN", "LAST",
              "MESSAGE");
  for (const auto& j : st["jobs"])
    std::printf("%-16s %-11s %-10s %-8s %-19s %-10s %s\n", j["name"].get<std::string>().c_str(),
                j["type"].get<std::string>().c_str(), j["site"].get<std::string>().c_str(),
                j["state"].get<std::string>().c_str(), when(j["next_run"]).c_str(),
                j.contains("last_run") ? j["last_run"]["status"].get<std::string>().c_str() : "-",
                j["message"].get<std::string>().c_str());
  for (const auto& s : st["sites"])
    std::printf("site %s: sequence %lld\n", s["name"].get<std::string>().c_str(),
                static_cast<long long>(s["sequence"].get<int64_t>()));
  size_t stale = 0, unreachable = 0;
  for (const auto& s : st["servers"]) {
    stale += !s["stale"].empty();
    unreachable += !s["reachable"].get<bool>();
  }
  std::printf("servers: %zu known, %zu stale, %zu unreachable\n", st["servers"].size(), stale, unreachable);
  return {};
}

void history_options(po::options_description& d) {
  db_option(d);
  d.add_options()("limit", po::value<int64_t>()->default_value(20)->value_name("N"), "the last N runs")  //
      ("run", po::value<int64_t>()->value_name("ID"), "one run, with its per-server reports");
}

Status run_history(cli::Context& ctx) {
  CM_ASSIGN(auto store, open_db_to_read(ctx));
  if (ctx.vm.count("run")) {
    int64_t id = ctx.vm["run"].as<int64_t>();
    CM_ASSIGN(auto r, store->run(id));
    if (!r)
      return Error("no run " + std::to_string(id), kExitFailure);
    CM_ASSIGN(nlohmann::json reps, store->reports(id));
    nlohmann::json j{{"id", r->id},
                     {"job", r->job},
                     {"status", r->status},
                     {"message", r->message},
                     {"log", r->log},
                     {"sequence", r->sequence ? nlohmann::json(*r->sequence) : nlohmann::json()},
                     {"reports", reps},
                     {"started", r->started},
                     {"exit_code", r->exit_code}};
    if (ctx.json) {
      std::cout << json_text(j) << "\n";
    } else {
      std::cout << "run " << r->id << " of " << r->job << ": " << r->status << " " << r->message << "\n";
      for (const auto& x : reps)
        std::cout << "  " << x["server"].get<std::string>() << "  " << x["status"].get<std::string>()
                  << "  via " << x["leader"].get<std::string>() << "\n";
    }
    return {};
  }
  int64_t limit = ctx.vm["limit"].as<int64_t>();
  if (limit < 1 || limit > 100000)
    return Error("--limit must be between 1 and 100000", kExitUsage);
  if (!ctx.args.empty()) {
    CM_ASSIGN(auto job, store->job(ctx.args[0]));
    if (!job)
      return Error("no job '" + ctx.args[0] + "'", kExitFailure);
  }
  CM_ASSIGN(auto runs, store->runs(ctx.args.empty() ? "" : ctx.args[0], limit));
  for (const Run& r : runs) {
    if (ctx.json)
      std::cout << json_text(nlohmann::json{
                       {"id", r.id},
                       {"job", r.job},
                       {"type", r.type},
                       {"site", r.site},
                       {"status", r.status},
                       {"attempt", r.attempt},
                       {"started", r.started},
                       {"finished", r.finished ? nlohmann::json(*r.finished) : nlohmann::json()},
                       {"sequence", r.sequence ? nlohmann::json(*r.sequence) : nlohmann::json()},
                       {"message", r.message}})
                << "\n";
    else
      std::printf("%6lld %-19s %-16s %-11s %s\n", static_cast<long long>(r.id),
                  format_time(r.started).c_str(), r.job.c_str(), r.status.c_str(), r.message.c_str());
  }
  return {};
}

// The servers' quorum over a cm-push report: for cm-job.
void quorum_options(po::options_description& d) {
  d.add_options()("expect", po::value<size_t>()->value_name("N"), "servers in the group")  //
      ("quorum", po::value<std::string>()->default_value("100%")->value_name("N|P%"),
       "how many must succeed");
}

Status run_quorum(cli::Context& ctx) {
  if (!ctx.vm.count("expect"))
    return Error("--expect N is required", kExitUsage);
  std::string q = opt_str(ctx, "quorum");
  CM_ASSIGN(Quorum quorum, parse_quorum(q));
  CM_ASSIGN(auto in, open_input(ctx.args[0]));
  CM_ASSIGN(std::string text, read_all(*in, 256u << 20));
  auto r = nlohmann::json::parse(text, nullptr, false);
  if (!r.is_object() || !r.contains("leaders"))
    return Error("'" + in->name() + "' is not a cm-push report", kExitBadInput);
  size_t expect = ctx.vm["expect"].as<size_t>(), ok = 0;
  for (const auto& l : r["leaders"])
    if (l.is_object() && l.contains("group") && l["group"].is_object())
      for (const auto& m : l["group"].value("members", nlohmann::json::array()))
        ok += push::counted_member(m) && m.value("succeeded", false);
  size_t need = quorum.of(expect);
  std::string line = std::to_string(ok) + " of " + std::to_string(expect) + " servers succeeded (quorum " +
                     std::to_string(need) + ")";
  if (ok < need)
    return Error(line + ": not met", kExitPartial);
  std::cout << line << ": met\n";
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-sched";
  p.purpose = "Keep the manager's sites, groups, servers and jobs, and run jobs when they are due.";
  auto cmd = [&](const char* name, const char* syn, const char* sum, size_t lo, size_t hi,
                 std::function<void(po::options_description&)> opts, std::function<Status(cli::Context&)> run,
                 bool json) {
    p.commands.push_back(cli::Command{name, syn, sum, lo, hi, opts, run, json});
  };
  cmd("init", "[--db FILE]", "Create the database (or bring its schema up to date).", 0, 0, init_options,
      run_init, false);
  cmd("site", "add|set|rm|list [NAME] [--staging DIR] [--shadow DIR]", "Manage hosted sites.", 1, 2,
      site_options, run_site, true);
  cmd("group", "add|set|rm|list [NAME] [--segments SEG,...] [--leaders FILE]", "Manage content groups.", 1, 2,
      group_options, run_group, true);
  cmd("job", "add|set|show|rm|list [NAME] [options]", "Manage jobs and their policies.", 1, 2, job_options,
      run_job, true);
  cmd("server", "import [FILE] | list", "Import cluster reports; list servers and their freshness.", 1, 2,
      server_options, run_server, true);
  cmd("config", "[KEY [VALUE]]",
      "Show or set push_options, work_dir, keep_runs, checkpoint_dir, reachable_seconds, job_command.", 0, 2,
      init_options, run_config, true);
  cmd("tick", "[--now TIME]", "Run what is due (what cron runs every minute).", 0, 0, tick_options, run_tick,
      true);
  cmd("run", "JOB [--now TIME]", "Run one job now.", 1, 1, tick_options, run_run, true);
  cmd("status", "[--json]", "Jobs, their last runs, sites and servers' freshness.", 0, 0, tick_options,
      run_status, true);
  cmd("history", "[JOB] [--limit N] | --run ID", "Past runs, and one run's per-server reports.", 0, 1,
      history_options, run_history, true);
  cmd("quorum", "--expect N [--quorum N|P%] REPORT",
      "Check the servers' quorum in a cm-push report (for cm-job).", 1, 1, quorum_options, run_quorum, false);
  return cli::run(p, argc, argv);
}
