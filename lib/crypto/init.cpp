#include "crypto/init.hpp"

#include <openssl/crypto.h>

#include <cstdlib>

namespace cm::crypto {

void init_openssl(bool tls) {
  uint64_t opts = OPENSSL_INIT_NO_ADD_ALL_CIPHERS | OPENSSL_INIT_NO_ADD_ALL_DIGESTS;
  const char* conf = std::getenv("OPENSSL_CONF");
  if (!tls && (conf == nullptr || *conf == '\0'))
    opts |= OPENSSL_INIT_NO_LOAD_CONFIG;
  // Failure leaves OpenSSL to initialise itself as usual on first use.
  (void)OPENSSL_init_crypto(opts, nullptr);
}

}  // namespace cm::crypto
