#include "assign/format.hpp"

#include <cstring>
#include <nlohmann/json.hpp>

#include "util/text.hpp"
#include "util/wire.hpp"

namespace cm::assign {

const char* type_name(Type t) {
  switch (t) {
    case Type::Publish: return "publish";
    case Type::Replicate: return "replicate";
    case Type::Synchronize: return "synchronize";
    case Type::Restore: return "restore";
    case Type::Remove: return "remove";
    case Type::Commit: return "commit";
    case Type::Rollback: return "rollback";
  }
  return "?";
}

std::optional<Type> parse_type(std::string_view s) {
  for (uint8_t v = 1; v <= 7; v++)
    if (s == type_name(static_cast<Type>(v)))
      return static_cast<Type>(v);
  return std::nullopt;
}

bool carries_data(Type t) {
  return t == Type::Publish || t == Type::Replicate || t == Type::Synchronize || t == Type::Restore;
}

const char* member_name(Member m) {
  switch (m) {
    case Member::Commands: return "commands";
    case Member::DataZstd: return "data.zst";
    case Member::DataRaw: return "data";
  }
  return "?";
}

char member_kind(Member m) {
  switch (m) {
    case Member::Commands: return 'C';
    case Member::DataZstd: return 'Z';
    case Member::DataRaw: return 'R';
  }
  return '?';
}

const char* op_name(Op op) {
  switch (op) {
    case Op::Unpack: return "unpack";
    case Op::Mkdir: return "mkdir";
    case Op::Put: return "put";
    case Op::Patch: return "patch";
    case Op::Copy: return "copy";
    case Op::CopyNew: return "copy-new";
    case Op::Symlink: return "symlink";
    case Op::Remove: return "remove";
    case Op::Rmdir: return "rmdir";
    case Op::Chmod: return "chmod";
  }
  return "?";
}

ResultCheck result_check(const Digest& d) {
  ResultCheck c;
  std::memcpy(c.data(), d.data(), c.size());
  return c;
}

// ---- header

std::string encode(const Header& h) {
  std::string out;
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(h.type));
  w.varint(h.id);
  w.varint(h.job);
  w.varint(h.sequence);
  w.varint(h.base);
  w.varint(h.part);
  w.u8(h.last_part ? 1 : 0);
  w.bytes(h.site);
  w.bytes(h.group);
  w.svarint(h.created_ns);
  w.varint(h.target);
  w.varint(h.commands);
  w.varint(h.data_bytes);
  w.varint(h.content_bytes);
  w.u8(h.encrypted ? 1 : 0);
  if (h.encrypted) {
    w.raw(std::string_view(reinterpret_cast<const char*>(h.key_id.data()), h.key_id.size()));
    w.raw(std::string_view(reinterpret_cast<const char*>(h.nonce.data()), h.nonce.size()));
  }
  for (const MemberInfo& m : h.members) {
    w.u8(m.present ? (m.zstd ? 3 : 1) : 0);
    if (!m.present)
      continue;
    w.varint(m.stored_size);
    w.varint(m.plain_size);
    w.digest(m.hash);
  }
  return out;
}

bool valid_name(std::string_view s, bool allow_empty) {
  if (s.empty())
    return allow_empty;
  if (s.size() > 255)
    return false;
  if (!is_valid_utf8(s))
    return false;
  for (char c : s)
    if (static_cast<unsigned char>(c) < 0x20 || c == '/' || c == 0x7f)
      return false;
  return true;
}

Result<Header> decode_header(std::string_view bytes, const std::string& name) {
  auto bad = [&](const std::string& why) {
    return Error("'" + name + "': bad header: " + why, kExitBadInput);
  };
  ByteReader r(bytes);
  Header h;
  uint8_t type = r.u8();
  if (r.ok() && (type < 1 || type > 7))
    return bad("unknown assignment type " + std::to_string(type));
  h.type = static_cast<Type>(type);
  h.id = r.varint();
  h.job = r.varint();
  h.sequence = r.varint();
  h.base = r.varint();
  h.part = r.varint();
  uint8_t last = r.u8();
  h.last_part = last == 1;
  h.site = std::string(r.bytes(255));
  h.group = std::string(r.bytes(255));
  h.created_ns = r.svarint();
  h.target = r.varint();
  h.commands = r.varint();
  h.data_bytes = r.varint();
  h.content_bytes = r.varint();
  uint8_t enc = r.u8();
  h.encrypted = enc == 1;
  if (h.encrypted) {
    std::string_view id = r.raw(h.key_id.size());
    std::string_view nonce = r.raw(h.nonce.size());
    if (r.ok()) {
      std::memcpy(h.key_id.data(), id.data(), id.size());
      std::memcpy(h.nonce.data(), nonce.data(), nonce.size());
    }
  }
  for (MemberInfo& m : h.members) {
    uint8_t flags = r.u8();
    if (!r.ok())
      break;
    if (flags != 0 && flags != 1 && flags != 3)
      return bad("unknown member flags");
    m.present = flags != 0;
    m.zstd = flags == 3;
    if (!m.present)
      continue;
    m.stored_size = r.varint();
    m.plain_size = r.varint();
    m.hash = r.digest();
  }
  if (!r.ok())
    return bad(r.problem());
  if (!r.at_end())
    return bad("trailing bytes");
  if (last > 1 || enc > 1)
    return bad("flag out of range");
  if (h.id == 0)
    return bad("assignment id 0");
  if (h.part == 0)
    return bad("part 0");
  if (!valid_name(h.site, false) || !valid_name(h.group, true))
    return bad("bad site or group name");
  if (!h.member(Member::Commands).present)
    return bad("no command list");
  if (h.member(Member::Commands).plain_size > kMaxCommandsPlain)
    return bad("command list too large");
  if (h.commands > h.member(Member::Commands).plain_size)
    return bad("more commands than bytes");
  return h;
}

// ---- commands

namespace {
bool has_mode(Op op) {
  return op == Op::Mkdir || op == Op::Put || op == Op::Patch || op == Op::Copy || op == Op::CopyNew ||
         op == Op::Chmod;
}
bool has_content(Op op) {
  return op == Op::Put || op == Op::Patch || op == Op::Copy || op == Op::CopyNew;
}
}  // namespace

void encode(const Command& c, std::string& out) {
  std::string rec;
  ByteWriter w(rec);
  w.u8(static_cast<uint8_t>(c.op));
  if (c.op == Op::Unpack) {
    w.u8(static_cast<uint8_t>(c.from));
    w.u8(c.unpack);
  } else {
    w.bytes(c.path);
  }
  if (has_mode(c.op))
    w.varint(c.mode);
  if (has_content(c.op)) {
    w.svarint(c.mtime_ns);
    w.varint(c.size);
    w.raw(std::string_view(reinterpret_cast<const char*>(c.hash.data()), c.hash.size()));
  }
  switch (c.op) {
    case Op::Put: w.u8(static_cast<uint8_t>(c.from)); break;
    case Op::Patch:
      w.bytes(c.source);
      w.raw(std::string_view(reinterpret_cast<const char*>(c.basis_check.data()), c.basis_check.size()));
      w.u8(static_cast<uint8_t>(c.format));
      w.u8(static_cast<uint8_t>(c.from));
      w.varint(c.length);
      break;
    case Op::Copy:
    case Op::CopyNew: w.bytes(c.source); break;
    case Op::Symlink: w.bytes(c.target); break;
    default: break;
  }
  ByteWriter(out).bytes(rec);
}

Result<Command> decode_command(std::string_view record, const std::string& name, uint64_t index) {
  auto bad = [&](const std::string& why) {
    return Error("'" + name + "': command " + std::to_string(index) + ": " + why, kExitBadInput);
  };
  ByteReader r(record);
  Command c;
  uint8_t op = r.u8();
  if (r.ok() && (op < 1 || op > 10))
    return bad("unknown operation " + std::to_string(op));
  c.op = static_cast<Op>(op);
  auto member = [&](uint8_t m) {
    if (m > 2)
      r.fail("unknown member");
    return static_cast<Member>(m);
  };
  if (c.op == Op::Unpack) {
    c.from = member(r.u8());
    c.unpack = r.u8();
    if (c.unpack > 3 || c.from == Member::Commands)
      r.fail("bad unpack step");
  } else {
    c.path = std::string(r.bytes(4096));
  }
  if (has_mode(c.op)) {
    uint64_t m = r.varint();
    if (m > 07777)
      r.fail("mode out of range");
    c.mode = static_cast<uint32_t>(m);
  }
  if (has_content(c.op)) {
    c.mtime_ns = r.svarint();
    c.size = r.varint();
    std::string_view check = r.raw(kResultCheck);
    if (r.ok())
      std::memcpy(c.hash.data(), check.data(), kResultCheck);
  }
  switch (c.op) {
    case Op::Put:
      c.from = member(r.u8());
      c.length = c.size;
      break;
    case Op::Patch: {
      c.source = std::string(r.bytes(4096));
      std::string_view check = r.raw(kBasisCheck);
      if (r.ok())
        std::memcpy(c.basis_check.data(), check.data(), kBasisCheck);
      uint8_t f = r.u8();
      if (f != 1 && f != 2)
        r.fail("unknown delta format");
      c.format = static_cast<delta::DeltaFormat>(f);
      c.from = member(r.u8());
      c.length = r.varint();
      break;
    }
    case Op::Copy:
    case Op::CopyNew: c.source = std::string(r.bytes(4096)); break;
    case Op::Symlink: c.target = std::string(r.bytes(delta::kMaxSymlinkTarget)); break;
    default: break;
  }
  if (r.ok() && !r.at_end())
    r.fail("trailing bytes");
  if (!r.ok())
    return bad(r.problem());
  if (c.takes_data() && c.from == Member::Commands)
    return bad("data from the command list");
  if (c.op != Op::Unpack && !fs::is_safe_relative_path(c.path))
    return bad("unsafe path " + quote_path(c.path));
  bool needs_source = c.op == Op::Copy || c.op == Op::CopyNew;
  if ((needs_source || (c.op == Op::Patch && !c.source.empty())) && !fs::is_safe_relative_path(c.source))
    return bad("unsafe source path " + quote_path(c.source));
  if (c.op == Op::Symlink && (c.target.empty() || c.target.find('\0') != std::string::npos))
    return bad("bad symlink target");
  return c;
}

Result<std::optional<Command>> CommandReader::next() {
  // Records are small: keep at least one whole record buffered.
  auto fill = [&](size_t want) -> Status {
    if (buf_.size() - pos_ >= want || eof_)
      return {};
    buf_.erase(0, pos_);
    pos_ = 0;
    char tmp[65536];
    while (buf_.size() < want && !eof_) {
      CM_ASSIGN(size_t got, in_.read(tmp, sizeof tmp));
      if (got == 0)
        eof_ = true;
      buf_.append(tmp, got);
    }
    return {};
  };
  CM_TRY(fill(10));
  if (pos_ == buf_.size())
    return std::optional<Command>();
  size_t avail = std::min<size_t>(10, buf_.size() - pos_);
  ByteReader lr(std::string_view(buf_.data() + pos_, avail));
  uint64_t len = lr.varint();
  if (!lr.ok() || len == 0 || len > 16384)
    return Error("'" + name_ + "': command " + std::to_string(index_ + 1) + ": bad record length",
                 kExitBadInput);
  size_t head = avail - lr.remaining();
  CM_TRY(fill(head + len));
  if (buf_.size() - pos_ < head + len)
    return Error("'" + name_ + "': the command list is truncated", kExitBadInput);
  std::string_view rec(buf_.data() + pos_ + head, len);
  pos_ += head + len;
  index_++;
  CM_ASSIGN(Command c, decode_command(rec, name_, index_));
  return std::optional<Command>(std::move(c));
}

// ---- presentation

std::string describe(const Command& c) {
  std::string s = op_name(c.op);
  s.resize(9, ' ');
  auto from = [&] { return std::string(" from ") + member_name(c.from); };
  switch (c.op) {
    case Op::Unpack:
      s += member_name(c.from);
      s += (c.unpack & 1) ? ": decrypt (aes-256-gcm)" : ":";
      s += (c.unpack & 2) ? ((c.unpack & 1) ? ", then decompress (zstd)" : " decompress (zstd)") : "";
      break;
    case Op::Mkdir:
    case Op::Chmod: s += mode_string(c.mode) + " " + quote_path(c.path); break;
    case Op::Put:
      s += mode_string(c.mode) + " " + quote_path(c.path) + " (" + human_bytes(c.size) + from() + ")";
      break;
    case Op::Patch:
      s += mode_string(c.mode) + " " + quote_path(c.path) + " (" + human_bytes(c.size) + ", " +
           delta::format_name(c.format) + " delta " + human_bytes(c.length) + from() +
           (c.source.empty() ? "" : ", against " + quote_path(c.source)) + ")";
      break;
    case Op::Copy:
    case Op::CopyNew:
      s += mode_string(c.mode) + " " + quote_path(c.path) + " (" + human_bytes(c.size) + ", same as " +
           quote_path(c.source) + ")";
      break;
    case Op::Symlink: s += "     " + quote_path(c.path) + " -> " + quote_path(c.target); break;
    case Op::Remove:
    case Op::Rmdir: s += "     " + quote_path(c.path); break;
  }
  return s;
}

nlohmann::json to_json(const Command& c) {
  nlohmann::json j;
  j["op"] = op_name(c.op);
  if (c.op == Op::Unpack) {
    j["member"] = member_name(c.from);
    j["decrypt"] = (c.unpack & 1) != 0;
    j["decompress"] = (c.unpack & 2) ? "zstd" : "none";
    return j;
  }
  json_set_bytes(j, "path", c.path);
  if (has_mode(c.op))
    j["mode"] = mode_string(c.mode);
  if (has_content(c.op)) {
    j["mtime_ns"] = c.mtime_ns;
    j["size"] = c.size;
    j["sha256_prefix"] = to_hex(c.hash.data(), c.hash.size());
  }
  if (c.takes_data()) {
    j["from"] = member_name(c.from);
    j["data_bytes"] = c.length;
  }
  if (c.op == Op::Patch) {
    json_set_bytes(j, "basis", c.basis());
    j["basis_sha256_prefix"] = to_hex(c.basis_check.data(), c.basis_check.size());
    j["format"] = delta::format_name(c.format);
  }
  if (c.op == Op::Copy || c.op == Op::CopyNew)
    json_set_bytes(j, "source", c.source);
  if (c.op == Op::Symlink)
    json_set_bytes(j, "target", c.target);
  return j;
}

nlohmann::json to_json(const Header& h) {
  nlohmann::json j;
  j["type"] = type_name(h.type);
  j["id"] = h.id;
  j["job"] = h.job;
  j["sequence"] = h.sequence;
  j["base"] = h.base;
  j["part"] = h.part;
  j["last_part"] = h.last_part;
  j["site"] = h.site;
  j["group"] = h.group;
  j["created_ns"] = h.created_ns;
  if (h.type == Type::Commit || h.type == Type::Rollback)
    j["target"] = h.target;
  j["commands"] = h.commands;
  j["data_bytes"] = h.data_bytes;
  j["content_bytes"] = h.content_bytes;
  j["encrypted"] = h.encrypted;
  if (h.encrypted)
    j["key_id"] = crypto::key_id_hex(h.key_id);
  nlohmann::json members = nlohmann::json::array();
  for (int i = 0; i < kMembers; i++) {
    const MemberInfo& m = h.members[i];
    if (!m.present)
      continue;
    members.push_back({{"name", member_name(static_cast<Member>(i))},
                       {"stored_bytes", m.stored_size},
                       {"plain_bytes", m.plain_size},
                       {"zstd", m.zstd},
                       {"sha256", to_hex(m.hash)}});
  }
  j["members"] = members;
  return j;
}

}  // namespace cm::assign
