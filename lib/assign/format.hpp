// The assignment pack: the unit that travels. Layout in cm-assign(5):
//
//   "CMASSIGN" version
//   frame*          frame = kind (1 byte) length (varint) payload
//     'H' header    what, for whom, and the size and SHA-256 of every member
//     'S' signature Ed25519 over the header payload (optional)
//     'C' commands  the ordered command list (zstd; maybe encrypted)
//     'Z' data.zst  compressible data, one solid zstd stream (maybe encrypted)
//     'R' data      data stored as is: already compressed (maybe encrypted)
//     'T' trailer   SHA-256 of the header and commands frames
//
// A reader checks the signature over the header before anything else; the
// header's member hashes then cover every other byte.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include <nlohmann/json_fwd.hpp>

#include "crypto/aead.hpp"
#include "crypto/keys.hpp"
#include "delta/table.hpp"
#include "util/hash.hpp"
#include "util/result.hpp"

namespace cm::assign {

inline constexpr char kMagic[8] = {'C', 'M', 'A', 'S', 'S', 'I', 'G', 'N'};
inline constexpr uint64_t kVersion = 1;
inline constexpr size_t kMaxHeader = 64 * 1024;
inline constexpr uint64_t kMaxCommandsPlain = uint64_t{1} << 30;

enum class Type : uint8_t {
  Publish = 1,      // a delta table, on top of the previous sequence
  Replicate = 2,    // a full copy of a tree
  Synchronize = 3,  // brings a stale server up to date (delta from --base, or full)
  Restore = 4,      // a full copy from a checkpoint archive
  Remove = 5,       // the site's content goes away
  Commit = 6,       // make a staged version live
  Rollback = 7,     // switch back to the previous live version
};
const char* type_name(Type t);
std::optional<Type> parse_type(std::string_view s);
bool carries_data(Type t);  // publish, replicate, synchronize, restore

// Members after the header, in this order.
enum class Member : uint8_t { Commands = 0, DataZstd = 1, DataRaw = 2 };
inline constexpr int kMembers = 3;
const char* member_name(Member m);
char member_kind(Member m);  // 'C', 'Z', 'R'

struct MemberInfo {
  bool present = false;
  uint64_t stored_size = 0;  // bytes in the frame
  uint64_t plain_size = 0;   // after decrypting and decompressing
  Digest hash{};             // SHA-256 of the stored bytes
  bool zstd = false;
};

struct Header {
  Type type = Type::Publish;
  uint64_t id = 0;  // assignment id
  uint64_t job = 0;
  uint64_t sequence = 0;  // within the site
  uint64_t base = 0;      // the sequence this applies on; 0 = a full tree (or any)
  uint64_t part = 1;      // 1-based
  bool last_part = true;
  std::string site;
  std::string group;
  int64_t created_ns = 0;
  uint64_t target = 0;         // commit/rollback: the assignment id to switch to (0: the latest/previous)
  uint64_t commands = 0;       // number of commands
  uint64_t data_bytes = 0;     // plain data bytes in this part
  uint64_t content_bytes = 0;  // bytes of the files this part writes
  bool encrypted = false;
  crypto::KeyId key_id{};
  crypto::NoncePrefix nonce{};
  MemberInfo members[kMembers];

  MemberInfo& member(Member m) { return members[static_cast<int>(m)]; }
  const MemberInfo& member(Member m) const { return members[static_cast<int>(m)]; }
};

std::string encode(const Header& h);
// A site or group name a header can carry: UTF-8, 1 to 255 bytes (a group
// may be empty), no '/' and no control characters.
bool valid_name(std::string_view s, bool allow_empty);
Result<Header> decode_header(std::string_view bytes, const std::string& name);

// One command. Data-carrying commands (put, patch) take their bytes, in
// command order, from the member named by `from`.
enum class Op : uint8_t {
  Unpack = 1,  // how to read a data member: decrypt (if encrypted), then decompress (zstd)
  Mkdir = 2,
  Put = 3,      // a whole file
  Patch = 4,    // a delta against BASE's `source`
  Copy = 5,     // same content as BASE's `source`
  CopyNew = 6,  // same content as `source`, written earlier by this assignment
  Symlink = 7,
  Remove = 8,  // a file or symlink
  Rmdir = 9,   // an (by then empty) directory
  Chmod = 10,
};
const char* op_name(Op op);

// Per-file checks are prefixes of SHA-256: the pack's integrity rests on
// the full SHA-256 of every member in the (signed) header; these catch a
// wrong basis or a bad write, where 128 and 64 bits are plenty, and keep
// the command list small (the full hashes were 80% of a typical update).
inline constexpr size_t kResultCheck = 16;  // bytes of the result's SHA-256 kept
inline constexpr size_t kBasisCheck = 8;    // bytes of the basis's SHA-256 kept
using ResultCheck = std::array<uint8_t, kResultCheck>;
ResultCheck result_check(const Digest& d);

struct Command {
  Op op = Op::Mkdir;
  std::string path;
  uint32_t mode = 0;
  int64_t mtime_ns = 0;
  uint64_t size = 0;                                      // put, patch, copy: the resulting file's size
  ResultCheck hash{};                                     // put, patch, copy: the first bytes of its SHA-256
  std::string source;                                     // patch (empty: same as path), copy
  std::array<uint8_t, kBasisCheck> basis_check{};         // patch: first bytes of the basis's SHA-256
  delta::DeltaFormat format = delta::DeltaFormat::Rsync;  // patch
  std::string target;                                     // symlink
  Member from = Member::DataRaw;                          // put, patch; unpack: which member
  uint64_t length = 0;  // put, patch: bytes taken from `from` (put: == size)
  uint8_t unpack = 0;   // unpack: bit 0 decrypt, bit 1 zstd

  bool takes_data() const { return op == Op::Put || op == Op::Patch; }
  const std::string& basis() const { return source.empty() ? path : source; }
};

// The command list is a sequence of (varint length, command) records.
void encode(const Command& c, std::string& out);
Result<Command> decode_command(std::string_view record, const std::string& name, uint64_t index);

// Reads the command list one command at a time from its plain stream.
class CommandReader {
 public:
  CommandReader(Reader& in, std::string name) : in_(in), name_(std::move(name)) {}
  // nullopt at the end of the list.
  Result<std::optional<Command>> next();
  uint64_t count() const { return index_; }

 private:
  Reader& in_;
  std::string name_;
  std::string buf_;
  size_t pos_ = 0;
  bool eof_ = false;
  uint64_t index_ = 0;
};

std::string describe(const Command& c);
nlohmann::json to_json(const Command& c);
nlohmann::json to_json(const Header& h);

}  // namespace cm::assign
