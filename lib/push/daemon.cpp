#include "push/daemon.hpp"

#include <signal.h>

#include <memory>
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
  while (!stop) {
    sigset_t pending;
    sigpending(&pending);
    if (sigismember(&pending, SIGTERM) || sigismember(&pending, SIGINT)) {
      stop = true;
      break;
    }
    auto fd = l.accept(200);
    if (!fd.ok()) {
      log(fd.error().message);
      continue;
    }
    if (*fd) {
      auto f = std::make_shared<Fd>(std::move(**fd));
      detached([handle, f] { handle(std::move(*f)); }, log);
    }
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

void detached(std::function<void()> f, std::function<void(const std::string&)> log) {
  std::thread([f = std::move(f), log = std::move(log)] {
    try {
      f();
    } catch (const std::exception& e) {
      log(std::string("internal error, one connection dropped: ") + e.what());
    }
  }).detach();
}

}  // namespace cm::push
