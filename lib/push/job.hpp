// What is distributed: a file cut into chunks, each with its SHA-256, so a
// leader can check (and forward) every chunk as it arrives, and the whole
// file's SHA-256, checked before a copy counts.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "push/proto.hpp"
#include "util/hash.hpp"

namespace cm::push {

// NOTIFYs go out each on a thread of its own, so two to one leader (its
// source failed, then the new source too) may arrive in either order.
// Each carries serve's boot (its start time) and an increasing number:
// a leader keeps the newest and drops one older than what it has. One of
// another boot (serve restarted) or without them (an older serve) counts.
inline bool notice_is_stale(uint64_t have_boot, uint64_t have_seq, uint64_t boot, uint64_t seq) {
  return boot != 0 && boot == have_boot && seq <= have_seq;
}

inline constexpr uint32_t kDefaultChunk = 256u << 10;
// A chunk travels in one CHUNK message, and the chunk table (32 bytes a
// chunk) in one NOTIFY: both within a message's kMaxMessage bytes.
inline constexpr uint32_t kMinChunk = 4u << 10;
inline constexpr uint32_t kMaxChunk = 4u << 20;
inline constexpr uint64_t kMaxChunks = ((8u << 20) - (64u << 10)) / 32;  // an 8 MiB table
static_assert(kMaxChunk + (64u << 10) <= kMaxMessage, "a chunk and its head fit one message");
// A file this small travels inside its NOTIFY from the manager, after the
// chunk table: the leader has it without a fetch (a commit is 193 bytes;
// the fetch cost a TLS handshake and two round trips on every leader).
inline constexpr uint64_t kInlineBytes = 64u << 10;

struct JobMeta {
  uint64_t id = 0;
  std::string name;  // a file name, no '/'
  uint64_t size = 0;
  Digest sha256{};
  uint32_t chunk_size = kDefaultChunk;
  std::vector<Digest> chunks;
  bool deliver = true;  // leaders run their deliver command on it

  uint64_t chunk_count() const { return size == 0 ? 0 : (size + chunk_size - 1) / chunk_size; }
  uint64_t chunk_length(uint64_t i) const {
    return i + 1 < chunk_count() ? chunk_size : size - i * static_cast<uint64_t>(chunk_size);
  }
  // Into a NOTIFY's body and blob; and back, checked.
  void put(Message& m) const;
  static Result<JobMeta> get(const Message& m);
  // The file itself after the table ("inline": true; at most kInlineBytes).
  void put_inline(Message& m, const std::string& data) const;
  // The inline file of a NOTIFY that get() accepted, checked chunk by chunk
  // and whole; empty when there is none.
  Result<std::string> inline_data(const Message& m) const;
};

// Reads a file once: its chunks' and its whole SHA-256.
Result<JobMeta> describe_file(const std::string& path, uint64_t id, uint32_t chunk_size);

}  // namespace cm::push
