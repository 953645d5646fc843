// Deltas as zstd frames compressed with the basis as a prefix (what
// `zstd --patch-from` does). For files of web-site size this finds matches
// at any byte offset and entropy-codes the rest: on minified bundles it
// gives a tenth of a librsync delta (bench/RESULTS.md). The basis must be
// in memory on both sides, so it is used up to kMaxZstdPatch.
#pragma once

#include <cstdint>
#include <span>
#include <string>
#include <string_view>

#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::delta {

inline constexpr uint64_t kMaxZstdPatch = 16 << 20;
inline constexpr int kZstdPatchLevel = 9;
// The most a delta for a file of up to kMaxZstdPatch bytes may take
// (ZSTD_COMPRESSBOUND of that size).
inline constexpr uint64_t kMaxZstdDelta = kMaxZstdPatch + (kMaxZstdPatch >> 8);

// Compresses `next` against `basis` into `out`; false when the result
// would exceed `limit` bytes.
Result<bool> zstd_delta(std::string_view basis, std::string_view next, Writer& out, uint64_t limit,
                        int level = kZstdPatchLevel);

// Decompresses a delta made by zstd_delta (one frame, whole in memory)
// with the same basis into `out`, in one pass: the output is the window,
// so no window buffer is allocated and nothing is copied twice. Returns
// the bytes produced; more than out.size() is an error. `name` names the
// delta in errors.
Result<size_t> zstd_patch(std::string_view basis, std::string_view delta, std::span<char> out,
                          const std::string& name);

}  // namespace cm::delta
