// The scripted side of cm-push: asking `serve` to distribute a file and
// reading its reports, and handing it a cluster report (cm-elect's
// --report-cmd). Output formats are documented in cm-push(1).
#pragma once

#include <functional>
#include <memory>
#include <string>
#include <vector>

#include <nlohmann/json.hpp>

#include "net/tls.hpp"

namespace cm::push {

struct SendRequest {
  std::string path;        // on the manager's file system
  std::string group;       // segments, "a,b" (default all)
  nlohmann::json leaders;  // or a static list, in order
  std::string quorum;      // "N", "P%" or "" (all)
  bool cut_through = true;
  bool deliver = true;
  uint64_t chunk_size = 0;  // 0: the default
};

// Sends and waits for the result, calling progress with each report.
Result<nlohmann::json> send_job(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                                const SendRequest& req,
                                const std::function<void(const nlohmann::json&)>& progress);
// Starts a job and returns its id without waiting.
Result<uint64_t> start_job(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                           const SendRequest& req);
// One job's report (or, without a job, every job and the registry).
Result<nlohmann::json> query(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                             std::optional<uint64_t> job);
Status send_cluster_report(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                           const nlohmann::json& report);

// "ID ADDRESS[:PORT] [LOCATION]" lines ('#' comments), or a JSON array of
// {"id", "address", "location"}; the order is the administrator's.
Result<nlohmann::json> parse_leaders(const std::string& text, const std::string& name, uint16_t default_port);

// A job's report for people; and a one-line progress summary.
std::string report_text(const nlohmann::json& job);
std::string progress_line(const nlohmann::json& job);

}  // namespace cm::push
