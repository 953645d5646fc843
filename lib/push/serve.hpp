// cm-push serve: the manager's side of the store-and-forward tree.
//
// It keeps the registry of group leaders (from their cluster reports),
// and for each distribution decides who fetches from whom: the manager
// serves the first leaders itself; every leader that holds a copy (with
// cut-through: has started receiving one) asks "whom next?" and is given
// the next leader waiting, preferring its own location, until "none".
// Leaders report progress; one that dies or stalls is marked failed and
// the leaders it was serving are handed to other holders, resuming where
// they stopped. Jobs live in the state directory, so a restarted serve
// carries on with them.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "net/tls.hpp"
#include "push/plan.hpp"

namespace cm::push {

struct ServeOptions {
  net::Endpoint listen;
  net::Endpoint advertise;  // where leaders reach the manager (default: listen)
  std::shared_ptr<net::TlsContext> tls;
  std::string state_dir;
  uint16_t agent_port = 7801;      // where leaders' agents listen
  unsigned keep = 100;             // finished jobs kept (state and copy); 0: all
  int64_t prune_grace_ms = 60000;  // a finished job stays at least this long
  PlanOptions plan;
  std::function<void(const std::string&)> log;
};

// Runs until SIGTERM or SIGINT.
Status run_serve(const ServeOptions& opt);

}  // namespace cm::push
