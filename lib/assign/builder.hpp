// Compiling entries (from a delta table, a directory or an archive) into
// assignment packs.
//
// Memory does not grow with file sizes: entry data is spooled to unlinked
// temporary files as it arrives, and so are the command records; what
// stays in memory is a 32-byte index per data-carrying entry, to group
// similar files in the solid zstd stream. A part is written when it would
// outgrow max_part (or at the end), to a Writer the caller provides.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "assign/format.hpp"
#include "assign/policy.hpp"
#include "crypto/keys.hpp"
#include "delta/table.hpp"
#include "util/io.hpp"

namespace cm::assign {

inline constexpr uint64_t kDefaultMaxPart = uint64_t{4} << 30;
inline constexpr int kAutoLevel = -1000;

struct BuildOptions {
  Header header;  // type, id, job, sequence, base, site, group, target, created_ns
  Policy policy;
  int level = kAutoLevel;  // zstd level; auto: 19 for small parts, lower for large ones
  const crypto::SigningKey* sign = nullptr;
  const crypto::SymmetricKey* encrypt = nullptr;
  uint64_t max_part = kDefaultMaxPart;
};

// Where the parts go: open(part) gives the writer for a part; close(part,
// last) is called once it is complete.
struct PartSink {
  std::function<Result<Writer*>(uint64_t part)> open;
  std::function<Status(uint64_t part, bool last)> close;
};

// Where a build is, for a progress line: entries and data bytes read so
// far, and the part being written (0 while reading).
struct BuildProgress {
  uint64_t entries = 0;
  uint64_t bytes = 0;
  uint64_t writing_part = 0;
};

struct BuildStats {
  uint64_t parts = 0;
  uint64_t commands = 0;
  uint64_t data_plain = 0;   // bytes of data before compression
  uint64_t data_stored = 0;  // bytes of data members in the packs
  uint64_t pack_bytes = 0;   // total size of the packs
  uint64_t compressed_items = 0, stored_items = 0;
};

class Builder : public delta::Sink {
 public:
  Builder(BuildOptions opt, PartSink sink);
  ~Builder() override;

  Status begin() override;
  Status add(const delta::Entry& e) override { return add(e, true); }
  // With hash_known false the builder computes a file entry's SHA-256 from
  // its data (sources that cannot know it up front, like archives).
  Status add(const delta::Entry& e, bool hash_known);
  Status data(const void* p, size_t n) override;
  Status finish() override;

  const BuildStats& stats() const { return stats_; }
  std::function<void(const std::string&)> warning;
  // Called often (after each entry and data block, and as a part starts
  // to be written): cheap, or rate-limited by the caller.
  std::function<void(const BuildProgress&)> progress;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
  std::unique_ptr<std::pair<BuildOptions, PartSink>> opt_pending_;
  BuildStats stats_;
};

}  // namespace cm::assign
