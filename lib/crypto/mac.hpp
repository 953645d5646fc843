// HMAC-SHA256 (OpenSSL 3), for authenticating LAN messages.
#pragma once

#include <string>
#include <string_view>

#include "crypto/keys.hpp"

namespace cm::crypto {

inline constexpr size_t kMacSize = 16;  // HMAC-SHA256 truncated, as many protocols do

// The first kMacSize bytes of HMAC-SHA256(key, data).
std::string mac(const SymmetricKey& key, std::string_view data);
// Constant-time comparison.
bool mac_equal(std::string_view a, std::string_view b);

}  // namespace cm::crypto
