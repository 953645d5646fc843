// What an assignment is built from: a delta table (publish, synchronize),
// a directory (replicate, or a full synchronize), a checkpoint archive
// (restore). Each feeds entries, in an order an applier can follow, into
// a delta::Sink such as the assignment builder.
#pragma once

#include <functional>
#include <string>

#include "assign/builder.hpp"
#include "delta/delta.hpp"
#include "util/io.hpp"

namespace cm::assign {

// Copies a delta table, checking it, into the builder.
Status feed_table(Reader& in, const std::string& name, Builder& out);

// Every file, directory and symlink of a tree, as a delta from nothing
// (duplicate contents are sent once).
Result<delta::Stats> feed_tree(const std::string& dir, const fs::Filter* filter, Builder& out,
                               const delta::Callbacks& cb);

// The contents of an archive libarchive can read (tar, pax, cpio, zip;
// gzip, xz, zstd ...): directories, files, symlinks and hard links.
// Unsafe paths are refused; other entry types are skipped with a warning.
Status feed_archive(const std::string& path, Builder& out,
                    const std::function<void(const std::string&)>& warning);

}  // namespace cm::assign
