// Output (a command's -o): what a killed run leaves, and where a commit
// puts the file.
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <csignal>
#include <cstdint>
#include <cstring>
#include <functional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include <gtest/gtest.h>

#include "support.hpp"
#include "util/io.hpp"
#include "util/mapped.hpp"
#include "util/text.hpp"

namespace cm {
namespace {

std::vector<std::string> entries(const std::string& dir) {
  std::vector<std::string> v;
  DIR* d = ::opendir(dir.c_str());
  while (struct dirent* de = ::readdir(d))
    if (std::string(de->d_name) != "." && std::string(de->d_name) != "..")
      v.push_back(de->d_name);
  ::closedir(d);
  return v;
}

TEST(Output, AProcessThatDiesBeforeItsCommitLeavesNothing) {
  test::TempDir t;
  // The child writes half its output and dies without unwinding (as on
  // SIGKILL: no destructor runs): no temporary file may stay.
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    auto out = Output::open(t / "table");
    if (!out.ok() || !(*out)->writer().write(std::string(100000, 'x')).ok() || !(*out)->writer().flush().ok())
      ::_exit(2);
    ::_exit(0);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(pid, &status, 0), pid);
  ASSERT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0);
  EXPECT_TRUE(entries(t.path()).empty());
}

TEST(Output, ACommitGivesTheFileItsNameWithTheUsualMode) {
  test::TempDir t;
  test::write_file(t / "table", "old");
  auto out = Output::open(t / "table");
  ASSERT_TRUE(out.ok()) << out.error().message;
  ASSERT_TRUE((*out)->writer().write("new contents").ok());
  ASSERT_TRUE((*out)->commit().ok());
  EXPECT_EQ(test::read_file(t / "table"), "new contents");
  EXPECT_EQ(entries(t.path()), std::vector<std::string>{"table"});
  struct stat st;
  ASSERT_EQ(::stat((t / "table").c_str(), &st), 0);
  mode_t um = ::umask(0);
  ::umask(um);
  EXPECT_EQ(st.st_mode & 0777, 0666u & ~um);
}

}  // namespace
}  // namespace cm

namespace cm {
namespace {

TEST(WriteFileAtomic, ASymlinkIsReplacedNotFollowed) {
  // Daemons running as root write their state with it in directories
  // others may write to: a planted link must not lead them to a file.
  test::TempDir t;
  test::write_file(t / "victim", "precious");
  test::make_symlink(t / "victim", t / "state.json");
  ASSERT_TRUE(write_file_atomic(t / "state.json", "{}\n").ok());
  EXPECT_EQ(test::read_file(t / "victim"), "precious");
  struct stat st;
  ASSERT_EQ(::lstat((t / "state.json").c_str(), &st), 0);
  EXPECT_TRUE(S_ISREG(st.st_mode));
  EXPECT_EQ(test::read_file(t / "state.json"), "{}\n");
}

}  // namespace
}  // namespace cm

TEST(RandomName, LengthCharactersAndOnePerThread) {
  std::string a = cm::random_name(12);
  ASSERT_EQ(a.size(), 12u);
  EXPECT_EQ(a.find_first_not_of("abcdefghijklmnopqrstuvwxyz0123456789"), std::string::npos);
  EXPECT_NE(cm::random_name(12), a);
  // Threads draw from their own generators: no two names alike.
  std::vector<std::string> names(8);
  std::vector<std::thread> ts;
  for (size_t i = 0; i < names.size(); i++)
    ts.emplace_back([&names, i] {
      for (int k = 0; k < 100; k++)
        names[i] += cm::random_name(10) + ",";
    });
  for (std::thread& t : ts)
    t.join();
  std::set<std::string> distinct(names.begin(), names.end());
  EXPECT_EQ(distinct.size(), names.size());
}

TEST(SysError, NamesThePathQuotedWhenItIsNotPrintable) {
  EXPECT_EQ(cm::sys_error("cannot open", "site/a b.html", ENOENT).message,
            "cannot open 'site/a b.html': No such file or directory");
  EXPECT_EQ(cm::sys_error("cannot read", "-", EIO).message, "cannot read '-': Input/output error");
  // A newline or an escape sequence in a file name never reaches a terminal raw.
  EXPECT_EQ(cm::sys_error("cannot open", "a\nb\x1b[2J", EACCES).message,
            "cannot open \"a\\nb\\033[2J\": Permission denied");
  EXPECT_EQ(cm::sys_error("cannot open", "", ENOENT).message, "cannot open \"\": No such file or directory");
}

TEST(QuotePath, PrintableUtf8StaysAndControlsAreEscaped) {
  EXPECT_EQ(cm::quote_path("caf\xc3\xa9 menu.html"), "caf\xc3\xa9 menu.html");
  EXPECT_EQ(cm::quote_path("a\xc2\xa0"
                           "b"),
            "a\xc2\xa0"
            "b");  // U+00A0 prints
  EXPECT_EQ(cm::quote_path("tab\there"), "\"tab\\there\"");
  EXPECT_EQ(cm::quote_path("bad\xff"), "\"bad\\377\"");
  // U+009B (CSI) and the other C1 controls: escaped byte by byte.
  EXPECT_EQ(cm::quote_path("a\xc2\x9b"
                           "2Jb"),
            "\"a\\302\\2332Jb\"");
  EXPECT_EQ(cm::quote_path("\xc2\x80"), "\"\\302\\200\"");
  EXPECT_EQ(cm::show_path("x y"), "'x y'");
  EXPECT_EQ(cm::show_path("x\ny"), "\"x\\ny\"");
}

TEST(TempFile, SmallStaysInMemoryLargeSpillsAndBothReadBack) {
  // $TMPDIR missing: a spool that stays in memory never needs it, one that
  // grows past kInMemory says where it could not go.
  cm::test::TempDir tmp;
  std::string missing = tmp / "missing";
  const char* old = std::getenv("TMPDIR");
  std::string saved = old != nullptr ? old : "";
  ::setenv("TMPDIR", missing.c_str(), 1);
  auto small = cm::TempFile::create();
  ASSERT_TRUE(small.ok());
  ASSERT_TRUE(small->write("hello, ", 7).ok());
  ASSERT_TRUE(small->write("world", 5).ok());
  char buf[16] = {};
  auto got = small->pread(buf, sizeof buf, 7);
  ASSERT_TRUE(got.ok());
  EXPECT_EQ(std::string(buf, *got), "world");
  std::string chunk(300 * 1024, 'x');
  cm::Status full;
  for (int i = 0; i < 5 && full.ok(); i++)
    full = small->write(chunk.data(), chunk.size());
  if (old != nullptr)
    ::setenv("TMPDIR", saved.c_str(), 1);
  else
    ::unsetenv("TMPDIR");
  ASSERT_FALSE(full.ok());
  EXPECT_NE(full.error().message.find(missing), std::string::npos) << full.error().message;

  // Across the spill: every byte where it was written.
  auto t = cm::TempFile::create();
  ASSERT_TRUE(t.ok());
  std::string all;
  for (int i = 0; all.size() <= cm::TempFile::kInMemory + 100000; i++) {
    std::string piece(70000 + i, static_cast<char>('a' + i % 26));
    ASSERT_TRUE(t->write(piece.data(), piece.size()).ok());
    all += piece;
  }
  EXPECT_EQ(t->size(), all.size());
  for (uint64_t off : {uint64_t{0}, uint64_t{cm::TempFile::kInMemory - 5}, uint64_t{all.size() - 10}}) {
    std::string back(20, '\0');
    auto n = t->pread(back.data(), back.size(), off);
    ASSERT_TRUE(n.ok());
    EXPECT_EQ(back.substr(0, *n), all.substr(off, 20));
  }
  cm::StringWriter copy;
  ASSERT_TRUE(t->copy_to(copy, 1000, all.size() - 1000).ok());
  EXPECT_EQ(copy.data(), all.substr(1000));
  ASSERT_TRUE(t->clear().ok());
  EXPECT_EQ(t->size(), 0u);
  ASSERT_TRUE(t->write("again", 5).ok());
  auto m = t->pread(buf, sizeof buf, 0);
  ASSERT_TRUE(m.ok());
  EXPECT_EQ(std::string(buf, *m), "again");
}

TEST(Buffer, GrowsKeepsItsMemoryAndAlignsLargeOnesToHugePages) {
  cm::Buffer b;
  EXPECT_EQ(b.size(), 0u);
  char* small = b.at_least(1000);
  ASSERT_NE(small, nullptr);
  EXPECT_GE(b.size(), 1000u);
  std::memset(small, 'a', b.size());
  // A request that fits is the same memory, its bytes as they were.
  EXPECT_EQ(b.at_least(10), small);
  EXPECT_EQ(small[999], 'a');
  // From 1 MiB on: a mapping aligned to 2 MiB, every byte of it writable.
  size_t n = (size_t{3} << 20) / 2 + 7;
  char* big = b.at_least(n);
  ASSERT_NE(big, nullptr);
  EXPECT_EQ(reinterpret_cast<uintptr_t>(big) % (size_t{2} << 20), 0u);
  EXPECT_GE(b.size(), n);
  EXPECT_EQ(b.size() % (size_t{2} << 20), 0u);
  std::memset(big, 'b', b.size());
  EXPECT_EQ(big[b.size() - 1], 'b');
  EXPECT_EQ(b.at_least(n - 1), big);
  // Growing again gives room for the larger size.
  size_t m = size_t{5} << 20;
  char* bigger = b.at_least(m);
  std::memset(bigger, 'c', m);
  EXPECT_EQ(bigger[m - 1], 'c');
  cm::Buffer preset(300);
  EXPECT_GE(preset.size(), 300u);
  std::memset(preset.data(), 0, 300);
}

namespace {

cm::Fd open_read(const std::string& path) {
  return cm::Fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
}

// Runs `then` in a child process that holds a guarded mapping (the SIGBUS
// guard is installed), and expects the child to end by SIGBUS, or under
// ASan by the report of its handler (the one before ours: an abort or exit
// 1); never a clean exit after `then`.
void expect_ended_by_sigbus(const std::string& dir, const std::function<void()>& then) {
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  cm::test::write_file(dir + "/guarded", std::string(page, 'g'));
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0);
  if (pid == 0) {
    cm::Fd g = open_read(dir + "/guarded");
    auto m = cm::Mapped::map(g.get(), page, "guarded");
    if (!m.ok())
      ::_exit(3);
    then();
    ::_exit(0);
  }
  int st = 0;
  ASSERT_EQ(::waitpid(pid, &st, 0), pid);
  bool killed = WIFSIGNALED(st) && (WTERMSIG(st) == SIGBUS || WTERMSIG(st) == SIGABRT);
  bool reported = WIFEXITED(st) && WEXITSTATUS(st) == 1;
  EXPECT_TRUE(killed || reported) << "status " << st;
}

}  // namespace

TEST(Mapped, ShowsTheFileAndReleasesItsSlot) {
  cm::test::TempDir t;
  std::string content = cm::test::random_bytes(300000, 5);
  cm::test::write_file(t / "f", content);
  // More mappings one after the other than there are guard slots: each
  // gives its slot back.
  for (int i = 0; i < 40; i++) {
    cm::Fd fd = open_read(t / "f");
    ASSERT_TRUE(fd.valid());
    auto m = cm::Mapped::map(fd.get(), content.size(), "f");
    ASSERT_TRUE(m.ok()) << m.error().message;
    ASSERT_EQ(m->view(), content);
    EXPECT_FALSE(m->cut());
  }
  cm::Fd fd = open_read(t / "f");
  EXPECT_FALSE(cm::Mapped::map(fd.get(), 0, "f").ok());
}

TEST(Mapped, AFileCutShortWhileMappedReadsAsZerosAndSaysSo) {
  cm::test::TempDir t;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  std::string content(3 * page, 'x');
  cm::test::write_file(t / "f", content);
  cm::Fd fd = open_read(t / "f");
  auto m = cm::Mapped::map(fd.get(), content.size(), "f");
  ASSERT_TRUE(m.ok()) << m.error().message;
  // Someone truncates the file: its pages go, and reading them would raise
  // SIGBUS. Read on another thread too: the guard is for every thread.
  ASSERT_EQ(::truncate((t / "f").c_str(), static_cast<off_t>(page / 2)), 0);
  size_t xs = 0;
  std::thread other([&] {
    for (char c : m->view().substr(page))
      xs += c == 'x';
  });
  other.join();
  EXPECT_EQ(xs, 0u);
  EXPECT_TRUE(m->cut());
  std::string_view v = m->view();
  EXPECT_EQ(v.substr(0, page / 2), std::string(page / 2, 'x'));
  EXPECT_EQ(v[2 * page + 1], '\0');
}

TEST(Mapped, ASigbusOutsideAMappingStillEndsTheProcess) {
  cm::test::TempDir t;
  size_t page = static_cast<size_t>(::sysconf(_SC_PAGESIZE));
  cm::test::write_file(t / "bare", std::string(2 * page, 'b'));
  // The guard is installed, but this fault is in a mapping it does not know.
  expect_ended_by_sigbus(t.path(), [&] {
    int fd = ::open((t / "bare").c_str(), O_RDONLY);
    auto* p = static_cast<volatile const char*>(::mmap(nullptr, 2 * page, PROT_READ, MAP_PRIVATE, fd, 0));
    if (p == MAP_FAILED || ::truncate((t / "bare").c_str(), 0) != 0)
      ::_exit(4);
    char c = p[page];
    (void)c;
  });
}

TEST(Mapped, ASigbusSentByKillIsNotSwallowed) {
  cm::test::TempDir t;
  expect_ended_by_sigbus(t.path(), [] { ::kill(::getpid(), SIGBUS); });
}
