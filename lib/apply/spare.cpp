#include "apply/spare.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <charconv>

#include "apply/applier.hpp"
#include "fs/tree.hpp"
#include "util/io.hpp"
#include "util/text.hpp"

namespace cm::apply {

namespace {

constexpr std::string_view kMagic = "cm-changes 1\n";

bool is_below(const std::string& p, const std::string& dir) {
  return p.size() > dir.size() && p[dir.size()] == '/' && p.compare(0, dir.size(), dir) == 0;
}

// Rebuilds `name` in `tp` as a copy of the directory `name` in `fp`.
Status rebuild_dir(int fp, int tp, const std::string& name, const struct stat& src,
                   const std::string& from_path, const std::string& to_path) {
  if (::mkdirat(tp, name.c_str(), 0700) != 0)
    return sys_error("cannot create directory", to_path, errno);
  Fd sub_from(::openat(fp, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sub_from.valid())
    return sys_error("cannot open directory", from_path, errno);
  Fd sub_to(::openat(tp, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
  if (!sub_to.valid())
    return sys_error("cannot open directory", to_path, errno);
  CM_TRY(clone_tree(sub_from.get(), sub_to.get(), from_path));
  if (::fchmod(sub_to.get(), src.st_mode & 07777) != 0)
    return sys_error("cannot set the mode of", to_path, errno);
  return {};
}

}  // namespace

std::string encode_changes(const ChangeRecord& r) {
  std::string s(kMagic);
  s += "base " + std::to_string(r.base) + "\n";
  for (const Touched& t : r.paths) {
    s += t.deep ? 'D' : 'P';
    s += t.path;
    s += '\0';
  }
  return s;
}

Result<ChangeRecord> decode_changes(std::string_view data, const std::string& name) {
  auto bad = [&](const std::string& what) {
    return Error("'" + name + "': not a change record: " + what, kExitBadInput);
  };
  if (data.substr(0, kMagic.size()) != kMagic)
    return bad("wrong magic or version");
  data.remove_prefix(kMagic.size());
  if (data.substr(0, 5) != "base ")
    return bad("no base line");
  data.remove_prefix(5);
  size_t eol = data.find('\n');
  if (eol == std::string_view::npos || eol == 0 || eol > 20)
    return bad("bad base line");
  ChangeRecord r;
  auto [end, ec] = std::from_chars(data.data(), data.data() + eol, r.base);
  if (ec != std::errc() || end != data.data() + eol)
    return bad("bad base number");
  data.remove_prefix(eol + 1);
  while (!data.empty()) {
    char flag = data[0];
    if (flag != 'P' && flag != 'D')
      return bad("bad flag byte");
    size_t nul = data.find('\0', 1);
    if (nul == std::string_view::npos)
      return bad("truncated path");
    std::string_view path = data.substr(1, nul - 1);
    if (!fs::is_safe_relative_path(path))
      return bad("unsafe path " + quote_path(std::string(path)));
    r.paths.push_back(Touched{std::string(path), flag == 'D'});
    data.remove_prefix(nul + 1);
  }
  return r;
}

void normalize(std::vector<Touched>& paths) {
  std::sort(paths.begin(), paths.end(),
            [](const Touched& a, const Touched& b) { return fs::path_less(a.path, b.path); });
  std::vector<Touched> out;
  for (Touched& t : paths) {
    if (!out.empty() && out.back().path == t.path)
      out.back().deep = out.back().deep || t.deep;
    else
      out.push_back(std::move(t));
  }
  paths = std::move(out);
}

Status catch_up(int from, int to, const std::vector<Touched>& paths, const std::string& from_name,
                const std::string& to_name, Changed& changed) {
  std::string rebuilt;  // a directory copied whole: what is below it is done
  for (const Touched& t : paths) {
    if (!rebuilt.empty() && is_below(t.path, rebuilt))
      continue;
    std::string parent = fs::parent_of(t.path);
    std::string name = fs::name_of(t.path);
    std::string from_path = from_name + "/" + t.path;
    std::string to_path = to_name + "/" + t.path;
    struct stat src;
    bool present = false;
    Fd fp(fs::open_beneath(from, parent, O_RDONLY | O_DIRECTORY));
    if (fp.valid()) {
      if (::fstatat(fp.get(), name.c_str(), &src, AT_SYMLINK_NOFOLLOW) == 0)
        present = true;
      else if (errno != ENOENT)
        return sys_error("cannot stat", from_path, errno);
    } else if (errno != ENOENT && errno != ENOTDIR && errno != ELOOP) {
      return sys_error("cannot open directory", from_name + "/" + parent, errno);
    }
    Fd tp(fs::open_beneath(to, parent, O_RDONLY | O_DIRECTORY));
    if (!tp.valid()) {
      if (!present && (errno == ENOENT || errno == ENOTDIR || errno == ELOOP))
        continue;  // gone on both sides
      return sys_error("cannot open directory", to_name + "/" + parent, errno);
    }
    struct stat dst;
    bool exists = ::fstatat(tp.get(), name.c_str(), &dst, AT_SYMLINK_NOFOLLOW) == 0;
    if (!exists && errno != ENOENT)
      return sys_error("cannot stat", to_path, errno);
    if (!present) {
      if (exists) {
        CM_TRY(fs::remove_tree_at(tp.get(), name, to_path));
        changed.dirs.insert(parent);
      }
      continue;
    }
    // From here on the entry is (re)made unless it is already right.
    changed.dirs.insert(parent);
    if (S_ISREG(src.st_mode)) {
      if (exists && S_ISREG(dst.st_mode) && dst.st_ino == src.st_ino && dst.st_dev == src.st_dev)
        continue;
      if (exists)
        CM_TRY(fs::remove_tree_at(tp.get(), name, to_path));
      if (::linkat(fp.get(), name.c_str(), tp.get(), name.c_str(), 0) != 0)
        return sys_error("cannot link", to_path, errno);
    } else if (S_ISLNK(src.st_mode)) {
      CM_ASSIGN(std::string target, fs::read_link_at(fp.get(), name, from_path));
      if (exists && S_ISLNK(dst.st_mode)) {
        CM_ASSIGN(std::string have, fs::read_link_at(tp.get(), name, to_path));
        if (have == target)
          continue;
      }
      if (exists)
        CM_TRY(fs::remove_tree_at(tp.get(), name, to_path));
      if (::symlinkat(target.c_str(), tp.get(), name.c_str()) != 0)
        return sys_error("cannot create symlink", to_path, errno);
    } else if (S_ISDIR(src.st_mode)) {
      if (exists && S_ISDIR(dst.st_mode) && !t.deep) {
        if ((dst.st_mode & 07777) != (src.st_mode & 07777)) {
          Fd d(::openat(tp.get(), name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
          if (!d.valid() || ::fchmod(d.get(), src.st_mode & 07777) != 0)
            return sys_error("cannot set the mode of", to_path, errno);
          changed.dirs.insert(t.path);
        }
        continue;
      }
      if (exists)
        CM_TRY(fs::remove_tree_at(tp.get(), name, to_path));
      CM_TRY(rebuild_dir(fp.get(), tp.get(), name, src, from_path, to_path));
      rebuilt = t.path;
      changed.bulk = true;
    } else if (exists) {
      // Special files are not part of a version.
      CM_TRY(fs::remove_tree_at(tp.get(), name, to_path));
    }
  }
  return {};
}

}  // namespace cm::apply
