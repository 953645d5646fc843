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
