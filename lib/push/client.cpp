#include "push/client.hpp"

#include <signal.h>

#include <cstdio>
#include <set>
#include <sstream>

#include "push/proto.hpp"

namespace cm::push {

namespace {

Message request(const SendRequest& req) {
  Message m;
  m.type = Msg::Send;
  m.body = {{"path", req.path}, {"cut_through", req.cut_through}, {"deliver", req.deliver}};
  if (!req.group.empty())
    m.body["group"] = req.group;
  if (req.leaders.is_array())
    m.body["leaders"] = req.leaders;
  if (!req.quorum.empty())
    m.body["quorum"] = req.quorum;
  if (req.chunk_size != 0)
    m.body["chunk_size"] = req.chunk_size;
  return m;
}

Result<std::unique_ptr<net::TlsStream>> open(const std::shared_ptr<net::TlsContext>& tls,
                                             const net::Endpoint& to) {
  ::signal(SIGPIPE, SIG_IGN);
  return net::TlsStream::connect(tls, to, 10000);
}

Error refused(const Message& m, const net::Endpoint& to) {
  // A refusal of who we are (our certificate's name) is an authentication
  // failure (exit 4, as cm-push(1) says), one of our options (a quorum
  // over the leaders the manager knows) a usage error; any other, a
  // failure (exit 1).
  auto flag = [&](const char* key) {
    auto it = m.body.find(key);
    return it != m.body.end() && it->is_boolean() && it->get<bool>();
  };
  return Error(
      "the manager " + to.str() + " refused: " + m.body.value("error", std::string(msg_name(m.type))),
      flag("denied")  ? kExitSecurity
      : flag("usage") ? kExitUsage
                      : kExitFailure);
}

std::string mib(uint64_t b) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f MiB", static_cast<double>(b) / (1 << 20));
  return buf;
}

}  // namespace

Result<uint64_t> start_job(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                           const SendRequest& req) {
  CM_ASSIGN(auto s, open(tls, manager));
  s->set_timeout(600000);  // describing a large file takes a while
  CM_TRY(send(*s, request(req)));
  CM_ASSIGN(Message r, receive(*s, "the manager " + manager.str()));
  if (r.type != Msg::Job)
    return refused(r, manager);
  return r.num("job");
}

Result<nlohmann::json> send_job(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                                const SendRequest& req,
                                const std::function<void(const nlohmann::json&)>& progress) {
  CM_ASSIGN(auto s, open(tls, manager));
  s->set_timeout(600000);
  CM_TRY(send(*s, request(req)));
  CM_ASSIGN(Message r, receive(*s, "the manager " + manager.str()));
  if (r.type != Msg::Job)
    return refused(r, manager);
  CM_ASSIGN(uint64_t id, r.num("job"));
  // The manager reports twice a second; a minute of silence is a lost manager.
  s->set_timeout(60000);
  for (;;) {
    auto m = receive(*s, "the manager " + manager.str());
    if (!m.ok())
      return Error(m.error().message + " (job " + std::to_string(id) + " may go on: cm-push status " +
                       std::to_string(id) + ")",
                   kExitFailure);
    if (m->type == Msg::Result)
      return m->body;
    if (m->type != Msg::Progress)
      return refused(*m, manager);
    if (progress)
      progress(m->body);
  }
}

Result<nlohmann::json> query(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                             std::optional<uint64_t> job) {
  CM_ASSIGN(auto s, open(tls, manager));
  Message q;
  q.type = Msg::Query;
  if (job)
    q.body["job"] = *job;
  CM_TRY(send(*s, q));
  CM_ASSIGN(Message r, receive(*s, "the manager " + manager.str()));
  if (r.type != Msg::Result && r.type != Msg::Progress)
    return refused(r, manager);
  return r.body;
}

Status send_cluster_report(const std::shared_ptr<net::TlsContext>& tls, const net::Endpoint& manager,
                           const nlohmann::json& report) {
  CM_ASSIGN(auto s, open(tls, manager));
  Message m;
  m.type = Msg::Cluster;
  m.body["report"] = report;
  CM_TRY(send(*s, m));
  CM_ASSIGN(Message r, receive(*s, "the manager " + manager.str()));
  if (r.type != Msg::Ok)
    return refused(r, manager);
  return {};
}

Result<nlohmann::json> parse_leaders(const std::string& text, const std::string& name,
                                     uint16_t default_port) {
  nlohmann::json out = nlohmann::json::array();
  size_t first = text.find_first_not_of(" \t\r\n");
  if (first != std::string::npos && text[first] == '[') {
    auto j = nlohmann::json::parse(text, nullptr, false);
    if (j.is_discarded() || !j.is_array())
      return Error("'" + name + "' is not a JSON array of leaders", kExitBadInput);
    for (const auto& x : j) {
      if (!x.is_object() || !x.contains("id") || !x["id"].is_string() || !x.contains("address") ||
          !x["address"].is_string())
        return Error("'" + name + "': every leader needs an \"id\" and an \"address\"", kExitBadInput);
      std::string a = x["address"].get<std::string>();
      if (a.find(':') == std::string::npos)
        a += ":" + std::to_string(default_port);
      if (!net::parse_endpoint(a).ok())
        return Error("'" + name + "': bad address '" + a + "'", kExitBadInput);
      out.push_back({{"id", x["id"]}, {"address", a}, {"location", x.value("location", std::string())}});
    }
  } else {
    std::istringstream in(text);
    std::string line;
    for (int n = 1; std::getline(in, line); n++) {
      if (size_t h = line.find('#'); h != std::string::npos)
        line.erase(h);
      std::istringstream words(line);
      std::string id, addr, location, extra;
      if (!(words >> id))
        continue;
      if (!(words >> addr))
        return Error(name + ":" + std::to_string(n) + ": a leader needs an id and an address", kExitBadInput);
      words >> location;
      if (words >> extra)
        return Error(name + ":" + std::to_string(n) + ": too many words", kExitBadInput);
      if (addr.find(':') == std::string::npos)
        addr += ":" + std::to_string(default_port);
      if (!net::parse_endpoint(addr).ok())
        return Error(name + ":" + std::to_string(n) + ": bad address '" + addr + "'", kExitBadInput);
      out.push_back({{"id", id}, {"address", addr}, {"location", location}});
    }
  }
  if (out.empty())
    return Error("'" + name + "' lists no leaders", kExitBadInput);
  // Said here, as malformed input (exit 3), not later as the manager's
  // refusal of the job.
  std::set<std::string> seen;
  for (const auto& l : out)
    if (!seen.insert(l["id"].get<std::string>()).second)
      return Error("'" + name + "' lists leader '" + l["id"].get<std::string>() + "' twice", kExitBadInput);
  return out;
}

std::string progress_line(const nlohmann::json& job) {
  size_t have = 0, n = 0;
  uint64_t least = UINT64_MAX;
  for (const auto& l : job.value("leaders", nlohmann::json::array())) {
    n++;
    std::string st = l.value("state", std::string());
    if (st == "complete" || st == "delivered")
      have++;
    else if (st != "failed")
      least = std::min<uint64_t>(least, l.value("bytes", uint64_t{0}));
  }
  std::string s = "job " + std::to_string(job.value("job", 0)) + ": " + std::to_string(have) + " of " +
                  std::to_string(n) + " leaders have it";
  if (least != UINT64_MAX)
    s += ", the slowest at " + mib(least) + " of " + mib(job.value("bytes", uint64_t{0}));
  return s;
}

std::string report_text(const nlohmann::json& job) {
  std::ostringstream o;
  o << "job " << job.value("job", 0) << ": " << job.value("name", std::string()) << ", "
    << job.value("bytes", uint64_t{0}) << " bytes, " << job.value("leaders_ok", 0) << " of "
    << job.value("leaders", nlohmann::json::array()).size() << " leaders ok (quorum "
    << job.value("quorum", 0) << ")";
  if (job.contains("seconds"))
    o << ", " << job["seconds"].get<double>() << " s";
  if (job.contains("servers")) {
    const auto& sv = job["servers"];
    if (sv.value("reported", 0) > 0)
      o << ", servers " << sv.value("ok", 0) << " of " << sv.value("reported", 0) << " ok";
  }
  o << (job.value("succeeded", false) ? ""
        : job.value("done", false)    ? " -- FAILED"
                                      : " -- in progress")
    << "\n";
  char line[512];
  std::snprintf(line, sizeof line, "  %-16s %-10s %-16s %8s %9s  %s\n", "LEADER", "STATE", "SOURCE",
                "SECONDS", "SERVERS", "NOTE");
  o << line;
  for (const auto& l : job.value("leaders", nlohmann::json::array())) {
    std::string secs = l.contains("seconds") ? std::to_string(l["seconds"].get<double>()).substr(0, 6) : "-";
    std::string servers = "-";
    if (l.contains("group") && l["group"].is_object() && l["group"].contains("members")) {
      size_t ok = 0, all = 0;
      for (const auto& m : l["group"]["members"]) {
        if (!counted_member(m))
          continue;
        all++;
        ok += m.is_object() && m.value("succeeded", false);
      }
      servers = std::to_string(ok) + "/" + std::to_string(all);
    }
    std::string note = l.value("failure", std::string());
    if (note.empty() && l.value("deliver_exit", 0) > 0)
      note = "deliver command exited " + std::to_string(l.value("deliver_exit", 0));
    if (note.empty() && l.contains("failed_sources"))
      note = "resumed after: " + l["failed_sources"].back().get<std::string>();
    std::snprintf(line, sizeof line, "  %-16s %-10s %-16s %8s %9s  %s\n",
                  l.value("id", std::string()).c_str(), l.value("state", std::string()).c_str(),
                  l.value("source", std::string()).c_str(), secs.c_str(), servers.c_str(), note.c_str());
    o << line;
  }
  return o.str();
}

}  // namespace cm::push
