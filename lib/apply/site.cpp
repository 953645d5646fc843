#include "apply/site.hpp"

#include <fcntl.h>
#include <poll.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>
#include <chrono>
#include <cstring>
#include <deque>
#include <nlohmann/json.hpp>
#include <set>
#include <thread>

#include "apply/applier.hpp"
#include "apply/spare.hpp"
#include "fs/tree.hpp"
#include "util/clock.hpp"
#include "util/proc.hpp"
#include "util/text.hpp"

namespace cm::apply {

namespace {

constexpr size_t kAppliedKept = 1000;
constexpr int kStateFormat = 1;
// How many change records a spare may be behind its base.
constexpr int kMaxChain = 64;
// Up to this many commands, a staging from the spare is synced file by
// file; above, with one syncfs.
constexpr uint64_t kMaxTargetedSync = 1000;

struct Staging {
  uint64_t id = 0;
  uint64_t sequence = 0;
  uint64_t base_id = 0;  // 0: built on nothing (a full tree)
  std::string type;
  uint64_t parts_done = 0;
  std::string phase;  // "cloning" or "applying"
  int64_t created_ns = 0;
};

struct Applied {
  uint64_t id = 0;
  uint64_t part = 1;
  std::string type;
  uint64_t sequence = 0;
  int64_t at_ns = 0;
};

// A switch of `live` under way: saved before the rename, so that whatever
// stops a run between the two (a kill, a full disk) leaves a state that
// says which switch it was, and the next open finishes or forgets it.
struct Switching {
  uint64_t assignment = 0, part = 1, sequence = 0;
  std::string type;  // commit or rollback
  uint64_t target = 0, from = 0;
  bool rollback = false;
};

struct State {
  std::string site;
  uint64_t live = 0;
  std::vector<uint64_t> history;  // earlier live versions, oldest first
  std::vector<VersionInfo> versions;
  std::optional<Staging> staging;
  std::deque<Applied> applied;
  uint64_t spare = 0;  // the version versions/.spare-<id> holds; 0: none
  std::optional<Switching> switching;
  uint64_t reload_for = 0;  // the assignment whose switch no --reload has followed yet
  // The highest id that left `applied` (it keeps the last kAppliedKept):
  // assignments up to it are older than what the state remembers.
  uint64_t forgotten = 0;

  const VersionInfo* version(uint64_t id) const {
    for (const VersionInfo& v : versions)
      if (v.id == id)
        return &v;
    return nullptr;
  }
  // The newest version with this sequence.
  const VersionInfo* by_sequence(uint64_t seq) const {
    const VersionInfo* best = nullptr;
    for (const VersionInfo& v : versions)
      if (v.sequence == seq && (best == nullptr || v.id > best->id))
        best = &v;
    return best;
  }
  uint64_t last_sequence() const {
    uint64_t s = 0;
    for (const VersionInfo& v : versions)
      s = std::max(s, v.sequence);
    return s;
  }
  bool was_applied(uint64_t id, uint64_t part) const {
    for (const Applied& a : applied)
      if (a.id == id && a.part == part)
        return true;
    return false;
  }
};

nlohmann::json to_json(const State& s) {
  nlohmann::json j;
  j["format"] = kStateFormat;
  j["site"] = s.site;
  j["live"] = s.live;
  j["history"] = s.history;
  nlohmann::json vs = nlohmann::json::array();
  for (const VersionInfo& v : s.versions)
    vs.push_back({{"id", v.id}, {"sequence", v.sequence}, {"type", v.type}, {"created_ns", v.created_ns}});
  j["versions"] = vs;
  if (s.staging)
    j["staging"] = {{"id", s.staging->id},
                    {"sequence", s.staging->sequence},
                    {"base_id", s.staging->base_id},
                    {"type", s.staging->type},
                    {"parts_done", s.staging->parts_done},
                    {"phase", s.staging->phase},
                    {"created_ns", s.staging->created_ns}};
  else
    j["staging"] = nullptr;
  nlohmann::json ap = nlohmann::json::array();
  for (const Applied& a : s.applied)
    ap.push_back(
        {{"id", a.id}, {"part", a.part}, {"type", a.type}, {"sequence", a.sequence}, {"at_ns", a.at_ns}});
  j["applied"] = ap;
  j["spare"] = s.spare;
  if (s.switching)
    j["switching"] = {{"assignment", s.switching->assignment}, {"part", s.switching->part},
                      {"sequence", s.switching->sequence},     {"type", s.switching->type},
                      {"target", s.switching->target},         {"from", s.switching->from},
                      {"rollback", s.switching->rollback}};
  else
    j["switching"] = nullptr;
  j["reload_for"] = s.reload_for;
  j["forgotten"] = s.forgotten;
  return j;
}

Result<State> from_json(const std::string& text, const std::string& name) {
  try {
    nlohmann::json j = nlohmann::json::parse(text);
    if (j.at("format").get<int>() != kStateFormat)
      return Error("'" + name + "': state of an unknown format version", kExitBadInput);
    State s;
    s.site = j.at("site").get<std::string>();
    s.live = j.at("live").get<uint64_t>();
    s.history = j.at("history").get<std::vector<uint64_t>>();
    for (const auto& v : j.at("versions"))
      s.versions.push_back(VersionInfo{v.at("id").get<uint64_t>(), v.at("sequence").get<uint64_t>(),
                                       v.at("type").get<std::string>(), v.at("created_ns").get<int64_t>()});
    if (!j.at("staging").is_null()) {
      const auto& st = j.at("staging");
      s.staging = Staging{st.at("id").get<uint64_t>(),         st.at("sequence").get<uint64_t>(),
                          st.at("base_id").get<uint64_t>(),    st.at("type").get<std::string>(),
                          st.at("parts_done").get<uint64_t>(), st.at("phase").get<std::string>(),
                          st.at("created_ns").get<int64_t>()};
    }
    for (const auto& a : j.at("applied"))
      s.applied.push_back(Applied{a.at("id").get<uint64_t>(), a.at("part").get<uint64_t>(),
                                  a.at("type").get<std::string>(), a.at("sequence").get<uint64_t>(),
                                  a.at("at_ns").get<int64_t>()});
    // Absent in state files written before spares existed.
    s.spare = j.value("spare", uint64_t{0});
    // Absent in state files written before switches were saved ahead.
    if (j.contains("switching") && !j.at("switching").is_null()) {
      const auto& w = j.at("switching");
      s.switching = Switching{w.at("assignment").get<uint64_t>(), w.at("part").get<uint64_t>(),
                              w.at("sequence").get<uint64_t>(),   w.at("type").get<std::string>(),
                              w.at("target").get<uint64_t>(),     w.at("from").get<uint64_t>(),
                              w.at("rollback").get<bool>()};
    }
    s.reload_for = j.value("reload_for", uint64_t{0});
    // Absent in state files written before it was kept.
    s.forgotten = j.value("forgotten", uint64_t{0});
    return s;
  } catch (const std::exception& e) {
    return Error("'" + name + "': damaged state file (" + e.what() + "); repair or remove it by hand",
                 kExitBadInput);
  }
}

Status fsync_dir(const std::string& path) {
  Fd d(::open(path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!d.valid() || ::fsync(d.get()) != 0)
    return sys_error("cannot sync directory", path, errno);
  return {};
}

Status make_dir(const std::string& path, mode_t mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    return sys_error("cannot create directory", path, errno);
  return {};
}

std::string range_text(uint64_t from, uint64_t to) {
  return from == to ? std::to_string(from) : std::to_string(from) + "-" + std::to_string(to);
}

}  // namespace

nlohmann::json Report::json() const {
  nlohmann::json j{{"assignment", id},
                   {"type", type},
                   {"part", part},
                   {"last_part", last_part},
                   {"result", result},
                   {"commands", commands},
                   {"bytes_written", bytes_written},
                   {"data_bytes", data_bytes},
                   {"seconds", seconds},
                   {"version", version},
                   {"live", live},
                   {"live_sequence", live_sequence}};
  if (!site.empty())
    j["site"] = site;
  if (!message.empty())
    j["message"] = message;
  nlohmann::json f = nlohmann::json::array();
  for (const Failure& x : failures) {
    nlohmann::json e{{"command", x.index}, {"op", x.op}, {"error", x.error}};
    json_set_bytes(e, "path", x.path);
    f.push_back(e);
  }
  j["failures"] = f;
  if (!reload_status.empty())
    j["reload"] = reload_status;
  if (!staged_from.empty())
    j["staged_from"] = staged_from;
  return j;
}

std::string Report::text() const {
  std::string s = "assignment " + std::to_string(id) + " (" + type + ")";
  if (part != 1 || !last_part)
    s += " part " + std::to_string(part);
  s += ": " + result;
  if (!message.empty())
    s += ": " + message;
  if (result == "staged" || result == "applied")
    s += " (" + std::to_string(commands) + " commands, " + human_bytes(bytes_written) + " written)";
  for (const Failure& f : failures)
    s += "\n  command " + std::to_string(f.index) + " (" + f.op + " " + quote_path(f.path) + "): " + f.error;
  if (!reload_status.empty())
    s += "\n  reload: " + reload_status;
  return s;
}

struct Site::Impl {
  std::string root;
  SiteOptions opt;
  Fd lock;
  State state;

  std::string cm_dir() const { return root + "/.cm"; }
  std::string versions_dir() const { return root + "/versions"; }
  std::string version_dir(uint64_t id) const { return versions_dir() + "/" + std::to_string(id); }
  std::string staging_dir(uint64_t id) const { return versions_dir() + "/.staging-" + std::to_string(id); }
  std::string scratch_dir() const { return versions_dir() + "/.scratch"; }
  std::string spare_dir(uint64_t id) const { return versions_dir() + "/.spare-" + std::to_string(id); }
  std::string changes_dir() const { return cm_dir() + "/changes"; }
  std::string changes_path(uint64_t id) const { return changes_dir() + "/" + std::to_string(id); }
  std::vector<Touched> touched;  // by the commands run so far
  Changed changed;               // in the staging tree, by this run
  std::string state_path() const { return cm_dir() + "/state.json"; }

  // The state file's content.
  std::string state_text() const { return json_text(to_json(state), 1) + "\n"; }

  // Writes the state; with `durable`, its new name is synced too. (Not
  // needed where a state already on disk leads the next open to the same
  // one: reconcile() finishes a switch from its saved intent.)
  Status save(bool durable = true) {
    if (opt.read_only)
      return {};
    CM_TRY(write_file_atomic(state_path(), state_text(), 0644));
    return durable ? fsync_dir(cm_dir()) : Status{};
  }

  Status take_lock() {
    std::string path = cm_dir() + "/lock";
    if (opt.read_only) {
      lock.reset(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      if (!lock.valid())
        return errno == ENOENT ? Status() : sys_error("cannot open", path, errno);  // no site yet
    } else {
      lock.reset(::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
    }
    if (!lock.valid())
      return sys_error("cannot open", path, errno);
    const int how = opt.read_only ? LOCK_SH : LOCK_EX;
    auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(opt.wait_seconds);
    // Tries again after 1 ms, 2, 4 ... at most 50 ms apart: the holder is
    // often about to finish (the background spare, a commit).
    auto pause = std::chrono::milliseconds(1);
    while (::flock(lock.get(), how | LOCK_NB) != 0) {
      if (errno != EWOULDBLOCK)
        return sys_error("cannot lock", path, errno);
      if (std::chrono::steady_clock::now() >= deadline)
        return Error("'" + root + "' is busy: another cm-apply holds " + path, kExitBusy);
      // Each try opens the file again: a background spare waiting out its
      // delay (wait_unless_wanted) watches for opens, and may have started
      // watching after our first one.
      Fd knock(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
      std::this_thread::sleep_for(pause);
      pause = std::min(pause * 2, std::chrono::milliseconds(50));
    }
    return {};
  }

  Status load() {
    struct stat st;
    if (::stat(state_path().c_str(), &st) != 0) {
      if (errno != ENOENT)
        return sys_error("cannot read", state_path(), errno);
      return {};
    }
    CM_ASSIGN(auto in, open_input(state_path()));
    CM_ASSIGN(std::string text, read_all(*in, 64 << 20));
    CM_ASSIGN(state, from_json(text, state_path()));
    return {};
  }

  // What `live` points to, if it is one of our versions.
  std::optional<uint64_t> live_link() const {
    char buf[4096];
    ssize_t n = ::readlink((root + "/live").c_str(), buf, sizeof buf - 1);
    if (n <= 0)
      return std::nullopt;
    std::string t(buf, static_cast<size_t>(n));
    const std::string prefix = "versions/";
    if (t.rfind(prefix, 0) != 0)
      return std::nullopt;
    try {
      return std::stoull(t.substr(prefix.size()));
    } catch (...) {
      return std::nullopt;
    }
  }

  // The `live` symlink is the truth: a kill between the switch and the
  // state update leaves the state behind, and this catches it up.
  // Forgets the versions the state names whose tree is gone, neither in
  // place nor still staged, and drops them from the history (not live: a
  // live version without a tree is for a person to see).
  Status forget_lost_versions() {
    size_t known = state.versions.size();
    std::erase_if(state.versions, [&](const VersionInfo& v) {
      struct stat vs;
      return v.id != state.live && !(state.staging && state.staging->id == v.id) &&
             ::lstat(version_dir(v.id).c_str(), &vs) != 0 && errno == ENOENT &&
             ::lstat(staging_dir(v.id).c_str(), &vs) != 0 && errno == ENOENT;
    });
    if (state.versions.size() == known)
      return {};
    std::erase_if(state.history, [&](uint64_t id) { return state.version(id) == nullptr; });
    return save();
  }

  Status reconcile() {
    // Killed (or the rename failed) after the state named a staged version
    // but before its tree was renamed into place: finish the rename. If it
    // fails again, the site still opens; a commit to that version is
    // refused (switch_to) and the next run tries again.
    bool renamed = false;
    for (const VersionInfo& v : state.versions) {
      struct stat vs;
      if (opt.read_only || (state.staging && state.staging->id == v.id) ||
          !(::stat(version_dir(v.id).c_str(), &vs) != 0 && errno == ENOENT &&
            ::stat(staging_dir(v.id).c_str(), &vs) == 0))
        continue;
      if (::rename(staging_dir(v.id).c_str(), version_dir(v.id).c_str()) == 0)
        renamed = true;
    }
    if (renamed)
      CM_TRY(fsync_dir(versions_dir()));
    // A version the state names whose tree is gone, neither in place nor
    // still staged: a run killed in cleanup() after it moved the tree
    // aside but before the state said so. Forgotten, so that a rollback or
    // a publish on it is refused as for any version this server lacks.
    // (Not live: a live version without a tree is for a person to see.)
    CM_TRY(forget_lost_versions());
    // The symlink a commit or rollback killed before its rename had made
    // (switch_to()): never `live`, only litter in the site's directory.
    if (!opt.read_only)
      remove_strays();
    // A spare the state names but the disk lost (a run killed after it
    // became a staging tree): none, so that a new one is made.
    struct stat ss;
    if (state.spare != 0 && ::stat(spare_dir(state.spare).c_str(), &ss) != 0 && errno == ENOENT) {
      state.spare = 0;
      CM_TRY(save());
    }
    // Killed after a staged version was renamed into place but before the
    // state said so: it is complete (the rename comes after the last part).
    struct stat st;
    if (state.staging && ::stat(staging_dir(state.staging->id).c_str(), &st) != 0 &&
        ::stat(version_dir(state.staging->id).c_str(), &st) == 0) {
      const Staging& sg = *state.staging;
      std::erase_if(state.versions, [&](const VersionInfo& v) { return v.id == sg.id; });
      state.versions.push_back(VersionInfo{sg.id, sg.sequence, sg.type, sg.created_ns});
      state.applied.push_back(Applied{sg.id, sg.parts_done + 1, sg.type, sg.sequence, wall_ns()});
      state.staging.reset();
      CM_TRY(save());
    }
    // A staging tree the state names but the disk does not hold (another
    // assignment's run moved it aside and was killed): forget it, and that
    // its parts were applied, so that they can come again.
    if (state.staging && ::stat(staging_dir(state.staging->id).c_str(), &st) != 0 && errno == ENOENT &&
        ::stat(version_dir(state.staging->id).c_str(), &st) != 0) {
      uint64_t lost = state.staging->id;
      std::erase_if(state.applied, [&](const Applied& a) { return a.id == lost; });
      state.staging.reset();
      CM_TRY(save());
    }
    auto link = live_link();
    uint64_t actual = link.value_or(0);
    // A switch under way when the last run stopped: done if `live` points
    // to its target (the bookkeeping follows now), else it never happened
    // (and the assignment was not recorded: running it again switches).
    if (state.switching) {
      if (actual == state.switching->target)
        finish_switch(nullptr);
      else
        state.switching.reset();
      CM_TRY(save());
    }
    if (actual != state.live && (actual == 0 || state.version(actual) != nullptr)) {
      if (state.live != 0)
        state.history.push_back(state.live);
      std::erase(state.history, actual);
      state.live = actual;
      CM_TRY(save());
    }
    // Once more, now that live is settled: the version a finished switch
    // left, if its tree went meanwhile (cleanup() after a commit whose
    // last save, not synced, a crash lost).
    return forget_lost_versions();
  }

  // Drops the staging tree of assignment `id` (to the trash) and forgets
  // the parts of it recorded as applied, so that they can all come again:
  // its staging tree is all that applying them left. The caller saves.
  void drop_staging(uint64_t id) {
    (void)trash(staging_dir(id));
    std::erase_if(state.applied, [&](const Applied& a) { return a.id == id; });
    if (state.staging && state.staging->id == id)
      state.staging.reset();
  }

  // Removes the site directory's `.live-*` symlinks (see reconcile()),
  // and a state a run killed while saving it wrote but never renamed.
  void remove_strays() {
    auto remove = [](const std::string& dir, const std::string& prefix, mode_t type) {
      Fd d(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
      if (!d.valid())
        return;
      auto names = fs::list_names(d.get(), dir);
      if (!names.ok())
        return;
      for (const std::string& n : *names) {
        struct stat ls;
        if (n.rfind(prefix, 0) == 0 && ::fstatat(d.get(), n.c_str(), &ls, AT_SYMLINK_NOFOLLOW) == 0 &&
            (ls.st_mode & S_IFMT) == type)
          (void)::unlinkat(d.get(), n.c_str(), 0);
      }
    };
    remove(root, ".live-", S_IFLNK);
    remove(cm_dir(), fs::name_of(temp_prefix(state_path())), S_IFREG);
  }

  // Moves a directory out of the way, then deletes it: deleting first
  // would slow down the file creation that follows on these disks.
  Status trash(const std::string& path) {
    struct stat st;
    if (::lstat(path.c_str(), &st) != 0)
      return {};
    std::string t = versions_dir() + "/.trash-" + random_name(10);
    if (::rename(path.c_str(), t.c_str()) != 0)
      return sys_error("cannot move aside", path, errno);
    return {};
  }

  // Whether `id` (text) is a version the state names.
  bool names_version(const char* id) const {
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(id, id + std::strlen(id), n);
    return ec == std::errc() && *end == '\0' && state.version(n) != nullptr;
  }

  Status empty_trash() {
    Fd d(::open(versions_dir().c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!d.valid())
      return {};
    auto names = fs::list_names(d.get(), versions_dir());
    if (!names.ok())
      return {};
    // A spare or staging tree the state does not name is left by a killed
    // run (so is a .scratch-N of earlier releases).
    const std::string spare = state.spare != 0 ? ".spare-" + std::to_string(state.spare) : std::string();
    const std::string staging =
        state.staging ? ".staging-" + std::to_string(state.staging->id) : std::string();
    for (const std::string& n : *names)
      if (n.starts_with(".trash-") || n.starts_with(".scratch-") ||
          (n.starts_with(".spare-") && n != spare) ||
          (n.starts_with(".staging-") && n != staging && !names_version(n.c_str() + 9)))
        CM_TRY(fs::remove_tree_at(d.get(), n, versions_dir() + "/" + n));
    return {};
  }

  // The site's scratch directory, created once, emptied of what a killed
  // run left in it.
  Result<Fd> open_scratch(const std::string& xdir) {
    if (::mkdir(xdir.c_str(), 0700) != 0 && errno != EEXIST)
      return sys_error("cannot create directory", xdir, errno);
    Fd d(::open(xdir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!d.valid())
      return sys_error("cannot open", xdir, errno);
    CM_TRY(fs::empty_dir(d.get(), xdir));
    return d;
  }

  void record(Applied a) {
    state.applied.push_back(std::move(a));
    while (state.applied.size() > kAppliedKept) {
      // Not the staging in progress (an assignment of more parts than are
      // kept): if it fails, its parts must be able to come again.
      if (!(state.staging && state.staging->id == state.applied.front().id))
        state.forgotten = std::max(state.forgotten, state.applied.front().id);
      state.applied.pop_front();
    }
  }
  void record(const assign::Header& h) {
    record(Applied{h.id, h.part, assign::type_name(h.type), h.sequence, wall_ns()});
  }

  Status apply(assign::PackReader& pack, Report& rep);
  Status stage(assign::PackReader& pack, Report& rep);
  Result<bool> reuse_spare(uint64_t base_id, const std::string& sdir);
  Status clone_version(uint64_t id, const std::string& dir, bool sync);
  Status prepare_spare();
  Status run_commands(assign::PackReader& pack, int base_fd, int target_fd, int scratch_fd,
                      const std::string& name, Syncer* syncer, bool direct, Report& rep);
  Status switch_to(uint64_t id, bool rollback, const assign::Header& h, Report& rep);
  void finish_switch(Report* rep);
  Status reload_once(Report& rep);
  Status cleanup();
  void reload(Report& rep);
};

Result<std::unique_ptr<Site>> Site::open(const std::string& root, SiteOptions opt) {
  struct stat st;
  if (::stat(root.c_str(), &st) != 0)
    return sys_error("cannot open site directory", root, errno);
  if (!S_ISDIR(st.st_mode))
    return Error("'" + root + "' is not a directory", kExitFailure);
  auto impl = std::make_unique<Impl>();
  impl->root = root;
  impl->opt = std::move(opt);
  if (!impl->opt.read_only) {
    CM_TRY(make_dir(impl->cm_dir(), 0755));
    CM_TRY(make_dir(impl->versions_dir(), 0755));
  }
  CM_TRY(impl->take_lock());
  CM_TRY(impl->load());
  CM_TRY(impl->reconcile());
  return std::unique_ptr<Site>(new Site(std::move(impl)));
}

Site::Site(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}
Site::~Site() = default;

Status Site::apply(assign::PackReader& pack, Report& rep) {
  auto start = std::chrono::steady_clock::now();
  const assign::Header& h = pack.header();
  rep.id = h.id;
  rep.type = assign::type_name(h.type);
  rep.part = h.part;
  rep.last_part = h.last_part;
  Status s = impl_->apply(pack, rep);
  // Whatever a killed run left to delete goes now, after the work.
  (void)impl_->empty_trash();
  rep.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  rep.live = impl_->state.live;
  rep.site = impl_->state.site;
  if (const VersionInfo* v = impl_->state.version(impl_->state.live))
    rep.live_sequence = v->sequence;
  if (!s.ok()) {
    if (rep.result.empty() || rep.result == "staged")
      rep.result = "failed";
    if (rep.message.empty())
      rep.message = s.error().message;
    rep.code = s.error().code;
  }
  return s;
}

Status Site::Impl::apply(assign::PackReader& pack, Report& rep) {
  const assign::Header& h = pack.header();
  if (!state.site.empty() && state.site != h.site)
    return Error("assignment " + std::to_string(h.id) + " is for site '" + h.site + "', this is site '" +
                     state.site + "' (" + root + ")",
                 kExitFailure);
  // Applied, or staged into a version that is still here (its record may
  // have left `applied` since).
  bool staged_before =
      h.type != assign::Type::Commit && h.type != assign::Type::Rollback && state.version(h.id) != nullptr;
  if (state.was_applied(h.id, h.part) || staged_before) {
    // Still read whole and checked: a damaged copy is not "applied".
    CM_TRY(pack.finish(false));
    rep.result = "already-applied";
    // Switched, but the run stopped before its --reload: now.
    if (!opt.reload.empty() && state.reload_for == h.id)
      CM_TRY(reload_once(rep));
    return {};
  }
  // Older than every assignment the state remembers (ids grow; it keeps
  // the last kAppliedKept): a replay, such as an old commit that would
  // switch live back. Refused, not run.
  if (h.id <= state.forgotten && !(state.staging && state.staging->id == h.id))
    return Error("assignment " + std::to_string(h.id) +
                     " is older than every assignment this server remembers (it has forgotten those up to " +
                     std::to_string(state.forgotten) + "); refused as a replay",
                 kExitFailure);
  if (!pack.commands_readable())
    return Error("'" + pack.name() + "': the assignment is encrypted; give --key", kExitSecurity);
  if (state.site.empty())
    state.site = h.site;
  switch (h.type) {
    case assign::Type::Commit:
    case assign::Type::Rollback: {
      // No data: still read to the end, so every check runs.
      for (;;) {
        CM_ASSIGN(auto c, pack.next_command());
        if (!c)
          break;
      }
      CM_TRY(pack.finish(false));
      uint64_t target = h.target;
      bool rollback = h.type == assign::Type::Rollback;
      if (target == 0) {
        if (rollback) {
          if (state.history.empty())
            return Error("rollback: no earlier version to go back to", kExitFailure);
          target = state.history.back();
        } else {
          // The newest version that is not live.
          const VersionInfo* best = nullptr;
          for (const VersionInfo& v : state.versions)
            if (best == nullptr || v.sequence > best->sequence ||
                (v.sequence == best->sequence && v.id > best->id))
              best = &v;
          if (best == nullptr)
            return Error("commit: nothing has been staged", kExitFailure);
          target = best->id;
        }
      }
      if (state.version(target) == nullptr)
        return Error(
            std::string(rollback ? "rollback" : "commit") + ": this server has no version " +
                std::to_string(target) +
                (state.staging && state.staging->id == target ? " complete yet (parts are missing)" : ""),
            kExitFailure);
      CM_TRY(switch_to(target, rollback, h, rep));
      if (rep.result != "switched")
        record(h);
      // After a switch, the intent saved before the rename is on disk: a
      // crash that loses this save has the next open finish the switch's
      // bookkeeping from it.
      CM_TRY(save(rep.result != "switched"));
      (void)cleanup();
      if (!opt.reload.empty() && rep.result == "switched")
        CM_TRY(reload_once(rep));
      return {};
    }
    default: return stage(pack, rep);
  }
}

Status Site::Impl::stage(assign::PackReader& pack, Report& rep) {
  const assign::Header& h = pack.header();
  // Once this run has made or changed the staging tree, a failure drops
  // it: a full disk gets its space back, and the assignment (every part)
  // can come again. Not when another run holds the site (kExitBusy).
  auto fail = [&](Error e) -> Status {
    if (e.code != kExitBusy) {
      drop_staging(h.id);
      (void)save();
      (void)empty_trash();
    }
    return e;
  };
// CM_TRY, through fail().
#define CM_TRY_STAGE(expr)                         \
  do {                                             \
    auto cm_stage_r_ = (expr);                     \
    if (!cm_stage_r_.ok())                         \
      return fail(std::move(cm_stage_r_).error()); \
  } while (0)
  bool full = h.type == assign::Type::Replicate || h.type == assign::Type::Restore ||
              h.type == assign::Type::Remove || h.base == 0;
  std::string sdir = staging_dir(h.id);

  // Whether this run makes the staging tree (not a resumed one).
  bool fresh =
      h.part == 1 && !(state.staging && state.staging->id == h.id && state.staging->phase == "applying");
  if (fresh) {
    uint64_t base_id = 0;
    if (!full) {
      const VersionInfo* base = state.by_sequence(h.base);
      if (base == nullptr) {
        uint64_t last = state.last_sequence();
        if (h.base > last)
          return Error("assignment " + std::to_string(h.id) + " applies on sequence " +
                           std::to_string(h.base) + " but this server's latest is " + std::to_string(last) +
                           ": missing sequence " + range_text(last + 1, h.base) +
                           "; the manager must send a synchronize",
                       kExitFailure);
        return Error("assignment " + std::to_string(h.id) + " applies on sequence " + std::to_string(h.base) +
                         ", which this server does not have (it has up to " + std::to_string(last) + ")",
                     kExitFailure);
      }
      base_id = base->id;
    }
    // A staging tree left by a killed run, or another assignment's parts
    // so far: aside (and those parts forgotten), and start over.
    if (state.staging && state.staging->id != h.id)
      drop_staging(state.staging->id);
    CM_TRY(trash(sdir));
    // Not saved until the part is done (each save is two fsyncs, and a
    // publish is a few ms): a run killed before that leaves a staging tree
    // the state does not name. Running the assignment again starts over
    // (from a clone: the spare went into the tree); empty_trash() removes
    // a tree whose assignment never comes back.
    state.staging = Staging{h.id, h.sequence, base_id, assign::type_name(h.type), 0, "cloning", h.created_ns};
    // The spare, brought to the base by its changes, or a clone of the base.
    changed = Changed{};
    bool reused = false;
    if (base_id != 0) {
      auto r = reuse_spare(base_id, sdir);
      CM_TRY_STAGE(r);
      reused = *r;
    }
    rep.staged_from = reused ? "spare" : base_id != 0 ? "clone" : "nothing";
    if (!reused) {
      CM_TRY_STAGE(make_dir(sdir, 0755));
      if (base_id != 0)
        CM_TRY_STAGE(clone_version(base_id, sdir, false));
    }
    if (::unlink(changes_path(h.id).c_str()) != 0 && errno != ENOENT)
      return fail(sys_error("cannot remove", changes_path(h.id), errno));
    state.staging->phase = "applying";
  } else if (h.part > 1 || (state.staging && state.staging->id == h.id)) {
    if (!state.staging || state.staging->id != h.id)
      return Error("assignment " + std::to_string(h.id) + " part " + std::to_string(h.part) +
                       ": part 1 has not been applied here",
                   kExitFailure);
    if (state.staging->parts_done + 1 < h.part)
      return Error("assignment " + std::to_string(h.id) + " part " + std::to_string(h.part) +
                       ": missing part " + range_text(state.staging->parts_done + 1, h.part - 1),
                   kExitFailure);
  }

  // Sources come from the base version, or from an empty directory.
  std::string base_path =
      state.staging->base_id != 0 ? version_dir(state.staging->base_id) : cm_dir() + "/empty";
  if (state.staging->base_id == 0) {
    CM_TRY_STAGE(make_dir(base_path, 0755));
  }
  Fd base(::open(base_path.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Fd target(::open(sdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!base.valid() || !target.valid())
    return fail(sys_error("cannot open", !base.valid() ? base_path : sdir, errno));
  // Files are written in a scratch directory and renamed into the staging
  // tree when complete: what a killed run was writing stays out of it.
  // One directory for the site, kept from run to run and emptied first
  // (creating a directory costs more than a file on ext4).
  std::string xdir = scratch_dir();
  auto scratch_r = open_scratch(xdir);
  if (!scratch_r.ok())
    return fail(std::move(scratch_r).error());
  Fd scratch = std::move(scratch_r).value();
  touched.clear();
  // Synced file by file at the end (see below), or all at once.
  bool targeted = h.part == 1 && h.last_part && rep.staged_from == "spare" && !changed.bulk &&
                  h.commands + changed.dirs.size() <= kMaxTargetedSync;
  // Targeted: each file written is synced on other threads meanwhile.
  Syncer syncer;
  // A tree this run made for the whole assignment is thrown away if the
  // run stops before the end (the state does not name it until then): its
  // files are written at their names, not renamed into place.
  bool direct = fresh && h.last_part;
  Status s = run_commands(pack, base.get(), target.get(), scratch.get(), sdir, targeted ? &syncer : nullptr,
                          direct, rep);
  if (!s.ok())
    return fail(std::move(s).error());  // an unusable staging tree takes space
  state.staging->parts_done = h.part;
  if (h.last_part) {
    // What changed from the base, for a spare to catch up on later (one
    // part only; a version without a record just cannot serve that way).
    if (h.part == 1 && state.staging->base_id != 0) {
      ChangeRecord rec{state.staging->base_id, std::move(touched)};
      // Targeted, it is synced with the tree's files on the syncer's
      // threads (before the state names the version, as here).
      Fd unsynced;
      if (make_dir(changes_dir(), 0755).ok() &&
          write_file_atomic(changes_path(h.id), encode_changes(rec), 0644, targeted ? &unsynced : nullptr)
              .ok() &&
          unsynced.valid())
        syncer.add(std::move(unsynced), changes_path(h.id));
    }
    // The state that names the version, written now beside state.json and
    // synced with the tree (targeted: on the syncer's threads, so that no
    // fsync of its own waits after the tree's); its name comes after the
    // sync and before the tree's, as one save would do it.
    Staging was = *state.staging;
    state.versions.push_back(VersionInfo{h.id, h.sequence, assign::type_name(h.type), h.created_ns});
    state.staging.reset();
    record(h);
    // Not named on disk: as if never staged (fail() drops the tree).
    auto unsaved = [&](Error e) {
      std::erase_if(state.versions, [&](const VersionInfo& v) { return v.id == h.id; });
      state.staging = was;
      return fail(std::move(e));
    };
    auto next = write_temp_beside(state_path(), state_text(), 0644);
    if (!next.ok())
      return unsaved(std::move(next).error());
    std::string next_name = next->name;
    if (targeted) {
      syncer.add(std::move(next->fd), state_path());
    } else if (::fsync(next->fd.get()) != 0) {
      int err = errno;
      ::unlink(next_name.c_str());
      return unsaved(sys_error("cannot write", state_path(), err));
    }
    // Everything written reaches the disk before the version counts. A
    // tree staged from the spare by this one run, with a few commands:
    // what changed, one fsync each (syncfs would wait for every other
    // writer on the file system too); otherwise (a clone, a full tree,
    // parts, a resumed run, many files) all of it, with one syncfs (one
    // journal commit, and write-back in the kernel's order, not file by
    // file: a 12-server replicate went 5 x slower file by file).
    if (opt.progress)
      opt.progress(ApplyProgress{"syncing", rep.commands, h.commands, rep.bytes_written});
    Status synced = targeted                      ? sync_changed(target.get(), changed, sdir, syncer)
                    : ::syncfs(target.get()) != 0 ? sys_error("cannot sync", sdir, errno)
                                                  : Status{};
    // A directory of that name the state does not know is a leftover; out
    // of the way for good before the state names the version. (A version
    // the state knows is never staged again: apply() says "already".)
    struct stat old;
    if (synced.ok() && ::lstat(version_dir(h.id).c_str(), &old) == 0) {
      synced = trash(version_dir(h.id));
      if (synced.ok())
        synced = fsync_dir(versions_dir());
    }
    // The state names the version before the tree takes its name: a run
    // killed between the two (or a failed rename) has the rename finished
    // by the next open (reconcile()).
    if (synced.ok() && ::rename(next_name.c_str(), state_path().c_str()) != 0)
      synced = sys_error("cannot rename a temporary file to", state_path(), errno);
    if (!synced.ok()) {
      ::unlink(next_name.c_str());
      return unsaved(std::move(synced).error());
    }
    if (Status named = fsync_dir(cm_dir()); !named.ok())
      return unsaved(std::move(named).error());
    if (::rename(sdir.c_str(), version_dir(h.id).c_str()) != 0)
      return sys_error("cannot rename the staged version to", version_dir(h.id), errno);
    CM_TRY(fsync_dir(versions_dir()));
    rep.result = "staged";
    rep.version = h.id;
    return empty_trash();
  }
  rep.result = "applied";
  rep.message = "part " + std::to_string(h.part) + " of a larger assignment; waiting for the next";
  record(h);
  CM_TRY(save());
  return empty_trash();
}

#undef CM_TRY_STAGE

Status Site::Impl::run_commands(assign::PackReader& pack, int base_fd, int target_fd, int scratch_fd,
                                const std::string& name, Syncer* syncer, bool direct, Report& rep) {
  ApplyOptions ao;
  ao.scratch_dir = scratch_fd;
  ao.direct = direct;
  ao.track = syncer != nullptr ? &changed : nullptr;
  ao.syncer = syncer;
  Applier applier(base_fd, target_fd, name, ao);
  // Files written two at a time on a targeted run (a few files from the
  // spare: the latency of one publish). A large run stays on this thread:
  // its time is the disk's and the syncfs's, and where servers share cores
  // (the lab's farms: 36 on 2) the threads only add contention (median
  // apply of a 91 MB replicate 9.42 s against 5.89 s, and a commit's
  // quorum missed while the elections were starved). Declared after the
  // applier: its threads are joined first.
  Parallel parallel(applier, syncer != nullptr ? 2 : 0);
  // The applier checks every put's content (make_file()): stored data
  // only puts read need not be hashed as a member as well.
  pack.set_puts_checked(true);
  const uint64_t data_before = rep.data_bytes;
  auto failed = [&](Parallel::Failure f) -> Status {
    rep.failures.push_back(Failure{f.index, f.what, std::move(f.path), f.error.message});
    rep.commands = f.index;
    rep.bytes_written = applier.bytes_written();
    rep.data_bytes = data_before + parallel.data_bytes();
    return std::move(f.error);
  };
  // A damaged pack, unless a command before the damage failed (a patch
  // still running on the bytes of a member found bad only at its end).
  auto damaged = [&](Error e) -> Status {
    if (auto f = parallel.finish())
      return failed(std::move(*f));
    rep.data_bytes = data_before + parallel.data_bytes();
    return e;
  };
  uint64_t index = 0;
  for (;;) {
    auto next = pack.next_command();
    if (!next.ok())
      return damaged(std::move(next).error());
    const std::optional<assign::Command>& c = *next;
    if (!c)
      break;
    index++;
    if (c->op == assign::Op::Unpack)
      continue;
    Reader* data = nullptr;
    if (c->takes_data()) {
      auto member = pack.member(c->from);
      if (!member.ok())
        return damaged(std::move(member).error());
      data = *member;
    }
    touched.push_back(Touched{c->path, c->op == assign::Op::Remove || c->op == assign::Op::Rmdir});
    if (auto f = parallel.apply(index, from_command(*c), data, assign::op_name(c->op)))
      return failed(std::move(*f));
    if (opt.progress)
      opt.progress(ApplyProgress{"applying", index, pack.header().commands, applier.bytes_written()});
  }
  if (auto f = parallel.finish())
    return failed(std::move(*f));
  rep.commands = index;
  rep.bytes_written = applier.bytes_written();
  rep.data_bytes = data_before + parallel.data_bytes();
  // Every member checked against its SHA-256, the trailer too.
  return pack.finish(false);
}

Status Site::Impl::switch_to(uint64_t id, bool rollback, const assign::Header& h, Report& rep) {
  rep.version = id;
  if (state.live == id) {
    rep.result = "already-live";
    return {};
  }
  // Never a `live` that points nowhere.
  struct stat vs;
  if (int err = ::stat(version_dir(id).c_str(), &vs) != 0 ? errno
                : S_ISDIR(vs.st_mode)                     ? 0
                                                          : ENOTDIR;
      err != 0)
    return sys_error("cannot switch to version " + std::to_string(id) + ": no tree at", version_dir(id), err);
  // `live` is our symlink, or nothing yet: a file someone put there is
  // not replaced unasked.
  struct stat ls;
  if (::lstat((root + "/live").c_str(), &ls) == 0 && !S_ISLNK(ls.st_mode))
    return Error("'" + root + "/live' is not the symbolic link cm-apply keeps there; move it away first",
                 kExitFailure);
  std::string tmp = root + "/.live-" + random_name(10);
  std::string target = "versions/" + std::to_string(id);
  if (::symlink(target.c_str(), tmp.c_str()) != 0)
    return sys_error("cannot create symlink", tmp, errno);
  // The intent on disk first: a state that cannot be saved (a full disk)
  // stops the switch before it happens, and a run stopped after the
  // rename leaves the next open what it needs to finish (reconcile()).
  state.switching = Switching{h.id, h.part, h.sequence, assign::type_name(h.type), id, state.live, rollback};
  if (Status s = save(); !s.ok()) {
    ::unlink(tmp.c_str());
    state.switching.reset();
    return s;
  }
  // The switch: one rename(2) of the symlink over `live`.
  if (::rename(tmp.c_str(), (root + "/live").c_str()) != 0) {
    int e = errno;
    ::unlink(tmp.c_str());
    state.switching.reset();
    (void)save();
    return sys_error("cannot switch", root + "/live", e);
  }
  CM_TRY(fsync_dir(root));
  finish_switch(&rep);
  return {};
}

// The bookkeeping of the switch state.switching describes, once `live`
// points to its target: history, live, the assignment recorded.
void Site::Impl::finish_switch(Report* rep) {
  Switching w = *state.switching;
  state.switching.reset();
  uint64_t old = state.live;
  if (w.rollback) {
    // Back in history: forget what came after the version we return to.
    auto it = std::find(state.history.begin(), state.history.end(), w.target);
    if (it != state.history.end())
      state.history.erase(it, state.history.end());
    else if (old != 0)
      // A target that is not behind live (back to a version a rollback
      // left): forward, as a commit goes, and live is kept to return to.
      state.history.push_back(old);
  } else if (old != 0) {
    state.history.push_back(old);
  }
  state.live = w.target;
  record(Applied{w.assignment, w.part, w.type, w.sequence, wall_ns()});
  state.reload_for = w.assignment;
  if (rep != nullptr) {
    rep->result = "switched";
    rep->message = "version " + std::to_string(w.target) + " is live" +
                   (old != 0 ? " (was " + std::to_string(old) + ")" : "");
  }
}

// Runs --reload for the switch just made (or one a stopped run made);
// once it succeeded, the state stops asking for it.
Status Site::Impl::reload_once(Report& rep) {
  reload(rep);
  if (rep.reload_status != "ok")
    return {};
  state.reload_for = 0;
  return save();
}

// Keeps the live version, the last `keep` earlier ones, the newest version
// not yet live, and the base of a staging in progress; moves the rest to
// the trash and deletes it.
Status Site::Impl::cleanup() {
  std::set<uint64_t> keep = {state.live};
  for (size_t i = 0; i < state.history.size() && i < opt.keep; i++)
    keep.insert(state.history[state.history.size() - 1 - i]);
  const VersionInfo* newest = nullptr;
  for (const VersionInfo& v : state.versions)
    if (v.id != state.live && (newest == nullptr || v.sequence > newest->sequence))
      newest = &v;
  if (newest != nullptr && (state.live == 0 || newest->sequence > state.version(state.live)->sequence))
    keep.insert(newest->id);
  if (state.staging)
    keep.insert(state.staging->base_id);
  std::vector<uint64_t> drop;
  for (const VersionInfo& v : state.versions)
    if (!keep.count(v.id))
      drop.push_back(v.id);
  if (!opt.spare && state.spare != 0) {
    CM_TRY(trash(spare_dir(state.spare)));
    state.spare = 0;
    CM_TRY(save());
  }
  if (drop.empty())
    return empty_trash();
  // The newest version dropped becomes the spare, unless the spare is newer.
  uint64_t to_spare = 0;
  if (opt.spare)
    for (uint64_t id : drop)
      if (id > state.spare && id > to_spare)
        to_spare = id;
  for (uint64_t id : drop) {
    bool spared = false;
    if (id == to_spare) {
      CM_TRY(trash(spare_dir(id)));
      if (::rename(version_dir(id).c_str(), spare_dir(id).c_str()) == 0) {
        if (state.spare != 0)
          CM_TRY(trash(spare_dir(state.spare)));
        state.spare = id;
        spared = true;
      }
    }
    if (!spared)
      CM_TRY(trash(version_dir(id)));
    ::unlink(changes_path(id).c_str());
    std::erase_if(state.versions, [&](const VersionInfo& v) { return v.id == id; });
  }
  std::erase_if(state.history, [&](uint64_t id) { return !keep.count(id); });
  CM_TRY(save());
  return empty_trash();
}

// Turns the spare into the staging tree `sdir` for a version built on
// base_id, if the base's change records lead back to it. False: there is
// no usable spare (any there was is gone), clone the base instead.
Result<bool> Site::Impl::reuse_spare(uint64_t base_id, const std::string& sdir) {
  uint64_t spare = state.spare;
  if (spare == 0)
    return false;
  if (!opt.spare) {
    // --no-spare: none is kept.
    state.spare = 0;
    CM_TRY(trash(spare_dir(spare)));
    return false;
  }
  std::vector<Touched> all;
  uint64_t v = base_id;
  for (int i = 0; v != spare && i < kMaxChain; i++) {
    auto in = open_input(changes_path(v));
    if (!in.ok())
      break;
    auto text = read_all(**in, size_t{256} << 20);
    if (!text.ok())
      break;
    auto rec = decode_changes(*text, changes_path(v));
    if (!rec.ok())
      break;
    all.insert(all.end(), std::make_move_iterator(rec->paths.begin()),
               std::make_move_iterator(rec->paths.end()));
    v = rec->base;
    if (v == 0)
      break;
  }
  // Saved with the staging's next step; until then a missing spare
  // directory only means "clone".
  state.spare = 0;
  if (v != spare) {
    CM_TRY(trash(spare_dir(spare)));
    return false;
  }
  if (::rename(spare_dir(spare).c_str(), sdir.c_str()) != 0) {
    if (errno == ENOENT)
      return false;
    return sys_error("cannot move the spare to", sdir, errno);
  }
  normalize(all);
  Fd from(::open(version_dir(base_id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Fd to(::open(sdir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  Status s = !from.valid() || !to.valid()
                 ? sys_error("cannot open", !from.valid() ? version_dir(base_id) : sdir, errno)
                 : catch_up(from.get(), to.get(), all, version_dir(base_id), sdir, changed);
  if (!s.ok()) {
    CM_TRY(trash(sdir));
    return false;
  }
  return true;
}

// Makes the empty directory `dir` a hard-link clone of version `id`, and
// with `sync` syncs the file system after.
Status Site::Impl::clone_version(uint64_t id, const std::string& dir, bool sync) {
  Fd from(::open(version_dir(id).c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!from.valid())
    return sys_error("cannot open", version_dir(id), errno);
  Fd to(::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!to.valid())
    return sys_error("cannot open", dir, errno);
  CM_TRY(clone_tree(from.get(), to.get(), version_dir(id)));
  if (sync && ::syncfs(to.get()) != 0)
    return sys_error("cannot sync", dir, errno);
  return {};
}

// A hard-link clone of live as the spare, so that the next assignment
// built on live stages at the cost of its changes.
Status Site::Impl::prepare_spare() {
  if (state.spare != 0 || state.live == 0 || !opt.spare)
    return {};
  uint64_t id = state.live;
  std::string dir = spare_dir(id);
  CM_TRY(trash(dir));
  CM_TRY(make_dir(dir, 0755));
  // On disk before the state names it: a spare is trusted to be whole.
  Status s = clone_version(id, dir, true);
  if (!s.ok()) {
    (void)trash(dir);
    (void)empty_trash();
    return s;
  }
  state.spare = id;
  return save();
}

void Site::Impl::reload(Report& rep) {
  Spawn sp;
  sp.command = opt.reload;
  // Our stdout is the report (JSON for cm-mcast and cm-job to read): what
  // the reload prints goes to stderr.
  sp.stdout_to_stderr = true;
  sp.env = {"CM_SITE_ROOT=" + root, "CM_LIVE=" + std::to_string(state.live), "CM_SITE=" + state.site};
  auto ran = run_shell(sp);
  if (!ran.ok()) {
    rep.reload_status = "could not run: " + ran.error().message;
    rep.code = kExitFailure;
    return;
  }
  if (exit_code_of(ran->status) == 0) {
    rep.reload_status = "ok";
  } else {
    rep.reload_status = describe_status(ran->status);
    rep.code = kExitFailure;
  }
}

bool Site::wants_spare() const {
  const State& s = impl_->state;
  return impl_->opt.spare && s.spare == 0 && s.live != 0;
}

Status Site::prepare_spare() {
  return impl_->prepare_spare();
}

int Site::lock_fd() const {
  return impl_->lock.get();
}

void Site::wait_unless_wanted(double seconds) const {
  if (!(seconds > 0))
    return;
  // Every cm-apply opens the lock file before it waits for the lock: an
  // IN_OPEN on it means someone is waiting for us. Without inotify (a
  // limit reached), no wait.
  Fd in(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  std::string path = impl_->cm_dir() + "/lock";
  if (!in.valid() || ::inotify_add_watch(in.get(), path.c_str(), IN_OPEN) < 0)
    return;
  auto deadline = std::chrono::steady_clock::now() + std::chrono::duration<double>(seconds);
  for (;;) {
    auto left = std::chrono::ceil<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0)
      return;
    struct pollfd p {
      in.get(), POLLIN, 0
    };
    int r = ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 60'000)));
    if (r > 0 || (r < 0 && errno != EINTR))
      return;
  }
}

nlohmann::json Site::status() const {
  const State& s = impl_->state;
  nlohmann::json j = to_json(s);
  j["root"] = impl_->root;
  j["last_sequence"] = s.last_sequence();
  if (const VersionInfo* v = s.version(s.live))
    j["live_sequence"] = v->sequence;
  return j;
}

std::string Site::status_text() const {
  const State& s = impl_->state;
  std::string t = "site " + (s.site.empty() ? std::string("(none yet)") : quote_path(s.site)) + " in " +
                  impl_->root + "\n";
  t += "live: " + (s.live == 0 ? std::string("nothing") : "version " + std::to_string(s.live)) + "\n";
  for (const VersionInfo& v : s.versions)
    t += "  version " + std::to_string(v.id) + ": sequence " + std::to_string(v.sequence) + ", " + v.type +
         (v.id == s.live ? ", live" : "") + "\n";
  if (s.staging)
    t += "staging: assignment " + std::to_string(s.staging->id) + ", " +
         std::to_string(s.staging->parts_done) + " part(s) done (" + s.staging->phase + ")\n";
  if (s.spare != 0)
    t += "spare: a copy of version " + std::to_string(s.spare) + ", to stage the next assignment from\n";
  t += "latest sequence: " + std::to_string(s.last_sequence()) + "\n";
  return t;
}

}  // namespace cm::apply
