#include "push/daemon.hpp"

#include <signal.h>

#include <chrono>
#include <map>
#include <memory>
#include <mutex>
#include <system_error>
#include <thread>

namespace cm::push {

void block_stop_signals() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  pthread_sigmask(SIG_BLOCK, &mask, nullptr);
  ::signal(SIGPIPE, SIG_IGN);
}

void accept_until_stopped(net::Listener& l, std::atomic<bool>& stop, const std::function<void(Fd)>& handle,
                          const std::function<void(const std::string&)>& log) {
  // Connections being handled, in all and per peer address: beyond
  // kMaxConnections, or kMaxConnectionsPerPeer from one host (no
  // certificate is needed to connect), a new one is closed at once. A
  // flood of connects, each holding a thread in its TLS handshake, must
  // not exhaust the process's threads or descriptors.
  struct Slots {
    std::mutex mu;
    size_t total = 0;
    std::map<uint32_t, size_t> per_peer;  // by IPv4 address
  };
  auto slots = std::make_shared<Slots>();
  auto last_said = std::chrono::steady_clock::time_point{};
  auto say_once_a_second = [&](const std::string& m) {
    auto now = std::chrono::steady_clock::now();
    if (now - last_said >= std::chrono::seconds(1)) {
      last_said = now;
      log(m);
    }
  };
  while (!stop) {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT)) {
      stop = true;
      break;
    }
    auto fd = l.accept(200);
    if (!fd.ok()) {
      // Out of descriptors (EMFILE) the connection stays queued and the
      // listener readable: a pause, not a loop that logs as fast as it can.
      say_once_a_second(fd.error().message);
      std::this_thread::sleep_for(std::chrono::milliseconds(50));
      continue;
    }
    if (!*fd)
      continue;
    net::Endpoint peer = net::peer_of((*fd)->get());
    {
      std::lock_guard<std::mutex> g(slots->mu);
      size_t& mine = slots->per_peer[peer.addr.s_addr];
      if (slots->total >= kMaxConnections || mine >= kMaxConnectionsPerPeer) {
        say_once_a_second(slots->total >= kMaxConnections
                              ? "more than " + std::to_string(kMaxConnections) +
                                    " connections at once: new ones are closed until some end"
                              : "more than " + std::to_string(kMaxConnectionsPerPeer) +
                                    " connections at once from " + peer.host() + ": its new ones are closed");
        if (mine == 0)
          slots->per_peer.erase(peer.addr.s_addr);
        continue;  // the Fd closes here
      }
      mine++;
      slots->total++;
    }
    auto release = [slots, addr = peer.addr.s_addr] {
      std::lock_guard<std::mutex> g(slots->mu);
      slots->total--;
      if (--slots->per_peer[addr] == 0)
        slots->per_peer.erase(addr);
    };
    auto f = std::make_shared<Fd>(std::move(**fd));
    detached(
        [handle, f, release] {
          // Counted down however the handler ends (detached() catches).
          struct Done {
            const decltype(release)& r;
            ~Done() { r(); }
          } done{release};
          handle(std::move(*f));
        },
        log, release);
  }
}

Status dispatch_guarded(net::TlsStream& s, const Message& m, const std::function<Status()>& dispatch,
                        const std::function<void(const std::string&)>& log) {
  try {
    return dispatch();
  } catch (const nlohmann::json::exception& e) {
    std::string why = std::string("malformed ") + msg_name(m.type) + " from " + s.peer() + " (" + s.name() +
                      "): " + e.what();
    log(why);
    return send(s, error_msg(why));
  }
}

void detached(std::function<void()> f, std::function<void(const std::string&)> log,
              std::function<void()> not_started) {
  try {
    std::thread([f = std::move(f), log] {
      try {
        f();
      } catch (const std::exception& e) {
        log(std::string("internal error, one connection dropped: ") + e.what());
      }
    }).detach();
  } catch (const std::system_error& e) {
    // No thread to be had (a task limit, memory): this piece of work is
    // lost, the daemon is not.
    log(std::string("cannot start a thread, one connection dropped: ") + e.what());
    if (not_started)
      not_started();
  }
}

}  // namespace cm::push
