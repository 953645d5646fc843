// SHA-256, the content hash used everywhere (OpenSSL, SHA-NI when present).
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <string_view>

#include "util/io.hpp"
#include "util/result.hpp"

typedef struct evp_md_ctx_st EVP_MD_CTX;

namespace cm {

using Digest = std::array<uint8_t, 32>;

class Sha256 {
 public:
  Sha256();
  ~Sha256();
  Sha256(const Sha256&) = delete;
  Sha256& operator=(const Sha256&) = delete;
  void update(const void* data, size_t n);
  void update(std::string_view s) { update(s.data(), s.size()); }
  Digest finish();  // resets for reuse

 private:
  EVP_MD_CTX* ctx_;
};

Digest sha256(std::string_view data);

// Hashes a stream to its end; returns the digest and the byte count.
struct HashedSize {
  Digest digest;
  uint64_t size;
};
Result<HashedSize> sha256_stream(Reader& r);

std::string to_hex(const uint8_t* p, size_t n);
inline std::string to_hex(const Digest& d) {
  return to_hex(d.data(), d.size());
}
// Parses exactly 64 hex digits.
bool from_hex(std::string_view hex, Digest& out);
// Parses an even number of hex digits into the bytes they stand for.
bool from_hex(std::string_view hex, std::string& out);

}  // namespace cm
