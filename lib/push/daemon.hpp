// What cm-push serve and cm-push agent share as daemons: stop signals are
// polled, not handled, and each accepted connection gets a thread.
#pragma once

#include <atomic>
#include <functional>
#include <string>

#include "net/tls.hpp"
#include "push/proto.hpp"

namespace cm::push {

// Blocks SIGTERM and SIGINT in this thread and the threads it starts
// (accept_until_stopped polls for them) and ignores SIGPIPE (a peer that
// goes away is an error on the write instead).
void block_stop_signals();

inline constexpr size_t kMaxConnections = 1000;
inline constexpr size_t kMaxConnectionsPerPeer = 200;

// Accepts connections on `l` until `stop` is set or SIGTERM or SIGINT is
// pending (then sets `stop`), looking every 200 ms. Each connection goes to
// `handle` on a detached thread, at most kMaxConnections at once and
// kMaxConnectionsPerPeer from one address (more are closed at once); an
// accept error goes to `log`, at most once a second.
void accept_until_stopped(net::Listener& l, std::atomic<bool>& stop, const std::function<void(Fd)>& handle,
                          const std::function<void(const std::string&)>& log);

// Runs a connection's `dispatch` of message `m`. A field of the wrong type
// (the checks name the missing ones) is answered with an error naming the
// message and the peer, and logged, instead of ending the daemon.
Status dispatch_guarded(net::TlsStream& s, const Message& m, const std::function<Status()>& dispatch,
                        const std::function<void(const std::string&)>& log);

// Runs f on a detached thread. An exception from it (a field of the wrong
// type in a peer's message, a bug) is logged and ends that thread only:
// one connection never takes the daemon down. When no thread can be
// started, that is logged and `not_started` (if any) runs instead.
void detached(std::function<void()> f, std::function<void(const std::string&)> log,
              std::function<void()> not_started = nullptr);

}  // namespace cm::push
