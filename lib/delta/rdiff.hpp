// In-process librsync: signature of a basis, delta of a new file against
// it, and patch. Everything streams through fixed buffers, so memory is
// bounded by the signature, which is bounded by choose_block_len().
#pragma once

#include <cstdint>
#include <memory>
#include <string>

#include "fs/tree.hpp"
#include "util/hash.hpp"
#include "util/io.hpp"
#include "util/result.hpp"

struct rs_signature;

namespace cm::delta {

// The block length for a basis of `size` bytes. See the comment in
// rdiff.cpp for the measurements behind it.
size_t choose_block_len(uint64_t size);
// Signatures never hold more blocks than this (bounds memory at ~20 MiB).
inline constexpr uint64_t kMaxBlocks = 1u << 18;

class Signature {
 public:
  Signature() = default;
  Signature(Signature&& o) noexcept : sig_(o.sig_) { o.sig_ = nullptr; }
  Signature& operator=(Signature&& o) noexcept;
  Signature(const Signature&) = delete;
  Signature& operator=(const Signature&) = delete;
  ~Signature();
  rs_signature* get() const { return sig_; }

 private:
  friend Result<Signature> make_signature(Reader&, size_t, Digest*, uint64_t*);
  rs_signature* sig_ = nullptr;
};

// Reads the basis to its end. Also returns its SHA-256 and size when asked.
Result<Signature> make_signature(Reader& basis, size_t block_len, Digest* hash = nullptr,
                                 uint64_t* size = nullptr);

// Streams `next` through a delta against `sig` into `out`. Returns false
// (and stops early) when the delta would exceed `limit` bytes. Also returns
// the SHA-256 and size of `next` when asked.
Result<bool> make_delta(const Signature& sig, Reader& next, Writer& out, uint64_t limit,
                        Digest* hash = nullptr, uint64_t* size = nullptr);

// A delta in librsync's format made by comparing the two files byte by
// byte at the same offsets, for in-place edits and appends (database and
// disk images, sparse files, logs). librsync's block matcher does poorly
// there: a run of identical blocks (zeros) matches the same basis block
// again and again, so every block becomes its own COPY command (5 bytes per
// 4 KiB block: 1.3 MB for an unchanged 1 GiB of zeros). Equal runs shorter
// than kMinCopy bytes stay inside literals. Returns false (early) when the
// delta would exceed `limit` or when, past the first MiB, more than a
// quarter of what was compared differs. Reads both files to their end and
// returns their hashes and sizes.
inline constexpr size_t kMinCopy = 16;
struct PositionalResult {
  bool fits = false;
  Digest basis_hash{}, next_hash{};
  uint64_t basis_size = 0, next_size = 0;
};
Result<PositionalResult> positional_delta(Reader& basis, Reader& next, Writer& out, uint64_t limit);

// Writes librsync's delta format: "rs\x02\x36", LITERAL and COPY commands, END.
class DeltaEncoder {
 public:
  explicit DeltaEncoder(Writer& out) : out_(out) {}
  Status header();
  Status literal(const char* p, size_t n);
  Status copy(uint64_t pos, uint64_t len);
  Status end();
  uint64_t size() const { return size_; }

 private:
  Status put(const std::string& s);
  Writer& out_;
  uint64_t size_ = 0;
};

// Applies a librsync delta to a basis read with pread().
Status apply_delta(fs::File& basis, Reader& delta, Writer& out);

// A writer that keeps up to `mem_limit` bytes in memory and spills the rest
// to an unlinked temporary file; replay() copies everything to another
// writer.
class SpillBuffer : public Writer {
 public:
  explicit SpillBuffer(size_t mem_limit = 8 << 20) : mem_limit_(mem_limit) {}
  Status write(const void* p, size_t n) override;
  uint64_t size() const { return size_; }
  Status replay(Writer& out);
  void clear();

 private:
  size_t mem_limit_;
  std::string mem_;
  Fd file_;
  uint64_t size_ = 0;
};

}  // namespace cm::delta
