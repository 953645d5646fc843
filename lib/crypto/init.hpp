// OpenSSL set up for what cm asks of it.
#pragma once

namespace cm::crypto {

// Called first thing by every program (cli::run). cm fetches its
// algorithms by name (SHA-256, Ed25519, AES-256-GCM, HMAC), so the legacy
// tables of every cipher and digest are not built; a program without TLS
// also skips the system configuration (mostly TLS policy) unless
// OPENSSL_CONF names a file: set it where the configuration enforces
// something else, such as FIPS providers. Together 1 ms of each run of
// cm-apply, which a job runs on every server in every round.
void init_openssl(bool tls);

}  // namespace cm::crypto
