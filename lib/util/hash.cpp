#include "util/hash.hpp"

#include <openssl/evp.h>

#include <memory>
#include <new>
#include <span>

namespace cm {

namespace {
// Fetched once: EVP_sha256() makes OpenSSL 3 look the algorithm up again on
// every init (18% of a small cm-assign build).
const EVP_MD* sha256_md() {
  static EVP_MD* md = EVP_MD_fetch(nullptr, "SHA256", nullptr);
  return md;
}
}  // namespace

Sha256::Sha256() : ctx_(EVP_MD_CTX_new()) {
  if (ctx_ == nullptr || EVP_DigestInit_ex(ctx_, sha256_md(), nullptr) != 1)
    throw std::bad_alloc();
}

Sha256::~Sha256() {
  EVP_MD_CTX_free(ctx_);
}

void Sha256::update(const void* data, size_t n) {
  if (n > 0)
    EVP_DigestUpdate(ctx_, data, n);
}

Digest Sha256::finish() {
  Digest d{};
  unsigned len = 0;
  EVP_DigestFinal_ex(ctx_, d.data(), &len);
  EVP_DigestInit_ex(ctx_, sha256_md(), nullptr);
  return d;
}

Digest sha256(std::string_view data) {
  Sha256 h;
  h.update(data);
  return h.finish();
}

Result<HashedSize> sha256_stream(Reader& r) {
  Sha256 h;
  // One buffer per thread: a fresh zero-filled 256 KiB vector per file was
  // 9% of cm-delta's time on a tree of small files.
  thread_local Buffer storage(256 * 1024);
  std::span<char> buf(storage.data(), 256 * 1024);
  uint64_t total = 0;
  for (;;) {
    CM_ASSIGN(size_t got, r.read(buf.data(), buf.size()));
    if (got == 0)
      break;
    h.update(buf.data(), got);
    total += got;
  }
  return HashedSize{h.finish(), total};
}

std::string to_hex(const uint8_t* p, size_t n) {
  static const char digits[] = "0123456789abcdef";
  std::string s(2 * n, '0');
  for (size_t i = 0; i < n; i++) {
    s[2 * i] = digits[p[i] >> 4];
    s[2 * i + 1] = digits[p[i] & 15];
  }
  return s;
}

namespace {

// Decodes hex.size() / 2 bytes into out.
bool decode_hex(std::string_view hex, uint8_t* out) {
  auto val = [](char c) -> int {
    if (c >= '0' && c <= '9')
      return c - '0';
    if (c >= 'a' && c <= 'f')
      return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
      return c - 'A' + 10;
    return -1;
  };
  for (size_t i = 0; i < hex.size() / 2; i++) {
    int hi = val(hex[2 * i]), lo = val(hex[2 * i + 1]);
    if (hi < 0 || lo < 0)
      return false;
    out[i] = static_cast<uint8_t>(hi << 4 | lo);
  }
  return true;
}

}  // namespace

bool from_hex(std::string_view hex, Digest& out) {
  return hex.size() == 2 * out.size() && decode_hex(hex, out.data());
}

bool from_hex(std::string_view hex, std::string& out) {
  if (hex.size() % 2 != 0)
    return false;
  out.resize(hex.size() / 2);
  return decode_hex(hex, reinterpret_cast<uint8_t*>(out.data()));
}

}  // namespace cm
