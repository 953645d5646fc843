// cm-elect run: the election state machine on a UDP control channel,
// with the cluster report written to a state file, sent to the manager's
// sink, and hooks run in order on every change.
#pragma once

#include <netinet/in.h>

#include <functional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "crypto/keys.hpp"
#include "elect/elector.hpp"
#include "net/udp.hpp"

namespace cm::elect {

struct DaemonOptions {
  Config cfg;
  net::Endpoint channel;             // multicast group and port
  in_addr interface {};              // where to send and join
  std::vector<net::Endpoint> peers;  // unicast instead of multicast
  const crypto::SymmetricKey* key = nullptr;
  bool measured = true;  // recompute the priority from the host's measures
  double weight = 0.5;
  std::string data_dir = "/";
  std::string segment, location;
  std::string state_file;                        // the cluster report, for cm-mcast send --members
  std::string report_to;                         // a copy for the manager (a file)
  std::string report_cmd;                        // ... or a command reading it on stdin
  std::string on_change;                         // run (sh -c) on every transition, in order
  std::function<void(const std::string&)> log;   // what it does (-v)
  std::function<void(const std::string&)> warn;  // what the administrator must hear of
  std::function<void(const std::string&)> info;  // ... and that it is over
};

// One way the leader hands the cluster report on (--report-to, or
// --report-cmd): a failure is said when it starts and when its reason
// changes, not on every report, and once more when it works again.
class ReportTrouble {
 public:
  explicit ReportTrouble(std::string what) : what_(std::move(what)) {}
  // The warning to give for this failure, or "" when it was given.
  std::string failed(const std::string& why);
  // After failures, the line that says it works again; else "".
  std::string succeeded();
  bool failing() const { return failing_; }

 private:
  std::string what_, why_;
  bool failing_ = false;
};

// Runs until SIGTERM or SIGINT (then resigns cleanly if leading).
Status run_daemon(DaemonOptions opt);

// The cluster report of one elector (what the state file holds).
nlohmann::json cluster_report(const Elector& e, const DaemonOptions& opt, uint64_t seq, int64_t wall_ms,
                              const nlohmann::json& counters);

}  // namespace cm::elect
