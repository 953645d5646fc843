#include "sched/admin.hpp"

#include <sys/stat.h>

#include "sched/cron.hpp"
#include "sched/scheduler.hpp"
#include "util/quorum.hpp"

namespace cm::sched {

namespace {

Status need_dir(const std::string& what, const std::string& path) {
  struct stat st;
  if (path.empty() || path[0] != '/')
    return Error(what + " '" + path + "' must be an absolute path", kExitUsage);
  if (::stat(path.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error(what + " '" + path + "' is not a directory", kExitFailure);
  return {};
}

Status need_file(const std::string& what, const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error(what + " '" + path + "' is not a file", kExitFailure);
  return {};
}

Status need_name(const std::string& what, const std::string& name) {
  if (!valid_name(name))
    return Error(
        "'" + name + "' is not a usable " + what + " name (letters, digits, '.', '_', '-'; up to 64)",
        kExitUsage);
  return {};
}

// The policy after an edit, checked as a whole.
Status check_policy(const nlohmann::json& p, const std::string& type) {
  for (auto it = p.begin(); it != p.end(); ++it) {
    const std::string& k = it.key();
    const auto& v = it.value();
    auto num = [&](int64_t lo, int64_t hi) -> Status {
      if (!v.is_number_integer() || v.get<int64_t>() < lo || v.get<int64_t>() > hi)
        return Error("--" + k + " must be between " + std::to_string(lo) + " and " + std::to_string(hi),
                     kExitUsage);
      return {};
    };
    if (k == "retries")
      CM_TRY(num(0, 100));
    else if (k == "backoff")
      CM_TRY(num(1, 86400));
    else if (k == "timeout")
      CM_TRY(num(0, 7 * 86400));
    else if (k == "keep")
      CM_TRY(num(1, 1000));
    else if (k == "level")
      CM_TRY(num(1, 19));
    else if (k == "checkpoint")
      CM_TRY(num(0, INT64_MAX));
    else if (k == "quorum")
      CM_TRY(parse_quorum(v.get<std::string>()));
    else if (k == "on_conflict" && v != "queue" && v != "cancel")
      return Error("--on-conflict must be 'queue' or 'cancel'", kExitUsage);
    else if (k == "sign_key" || k == "encrypt_key")
      CM_TRY(need_file(k == "sign_key" ? "the signing key" : "the encryption key", v.get<std::string>()));
  }
  if (p.contains("checkpoint") && type != "restore")
    return Error("--checkpoint is for restore jobs", kExitUsage);
  return {};
}

}  // namespace

Status add_site(Store& store, const std::string& name, const SiteEdit& e) {
  CM_TRY(need_name("site", name));
  if (!e.staging || !e.shadow)
    return Error("a site needs --staging DIR and --shadow DIR", kExitUsage);
  CM_TRY(need_dir("the staging tree", *e.staging));
  if (e.shadow->empty() || (*e.shadow)[0] != '/')
    return Error("the shadow copy '" + *e.shadow + "' must be an absolute path", kExitUsage);
  CM_ASSIGN(auto old, store.site(name));
  if (old)
    return Error("site '" + name + "' exists (cm-sched site set)", kExitFailure);
  Site s;
  s.name = name;
  s.staging = *e.staging;
  s.shadow = *e.shadow;
  return store.put_site(s, false);
}

Status set_site(Store& store, const std::string& name, const SiteEdit& e) {
  CM_ASSIGN(auto s, store.site(name));
  if (!s)
    return Error("no site '" + name + "'", kExitFailure);
  if (e.staging) {
    CM_TRY(need_dir("the staging tree", *e.staging));
    s->staging = *e.staging;
  }
  if (e.shadow) {
    if (e.shadow->empty() || (*e.shadow)[0] != '/')
      return Error("the shadow copy '" + *e.shadow + "' must be an absolute path", kExitUsage);
    s->shadow = *e.shadow;
  }
  return store.put_site(*s, true);
}

Status remove_site(Store& store, const std::string& name) {
  CM_ASSIGN(auto s, store.site(name));
  if (!s)
    return Error("no site '" + name + "'", kExitFailure);
  CM_ASSIGN(auto jobs, store.jobs());
  for (const Job& j : jobs)
    if (j.site == name)
      return Error("site '" + name + "' is used by job '" + j.name + "'", kExitFailure);
  return store.remove_site(name);
}

Status add_group(Store& store, const std::string& name, const GroupEdit& e) {
  CM_TRY(need_name("group", name));
  CM_ASSIGN(auto old, store.group(name));
  if (old)
    return Error("group '" + name + "' exists (cm-sched group set)", kExitFailure);
  Group g;
  g.name = name;
  g.segments = e.segments.value_or("");
  g.leaders = e.leaders.value_or("");
  if (!g.leaders.empty())
    CM_TRY(need_file("the leaders file", g.leaders));
  if (g.segments.empty() && g.leaders.empty())
    g.segments = "all";
  return store.put_group(g, false);
}

Status set_group(Store& store, const std::string& name, const GroupEdit& e) {
  CM_ASSIGN(auto g, store.group(name));
  if (!g)
    return Error("no group '" + name + "'", kExitFailure);
  if (e.segments)
    g->segments = *e.segments;
  if (e.leaders) {
    if (!e.leaders->empty())
      CM_TRY(need_file("the leaders file", *e.leaders));
    g->leaders = *e.leaders;
  }
  return store.put_group(*g, true);
}

Status remove_group(Store& store, const std::string& name) {
  CM_ASSIGN(auto g, store.group(name));
  if (!g)
    return Error("no group '" + name + "'", kExitFailure);
  CM_ASSIGN(auto jobs, store.jobs());
  for (const Job& j : jobs)
    if (j.group == name)
      return Error("group '" + name + "' is used by job '" + j.name + "'", kExitFailure);
  return store.remove_group(name);
}

namespace {

Result<Job> apply_edit(Store& store, Job j, const JobEdit& e, int64_t now, bool fresh) {
  // Stored by an older cm-sched, not given now: dropped (the same "all"),
  // so that editing something else is not refused for it.
  if (stored_quorum_blank(j.policy) && !e.policy.contains("quorum"))
    j.policy.erase("quorum");
  if (e.type)
    j.type = *e.type;
  if (e.site)
    j.site = *e.site;
  if (e.group)
    j.group = *e.group;
  if (e.schedule)
    j.schedule = *e.schedule;
  for (auto it = e.policy.begin(); it != e.policy.end(); ++it) {
    if (it.value().is_null())
      j.policy.erase(it.key());
    else if (it.key() == "hooks") {
      for (auto h = it.value().begin(); h != it.value().end(); ++h)
        if (h.value().is_null())
          j.policy["hooks"].erase(h.key());
        else
          j.policy["hooks"][h.key()] = h.value();
    } else {
      j.policy[it.key()] = it.value();
    }
  }
  if (!valid_job_type(j.type))
    return Error("bad job type '" + j.type +
                     "': publish, replicate, synchronize, restore, rollback, remove or checkpoint",
                 kExitUsage);
  CM_ASSIGN(auto site, store.site(j.site));
  if (!site)
    return Error("no site '" + j.site + "' (cm-sched site add)", kExitFailure);
  CM_ASSIGN(auto group, store.group(j.group));
  if (!group)
    return Error("no group '" + j.group + "' (cm-sched group add)", kExitFailure);
  if (j.type == "publish")
    CM_TRY(need_dir("the staging tree of site '" + j.site + "'", site->staging));
  CM_TRY(check_policy(j.policy, j.type));
  CM_ASSIGN(Schedule sched, Schedule::parse(j.schedule));
  if (fresh || e.schedule) {
    if (!sched.can_match())
      return Error("bad schedule '" + j.schedule + "': it never matches (no month it names has those days)",
                   kExitUsage);
    j.next_run = sched.next(now);
    if (sched.once() && !j.next_run)
      return Error("the schedule '" + j.schedule + "' is in the past", kExitUsage);
  }
  if (e.enabled) {
    if (!*e.enabled)
      j.state = j.state == "running" ? j.state : "disabled";
    else if (j.state == "disabled") {
      j.state = "idle";
      if (!j.next_run || *j.next_run < now)
        j.next_run = sched.next(now);
    }
  }
  return j;
}

}  // namespace

Result<Job> add_job(Store& store, const std::string& name, const JobEdit& e, int64_t now) {
  CM_TRY(need_name("job", name));
  CM_ASSIGN(auto old, store.job(name));
  if (old)
    return Error("job '" + name + "' exists (cm-sched job set)", kExitFailure);
  if (!e.type || !e.site || !e.group)
    return Error("a job needs --type, --site and --group", kExitUsage);
  Job j;
  j.name = name;
  j.schedule = "manual";
  CM_ASSIGN(j, apply_edit(store, j, e, now, true));
  CM_TRY(store.put_job(j, false));
  return j;
}

Result<Job> set_job(Store& store, const std::string& name, const JobEdit& e, int64_t now) {
  CM_ASSIGN(auto old, store.job(name));
  if (!old)
    return Error("no job '" + name + "'", kExitFailure);
  CM_ASSIGN(Job j, apply_edit(store, *old, e, now, false));
  CM_TRY(store.put_job(j, true));
  return j;
}

Status remove_job(Store& store, const std::string& name) {
  CM_ASSIGN(auto old, store.job(name));
  if (!old)
    return Error("no job '" + name + "'", kExitFailure);
  if (old->state == "running")
    return Error("job '" + name + "' is running (run " + std::to_string(old->run.value_or(0)) + ")",
                 kExitBusy);
  return store.remove_job(name);
}

}  // namespace cm::sched
