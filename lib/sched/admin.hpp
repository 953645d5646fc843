// What an administrator asks of cm-sched, checked before anything is
// written: sites, groups and jobs added or changed, with clear errors for
// unknown names, bad schedules, missing paths and keys.
#pragma once

#include <optional>
#include <string>

#include <nlohmann/json.hpp>

#include "sched/store.hpp"

namespace cm::sched {

struct SiteEdit {
  std::optional<std::string> staging, shadow;
};
Status add_site(Store& store, const std::string& name, const SiteEdit& e);
Status set_site(Store& store, const std::string& name, const SiteEdit& e);
Status remove_site(Store& store, const std::string& name);

struct GroupEdit {
  std::optional<std::string> segments, leaders;
};
Status add_group(Store& store, const std::string& name, const GroupEdit& e);
Status set_group(Store& store, const std::string& name, const GroupEdit& e);
Status remove_group(Store& store, const std::string& name);

struct JobEdit {
  std::optional<std::string> type, site, group, schedule;
  nlohmann::json policy = nlohmann::json::object();  // keys to set; null removes
  std::optional<bool> enabled;
};
Result<Job> add_job(Store& store, const std::string& name, const JobEdit& e, int64_t now);
Result<Job> set_job(Store& store, const std::string& name, const JobEdit& e, int64_t now);
Status remove_job(Store& store, const std::string& name);

}  // namespace cm::sched
