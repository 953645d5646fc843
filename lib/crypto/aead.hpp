// A stream cipher for assignment members: AES-256-GCM over chunks of
// kChunk plaintext bytes, each with its own 16-byte tag (the STREAM
// construction). The 12-byte nonce is a 7-byte random prefix, a 1-byte
// stream number and a 4-byte big-endian chunk counter whose top bit marks
// the last chunk, so chunks cannot be reordered, dropped or cut off.
// Every stream has at least one (possibly empty) chunk.
#pragma once

#include <array>
#include <cstdint>
#include <string>
#include <vector>

#include "crypto/keys.hpp"
#include "util/io.hpp"

typedef struct evp_cipher_ctx_st EVP_CIPHER_CTX;

namespace cm::crypto {

inline constexpr size_t kChunk = 64 * 1024;
inline constexpr size_t kTag = 16;
using NoncePrefix = std::array<uint8_t, 7>;

// The stored size of `plain` bytes once encrypted.
uint64_t sealed_size(uint64_t plain);

// Encrypts what is written to it into `out`; finish() seals the last chunk.
class SealWriter : public Writer {
 public:
  SealWriter(const SymmetricKey& key, const NoncePrefix& prefix, uint8_t stream, std::string aad,
             Writer& out);
  ~SealWriter() override;
  Status write(const void* p, size_t n) override;
  Status finish();

 private:
  Status seal(bool last);
  EVP_CIPHER_CTX* ctx_;
  const SymmetricKey& key_;
  NoncePrefix prefix_;
  uint8_t stream_;
  std::string aad_;
  Writer& out_;
  std::string buf_;
  std::string sealed_;
  uint32_t counter_ = 0;
  bool finished_ = false;
};

// Decrypts a sealed stream read from `in` (exactly the stream's bytes).
// A wrong key, a changed byte, a missing or extra chunk is an error.
class OpenReader : public Reader {
 public:
  OpenReader(const SymmetricKey& key, const NoncePrefix& prefix, uint8_t stream, std::string aad, Reader& in);
  ~OpenReader() override;
  Result<size_t> read(void* p, size_t n) override;
  const std::string& name() const override { return in_.name(); }

 private:
  Status next_chunk();
  EVP_CIPHER_CTX* ctx_;
  const SymmetricKey& key_;
  NoncePrefix prefix_;
  uint8_t stream_;
  std::string aad_;
  Reader& in_;
  std::string plain_;
  size_t pos_ = 0;
  uint32_t counter_ = 0;
  bool last_seen_ = false;
};

}  // namespace cm::crypto
