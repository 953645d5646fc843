#include "push/serve.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <mutex>
#include <optional>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "push/daemon.hpp"
#include "push/job.hpp"
#include "push/proto.hpp"
#include "util/clock.hpp"
#include "util/io.hpp"
#include "util/quorum.hpp"
#include "util/text.hpp"

namespace cm::push {

namespace {

Result<std::string> slurp(const std::string& path, size_t limit) {
  CM_ASSIGN(auto in, open_input(path));
  return read_all(*in, limit);
}

struct Entry {
  std::set<std::string> told;  // failures already logged
  Plan plan;
  std::string data;        // the manager's copy, in the state directory
  bool group_job = false;  // leaders from the registry (not a static list)
  int waiters = 0;         // `cm-push send` clients waiting for its result
  // What was last written to disk (save()): the leaders' states, and when.
  std::string saved_states{};
  int64_t saved_ms = 0;
};

class Server {
 public:
  explicit Server(const ServeOptions& o) : opt_(o) {}
  Status run();

 private:
  void log(const std::string& m) {
    if (opt_.log)
      opt_.log(m);
  }
  // log() for a connection's or a detached thread's failure.
  std::function<void(const std::string&)> logger() {
    return [this](const std::string& line) { log(line); };
  }
  void handle(Fd fd);
  Status dispatch(net::TlsStream& s, const Message& m);
  Status on_send(net::TlsStream& s, const Message& m);
  Status on_fetch(net::TlsStream& s, const Message& m);
  Status on_query(net::TlsStream& s, const Message& m);
  Message on_next(const Message& m, const std::string& peer);
  Message on_status(const Message& m, const std::string& peer);
  Message on_delivered(const Message& m, const std::string& peer);
  Message on_cluster(const Message& m, const std::string& peer);
  Message on_hello(const std::string& peer);

  // A group job follows its segments' elections: a failed leader's
  // successor joins it.
  void watch(Entry& e) {
    if (!e.group_job)
      return;
    e.plan.set_successor([this](const LeaderState& l) -> std::optional<Leader> {
      for (const auto& [id, r] : registry_)
        if (r.segment == l.who.segment && id != l.who.id)
          return r;
      return std::nullopt;
    });
  }
  // With mu_ held: sends the notices (each from its own thread) and saves.
  void carry_out(uint64_t id, Entry& e, const std::vector<Notice>& notices);
  void save(Entry& e, bool force = false);
  void save_registry();
  Status load();
  void tick();
  void prune();
  // A leader's report on a job not here: one finished and forgotten since
  // (--keep) ends the leader's part in it; any other is an error.
  Message unknown_job(uint64_t id) const {
    if (id < next_id_)
      return Message{
          Msg::None, {{"note", "job " + std::to_string(id) + " is finished and no longer kept"}}, ""};
    return error_msg("no job " + std::to_string(id));
  }
  std::string job_dir() const { return opt_.state_dir + "/jobs"; }

  ServeOptions opt_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<uint64_t, Entry> jobs_;
  std::map<std::string, Leader> registry_;
  std::map<std::string, nlohmann::json> clusters_;  // the last leader's report of each segment
  uint64_t next_id_ = 1;
  // The order of NOTIFYs (notice_is_stale()): under mu_.
  const uint64_t boot_ = static_cast<uint64_t>(wall_ns());
  uint64_t notice_seq_ = 0;
  std::atomic<bool> stop_{false};
};

void Server::carry_out(uint64_t id, Entry& e, const std::vector<Notice>& notices) {
  for (const LeaderState& l : e.plan.leaders())
    if (l.state == "failed" && e.told.insert(l.who.id).second)
      log("job " + std::to_string(id) + ": " + l.who.id + " failed: " + l.failure);
  std::optional<Result<std::string>> small;
  for (const Notice& n : notices) {
    const LeaderState* l = e.plan.find(n.leader);
    const LeaderState* src = e.plan.find(n.source);
    if (l == nullptr)
      continue;
    Message m;
    m.type = Msg::Notify;
    e.plan.meta().put(m);
    m.body["leader"] = n.leader;
    m.body["source"] = n.source;
    m.body["source_address"] = src != nullptr ? src->who.agent.str() : opt_.advertise.str();
    m.body["cut_through"] = e.plan.cut_through();
    m.body["boot"] = boot_;
    m.body["seq"] = ++notice_seq_;
    if (n.source == kManager && e.plan.meta().size <= kInlineBytes) {
      // Small: the file itself comes along (read once for all the notices
      // here; if that fails, the leader fetches it as usual).
      if (!small) {
        auto in = open_input(e.data);
        small = in.ok() ? read_all(**in, kInlineBytes) : Result<std::string>(in.error());
      }
      if (small->ok() && (*small)->size() == e.plan.meta().size)
        e.plan.meta().put_inline(m, **small);
    }
    net::Endpoint to = l->who.agent;
    log("job " + std::to_string(id) + ": " + n.leader + " fetches from " + n.source);
    std::string leader = n.leader;
    // Connecting may take a while: not with the lock held.
    detached(
        [this, m, to, id, leader] {
          auto s = net::TlsStream::connect(opt_.tls, to, 5000);
          Status st = s.ok() ? send(**s, m) : Status(s.error());
          Result<Message> r = st.ok() ? receive(**s, to.str()) : Result<Message>(st.error());
          if (r.ok() && r->type == Msg::Ok)
            return;
          std::string why =
              r.ok() ? r->body.value("error", std::string(msg_name(r->type))) : r.error().message;
          std::lock_guard<std::mutex> g(mu_);
          auto it = jobs_.find(id);
          if (it == jobs_.end())
            return;
          std::vector<Notice> more;
          it->second.plan.unreachable(leader, why, steady_ms(), wall_ms(), more);
          carry_out(id, it->second, more);
          changed_.notify_all();
        },
        logger());
  }
  save(e);
}

Message Server::on_next(const Message& m, const std::string& peer) {
  auto id = m.num("job");
  if (!id.ok())
    return error_msg(id.error().message);
  std::lock_guard<std::mutex> g(mu_);
  auto it = jobs_.find(*id);
  if (it == jobs_.end())
    return Message{Msg::None, nlohmann::json::object(), ""};
  std::vector<Notice> out;
  Answer a = it->second.plan.next(peer, steady_ms(), wall_ms(), out);
  carry_out(*id, it->second, out);
  switch (a.kind) {
    case Answer::Target: return Message{Msg::Target, {{"leader", a.leader}}, ""};
    case Answer::Wait: return Message{Msg::Wait, {{"ms", a.wait_ms}}, ""};
    case Answer::None: break;
  }
  return Message{Msg::None, nlohmann::json::object(), ""};
}

Message Server::on_status(const Message& m, const std::string& peer) {
  auto id = m.num("job");
  auto state = m.str("state");
  if (!id.ok() || !state.ok())
    return error_msg("STATUS without a job or a state");
  std::lock_guard<std::mutex> g(mu_);
  auto it = jobs_.find(*id);
  if (it == jobs_.end())
    return unknown_job(*id);
  Entry& e = it->second;
  std::vector<Notice> out;
  std::string err =
      e.plan.status(peer, *state, m.body.value("bytes", uint64_t{0}), m.body.value("source", std::string()),
                    m.body.value("error", std::string()), steady_ms(), wall_ms(), out);
  if (!err.empty())
    return error_msg(err);
  // (status() found it; carry_out() below changes no leader.)
  const LeaderState* l = e.plan.find(peer);
  bool given_up = l != nullptr && l->state == "failed";
  if (*state == "complete" && given_up)
    log("job " + std::to_string(*id) + ": " + peer + " has a verified copy, not counted (" + l->failure +
        ")");
  else if (*state == "complete")
    log("job " + std::to_string(*id) + ": " + peer + " has a verified copy");
  else if (*state == "failed")
    log("job " + std::to_string(*id) + ": " + peer +
        " gave its copy up: " + m.body.value("error", std::string("?")));
  else if (*state == "source-failed")
    log("job " + std::to_string(*id) + ": " + peer +
        " lost its source: " + m.body.value("error", std::string("?")));
  carry_out(*id, e, out);
  changed_.notify_all();
  if (given_up)
    return Message{Msg::None, {{"note", "given up: " + l->failure}}, ""};
  return Message{Msg::Ok, nlohmann::json::object(), ""};
}

Message Server::on_delivered(const Message& m, const std::string& peer) {
  auto id = m.num("job");
  if (!id.ok())
    return error_msg(id.error().message);
  std::lock_guard<std::mutex> g(mu_);
  auto it = jobs_.find(*id);
  if (it == jobs_.end())
    return unknown_job(*id);
  int exit = m.body.contains("exit") && m.body["exit"].is_number_integer() ? m.body["exit"].get<int>() : -1;
  std::string out = m.body.value("output", std::string());
  auto group = nlohmann::json::parse(out, nullptr, false);
  std::string err = it->second.plan.delivered(peer, exit, group.is_discarded() ? nlohmann::json(out) : group,
                                              steady_ms(), wall_ms());
  if (!err.empty())
    return error_msg(err);
  log("job " + std::to_string(*id) + ": " + peer + " delivered (exit " + std::to_string(exit) + ")");
  save(it->second);
  changed_.notify_all();
  return Message{Msg::Ok, nlohmann::json::object(), ""};
}

// An agent that (re)started knows nothing of the jobs it was in: each one
// still running notifies it again, and it resumes from what its disk holds.
Message Server::on_hello(const std::string& peer) {
  std::lock_guard<std::mutex> g(mu_);
  nlohmann::json again = nlohmann::json::array();
  for (auto& [id, e] : jobs_) {
    const LeaderState* l = e.plan.find(peer);
    bool was_failed = l != nullptr && l->state == "failed";
    std::vector<Notice> out;
    if (!e.plan.rejoin(peer, steady_ms(), wall_ms(), out))
      continue;
    e.told.erase(peer);  // a second failure is logged too
    log("job " + std::to_string(id) + ": " + peer + " (re)started" + (was_failed ? ", joins again" : "") +
        ": notified again");
    carry_out(id, e, out);
    again.push_back(id);
  }
  changed_.notify_all();
  return Message{Msg::Ok, {{"jobs", again}}, ""};
}

// A cm-elect cluster report: the registry keeps the leader of each segment.
Message Server::on_cluster(const Message& m, const std::string& peer) {
  auto report = m.body.find("report");
  if (report == m.body.end() || !report->is_object())
    return error_msg("CLUSTER without a report");
  const auto& r = *report;
  if (r.value("state", std::string()) != "leader" || !r.contains("leader") || !r["leader"].is_object())
    return Message{Msg::Ok, {{"note", "not from a leader: ignored"}}, ""};
  const auto& lj = r["leader"];
  Leader l;
  l.id = lj.value("id", std::string());
  auto addr = net::parse_address(lj.value("address", std::string()));
  if (l.id.empty() || !addr.ok())
    return error_msg("the report names no leader address");
  // A leader registers itself (its certificate's name is its cm-elect id,
  // as the agent's is): another leader's certificate could otherwise evict
  // a segment's leader and send its jobs anywhere. The manager's own may
  // relay any.
  if (peer != l.id && peer != opt_.tls->name())
    return error_msg("a report for leader '" + l.id + "' must come with its certificate, not '" + peer + "'",
                     "denied");
  l.agent = net::Endpoint{*addr, opt_.agent_port};
  l.location = r.value("location", std::string());
  l.segment = r.value("segment", std::string());
  l.priority = lj.value("priority", uint32_t{0});
  std::lock_guard<std::mutex> g(mu_);
  // One leader per segment: a new leader replaces the old one.
  for (auto it = registry_.begin(); it != registry_.end();)
    it = (!l.segment.empty() && it->second.segment == l.segment && it->first != l.id) ? registry_.erase(it)
                                                                                      : std::next(it);
  bool fresh = registry_.count(l.id) == 0;
  registry_[l.id] = l;
  clusters_[l.segment] = r;
  save_registry();
  if (fresh)
    log("leader " + l.id + " of segment '" + l.segment + "' at " + l.agent.str());
  return Message{Msg::Ok, nlohmann::json::object(), ""};
}

// The manager keeps its own copy of what it distributes: a hard link when it
// can (cm's tools replace files by rename, so the link keeps the old bytes),
// a copy otherwise.
Status snapshot(const std::string& from, const std::string& to) {
  if (::link(from.c_str(), to.c_str()) == 0)
    return {};
  if (errno != EXDEV && errno != EPERM && errno != EMLINK)
    return sys_error("cannot link", from, errno);
  CM_ASSIGN(auto in, open_input(from));
  CM_ASSIGN(auto out, Output::open(to));
  std::string buf(1 << 20, '\0');
  for (;;) {
    CM_ASSIGN(size_t n, in->read(buf.data(), buf.size()));
    if (n == 0)
      break;
    CM_TRY(out->writer().write(buf.data(), n));
  }
  return out->commit();
}

Status Server::on_send(net::TlsStream& s, const Message& m) {
  // A job makes every leader fetch and deliver what it names: only the
  // manager (a peer showing serve's own certificate name) may start one,
  // not a leader whose certificate the same CA signed.
  if (s.peer() != opt_.tls->name())
    return send(
        s, error_msg("only '" + opt_.tls->name() + "' may send a job, not '" + s.peer() + "'", "denied"));
  CM_ASSIGN(std::string path, m.str("path"));
  uint64_t chunk = m.body.value("chunk_size", uint64_t{kDefaultChunk});
  if (chunk < kMinChunk || chunk > kMaxChunk)
    return send(s, error_msg("the chunk size must be between 4 KiB and 4 MiB"));
  std::vector<Leader> leaders;
  if (m.body.contains("leaders") && m.body["leaders"].is_array()) {
    // An administrator's static order.
    std::set<std::string> seen;
    for (const auto& x : m.body["leaders"]) {
      if (!x.is_object())
        return send(s, error_msg("a leader in the list is not an object"));
      Leader l;
      l.id = x.value("id", std::string());
      auto e = net::parse_endpoint(x.value("address", std::string()));
      if (l.id.empty() || !e.ok())
        return send(s, error_msg("a leader needs an id and an address:port"));
      if (!seen.insert(l.id).second)
        return send(s, error_msg("leader '" + l.id + "' is listed twice"));
      l.agent = *e;
      l.location = x.value("location", std::string());
      leaders.push_back(l);
    }
  } else {
    std::string group = m.body.value("group", std::string("all"));
    std::set<std::string> segments;
    std::stringstream ss(group);
    for (std::string seg; std::getline(ss, seg, ',');)
      segments.insert(seg);
    std::lock_guard<std::mutex> g(mu_);
    for (const auto& [id, l] : registry_)
      if (segments.count("all") || segments.count(l.segment))
        leaders.push_back(l);
    // Locations together (the tree stays local where it can), the most
    // capable leader of each first: it serves the others.
    std::stable_sort(leaders.begin(), leaders.end(), [](const Leader& a, const Leader& b) {
      return a.location != b.location ? a.location < b.location : a.priority > b.priority;
    });
  }
  if (leaders.empty())
    return send(s, error_msg("no leaders to send to (no cluster report has arrived for that group)"));
  // No quorum in the request: all of them.
  auto q = m.body.contains("quorum") ? parse_quorum(m.body.value("quorum", std::string()))
                                     : Result<Quorum>(Quorum{});
  Status qs = q.ok() ? q->check_count(leaders.size(), "leader(s)") : Status(q.error());
  // The sender's option is wrong (the leaders are known only here, with
  // --group or none): a usage error there, as with --leaders.
  if (!qs.ok())
    return send(s, error_msg(qs.error().message, "usage"));
  uint64_t id;
  {
    std::lock_guard<std::mutex> g(mu_);
    id = next_id_++;
  }
  std::string data = job_dir() + "/" + std::to_string(id) + ".data";
  ::unlink(data.c_str());
  Status snap = snapshot(path, data);
  if (!snap.ok())
    return send(s, error_msg(snap.error().message));
  auto meta = describe_file(data, id, static_cast<uint32_t>(chunk));
  if (!meta.ok()) {
    ::unlink(data.c_str());
    return send(s, error_msg(meta.error().message));
  }
  if (meta->chunk_count() > kMaxChunks) {
    ::unlink(data.c_str());
    uint64_t need = (meta->size + kMaxChunks - 1) / kMaxChunks;
    return send(s,
                error_msg("'" + path + "' (" + std::to_string(meta->size) + " bytes) is too large for " +
                          std::to_string(chunk) + "-byte chunks: its chunk table would not fit a message; " +
                          "give a chunk size of at least " + std::to_string(need) + " bytes"));
  }
  meta->name = path.substr(path.rfind('/') == std::string::npos ? 0 : path.rfind('/') + 1);
  if (meta->name.empty() || meta->name[0] == '.')
    meta->name = "job-" + std::to_string(id);
  meta->deliver = m.body.value("deliver", true);
  // The chunk table is written once, beside the job's report.
  std::string table;
  for (const Digest& d : meta->chunks)
    table.append(reinterpret_cast<const char*>(d.data()), d.size());
  Status st = write_file_atomic(job_dir() + "/" + std::to_string(id) + ".chunks", table);
  if (!st.ok())
    return send(s, error_msg(st.error().message));
  size_t n = leaders.size();
  size_t quorum = q->of(n);
  {
    std::lock_guard<std::mutex> g(mu_);
    Entry e{{},
            Plan(*meta, leaders, quorum, m.body.value("cut_through", true), opt_.plan),
            data,
            !m.body.contains("leaders")};
    auto [it, ok] = jobs_.emplace(id, std::move(e));
    watch(it->second);
    log("job " + std::to_string(id) + ": " + path + " (" + std::to_string(meta->size) + " bytes) to " +
        std::to_string(n) + " leaders");
    auto notices = it->second.plan.start(steady_ms(), wall_ms());
    carry_out(id, it->second, notices);
  }
  CM_TRY(send(s, Message{Msg::Job, {{"job", id}}, ""}));
  // Progress until done; the job goes on if the client leaves. While this
  // client waits, the job is not pruned.
  {
    std::lock_guard<std::mutex> g(mu_);
    jobs_.at(id).waiters++;
  }
  struct Leave {
    Server* self;
    uint64_t id;
    ~Leave() {
      std::lock_guard<std::mutex> g(self->mu_);
      if (auto it = self->jobs_.find(id); it != self->jobs_.end())
        it->second.waiters--;
    }
  } leave{this, id};
  s.set_timeout(60000);
  for (;;) {
    nlohmann::json snapshot_json;
    bool done;
    {
      // The end is checked under the lock before sleeping: a leader's
      // last report that lands while the progress below is being sent
      // must not wait out the half second (it did: up to 500 ms more on
      // every job).
      std::unique_lock<std::mutex> g(mu_);
      auto job = [&]() -> const Entry* {
        auto it = jobs_.find(id);
        return it == jobs_.end() ? nullptr : &it->second;
      };
      changed_.wait_for(g, std::chrono::milliseconds(500),
                        [&] { return job() == nullptr || job()->plan.done() || stop_; });
      if (job() == nullptr)  // done, and pruned already (--keep)
        return send(s, error_msg("job " + std::to_string(id) + " is done and no longer kept"));
      const Plan& p = job()->plan;
      snapshot_json = p.json();
      done = p.done();
    }
    if (done)
      return send(s, Message{Msg::Result, snapshot_json, ""});
    CM_TRY(send(s, Message{Msg::Progress, snapshot_json, ""}));
    if (stop_)
      return {};
  }
}

Status Server::on_query(net::TlsStream& s, const Message& m) {
  std::lock_guard<std::mutex> g(mu_);
  if (!m.body.contains("job")) {
    nlohmann::json all = nlohmann::json::array();
    for (const auto& [id, e] : jobs_) {
      nlohmann::json j = e.plan.json();
      j.erase("leaders");
      all.push_back(j);
    }
    nlohmann::json reg = nlohmann::json::array();
    for (const auto& [id, l] : registry_)
      reg.push_back(
          {{"id", id}, {"address", l.agent.str()}, {"segment", l.segment}, {"location", l.location}});
    nlohmann::json clusters = nlohmann::json::array();
    for (const auto& [seg, c] : clusters_)
      clusters.push_back(c);
    return send(s, Message{Msg::Result, {{"jobs", all}, {"leaders", reg}, {"clusters", clusters}}, ""});
  }
  CM_ASSIGN(uint64_t id, m.num("job"));
  auto it = jobs_.find(id);
  if (it == jobs_.end())
    return send(s, error_msg("no job " + std::to_string(id)));
  return send(s, Message{it->second.plan.done() ? Msg::Result : Msg::Progress, it->second.plan.json(), ""});
}

// The manager's copy, chunk after chunk from an offset.
Status Server::on_fetch(net::TlsStream& s, const Message& m) {
  CM_ASSIGN(uint64_t id, m.num("job"));
  CM_ASSIGN(uint64_t offset, m.num("offset"));
  std::string data;
  JobMeta meta;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = jobs_.find(id);
    if (it == jobs_.end())
      return send(s, error_msg("no job " + std::to_string(id)));
    data = it->second.data;
    meta = it->second.plan.meta();
  }
  if (offset % meta.chunk_size != 0 || offset > meta.size)
    return send(s, error_msg("bad offset " + std::to_string(offset)));
  CM_ASSIGN(auto in, open_input(data));
  std::string buf(meta.chunk_size, '\0');
  for (uint64_t i = offset / meta.chunk_size; i < meta.chunk_count(); i++) {
    size_t n = static_cast<size_t>(meta.chunk_length(i));
    size_t have = 0;
    while (have < n) {
      ssize_t got =
          ::pread(in->fd(), buf.data() + have, n - have, static_cast<off_t>(i * meta.chunk_size + have));
      if (got <= 0)
        return send(s, error_msg("the manager's copy of job " + std::to_string(id) + " is short"));
      have += static_cast<size_t>(got);
    }
    CM_TRY(send(s, Msg::Chunk, {{"offset", i * meta.chunk_size}}, std::string_view(buf.data(), n)));
  }
  return send(s, Message{Msg::Ok, {{"end", true}}, ""});
}

Status Server::dispatch(net::TlsStream& s, const Message& m) {
  const std::string& peer = s.peer();
  switch (m.type) {
    case Msg::Send: return on_send(s, m);
    case Msg::Fetch: return on_fetch(s, m);
    case Msg::Query: return on_query(s, m);
    case Msg::Next: return send(s, on_next(m, peer));
    case Msg::Status: return send(s, on_status(m, peer));
    case Msg::Delivered: return send(s, on_delivered(m, peer));
    case Msg::Cluster: return send(s, on_cluster(m, peer));
    case Msg::Hello: return send(s, on_hello(peer));
    default: return send(s, error_msg(std::string("cm-push serve does not take ") + msg_name(m.type)));
  }
}

void Server::handle(Fd fd) {
  auto s = net::TlsStream::accept(opt_.tls, std::move(fd), 10000);
  if (!s.ok()) {
    log("refused: " + s.error().message);
    return;
  }
  (*s)->set_timeout(30000);
  auto m = receive(**s, (*s)->peer() + " (" + (*s)->name() + ")");
  if (!m.ok()) {
    log(m.error().message);
    if (m.error().code == kExitBadInput)
      (void)send(**s, error_msg(m.error().message));
    return;
  }
  Status st = dispatch_guarded(
      **s, *m, [&] { return dispatch(**s, *m); }, logger());
  if (!st.ok())
    log(st.error().message);
  (*s)->shutdown();
}

void Server::save(Entry& e, bool force) {
  // Every heartbeat passes here: the report is rewritten (and fsynced,
  // under the lock) when a leader's state changed, and otherwise at most
  // once a second: bytes received are all a heartbeat adds, and a restart
  // learns them again from the leaders.
  std::string states = e.plan.done() ? "done;" : "";
  for (const LeaderState& l : e.plan.leaders())
    states += l.who.id + "=" + l.state + ";";
  int64_t now = steady_ms();
  if (!force && states == e.saved_states && now - e.saved_ms < 1000)
    return;
  e.saved_states = std::move(states);
  e.saved_ms = now;
  nlohmann::json j = e.plan.json();
  j["data"] = e.data;
  j["group_job"] = e.group_job;
  Status s =
      write_file_atomic(job_dir() + "/" + std::to_string(e.plan.meta().id) + ".json", json_text(j, 1) + "\n");
  if (!s.ok())
    log(s.error().message);
}

void Server::save_registry() {
  nlohmann::json r = nlohmann::json::array();
  for (const auto& [id, l] : registry_)
    r.push_back({{"id", id},
                 {"address", l.agent.str()},
                 {"location", l.location},
                 {"segment", l.segment},
                 {"priority", l.priority}});
  Status s = write_file_atomic(opt_.state_dir + "/leaders.json", json_text(r, 1) + "\n");
  if (!s.ok())
    log(s.error().message);
  nlohmann::json c = nlohmann::json::object();
  for (const auto& [seg, report] : clusters_)
    c[seg] = report;
  s = write_file_atomic(opt_.state_dir + "/clusters.json", json_text(c) + "\n");
  if (!s.ok())
    log(s.error().message);
}

Status Server::load() {
  auto reg_text = slurp(opt_.state_dir + "/leaders.json", 64u << 20);
  if (reg_text.ok()) {
    auto reg = nlohmann::json::parse(*reg_text, nullptr, false);
    if (!reg.is_array())
      return Error("'" + opt_.state_dir + "/leaders.json' is damaged", kExitBadInput);
    for (const auto& x : reg) {
      Leader l;
      l.id = x.is_object() ? x.value("id", std::string()) : std::string();
      auto e = net::parse_endpoint(x.is_object() ? x.value("address", std::string()) : std::string());
      if (l.id.empty() || !e.ok())
        continue;
      l.agent = *e;
      l.location = x.value("location", std::string());
      l.segment = x.value("segment", std::string());
      l.priority = x.value("priority", uint32_t{0});
      registry_[l.id] = l;
    }
  }
  auto clusters_text = slurp(opt_.state_dir + "/clusters.json", 256u << 20);
  if (clusters_text.ok()) {
    auto c = nlohmann::json::parse(*clusters_text, nullptr, false);
    if (c.is_object())
      for (auto it = c.begin(); it != c.end(); ++it)
        clusters_[it.key()] = it.value();
  }
  DIR* dir = ::opendir(job_dir().c_str());
  if (dir == nullptr)
    return sys_error("cannot read", job_dir(), errno);
  std::vector<std::string> names, others;
  while (struct dirent* ent = ::readdir(dir)) {
    std::string f = ent->d_name;
    if (f.size() > 5 && f.compare(f.size() - 5, 5, ".json") == 0)
      names.push_back(f.substr(0, f.size() - 5));
    else if (f[0] != '.')
      others.push_back(f);
  }
  ::closedir(dir);
  // A job's copy or chunk table without its state: left by a crash while
  // the job was being created or pruned.
  for (const std::string& f : others) {
    size_t dot = f.rfind('.');
    std::string stem = f.substr(0, dot), ext = dot == std::string::npos ? "" : f.substr(dot);
    if ((ext == ".data" || ext == ".chunks") && std::find(names.begin(), names.end(), stem) == names.end() &&
        ::unlink((job_dir() + "/" + f).c_str()) == 0)
      log("removed '" + job_dir() + "/" + f + "', left without its job's state");
  }
  for (const std::string& name : names) {
    std::string base = job_dir() + "/" + name;
    auto text = slurp(base + ".json", 64u << 20);
    auto table = slurp(base + ".chunks", 1u << 30);
    auto j = nlohmann::json::parse(text.ok() ? *text : std::string(), nullptr, false);
    try {
      if (!table.ok() || !j.is_object())
        throw std::runtime_error("unreadable");
      JobMeta meta;
      meta.id = j.at("job").get<uint64_t>();
      meta.name = j.at("name").get<std::string>();
      meta.size = j.at("bytes").get<uint64_t>();
      meta.chunk_size = j.at("chunk_size").get<uint32_t>();
      if (!from_hex(j.at("sha256").get<std::string>(), meta.sha256) || meta.chunk_size == 0 ||
          table->size() != meta.chunk_count() * 32)
        throw std::runtime_error("its chunk table does not match");
      for (size_t i = 0; i < table->size(); i += 32) {
        Digest d;
        std::copy_n(reinterpret_cast<const uint8_t*>(table->data() + i), 32, d.begin());
        meta.chunks.push_back(d);
      }
      Entry e{{},
              Plan::from_json(j, meta, opt_.plan),
              j.at("data").get<std::string>(),
              j.value("group_job", false)};
      next_id_ = std::max(next_id_, meta.id + 1);
      auto [it, ok] = jobs_.emplace(meta.id, std::move(e));
      watch(it->second);
      if (!it->second.plan.done()) {
        log("job " + std::to_string(meta.id) + " carries on after a restart");
        carry_out(meta.id, it->second, it->second.plan.resume(steady_ms()));
      }
    } catch (const std::exception& ex) {
      log("ignoring the damaged job state '" + base + ".json': " + ex.what());
    }
  }
  return {};
}

void Server::tick() {
  std::lock_guard<std::mutex> g(mu_);
  for (auto& [id, e] : jobs_) {
    if (e.plan.done())
      continue;
    std::vector<Notice> out;
    e.plan.tick(steady_ms(), wall_ms(), out);
    // A failed leader's segment may have elected another by now.
    for (const LeaderState& l : std::vector<LeaderState>(e.plan.leaders()))
      if (l.state == "failed" && !l.who.segment.empty() && e.group_job)
        for (const auto& [rid, r] : registry_)
          if (r.segment == l.who.segment && rid != l.who.id &&
              e.plan.replace_leader(r, steady_ms(), wall_ms(), out))
            log("job " + std::to_string(id) + ": " + rid + " replaces " + l.who.id + ", the new leader of '" +
                r.segment + "'");
    if (!out.empty() || e.plan.done())
      carry_out(id, e, out);
    if (e.plan.done())
      log("job " + std::to_string(id) + " done: " + std::to_string(e.plan.leaders_ok()) + " of " +
          std::to_string(e.plan.leaders().size()) + " leaders");
  }
  prune();
  changed_.notify_all();
}

// With mu_ held: forgets the finished jobs beyond the newest --keep, their
// state and the manager's copy with them. A daemon fed by cron otherwise
// keeps every assignment it ever sent, on disk and in memory.
void Server::prune() {
  if (opt_.keep == 0)
    return;
  int64_t now = wall_ms();
  // Finished jobs, the latest to finish first (a long job started early
  // may finish after many short ones).
  std::vector<std::pair<int64_t, uint64_t>> done;
  for (const auto& [id, e] : jobs_)
    if (e.plan.done())
      done.emplace_back(e.plan.finished_ms(), id);
  if (done.size() <= opt_.keep)
    return;
  std::sort(done.begin(), done.end(), std::greater<>());
  for (size_t i = opt_.keep; i < done.size(); i++) {
    uint64_t id = done[i].second;
    Entry& e = jobs_.at(id);
    // A minute's grace for late reports and `cm-push status`; never while
    // a client waits for the result.
    if (e.waiters > 0 || now - e.plan.finished_ms() < opt_.prune_grace_ms)
      continue;
    std::string base = job_dir() + "/" + std::to_string(id);
    // The state last: a job without it is not loaded again, and what a
    // crash leaves without it load() sweeps. (Only a copy in the jobs
    // directory is ours to remove.)
    const std::string& data = e.data;
    bool ours = data.rfind(job_dir() + "/", 0) == 0 && data.find("/..") == std::string::npos;
    for (const std::string& path : {ours ? data : std::string(), base + ".chunks", base + ".json"})
      if (!path.empty() && ::unlink(path.c_str()) != 0 && errno != ENOENT)
        log("cannot remove '" + path + "': " + std::strerror(errno));
    jobs_.erase(id);
  }
}

Status Server::run() {
  block_stop_signals();
  if (opt_.state_dir.empty())
    return Error("cm-push serve needs a state directory", kExitUsage);
  for (const std::string& d : {opt_.state_dir, job_dir()})
    if (::mkdir(d.c_str(), 0750) != 0 && errno != EEXIST)
      return sys_error("cannot create", d, errno);
  CM_ASSIGN(net::Listener l, net::Listener::open(opt_.listen));
  if (opt_.listen.port == 0)
    opt_.listen = l.local();
  if (opt_.advertise.addr.s_addr == 0)
    opt_.advertise.addr = opt_.listen.addr;
  if (opt_.advertise.port == 0)
    opt_.advertise.port = opt_.listen.port;
  if (opt_.advertise.addr.s_addr == 0)
    return Error("listening on every address: say which one leaders reach with --advertise", kExitUsage);
  // After the address is known: resumed jobs notify leaders at once, and
  // name this manager as a source (it was 0.0.0.0:0 before, and a leader
  // told to fetch from there failed the job).
  CM_TRY(load());
  log("serving on " + opt_.listen.str() + " as " + opt_.tls->name());
  std::thread ticker([this] {
    while (!stop_) {
      std::this_thread::sleep_for(std::chrono::milliseconds(250));
      tick();
    }
  });
  accept_until_stopped(
      l, stop_, [this](Fd fd) { handle(std::move(fd)); }, logger());
  ticker.join();
  std::lock_guard<std::mutex> g(mu_);
  for (auto& [id, e] : jobs_)
    save(e, true);
  log("stopped");
  return {};
}

}  // namespace

Status run_serve(const ServeOptions& opt) {
  // Detached connection threads may outlive run(): the server lives on
  // until the process exits.
  static Server* server = nullptr;
  server = new Server(opt);
  return server->run();
}

}  // namespace cm::push
