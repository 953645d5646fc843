// cm-apply: carry out assignments on a server's site directory: stage new
// versions, switch live atomically, roll back (cm-apply(1)). Options and
// wiring only.
#include <fcntl.h>
#include <linux/ioprio.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <iostream>
#include <nlohmann/json.hpp>

#include "apply/site.hpp"
#include "cli/cli.hpp"
#include "util/text.hpp"

namespace po = boost::program_options;
using namespace cm;

namespace {

void root_option(po::options_description& d) {
  d.add_options()("root,r", po::value<std::string>()->value_name("DIR"), "the site directory (required)");
}

void apply_options(po::options_description& d) {
  root_option(d);
  d.add_options()  //
      ("pubkey", po::value<std::string>()->value_name("FILE"),
       "accept only assignments signed by this key")                                  //
      ("key", po::value<std::string>()->value_name("FILE"), "decrypt with this key")  //
      ("keep", po::value<unsigned>()->default_value(2)->value_name("N"),
       "earlier live versions kept for rollback")                                                //
      ("reload", po::value<std::string>()->value_name("CMD"), "run CMD (sh -c) after a switch")  //
      ("no-spare", "keep no spare copy of live to stage the next assignment from")               //
      ("spare-delay", po::value<double>()->default_value(2)->value_name("SECONDS"),
       "after a switch, start the spare this long later, or as soon as another cm-apply waits")  //
      ("wait", po::value<double>()->default_value(30)->value_name("SECONDS"),
       "wait this long for another cm-apply on the same site");
}

// After a switch, live's spare is cloned by a child that keeps the site's
// lock, so that this command returns now and the next one waits for it.
// The child starts after `delay`, or at once when another cm-apply comes.
void spare_in_background(apply::Site& site, double delay) {
  if (!site.wants_spare())
    return;
  std::cout.flush();
  pid_t pid = ::fork();
  if (pid != 0)
    return;  // the parent (or no child: no spare, no harm)
  ::setsid();
  // Nothing of the caller's but the lock: whoever waits for its pipes to
  // close (a shell's $(...), bats, cm-mcast recv reading this command's
  // report) must not wait out --spare-delay. Done first, at the caller's
  // priority: under SCHED_IDLE on a busy machine the child might not run
  // for a while, and the reader would wait until it did.
  int lock = site.lock_fd();
  int null = ::open("/dev/null", O_RDWR | O_CLOEXEC);
  if (null >= 0)
    for (int fd = 0; fd <= 2; fd++)
      if (fd != lock)
        ::dup2(null, fd);
  if (lock > 3)
    (void)::close_range(3, static_cast<unsigned>(lock) - 1, 0);
  (void)::close_range(static_cast<unsigned>(std::max(lock + 1, 3)), ~0U, 0);
  // Background work: the lowest CPU and best-effort I/O priority, so that
  // whatever else runs now (on a farm, the other servers' commits) goes
  // first. Not the idle I/O class: the next cm-apply waits for this one.
  (void)::setpriority(PRIO_PROCESS, 0, 19);
  // SCHED_IDLE: the CPU only when nothing else wants it (48 niced clones
  // together still weigh as much as one ordinary process).
  struct sched_param sp {};
  (void)::sched_setscheduler(0, SCHED_IDLE, &sp);
  (void)::syscall(SYS_ioprio_set, IOPRIO_WHO_PROCESS, 0, IOPRIO_PRIO_VALUE(IOPRIO_CLASS_BE, 7));
  site.wait_unless_wanted(delay);
  ::_exit(site.prepare_spare().ok() ? 0 : 1);
}

Result<std::string> root_of(const cli::Context& ctx) {
  if (!ctx.vm.count("root"))
    return Error("--root is required", kExitUsage);
  return ctx.vm["root"].as<std::string>();
}

Status run_apply(cli::Context& ctx) {
  CM_ASSIGN(std::string root, root_of(ctx));
  apply::SiteOptions so;
  so.keep = ctx.vm["keep"].as<unsigned>();
  so.wait_seconds = ctx.vm["wait"].as<double>();
  // Negative was read as 0 (no wait at all): refused like --keep -1.
  if (!(so.wait_seconds >= 0)) {
    std::string given;
    for (const po::option& o : ctx.ordered)
      if (o.string_key == "wait" && !o.value.empty())
        given = o.value[0];
    return Error("--wait must not be negative (got '" + given + "')", kExitUsage);
  }
  if (ctx.vm.count("reload"))
    so.reload = ctx.vm["reload"].as<std::string>();
  so.spare = !ctx.vm.count("no-spare");
  double spare_delay = ctx.vm["spare-delay"].as<double>();
  if (!(spare_delay >= 0 && spare_delay <= 3600))
    return Error("--spare-delay must be between 0 and 3600 seconds", kExitUsage);
  // Whatever stops the run before an assignment has a report of its own
  // (a key, the input, the site's state or lock, a pack without a header
  // to go by): with --json, a report says so too, so that a script always
  // reads one.
  auto failed = [&](Error e, const apply::Site* site) -> Status {
    if (ctx.json) {
      apply::Report rep;
      rep.result = "failed";
      rep.message = e.message;
      // Stopped before the site was opened (a key, the input): what is
      // live is read without waiting, as cm-apply status does.
      std::unique_ptr<apply::Site> peek;
      if (site == nullptr) {
        apply::SiteOptions ro;
        ro.read_only = true;
        ro.wait_seconds = 0;
        if (auto p = apply::Site::open(root, ro); p.ok()) {
          peek = std::move(p).value();
          site = peek.get();
        }
      }
      if (site != nullptr) {
        nlohmann::json st = site->status();
        rep.live = st.value("live", uint64_t{0});
        rep.live_sequence = st.value("live_sequence", uint64_t{0});
        rep.site = st.value("site", std::string());
      }
      std::cout << json_text(rep.json()) << "\n";
    }
    return e;
  };
  std::optional<crypto::SigningKey> pub;
  std::optional<crypto::SymmetricKey> key;
  assign::Keys keys;
  if (ctx.vm.count("pubkey")) {
    auto k = crypto::SigningKey::load_public(ctx.vm["pubkey"].as<std::string>());
    if (!k.ok())
      return failed(std::move(k).error(), nullptr);
    pub = std::move(k).value();
    keys.pubkey = &*pub;
  }
  if (ctx.vm.count("key")) {
    auto k = crypto::SymmetricKey::load(ctx.vm["key"].as<std::string>());
    if (!k.ok())
      return failed(std::move(k).error(), nullptr);
    key = std::move(k).value();
    keys.key = &*key;
  }
  std::string path = ctx.args.empty() ? "-" : ctx.args[0];
  auto input = open_input(path);
  if (!input.ok())
    return failed(std::move(input).error(), nullptr);
  auto in = std::move(input).value();
  // On a terminal: commands done of the part's, bytes written, the sync.
  cli::Progress progress(ctx.progress);
  if (ctx.progress)
    so.progress = [&](const apply::ApplyProgress& p) {
      progress.update(
          [&] {
            return ctx.diag.program() + ": " + p.phase + ", " + with_commas(p.commands) + "/" +
                   with_commas(p.total) + " commands, " + human_bytes(p.bytes) + " written";
          },
          std::string_view(p.phase) == "syncing");
    };

  auto opened_site = apply::Site::open(root, so);
  if (!opened_site.ok())
    return failed(std::move(opened_site).error(), nullptr);
  auto site = std::move(opened_site).value();
  assign::BufferedInput buf(*in, in->name());
  // One pack, or the consecutive parts of one assignment.
  for (;;) {
    assign::PackReader pack(buf, keys);
    if (Status opened = pack.open(); !opened.ok())
      return failed(std::move(opened).error(), site.get());
    apply::Report rep;
    Status s = site->apply(pack, rep);
    progress.done();
    if (ctx.json)
      std::cout << json_text(rep.json()) << "\n";
    else if (ctx.diag.verbosity() != cli::Verbosity::Quiet || !s.ok())
      std::cout << rep.text() << "\n";
    std::cout.flush();
    if (!s.ok())
      return Error("", s.error().code);  // the report said it
    if (rep.code != 0)
      return Error("", rep.code);
    CM_ASSIGN(bool end, buf.at_end());
    if (end) {
      if (rep.result == "switched")
        spare_in_background(*site, spare_delay);
      return {};
    }
    if (pack.header().last_part)
      return Error("'" + in->name() + "': data after the last part", kExitBadInput);
  }
}

Status run_status(cli::Context& ctx) {
  CM_ASSIGN(std::string root, root_of(ctx));
  apply::SiteOptions so;
  so.read_only = true;
  CM_ASSIGN(auto site, apply::Site::open(root, so));
  std::cout << (ctx.json ? json_text(site->status()) + "\n" : site->status_text());
  return {};
}

}  // namespace

int main(int argc, char** argv) {
  cli::Program p;
  p.name = "cm-apply";
  p.purpose = "Carry out assignments on a site: stage versions, switch live atomically, roll back.";
  p.commands.push_back(cli::Command{"", "--root DIR [options] [ASSIGNMENT|-]",
                                    "Apply an assignment (all its parts, from a stream) to the site in DIR.",
                                    0, 1, apply_options, run_apply, true});
  p.commands.push_back(cli::Command{"status", "--root DIR [--json]",
                                    "Show the site's versions and what is live.", 0, 0, root_option,
                                    run_status, true});
  return cli::run(p, argc, argv);
}
