// Text helpers for showing arbitrary file names to people and to JSON.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include <nlohmann/json_fwd.hpp>

#include "util/result.hpp"

namespace cm {

bool is_valid_utf8(std::string_view s);

// A name as a person should see it: unchanged when it is printable UTF-8
// without quotes or backslashes, otherwise C-quoted in double quotes with
// \n, \t, \\, \" and \ooo escapes (like git and ls --quoting-style=c).
std::string quote_path(std::string_view s);
// A path inside a message: 'as is' between single quotes, or quote_path()'s
// C-quoted form when it needs one (the shape of every error that names one).
std::string show_path(std::string_view s);

// Sets j[key] to the name when it is valid UTF-8, or j[key + "_base64"] to
// its bytes otherwise, so JSON output is lossless for any file name.
void json_set_bytes(nlohmann::json& j, const std::string& key, std::string_view s);
// j as text (indent < 0: one line). Bytes that are not UTF-8 (a command's
// output, a peer's name) become U+FFFD instead of an exception: JSON that
// carries what others sent must never stop the program printing or
// sending it.
std::string json_text(const nlohmann::json& j, int indent = -1);

std::string base64_encode(std::string_view s);

// "1.5 MiB", "12 KiB", "100 B".
std::string human_bytes(uint64_t n);
// A size as an administrator writes it: "4G", "256K", "1.5M", "100" (bytes;
// K, M, G, T are powers of 1024, "KiB" and friends too). `what` names the
// option in the error.
Result<uint64_t> parse_size(const std::string& s, const std::string& what);
// "1,234,567"
std::string with_commas(uint64_t n);
// Octal permission bits, "0644".
std::string mode_string(uint32_t mode);

// n random characters from [a-z0-9], for temporary names (not for secrets).
// Safe from any thread: each has its own generator.
std::string random_name(size_t n);

}  // namespace cm
