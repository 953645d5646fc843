#include "delta/table.hpp"

#include <cstring>
#include <nlohmann/json.hpp>

#include "util/text.hpp"
#include "util/wire.hpp"

namespace cm::delta {

const char* op_name(Op op) {
  switch (op) {
    case Op::Mkdir: return "mkdir";
    case Op::File: return "file";
    case Op::Patch: return "patch";
    case Op::Copy: return "copy";
    case Op::Symlink: return "symlink";
    case Op::Delete: return "delete";
    case Op::Chmod: return "chmod";
  }
  return "?";
}

const char* format_name(DeltaFormat f) {
  switch (f) {
    case DeltaFormat::Rsync: return "librsync";
    case DeltaFormat::Zstd: return "zstd";
  }
  return "?";
}

namespace {

bool known_op(uint8_t v) {
  return v >= 1 && v <= 7;
}

bool has_mode(Op op) {
  return op == Op::Mkdir || op == Op::File || op == Op::Patch || op == Op::Copy || op == Op::Chmod;
}
bool has_content(Op op) {
  return op == Op::File || op == Op::Patch || op == Op::Copy;
}

void encode(const Entry& e, std::string& out) {
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(e.op));
  w.bytes(e.path);
  if (has_mode(e.op))
    w.varint(e.mode);
  if (has_content(e.op)) {
    w.svarint(e.mtime_ns);
    w.varint(e.size);
    w.digest(e.hash);
  }
  switch (e.op) {
    case Op::Patch:
      w.bytes(e.source);
      w.digest(e.source_hash);
      w.u8(static_cast<uint8_t>(e.format));
      w.varint(e.data_size);
      break;
    case Op::Copy:
      w.u8(e.source_new ? 1 : 0);
      w.bytes(e.source);
      break;
    case Op::Symlink: w.bytes(e.target); break;
    case Op::Delete: w.u8(static_cast<uint8_t>(e.old_type)); break;
    default: break;
  }
}

// Decodes one entry payload; the caller validates the result.
bool decode(std::string_view payload, Entry& e, std::string& why) {
  ByteReader r(payload);
  uint8_t op = r.u8();
  if (r.ok() && !known_op(op)) {
    why = "unknown operation " + std::to_string(op);
    return false;
  }
  e.op = static_cast<Op>(op);
  e.path = std::string(r.bytes(4096));
  if (has_mode(e.op)) {
    uint64_t m = r.varint();
    if (m > 07777)
      r.fail("mode out of range");
    e.mode = static_cast<uint32_t>(m);
  }
  if (has_content(e.op)) {
    e.mtime_ns = r.svarint();
    e.size = r.varint();
    e.hash = r.digest();
  }
  switch (e.op) {
    case Op::Patch: {
      e.source = std::string(r.bytes(4096));
      e.source_hash = r.digest();
      uint8_t f = r.u8();
      if (f != static_cast<uint8_t>(DeltaFormat::Rsync) && f != static_cast<uint8_t>(DeltaFormat::Zstd))
        r.fail("unknown delta format");
      e.format = static_cast<DeltaFormat>(f);
      e.data_size = r.varint();
      break;
    }
    case Op::Copy: {
      uint8_t flags = r.u8();
      if (flags > 1)
        r.fail("unknown copy flags");
      e.source_new = flags == 1;
      e.source = std::string(r.bytes(4096));
      break;
    }
    case Op::Symlink: e.target = std::string(r.bytes(kMaxSymlinkTarget)); break;
    case Op::Delete: {
      uint8_t t = r.u8();
      if (t > static_cast<uint8_t>(fs::Type::Symlink))
        r.fail("unknown file type");
      e.old_type = static_cast<fs::Type>(t);
      break;
    }
    default: break;
  }
  if (e.op == Op::File)
    e.data_size = e.size;
  if (r.ok() && !r.at_end())
    r.fail("trailing bytes");
  if (!r.ok()) {
    why = r.problem();
    return false;
  }
  return true;
}

}  // namespace

Status validate(const Entry& e) {
  if (!known_op(static_cast<uint8_t>(e.op)))
    return Error("unknown operation", kExitBadInput);
  if (!fs::is_safe_relative_path(e.path))
    return Error("unsafe path " + quote_path(e.path), kExitBadInput);
  if (has_mode(e.op) && e.mode > 07777)
    return Error("mode out of range for " + quote_path(e.path), kExitBadInput);
  if ((e.op == Op::Patch || e.op == Op::Copy) && !fs::is_safe_relative_path(e.source))
    return Error("unsafe source path " + quote_path(e.source) + " for " + quote_path(e.path), kExitBadInput);
  if (e.op == Op::Symlink &&
      (e.target.empty() || e.target.size() > kMaxSymlinkTarget || e.target.find('\0') != std::string::npos))
    return Error("bad symlink target for " + quote_path(e.path), kExitBadInput);
  if (e.op == Op::Delete && e.old_type == fs::Type::Special)
    return Error("bad type for delete of " + quote_path(e.path), kExitBadInput);
  if (e.op == Op::File && e.data_size != e.size)
    return Error("data size differs from file size for " + quote_path(e.path), kExitBadInput);
  return {};
}

// ---- writer

Status TableWriter::frame(char kind, std::string_view payload) {
  std::string head;
  ByteWriter w(head);
  w.u8(static_cast<uint8_t>(kind));
  w.varint(payload.size());
  hash_.update(head);
  hash_.update(payload);
  CM_TRY(out_.write(head));
  return out_.write(payload);
}

Status TableWriter::begin() {
  std::string head(kMagic, sizeof kMagic);
  ByteWriter w(head);
  w.varint(kVersion);
  hash_.update(head);
  CM_TRY(out_.write(head));
  std::string h;
  ByteWriter(h).varint(0);  // flags
  begun_ = true;
  return frame('H', h);
}

Status TableWriter::add(const Entry& e) {
  if (!begun_ || data_left_ != 0)
    return Error("delta table: entry out of sequence for " + quote_path(e.path));
  CM_TRY(validate(e));
  std::string payload;
  encode(e, payload);
  CM_TRY(frame('E', payload));
  totals_.entries++;
  data_left_ = e.has_data() ? e.data_size : 0;
  return {};
}

Status TableWriter::data(const void* p, size_t n) {
  if (n > data_left_)
    return Error("delta table: more data than the entry declared");
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    size_t k = std::min(n, kDataChunk);
    CM_TRY(frame('D', std::string_view(c, k)));
    c += k;
    n -= k;
    data_left_ -= k;
    totals_.data_bytes += k;
  }
  return {};
}

Status TableWriter::finish() {
  if (!begun_ || data_left_ != 0)
    return Error("delta table: finished in the middle of an entry's data");
  std::string t;
  ByteWriter w(t);
  w.varint(totals_.entries);
  w.varint(totals_.data_bytes);
  // The digest covers every byte before the trailer frame.
  Digest d = hash_.finish();
  std::string head;
  ByteWriter hw(head);
  hw.u8('T');
  hw.varint(t.size() + d.size());
  w.digest(d);
  CM_TRY(out_.write(head));
  CM_TRY(out_.write(t));
  return out_.flush();
}

// ---- reader

Error TableReader::bad(const std::string& what) const {
  return Error("'" + name_ + "': " + what, kExitBadInput);
}

Status TableReader::fill(size_t n) {
  if (buf_.size() - pos_ >= n)
    return {};
  buf_.erase(0, pos_);
  pos_ = 0;
  char tmp[65536];
  while (buf_.size() < n) {
    CM_ASSIGN(size_t got, in_.read(tmp, sizeof tmp));
    if (got == 0)
      return bad("truncated: the delta table ends before its trailer");
    buf_.append(tmp, got);
  }
  return {};
}

Status TableReader::open() {
  Status enough = fill(sizeof kMagic + 1);
  size_t have = std::min(buf_.size(), sizeof kMagic);
  if (std::memcmp(buf_.data(), kMagic, have) != 0)
    return bad("not a cm delta table (bad magic)");
  CM_TRY(enough);
  hash_.update(buf_.data(), sizeof kMagic);
  pos_ = sizeof kMagic;
  // The version is a varint; fill enough for the longest one.
  CM_TRY(fill(1));
  uint64_t version = 0;
  {
    size_t avail = std::min<size_t>(buf_.size() - pos_, 10);
    ByteReader r(std::string_view(buf_.data() + pos_, avail));
    version = r.varint();
    if (!r.ok())
      return bad("bad version field");
    size_t used = avail - r.remaining();
    hash_.update(buf_.data() + pos_, used);
    pos_ += used;
  }
  if (version != kVersion)
    return bad("unsupported delta table version " + std::to_string(version) + " (this cm reads version " +
               std::to_string(kVersion) + ")");
  uint64_t len = 0;
  CM_ASSIGN(char kind, frame_header(len));
  if (kind != 'H' || len > 64)
    return bad("missing header");
  CM_TRY(fill(len));
  ByteReader r(std::string_view(buf_.data() + pos_, len));
  uint64_t flags = r.varint();
  if (!r.ok() || !r.at_end() || flags != 0)
    return bad("unsupported header flags");
  hash_.update(buf_.data() + pos_, len);
  pos_ += len;
  return {};
}

Result<char> TableReader::frame_header(uint64_t& len) {
  // kind + varint of at most 10 bytes; near the end fewer may exist.
  CM_TRY(fill(2));
  char kind = buf_[pos_];
  size_t avail = std::min<size_t>(buf_.size() - pos_ - 1, 10);
  if (avail < 10) {
    Status s = fill(11);
    (void)s;  // fewer bytes are fine if the varint ends in time
    avail = std::min<size_t>(buf_.size() - pos_ - 1, 10);
  }
  ByteReader r(std::string_view(buf_.data() + pos_ + 1, avail));
  len = r.varint();
  if (!r.ok())
    return bad(std::string("bad frame length (") + r.problem() + ")");
  size_t used = 1 + avail - r.remaining();
  if (kind != 'T')
    hash_.update(buf_.data() + pos_, used);
  pos_ += used;
  return kind;
}

Status TableReader::check_trailer(uint64_t len) {
  if (len > 64)
    return bad("bad trailer");
  CM_TRY(fill(len));
  ByteReader r(std::string_view(buf_.data() + pos_, len));
  trailer_.entries = r.varint();
  trailer_.data_bytes = r.varint();
  Digest d = r.digest();
  if (!r.ok() || !r.at_end())
    return bad("bad trailer");
  pos_ += len;
  if (d != hash_.finish())
    return bad("checksum mismatch: the delta table is corrupt");
  if (trailer_.entries != seen_.entries || trailer_.data_bytes != seen_.data_bytes)
    return bad("trailer counts do not match the contents");
  // Nothing may follow the trailer.
  if (pos_ != buf_.size())
    return bad("data after the trailer");
  char extra;
  CM_ASSIGN(size_t got, in_.read(&extra, 1));
  if (got != 0)
    return bad("data after the trailer");
  done_ = true;
  return {};
}

Result<std::optional<Entry>> TableReader::next() {
  if (done_)
    return std::optional<Entry>();
  // Skip unread data of the previous entry.
  char skip[65536];
  for (;;) {
    CM_ASSIGN(size_t got, read_data(skip, sizeof skip));
    if (got == 0)
      break;
  }
  uint64_t len = 0;
  CM_ASSIGN(char kind, frame_header(len));
  if (kind == 'T') {
    CM_TRY(check_trailer(len));
    return std::optional<Entry>();
  }
  if (kind != 'E')
    return bad(std::string("unexpected frame '") +
               (kind >= 0x20 && kind < 0x7f ? std::string(1, kind) : "?") + "' where an entry was expected");
  if (len == 0 || len > kMaxEntryFrame)
    return bad("entry frame of impossible length " + std::to_string(len));
  CM_TRY(fill(len));
  std::string_view payload(buf_.data() + pos_, len);
  Entry e;
  std::string why;
  uint64_t index = seen_.entries + 1;
  if (!decode(payload, e, why))
    return bad("entry " + std::to_string(index) + ": " + why);
  hash_.update(payload);
  pos_ += len;
  Status v = validate(e);
  if (!v.ok())
    return bad("entry " + std::to_string(index) + ": " + v.error().message);
  seen_.entries++;
  data_left_ = e.has_data() ? e.data_size : 0;
  frame_left_ = 0;
  return std::optional<Entry>(std::move(e));
}

Result<size_t> TableReader::read_data(void* out, size_t n) {
  if (data_left_ == 0 || n == 0)
    return size_t{0};
  if (frame_left_ == 0) {
    uint64_t len = 0;
    CM_ASSIGN(char kind, frame_header(len));
    if (kind != 'D')
      return bad("entry data ends early (" + std::to_string(data_left_) + " bytes missing)");
    if (len == 0 || len > kMaxDataFrame || len > data_left_)
      return bad("data frame of impossible length " + std::to_string(len));
    frame_left_ = len;
  }
  size_t k = static_cast<size_t>(std::min<uint64_t>({n, frame_left_, 65536}));
  CM_TRY(fill(k));
  std::memcpy(out, buf_.data() + pos_, k);
  hash_.update(buf_.data() + pos_, k);
  pos_ += k;
  frame_left_ -= k;
  data_left_ -= k;
  seen_.data_bytes += k;
  return k;
}

// ---- presentation

std::string describe(const Entry& e) {
  std::string s = op_name(e.op);
  s.resize(8, ' ');
  switch (e.op) {
    case Op::Mkdir:
    case Op::Chmod: s += mode_string(e.mode) + " " + quote_path(e.path); break;
    case Op::File:
      s += mode_string(e.mode) + " " + quote_path(e.path) + " (" + human_bytes(e.size) + ")";
      break;
    case Op::Patch:
      s += mode_string(e.mode) + " " + quote_path(e.path) + " (" + human_bytes(e.size) + ", " +
           format_name(e.format) + " delta " + human_bytes(e.data_size) + " against " + quote_path(e.source) +
           ")";
      break;
    case Op::Copy:
      s += mode_string(e.mode) + " " + quote_path(e.path) + " (" + human_bytes(e.size) + ", same as " +
           (e.source_new ? "new " : "") + quote_path(e.source) + ")";
      break;
    case Op::Symlink: s += "     " + quote_path(e.path) + " -> " + quote_path(e.target); break;
    case Op::Delete: s += "     " + quote_path(e.path) + " (" + fs::type_name(e.old_type) + ")"; break;
  }
  return s;
}

nlohmann::json to_json(const Entry& e) {
  nlohmann::json j;
  j["op"] = op_name(e.op);
  json_set_bytes(j, "path", e.path);
  if (has_mode(e.op))
    j["mode"] = mode_string(e.mode);
  if (has_content(e.op)) {
    j["mtime_ns"] = e.mtime_ns;
    j["size"] = e.size;
    j["sha256"] = to_hex(e.hash);
  }
  switch (e.op) {
    case Op::File:
    case Op::Patch:
      j["data_bytes"] = e.data_size;
      if (e.op == Op::Patch) {
        json_set_bytes(j, "source", e.source);
        j["source_sha256"] = to_hex(e.source_hash);
        j["format"] = format_name(e.format);
      }
      break;
    case Op::Copy:
      json_set_bytes(j, "source", e.source);
      j["source_tree"] = e.source_new ? "new" : "base";
      break;
    case Op::Symlink: json_set_bytes(j, "target", e.target); break;
    case Op::Delete: j["type"] = fs::type_name(e.old_type); break;
    default: break;
  }
  return j;
}

}  // namespace cm::delta
