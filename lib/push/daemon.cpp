#include "push/daemon.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <signal.h>
#include <sys/socket.h>

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
  // Connections being handled: beyond kMaxConnections a new one is closed
  // at once (a flood of connects, each holding a thread in its TLS
  // handshake, must not exhaust the process's threads or descriptors).
  auto active = std::make_shared<std::atomic<size_t>>(0);
  // And per peer address: one host (no certificate needed to connect)
  // cannot take all of them.
  struct PerPeer {
    std::mutex mu;
    std::map<std::string, size_t> n;
  };
  auto per_peer = std::make_shared<PerPeer>();
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
    if (*active >= kMaxConnections) {
      say_once_a_second("more than " + std::to_string(kMaxConnections) +
                        " connections at once: new ones are closed until some end");
      continue;  // the Fd closes here
    }
    std::string peer;
    sockaddr_storage sa{};
    socklen_t sl = sizeof sa;
    if (::getpeername((*fd)->get(), reinterpret_cast<sockaddr*>(&sa), &sl) == 0 && sa.ss_family == AF_INET) {
      char buf[INET_ADDRSTRLEN];
      if (::inet_ntop(AF_INET, &reinterpret_cast<sockaddr_in*>(&sa)->sin_addr, buf, sizeof buf) != nullptr)
        peer = buf;
    }
    {
      std::lock_guard<std::mutex> g(per_peer->mu);
      if (per_peer->n[peer] >= kMaxConnectionsPerPeer) {
        say_once_a_second("more than " + std::to_string(kMaxConnectionsPerPeer) +
                          " connections at once from " + (peer.empty() ? std::string("one peer") : peer) +
                          ": its new ones are closed");
        continue;  // the Fd closes here
      }
      per_peer->n[peer]++;
    }
    auto release = [active, per_peer, peer] {
      --*active;
      std::lock_guard<std::mutex> g(per_peer->mu);
      if (--per_peer->n[peer] == 0)
        per_peer->n.erase(peer);
    };
    auto f = std::make_shared<Fd>(std::move(**fd));
    ++*active;
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
