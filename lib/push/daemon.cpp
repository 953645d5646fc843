#include "push/daemon.hpp"

#include <signal.h>

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
    if (*fd)
      std::thread([handle, f = std::move(**fd)]() mutable { handle(std::move(f)); }).detach();
  }
}

}  // namespace cm::push
