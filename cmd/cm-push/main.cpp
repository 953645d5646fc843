// cm-push: the store-and-forward tree from the manager to every group
// leader (cm-push(1)). Options and wiring only.
#include <unistd.h>

#include <algorithm>
#include <charconv>
#include <climits>
#include <cstdlib>
#include <iostream>
#include <nlohmann/json.hpp>

#include "cli/cli.hpp"
#include "push/agent.hpp"
#include "push/client.hpp"
#include "push/job.hpp"
#include "push/serve.hpp"
#include "util/io.hpp"
#include "util/quorum.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;

namespace {

constexpr const char* kManagerPort = "7800";
constexpr uint16_t kAgentPort = 7801;

std::string hostname() {
  char buf[256] = {0};
  ::gethostname(buf, sizeof buf - 1);
  return buf;
}

void tls_options(po::options_description& d) {
  d.add_options()  //
      ("tls", po::value<std::string>()->default_value("/etc/cm/tls")->value_name("DIR"),
       "the site's keys: DIR/ca.crt, DIR/NAME.crt, DIR/NAME.key")  //
      ("name", po::value<std::string>()->value_name("NAME"),
       "whose certificate (default: 'manager' for serve, send and status; the host name otherwise)")      //
      ("ca", po::value<std::string>()->value_name("FILE"), "the CA certificate (instead of DIR/ca.crt)")  //
      ("cert", po::value<std::string>()->value_name("FILE"), "this host's certificate")                   //
      ("key", po::value<std::string>()->value_name("FILE"), "its private key");
}

void manager_option(po::options_description& d) {
  d.add_options()("manager",
                  po::value<std::string>()
                      ->default_value(std::string("127.0.0.1:") + kManagerPort)
                      ->value_name("ADDR:PORT"),
                  "where cm-push serve listens");
}

Result<std::shared_ptr<net::TlsContext>> tls_of(const cli::Context& ctx, const std::string& default_name) {
  std::string dir = ctx.vm["tls"].as<std::string>();
  std::string name = ctx.vm.count("name") ? ctx.vm["name"].as<std::string>() : default_name;
  auto pick = [&](const char* opt, const std::string& dflt) {
    return ctx.vm.count(opt) ? ctx.vm[opt].as<std::string>() : dflt;
  };
  return net::TlsContext::load(net::TlsFiles{pick("ca", dir + "/ca.crt"),
                                             pick("cert", dir + "/" + name + ".crt"),
                                             pick("key", dir + "/" + name + ".key")});
}

Result<net::Endpoint> endpoint(const cli::Context& ctx, const char* opt, const std::string& default_port) {
  std::string s = ctx.vm[opt].as<std::string>();
  if (s.find(':') == std::string::npos)
    s += ":" + default_port;
  auto e = net::parse_endpoint(s);
  if (!e.ok())
    return Error("--" + std::string(opt) + ": " + e.error().message, kExitUsage);
  return e;
}

void log_to(cli::Context& ctx, std::function<void(const std::string&)>& log) {
  log = [&ctx](const std::string& m) { ctx.diag.info(m); };
}

void serve_options(po::options_description& d) {
  tls_options(d);
  d.add_options()  //
      ("listen",
       po::value<std::string>()
           ->default_value(std::string("0.0.0.0:") + kManagerPort)
           ->value_name("ADDR:PORT"),
       "where to listen")  //
      ("advertise", po::value<std::string>()->value_name("ADDR[:PORT]"),
       "where leaders reach the manager (default: the --listen address)")  //
      ("state", po::value<std::string>()->default_value("/var/lib/cm/push")->value_name("DIR"),
       "jobs, their copies and the registry of leaders")  //
      ("agent-port", po::value<uint16_t>()->default_value(kAgentPort)->value_name("PORT"),
       "where the leaders' agents listen")  //
      ("fanout", po::value<unsigned>()->default_value(1)->value_name("N"),
       "leaders the manager serves at once")  //
      ("leader-fanout", po::value<unsigned>()->default_value(1)->value_name("N"),
       "leaders each leader serves at once")  //
      ("star", po::value<std::string>()->default_value("1M")->value_name("BYTES"),
       "a job whose copies for all leaders come to at most this goes to every leader at once "
       "(0: always the tree)")  //
      ("stall", po::value<double>()->default_value(10)->value_name("SECONDS"),
       "a leader silent this long has failed")  //
      ("keep", po::value<unsigned>()->default_value(100)->value_name("N"),
       "finished jobs kept, with the manager's copies (0: all)");
}

Status run_serve(cli::Context& ctx) {
  push::ServeOptions o;
  CM_ASSIGN(o.tls, tls_of(ctx, "manager"));
  CM_ASSIGN(o.listen, endpoint(ctx, "listen", kManagerPort));
  if (ctx.vm.count("advertise")) {
    CM_ASSIGN(o.advertise, endpoint(ctx, "advertise", std::to_string(o.listen.port)));
  }
  o.state_dir = ctx.vm["state"].as<std::string>();
  o.agent_port = ctx.vm["agent-port"].as<uint16_t>();
  if (o.agent_port == 0)
    return Error("--agent-port must be between 1 and 65535", kExitUsage);
  o.keep = ctx.vm["keep"].as<unsigned>();
  // Tests only: how long a finished job is kept before --keep may drop it.
  if (const char* g = std::getenv("CM_TEST_PRUNE_GRACE_MS"))
    o.prune_grace_ms = std::atoll(g);
  o.plan.manager_fanout = ctx.vm["fanout"].as<unsigned>();
  o.plan.leader_fanout = ctx.vm["leader-fanout"].as<unsigned>();
  double stall = ctx.vm["stall"].as<double>();
  if (o.plan.manager_fanout < 1 || o.plan.leader_fanout < 1 || o.plan.manager_fanout > 64 ||
      o.plan.leader_fanout > 64)
    return Error("--fanout and --leader-fanout must be between 1 and 64", kExitUsage);
  if (!(stall >= 1 && stall <= 3600))
    return Error("--stall must be between 1 and 3600 seconds", kExitUsage);
  o.plan.stall_ms = static_cast<int64_t>(stall * 1000);
  CM_ASSIGN(o.plan.star_bytes, parse_size(ctx.vm["star"].as<std::string>(), "--star"));
  log_to(ctx, o.log);
  return push::run_serve(o);
}

void agent_options(po::options_description& d) {
  tls_options(d);
  manager_option(d);
  d.add_options()  //
      ("listen",
       po::value<std::string>()
           ->default_value("0.0.0.0:" + std::to_string(kAgentPort))
           ->value_name("ADDR:PORT"),
       "where to listen")  //
      ("dir", po::value<std::string>()->default_value("/var/lib/cm/push-agent")->value_name("DIR"),
       "where copies are kept")  //
      ("deliver", po::value<std::string>()->value_name("CMD"),
       "run CMD (sh -c) on each verified copy, {} being its path; its output is the group report")  //
      ("deliver-early",
       "start CMD with the fetch, CM_PART naming the copy as it grows (cm-mcast send --follow)")  //
      ("manager-name", po::value<std::string>()->default_value("manager")->value_name("NAME"),
       "the certificate name of the manager (only it may notify)")  //
      ("idle", po::value<double>()->default_value(10)->value_name("SECONDS"),
       "a source silent this long has failed")  //
      ("keep", po::value<unsigned>()->default_value(3)->value_name("N"), "finished jobs kept on disk");
}

Status run_agent(cli::Context& ctx) {
  push::AgentOptions o;
  if (ctx.vm.count("deliver-early") && !ctx.vm.count("deliver"))
    return Error("--deliver-early needs --deliver", kExitUsage);
  CM_ASSIGN(o.tls, tls_of(ctx, hostname()));
  CM_ASSIGN(o.listen, endpoint(ctx, "listen", std::to_string(kAgentPort)));
  CM_ASSIGN(o.manager, endpoint(ctx, "manager", kManagerPort));
  o.dir = ctx.vm["dir"].as<std::string>();
  if (ctx.vm.count("deliver"))
    o.deliver = ctx.vm["deliver"].as<std::string>();
  o.deliver_early = ctx.vm.count("deliver-early") != 0;
  o.manager_name = ctx.vm["manager-name"].as<std::string>();
  double idle = ctx.vm["idle"].as<double>();
  if (!(idle >= 1 && idle <= 3600))
    return Error("--idle must be between 1 and 3600 seconds", kExitUsage);
  o.idle_ms = static_cast<int>(idle * 1000);
  o.keep = ctx.vm["keep"].as<unsigned>();
  log_to(ctx, o.log);
  return push::run_agent(o);
}

void send_options(po::options_description& d) {
  tls_options(d);
  manager_option(d);
  d.add_options()  //
      ("group", po::value<std::string>()->value_name("SEG[,SEG...]"),
       "the leaders of these segments, from their cluster reports (default: all)")  //
      ("leaders", po::value<std::string>()->value_name("FILE"),
       "these leaders, in this order: lines of 'ID ADDRESS[:PORT] [LOCATION]'")                             //
      ("quorum", po::value<std::string>()->value_name("N|P%"), "leaders that must succeed (default: all)")  //
      ("no-cut-through", "a leader forwards only once its copy is whole (the seed's tree)")                 //
      ("no-deliver", "leaders keep the file and do not run their deliver command")                          //
      ("chunk-size", po::value<uint64_t>()->value_name("BYTES"),
       "checked and forwarded unit (default 256 KiB)")  //
      ("detach", "print the job's number and return at once");
}

Status run_send(cli::Context& ctx) {
  if (ctx.vm.count("chunk-size")) {
    uint64_t chunk = ctx.vm["chunk-size"].as<uint64_t>();
    if (chunk < push::kMinChunk || chunk > push::kMaxChunk)
      return Error("--chunk-size must be between " + std::to_string(push::kMinChunk) + " and " +
                       std::to_string(push::kMaxChunk) + " bytes",
                   kExitUsage);
  }
  CM_ASSIGN(auto tls, tls_of(ctx, "manager"));
  CM_ASSIGN(net::Endpoint manager, endpoint(ctx, "manager", kManagerPort));
  push::SendRequest req;
  char abs[PATH_MAX];
  if (ctx.args[0] == "-" || ::realpath(ctx.args[0].c_str(), abs) == nullptr)
    return sys_error("cannot find", ctx.args[0], ctx.args[0] == "-" ? EINVAL : errno);
  req.path = abs;
  if (ctx.vm.count("group") && ctx.vm.count("leaders"))
    return Error("give --group or --leaders, not both", kExitUsage);
  if (ctx.vm.count("group"))
    req.group = ctx.vm["group"].as<std::string>();
  if (ctx.vm.count("leaders")) {
    std::string f = ctx.vm["leaders"].as<std::string>();
    CM_ASSIGN(auto in, open_input(f));
    CM_ASSIGN(std::string text, read_all(*in, 16u << 20));
    CM_ASSIGN(req.leaders, push::parse_leaders(text, f, kAgentPort));
  }
  if (ctx.vm.count("quorum")) {
    req.quorum = ctx.vm["quorum"].as<std::string>();
    CM_ASSIGN(Quorum q, parse_quorum(req.quorum));
    CM_TRY(q.check_count(req.leaders.size(), "leader(s)"));
  }
  req.cut_through = !ctx.vm.count("no-cut-through");
  req.deliver = !ctx.vm.count("no-deliver");
  if (ctx.vm.count("chunk-size"))
    req.chunk_size = ctx.vm["chunk-size"].as<uint64_t>();
  if (ctx.vm.count("detach")) {
    CM_ASSIGN(uint64_t id, push::start_job(tls, manager, req));
    std::cout << (ctx.json ? json_text(nlohmann::json{{"job", id}}) : std::to_string(id)) << "\n";
    return {};
  }
  cli::Progress progress(ctx.progress);
  CM_ASSIGN(nlohmann::json r, push::send_job(tls, manager, req, [&](const nlohmann::json& j) {
              progress.update([&] { return "cm-push: " + push::progress_line(j); });
            }));
  progress.done();
  std::cout << (ctx.json ? json_text(r) + "\n" : push::report_text(r)) << std::flush;
  return r.value("succeeded", false) ? Status() : Status(Error("", kExitPartial));
}

void client_options(po::options_description& d) {
  tls_options(d);
  manager_option(d);
}

Status run_status(cli::Context& ctx) {
  // Digits only: strtoull took "-1" as 2^64 - 1 (and " 1", "+1"), so a
  // typo asked the manager for a job that cannot exist.
  std::optional<uint64_t> job;
  if (!ctx.args.empty()) {
    const std::string& a = ctx.args[0];
    uint64_t n = 0;
    auto [end, ec] = std::from_chars(a.data(), a.data() + a.size(), n);
    if (a.empty() || ec != std::errc() || end != a.data() + a.size())
      return Error("'" + a + "' is not a job number", kExitUsage);
    job = n;
  }
  CM_ASSIGN(auto tls, tls_of(ctx, "manager"));
  CM_ASSIGN(net::Endpoint manager, endpoint(ctx, "manager", kManagerPort));
  CM_ASSIGN(nlohmann::json r, push::query(tls, manager, job));
  if (ctx.json) {
    std::cout << json_text(r) << "\n";
  } else if (job) {
    std::cout << push::report_text(r);
  } else {
    for (const auto& l : r["leaders"])
      std::cout << "leader " << l.value("id", "") << " " << l.value("address", "") << " segment "
                << l.value("segment", "") << " location " << l.value("location", "") << "\n";
    for (const auto& j : r["jobs"])
      std::cout << "job " << j.value("job", 0) << " " << j.value("name", "") << " "
                << (j.value("done", false) ? (j.value("succeeded", false) ? "succeeded" : "failed")
                                           : "running")
                << " " << j.value("leaders_ok", 0) << " ok\n";
  }
  return {};
}

Status run_report(cli::Context& ctx) {
  CM_ASSIGN(auto tls, tls_of(ctx, hostname()));
  CM_ASSIGN(net::Endpoint manager, endpoint(ctx, "manager", kManagerPort));
  std::string f = ctx.args.empty() ? "-" : ctx.args[0];
  CM_ASSIGN(auto in, open_input(f));
  CM_ASSIGN(std::string text, read_all(*in, 64u << 20));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object())
    return Error("'" + in->name() + "' is not a cluster report (cm-elect's JSON)", kExitBadInput);
  return push::send_cluster_report(tls, manager, j);
}

void ca_options(po::options_description& d) {
  d.add_options()("site", po::value<std::string>()->default_value("cm site CA")->value_name("NAME"),
                  "the CA's name (ca init)");
}

Status run_ca(cli::Context& ctx) {
  const std::string& verb = ctx.args[0];
  if (verb != "init" && verb != "issue")
    return Error("unknown ca verb '" + verb +
                     "' (init or issue); usage: cm-push ca init DIR | cm-push ca issue DIR NAME...",
                 kExitUsage);
  if (verb == "init" && ctx.args.size() != 2)
    return Error("usage: cm-push ca init [--site NAME] DIR", kExitUsage);
  if (verb == "issue" && ctx.args.size() < 3)
    return Error("usage: cm-push ca issue DIR NAME...", kExitUsage);
  if (verb == "init") {
    const std::string& site = ctx.vm["site"].as<std::string>();
    // The CA's name is what every certificate shows as its issuer.
    // Characters as X.509 counts them (UTF-8 code points), not bytes.
    size_t chars = static_cast<size_t>(
        std::count_if(site.begin(), site.end(), [](unsigned char ch) { return (ch & 0xc0) != 0x80; }));
    if (chars == 0 || chars > 64 ||
        std::any_of(site.begin(), site.end(), [](unsigned char ch) { return ch < 0x20 || ch == 0x7f; }))
      return Error("--site must be 1 to 64 characters without control characters", kExitUsage);
    return net::make_ca(ctx.args[1], site);
  }
  for (size_t i = 2; i < ctx.args.size(); i++) {
    const std::string& name = ctx.args[i];
    if (name.empty() || name.find('/') != std::string::npos || name[0] == '.')
      return Error("'" + name + "' is not a usable certificate name", kExitUsage);
    CM_TRY(net::issue_cert(ctx.args[1], name, ctx.args[1] + "/" + name));
  }
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-push";
  p.purpose = "Distribute a file from the manager to every group leader through a store-and-forward tree.";
  p.tls = true;
  p.commands.push_back(cli::Command{"serve", "[--state DIR] [--advertise ADDR] [options]",
                                    "The manager's daemon: registry, trees, reports.", 0, 0, serve_options,
                                    run_serve, false});
  p.commands.push_back(cli::Command{"agent", "--manager ADDR:PORT [--deliver CMD] [options]",
                                    "A leader's daemon: fetch, forward, deliver.", 0, 0, agent_options,
                                    run_agent, false});
  p.commands.push_back(cli::Command{"send", "[--group SEG | --leaders FILE] [--quorum N] [options] FILE",
                                    "Distribute FILE; print the per-leader and per-server report.", 1, 1,
                                    send_options, run_send, true});
  p.commands.push_back(cli::Command{"status", "[options] [JOB]", "A job's report, or every job and leader.",
                                    0, 1, client_options, run_status, true});
  p.commands.push_back(
      cli::Command{"report", "[options] [FILE]",
                   "Hand a cm-elect cluster report (default: standard input) to the manager.", 0, 1,
                   client_options, run_report, false});
  p.commands.push_back(cli::Command{"ca", "init DIR | issue DIR NAME...",
                                    "Make a site's CA, and certificates it signs.", 1, SIZE_MAX, ca_options,
                                    run_ca, false});
  return cli::run(p, argc, argv);
}
