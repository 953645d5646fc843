// Keys, through OpenSSL 3: Ed25519 signing keys (the manager signs, every
// server verifies with the public key only) and 256-bit symmetric keys
// (AES-256-GCM for assignments, HMAC for LAN messages).
//
// Files: a signing key pair is PEM (PKCS#8 "PRIVATE KEY", mode 0600, and
// "PUBLIC KEY"); a symmetric key is one line
//   cm-key-v1 <64 hex digits>
// in a file of mode 0600. A key id is the first 8 bytes of the SHA-256 of
// the raw public key (or of the symmetric key), shown as 16 hex digits.
#pragma once

#include <array>
#include <cstdint>
#include <memory>
#include <string>
#include <string_view>

#include "util/result.hpp"

typedef struct evp_pkey_st EVP_PKEY;

namespace cm::crypto {

using KeyId = std::array<uint8_t, 8>;
std::string key_id_hex(const KeyId& id);

class SigningKey {
 public:
  static Result<SigningKey> generate();
  // A private key (signs) or a public key (verifies only).
  static Result<SigningKey> load_private(const std::string& path);
  static Result<SigningKey> load_public(const std::string& path);

  Status save_private(const std::string& path) const;  // refuses to overwrite
  Status save_public(const std::string& path) const;
  Result<std::string> sign(std::string_view msg) const;  // 64 bytes
  bool verify(std::string_view msg, std::string_view sig) const;
  const KeyId& id() const { return id_; }
  bool has_private() const { return private_; }

 private:
  struct Free {
    void operator()(EVP_PKEY* k) const;
  };
  std::shared_ptr<EVP_PKEY> key_;
  KeyId id_{};
  bool private_ = false;
};

inline constexpr size_t kSignatureSize = 64;

class SymmetricKey {
 public:
  static Result<SymmetricKey> generate();
  static Result<SymmetricKey> load(const std::string& path);
  static Result<SymmetricKey> parse(std::string_view text, const std::string& name);
  Status save(const std::string& path) const;  // refuses to overwrite
  const std::array<uint8_t, 32>& bytes() const { return key_; }
  const KeyId& id() const { return id_; }

 private:
  std::array<uint8_t, 32> key_{};
  KeyId id_{};
};

// Cryptographically random bytes.
Status random_bytes(uint8_t* p, size_t n);

}  // namespace cm::crypto
