#include "support.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <functional>
#include <map>
#include <sstream>
#include <stdexcept>

#include "util/hash.hpp"

namespace cm::test {

std::string random_bytes(size_t n, uint64_t seed) {
  std::mt19937_64 rng(seed);
  std::string s(n, '\0');
  for (auto& c : s)
    c = static_cast<char>(rng());
  return s;
}

TempDir::TempDir() {
  const char* base = std::getenv("CM_TEST_TMPDIR");
  std::string dir = base != nullptr && *base ? base : "/tmp";
  ::mkdir(dir.c_str(), 0755);
  std::string tmpl = dir + "/cm-test.XXXXXX";
  if (::mkdtemp(tmpl.data()) == nullptr)
    throw std::runtime_error("mkdtemp failed in " + dir);
  path_ = tmpl;
}

TempDir::~TempDir() {
  remove_all(path_);
}

void write_file(const std::string& path, const std::string& data, unsigned mode) {
  ::unlink(path.c_str());
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, mode);
  if (fd < 0)
    throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  size_t off = 0;
  while (off < data.size()) {
    ssize_t w = ::write(fd, data.data() + off, data.size() - off);
    if (w <= 0)
      throw std::runtime_error("cannot write " + path);
    off += static_cast<size_t>(w);
  }
  ::fchmod(fd, mode);
  ::close(fd);
}

std::string read_file(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

void make_dir(const std::string& path, unsigned mode) {
  if (::mkdir(path.c_str(), mode) != 0 && errno != EEXIST)
    throw std::runtime_error("cannot mkdir " + path);
  ::chmod(path.c_str(), mode);
}

void make_symlink(const std::string& target, const std::string& path) {
  if (::symlink(target.c_str(), path.c_str()) != 0)
    throw std::runtime_error("cannot symlink " + path);
}

void set_mtime(const std::string& path, int64_t sec) {
  struct timespec t[2] = {{sec, 0}, {sec, 0}};
  ::utimensat(AT_FDCWD, path.c_str(), t, AT_SYMLINK_NOFOLLOW);
}

void remove_all(const std::string& path) {
  struct stat st;
  if (::lstat(path.c_str(), &st) != 0)
    return;
  if (S_ISDIR(st.st_mode)) {
    ::chmod(path.c_str(), 0700);
    if (DIR* d = ::opendir(path.c_str())) {
      std::vector<std::string> names;
      while (struct dirent* de = ::readdir(d))
        if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, ".."))
          names.push_back(de->d_name);
      ::closedir(d);
      for (auto& n : names)
        remove_all(path + "/" + n);
    }
    ::rmdir(path.c_str());
  } else {
    ::unlink(path.c_str());
  }
}

namespace {
void walk(const std::string& root, const std::string& rel,
          const std::function<void(const std::string&, const struct stat&)>& f) {
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr)
    return;
  std::vector<std::string> names;
  while (struct dirent* de = ::readdir(d))
    if (std::strcmp(de->d_name, ".") && std::strcmp(de->d_name, ".."))
      names.push_back(de->d_name);
  ::closedir(d);
  std::sort(names.begin(), names.end());
  for (auto& n : names) {
    std::string r = rel.empty() ? n : rel + "/" + n;
    struct stat st;
    if (::lstat((root + "/" + r).c_str(), &st) != 0)
      continue;
    f(r, st);
    if (S_ISDIR(st.st_mode))
      walk(root, r, f);
  }
}

std::string describe(const std::string& root, const std::string& rel, const struct stat& st) {
  char mode[8];
  std::snprintf(mode, sizeof mode, "%04o", st.st_mode & 07777);
  if (S_ISDIR(st.st_mode))
    return std::string("dir ") + mode;
  if (S_ISLNK(st.st_mode)) {
    char buf[4096];
    ssize_t n = ::readlink((root + "/" + rel).c_str(), buf, sizeof buf);
    return "link -> " + std::string(buf, n > 0 ? static_cast<size_t>(n) : 0);
  }
  if (S_ISREG(st.st_mode))
    return std::string("file ") + mode + " " + to_hex(sha256(read_file(root + "/" + rel)));
  return "special";
}
}  // namespace

std::string tree_listing(const std::string& root) {
  std::string out;
  walk(root, "", [&](const std::string& rel, const struct stat& st) {
    out += rel + " " + describe(root, rel, st) + "\n";
  });
  return out;
}

std::vector<std::string> tree_diff(const std::string& a, const std::string& b) {
  std::map<std::string, std::string> la, lb;
  walk(a, "", [&](const std::string& r, const struct stat& st) { la[r] = describe(a, r, st); });
  walk(b, "", [&](const std::string& r, const struct stat& st) { lb[r] = describe(b, r, st); });
  std::vector<std::string> out;
  for (auto& [p, d] : la) {
    auto it = lb.find(p);
    if (it == lb.end())
      out.push_back("only in " + a + ": " + p);
    else if (it->second != d)
      out.push_back(p + ": " + d + " vs " + it->second);
  }
  for (auto& [p, d] : lb)
    if (!la.count(p))
      out.push_back("only in " + b + ": " + p);
  return out;
}

void copy_tree(const std::string& from, const std::string& to) {
  std::string cmd = "cp -a '" + from + "/.' '" + to + "/'";
  if (std::system(cmd.c_str()) != 0)
    throw std::runtime_error("cp failed");
}

std::string RandomTree::random_name() {
  static const std::vector<std::string> odd = {
      "sp ace",    "new\nline", "-dash",       "caf\xc3\xa9",      "bad\xff\xfe",
      "tab\there", "q\"uote",   "back\\slash", "main.3f2a9c81.js", "index-BxH7aK3p.css"};
  if (rng_() % 8 == 0)
    return odd[rng_() % odd.size()] + std::to_string(rng_() % 100);
  static const char chars[] = "abcdefghijklmnopqrstuvwxyz0123456789._-";
  std::string s;
  size_t len = 1 + rng_() % 12;
  for (size_t i = 0; i < len; i++)
    s += chars[rng_() % (sizeof chars - 1)];
  if (s == "." || s == "..")
    s = "x" + s;
  return s;
}

std::string RandomTree::random_content(size_t max) {
  size_t len = rng_() % (max + 1);
  std::string s;
  s.reserve(len);
  // Text-like content with repetition, so deltas have something to find.
  static const std::vector<std::string> words = {"<div>", "</div>",   "hello ", "world ", "cm ",
                                                 "\n",    "content ", "mover ", "delta ", "0123456789"};
  while (s.size() < len) {
    if (rng_() % 10 == 0)
      s += static_cast<char>(rng_() % 256);
    else
      s += words[rng_() % words.size()];
  }
  s.resize(len);
  return s;
}

void RandomTree::make(const std::string& root, int files) {
  std::vector<std::string> dirs = {root};
  for (int i = 0; i < files; i++) {
    std::string parent = dirs[rng_() % dirs.size()];
    std::string p = parent + "/" + random_name();
    struct stat st;
    if (::lstat(p.c_str(), &st) == 0)
      continue;
    int kind = static_cast<int>(rng_() % 10);
    if (kind < 2) {
      make_dir(p, rng_() % 4 == 0 ? 0700 : 0755);
      dirs.push_back(p);
    } else if (kind < 3) {
      make_symlink(random_name(), p);
    } else {
      size_t max = rng_() % 5 == 0 ? 200000 : 3000;
      write_file(p, random_content(max), rng_() % 5 == 0 ? 0755 : 0644);
      set_mtime(p, 1600000000 + static_cast<int64_t>(rng_() % 1000));
    }
  }
}

std::vector<std::string> RandomTree::list(const std::string& root, bool files_only) {
  std::vector<std::string> out;
  walk(root, "", [&](const std::string& r, const struct stat& st) {
    if (!files_only || S_ISREG(st.st_mode))
      out.push_back(r);
  });
  return out;
}

void RandomTree::mutate(const std::string& root, int changes) {
  for (int i = 0; i < changes; i++) {
    auto all = list(root, false);
    auto files = list(root, true);
    int what = static_cast<int>(rng_() % 10);
    if (what <= 2 && !files.empty()) {  // edit in place, keep size or not
      std::string p = root + "/" + files[rng_() % files.size()];
      std::string d = read_file(p);
      if (!d.empty()) {
        size_t at = rng_() % d.size();
        d[at] = static_cast<char>(d[at] ^ 0x5a);
      }
      if (rng_() % 2)
        d += random_content(500);
      struct stat st;
      ::lstat(p.c_str(), &st);
      write_file(p, d, st.st_mode & 07777);
      set_mtime(p, 1700000000 + static_cast<int64_t>(rng_() % 1000));
    } else if (what == 3 && !all.empty()) {  // delete
      remove_all(root + "/" + all[rng_() % all.size()]);
    } else if (what == 4 && !files.empty()) {  // rename (a move)
      std::string from = root + "/" + files[rng_() % files.size()];
      std::string to = root + "/" + random_name();
      struct stat st;
      if (::lstat(to.c_str(), &st) != 0)
        ::rename(from.c_str(), to.c_str());
    } else if (what == 5 && !all.empty()) {  // mode change
      std::string p = root + "/" + all[rng_() % all.size()];
      struct stat st;
      if (::lstat(p.c_str(), &st) == 0 && !S_ISLNK(st.st_mode))
        ::chmod(p.c_str(), S_ISDIR(st.st_mode) ? ((st.st_mode & 07777) == 0755 ? 0750 : 0755)
                                               : ((st.st_mode & 07777) == 0644 ? 0600 : 0644));
    } else if (what == 6 && !all.empty()) {  // type change
      std::string rel = all[rng_() % all.size()];
      std::string p = root + "/" + rel;
      struct stat st;
      ::lstat(p.c_str(), &st);
      remove_all(p);
      if (S_ISDIR(st.st_mode))
        write_file(p, random_content(100));
      else if (S_ISREG(st.st_mode)) {
        make_dir(p);
        write_file(p + "/inside", random_content(100));
      } else {
        write_file(p, random_content(100));
      }
    } else if (what == 7) {  // a copy of an existing file
      if (!files.empty()) {
        std::string from = root + "/" + files[rng_() % files.size()];
        std::string to = root + "/" + random_name();
        struct stat st;
        if (::lstat(to.c_str(), &st) != 0)
          write_file(to, read_file(from));
      }
    } else if (what == 8) {  // symlink retarget or new symlink
      std::string p = root + "/" + random_name();
      remove_all(p);
      make_symlink(random_name(), p);
    } else {  // new files
      make(root, 3);
    }
  }
}

}  // namespace cm::test
