// Bounded binary encoding shared by every cm file format and message:
// LEB128 varints, length-prefixed byte strings, fixed 32-byte digests.
// The reader never reads past its buffer and rejects overlong or
// overflowing varints and lengths above a caller-given bound.
#pragma once

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>

#include "util/hash.hpp"

namespace cm {

class ByteWriter {
 public:
  explicit ByteWriter(std::string& out) : out_(out) {}
  void u8(uint8_t v) { out_.push_back(static_cast<char>(v)); }
  void varint(uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<char>((v & 0x7F) | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<char>(v));
  }
  // Zigzag-encoded signed value.
  void svarint(int64_t v) { varint((static_cast<uint64_t>(v) << 1) ^ static_cast<uint64_t>(v >> 63)); }
  void bytes(std::string_view s) {
    varint(s.size());
    out_.append(s);
  }
  void raw(std::string_view s) { out_.append(s); }
  void digest(const Digest& d) { out_.append(reinterpret_cast<const char*>(d.data()), d.size()); }

 private:
  std::string& out_;
};

class ByteReader {
 public:
  explicit ByteReader(std::string_view in) : in_(in) {}

  bool ok() const { return ok_; }
  bool at_end() const { return pos_ == in_.size(); }
  size_t remaining() const { return in_.size() - pos_; }
  // The first problem met, for error messages ("truncated", "overlong varint" ...).
  const char* problem() const { return problem_; }

  uint8_t u8() {
    if (!need(1))
      return 0;
    return static_cast<uint8_t>(in_[pos_++]);
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!need(1))
        return 0;
      auto b = static_cast<uint8_t>(in_[pos_++]);
      if (shift == 63 && b > 1)
        return fail("varint overflows 64 bits");
      v |= static_cast<uint64_t>(b & 0x7F) << shift;
      if (!(b & 0x80)) {
        if (b == 0 && shift > 0)
          return fail("overlong varint");
        return v;
      }
    }
    return fail("varint overflows 64 bits");
  }
  int64_t svarint() {
    uint64_t u = varint();
    return static_cast<int64_t>(u >> 1) ^ -static_cast<int64_t>(u & 1);
  }
  // A length-prefixed byte string of at most max_len bytes.
  std::string_view bytes(size_t max_len) {
    uint64_t n = varint();
    if (!ok_)
      return {};
    if (n > max_len) {
      fail("length field too large");
      return {};
    }
    return raw(static_cast<size_t>(n));
  }
  std::string_view raw(size_t n) {
    if (!need(n))
      return {};
    std::string_view s = in_.substr(pos_, n);
    pos_ += n;
    return s;
  }
  Digest digest() {
    Digest d{};
    std::string_view s = raw(d.size());
    if (ok_)
      std::memcpy(d.data(), s.data(), d.size());
    return d;
  }
  uint64_t fail(const char* why) {
    if (ok_) {
      ok_ = false;
      problem_ = why;
    }
    return 0;
  }

 private:
  bool need(size_t n) {
    if (!ok_)
      return false;
    if (in_.size() - pos_ < n) {
      fail("truncated");
      return false;
    }
    return true;
  }
  std::string_view in_;
  size_t pos_ = 0;
  bool ok_ = true;
  const char* problem_ = "";
};

}  // namespace cm
