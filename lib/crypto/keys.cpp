#include "crypto/keys.hpp"

#include <fcntl.h>
#include <openssl/err.h>
#include <openssl/evp.h>
#include <openssl/pem.h>
#include <openssl/rand.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstring>

#include "util/hash.hpp"
#include "util/io.hpp"

namespace cm::crypto {

namespace {

std::string openssl_error() {
  unsigned long e = ERR_get_error();
  if (e == 0)
    return "unknown OpenSSL error";
  char buf[256];
  ERR_error_string_n(e, buf, sizeof buf);
  ERR_clear_error();
  return buf;
}

KeyId id_of(const uint8_t* p, size_t n) {
  Digest d = sha256(std::string_view(reinterpret_cast<const char*>(p), n));
  KeyId id;
  std::memcpy(id.data(), d.data(), id.size());
  return id;
}

// Creates a file that must not exist yet, with the given mode.
Result<FILE*> create_new(const std::string& path, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) {
    if (errno == EEXIST)
      return Error("'" + path + "' exists; not overwriting a key", kExitFailure);
    return sys_error("cannot create", path, errno);
  }
  ::fchmod(fd, mode);
  FILE* f = ::fdopen(fd, "w");
  if (f == nullptr) {
    ::close(fd);
    return sys_error("cannot create", path, errno);
  }
  return f;
}

Status close_checked(FILE* f, const std::string& path) {
  bool bad = std::ferror(f) != 0;
  bad |= std::fflush(f) != 0;
  bad |= ::fsync(::fileno(f)) != 0;
  bad |= std::fclose(f) != 0;
  if (bad) {
    ::unlink(path.c_str());
    return sys_error("cannot write", path, errno != 0 ? errno : EIO);
  }
  return {};
}

Result<FILE*> open_read(const std::string& path) {
  FILE* f = std::fopen(path.c_str(), "re");
  if (f == nullptr)
    return sys_error("cannot open", path, errno);
  return f;
}

}  // namespace

std::string key_id_hex(const KeyId& id) {
  return to_hex(id.data(), id.size());
}

void SigningKey::Free::operator()(EVP_PKEY* k) const {
  EVP_PKEY_free(k);
}

namespace {
Status fill_id(EVP_PKEY* k, KeyId& id) {
  uint8_t raw[32];
  size_t len = sizeof raw;
  if (EVP_PKEY_get_raw_public_key(k, raw, &len) != 1 || len != sizeof raw)
    return Error("not an Ed25519 key: " + openssl_error(), kExitSecurity);
  id = id_of(raw, len);
  return {};
}
}  // namespace

Result<SigningKey> SigningKey::generate() {
  EVP_PKEY* k = EVP_PKEY_Q_keygen(nullptr, nullptr, "ED25519");
  if (k == nullptr)
    return Error("cannot generate an Ed25519 key: " + openssl_error());
  SigningKey out;
  out.key_.reset(k, Free());
  out.private_ = true;
  CM_TRY(fill_id(k, out.id_));
  return out;
}

Result<SigningKey> SigningKey::load_private(const std::string& path) {
  CM_ASSIGN(FILE * f, open_read(path));
  EVP_PKEY* k = PEM_read_PrivateKey(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (k == nullptr || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    ERR_clear_error();
    return Error("'" + path + "' is not an Ed25519 private key (PEM)", kExitSecurity);
  }
  SigningKey out;
  out.key_.reset(k, Free());
  out.private_ = true;
  CM_TRY(fill_id(k, out.id_));
  return out;
}

Result<SigningKey> SigningKey::load_public(const std::string& path) {
  CM_ASSIGN(FILE * f, open_read(path));
  EVP_PKEY* k = PEM_read_PUBKEY(f, nullptr, nullptr, nullptr);
  std::fclose(f);
  if (k == nullptr || EVP_PKEY_get_base_id(k) != EVP_PKEY_ED25519) {
    EVP_PKEY_free(k);
    ERR_clear_error();
    return Error("'" + path + "' is not an Ed25519 public key (PEM)", kExitSecurity);
  }
  SigningKey out;
  out.key_.reset(k, Free());
  CM_TRY(fill_id(k, out.id_));
  return out;
}

Status SigningKey::save_private(const std::string& path) const {
  CM_ASSIGN(FILE * f, create_new(path, 0600));
  if (PEM_write_PrivateKey(f, key_.get(), nullptr, nullptr, 0, nullptr, nullptr) != 1) {
    std::fclose(f);
    ::unlink(path.c_str());
    return Error("cannot write '" + path + "': " + openssl_error());
  }
  return close_checked(f, path);
}

Status SigningKey::save_public(const std::string& path) const {
  CM_ASSIGN(FILE * f, create_new(path, 0644));
  if (PEM_write_PUBKEY(f, key_.get()) != 1) {
    std::fclose(f);
    ::unlink(path.c_str());
    return Error("cannot write '" + path + "': " + openssl_error());
  }
  return close_checked(f, path);
}

Result<std::string> SigningKey::sign(std::string_view msg) const {
  if (!private_)
    return Error("a public key cannot sign", kExitUsage);
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  std::string sig(kSignatureSize, '\0');
  size_t len = sig.size();
  if (!ctx || EVP_DigestSignInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) != 1 ||
      EVP_DigestSign(ctx.get(), reinterpret_cast<unsigned char*>(sig.data()), &len,
                     reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) != 1 ||
      len != kSignatureSize)
    return Error("cannot sign: " + openssl_error());
  return sig;
}

bool SigningKey::verify(std::string_view msg, std::string_view sig) const {
  if (sig.size() != kSignatureSize)
    return false;
  std::unique_ptr<EVP_MD_CTX, decltype(&EVP_MD_CTX_free)> ctx(EVP_MD_CTX_new(), EVP_MD_CTX_free);
  bool ok = ctx && EVP_DigestVerifyInit(ctx.get(), nullptr, nullptr, nullptr, key_.get()) == 1 &&
            EVP_DigestVerify(ctx.get(), reinterpret_cast<const unsigned char*>(sig.data()), sig.size(),
                             reinterpret_cast<const unsigned char*>(msg.data()), msg.size()) == 1;
  ERR_clear_error();
  return ok;
}

Status random_bytes(uint8_t* p, size_t n) {
  if (RAND_bytes(p, static_cast<int>(n)) != 1)
    return Error("no random bytes: " + openssl_error());
  return {};
}

Result<SymmetricKey> SymmetricKey::generate() {
  SymmetricKey k;
  CM_TRY(random_bytes(k.key_.data(), k.key_.size()));
  k.id_ = id_of(k.key_.data(), k.key_.size());
  return k;
}

Result<SymmetricKey> SymmetricKey::parse(std::string_view text, const std::string& name) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r'))
    text.remove_suffix(1);
  constexpr std::string_view prefix = "cm-key-v1 ";
  Digest bytes;
  if (text.substr(0, prefix.size()) != prefix || !from_hex(text.substr(prefix.size()), bytes))
    return Error("'" + name + "' is not a cm key (want one line: cm-key-v1 and 64 hex digits)",
                 kExitSecurity);
  SymmetricKey k;
  std::memcpy(k.key_.data(), bytes.data(), 32);
  k.id_ = id_of(k.key_.data(), k.key_.size());
  return k;
}

Result<SymmetricKey> SymmetricKey::load(const std::string& path) {
  CM_ASSIGN(auto in, open_input(path));
  auto text = read_all(*in, 4096);
  // A key is one short line: a larger file is not a key either (exit 4,
  // as for any other file that is not one), not malformed input.
  if (!text.ok() && text.error().code == kExitBadInput)
    return Error("'" + path + "' is not a cm key (larger than 4096 bytes)", kExitSecurity);
  if (!text.ok())
    return std::move(text).error();
  return parse(*text, path);
}

Status SymmetricKey::save(const std::string& path) const {
  CM_ASSIGN(FILE * f, create_new(path, 0600));
  std::string line = "cm-key-v1 " + to_hex(key_.data(), key_.size()) + "\n";
  std::fputs(line.c_str(), f);
  return close_checked(f, path);
}

}  // namespace cm::crypto
