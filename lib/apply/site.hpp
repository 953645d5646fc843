// A site on one server: its versions, which one is live, and the state
// that makes applying assignments ordered, idempotent and safe to kill.
//
//   SITE_DIR/live -> versions/<id>     what the web server serves
//   SITE_DIR/versions/<id>/            complete versions, by assignment id
//   SITE_DIR/versions/.staging-<id>/   the version an assignment is building
//   SITE_DIR/versions/.trash-*/        being deleted
//   SITE_DIR/versions/.spare-<id>/     a copy of version <id> to stage from
//   SITE_DIR/.cm/changes/<id>          the paths version <id> changed
//   SITE_DIR/.cm/state.json            versions, history, applied ids
//   SITE_DIR/.cm/lock                  one cm-apply at a time (flock)
//
// Live content is never modified: an assignment builds a new version beside
// it (a hard-link clone of its base, then the commands), and only a commit
// changes what `live` points to, with one rename(2). The state file is
// replaced atomically after each step; the `live` symlink is the truth
// about what is live, so a kill between the switch and the state update is
// repaired on the next run.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "assign/reader.hpp"
#include "util/io.hpp"

namespace cm::apply {

struct VersionInfo {
  uint64_t id = 0;  // the assignment that made it
  uint64_t sequence = 0;
  std::string type;
  int64_t created_ns = 0;
};

// Where a staging run is, for a progress line.
struct ApplyProgress {
  const char* phase = "";  // "applying", then "syncing"
  uint64_t commands = 0;   // done so far, of
  uint64_t total = 0;      // the part's
  uint64_t bytes = 0;      // written so far
};

struct SiteOptions {
  unsigned keep = 2;         // previous live versions kept for rollback
  double wait_seconds = 30;  // for the lock
  std::string reload;        // shell command run after a switch
  bool spare = true;         // keep a spare version to stage from (spare.hpp)
  // Look only (cm-apply status): nothing created or written, a shared lock
  // (so a run or a spare in progress is waited for), what a stopped run
  // left put right in memory only.
  bool read_only = false;
  // Called after each command and before the sync (cheap, or
  // rate-limited by the caller).
  std::function<void(const ApplyProgress&)> progress;
};

struct Failure {
  uint64_t index = 0;  // 1-based command number
  std::string op;
  std::string path;
  std::string error;
};

struct Report {
  uint64_t id = 0;
  std::string type;
  uint64_t part = 1;
  bool last_part = true;
  std::string result;  // "applied", "staged", "switched", "already-applied", "failed"
  std::string message;
  int code = 0;  // exit status
  std::vector<Failure> failures;
  uint64_t commands = 0;
  uint64_t bytes_written = 0;
  uint64_t data_bytes = 0;
  double seconds = 0;
  uint64_t version = 0;        // the version made or switched to
  uint64_t live = 0;           // what is live afterwards
  uint64_t live_sequence = 0;  // and the content sequence it holds
  std::string site;
  std::string reload_status;
  // What a new staging tree started as: "spare" (the site's spare, caught
  // up to the base), "clone" (a hard-link clone of the base), "nothing".
  std::string staged_from;

  nlohmann::json json() const;
  std::string text() const;
};

class Site {
 public:
  // Opens (creating SITE_DIR's .cm and versions directories on first use)
  // and takes the lock, waiting up to wait_seconds (then kExitBusy).
  static Result<std::unique_ptr<Site>> open(const std::string& root, SiteOptions opt);
  ~Site();

  // Carries out one part of an assignment, read from `pack` (already
  // open). Fills the report; the Status is the run's overall outcome.
  Status apply(assign::PackReader& pack, Report& report);

  // Whether live has no spare yet, and prepare_spare() would make one.
  bool wants_spare() const;
  // The descriptor that holds the site's lock (a background child keeps
  // it and closes every other one it inherited).
  int lock_fd() const;
  // Clones live as the spare (slow: one link per file; run it when
  // nothing waits, cm-apply does in the background after a switch).
  Status prepare_spare();
  // Waits up to `seconds` before prepare_spare(), and less when another
  // process opens the site's lock file meanwhile (a cm-apply or status,
  // about to wait for the lock this one holds). Right after a switch the
  // server reloads and, on a farm, its neighbours are still switching:
  // the spare's one link per file can wait a moment, but never delays
  // the next assignment by more than the time it takes.
  void wait_unless_wanted(double seconds) const;

  // What is there: versions, live, history, staging, last applied.
  nlohmann::json status() const;
  std::string status_text() const;

 private:
  struct Impl;
  explicit Site(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace cm::apply
