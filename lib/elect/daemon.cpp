#include "elect/daemon.hpp"

#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdlib>
#include <cstring>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <utility>

#include "elect/priority.hpp"
#include "util/clock.hpp"
#include "util/io.hpp"
#include "util/proc.hpp"
#include "util/text.hpp"

namespace cm::elect {

namespace {

// Hooks run one at a time, in the order of their events, each told its
// sequence number (keepalived's notify scripts run concurrently and can
// arrive out of order).
class HookRunner {
 public:
  struct Job {
    std::string command;
    std::vector<std::string> env;
    std::string stdin_text;
    // Told how it ended ("" when it exited 0), unless stopped by finish().
    std::function<void(const std::string&)> done;
  };

  HookRunner() = default;
  HookRunner(const HookRunner&) = delete;
  HookRunner& operator=(const HookRunner&) = delete;
  // Whatever way the daemon ends (an error too), no hook outlives it.
  ~HookRunner() {
    queue_.clear();  // none started now
    finish(nullptr, 0);
  }

  void push(Job j) { queue_.push_back(std::move(j)); }
  int fd() const { return pidfd_.get(); }
  bool busy() const { return pidfd_.valid(); }

  // Stopping: the hooks of events that happened (the last one says this
  // server stopped) run to their end, within `ms`; then the one running
  // is stopped (SIGTERM, SIGKILL 2 s later) so that none outlives us.
  void finish(const std::function<void(const std::string&)>& log, int64_t ms) {
    auto deadline = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
    pump(log);
    while (pidfd_.valid()) {
      auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - std::chrono::steady_clock::now());
      if (left.count() <= 0)
        break;
      pollfd p{pidfd_.get(), POLLIN, 0};
      ::poll(&p, 1, static_cast<int>(std::min<int64_t>(left.count(), 200)));
      pump(log);
    }
    if (!pidfd_.valid())
      return;
    if (log)
      log("stopping hook: " + current_);
    ::kill(-pid_, SIGTERM);
    pollfd p{pidfd_.get(), POLLIN, 0};
    if (::poll(&p, 1, 2000) <= 0)
      ::kill(-pid_, SIGKILL);
    int status;
    ::waitpid(pid_, &status, 0);
    pidfd_.reset();
    done_ = nullptr;
    queue_.clear();
  }

  // Reaps a finished hook and starts the next one.
  void pump(const std::function<void(const std::string&)>& log) {
    if (pidfd_.valid()) {
      int status = 0;
      pid_t r = ::waitpid(pid_, &status, WNOHANG);
      if (r == 0)
        return;  // still running
      std::string failure = r == pid_ ? failure_of(current_, status) : std::string();
      if (!failure.empty() && log)
        log("hook " + failure);
      pidfd_.reset();
      if (auto done = std::exchange(done_, nullptr); done && r == pid_)
        done(failure);
    }
    while (!queue_.empty() && !pidfd_.valid()) {
      Job j = std::move(queue_.front());
      queue_.pop_front();
      start(j, log);
    }
  }

 private:
  void start(const Job& j, const std::function<void(const std::string&)>& log) {
    Spawn sp;
    sp.command = j.command;
    sp.env = j.env;
    sp.new_group = true;  // stopped whole by finish()
    if (!j.stdin_text.empty()) {
      // The hook reads the report on its standard input.
      const char* dir = std::getenv("TMPDIR");
      sp.stdin_file = std::string(dir != nullptr && *dir ? dir : "/tmp") + "/cm-elect-report.XXXXXX";
      int fd = ::mkostemp(sp.stdin_file.data(), O_CLOEXEC);
      if (fd >= 0) {
        FdWriter w(fd, sp.stdin_file);
        Status ok = w.write(j.stdin_text);
        if (ok.ok())
          ok = w.flush();
        ::close(fd);
      } else {
        sp.stdin_file.clear();
      }
    }
    auto child = spawn_shell(sp);
    if (!sp.stdin_file.empty())
      ::unlink(sp.stdin_file.c_str());  // the hook has it open by now
    if (!child.ok()) {
      if (log)
        log("cannot run hook: " + child.error().message);
      if (j.done)
        j.done("cannot run '" + j.command + "': " + child.error().message);
      return;
    }
    pid_ = child->pid;
    current_ = j.command;
    pidfd_.reset(static_cast<int>(::syscall(SYS_pidfd_open, pid_, 0)));
    if (!pidfd_.valid()) {  // no pidfd: wait for it here
      int status;
      ::waitpid(pid_, &status, 0);
      if (j.done)
        j.done(failure_of(j.command, status));
      return;
    }
    done_ = j.done;
  }
  // How a hook that ended with wait status `status` failed; "" for exit 0.
  static std::string failure_of(const std::string& command, int status) {
    if (WIFEXITED(status) && WEXITSTATUS(status) == 0)
      return {};
    return "'" + command + "' exited with status " +
           std::to_string(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }

  std::deque<Job> queue_;
  Fd pidfd_;
  pid_t pid_ = -1;
  std::string current_;
  std::function<void(const std::string&)> done_;
};

}  // namespace

std::string ReportTrouble::succeeded() {
  if (!failing_)
    return {};
  failing_ = false;
  why_.clear();
  return "the cluster report reaches the manager again (" + what_ + ")";
}

std::string ReportTrouble::failed(const std::string& why) {
  if (failing_ && why == why_)
    return {};
  failing_ = true;
  why_ = why;
  return "the cluster report does not reach the manager (" + what_ + "): " + why +
         "; trying again every report interval";
}

nlohmann::json cluster_report(const Elector& e, const DaemonOptions& opt, uint64_t seq, int64_t wall,
                              const nlohmann::json& counters) {
  nlohmann::json j;
  j["format"] = 1;
  j["id"] = e.config().id;
  j["state"] = state_name(e.state());
  j["priority"] = e.priority();
  j["segment"] = opt.segment;
  j["location"] = opt.location;
  j["channel"] = opt.channel.str();
  j["seq"] = seq;
  j["updated_ms"] = wall;
  j["registered"] = e.registered();
  if (!e.leader().empty()) {
    nlohmann::json l{{"id", e.leader()}, {"priority", e.leader_priority()}};
    if (e.state() == State::Me) {
      l["address"] = e.config().address;
      l["port"] = e.config().port;
    }
    j["leader"] = l;
  } else {
    j["leader"] = nullptr;
  }
  nlohmann::json members = nlohmann::json::array();
  Nanos now = steady_ns();
  for (const auto& [id, m] : e.members()) {
    nlohmann::json mj{{"id", id},       {"name", m.name},         {"address", m.address},
                      {"port", m.port}, {"priority", m.priority}, {"seen_ms_ago", (now - m.last_seen) / kMs}};
    auto caps = nlohmann::json::parse(m.caps.empty() ? "{}" : m.caps, nullptr, false);
    mj["capabilities"] = caps.is_discarded() ? nlohmann::json(m.caps) : caps;
    members.push_back(mj);
  }
  j["members"] = members;
  j["counters"] = counters;
  return j;
}

Status run_daemon(DaemonOptions opt) {
  auto log = [&](const std::string& m) {
    if (opt.log)
      opt.log(m);
  };
  // The manager's copy of the report: failures are heard at normal
  // verbosity (the manager would silently never get reports), once each.
  ReportTrouble to_trouble("--report-to " + opt.report_to), cmd_trouble("--report-cmd");
  // What the administrator must hear (or, with no such sink, the log).
  auto say = [&](const std::function<void(const std::string&)>& to, const std::string& line) {
    if (to)
      to(line);
    else
      log(line);
  };
  auto outcome = [&](ReportTrouble& t, const std::string& failure) {
    std::string line = failure.empty() ? t.succeeded() : t.failed(failure);
    if (!line.empty())
      say(failure.empty() ? opt.info : opt.warn, line);
  };
  size_t report_cmds_queued = 0;
  // Signals arrive through a descriptor, in the poll loop.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigaddset(&mask, SIGHUP);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  Fd sigfd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!sigfd.valid())
    return sys_error("cannot watch signals", "signalfd", errno);

  net::UdpSocket sock;
  if (opt.peers.empty()) {
    CM_ASSIGN(sock, net::UdpSocket::open(opt.channel, opt.interface));
  } else {
    CM_ASSIGN(sock, net::UdpSocket::open_unicast(opt.interface, opt.channel.port));
  }
  if (opt.measured) {
    opt.cfg.priority = priority_of(measure(opt.weight, opt.data_dir, 0));
    log("measured priority " + std::to_string(opt.cfg.priority));
  }
  Elector e(opt.cfg);
  ReplayGuard guard;
  HookRunner hooks;
  uint64_t hook_seq = 0, report_seq = 0;
  uint64_t sent = 0, received = 0, dropped_bad = 0, dropped_auth = 0, dropped_replay = 0;
  std::string last_written;
  Nanos next_refresh = 0, next_measure = steady_ns() + 30000 * kMs;

  auto counters = [&] {
    return nlohmann::json{{"sent", sent},
                          {"received", received},
                          {"dropped_malformed", dropped_bad},
                          {"dropped_unauthenticated", dropped_auth},
                          {"dropped_replayed", dropped_replay}};
  };
  auto write_report = [&](bool changed) -> Status {
    report_seq++;
    nlohmann::json j = cluster_report(e, opt, report_seq, wall_ms(), counters());
    std::string text = json_text(j, 1) + "\n";
    if (!opt.state_file.empty())
      CM_TRY(write_file_atomic(opt.state_file, text, 0644));
    // On every change; while a way fails, on every report interval too,
    // so that the manager gets the report once it works again.
    if (e.state() == State::Me) {
      if (!opt.report_to.empty() && (changed || to_trouble.failing())) {
        Status s = write_file_atomic(opt.report_to, text, 0644);
        outcome(to_trouble, s.ok() ? std::string() : s.error().message);
      }
      if (!opt.report_cmd.empty() && (changed || (cmd_trouble.failing() && report_cmds_queued == 0))) {
        report_cmds_queued++;
        hooks.push(
            HookRunner::Job{opt.report_cmd, {"CM_EVENT=report"}, text, [&](const std::string& failure) {
                              report_cmds_queued--;
                              outcome(cmd_trouble, failure);
                            }});
      }
    }
    return {};
  };
  // A send that fails (a route or link down, an unusable --peer) is
  // packet loss to the election, not the end of the daemon: a leader that
  // exited would leave its state file naming it leader, and one bad peer
  // would silence the others. Said once when a destination starts failing
  // and once when it works again.
  std::map<std::string, bool> send_failing;
  auto send_one = [&](const net::Endpoint& to, const std::string& wire) {
    Status s = sock.send_to(to, wire);
    bool& failing = send_failing[to.str()];
    if (!s.ok() && !failing)
      say(opt.warn, s.error().message + "; counted as lost, sending on");
    else if (s.ok() && failing)
      say(opt.warn, "sending to '" + to.str() + "' works again");
    failing = !s.ok();
  };
  auto flush = [&](Nanos now) -> Status {
    for (const Message& m : e.take_outgoing()) {
      std::string wire = encode(m, opt.key);
      if (opt.peers.empty()) {
        send_one(opt.channel, wire);
      } else {
        for (const net::Endpoint& p : opt.peers)
          send_one(p, wire);
      }
      sent++;
    }
    for (const std::string& w : e.take_warnings())
      say(opt.warn, w);
    bool changed = false;
    for (const Event& ev : e.take_events()) {
      changed = true;
      const char* type = "";
      switch (ev.type) {
        case Event::StateChanged: type = "state"; break;
        case Event::LeaderChanged: type = "leader"; break;
        case Event::Joined: type = "join"; break;
        case Event::Left: type = "leave"; break;
        case Event::Registered: type = "registered"; break;
      }
      log(std::string(type) + " " + ev.detail);
      if (!opt.on_change.empty())
        hooks.push(
            HookRunner::Job{opt.on_change,
                            {"CM_EVENT=" + std::string(type), "CM_DETAIL=" + ev.detail,
                             "CM_STATE=" + std::string(state_name(e.state())), "CM_LEADER=" + e.leader(),
                             "CM_ID=" + opt.cfg.id, "CM_SEQ=" + std::to_string(++hook_seq)},
                            "",
                            nullptr});
    }
    if (changed || now >= next_refresh) {
      CM_TRY(write_report(changed));
      next_refresh = now + opt.cfg.report_interval;
    }
    hooks.pump(log);
    return {};
  };

  e.start(steady_ns(), wall_ms());
  CM_TRY(flush(steady_ns()));
  for (;;) {
    Nanos now = steady_ns();
    Nanos wake = e.next_wakeup();
    int timeout = static_cast<int>(std::clamp<Nanos>((wake - now) / kMs + 1, 0, 1000));
    pollfd fds[3] = {{sock.fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}, {hooks.fd(), POLLIN, 0}};
    int n = ::poll(fds, hooks.busy() ? 3 : 2, timeout);
    if (n < 0 && errno != EINTR)
      return sys_error("cannot wait", "poll", errno);
    now = steady_ns();
    if (fds[1].revents & POLLIN) {
      signalfd_siginfo si;
      if (::read(sigfd.get(), &si, sizeof si) == sizeof si && si.ssi_signo != SIGHUP) {
        e.stop(now, wall_ms());
        // Stopping goes on whatever fails here (the interface may be down
        // already): the state file and the hooks still get their turn.
        if (Status f = flush(now); !f.ok())
          log(f.error().message);
        // The state file says so: 'leader' there after a clean stop misled
        // cm-elect status (and whoever reads the file).
        if (!opt.state_file.empty()) {
          nlohmann::json j = cluster_report(e, opt, ++report_seq, wall_ms(), counters());
          j["state"] = "stopped";
          if (Status s = write_file_atomic(opt.state_file, json_text(j, 1) + "\n", 0644); !s.ok())
            log(s.error().message);
        }
        hooks.finish(log, 10000);
        log("stopped");
        return {};
      }
    }
    if (fds[0].revents & POLLIN) {
      for (int k = 0; k < 64; k++) {
        CM_ASSIGN(auto d, sock.receive());
        if (!d)
          break;
        auto m = decode(d->data, opt.key);
        if (!m.ok()) {
          (m.error().code == kExitSecurity ? dropped_auth : dropped_bad)++;
          continue;
        }
        if (opt.key != nullptr && !guard.accept(*m, wall_ms())) {
          dropped_replay++;
          continue;
        }
        received++;
        e.recv(*m, now, wall_ms());
      }
    }
    if (opt.measured && now >= next_measure) {
      e.set_priority(priority_of(measure(opt.weight, opt.data_dir, e.members().size())));
      next_measure = now + 30000 * kMs;
    }
    e.tick(now, wall_ms());
    CM_TRY(flush(now));
  }
}

}  // namespace cm::elect
