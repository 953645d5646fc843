// Reading an assignment pack from a stream, in one pass, checking as it
// goes: the signature over the header first (when a public key is given),
// then each member against the SHA-256 the header gives for it, the
// encryption tags, the sizes, and the trailer. Nothing is trusted before
// its check: commands are checked before the first one is returned; a data
// member's hash is checked when it has been read to its end, so an applier
// must treat its work as provisional until finish() succeeds.
#pragma once

#include <memory>
#include <optional>
#include <string>

#include "assign/format.hpp"
#include "crypto/keys.hpp"
#include "util/io.hpp"

namespace cm::assign {

// A reader with a buffer, shared by the packs of a multi-part stream.
class BufferedInput {
 public:
  BufferedInput(Reader& in, std::string name) : in_(in), name_(std::move(name)) {}
  // Ensures n bytes are buffered; false at end of input (fewer remain).
  Result<bool> fill(size_t n);
  std::string_view peek() const { return std::string_view(buf_).substr(pos_); }
  void consume(size_t n) { pos_ += n; }
  Result<size_t> read(void* p, size_t n);
  Result<bool> at_end();
  const std::string& name() const { return name_; }

 private:
  Reader& in_;
  std::string name_;
  std::string buf_;
  size_t pos_ = 0;
};

struct Keys {
  const crypto::SigningKey* pubkey = nullptr;  // when set, a valid signature is required
  const crypto::SymmetricKey* key = nullptr;   // to decrypt
};

class PackReader {
 public:
  PackReader(BufferedInput& in, Keys keys);
  ~PackReader();

  // Magic, version, header, signature; then the command list (read whole
  // into a spool, checked against the header, decrypted, decompressed)
  // unless it is encrypted and no key was given.
  Status open();
  const Header& header() const { return header_; }
  const std::string& name() const;
  bool is_signed() const { return signed_; }
  const crypto::KeyId& signer() const { return signer_; }
  bool signature_checked() const { return signature_checked_; }
  bool commands_readable() const { return commands_ready_; }

  Result<std::optional<Command>> next_command();
  // The plain bytes of a data member. Members come in order: asking for
  // one skips what is left of earlier ones (still checking them).
  Result<Reader*> member(Member m);
  // Reads what is left, checks every member and the trailer. With
  // expect_end, nothing may follow the pack.
  Status finish(bool expect_end);
  // For a reader that checks the content of every put against the put's
  // check, as cm-apply does: the stored data member ("data": neither
  // compressed nor encrypted) is then, when no other command reads it,
  // not hashed a second time as a member. Every byte of it belongs to a file
  // whose SHA-256 is in the signed command list, and finish() refuses a
  // byte that no command read. Call before member().
  void set_puts_checked(bool on) { puts_checked_ = on; }

 private:
  Status left_unread() const;

  struct Impl;
  std::unique_ptr<Impl> impl_;
  Header header_;
  bool signed_ = false;
  bool signature_checked_ = false;
  bool commands_ready_ = false;
  bool puts_checked_ = false;
  crypto::KeyId signer_{};
};

}  // namespace cm::assign
