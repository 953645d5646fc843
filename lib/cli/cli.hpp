// The conventions every cm program shares: Boost.Program_options tables,
// --help/--version/-v/-q/--json, diagnostics on stderr prefixed with the
// program name, exit codes from util/result.hpp, progress on a terminal.
//
// A program is one or more commands ("verbs"), each with its own option
// table and one handler; main() only builds the tables and calls run().
#pragma once

#include <boost/program_options.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace cm::cli {

namespace po = boost::program_options;

enum class Verbosity { Quiet = 0, Normal = 1, Verbose = 2 };

// Diagnostics to stderr, each line prefixed "PROGRAM: ".
class Diag {
 public:
  explicit Diag(std::string program) : program_(std::move(program)) {}
  void set_verbosity(Verbosity v) { verbosity_ = v; }
  Verbosity verbosity() const { return verbosity_; }
  const std::string& program() const { return program_; }

  void error(const std::string& msg) const;    // always
  void warning(const std::string& msg) const;  // unless -q
  void info(const std::string& msg) const;     // unless -q
  void verbose(const std::string& msg) const;  // with -v
  unsigned warnings() const { return warnings_; }

 private:
  void line(const std::string& prefix, const std::string& msg) const;
  std::string program_;
  Verbosity verbosity_ = Verbosity::Normal;
  mutable unsigned warnings_ = 0;
};

// What every command gets besides its own options.
struct Context {
  Diag& diag;
  po::variables_map vm;
  std::vector<std::string> args;  // positional arguments
  // Options in command-line order, for options whose order matters
  // (--include/--exclude, as rsync users expect).
  std::vector<po::option> ordered;
  bool json = false;
  bool progress = false;  // stderr is a terminal and not -q
};

struct Command {
  std::string name;      // "" for the program's default command
  std::string synopsis;  // "[options] SHADOW STAGING"
  std::string summary;   // one line
  size_t min_args = 0;
  size_t max_args = 0;  // SIZE_MAX: any number
  std::function<void(po::options_description&)> options;
  std::function<Status(Context&)> run;
  bool json_option = true;  // offer --json
};

struct Program {
  std::string name;     // "cm-delta"
  std::string purpose;  // one line for --help
  std::vector<Command> commands;
  bool tls = false;  // speaks TLS: OpenSSL reads the system configuration
};

// Parses argv, handles --help/--version and usage errors (exit 2), runs the
// chosen command and maps its Error to an exit code; never lets an
// exception escape. Returns the process exit status.
int run(const Program& program, int argc, char** argv);

// A one-line progress display on stderr, redrawn at most 10 times a second,
// only when enabled (stderr is a terminal and not -q).
class Progress {
 public:
  explicit Progress(bool enabled) : enabled_(enabled) {}
  ~Progress() { done(); }
  // Calls make() only when it is time to redraw, or at once with `now`
  // (a new phase, such as a part's compression, that may last).
  void update(const std::function<std::string()>& make, bool now = false);
  void done();

 private:
  bool enabled_;
  bool drawn_ = false;
  std::chrono::steady_clock::time_point last_{};
};

}  // namespace cm::cli
