#include "assign/sources.hpp"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>

#include <cerrno>
#include <map>
#include <memory>
#include <set>
#include <vector>

#include "util/text.hpp"

namespace cm::assign {

Status feed_table(Reader& in, const std::string& name, Builder& out) {
  delta::TableReader reader(in, name);
  CM_TRY(reader.open());
  CM_TRY(out.begin());
  std::vector<char> buf(delta::kDataChunk);
  for (;;) {
    CM_ASSIGN(auto e, reader.next());
    if (!e)
      break;
    CM_TRY(out.add(*e));
    for (;;) {
      CM_ASSIGN(size_t got, reader.read_data(buf.data(), buf.size()));
      if (got == 0)
        break;
      CM_TRY(out.data(buf.data(), got));
    }
  }
  // The trailer is checked by now: the table was complete and intact.
  return out.finish();
}

Result<delta::Stats> feed_tree(const std::string& dir, const fs::Filter* filter, Builder& out,
                               const delta::Callbacks& cb) {
  CM_ASSIGN(auto tree, fs::open_disk_tree(dir));
  auto empty = fs::empty_tree("(empty)");
  delta::Options opt;
  opt.filter = filter;
  return delta::compute(*empty, *tree, opt, &out, cb);
}

namespace {

struct ArchiveFree {
  void operator()(struct archive* a) const { archive_read_free(a); }
};

// "./a/b/" -> "a/b"; "" for the root itself.
std::string normalize(std::string p) {
  while (p.rfind("./", 0) == 0)
    p.erase(0, 2);
  while (!p.empty() && p.back() == '/')
    p.pop_back();
  if (p == ".")
    p.clear();
  return p;
}

}  // namespace

Status feed_archive(const std::string& path, Builder& out,
                    const std::function<void(const std::string&)>& warning) {
  // A file that cannot be opened is a file error (exit 1); one that opens
  // but is no archive of these formats, or whose compression is damaged,
  // is bad input (exit 3).
  // Opened once, here, and read from that descriptor (a named pipe
  // cannot be opened twice).
  Fd file(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file.valid())
    return sys_error("cannot open archive", path, errno);
  std::unique_ptr<struct archive, ArchiveFree> a(archive_read_new());
  archive_read_support_filter_all(a.get());
  // The formats cm-assign(1) names, not "all": libarchive's mtree and raw
  // readers would take any text file for an archive of empty files.
  archive_read_support_format_tar(a.get());
  archive_read_support_format_cpio(a.get());
  archive_read_support_format_zip(a.get());
  if (archive_read_open_fd(a.get(), file.get(), 256 * 1024) != ARCHIVE_OK) {
    int err = archive_errno(a.get());
    const char* e = archive_error_string(a.get());
    // libarchive's own codes for "not this format" (EILSEQ on Linux) and
    // damaged data (-1) are not public; any other errno is the file's.
    bool bad = err == EILSEQ || err == -1 || err == 0;
    return Error("'" + path +
                     "' is not an archive cm-assign reads (tar, pax, cpio or zip, compressed or not)" +
                     (e != nullptr ? std::string(": ") + e : ""),
                 bad ? kExitBadInput : kExitFailure);
  }
  auto fail = [&](const std::string& what) {
    const char* e = archive_error_string(a.get());
    return Error("'" + path + "': " + what + (e != nullptr ? std::string(": ") + e : ""), kExitBadInput);
  };
  CM_TRY(out.begin());
  std::set<std::string> dirs;               // created so far
  std::map<std::string, HashedSize> files;  // written so far, for hard links
  // Parents an archive does not list get a directory of their own.
  auto ensure_parents = [&](const std::string& p) -> Status {
    size_t slash = 0;
    while ((slash = p.find('/', slash)) != std::string::npos) {
      std::string d = p.substr(0, slash++);
      if (dirs.insert(d).second) {
        delta::Entry e;
        e.op = delta::Op::Mkdir;
        e.path = d;
        e.mode = 0755;
        CM_TRY(out.add(e));
      }
    }
    return {};
  };
  std::vector<char> buf(256 * 1024);
  for (;;) {
    struct archive_entry* ae = nullptr;
    int r = archive_read_next_header(a.get(), &ae);
    if (r == ARCHIVE_EOF)
      break;
    if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
      return fail("damaged archive");
    const char* name = archive_entry_pathname(ae);
    std::string p = normalize(name != nullptr ? name : "");
    if (p.empty())
      continue;  // the root
    if (!fs::is_safe_relative_path(p))
      return Error("'" + path + "': unsafe path " + quote_path(p) + " in the archive", kExitBadInput);
    CM_TRY(ensure_parents(p));
    delta::Entry e;
    e.path = p;
    e.mode = archive_entry_perm(ae) & 07777;
    e.mtime_ns = static_cast<int64_t>(archive_entry_mtime(ae)) * 1000000000 + archive_entry_mtime_nsec(ae);
    if (const char* hl = archive_entry_hardlink(ae); hl != nullptr) {
      // A hard link has the content of a file the archive gave earlier:
      // a copy of that file, made by this assignment.
      std::string src = normalize(hl);
      auto it = files.find(src);
      if (it == files.end())
        return Error("'" + path + "': hard link " + quote_path(p) + " to " + quote_path(src) +
                         ", which is not an earlier file of the archive",
                     kExitBadInput);
      e.op = delta::Op::Copy;
      e.source = src;
      e.source_new = true;
      e.size = it->second.size;
      e.hash = it->second.digest;
      files[p] = it->second;
      CM_TRY(out.add(e));
      continue;
    }
    switch (archive_entry_filetype(ae)) {
      case AE_IFDIR:
        e.op = delta::Op::Mkdir;
        dirs.insert(p);
        CM_TRY(out.add(e));
        break;
      case AE_IFLNK: {
        const char* target = archive_entry_symlink(ae);
        e.op = delta::Op::Symlink;
        e.target = target != nullptr ? target : "";
        CM_TRY(out.add(e));
        break;
      }
      case AE_IFREG: {
        if (!archive_entry_size_is_set(ae))
          return fail("entry " + quote_path(p) + " has no size");
        e.op = delta::Op::File;
        e.size = e.data_size = static_cast<uint64_t>(archive_entry_size(ae));
        CM_TRY(out.add(e, false));
        uint64_t total = 0;
        Sha256 h;
        for (;;) {
          la_ssize_t got = archive_read_data(a.get(), buf.data(), buf.size());
          if (got < 0)
            return fail("cannot read " + quote_path(p));
          if (got == 0)
            break;
          total += static_cast<uint64_t>(got);
          if (total > e.size)
            return fail(quote_path(p) + " is longer than its header says");
          h.update(buf.data(), static_cast<size_t>(got));
          CM_TRY(out.data(buf.data(), static_cast<size_t>(got)));
        }
        if (total != e.size)
          return fail(quote_path(p) + " is shorter than its header says");
        files[p] = HashedSize{h.finish(), total};
        break;
      }
      default: warning("skipping " + quote_path(p) + ": not a file, directory or symlink"); break;
    }
  }
  return out.finish();
}

}  // namespace cm::assign
