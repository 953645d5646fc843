#include "push/agent.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstring>
#include <map>
#include <memory>
#include <mutex>
#include <set>
#include <thread>
#include <utility>
#include <vector>

#include "fs/tree.hpp"
#include "push/daemon.hpp"
#include "push/job.hpp"
#include "push/proto.hpp"
#include "push/recent.hpp"
#include "util/hash.hpp"
#include "util/proc.hpp"
#include "util/text.hpp"

namespace cm::push {

namespace {

using namespace std::chrono_literals;

constexpr uint64_t kWritebackBytes = 8u << 20;

// One job on this leader.
struct Copy {
  JobMeta meta;
  std::string dir, part, final_path;
  Fd fd;
  bool ready = false;     // the file is open and its verified prefix known
  uint64_t verified = 0;  // chunks checked and written, in order
  bool cut_through = true;
  bool complete = false, delivered = false, given_up = false, next_started = false;
  std::string local_error;  // why this leader gave up on its own (its disk), for the manager
  std::string source;
  net::Endpoint source_addr;
  uint64_t generation = 0;                   // bumped by every NOTIFY: a new source
  uint64_t notice_boot = 0, notice_seq = 0;  // of the newest NOTIFY taken
  net::TlsStream* stream = nullptr;
  unsigned serving = 0;
  int deliver_exit = -1;
  std::string deliver_output;
  std::string inline_data;  // the file, when it came with the NOTIFY (checked)
  bool early_done = false;  // the deliver command started with the fetch has ended
  bool finished = false;    // nothing left to do but serve
  bool working = false;     // a worker thread runs for it
  bool early_started = false;
  RecentChunks recent;  // the chunks fetched last, to serve from memory
};

// Marks c given up (under the agent's lock): nothing more is fetched or
// served, and the chunks kept for serving go now, not when it is pruned.
void mark_given_up(Copy& c) {
  c.given_up = true;
  c.recent.clear();
}

class Agent {
 public:
  explicit Agent(const AgentOptions& o) : opt_(o) {}
  Status run();

 private:
  void log(const std::string& m) {
    if (opt_.log)
      opt_.log(m);
  }
  // log() for a detached thread's failure.
  std::function<void(const std::string&)> logger() {
    return [this](const std::string& line) { log(line); };
  }
  void stop_deliveries();
  void give_up_here(const std::shared_ptr<Copy>& c, const std::string& why);
  void handle(Fd fd);
  Message on_notify(const Message& m, const std::string& peer);
  Status on_fetch(net::TlsStream& s, const Message& m);

  void worker(std::shared_ptr<Copy> c);
  Status prepare(Copy& c);
  Status fetch_from(const std::shared_ptr<Copy>& c, uint64_t gen, const net::Endpoint& src);
  void ask_next(std::shared_ptr<Copy> c);
  void deliver(const std::shared_ptr<Copy>& c);
  void deliver_early(const std::shared_ptr<Copy>& c);
  Status write_chunk(Copy& c, uint64_t i, std::string_view chunk);
  Status write_inline(Copy& c);
  std::pair<int, std::string> run_deliver(const Copy& c, std::vector<std::string> env);
  void report_delivered(const std::shared_ptr<Copy>& c);
  void heartbeat();
  void hello();
  void sweep(const std::set<uint64_t>& again);
  void sweep_unclaimed(const std::set<uint64_t>& named);
  void prune();
  void remove_here(const std::vector<std::string>& names);

  Result<Message> rpc(const Message& m);
  // Retries until the manager answers (or the deadline); false if it
  // said the job was given up on here, or the agent is stopping.
  bool report(const std::shared_ptr<Copy>& c, const Message& m, int seconds);
  Message status_msg(const Copy& c, const std::string& state);

  AgentOptions opt_;
  std::mutex mu_;
  std::condition_variable changed_;
  std::map<uint64_t, std::shared_ptr<Copy>> copies_;
  std::atomic<bool> stop_{false};
  std::set<pid_t> delivering_;  // deliver commands running (each its own process group)
  // Job directories an earlier run left (found at start, sorted out by
  // sweep()), and the whole copies among them no notification claimed:
  // pruned with the finished jobs, as the oldest.
  std::set<uint64_t> found_, old_whole_;
  std::vector<std::string> trash_;  // what a sweep cut short left, removed by the next
};

Result<Message> Agent::rpc(const Message& m) {
  CM_ASSIGN(auto s, net::TlsStream::connect(opt_.tls, opt_.manager, 5000));
  s->set_timeout(15000);
  CM_TRY(send(*s, m));
  CM_ASSIGN(Message r, receive(*s, "the manager " + opt_.manager.str()));
  s->shutdown();
  return r;
}

Message Agent::status_msg(const Copy& c, const std::string& state) {
  Message m;
  m.type = Msg::Status;
  m.body = {
      {"job", c.meta.id}, {"state", state}, {"bytes", std::min(c.verified * c.meta.chunk_size, c.meta.size)}};
  return m;
}

bool Agent::report(const std::shared_ptr<Copy>& c, const Message& m, int seconds) {
  auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
  for (int attempt = 0; !stop_; attempt++) {
    auto r = rpc(m);
    if (r.ok()) {
      if (r->type == Msg::None) {
        std::lock_guard<std::mutex> g(mu_);
        mark_given_up(*c);
        if (c->stream != nullptr)
          c->stream->abort();
        changed_.notify_all();
        log("job " + std::to_string(c->meta.id) + ": the manager gave up on this leader (" +
            r->body.value("note", std::string("?")) + ")");
        return false;
      }
      if (r->type == Msg::Error)
        log("job " + std::to_string(c->meta.id) + ": the manager refused " + msg_name(m.type) + ": " +
            r->body.value("error", std::string("?")));
      return true;
    }
    if (std::chrono::steady_clock::now() > deadline) {
      log("job " + std::to_string(c->meta.id) + ": cannot reach the manager: " + r.error().message);
      return true;
    }
    if (attempt == 0)
      log("job " + std::to_string(c->meta.id) + ": " + r.error().message + " (retrying)");
    std::this_thread::sleep_for(500ms);
  }
  return false;  // stopping: the caller goes no further (no deliver command now)
}

Message Agent::on_notify(const Message& m, const std::string& peer) {
  if (peer != opt_.manager_name)
    return error_msg("only '" + opt_.manager_name + "' may send NOTIFY, not '" + peer + "'");
  auto meta = JobMeta::get(m);
  if (!meta.ok())
    return error_msg(meta.error().message);
  auto source = m.str("source");
  auto addr = m.str("source_address");
  if (!source.ok() || !addr.ok())
    return error_msg("NOTIFY without a source");
  auto ep = net::parse_endpoint(*addr);
  if (!ep.ok())
    return error_msg(ep.error().message);
  std::string leader = m.body.value("leader", std::string());
  if (leader != opt_.tls->name())
    return error_msg("this is '" + opt_.tls->name() + "', not '" + leader + "'");
  const uint64_t boot = m.body.value("boot", uint64_t{0}), seq = m.body.value("seq", uint64_t{0});
  std::lock_guard<std::mutex> g(mu_);
  auto it = copies_.find(meta->id);
  if (it != copies_.end()) {
    Copy& c = *it->second;
    if (c.meta.sha256 != meta->sha256 || c.meta.size != meta->size)
      return error_msg("job " + std::to_string(meta->id) + " here is another file");
    if (notice_is_stale(c.notice_boot, c.notice_seq, boot, seq)) {
      log("job " + std::to_string(c.meta.id) + ": an older NOTIFY (from " + *source +
          ") came late; still from " + c.source);
      return Message{Msg::Ok, {{"note", "older than the one taken"}}, ""};
    }
    c.notice_boot = boot;
    c.notice_seq = seq;
    c.source = *source;
    c.source_addr = *ep;
    c.generation++;
    c.given_up = false;
    if (c.stream != nullptr)
      c.stream->abort();  // the worker goes on at the new source
    changed_.notify_all();
    log("job " + std::to_string(c.meta.id) + ": now from " + c.source);
    if (!c.working && !c.finished) {
      // Its worker gave up and ended (a disk error, or the manager gave up
      // on this leader): the manager wants the copy after all, so a new
      // worker takes it from where it stands.
      c.working = true;
      c.local_error.clear();  // that worker's reason, reported already
      detached([this, cp = it->second] { worker(cp); }, logger());
    }
    if (c.finished) {
      // The manager lost track (it restarted): say again what happened here.
      std::shared_ptr<Copy> cp = it->second;
      detached(
          [this, cp] {
            report(cp, status_msg(*cp, "complete"), 60);
            if (cp->meta.deliver) {
              Message d;
              d.type = Msg::Delivered;
              d.body = {{"job", cp->meta.id}, {"exit", cp->deliver_exit}, {"output", cp->deliver_output}};
              report(cp, d, 60);
            }
          },
          logger());
    }
    return Message{Msg::Ok, nlohmann::json::object(), ""};
  }
  auto data = meta->inline_data(m);
  if (!data.ok())
    return error_msg(data.error().message);
  auto c = std::make_shared<Copy>();
  c->inline_data = std::move(*data);
  c->meta = std::move(*meta);
  c->source = *source;
  c->source_addr = *ep;
  c->notice_boot = boot;
  c->notice_seq = seq;
  c->cut_through = m.body.value("cut_through", true);
  c->working = true;
  copies_[c->meta.id] = c;
  old_whole_.erase(c->meta.id);
  log("job " + std::to_string(c->meta.id) + ": " + c->meta.name + " (" + std::to_string(c->meta.size) +
      " bytes) from " + c->source);
  detached([this, c] { worker(c); }, logger());
  return Message{Msg::Ok, nlohmann::json::object(), ""};
}

// Opens the job's file and finds how much of it is already here and good
// (after a restart of the agent): those chunks are not fetched again.
Status Agent::prepare(Copy& c) {
  c.dir = opt_.dir + "/" + std::to_string(c.meta.id);
  c.final_path = c.dir + "/" + c.meta.name;
  c.part = c.final_path + ".part";
  if (::mkdir(c.dir.c_str(), 0755) != 0 && errno != EEXIST)
    return sys_error("cannot create", c.dir, errno);
  bool have_final = ::access(c.final_path.c_str(), F_OK) == 0;
  const std::string& path = have_final ? c.final_path : c.part;
  int fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644);
  if (fd < 0)
    return sys_error("cannot open", path, errno);
  Fd file(fd);
  std::string buf;
  uint64_t good = 0;
  for (; good < c.meta.chunk_count(); good++) {
    buf.resize(static_cast<size_t>(c.meta.chunk_length(good)));
    ssize_t n = ::pread(fd, buf.data(), buf.size(), static_cast<off_t>(good * c.meta.chunk_size));
    if (n != static_cast<ssize_t>(buf.size()) || sha256(buf) != c.meta.chunks[good])
      break;
  }
  bool whole = good == c.meta.chunk_count();
  // A file under the final name that is not whole (damaged, or another
  // job's under a reused number) goes back to being the part: nothing may
  // take a copy by its final name before it is whole.
  if (have_final && !whole) {
    if (::rename(c.final_path.c_str(), c.part.c_str()) != 0)
      return sys_error("cannot rename", c.final_path, errno);
    have_final = false;
  }
  uint64_t keep = std::min(good * c.meta.chunk_size, c.meta.size);
  if (::ftruncate(fd, static_cast<off_t>(keep)) != 0)
    return sys_error("cannot truncate", c.part, errno);
  if (whole && !have_final) {
    if (::fsync(fd) != 0 || ::rename(c.part.c_str(), c.final_path.c_str()) != 0)
      return sys_error("cannot rename", c.part, errno);
  }
  std::lock_guard<std::mutex> g(mu_);
  c.fd = std::move(file);
  c.verified = good;
  c.ready = true;
  c.complete = whole;
  if (good > 0)
    log("job " + std::to_string(c.meta.id) + ": " + std::to_string(keep) + " bytes already here and good");
  changed_.notify_all();
  return {};
}

// Chunk i, checked already, into the copy at its place.
Status Agent::write_chunk(Copy& c, uint64_t i, std::string_view chunk) {
  size_t done = 0;
  while (done < chunk.size()) {
    ssize_t n = ::pwrite(c.fd.get(), chunk.data() + done, chunk.size() - done,
                         static_cast<off_t>(i * c.meta.chunk_size + done));
    if (n < 0 && errno == EINTR)
      continue;
    if (n <= 0)
      return sys_error("cannot write", c.part, errno);
    done += static_cast<size_t>(n);
  }
  return {};
}

// The chunks not yet here, from the copy that came with the NOTIFY
// (checked then against the table and the whole SHA-256): no fetch.
Status Agent::write_inline(Copy& c) {
  uint64_t from = c.verified;
  for (uint64_t i = from; i < c.meta.chunk_count(); i++) {
    std::string_view chunk =
        std::string_view(c.inline_data)
            .substr(static_cast<size_t>(i * c.meta.chunk_size), static_cast<size_t>(c.meta.chunk_length(i)));
    CM_TRY(write_chunk(c, i, chunk));
    std::lock_guard<std::mutex> g(mu_);
    c.verified = i + 1;
    changed_.notify_all();
  }
  if (from < c.meta.chunk_count())
    log("job " + std::to_string(c.meta.id) + ": the file came with the notification");
  return {};
}

Status Agent::fetch_from(const std::shared_ptr<Copy>& c, uint64_t gen, const net::Endpoint& src) {
  CM_ASSIGN(auto s, net::TlsStream::connect(opt_.tls, src, 5000));
  s->set_timeout(opt_.idle_ms);
  uint64_t first;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (c->generation != gen || c->given_up)
      return Error("redirected");
    c->stream = s.get();
    first = c->verified;
  }
  struct Clear {
    Agent* a;
    Copy* c;
    net::TlsStream* s;
    ~Clear() {
      std::lock_guard<std::mutex> g(a->mu_);
      if (c->stream == s)
        c->stream = nullptr;
    }
  } clear{this, c.get(), s.get()};
  const std::string who = s->peer() + " (" + src.str() + ")";
  Message f;
  f.type = Msg::Fetch;
  f.body = {{"job", c->meta.id}, {"offset", first * c->meta.chunk_size}};
  CM_TRY(send(*s, f));
  auto last_chunk = std::chrono::steady_clock::now();
  uint64_t i = first;
  for (;;) {
    CM_ASSIGN(Message m, receive(*s, who));
    if (m.type == Msg::Ok)
      break;
    if (m.type == Msg::Error)
      return Error(who + ": " + m.body.value("error", std::string("?")));
    if (m.type == Msg::Wait) {
      // The source is waiting for its own source: alive, but no progress.
      if (std::chrono::steady_clock::now() - last_chunk > std::chrono::milliseconds(opt_.idle_ms) * 6)
        return Error(who + " has made no progress for " + std::to_string(opt_.idle_ms * 6 / 1000) + " s");
      continue;
    }
    if (m.type != Msg::Chunk)
      return Error(who + " sent " + msg_name(m.type) + " instead of a chunk", kExitBadInput);
    auto off = m.num("offset");
    if (!off.ok() || *off != i * c->meta.chunk_size || i >= c->meta.chunk_count())
      return Error(who + " sent a chunk out of order", kExitBadInput);
    if (m.blob.size() != c->meta.chunk_length(i) || sha256(m.blob) != c->meta.chunks[i])
      return Error(who + " sent chunk " + std::to_string(i) + " that fails its SHA-256 check", kExitBadInput);
    if (Status w = write_chunk(*c, i, m.blob); !w.ok()) {
      // A full disk here is not the source's fault: give up loudly (the
      // worker tells the manager).
      std::lock_guard<std::mutex> g(mu_);
      mark_given_up(*c);
      c->local_error = w.error().message;
      return w;
    }
    i++;
    // Start the write-back now and then: the fsync before the copy takes
    // its name then has little left to flush (a hint; fsync reports errors).
    if (i % std::max<uint64_t>(1, kWritebackBytes / std::max<uint64_t>(1, c->meta.chunk_size)) == 0)
      (void)::sync_file_range(c->fd.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
    last_chunk = std::chrono::steady_clock::now();
    std::lock_guard<std::mutex> g(mu_);
    c->verified = i;
    c->recent.keep(i - 1, std::move(m.blob));
    changed_.notify_all();
  }
  if (i != c->meta.chunk_count())
    return Error(who + " ended the stream at chunk " + std::to_string(i) + " of " +
                 std::to_string(c->meta.chunk_count()));
  return {};
}

// This leader cannot hold the copy (its disk): said in its log, and to
// the manager, which fails it now and hands its targets to other holders
// (rather than waiting for it to fall silent).
void Agent::give_up_here(const std::shared_ptr<Copy>& c, const std::string& why) {
  log("job " + std::to_string(c->meta.id) + ": " + why + "; giving this copy up");
  {
    std::lock_guard<std::mutex> g(mu_);
    mark_given_up(*c);
  }
  Message m = status_msg(*c, "failed");
  m.body["error"] = why;
  (void)report(c, m, 60);
}

// The deliver commands still running: SIGTERM to each one's process group,
// SIGKILL to those still there 10 s later, and waited for (their threads
// reap them), so that none outlives the agent.
void Agent::stop_deliveries() {
  std::unique_lock<std::mutex> g(mu_);
  if (delivering_.empty())
    return;
  log("stopping " + std::to_string(delivering_.size()) + " deliver command(s)");
  for (pid_t p : delivering_)
    ::kill(-p, SIGTERM);
  if (!changed_.wait_for(g, std::chrono::seconds(10), [&] { return delivering_.empty(); })) {
    for (pid_t p : delivering_)
      ::kill(-p, SIGKILL);
    changed_.wait_for(g, std::chrono::seconds(5), [&] { return delivering_.empty(); });
  }
}

void Agent::ask_next(std::shared_ptr<Copy> c) {
  Message m;
  m.type = Msg::Next;
  m.body = {{"job", c->meta.id}};
  int failures = 0;
  while (!stop_) {
    {
      std::lock_guard<std::mutex> g(mu_);
      if (c->given_up) {
        c->next_started = false;  // a worker started again asks again
        return;
      }
    }
    auto r = rpc(m);
    if (!r.ok()) {
      if (++failures > 120) {
        log("job " + std::to_string(c->meta.id) + ": stopped asking whom to serve: " + r.error().message);
        return;
      }
      std::this_thread::sleep_for(500ms);
      continue;
    }
    failures = 0;
    switch (r->type) {
      case Msg::Target:
        log("job " + std::to_string(c->meta.id) + ": serving " + r->body.value("leader", std::string("?")));
        break;
      case Msg::Wait:
        std::this_thread::sleep_for(
            std::chrono::milliseconds(std::clamp(r->body.value("ms", 200), 10, 5000)));
        break;
      case Msg::None: return;
      default:
        log("job " + std::to_string(c->meta.id) + ": NEXT answered with " + msg_name(r->type) + " " +
            r->body.value("error", std::string()));
        return;
    }
  }
}

std::pair<int, std::string> Agent::run_deliver(const Copy& c, std::vector<std::string> env) {
  if (opt_.deliver.empty())
    return {0, ""};
  if (stop_)
    return {128 + SIGTERM, ""};  // stopping: no new command
  Spawn sp;
  sp.command = expand_braces(opt_.deliver, c.final_path);
  sp.env = std::move(env);
  sp.env.push_back("CM_FILE=" + c.final_path);
  sp.env.push_back("CM_JOB=" + std::to_string(c.meta.id));
  sp.capture_stdout = true;
  // Its own process group, known while it runs: an agent told to stop
  // stops it too (a cm-mcast send must not go on multicasting).
  sp.new_group = true;
  sp.running = [this](pid_t pid, bool started) {
    std::lock_guard<std::mutex> g(mu_);
    if (started) {
      delivering_.insert(pid);
      // Started as the agent stops (after stop_deliveries() looked): now.
      if (stop_)
        ::kill(-pid, SIGTERM);
    } else {
      delivering_.erase(pid);
    }
    changed_.notify_all();
  };
  auto ran = run_shell(sp, 4u << 20);
  if (!ran.ok()) {
    log("job " + std::to_string(c.meta.id) + ": " + ran.error().message);
    return {127, ""};
  }
  int exit = exit_code_of(ran->status);
  if (exit != 0)
    log("job " + std::to_string(c.meta.id) + ": the deliver command ended with " +
        describe_status(ran->status));
  return {exit < 0 ? 128 : exit, ran->output};
}

void Agent::deliver(const std::shared_ptr<Copy>& c) {
  auto [exit, output] = run_deliver(*c, {});
  {
    std::lock_guard<std::mutex> g(mu_);
    c->deliver_exit = exit;
    c->deliver_output = std::move(output);
  }
  report_delivered(c);
}

// The deliver command, started with the fetch: it reads the copy as it
// grows (only verified chunks are ever written to it) and waits for the
// final name before anything uses the file whole. Its report goes to the
// manager once the copy is complete too (worker()); a copy given up on
// leaves it to fail on its own (cm-mcast send --follow-idle).
void Agent::deliver_early(const std::shared_ptr<Copy>& c) {
  std::vector<std::string> env = {"CM_PART=" + c->part, "CM_SIZE=" + std::to_string(c->meta.size),
                                  "CM_SHA256=" + to_hex(c->meta.sha256)};
  detached(
      [this, c, env = std::move(env)]() mutable {
        auto [exit, output] = run_deliver(*c, std::move(env));
        std::lock_guard<std::mutex> g(mu_);
        c->deliver_exit = exit;
        c->deliver_output = std::move(output);
        c->early_done = true;
        changed_.notify_all();
      },
      logger());
}

void Agent::report_delivered(const std::shared_ptr<Copy>& c) {
  Message d;
  d.type = Msg::Delivered;
  {
    std::lock_guard<std::mutex> g(mu_);
    d.body = {{"job", c->meta.id}, {"exit", c->deliver_exit}, {"output", c->deliver_output}};
  }
  report(c, d, 600);
}

void Agent::worker(std::shared_ptr<Copy> c) {
  const std::string job = "job " + std::to_string(c->meta.id);
  struct Working {
    Agent* a;
    Copy* c;
    ~Working() {
      std::lock_guard<std::mutex> g(a->mu_);
      c->working = false;
    }
  } working{this, c.get()};
  bool ready_before;
  {
    std::lock_guard<std::mutex> g(mu_);
    ready_before = c->ready;
  }
  // A second worker (after a give-up) keeps the open file: fetchers may be
  // reading from it.
  Status ready = ready_before ? Status() : prepare(*c);
  if (!ready.ok()) {
    give_up_here(c, ready.error().message);
    return;
  }
  auto start_next = [&] {
    std::lock_guard<std::mutex> g(mu_);
    if (c->next_started)
      return;
    c->next_started = true;
    detached([this, c] { ask_next(c); }, logger());
  };
  if (c->cut_through)
    start_next();
  bool early, start_early = false;
  {
    std::lock_guard<std::mutex> g(mu_);
    if (!c->early_started && c->meta.deliver && opt_.deliver_early && c->verified < c->meta.chunk_count())
      c->early_started = start_early = true;
    early = c->early_started;  // perhaps by the worker before this one
  }
  if (start_early)
    deliver_early(c);
  if (!c->inline_data.empty()) {
    Status w = write_inline(*c);
    if (!w.ok())
      log(job + ": " + w.error().message + "; fetching it instead");
  }
  while (!c->complete) {
    uint64_t gen;
    net::Endpoint src;
    std::string source;
    {
      std::lock_guard<std::mutex> g(mu_);
      if (c->given_up || stop_)
        return;
      gen = c->generation;
      src = c->source_addr;
      source = c->source;
    }
    Status st = c->verified == c->meta.chunk_count() ? Status() : fetch_from(c, gen, src);
    if (st.ok()) {
      // Every chunk passed its SHA-256 in the manager's table, which the
      // manager computed from the same read as the whole file's (push
      // job.cpp, describe_file): the copy is the manager's file. (Hashing
      // the whole again here cost each leader a second SHA-256 pass, the
      // largest CPU item of a transfer after the chunks' own.)
      if (::fsync(c->fd.get()) != 0 || ::rename(c->part.c_str(), c->final_path.c_str()) != 0) {
        int err = errno;  // access() below sets its own
        if (::access(c->final_path.c_str(), F_OK) != 0) {
          give_up_here(c, "cannot keep '" + c->final_path + "': " + std::strerror(err));
          return;
        }
      }
      std::lock_guard<std::mutex> g(mu_);
      c->complete = true;
      c->recent.clear();  // a leader still behind reads the copy
      changed_.notify_all();
      break;
    }
    {
      std::unique_lock<std::mutex> g(mu_);
      if (!c->local_error.empty() && !stop_) {
        std::string why = std::exchange(c->local_error, {});
        g.unlock();
        give_up_here(c, why);
        return;
      }
      if (c->given_up || stop_)
        return;
      if (c->generation != gen)
        continue;  // told to fetch elsewhere: not the source's fault
    }
    log(job + ": source " + source + " failed: " + st.error().message);
    Message m = status_msg(*c, "source-failed");
    m.body["source"] = source;
    m.body["error"] = st.error().message;
    if (!report(c, m, 60))
      return;
    // Wait for the manager to name another source (bounded), else retry.
    std::unique_lock<std::mutex> g(mu_);
    changed_.wait_for(g, std::chrono::milliseconds(opt_.idle_ms) * 3,
                      [&] { return c->generation != gen || c->given_up || stop_; });
  }
  log(job + ": verified whole, " + c->final_path);
  if (!report(c, status_msg(*c, "complete"), 120))
    return;
  start_next();
  if (early) {
    {
      std::unique_lock<std::mutex> g(mu_);
      while (!c->early_done && !stop_)
        changed_.wait_for(g, 1s);
    }
    report_delivered(c);
  } else if (c->meta.deliver) {
    deliver(c);
  }
  {
    std::lock_guard<std::mutex> g(mu_);
    c->delivered = true;
    c->finished = true;
  }
  prune();
}

Status Agent::on_fetch(net::TlsStream& s, const Message& m) {
  CM_ASSIGN(uint64_t id, m.num("job"));
  CM_ASSIGN(uint64_t offset, m.num("offset"));
  std::shared_ptr<Copy> c;
  {
    std::lock_guard<std::mutex> g(mu_);
    auto it = copies_.find(id);
    if (it == copies_.end())
      return send(s, error_msg("'" + opt_.tls->name() + "' has no job " + std::to_string(id)));
    c = it->second;
    if (offset % c->meta.chunk_size != 0 || offset > c->meta.size)
      return send(s, error_msg("bad offset " + std::to_string(offset)));
    c->serving++;
  }
  struct Done {
    Agent* a;
    Copy* c;
    ~Done() {
      std::lock_guard<std::mutex> g(a->mu_);
      c->serving--;
    }
  } done{this, c.get()};
  std::string buf;
  std::shared_ptr<const std::string> mem;
  auto last_progress = std::chrono::steady_clock::now();
  for (uint64_t i = offset / c->meta.chunk_size; i < c->meta.chunk_count();) {
    bool have;
    {
      std::unique_lock<std::mutex> g(mu_);
      changed_.wait_for(g, 2s, [&] { return (c->ready && c->verified > i) || c->given_up || stop_; });
      if (c->given_up || stop_)
        return send(s, error_msg("'" + opt_.tls->name() + "' gave up on job " + std::to_string(id)));
      have = c->ready && c->verified > i;
      mem = c->recent.get(i);
    }
    if (!have) {
      // Still waiting for our own source: keep the fetcher from timing out.
      if (std::chrono::steady_clock::now() - last_progress > std::chrono::milliseconds(opt_.idle_ms) * 6)
        return send(
            s, error_msg("'" + opt_.tls->name() + "' has had no new data for job " + std::to_string(id)));
      CM_TRY(send(s, Message{Msg::Wait, {{"ms", 2000}}, ""}));
      continue;
    }
    std::string_view chunk;
    if (mem) {
      chunk = *mem;
    } else {
      buf.resize(static_cast<size_t>(c->meta.chunk_length(i)));
      ssize_t n = ::pread(c->fd.get(), buf.data(), buf.size(), static_cast<off_t>(i * c->meta.chunk_size));
      if (n != static_cast<ssize_t>(buf.size()))
        return send(
            s, error_msg("'" + opt_.tls->name() + "' cannot read its copy of job " + std::to_string(id)));
      chunk = buf;
    }
    CM_TRY(send(s, Msg::Chunk, {{"offset", i * c->meta.chunk_size}}, chunk));
    last_progress = std::chrono::steady_clock::now();
    i++;
  }
  return send(s, Message{Msg::Ok, {{"end", true}}, ""});
}

void Agent::handle(Fd fd) {
  auto s = net::TlsStream::accept(opt_.tls, std::move(fd), 10000);
  if (!s.ok()) {
    log("refused: " + s.error().message);
    return;
  }
  (*s)->set_timeout(opt_.idle_ms);
  auto m = receive(**s, (*s)->peer() + " (" + (*s)->name() + ")");
  if (!m.ok()) {
    log(m.error().message);
    if (m.error().code == kExitBadInput)
      (void)send(**s, error_msg(m.error().message));
    return;
  }
  Status st = dispatch_guarded(
      **s, *m,
      [&] {
        if (m->type == Msg::Notify)
          return send(**s, on_notify(*m, (*s)->peer()));
        if (m->type == Msg::Fetch)
          return on_fetch(**s, *m);
        return send(**s, error_msg(std::string("cm-push agent does not take ") + msg_name(m->type)));
      },
      logger());
  if (!st.ok())
    log(st.error().message);
  (*s)->shutdown();
}

// Every second: "still here", with how far each job has come.
void Agent::heartbeat() {
  while (!stop_) {
    std::this_thread::sleep_for(std::chrono::milliseconds(opt_.heartbeat_ms));
    std::vector<std::pair<std::shared_ptr<Copy>, Message>> out;
    {
      std::lock_guard<std::mutex> g(mu_);
      for (auto& [id, c] : copies_) {
        if (c->given_up || c->finished || !c->ready)
          continue;
        if (c->complete && !c->meta.deliver)
          continue;
        out.emplace_back(c, status_msg(*c, c->complete ? "delivering" : "receiving"));
      }
    }
    for (auto& [c, m] : out) {
      auto r = rpc(m);
      if (r.ok() && r->type == Msg::None) {
        std::lock_guard<std::mutex> g(mu_);
        mark_given_up(*c);
        if (c->stream != nullptr)
          c->stream->abort();
        changed_.notify_all();
        log("job " + std::to_string(c->meta.id) + ": the manager gave up on this leader");
      }
    }
  }
}

// Tells the manager this agent has just started, so that the jobs it was
// in when it stopped (killed, rebooted) are notified again and resume from
// the verified part on disk. Until the manager answers (after a reboot of
// the whole site it may come up later than this agent), again and again,
// less and less often.
void Agent::hello() {
  auto backoff = 1s;
  while (!stop_) {
    auto r = rpc(Message{Msg::Hello, nlohmann::json::object(), ""});
    if (r.ok() && r->type == Msg::Error) {
      log("the manager refused HELLO: " + r->body.value("error", std::string("?")));
      return;  // one that predates HELLO: what an earlier run left stays
    }
    if (r.ok()) {
      std::set<uint64_t> again;
      auto jobs = r->body.find("jobs");
      if (jobs != r->body.end() && jobs->is_array())
        for (const auto& j : *jobs)
          if (j.is_number_unsigned())
            again.insert(j.get<uint64_t>());
      if (!again.empty())
        log("the manager notifies this agent again of " + std::to_string(again.size()) + " job(s)");
      std::set<uint64_t> named_here;  // of those, the ones with a copy here
      {
        std::lock_guard<std::mutex> g(mu_);
        for (uint64_t id : again)
          if (found_.count(id) > 0)
            named_here.insert(id);
      }
      sweep(again);
      sweep_unclaimed(named_here);
      return;
    }
    for (auto slept = 0ms; slept < backoff && !stop_; slept += 250ms)
      std::this_thread::sleep_for(250ms);
    backoff = std::min<std::chrono::seconds>(backoff * 2, 30s);
  }
}

// What an earlier run left in the directory, once the manager has said
// which of its jobs still run here: a partial copy of any other job is of
// no use to anyone and goes (a killed agent's .part can be gigabytes); a
// whole copy stays, and is pruned with the finished jobs as the oldest.
void Agent::sweep(const std::set<uint64_t>& again) {
  std::vector<std::string> trash;
  {
    std::lock_guard<std::mutex> g(mu_);
    trash.swap(trash_);
    Fd dir(::open(opt_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!dir.valid())
      return;
    for (uint64_t id : found_) {
      if (again.count(id) > 0 || copies_.count(id) > 0)
        continue;  // notified (again): its worker takes what is there
      std::string name = std::to_string(id);
      Fd job(::openat(dir.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
      if (!job.valid() && errno == ENOENT)
        continue;  // gone meanwhile (notified, finished and pruned): nothing left here
      auto files = job.valid() ? fs::list_names(job.get(), opt_.dir + "/" + name)
                               : Result<std::vector<std::string>>(Error("cannot open"));
      // (Unreadable: left alone.)
      bool partial = files.ok() && std::all_of(files->begin(), files->end(),
                                               [](const std::string& f) { return f.ends_with(".part"); });
      if (!partial) {
        old_whole_.insert(id);
        continue;
      }
      // Out of the way under the lock (a notification for the same number
      // may come any moment), removed without it (it may be gigabytes).
      std::string t = ".trash-" + name + "-" + random_name(8);
      if (::renameat(dir.get(), name.c_str(), dir.get(), t.c_str()) != 0) {
        log(sys_error("cannot remove", opt_.dir + "/" + name, errno).message);
        continue;
      }
      trash.push_back(t);
      log("job " + name + ": removing the partial copy an earlier run left (the job is not running here)");
    }
    found_.clear();
  }
  remove_here(trash);
}

// The jobs the manager named in its HELLO answer, of which an earlier run
// left a copy here, whose NOTIFY has not come (the manager could not reach
// this agent, or the job ended meanwhile): waited for
// as long as a fetcher waits for progress (6 x --idle), then what is still
// only partial of them goes like any other leftover, instead of staying on
// disk until the next start.
void Agent::sweep_unclaimed(const std::set<uint64_t>& named) {
  std::set<uint64_t> waiting;
  auto unclaimed = [&] {
    std::lock_guard<std::mutex> g(mu_);
    for (auto it = waiting.begin(); it != waiting.end();)
      it = copies_.count(*it) > 0 ? waiting.erase(it) : std::next(it);
  };
  waiting = named;
  unclaimed();
  auto until = std::chrono::steady_clock::now() + std::chrono::milliseconds(opt_.idle_ms) * 6;
  while (!waiting.empty() && !stop_ && std::chrono::steady_clock::now() < until) {
    std::this_thread::sleep_for(250ms);
    unclaimed();
  }
  if (waiting.empty() || stop_)
    return;
  for (uint64_t id : waiting)
    log("job " + std::to_string(id) + ": the manager named it but has not notified this agent");
  {
    std::lock_guard<std::mutex> g(mu_);
    found_ = waiting;
  }
  sweep({});  // under the lock it checks again that no NOTIFY came
}

// Keeps the newest `keep` finished jobs on disk; older ones go, unless
// someone is fetching from them.
void Agent::prune() {
  std::vector<std::string> drop;
  {
    std::lock_guard<std::mutex> g(mu_);
    // The oldest first: what an earlier run left, then by job number.
    std::vector<uint64_t> done(old_whole_.begin(), old_whole_.end());
    for (auto& [id, c] : copies_)
      if ((c->finished || c->given_up) && c->serving == 0)
        done.push_back(id);
    while (done.size() > opt_.keep) {
      uint64_t id = done.front();
      done.erase(done.begin());
      drop.push_back(std::to_string(id));
      copies_.erase(id);
      old_whole_.erase(id);
    }
  }
  remove_here(drop);
}

// Removes these names (job directories, trash) from --dir, whatever is
// below them; a failure is logged.
void Agent::remove_here(const std::vector<std::string>& names) {
  if (names.empty())
    return;
  Fd dir(::open(opt_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  for (const std::string& name : names) {
    Status st = dir.valid() ? fs::remove_tree_at(dir.get(), name, opt_.dir + "/" + name)
                            : Status(sys_error("cannot open", opt_.dir, errno));
    if (!st.ok())
      log(st.error().message);
  }
}

Status Agent::run() {
  block_stop_signals();
  if (opt_.dir.empty())
    return Error("cm-push agent needs a directory for its copies", kExitUsage);
  if (::mkdir(opt_.dir.c_str(), 0755) != 0 && errno != EEXIST)
    return sys_error("cannot create", opt_.dir, errno);
  // Said now, not at the first job.
  struct stat st;
  if (::stat(opt_.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    return Error("'" + opt_.dir + "' is not a directory", kExitFailure);
  if (::access(opt_.dir.c_str(), W_OK | X_OK) != 0)
    return sys_error("cannot write in", opt_.dir, errno);
  // Job directories an earlier run left: sorted out once the manager has
  // answered HELLO. (Only names a job number is written as: "007" is not
  // job 7's.)
  {
    Fd top(::open(opt_.dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC));
    if (!top.valid())
      return sys_error("cannot open", opt_.dir, errno);
    CM_ASSIGN(std::vector<std::string> names, fs::list_names(top.get(), opt_.dir));
    for (const std::string& name : names) {
      struct stat js;
      if (!name.empty() && name.size() <= 19 && name.find_first_not_of("0123456789") == std::string::npos &&
          std::to_string(std::stoull(name)) == name &&
          ::fstatat(top.get(), name.c_str(), &js, AT_SYMLINK_NOFOLLOW) == 0 && S_ISDIR(js.st_mode))
        found_.insert(std::stoull(name));
      else if (name.rfind(".trash-", 0) == 0)
        trash_.push_back(name);  // a sweep that was cut short
    }
  }
  CM_ASSIGN(net::Listener l, net::Listener::open(opt_.listen));
  log("agent " + opt_.tls->name() + " on " + l.local().str() + ", manager " + opt_.manager.str());
  std::thread beat([this] { heartbeat(); });
  detached([this] { hello(); }, logger());
  accept_until_stopped(
      l, stop_, [this](Fd fd) { handle(std::move(fd)); }, logger());
  {
    std::lock_guard<std::mutex> g(mu_);
    for (auto& [id, c] : copies_)
      if (c->stream != nullptr)
        c->stream->abort();
    changed_.notify_all();
  }
  beat.join();
  stop_deliveries();
  log("stopped");
  return {};
}

}  // namespace

Status run_agent(const AgentOptions& opt) {
  // Detached threads may outlive run(): the agent lives until exit.
  static Agent* agent = nullptr;
  agent = new Agent(opt);
  return agent->run();
}

}  // namespace cm::push
