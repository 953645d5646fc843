// Deltas as zstd frames compressed with the basis as a prefix (what
// `zstd --patch-from` does). For files of web-site size this finds matches
// at any byte offset and entropy-codes the rest: on minified bundles it
// gives a tenth of a librsync delta (bench/RESULTS.md). The basis must be
// in memory on both sides, so it is used up to kMaxZstdPatch.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "util/io.hpp"
#include "util/result.hpp"

namespace cm::delta {

inline constexpr uint64_t kMaxZstdPatch = 16 << 20;
inline constexpr int kZstdPatchLevel = 9;

// Compresses `next` against `basis` into `out`; false when the result
// would exceed `limit` bytes.
Result<bool> zstd_delta(std::string_view basis, std::string_view next, Writer& out, uint64_t limit,
                        int level = kZstdPatchLevel);

// Decompresses a delta made by zstd_delta with the same basis, writing at
// most `max_output` bytes (more is an error).
Status zstd_patch(std::string_view basis, Reader& delta, Writer& out, uint64_t max_output);

}  // namespace cm::delta
