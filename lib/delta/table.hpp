// The delta table: everything needed to turn a BASE tree (the shadow copy)
// into a NEW tree (staging), as one self-contained stream that can be
// written and read through a pipe. Layout in cm-delta(5):
//
//   "CMDELTA\n" version
//   frame*            frame = kind (1 byte) length (varint) payload
//     'H' header      flags
//     'E' entry       one operation; a 'file' or 'patch' entry is followed
//     'D' data        by data frames carrying exactly its data_size bytes
//     'T' trailer     entry count, data bytes, SHA-256 of all bytes before it
//
// Sources named by 'copy' and 'patch' entries are read from BASE as it was
// before the table is applied (or, for a copy with source_new, from the
// NEW path an earlier entry created).
#pragma once

#include <cstdint>
#include <optional>
#include <string>

#include <nlohmann/json_fwd.hpp>

#include "fs/tree.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::delta {

inline constexpr char kMagic[8] = {'C', 'M', 'D', 'E', 'L', 'T', 'A', '\n'};
inline constexpr uint64_t kVersion = 1;
inline constexpr size_t kMaxEntryFrame = 16 * 1024;
inline constexpr size_t kMaxDataFrame = 1 << 20;
inline constexpr size_t kDataChunk = 256 * 1024;
inline constexpr size_t kMaxSymlinkTarget = 4095;

enum class Op : uint8_t {
  Mkdir = 1,    // create a directory (mode)
  File = 2,     // create or replace a regular file from the data that follows
  Patch = 3,    // the data is a librsync delta against BASE's `source`
  Copy = 4,     // same content as BASE's `source` (or NEW's, with source_new)
  Symlink = 5,  // create or replace a symlink (target)
  Delete = 6,   // remove what BASE has at path (old_type); directories are empty by then
  Chmod = 7,    // the content is unchanged; the permission bits are `mode`
};

const char* op_name(Op op);

// How a patch entry's data encodes the new file.
enum class DeltaFormat : uint8_t {
  Rsync = 1,  // a librsync delta (librsync's own format; also our positional deltas)
  Zstd = 2,   // a zstd frame compressed with the whole basis as its prefix
};
const char* format_name(DeltaFormat f);

struct Entry {
  Op op = Op::File;
  std::string path;
  uint32_t mode = 0;                        // mkdir, file, patch, copy, chmod
  int64_t mtime_ns = 0;                     // file, patch, copy
  uint64_t size = 0;                        // file, patch, copy: size of the resulting file
  Digest hash{};                            // file, patch, copy: SHA-256 of the resulting file
  std::string source;                       // patch: the basis in BASE; copy: where the content is
  Digest source_hash{};                     // patch: SHA-256 the basis must have
  DeltaFormat format = DeltaFormat::Rsync;  // patch
  bool source_new = false;                  // copy: source is a NEW path made by an earlier entry
  std::string target;                       // symlink
  fs::Type old_type = fs::Type::Regular;    // delete
  uint64_t data_size = 0;                   // file: == size; patch: length of the delta

  bool has_data() const { return op == Op::File || op == Op::Patch; }
};

// Checks one entry on its own: a known op, safe paths, sane fields.
Status validate(const Entry& e);

struct Trailer {
  uint64_t entries = 0;
  uint64_t data_bytes = 0;
};

// Where a comparison's entries go: a table file, or straight into an
// assignment pack. A file or patch entry is followed by data() calls that
// add up to exactly its data_size.
class Sink {
 public:
  virtual ~Sink() = default;
  virtual Status begin() = 0;
  virtual Status add(const Entry& e) = 0;
  virtual Status data(const void* p, size_t n) = 0;
  virtual Status finish() = 0;
};

class TableWriter : public Sink {
 public:
  explicit TableWriter(Writer& out) : out_(out) {}
  Status begin() override;
  Status add(const Entry& e) override;
  Status data(const void* p, size_t n) override;
  Status finish() override;
  const Trailer& totals() const { return totals_; }

 private:
  Status frame(char kind, std::string_view payload);
  Writer& out_;
  Sha256 hash_;
  Trailer totals_;
  uint64_t data_left_ = 0;
  bool begun_ = false;
};

class TableReader {
 public:
  TableReader(Reader& in, std::string name) : in_(in), name_(std::move(name)) {}
  // Reads and checks the magic, version and header.
  Status open();
  // The next entry, or nullopt once the trailer has been read and checked.
  // Skips whatever data of the previous entry was not read.
  Result<std::optional<Entry>> next();
  // Data of the current entry; 0 at its end.
  Result<size_t> read_data(void* buf, size_t n);
  const Trailer& trailer() const { return trailer_; }

 private:
  Error bad(const std::string& what) const;
  Status fill(size_t n);  // ensure n bytes buffered
  Result<char> frame_header(uint64_t& len);
  Status check_trailer(uint64_t len);
  Reader& in_;
  std::string name_;
  std::string buf_;
  size_t pos_ = 0;
  Sha256 hash_;
  Trailer trailer_;
  Trailer seen_;
  uint64_t data_left_ = 0;   // of the current entry
  uint64_t frame_left_ = 0;  // of the current data frame
  bool done_ = false;
};

// Reads the data of the current entry of a TableReader.
class EntryData : public Reader {
 public:
  explicit EntryData(TableReader& t, std::string name) : t_(t), name_(std::move(name)) {}
  Result<size_t> read(void* buf, size_t n) override { return t_.read_data(buf, n); }
  const std::string& name() const override { return name_; }

 private:
  TableReader& t_;
  std::string name_;
};

// One entry as a line for people, and as a JSON object.
std::string describe(const Entry& e);
nlohmann::json to_json(const Entry& e);

}  // namespace cm::delta
