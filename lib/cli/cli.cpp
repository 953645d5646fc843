#include "cli/cli.hpp"

#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <iostream>
#include <sstream>
#include <typeinfo>

#include "crypto/init.hpp"

namespace cm::cli {

void Diag::line(const std::string& prefix, const std::string& msg) const {
  std::string out = program_ + ": " + prefix + msg + "\n";
  std::fflush(stdout);
  std::fputs(out.c_str(), stderr);
}

void Diag::error(const std::string& msg) const {
  line("", msg);
}

void Diag::warning(const std::string& msg) const {
  warnings_++;
  if (verbosity_ != Verbosity::Quiet)
    line("warning: ", msg);
}

void Diag::info(const std::string& msg) const {
  if (verbosity_ != Verbosity::Quiet)
    line("", msg);
}

void Diag::verbose(const std::string& msg) const {
  if (verbosity_ == Verbosity::Verbose)
    line("", msg);
}

namespace {

std::string usage_lines(const Program& p) {
  std::string s;
  bool first = true;
  for (const Command& c : p.commands) {
    s += first ? "usage: " : "       ";
    s += p.name;
    if (!c.name.empty())
      s += " " + c.name;
    if (!c.synopsis.empty())
      s += " " + c.synopsis;
    s += "\n";
    first = false;
  }
  return s;
}

po::options_description common_options(const Command& c) {
  po::options_description d("Common options");
  auto add = d.add_options();
  add("help,h", "show this help and exit");
  add("version,V", "show the version and exit");
  add("verbose,v", "say more on stderr");
  add("quiet,q", "say only errors on stderr");
  if (c.json_option)
    add("json", "machine-readable output (JSON) on stdout");
  return d;
}

void print_help(const Program& p, const Command* c, const po::options_description& own) {
  std::ostringstream out;
  if (c == nullptr) {
    out << usage_lines(p) << "\n" << p.purpose << "\n\nCommands:\n";
    for (const Command& cmd : p.commands)
      out << "  " << (cmd.name.empty() ? std::string("(default)") : cmd.name) << "\t" << cmd.summary << "\n";
    out << "\nRun '" << p.name << " COMMAND --help' for a command's options; see " << p.name << "(1).\n";
  } else {
    out << "usage: " << p.name << (c->name.empty() ? "" : " " + c->name) << " " << c->synopsis << "\n\n"
        << c->summary << "\n\n"
        << own << "\n"
        << common_options(*c);
    // The default command's help is the program's: the others are named
    // too (cm-apply status, cm-delta show).
    if (c->name.empty() && p.commands.size() > 1) {
      out << "\nOther commands:\n";
      for (const Command& cmd : p.commands)
        if (!cmd.name.empty())
          out << "  " << p.name << " " << cmd.name << " " << cmd.synopsis << "\n      " << cmd.summary
              << "\n";
      out << "Run '" << p.name << " COMMAND --help' for a command's options.\n";
    }
    out << "\nSee " << p.name << "(1) and cm(7).\n";
  }
  std::cout << out.str();
}

const Command* find_command(const Program& p, const std::string& name) {
  for (const Command& c : p.commands)
    if (c.name == name)
      return &c;
  return nullptr;
}

// Boost reads "-1" into an unsigned option as 2^64 - 1 (--keep -1 kept
// every version forever) and "nan" into a double: refused here for every
// option of every program, before any command's own range checks.
std::string bad_number(const po::parsed_options& parsed, const po::variables_map& vm) {
  for (const po::option& o : parsed.options) {
    auto it = vm.find(o.string_key);
    if (o.string_key == "cm-args" || it == vm.end() || it->second.empty())
      continue;
    const std::type_info& t = it->second.value().type();
    bool is_unsigned = t == typeid(unsigned) || t == typeid(unsigned long) ||
                       t == typeid(unsigned long long) || t == typeid(unsigned short) ||
                       t == typeid(unsigned char);
    for (const std::string& v : o.value) {
      auto first = v.find_first_not_of(" \t");
      if (is_unsigned && first != std::string::npos && v[first] == '-')
        return "--" + o.string_key + " must not be negative (got '" + v + "')";
    }
    if (t == typeid(double) && !std::isfinite(it->second.as<double>()))
      return "--" + o.string_key + " must be a finite number (got '" + (o.value.empty() ? "" : o.value[0]) +
             "')";
  }
  return {};
}

int usage_error(const Diag& diag, const Program& p, const std::string& msg) {
  diag.error(msg);
  std::cerr << "Try '" << p.name << " --help'.\n";
  return kExitUsage;
}

int run_command(const Program& p, const Command& c, Diag& diag, std::vector<std::string> argv) {
  // "--" ends the options: what follows is positional even if it starts
  // with a dash (Boost does not know this convention).
  std::vector<std::string> after;
  if (auto dd = std::find(argv.begin(), argv.end(), "--"); dd != argv.end()) {
    after.assign(dd + 1, argv.end());
    argv.erase(dd, argv.end());
  }
  po::options_description own("Options");
  if (c.options)
    c.options(own);
  po::options_description all;
  all.add(own).add(common_options(c));
  po::options_description hidden;
  hidden.add_options()("cm-args", po::value<std::vector<std::string>>(), "");
  all.add(hidden);
  po::positional_options_description pos;
  pos.add("cm-args", -1);

  Context ctx{diag, {}, {}, {}, false, false};
  try {
    po::parsed_options parsed =
        po::command_line_parser(argv)
            .options(all)
            .positional(pos)
            .style(po::command_line_style::default_style & ~po::command_line_style::allow_guessing)
            .run();
    po::store(parsed, ctx.vm);
    po::notify(ctx.vm);
    for (const po::option& o : parsed.options)
      if (o.string_key != "cm-args")
        ctx.ordered.push_back(o);
    if (std::string bad = bad_number(parsed, ctx.vm); !bad.empty())
      return usage_error(diag, p, bad);
  } catch (const po::error& e) {
    return usage_error(diag, p, e.what());
  }
  if (ctx.vm.count("help")) {
    print_help(p, &c, own);
    return kExitOk;
  }
  if (ctx.vm.count("version")) {
    std::cout << p.name << " (cm) " << CM_VERSION << "\n";
    return kExitOk;
  }
  if (ctx.vm.count("verbose") && ctx.vm.count("quiet"))
    return usage_error(diag, p, "--verbose and --quiet exclude each other");
  if (ctx.vm.count("quiet"))
    diag.set_verbosity(Verbosity::Quiet);
  else if (ctx.vm.count("verbose"))
    diag.set_verbosity(Verbosity::Verbose);
  ctx.json = ctx.vm.count("json") > 0;
  ctx.progress = ::isatty(2) && diag.verbosity() != Verbosity::Quiet;
  if (ctx.vm.count("cm-args"))
    ctx.args = ctx.vm["cm-args"].as<std::vector<std::string>>();
  ctx.args.insert(ctx.args.end(), after.begin(), after.end());
  if (ctx.args.size() < c.min_args || ctx.args.size() > c.max_args) {
    std::string want = c.name.empty() ? p.name : p.name + " " + c.name;
    return usage_error(diag, p,
                       ctx.args.size() < c.min_args
                           ? "missing arguments; usage: " + want + " " + c.synopsis
                           : "too many arguments; usage: " + want + " " + c.synopsis);
  }
  Status s = c.run(ctx);
  if (s.ok())
    return kExitOk;
  if (!s.error().message.empty())
    diag.error(s.error().message);
  return s.error().code;
}

// Output that could not be written is a failure, not a success: a full
// disk or a closed file under stdout (> /dev/full) must not exit 0.
int check_stdout(const Diag& diag, int code) {
  errno = 0;
  std::cout.flush();
  bool bad = std::cout.fail() || std::fflush(stdout) != 0 || std::ferror(stdout);
  if (!bad || code != kExitOk)
    return code;  // a failed command has said what failed (stdout among it)
  int err = errno;
  diag.error(std::string("cannot write to standard output") +
             (err != 0 ? std::string(": ") + std::strerror(err) : ""));
  return kExitFailure;
}

int run_program(const Program& p, Diag& diag, int argc, char** argv) {
  try {
    std::vector<std::string> args(argv + 1, argv + argc);
    const Command* dflt = find_command(p, "");
    if (!args.empty() && args[0] != "--" && args[0].rfind('-', 0) != 0) {
      if (const Command* c = find_command(p, args[0]); c != nullptr && !c->name.empty()) {
        args.erase(args.begin());
        return run_command(p, *c, diag, std::move(args));
      }
    }
    if (dflt != nullptr)
      return run_command(p, *dflt, diag, std::move(args));
    // Verb programs: only --help, --version or a verb are valid here.
    if (args.empty())
      return usage_error(diag, p, "missing command");
    if (args[0] == "-h" || args[0] == "--help") {
      print_help(p, nullptr, po::options_description());
      return kExitOk;
    }
    if (args[0] == "-V" || args[0] == "--version") {
      std::cout << p.name << " (cm) " << CM_VERSION << "\n";
      return kExitOk;
    }
    return usage_error(diag, p, "unknown command '" + args[0] + "'");
  } catch (const std::exception& e) {
    diag.error(std::string("internal error: ") + e.what());
    return kExitFailure;
  }
}

}  // namespace

int run(const Program& p, int argc, char** argv) {
  crypto::init_openssl(p.tls);
  Diag diag(p.name);
  return check_stdout(diag, run_program(p, diag, argc, argv));
}

void Progress::update(const std::function<std::string()>& make, bool at_once) {
  if (!enabled_)
    return;
  auto now = std::chrono::steady_clock::now();
  if (!at_once && drawn_ && now - last_ < std::chrono::milliseconds(100))
    return;
  last_ = now;
  std::string s = "\r\033[K" + make();
  std::fputs(s.c_str(), stderr);
  drawn_ = true;
}

void Progress::done() {
  if (enabled_ && drawn_) {
    std::fputs("\r\033[K", stderr);
    drawn_ = false;
  }
}

}  // namespace cm::cli
