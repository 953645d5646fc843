// Running an administrator's shell command (hooks, reload, deliver): one
// place that builds the environment, spawns /bin/sh -c, and waits.
#pragma once

#include <sys/types.h>

#include <functional>
#include <string>
#include <vector>

#include "util/io.hpp"
#include "util/result.hpp"

namespace cm {

// 'it'\''s' — safe inside a /bin/sh command line.
std::string shell_quote(const std::string& s);
// Every "{}" in cmd replaced by the quoted path.
std::string expand_braces(const std::string& cmd, const std::string& path);

struct Spawn {
  std::string command;
  std::vector<std::string> env;  // added to ours ("NAME=value")
  std::string stdin_file;        // empty: inherit
  bool capture_stdout = false;
  std::string output_file;        // stdout and stderr appended here (not with capture_stdout)
  bool stdout_to_stderr = false;  // its standard output goes to our stderr (ours carries a report)
  bool new_group = false;         // its own process group, so it can be stopped whole
  // run_shell: called with (pid, true) once the child runs and (pid,
  // false) once it has been waited for (a daemon stopping can stop it in
  // between).
  std::function<void(pid_t, bool)> running;
};

struct Child {
  pid_t pid = -1;
  Fd out;  // its standard output, when captured
};

Result<Child> spawn_shell(const Spawn& s);

// "exit status 3", "killed by signal 9" from a wait status; and -1 for a
// signal, the status otherwise.
std::string describe_status(int status);
int exit_code_of(int status);

struct Ran {
  int status = 0;      // as from waitpid
  std::string output;  // standard output, up to the limit
};
// Runs to the end (retrying EINTR), keeping up to `limit` bytes of output.
Result<Ran> run_shell(const Spawn& s, size_t limit = 16u << 20);

}  // namespace cm
