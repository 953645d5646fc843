// cm-mcast: reliable multicast of a file from a group leader to its
// cluster, with status reports (cm-mcast(1)). Options and wiring only.
#include <unistd.h>

#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "mcast/daemon.hpp"
#include "util/hash.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;

namespace {

void common(po::options_description& d) {
  d.add_options()  //
      ("channel", po::value<std::string>()->default_value("239.192.77.2:7702")->value_name("GROUP:PORT"),
       "the data channel")  //
      ("interface", po::value<std::string>()->value_name("ADDR"),
       "this server's address on the segment (required)")  //
      ("key", po::value<std::string>()->value_name("FILE"),
       "authenticate every packet (cm-assign keygen --encrypt)");
}

void send_options(po::options_description& d) {
  common(d);
  d.add_options()  //
      ("members", po::value<std::string>()->value_name("FILE"),
       "the expected members: cm-elect's state file")                                                       //
      ("expect", po::value<size_t>()->value_name("N"), "expect N members (without --members)")              //
      ("quorum", po::value<std::string>()->value_name("N|P%"), "members that must succeed (default: all)")  //
      ("rate", po::value<std::string>()->default_value("500m")->value_name("BITS"),
       "the most bits per second to send, headers included (k, m, g)")  //
      ("frame-size", po::value<uint32_t>()->value_name("BYTES"),
       "data per packet (default: what one packet of 1500 bytes, or of the interface if smaller, carries)")  //
      ("fec", po::value<uint32_t>()->default_value(mcast::kDefaultFecBlock)->value_name("K"),
       "repair frames over blocks of K frames, 2 to 200 (0: resend lost frames instead)")  //
      ("max-idle-passes", po::value<int>()->default_value(5)->value_name("N"),
       "stop after N passes (and 3 s) without progress")  //
      ("report-timeout", po::value<double>()->default_value(60)->value_name("SECONDS"),
       "how long to wait for members' reports")  //
      ("self-exec", po::value<std::string>()->value_name("CMD"),
       "the leader is a member too: run CMD on FILE here ({} is its path) and report it")  //
      ("self-id", po::value<std::string>()->value_name("NAME"),
       "this leader's id in the report (default: the --members report's, or the host name)")  //
      ("follow", po::value<std::string>()->value_name("PART"),
       "FILE is still being written as PART: send as it grows (needs --size, --sha256)")                   //
      ("size", po::value<uint64_t>()->value_name("BYTES"), "with --follow: FILE's size when whole")        //
      ("sha256", po::value<std::string>()->value_name("HEX"), "with --follow: FILE's SHA-256 when whole")  //
      ("follow-idle", po::value<double>()->default_value(60)->value_name("SECONDS"),
       "with --follow: fail when PART does not grow for this long");
}

void recv_options(po::options_description& d) {
  common(d);
  d.add_options()                                                                                        //
      ("dir", po::value<std::string>()->value_name("DIR"), "where received files go (required)")         //
      ("id", po::value<std::string>()->value_name("NAME"), "this member's id (default: the host name)")  //
      ("exec", po::value<std::string>()->value_name("CMD"),
       "run CMD (sh -c) on each complete file, {} being its path; its output is reported")  //
      ("once", "stop after the first file (and its command)")                               //
      ("keep", po::value<unsigned>()->default_value(20)->value_name("N"),
       "received files kept in DIR, the newest (0: all)");
}

Result<uint64_t> parse_rate(const std::string& s) {
  char* end = nullptr;
  double v = std::strtod(s.c_str(), &end);
  double mult = 1;
  std::string unit(end == nullptr ? "" : end);
  if (unit == "k" || unit == "K")
    mult = 1e3;
  else if (unit == "m" || unit == "M")
    mult = 1e6;
  else if (unit == "g" || unit == "G")
    mult = 1e9;
  else if (!unit.empty())
    return Error("bad --rate '" + s + "'", kExitUsage);
  if (end == s.c_str() || !(v * mult >= 1e5 && v * mult <= 1e11))
    return Error("--rate must be between 100k and 100g", kExitUsage);
  return static_cast<uint64_t>(v * mult);
}

struct Net {
  net::Endpoint channel;
  in_addr interface {};
  std::optional<crypto::SymmetricKey> key;
};

Result<Net> net_of(const cli::Context& ctx) {
  if (!ctx.vm.count("interface"))
    return Error("--interface is required: this server's address on the segment", kExitUsage);
  Net n;
  CM_ASSIGN(n.channel, net::parse_endpoint(ctx.vm["channel"].as<std::string>()));
  if (!net::is_multicast(n.channel.addr))
    return Error("--channel must be a multicast group", kExitUsage);
  CM_ASSIGN(n.interface, net::parse_address(ctx.vm["interface"].as<std::string>()));
  if (ctx.vm.count("key")) {
    CM_ASSIGN(n.key, crypto::SymmetricKey::load(ctx.vm["key"].as<std::string>()));
  }
  return n;
}

Status run_send(cli::Context& ctx) {
  CM_ASSIGN(Net n, net_of(ctx));
  mcast::SendOptions o;
  o.file = ctx.args[0];
  o.channel = n.channel;
  o.interface = n.interface;
  o.key = n.key ? &*n.key : nullptr;
  CM_ASSIGN(o.rate, parse_rate(ctx.vm["rate"].as<std::string>()));
  if (ctx.vm.count("frame-size")) {
    o.frame_size = ctx.vm["frame-size"].as<uint32_t>();
    if (o.frame_size < 64 || o.frame_size > 60000)
      return Error("--frame-size must be between 64 and 60000", kExitUsage);
  }
  o.fec_block = ctx.vm["fec"].as<uint32_t>();
  if (o.fec_block == 1 || o.fec_block > mcast::kMaxFecBlock)
    return Error("--fec must be 0 (none) or between 2 and " + std::to_string(mcast::kMaxFecBlock),
                 kExitUsage);
  if (ctx.vm.count("members") == ctx.vm.count("expect"))
    return Error("give --members FILE or --expect N", kExitUsage);
  if (ctx.vm.count("self-exec"))
    o.self_exec = ctx.vm["self-exec"].as<std::string>();
  if (ctx.vm.count("members")) {
    CM_ASSIGN(o.expected,
              mcast::members_from_report(ctx.vm["members"].as<std::string>(), n.channel.port, &o.self_id));
    if (o.expected.empty() && o.self_exec.empty())
      return Error("'" + ctx.vm["members"].as<std::string>() + "' lists no member besides this leader",
                   kExitFailure);
  } else {
    o.expect_count = ctx.vm["expect"].as<size_t>();
    if (o.expect_count == 0)
      return Error("--expect must be at least 1", kExitUsage);
  }
  if (ctx.vm.count("self-id"))
    o.self_id = ctx.vm["self-id"].as<std::string>();
  if (o.self_id.empty()) {
    char host[256] = {0};
    ::gethostname(host, sizeof host - 1);
    o.self_id = host;
  }
  if (ctx.vm.count("follow")) {
    if (!ctx.vm.count("size") || !ctx.vm.count("sha256"))
      return Error("--follow needs --size and --sha256", kExitUsage);
    o.follow = ctx.vm["follow"].as<std::string>();
    o.follow_size = ctx.vm["size"].as<uint64_t>();
    if (!from_hex(ctx.vm["sha256"].as<std::string>(), o.follow_sha256))
      return Error("bad --sha256 '" + ctx.vm["sha256"].as<std::string>() + "' (64 hex digits)", kExitUsage);
    o.follow_idle = ctx.vm["follow-idle"].as<double>();
    if (!(o.follow_idle > 0 && o.follow_idle <= 86400))
      return Error("--follow-idle must be between 0 and 86400 seconds", kExitUsage);
  } else if (ctx.vm.count("size") || ctx.vm.count("sha256")) {
    return Error("--size and --sha256 go with --follow", kExitUsage);
  }
  if (ctx.vm.count("quorum"))
    o.quorum = ctx.vm["quorum"].as<std::string>();
  o.max_idle_passes = ctx.vm["max-idle-passes"].as<int>();
  if (o.max_idle_passes < 1 || o.max_idle_passes > 1000)
    return Error("--max-idle-passes must be between 1 and 1000", kExitUsage);
  o.report_timeout = ctx.vm["report-timeout"].as<double>();
  if (!(o.report_timeout >= 0 && o.report_timeout <= 86400))
    return Error("--report-timeout must be between 0 and 86400 seconds", kExitUsage);
  cli::Progress progress(ctx.progress);
  o.progress = [&](const std::string& line) { progress.update([&] { return "cm-mcast: " + line; }); };
  CM_ASSIGN(mcast::SendResult r, mcast::run_send(o));
  progress.done();
  std::cout << (ctx.json ? json_text(mcast::to_json(r)) + "\n" : mcast::to_text(r)) << std::flush;
  if (!r.succeeded)
    return Error("", kExitPartial);
  return {};
}

Status run_recv(cli::Context& ctx) {
  CM_ASSIGN(Net n, net_of(ctx));
  if (!ctx.vm.count("dir"))
    return Error("--dir is required", kExitUsage);
  mcast::RecvOptions o;
  o.dir = ctx.vm["dir"].as<std::string>();
  char host[256] = {0};
  ::gethostname(host, sizeof host - 1);
  o.id = ctx.vm.count("id") ? ctx.vm["id"].as<std::string>() : host;
  if (o.id.empty() || o.id.size() > 64)
    return Error("--id must be 1 to 64 bytes", kExitUsage);
  o.channel = n.channel;
  o.interface = n.interface;
  o.key = n.key ? &*n.key : nullptr;
  if (ctx.vm.count("exec"))
    o.exec = ctx.vm["exec"].as<std::string>();
  o.once = ctx.vm.count("once") > 0;
  o.keep = ctx.vm["keep"].as<unsigned>();
  o.log = [&](const std::string& m) { ctx.diag.verbose(m); };
  o.error = [&](const std::string& m) { ctx.diag.error(m); };
  o.completed = [&](const nlohmann::json& j) {
    if (ctx.json)
      std::cout << json_text(j) << "\n" << std::flush;
    else
      ctx.diag.info("received " + j.value("file", std::string()));
  };
  return mcast::run_recv(o);
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-mcast";
  p.purpose = "Deliver a file to every member of a cluster by reliable multicast, and collect their reports.";
  p.commands.push_back(cli::Command{"send", "--interface ADDR (--members FILE | --expect N) [options] FILE",
                                    "Send FILE to the cluster; print the group report.", 1, 1, send_options,
                                    run_send, true});
  p.commands.push_back(cli::Command{"recv", "--interface ADDR --dir DIR [--exec CMD] [options]",
                                    "Receive files (a daemon), run CMD on each, report back.", 0, 0,
                                    recv_options, run_recv, true});
  return cli::run(p, argc, argv);
}
