// cm-push agent: a group leader's side of the store-and-forward tree.
//
// On a NOTIFY from the manager it fetches the job from the named source
// (the manager or another leader), chunk by chunk, checking every chunk's
// SHA-256 against the job's table (from the manager, which computed it
// and the whole file's SHA-256 in one read) before it is written or served:
// all chunks checked, the copy is whole. Meanwhile it asks the
// manager whom to serve next, and serves FETCHes from what it has verified
// so far (cut-through) or from its complete copy. A source that fails or
// sends nothing for --idle seconds is reported, and the fetch resumes from
// the last verified chunk at the source the manager names next. When the
// copy is whole it runs the deliver command on it and sends the command's
// output (the group report) to the manager.
#pragma once

#include <functional>
#include <memory>
#include <string>

#include "net/tls.hpp"

namespace cm::push {

struct AgentOptions {
  net::Endpoint listen;
  std::shared_ptr<net::TlsContext> tls;
  net::Endpoint manager;
  std::string manager_name = "manager";  // the CN that may send NOTIFY
  std::string dir;                       // copies live in dir/<job>/<name>
  std::string deliver;                   // shell command; {} is the file
  // Cut-through into delivery: start the deliver command when the fetch
  // starts, with CM_PART (the file as it grows, renamed to {} once whole
  // and verified), CM_SIZE and CM_SHA256 set (cm-mcast send --follow).
  bool deliver_early = false;
  int idle_ms = 10000;  // a source silent this long has failed
  int heartbeat_ms = 1000;
  unsigned keep = 3;  // finished jobs kept (newest)
  std::function<void(const std::string&)> log;
};

// Runs until SIGTERM or SIGINT.
Status run_agent(const AgentOptions& opt);

}  // namespace cm::push
