#include "assign/reader.hpp"

#include <zstd.h>

#include <cstring>
#include <memory>
#include <span>
#include <vector>

#include "crypto/aead.hpp"
#include "util/text.hpp"
#include "util/wire.hpp"

namespace cm::assign {

// ---- BufferedInput

Result<bool> BufferedInput::fill(size_t n) {
  if (buf_.size() - pos_ >= n)
    return true;
  buf_.erase(0, pos_);
  pos_ = 0;
  char tmp[65536];
  while (buf_.size() < n) {
    CM_ASSIGN(size_t got, in_.read(tmp, sizeof tmp));
    if (got == 0)
      return false;
    buf_.append(tmp, got);
  }
  return true;
}

Result<size_t> BufferedInput::read(void* p, size_t n) {
  if (pos_ < buf_.size()) {
    size_t k = std::min(n, buf_.size() - pos_);
    std::memcpy(p, buf_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  return in_.read(p, n);
}

Result<bool> BufferedInput::at_end() {
  CM_ASSIGN(bool more, fill(1));
  return !more;
}

namespace {

constexpr int kMaxWindowLog = 24;

Error bad(const std::string& name, const std::string& what) {
  return Error("'" + name + "': " + what, kExitBadInput);
}

// Exactly `left` bytes of a frame, hashed; the hash is checked when the
// frame has been read to its end. (Unhashed: a member whose every byte
// its reader checks itself, see PackReader::set_puts_checked().)
class FrameReader : public Reader {
 public:
  FrameReader(BufferedInput& in, uint64_t size, const Digest& want, std::string what, Sha256* also,
              bool hashed = true)
      : in_(in),
        left_(size),
        want_(want),
        what_(std::move(what)),
        also_(also),
        name_(in.name()),
        hashed_(hashed) {}
  Result<size_t> read(void* p, size_t n) override {
    if (left_ == 0) {
      if (!checked_ && hashed_) {
        checked_ = true;
        if (h_.finish() != want_)
          return bad(name_,
                     "member '" + what_ + "' does not match its SHA-256 in the header (corrupt or tampered)");
      }
      return size_t{0};
    }
    CM_ASSIGN(size_t got, in_.read(p, static_cast<size_t>(std::min<uint64_t>(n, left_))));
    if (got == 0)
      return bad(name_, "truncated in the " + what_);
    if (hashed_)
      h_.update(p, got);
    if (also_ != nullptr)
      also_->update(p, got);
    left_ -= got;
    return got;
  }
  const std::string& name() const override { return name_; }
  bool hashed() const { return hashed_; }
  uint64_t left() const { return left_; }

 private:
  BufferedInput& in_;
  uint64_t left_;
  Digest want_;
  std::string what_;
  Sha256* also_;
  std::string name_;
  Sha256 h_;
  bool checked_ = false;
  bool hashed_;
};

// A copy buffer per thread, kept and never zero-filled: a fresh zeroed
// 256 KiB vector per call is page faults for every assignment read.
std::span<char> copy_buffer() {
  constexpr size_t kSize = 256 * 1024;
  thread_local Buffer storage(kSize);
  return {storage.data(), kSize};
}

struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// One zstd frame, decompressed; its end must be the input's end.
class ZstdReader : public Reader {
 public:
  ZstdReader(Reader& in, std::string what)
      : in_(in), what_(std::move(what)), ctx_(ZSTD_createDCtx()), ibuf_(ZSTD_DStreamInSize()) {
    ZSTD_DCtx_setParameter(ctx_.get(), ZSTD_d_windowLogMax, kMaxWindowLog);
  }
  Result<size_t> read(void* p, size_t n) override {
    for (;;) {
      if (ipos_ == ilen_ && !eof_) {
        CM_ASSIGN(size_t got, in_.read(ibuf_.data(), ibuf_.size()));
        ilen_ = got;
        ipos_ = 0;
        eof_ = got == 0;
      }
      if (done_) {
        if (ipos_ < ilen_)
          return bad(in_.name(), "bytes after the end of the " + what_ + "'s zstd frame");
        if (eof_)
          return size_t{0};
        continue;
      }
      ZSTD_inBuffer ib{ibuf_.data(), ilen_, ipos_};
      ZSTD_outBuffer ob{p, n, 0};
      size_t r = ZSTD_decompressStream(ctx_.get(), &ob, &ib);
      if (ZSTD_isError(r))
        return bad(in_.name(), "the " + what_ + " is not valid zstd (" + ZSTD_getErrorName(r) + ")");
      ipos_ = ib.pos;
      if (r == 0)
        done_ = true;
      if (ob.pos > 0)
        return ob.pos;
      if (eof_ && ipos_ == ilen_ && !done_)
        return bad(in_.name(), "the " + what_ + "'s zstd frame is truncated");
    }
  }
  const std::string& name() const override { return in_.name(); }

 private:
  Reader& in_;
  std::string what_;
  std::unique_ptr<ZSTD_DCtx, DCtxFree> ctx_;
  Buffer ibuf_;  // not zero-filled: a small member touches a page or two of it
  size_t ilen_ = 0, ipos_ = 0;
  bool eof_ = false;
  bool done_ = false;
};

// Insists on an exact plain size.
class SizedReader : public Reader {
 public:
  SizedReader(Reader& in, uint64_t size, std::string what) : in_(in), left_(size), what_(std::move(what)) {}
  Result<size_t> read(void* p, size_t n) override {
    if (left_ == 0) {
      char extra;
      CM_ASSIGN(size_t got, in_.read(&extra, 1));
      if (got != 0)
        return bad(in_.name(), "the " + what_ + " is longer than its header says");
      return size_t{0};
    }
    CM_ASSIGN(size_t got, in_.read(p, static_cast<size_t>(std::min<uint64_t>(n, left_))));
    if (got == 0)
      return bad(in_.name(), "the " + what_ + " is shorter than its header says");
    left_ -= got;
    return got;
  }
  const std::string& name() const override { return in_.name(); }

 private:
  Reader& in_;
  uint64_t left_;
  std::string what_;
};

// Reads a temporary file from the start.
class TempReader : public Reader {
 public:
  TempReader(TempFile& f, std::string name) : f_(f), name_(std::move(name)) {}
  Result<size_t> read(void* p, size_t n) override {
    CM_ASSIGN(size_t got, f_.pread(p, n, off_));
    off_ += got;
    return got;
  }
  const std::string& name() const override { return name_; }

 private:
  TempFile& f_;
  std::string name_;
  uint64_t off_ = 0;
};

// The chain that turns a member's stored bytes into its plain bytes.
struct Chain {
  std::unique_ptr<FrameReader> frame;
  std::unique_ptr<crypto::OpenReader> open;
  std::unique_ptr<ZstdReader> zstd;
  std::unique_ptr<SizedReader> sized;
  Reader* top = nullptr;
};

}  // namespace

struct PackReader::Impl {
  BufferedInput& in;
  Keys keys;
  Sha256 trailer;
  std::unique_ptr<TempFile> commands;
  std::unique_ptr<TempReader> commands_in;
  std::unique_ptr<CommandReader> command_reader;
  int next_member = 0;  // the next frame to read, as a Member index
  Chain chain;          // of the member being read
  int chain_member = -1;
  std::string aad_base;

  Impl(BufferedInput& i, Keys k) : in(i), keys(k) {}

  Result<std::pair<char, uint64_t>> frame_head(Sha256* also) {
    CM_ASSIGN(bool some, in.fill(2));
    if (!some)
      return bad(in.name(), "truncated: the assignment ends before its trailer");
    (void)in.fill(11);
    std::string_view v = in.peek();
    char kind = v[0];
    ByteReader r(v.substr(1, std::min<size_t>(10, v.size() - 1)));
    uint64_t len = r.varint();
    if (!r.ok())
      return bad(in.name(), std::string("bad frame length (") + r.problem() + ")");
    size_t used = 1 + std::min<size_t>(10, v.size() - 1) - r.remaining();
    if (also != nullptr)
      also->update(v.data(), used);
    in.consume(used);
    return std::make_pair(kind, len);
  }

  Result<std::string> read_small(uint64_t len, size_t max, const char* what) {
    if (len > max)
      return bad(in.name(), std::string(what) + " of impossible length " + std::to_string(len));
    CM_ASSIGN(bool ok, in.fill(static_cast<size_t>(len)));
    if (!ok)
      return bad(in.name(), std::string("truncated in the ") + what);
    std::string s(in.peek().substr(0, static_cast<size_t>(len)));
    in.consume(static_cast<size_t>(len));
    return s;
  }

  Chain make_chain(const Header& h, Member m, uint64_t stored, Sha256* also, bool hashed = true) {
    Chain c;
    const MemberInfo& mi = h.member(m);
    std::string what = member_name(m);
    c.frame = std::make_unique<FrameReader>(in, stored, mi.hash, what, also, hashed);
    Reader* r = c.frame.get();
    if (h.encrypted) {
      std::string aad(kMagic, sizeof kMagic);
      ByteWriter w(aad);
      w.varint(h.id);
      w.varint(h.part);
      w.u8(static_cast<uint8_t>(member_kind(m)));
      c.open = std::make_unique<crypto::OpenReader>(*keys.key, h.nonce, static_cast<uint8_t>(m), aad, *r);
      r = c.open.get();
    }
    if (mi.zstd) {
      c.zstd = std::make_unique<ZstdReader>(*r, what);
      r = c.zstd.get();
    }
    c.sized = std::make_unique<SizedReader>(*r, mi.plain_size, what);
    c.top = c.sized.get();
    return c;
  }

  // Whether every command that reads member m is a put (whose content
  // the reader checks), from a second pass over the spooled list.
  Result<bool> only_puts_read(Member m) {
    TempReader again(*commands, in.name());
    CommandReader list(again, in.name());
    for (;;) {
      CM_ASSIGN(auto c, list.next());
      if (!c)
        return true;
      if (c->takes_data() && c->from == m && c->op != Op::Put)
        return false;
    }
  }

  static Status drain(Reader& r) {
    std::span<char> buf = copy_buffer();
    for (;;) {
      CM_ASSIGN(size_t got, r.read(buf.data(), buf.size()));
      if (got == 0)
        return {};
    }
  }

  // Reads a member's frame header and checks it is the expected one.
  Result<uint64_t> enter(const Header& h, Member m, Sha256* also) {
    CM_ASSIGN(auto fh, frame_head(also));
    if (fh.first != member_kind(m))
      return bad(in.name(), std::string("expected the ") + member_name(m) + " frame, found another");
    if (fh.second != h.member(m).stored_size)
      return bad(in.name(), std::string("the ") + member_name(m) + " frame's length differs from the header");
    return fh.second;
  }
};

PackReader::PackReader(BufferedInput& in, Keys keys) : impl_(std::make_unique<Impl>(in, keys)) {}
PackReader::~PackReader() = default;

const std::string& PackReader::name() const {
  return impl_->in.name();
}

Status PackReader::open() {
  BufferedInput& in = impl_->in;
  CM_ASSIGN(bool enough, in.fill(sizeof kMagic + 1));
  std::string_view v = in.peek();
  if (std::memcmp(v.data(), kMagic, std::min(v.size(), sizeof kMagic)) != 0 || v.empty())
    return bad(in.name(), "not a cm assignment (bad magic)");
  if (!enough)
    return bad(in.name(), "truncated: the assignment ends before its header");
  in.consume(sizeof kMagic);
  (void)in.fill(10);
  ByteReader r(in.peek().substr(0, 10));
  uint64_t version = r.varint();
  if (!r.ok())
    return bad(in.name(), "bad version field");
  in.consume(std::min<size_t>(10, in.peek().size()) - r.remaining());
  if (version != kVersion)
    return bad(in.name(), "unsupported assignment version " + std::to_string(version) +
                              " (this cm reads version " + std::to_string(kVersion) + ")");

  CM_ASSIGN(auto fh, impl_->frame_head(&impl_->trailer));
  if (fh.first != 'H')
    return bad(in.name(), "missing header");
  CM_ASSIGN(std::string head, impl_->read_small(fh.second, kMaxHeader, "header"));
  impl_->trailer.update(head);
  CM_ASSIGN(header_, decode_header(head, in.name()));

  // The signature, before anything else is believed.
  CM_ASSIGN(bool more, in.fill(1));
  if (more && in.peek()[0] == 'S') {
    CM_ASSIGN(auto sh, impl_->frame_head(nullptr));
    CM_ASSIGN(std::string sig, impl_->read_small(sh.second, 8 + crypto::kSignatureSize, "signature"));
    if (sig.size() != 8 + crypto::kSignatureSize)
      return bad(in.name(), "bad signature frame");
    signed_ = true;
    std::memcpy(signer_.data(), sig.data(), 8);
    if (impl_->keys.pubkey != nullptr) {
      if (signer_ != impl_->keys.pubkey->id())
        return Error("'" + in.name() + "': signed by key " + crypto::key_id_hex(signer_) + ", not by " +
                         crypto::key_id_hex(impl_->keys.pubkey->id()),
                     kExitSecurity);
      if (!impl_->keys.pubkey->verify(head, std::string_view(sig).substr(8)))
        return Error("'" + in.name() + "': bad signature (the assignment was changed, or forged)",
                     kExitSecurity);
      signature_checked_ = true;
    }
  } else if (impl_->keys.pubkey != nullptr) {
    return Error("'" + in.name() + "': unsigned, and a signature is required", kExitSecurity);
  }
  if (header_.encrypted && impl_->keys.key != nullptr && impl_->keys.key->id() != header_.key_id)
    return Error("'" + in.name() + "': encrypted for key " + crypto::key_id_hex(header_.key_id) + ", not " +
                     crypto::key_id_hex(impl_->keys.key->id()),
                 kExitSecurity);

  // The command list, whole, into a spool.
  CM_ASSIGN(uint64_t stored, impl_->enter(header_, Member::Commands, &impl_->trailer));
  impl_->next_member = 1;
  if (header_.encrypted && impl_->keys.key == nullptr) {
    // Keep the frame for finish(): it checks the stored bytes only.
    impl_->chain.frame = std::make_unique<FrameReader>(in, stored, header_.member(Member::Commands).hash,
                                                       "commands", &impl_->trailer);
    impl_->chain.top = impl_->chain.frame.get();
    impl_->chain_member = 0;
    return {};
  }
  Chain c = impl_->make_chain(header_, Member::Commands, stored, &impl_->trailer);
  CM_ASSIGN(TempFile spool, TempFile::create());
  impl_->commands = std::make_unique<TempFile>(std::move(spool));
  std::span<char> buf = copy_buffer();
  for (;;) {
    CM_ASSIGN(size_t got, c.top->read(buf.data(), buf.size()));
    if (got == 0)
      break;
    CM_TRY(impl_->commands->write(buf.data(), got));
  }
  CM_TRY(impl_->commands->flush());
  impl_->commands_in = std::make_unique<TempReader>(*impl_->commands, in.name());
  impl_->command_reader = std::make_unique<CommandReader>(*impl_->commands_in, in.name());
  commands_ready_ = true;
  return {};
}

Result<std::optional<Command>> PackReader::next_command() {
  if (!commands_ready_)
    return Error("'" + impl_->in.name() + "': the command list is encrypted; give the key", kExitSecurity);
  CM_ASSIGN(auto c, impl_->command_reader->next());
  if (!c && impl_->command_reader->count() != header_.commands)
    return bad(impl_->in.name(), "the command list has " + std::to_string(impl_->command_reader->count()) +
                                     " commands, the header says " + std::to_string(header_.commands));
  if (c && impl_->command_reader->count() > header_.commands)
    return bad(impl_->in.name(), "more commands than the header says");
  return c;
}

Result<Reader*> PackReader::member(Member m) {
  int want = static_cast<int>(m);
  if (want == impl_->chain_member && impl_->chain.top != nullptr)
    return impl_->chain.top;
  if (header_.encrypted && impl_->keys.key == nullptr)
    return Error("'" + impl_->in.name() + "': the data is encrypted; give the key", kExitSecurity);
  if (!header_.member(m).present)
    return bad(impl_->in.name(), std::string("no ") + member_name(m) + " member");
  if (want < impl_->next_member)
    return bad(impl_->in.name(), std::string("the ") + member_name(m) + " member was already read");
  // Finish the current member and skip to the wanted one.
  CM_TRY(left_unread());
  if (impl_->chain.top != nullptr)
    CM_TRY(Impl::drain(*impl_->chain.top));
  impl_->chain = Chain();
  for (int i = impl_->next_member; i < kMembers; i++) {
    Member mi = static_cast<Member>(i);
    if (!header_.member(mi).present)
      continue;
    CM_ASSIGN(uint64_t stored, impl_->enter(header_, mi, nullptr));
    // The stored data member when only puts read it, for a reader that
    // checks every put: each byte is checked as part of its file, not
    // hashed twice. (Only that member: a crafted header may flag data.zst
    // as stored too, and it is not the last member, see left_unread().)
    bool hashed = true;
    if (puts_checked_ && i == want && mi == Member::DataRaw && !header_.encrypted &&
        !header_.member(mi).zstd && commands_ready_) {
      CM_ASSIGN(bool only_puts, impl_->only_puts_read(mi));
      hashed = !only_puts;
    }
    impl_->chain = impl_->make_chain(header_, mi, stored, nullptr, hashed);
    impl_->chain_member = i;
    impl_->next_member = i + 1;
    if (i == want)
      return impl_->chain.top;
    CM_TRY(Impl::drain(*impl_->chain.top));
    impl_->chain = Chain();
  }
  return bad(impl_->in.name(), "member out of order");
}

// A member not hashed was checked by what read it: a byte of it that no
// command read would not be checked at all, and is refused wherever the
// reading moves past it.
Status PackReader::left_unread() const {
  const FrameReader* f = impl_->chain.frame.get();
  if (f == nullptr || f->hashed() || f->left() == 0)
    return {};
  return bad(impl_->in.name(), "the " + std::string(member_name(static_cast<Member>(impl_->chain_member))) +
                                   " member holds " + std::to_string(f->left()) + " bytes no command reads");
}

Status PackReader::finish(bool expect_end) {
  CM_TRY(left_unread());
  if (impl_->chain.top != nullptr)
    CM_TRY(Impl::drain(*impl_->chain.top));
  impl_->chain = Chain();
  bool can_open = !header_.encrypted || impl_->keys.key != nullptr;
  for (int i = impl_->next_member; i < kMembers; i++) {
    Member mi = static_cast<Member>(i);
    if (!header_.member(mi).present)
      continue;
    CM_ASSIGN(uint64_t stored, impl_->enter(header_, mi, nullptr));
    if (can_open) {
      Chain c = impl_->make_chain(header_, mi, stored, nullptr);
      CM_TRY(Impl::drain(*c.top));
    } else {
      FrameReader f(impl_->in, stored, header_.member(mi).hash, member_name(mi), nullptr);
      CM_TRY(Impl::drain(f));
    }
  }
  impl_->next_member = kMembers;
  CM_ASSIGN(auto fh, impl_->frame_head(nullptr));
  if (fh.first != 'T' || fh.second != 32)
    return bad(impl_->in.name(), "missing trailer");
  CM_ASSIGN(std::string t, impl_->read_small(32, 32, "trailer"));
  Digest d = impl_->trailer.finish();
  if (std::memcmp(t.data(), d.data(), 32) != 0)
    return bad(impl_->in.name(), "trailer checksum mismatch: the header or commands were changed");
  if (expect_end) {
    CM_ASSIGN(bool end, impl_->in.at_end());
    if (!end)
      return bad(impl_->in.name(), "data after the trailer");
  }
  return {};
}

}  // namespace cm::assign
