#include "crypto/aead.hpp"

#include <openssl/err.h>
#include <openssl/evp.h>

#include <cstring>
#include <new>

namespace cm::crypto {

namespace {

std::array<uint8_t, 12> nonce(const NoncePrefix& prefix, uint8_t stream, uint32_t counter, bool last) {
  std::array<uint8_t, 12> n{};
  std::memcpy(n.data(), prefix.data(), prefix.size());
  n[7] = stream;
  uint32_t c = counter | (last ? 0x80000000u : 0);
  n[8] = static_cast<uint8_t>(c >> 24);
  n[9] = static_cast<uint8_t>(c >> 16);
  n[10] = static_cast<uint8_t>(c >> 8);
  n[11] = static_cast<uint8_t>(c);
  return n;
}

EVP_CIPHER_CTX* new_ctx() {
  EVP_CIPHER_CTX* c = EVP_CIPHER_CTX_new();
  if (c == nullptr)
    throw std::bad_alloc();
  return c;
}

}  // namespace

uint64_t sealed_size(uint64_t plain) {
  // Only an empty stream has an empty (last) chunk.
  uint64_t chunks = plain == 0 ? 1 : (plain + kChunk - 1) / kChunk;
  return plain + chunks * kTag;
}

SealWriter::SealWriter(const SymmetricKey& key, const NoncePrefix& prefix, uint8_t stream, std::string aad,
                       Writer& out)
    : ctx_(new_ctx()), key_(key), prefix_(prefix), stream_(stream), aad_(std::move(aad)), out_(out) {
  buf_.reserve(kChunk);
}

SealWriter::~SealWriter() {
  EVP_CIPHER_CTX_free(ctx_);
}

Status SealWriter::seal(bool last) {
  if (counter_ >= 0x7FFFFFFFu)
    return Error("stream too long to encrypt");
  auto iv = nonce(prefix_, stream_, counter_++, last);
  sealed_.resize(buf_.size() + kTag);
  int len = 0, fin = 0;
  auto* o = reinterpret_cast<unsigned char*>(sealed_.data());
  if (EVP_EncryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key_.bytes().data(), iv.data()) != 1 ||
      EVP_EncryptUpdate(ctx_, nullptr, &len, reinterpret_cast<const unsigned char*>(aad_.data()),
                        static_cast<int>(aad_.size())) != 1 ||
      EVP_EncryptUpdate(ctx_, o, &len, reinterpret_cast<const unsigned char*>(buf_.data()),
                        static_cast<int>(buf_.size())) != 1 ||
      EVP_EncryptFinal_ex(ctx_, o + len, &fin) != 1 ||
      EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_GET_TAG, kTag, o + buf_.size()) != 1) {
    ERR_clear_error();
    return Error("AES-256-GCM encryption failed");
  }
  buf_.clear();
  return out_.write(sealed_);
}

Status SealWriter::write(const void* p, size_t n) {
  const char* c = static_cast<const char*>(p);
  while (n > 0) {
    if (buf_.size() == kChunk)
      CM_TRY(seal(false));
    size_t k = std::min(n, kChunk - buf_.size());
    buf_.append(c, k);
    c += k;
    n -= k;
  }
  return {};
}

Status SealWriter::finish() {
  if (finished_)
    return {};
  finished_ = true;
  return seal(true);
}

OpenReader::OpenReader(const SymmetricKey& key, const NoncePrefix& prefix, uint8_t stream, std::string aad,
                       Reader& in)
    : ctx_(new_ctx()), key_(key), prefix_(prefix), stream_(stream), aad_(std::move(aad)), in_(in) {}

OpenReader::~OpenReader() {
  EVP_CIPHER_CTX_free(ctx_);
}

Status OpenReader::next_chunk() {
  // Read up to a full sealed chunk; a short one must be the last.
  std::string sealed(kChunk + kTag, '\0');
  size_t have = 0;
  while (have < sealed.size()) {
    CM_ASSIGN(size_t got, in_.read(sealed.data() + have, sealed.size() - have));
    if (got == 0)
      break;
    have += got;
  }
  if (have == 0)
    return Error("'" + in_.name() + "': encrypted data ends without its last chunk", kExitSecurity);
  if (have < kTag)
    return Error("'" + in_.name() + "': truncated encrypted chunk", kExitSecurity);
  sealed.resize(have);
  size_t clen = have - kTag;
  // A full chunk may or may not be the last: try "not last" first, then
  // "last" (the tag tells which one is true).
  auto try_open = [&](bool last) {
    auto iv = nonce(prefix_, stream_, counter_, last);
    plain_.resize(clen);
    int len = 0, fin = 0;
    auto* o = reinterpret_cast<unsigned char*>(plain_.data());
    bool ok = EVP_DecryptInit_ex(ctx_, EVP_aes_256_gcm(), nullptr, key_.bytes().data(), iv.data()) == 1 &&
              EVP_DecryptUpdate(ctx_, nullptr, &len, reinterpret_cast<const unsigned char*>(aad_.data()),
                                static_cast<int>(aad_.size())) == 1 &&
              EVP_DecryptUpdate(ctx_, o, &len, reinterpret_cast<const unsigned char*>(sealed.data()),
                                static_cast<int>(clen)) == 1 &&
              EVP_CIPHER_CTX_ctrl(ctx_, EVP_CTRL_GCM_SET_TAG, kTag, sealed.data() + clen) == 1 &&
              EVP_DecryptFinal_ex(ctx_, o + len, &fin) == 1;
    ERR_clear_error();
    return ok;
  };
  bool full = clen == kChunk;
  if (full && try_open(false)) {
    last_seen_ = false;
  } else if (try_open(true)) {
    last_seen_ = true;
  } else {
    return Error("'" + in_.name() + "': cannot decrypt (wrong key, or the data was changed)", kExitSecurity);
  }
  counter_++;
  pos_ = 0;
  return {};
}

Result<size_t> OpenReader::read(void* p, size_t n) {
  while (pos_ == plain_.size()) {
    if (last_seen_) {
      char extra;
      CM_ASSIGN(size_t got, in_.read(&extra, 1));
      if (got != 0)
        return Error("'" + in_.name() + "': data after the last encrypted chunk", kExitSecurity);
      return size_t{0};
    }
    CM_TRY(next_chunk());
  }
  size_t k = std::min(n, plain_.size() - pos_);
  std::memcpy(p, plain_.data() + pos_, k);
  pos_ += k;
  return k;
}

}  // namespace cm::crypto
