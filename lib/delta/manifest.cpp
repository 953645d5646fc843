#include "delta/manifest.hpp"

#include <sys/stat.h>

#include <cerrno>
#include <climits>
#include <cstdlib>
#include <cstring>

#include "util/io.hpp"
#include "util/wire.hpp"

namespace cm::delta {

namespace {
constexpr int64_t kRacyWindowNs = 2'000'000'000;
constexpr size_t kMinEntryBytes = 1 + 1 + 1 + 1 + 1 + 32;
}  // namespace

Result<Manifest> Manifest::parse(std::string_view bytes, const std::string& name) {
  auto bad = [&](const std::string& why) { return Error("'" + name + "': " + why, kExitBadInput); };
  if (bytes.size() < sizeof kManifestMagic + 2 + 32 ||
      std::memcmp(bytes.data(), kManifestMagic, sizeof kManifestMagic) != 0)
    return bad("not a cm manifest");
  std::string_view body = bytes.substr(0, bytes.size() - 32);
  Digest want;
  std::memcpy(want.data(), bytes.data() + body.size(), 32);
  if (sha256(body) != want)
    return bad("checksum mismatch");
  ByteReader r(body.substr(sizeof kManifestMagic));
  uint64_t version = r.varint();
  if (r.ok() && version != kManifestVersion)
    return bad("unsupported manifest version " + std::to_string(version));
  uint64_t count = r.varint();
  if (r.ok() && count > r.remaining() / kMinEntryBytes)
    return bad("entry count larger than the file");
  Manifest m;
  std::string prev;
  for (uint64_t i = 0; i < count && r.ok(); i++) {
    std::string path(r.bytes(4096));
    ManifestEntry e;
    e.size = r.varint();
    e.mtime_ns = r.svarint();
    e.ctime_ns = r.svarint();
    e.ino = r.varint();
    e.hash = r.digest();
    if (!r.ok())
      break;
    if (!fs::is_safe_relative_path(path) || (i > 0 && !(prev < path)))
      return bad("entry " + std::to_string(i + 1) + ": bad or unsorted path");
    prev = path;
    m.entries_.emplace_hint(m.entries_.end(), std::move(path), e);
  }
  if (!r.ok())
    return bad(std::string("damaged (") + r.problem() + ")");
  if (!r.at_end())
    return bad("trailing bytes");
  return m;
}

Result<Manifest> Manifest::load(const std::string& path) {
  struct stat st;
  if (::stat(path.c_str(), &st) != 0 && errno == ENOENT)
    return Manifest();
  CM_ASSIGN(auto in, open_input(path));
  CM_ASSIGN(std::string bytes, read_all(*in, size_t{1} << 31));
  return parse(bytes, path);
}

std::optional<Digest> Manifest::lookup(const std::string& path, const fs::Stat& st) const {
  auto it = entries_.find(path);
  if (it == entries_.end())
    return std::nullopt;
  const ManifestEntry& e = it->second;
  if (e.size != st.size || e.mtime_ns != st.mtime_ns || e.ctime_ns != st.ctime_ns || e.ino != st.ino)
    return std::nullopt;
  return e.hash;
}

void Manifest::record(const std::string& path, const fs::Stat& st, const Digest& hash, int64_t now_ns) {
  if (now_ns - st.ctime_ns < kRacyWindowNs || now_ns - st.mtime_ns < kRacyWindowNs) {
    if (entries_.erase(path) > 0)
      changed_ = true;
    return;
  }
  ManifestEntry e{st.size, st.mtime_ns, st.ctime_ns, st.ino, hash};
  auto [it, inserted] = entries_.try_emplace(path, e);
  if (!inserted) {
    const ManifestEntry& o = it->second;
    if (o.size == e.size && o.mtime_ns == e.mtime_ns && o.ctime_ns == e.ctime_ns && o.ino == e.ino &&
        o.hash == e.hash)
      return;
    it->second = e;
  }
  changed_ = true;
}

std::string Manifest::serialize() const {
  std::string out(kManifestMagic, sizeof kManifestMagic);
  ByteWriter w(out);
  w.varint(kManifestVersion);
  w.varint(entries_.size());
  for (const auto& [path, e] : entries_) {
    w.bytes(path);
    w.varint(e.size);
    w.svarint(e.mtime_ns);
    w.svarint(e.ctime_ns);
    w.varint(e.ino);
    w.digest(e.hash);
  }
  w.digest(sha256(out));
  return out;
}

Status Manifest::save(const std::string& path) const {
  return write_file_atomic(path, serialize(), 0644);
}

}  // namespace cm::delta

namespace cm::delta {
std::string default_manifest_path(const std::string& shadow) {
  char* real = ::realpath(shadow.c_str(), nullptr);
  if (real == nullptr)
    return {};
  std::string p(real);
  std::free(real);
  if (p == "/")
    return {};
  return p + ".cm-manifest";
}
}  // namespace cm::delta
