#include "mcast/fec.hpp"

#include <isa-l/erasure_code.h>

#include <cstddef>
#include <utility>

namespace cm::mcast {

namespace {

// GF(2^8) modulo x^8 + x^4 + x^3 + x^2 + 1, ISA-L's field, by log tables.
// Our own rather than ISA-L's gf_mul: a statically linked libcrypto has a
// global gf_mul of its own (curve448) that a call by that name binds to.
struct Field {
  uint8_t exp[512];
  uint8_t log[256];
  Field() {
    unsigned x = 1;
    for (int i = 0; i < 255; i++) {
      exp[i] = exp[i + 255] = static_cast<uint8_t>(x);
      log[x] = static_cast<uint8_t>(i);
      x <<= 1;
      if (x & 0x100)
        x ^= 0x11d;
    }
    exp[510] = exp[511] = 0;
    log[0] = 0;
  }
  uint8_t mul(uint8_t a, uint8_t b) const { return a == 0 || b == 0 ? 0 : exp[log[a] + log[b]]; }
  uint8_t inv(uint8_t a) const { return exp[255 - log[a]]; }  // a != 0
};
const Field& field() {
  static const Field f;
  return f;
}

// Row k + r, column j of the Cauchy matrix.
uint8_t coefficient(uint32_t k, uint32_t r, uint32_t j) {
  return field().inv(static_cast<uint8_t>((k + r) ^ j));
}

// Gauss-Jordan: the inverse of the n x n matrix m (destroyed), or false.
bool invert(std::vector<uint8_t>& m, std::vector<uint8_t>& inv, size_t n) {
  const Field& f = field();
  inv.assign(n * n, 0);
  for (size_t i = 0; i < n; i++)
    inv[i * n + i] = 1;
  for (size_t c = 0; c < n; c++) {
    size_t p = c;
    while (p < n && m[p * n + c] == 0)
      p++;
    if (p == n)
      return false;
    if (p != c)
      for (size_t j = 0; j < n; j++) {
        std::swap(m[p * n + j], m[c * n + j]);
        std::swap(inv[p * n + j], inv[c * n + j]);
      }
    uint8_t s = f.inv(m[c * n + c]);
    for (size_t j = 0; j < n; j++) {
      m[c * n + j] = f.mul(m[c * n + j], s);
      inv[c * n + j] = f.mul(inv[c * n + j], s);
    }
    for (size_t r = 0; r < n; r++) {
      uint8_t t = m[r * n + c];
      if (r == c || t == 0)
        continue;
      for (size_t j = 0; j < n; j++) {
        m[r * n + j] ^= f.mul(t, m[c * n + j]);
        inv[r * n + j] ^= f.mul(t, inv[c * n + j]);
      }
    }
  }
  return true;
}

bool valid_block(uint32_t k, size_t len) {
  return k >= 1 && k <= kMaxFecBlock && len > 0 && len <= INT32_MAX;
}

}  // namespace

Status fec_encode(uint32_t k, size_t len, const std::vector<const uint8_t*>& frames, uint32_t first,
                  uint32_t count, std::vector<std::string>& out) {
  if (!valid_block(k, len) || frames.size() != k || first > max_repairs(k) || count > max_repairs(k) - first)
    return Error("repair frames: bad block (" + std::to_string(k) + " frames, repairs " +
                 std::to_string(first) + "+" + std::to_string(count) + ")");
  out.assign(count, std::string(len, '\0'));
  if (count == 0)
    return {};
  std::vector<uint8_t> rows(static_cast<size_t>(count) * k);
  for (uint32_t r = 0; r < count; r++)
    for (uint32_t j = 0; j < k; j++)
      rows[static_cast<size_t>(r) * k + j] = coefficient(k, first + r, j);
  std::vector<uint8_t> tables(static_cast<size_t>(32) * k * count);
  ec_init_tables(static_cast<int>(k), static_cast<int>(count), rows.data(), tables.data());
  std::vector<uint8_t*> dst(count);
  for (uint32_t r = 0; r < count; r++)
    dst[r] = reinterpret_cast<uint8_t*>(out[r].data());
  ec_encode_data(static_cast<int>(len), static_cast<int>(k), static_cast<int>(count), tables.data(),
                 const_cast<uint8_t**>(frames.data()), dst.data());
  return {};
}

Status fec_decode(uint32_t k, size_t len, const std::vector<uint32_t>& have,
                  const std::vector<const uint8_t*>& frames, const std::vector<uint32_t>& repair_index,
                  const std::vector<const uint8_t*>& repairs, const std::vector<uint32_t>& missing,
                  const std::vector<uint8_t*>& out) {
  size_t n = missing.size();
  if (!valid_block(k, len) || have.size() != frames.size() || repair_index.size() != repairs.size() ||
      out.size() != n || have.size() + n != k || repairs.size() < n)
    return Error("repair frames: cannot decode a block of " + std::to_string(k) + " frames from " +
                 std::to_string(have.size()) + " frames and " + std::to_string(repairs.size()) + " repairs");
  if (n == 0)
    return {};
  for (uint32_t r : repair_index)
    if (r >= max_repairs(k))
      return Error("repair frames: repair " + std::to_string(r) + " out of range");
  std::vector<bool> seen(k, false);
  for (const std::vector<uint32_t>* v : {&have, &missing})
    for (uint32_t j : *v) {
      if (j >= k || seen[j])
        return Error("repair frames: frame " + std::to_string(j) + " out of range or listed twice");
      seen[j] = true;
    }
  // The repairs used, restricted to the missing frames' columns, solved
  // for those frames: x_M = C_M^-1 (s + C_P x_P), with + as XOR.
  std::vector<uint8_t> cm(n * n), inv;
  for (size_t a = 0; a < n; a++)
    for (size_t b = 0; b < n; b++)
      cm[a * n + b] = coefficient(k, repair_index[a], missing[b]);
  if (!invert(cm, inv, n))
    return Error("repair frames: singular system (repeated repair or frame index)");
  // One row per missing frame over the k symbols: the frames at hand, then
  // the n repairs.
  std::vector<uint8_t> rows(n * k, 0);
  for (size_t a = 0; a < n; a++) {
    uint8_t* row = &rows[a * k];
    for (size_t col = 0; col < have.size(); col++) {
      uint8_t v = 0;
      for (size_t b = 0; b < n; b++)
        v ^= field().mul(inv[a * n + b], coefficient(k, repair_index[b], have[col]));
      row[col] = v;
    }
    for (size_t b = 0; b < n; b++)
      row[have.size() + b] = inv[a * n + b];
  }
  std::vector<const uint8_t*> src(frames);
  src.insert(src.end(), repairs.begin(), repairs.begin() + static_cast<std::ptrdiff_t>(n));
  std::vector<uint8_t> tables(32 * static_cast<size_t>(k) * n);
  ec_init_tables(static_cast<int>(k), static_cast<int>(n), rows.data(), tables.data());
  ec_encode_data(static_cast<int>(len), static_cast<int>(k), static_cast<int>(n), tables.data(),
                 const_cast<uint8_t**>(src.data()), const_cast<uint8_t**>(out.data()));
  return {};
}

}  // namespace cm::mcast
