// cm-elect: group leader election, registration and cluster reports
// (cm-elect(1)). Options and wiring only.
#include <unistd.h>

#include <chrono>
#include <iostream>
#include <nlohmann/json.hpp>
#include <sstream>

#include "cli/cli.hpp"
#include "elect/daemon.hpp"
#include "util/clock.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;

namespace {

constexpr const char* kDefaultState = "/run/cm/elect.json";

std::string hostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

void run_options(po::options_description& d) {
  d.add_options()  //
      ("channel", po::value<std::string>()->default_value("239.192.77.1:7701")->value_name("GROUP:PORT"),
       "the control channel")  //
      ("interface", po::value<std::string>()->value_name("ADDR"),
       "this server's address on the segment (required)")                                                 //
      ("id", po::value<std::string>()->value_name("NAME"), "this server's id (default: the host name)")   //
      ("priority", po::value<uint32_t>()->value_name("N"), "voting priority 1-1000 (default: measured)")  //
      ("weight", po::value<double>()->default_value(0.5)->value_name("W"),
       "the administrator's factor in the measured priority, 0-1")           //
      ("never-lead", "take part, register, never lead")                      //
      ("no-preempt", "a better candidate does not take over a live leader")  //
      ("preempt-margin", po::value<uint32_t>()->value_name("N"),
       "preempt only when better by more than N (default 0 with --priority, 50 when measured)")  //
      ("leaders", po::value<std::string>()->value_name("ID,ID..."),
       "no election: only these may lead, the first alive one does")  //
      ("interval", po::value<double>()->default_value(0.2, "0.2")->value_name("SECONDS"),
       "Leader Alive period")  //
      ("dead-factor", po::value<int>()->default_value(3)->value_name("N"),
       "missed LAs before the leader is dead")  //
      ("vote-window", po::value<double>()->value_name("SECONDS"),
       "voting open time (default: interval/5, >= 10 ms)")  //
      ("member-interval", po::value<double>()->default_value(1.0)->value_name("SECONDS"),
       "a member's registration keepalive")  //
      ("member-timeout", po::value<double>()->default_value(5.0)->value_name("SECONDS"),
       "silent members are dropped after this")  //
      ("report-delay", po::value<double>()->default_value(0.3, "0.3")->value_name("SECONDS"),
       "the registration report follows the last new registration by this")  //
      ("report-interval", po::value<double>()->default_value(5.0)->value_name("SECONDS"),
       "and is repeated this often (so is the cluster report)")  //
      ("key", po::value<std::string>()->value_name("FILE"),
       "authenticate every message (cm-assign keygen --encrypt)")  //
      ("peer", po::value<std::vector<std::string>>()->value_name("ADDR:PORT"),
       "unicast to these peers instead of multicast (repeat)")  //
      ("state-file", po::value<std::string>()->default_value(kDefaultState)->value_name("FILE"),
       "the cluster report, for cm-mcast send --members")  //
      ("report-to", po::value<std::string>()->value_name("FILE"),
       "the leader writes the cluster report here too")  //
      ("report-cmd", po::value<std::string>()->value_name("CMD"),
       "the leader runs CMD with the report on stdin")                                                     //
      ("on-change", po::value<std::string>()->value_name("CMD"), "run CMD on every transition, in order")  //
      ("segment", po::value<std::string>()->default_value("")->value_name("NAME"),
       "the segment's name, for reports")  //
      ("location", po::value<std::string>()->default_value("")->value_name("TEXT"),
       "where it is, for reports")  //
      ("name", po::value<std::string>()->value_name("NAME"),
       "host name to register (default: the host name)")  //
      ("address", po::value<std::string>()->value_name("ADDR"),
       "data address to register (default: --interface)")                                          //
      ("port", po::value<uint32_t>()->default_value(0)->value_name("N"), "data port to register")  //
      ("caps", po::value<std::string>()->default_value("{}")->value_name("JSON"),
       "capabilities to register")  //
      ("data-dir", po::value<std::string>()->default_value("/")->value_name("DIR"),
       "where content lives (its free space counts in the priority)");
}

void status_options(po::options_description& d) {
  d.add_options()("state-file", po::value<std::string>()->default_value(kDefaultState)->value_name("FILE"),
                  "the file cm-elect run writes");
}

elect::Nanos secs(const cli::Context& ctx, const char* name) {
  return static_cast<elect::Nanos>(ctx.vm[name].as<double>() * 1e9);
}

Status run(cli::Context& ctx) {
  if (!ctx.vm.count("interface"))
    return Error("--interface is required: this server's address on the segment", kExitUsage);
  elect::DaemonOptions o;
  CM_ASSIGN(o.channel, net::parse_endpoint(ctx.vm["channel"].as<std::string>()));
  CM_ASSIGN(o.interface, net::parse_address(ctx.vm["interface"].as<std::string>()));
  if (ctx.vm.count("peer"))
    for (const std::string& p : ctx.vm["peer"].as<std::vector<std::string>>()) {
      CM_ASSIGN(net::Endpoint e, net::parse_endpoint(p));
      o.peers.push_back(e);
    }
  if (o.peers.empty() && !net::is_multicast(o.channel.addr))
    return Error("--channel must be a multicast group (or give --peer)", kExitUsage);
  elect::Config& c = o.cfg;
  c.id = ctx.vm.count("id") ? ctx.vm["id"].as<std::string>() : hostname();
  if (c.id.empty() || c.id.size() > elect::kMaxId)
    return Error("--id must be 1 to 64 bytes", kExitUsage);
  c.la_interval = secs(ctx, "interval");
  if (c.la_interval < 5 * elect::kMs || c.la_interval > 60000 * elect::kMs)
    return Error("--interval must be between 0.005 and 60 seconds", kExitUsage);
  c.dead_factor = ctx.vm["dead-factor"].as<int>();
  if (c.dead_factor < 2 || c.dead_factor > 100)
    return Error("--dead-factor must be between 2 and 100", kExitUsage);
  if (ctx.vm.count("vote-window")) {
    c.vote_window = secs(ctx, "vote-window");
    if (c.vote_window < 0 || c.vote_window > 60000 * elect::kMs)
      return Error("--vote-window must be between 0 and 60 seconds", kExitUsage);
  }
  c.member_interval = secs(ctx, "member-interval");
  c.member_timeout = secs(ctx, "member-timeout");
  c.report_delay = secs(ctx, "report-delay");
  if (c.report_delay < 0 || c.report_delay > 3600000 * elect::kMs)
    return Error("--report-delay must be between 0 and 3600 seconds", kExitUsage);
  c.report_interval = secs(ctx, "report-interval");
  if (c.member_interval <= 0 || c.member_timeout <= c.member_interval || c.report_interval <= 0)
    return Error("--member-timeout must exceed --member-interval, and intervals must be positive",
                 kExitUsage);
  c.never_lead = ctx.vm.count("never-lead") > 0;
  c.preempt = ctx.vm.count("no-preempt") == 0;
  // One way to set the priority: measured (weighed by --weight), given,
  // or by rank in --leaders. Two at once would leave one silently unused.
  if (ctx.vm.count("priority") + ctx.vm.count("leaders") > 1)
    return Error("--priority and --leaders are two ways to set the priority: give one", kExitUsage);
  if (!ctx.vm["weight"].defaulted() && (ctx.vm.count("priority") || ctx.vm.count("leaders")))
    return Error(std::string("--weight is for the measured priority, not with ") +
                     (ctx.vm.count("priority") ? "--priority" : "--leaders"),
                 kExitUsage);
  o.measured = !ctx.vm.count("priority");
  if (ctx.vm.count("priority")) {
    c.priority = ctx.vm["priority"].as<uint32_t>();
    if (c.priority < 1 || c.priority > 1000)
      return Error("--priority must be between 1 and 1000", kExitUsage);
  }
  c.preempt_margin = ctx.vm.count("preempt-margin") ? ctx.vm["preempt-margin"].as<uint32_t>()
                     : o.measured                   ? 50
                                                    : 0;
  if (ctx.vm.count("leaders")) {
    // A static order: the first listed leads while alive.
    std::string list = ctx.vm["leaders"].as<std::string>();
    size_t pos = 0, rank = 0;
    bool listed = false;
    while (pos <= list.size()) {
      size_t comma = list.find(',', pos);
      std::string name = list.substr(pos, comma == std::string::npos ? std::string::npos : comma - pos);
      if (name.empty())
        return Error("--leaders '" + list + "' has an empty name: give ids separated by commas", kExitUsage);
      if (name == c.id) {
        listed = true;
        c.priority = static_cast<uint32_t>(1000 - 10 * std::min<size_t>(rank, 99));
      }
      rank++;
      if (comma == std::string::npos)
        break;
      pos = comma + 1;
    }
    o.measured = false;
    c.never_lead = c.never_lead || !listed;
    c.preempt_margin = 0;
  }
  c.name = ctx.vm.count("name") ? ctx.vm["name"].as<std::string>() : hostname();
  c.address =
      ctx.vm.count("address") ? ctx.vm["address"].as<std::string>() : ctx.vm["interface"].as<std::string>();
  c.port = ctx.vm["port"].as<uint32_t>();
  if (c.port > 65535)
    return Error("--port must be between 0 and 65535", kExitUsage);
  c.caps = ctx.vm["caps"].as<std::string>();
  if (!nlohmann::json::parse(c.caps, nullptr, false).is_object() || c.caps.size() > elect::kMaxCaps)
    return Error("--caps must be a JSON object of at most 1024 bytes", kExitUsage);
  c.seed = static_cast<uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^
           static_cast<uint64_t>(::getpid());
  std::optional<crypto::SymmetricKey> key;
  if (ctx.vm.count("key")) {
    CM_ASSIGN(key, crypto::SymmetricKey::load(ctx.vm["key"].as<std::string>()));
    o.key = &*key;
  }
  o.weight = ctx.vm["weight"].as<double>();
  if (!(o.weight >= 0 && o.weight <= 1))
    return Error("--weight must be between 0 and 1", kExitUsage);
  o.data_dir = ctx.vm["data-dir"].as<std::string>();
  o.segment = ctx.vm["segment"].as<std::string>();
  o.location = ctx.vm["location"].as<std::string>();
  o.state_file = ctx.vm["state-file"].as<std::string>();
  if (ctx.vm.count("report-to"))
    o.report_to = ctx.vm["report-to"].as<std::string>();
  if (ctx.vm.count("report-cmd"))
    o.report_cmd = ctx.vm["report-cmd"].as<std::string>();
  if (ctx.vm.count("on-change"))
    o.on_change = ctx.vm["on-change"].as<std::string>();
  o.log = [&](const std::string& m) { ctx.diag.verbose(m); };
  o.warn = [&](const std::string& m) { ctx.diag.warning(m); };
  o.info = [&](const std::string& m) { ctx.diag.info(m); };
  return elect::run_daemon(std::move(o));
}

Status status(cli::Context& ctx) {
  std::string path = ctx.vm["state-file"].as<std::string>();
  CM_ASSIGN(auto in, open_input(path));
  CM_ASSIGN(std::string text, read_all(*in, 16 << 20));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("state"))
    return Error("'" + path + "' is not a cm-elect state file", kExitBadInput);
  // A field of the wrong type (hand-edited, or another program's file)
  // is a malformed file, said before anything is printed.
  std::ostringstream out;
  try {
    int64_t now = wall_ms();
    double age = static_cast<double>(now - j.value("updated_ms", int64_t{0})) / 1000.0;
    j["age_seconds"] = age;
    if (ctx.json) {
      std::cout << json_text(j) << "\n";
      return {};
    }
    out << j.value("id", std::string()) << ": " << j.value("state", std::string()) << ", priority "
        << j.value("priority", 0) << "\n";
    if (j["leader"].is_object())
      out << "leader: " << j["leader"].value("id", std::string()) << " (priority "
          << j["leader"].value("priority", 0) << ")\n";
    else
      out << "leader: none known\n";
    if (j["members"].is_array() && !j["members"].empty()) {
      out << "members (" << j["members"].size() << "):\n";
      for (const auto& m : j["members"])
        out << "  " << m.value("id", std::string()) << "  " << m.value("address", std::string()) << "  "
            << m.value("name", std::string()) << "\n";
    } else {
      out << "registered with the leader: " << (j.value("registered", false) ? "yes" : "no") << "\n";
    }
    char buf[64];
    std::snprintf(buf, sizeof buf, "%.1f", age);
    out << "updated " << buf << " s ago" << (age > 15 ? " (is cm-elect running?)" : "") << "\n";
  } catch (const nlohmann::json::exception& e) {
    return Error("'" + path + "' is not a cm-elect state file (" + e.what() + ")", kExitBadInput);
  }
  std::cout << out.str();
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-elect";
  p.purpose = "Elect the group leader of a segment, register its members, report the cluster.";
  p.commands.push_back(cli::Command{"run", "--interface ADDR [options]",
                                    "Take part in the election on this server (a daemon; stop with SIGTERM).",
                                    0, 0, run_options, run, false});
  p.commands.push_back(cli::Command{"status", "[--state-file FILE] [--json]",
                                    "Tell who leads and who is registered.", 0, 0, status_options, status,
                                    true});
  return cli::run(p, argc, argv);
}
