// Repair frames: a Reed-Solomon erasure code over blocks of frames, so one
// repair frame makes up for any one frame a receiver lost in its block.
//
// The frames of a file are cut into blocks of K (the last block may be
// shorter: k frames). Repair r of a block (0 <= r < 255 - k) is row k + r of
// a Cauchy matrix over GF(2^8) times the block's frames, each padded with
// zeros to the frame size. Any k of the block's frames and repairs give back
// the rest (every square submatrix of a Cauchy matrix is invertible). The
// arithmetic is ISA-L's (ec_encode_data), which uses the CPU's vector units.
//
// What this buys (cm-mcast(7)): after a pass, a receiver says how many
// frames each block still needs, not which; the sender sends, per block,
// the most any receiver needs. Four receivers that each lost 5 % of the
// frames lost 18.5 % between them: resending what anyone lost costs 18.5 %
// more, repairs about 7 %.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "util/result.hpp"

namespace cm::mcast {

inline constexpr uint32_t kMaxFecBlock = 200;  // frames in a block; leaves 55 repairs at least

// Frames in block b of a file of `frames` frames cut in blocks of k.
inline uint32_t block_frames(uint64_t frames, uint32_t k, uint64_t b) {
  return static_cast<uint32_t>(frames - b * k < k ? frames - b * k : k);
}

// Repairs a block of k frames has.
inline uint32_t max_repairs(uint32_t k) {
  return 255 - k;
}

// Repairs [first, first + count) of a block of k frames, each `len` bytes
// (frames shorter than that are zero-padded by the caller).
Status fec_encode(uint32_t k, size_t len, const std::vector<const uint8_t*>& frames, uint32_t first,
                  uint32_t count, std::vector<std::string>& out);

// Recovers the missing frames of a block of k frames. `have` are the
// indices (0..k-1) of the frames at hand, `frames` their bytes; `repairs`
// the indices and bytes of repairs, at least as many as frames missing.
// `missing` lists the indices to recover, written to `out` (len bytes each).
Status fec_decode(uint32_t k, size_t len, const std::vector<uint32_t>& have,
                  const std::vector<const uint8_t*>& frames, const std::vector<uint32_t>& repair_index,
                  const std::vector<const uint8_t*>& repairs, const std::vector<uint32_t>& missing,
                  const std::vector<uint8_t*>& out);

}  // namespace cm::mcast
