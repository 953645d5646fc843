#include "util/proc.hpp"

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

extern char** environ;

namespace cm {

std::string shell_quote(const std::string& s) {
  std::string q = "'";
  for (char c : s)
    q += c == '\'' ? std::string("'\\''") : std::string(1, c);
  return q + "'";
}

std::string expand_braces(const std::string& cmd, const std::string& path) {
  std::string out = cmd, quoted = shell_quote(path);
  for (size_t p = out.find("{}"); p != std::string::npos; p = out.find("{}", p + quoted.size()))
    out.replace(p, 2, quoted);
  return out;
}

Result<Child> spawn_shell(const Spawn& s) {
  std::vector<std::string> env = s.env;
  std::vector<char*> envp;
  for (char** e = environ; *e != nullptr; e++)
    envp.push_back(*e);
  for (std::string& e : env)
    envp.push_back(e.data());
  envp.push_back(nullptr);
  posix_spawn_file_actions_t fa;
  posix_spawn_file_actions_init(&fa);
  Child c;
  Fd write_end;
  if (s.capture_stdout) {
    int p[2];
    if (::pipe2(p, O_CLOEXEC) != 0) {
      posix_spawn_file_actions_destroy(&fa);
      return sys_error("cannot create a pipe for", s.command, errno);
    }
    c.out.reset(p[0]);
    write_end.reset(p[1]);
    posix_spawn_file_actions_adddup2(&fa, p[1], 1);
  }
  if (s.stdout_to_stderr && !s.capture_stdout && s.output_file.empty())
    posix_spawn_file_actions_adddup2(&fa, 2, 1);
  if (!s.stdin_file.empty())
    posix_spawn_file_actions_addopen(&fa, 0, s.stdin_file.c_str(), O_RDONLY, 0);
  if (!s.output_file.empty()) {
    posix_spawn_file_actions_addopen(&fa, 1, s.output_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_adddup2(&fa, 1, 2);
  }
  // The command starts with no signal blocked or ignored, whatever the
  // daemon that runs it does with its own.
  posix_spawnattr_t attr;
  posix_spawnattr_init(&attr);
  sigset_t none, defaults;
  sigemptyset(&none);
  sigemptyset(&defaults);
  for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGHUP, SIGCHLD})
    sigaddset(&defaults, sig);
  posix_spawnattr_setsigmask(&attr, &none);
  posix_spawnattr_setsigdefault(&attr, &defaults);
  short flags = POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF;
  if (s.new_group) {
    flags |= POSIX_SPAWN_SETPGROUP;
    posix_spawnattr_setpgroup(&attr, 0);
  }
  posix_spawnattr_setflags(&attr, flags);
  const char* argv[] = {"/bin/sh", "-c", s.command.c_str(), nullptr};
  int rc = ::posix_spawn(&c.pid, "/bin/sh", &fa, &attr, const_cast<char* const*>(argv), envp.data());
  posix_spawn_file_actions_destroy(&fa);
  posix_spawnattr_destroy(&attr);
  if (rc != 0)
    return Error("cannot run '" + s.command + "': " + std::strerror(rc));
  return c;
}

std::string describe_status(int status) {
  if (WIFEXITED(status))
    return "exit status " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status))
    return "killed by signal " + std::to_string(WTERMSIG(status));
  return "ended oddly (" + std::to_string(status) + ")";
}

int exit_code_of(int status) {
  return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

Result<Ran> run_shell(const Spawn& s, size_t limit) {
  CM_ASSIGN(Child c, spawn_shell(s));
  if (s.running)
    s.running(c.pid, true);
  struct Done {
    const Spawn& s;
    pid_t pid;
    ~Done() {
      if (s.running)
        s.running(pid, false);
    }
  } done{s, c.pid};
  Ran r;
  if (c.out.valid()) {
    char buf[65536];
    for (;;) {
      ssize_t n = ::read(c.out.get(), buf, sizeof buf);
      if (n < 0 && errno == EINTR)
        continue;
      if (n <= 0)
        break;
      if (r.output.size() < limit)
        r.output.append(buf, std::min(static_cast<size_t>(n), limit - r.output.size()));
    }
  }
  while (::waitpid(c.pid, &r.status, 0) < 0) {
    if (errno != EINTR)
      return sys_error("cannot wait for", s.command, errno);
  }
  return r;
}

}  // namespace cm
