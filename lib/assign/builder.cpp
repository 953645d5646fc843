#include "assign/builder.hpp"

#include <zstd.h>

#include <algorithm>
#include <cstring>

#include "crypto/aead.hpp"
#include "util/text.hpp"
#include "util/wire.hpp"

namespace cm::assign {

namespace {

constexpr int kCommandsLevel = 19;

uint32_t fnv1a(std::string_view s) {
  uint32_t h = 2166136261u;
  for (char c : s) {
    h ^= static_cast<unsigned char>(c);
    h *= 16777619u;
  }
  return h;
}

// Similar files end up next to each other in the solid stream: same
// extension first, then names with the same beginning (the same component
// built three ways, post-001 ... post-120); ties keep the input's path
// order. 16 bits of extension hash and the name's first 6 bytes: a small
// key, so memory stays at a few dozen bytes a file.
uint64_t group_key(std::string_view path) {
  size_t slash = path.rfind('/');
  std::string_view name = slash == std::string_view::npos ? path : path.substr(slash + 1);
  size_t dot = name.rfind('.');
  std::string_view ext = dot == std::string_view::npos ? std::string_view() : name.substr(dot);
  uint64_t key = static_cast<uint64_t>(fnv1a(ext) & 0xFFFF) << 48;
  for (size_t i = 0; i < 6; i++)
    key |= static_cast<uint64_t>(i < name.size() ? static_cast<unsigned char>(name[i]) : 0) << (40 - 8 * i);
  return key;
}

// zstd's top levels cost far more time than the bytes they save on a link:
// on a 13 MB tree of JS and docs, -19 took 15 x -12's time for 266 KB less,
// 10 ms at 200 Mbit/s. So 19 only for updates-sized data.
// Above a few MiB, each level past 6 costs more time on the manager than
// its bytes save on a WAN link of tens of Mbit/s or more (9.8 MB of text:
// level 12 builds in 0.71 s, level 6 in 0.53 s and 134 KB larger, level 3
// in 0.49 s and 325 KB larger; bench/RESULTS.md).
int auto_level(uint64_t plain) {
  if (plain <= (2u << 20))
    return 19;
  if (plain <= (256u << 20))
    return 6;
  return 3;
}

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};

// Compresses what is written into another writer as one zstd frame.
class ZstdWriter : public Writer {
 public:
  ZstdWriter(Writer& out, int level, uint64_t pledged)
      : out_(out), ctx_(ZSTD_createCCtx()), obuf_(ZSTD_CStreamOutSize()) {
    ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_compressionLevel, level);
    ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_checksumFlag, 0);  // members carry a SHA-256
    // Receivers need at most a 8 MiB window; small inputs get smaller ones.
    if (pledged > (8u << 20))
      ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_windowLog, 23);
    if (pledged > (16u << 20))
      ZSTD_CCtx_setParameter(ctx_.get(), ZSTD_c_nbWorkers, 2);
    ZSTD_CCtx_setPledgedSrcSize(ctx_.get(), pledged);
  }
  Status write(const void* p, size_t n) override { return run(p, n, ZSTD_e_continue); }
  Status finish() { return run(nullptr, 0, ZSTD_e_end); }

 private:
  Status run(const void* p, size_t n, ZSTD_EndDirective mode) {
    ZSTD_inBuffer in{p, n, 0};
    for (;;) {
      ZSTD_outBuffer out{obuf_.data(), obuf_.size(), 0};
      size_t left = ZSTD_compressStream2(ctx_.get(), &out, &in, mode);
      if (ZSTD_isError(left))
        return Error(std::string("zstd: ") + ZSTD_getErrorName(left));
      CM_TRY(out_.write(obuf_.data(), out.pos));
      bool done = mode == ZSTD_e_end ? left == 0 : in.pos == in.size;
      if (done)
        return {};
    }
  }
  Writer& out_;
  std::unique_ptr<ZSTD_CCtx, CCtxFree> ctx_;
  std::vector<char> obuf_;
};

// Hashes and counts what is written to it (a member's stored bytes).
class HashWriter : public Writer {
 public:
  using Writer::write;
  Status write(const void* p, size_t n) override {
    h_.update(p, n);
    size_ += n;
    return {};
  }
  Digest digest() { return h_.finish(); }
  uint64_t size() const { return size_; }

 private:
  Sha256 h_;
  uint64_t size_ = 0;
};

// Counts what it passes on (the pack's size: its hash is the trailer's
// and the members', computed on their own).
class CountWriter : public Writer {
 public:
  using Writer::write;
  explicit CountWriter(Writer& next) : next_(next) {}
  Status write(const void* p, size_t n) override {
    size_ += n;
    return next_.write(p, n);
  }
  uint64_t size() const { return size_; }

 private:
  Writer& next_;
  uint64_t size_ = 0;
};

// Writes to a writer and into a running hash.
class Tee : public Writer {
 public:
  Tee(Writer& out, Sha256& hash) : out_(out), hash_(hash) {}
  Status write(const void* p, size_t n) override {
    hash_.update(p, n);
    return out_.write(p, n);
  }

 private:
  Writer& out_;
  Sha256& hash_;
};

void frame_head(std::string& out, char kind, uint64_t len) {
  ByteWriter w(out);
  w.u8(static_cast<uint8_t>(kind));
  w.varint(len);
}

}  // namespace

struct Builder::Impl {
  BuildOptions opt;
  PartSink sink;
  BuildStats* stats = nullptr;
  std::function<void(const std::string&)>* warning = nullptr;
  std::function<void(const BuildProgress&)>* progress = nullptr;
  BuildProgress where;
  void tell() {
    if (progress != nullptr && *progress)
      (*progress)(where);
  }

  // Spools of the current part.
  TempFile zdata, rdata, structural, datacmds, copynew;
  struct Item {
    uint64_t key;       // group_key(), for data.zst items
    uint64_t cmd_off;   // the command record in `datacmds`
    uint64_t data_off;  // the data in `zdata` or `rdata`
    uint64_t data_len;
    uint32_t cmd_len;
    bool zstd;
  };
  std::vector<Item> items;
  uint64_t part = 1;
  uint64_t part_commands = 0;
  uint64_t part_plain = 0;  // data + command bytes so far
  uint64_t part_content = 0;

  // The entry whose data is arriving.
  bool receiving = false;
  delta::Entry cur;
  bool cur_hash_known = true;
  bool cur_zstd = false;
  uint64_t cur_left = 0;
  uint64_t cur_off = 0;
  Sha256 cur_hash;

  Impl(BuildOptions o, PartSink s, TempFile z, TempFile r, TempFile st, TempFile dc, TempFile cn)
      : opt(std::move(o)),
        sink(std::move(s)),
        zdata(std::move(z)),
        rdata(std::move(r)),
        structural(std::move(st)),
        datacmds(std::move(dc)),
        copynew(std::move(cn)) {}

  uint64_t budget() const {
    uint64_t m = opt.max_part;
    uint64_t margin = (m >> 10) + 4096;
    return m > margin ? m - margin : 1;
  }

  Status put_command(TempFile& spool, const Command& c) {
    std::string rec;
    encode(c, rec);
    part_plain += rec.size();
    part_commands++;
    return spool.write(rec);
  }

  static Command from_entry(const delta::Entry& e) {
    Command c;
    c.path = e.path;
    c.mode = e.mode;
    c.mtime_ns = e.mtime_ns;
    c.size = e.size;
    c.hash = result_check(e.hash);
    switch (e.op) {
      case delta::Op::Mkdir: c.op = Op::Mkdir; break;
      case delta::Op::File: c.op = Op::Put; break;
      case delta::Op::Patch:
        c.op = Op::Patch;
        c.source = e.source == e.path ? std::string() : e.source;
        std::memcpy(c.basis_check.data(), e.source_hash.data(), kBasisCheck);
        c.format = e.format;
        break;
      case delta::Op::Copy:
        c.op = e.source_new ? Op::CopyNew : Op::Copy;
        c.source = e.source;
        break;
      case delta::Op::Symlink:
        c.op = Op::Symlink;
        c.target = e.target;
        break;
      case delta::Op::Delete: c.op = e.old_type == fs::Type::Directory ? Op::Rmdir : Op::Remove; break;
      case delta::Op::Chmod: c.op = Op::Chmod; break;
    }
    c.length = e.data_size;
    return c;
  }

  Status add(const delta::Entry& e, bool hash_known) {
    if (receiving)
      return Error("assignment builder: entry before the previous entry's data ended");
    CM_TRY(delta::validate(e));
    uint64_t need = e.has_data() ? e.data_size : 0;
    if (part_commands > 0 && part_plain + need + 512 > budget())
      CM_TRY(write_part(false));
    // An entry larger than a part gets a part of its own, larger than asked.
    if (need + 512 > budget() && warning != nullptr && *warning)
      (*warning)(quote_path(e.path) + " (" + human_bytes(need) +
                 ") alone is larger than the part size; part " + std::to_string(part) + " will be larger");
    Command c = from_entry(e);
    if (e.op == delta::Op::File || e.op == delta::Op::Patch || e.op == delta::Op::Copy)
      part_content += e.size;
    if (!e.has_data())
      return put_command(e.op == delta::Op::Copy && e.source_new ? copynew : structural, c);
    cur = e;
    cur_hash_known = hash_known;
    // By the policy; zstd deltas too: entropy-coded already, but the same
    // edit to the several builds of one file gives the same delta, which
    // the solid stream keeps once (bench/RESULTS.md).
    cur_zstd = opt.policy.compress(e.path);
    cur_left = e.data_size;
    cur_off = cur_zstd ? zdata.size() : rdata.size();
    cur_hash.finish();  // reset
    receiving = true;
    if (cur_left == 0)
      return end_entry();
    return {};
  }

  Status data(const void* p, size_t n) {
    if (!receiving || n > cur_left)
      return Error("assignment builder: more data than the entry declared");
    CM_TRY((cur_zstd ? zdata : rdata).write(p, n));
    if (cur.op == delta::Op::File)
      cur_hash.update(p, n);
    cur_left -= n;
    part_plain += n;
    where.bytes += n;
    tell();
    if (cur_left == 0)
      return end_entry();
    return {};
  }

  Status end_entry() {
    receiving = false;
    Command c = from_entry(cur);
    if (cur.op == delta::Op::File) {
      Digest got = cur_hash.finish();
      if (cur_hash_known && got != cur.hash)
        return Error("the data of " + quote_path(cur.path) + " does not match its SHA-256 (corrupt input)",
                     kExitBadInput);
      c.hash = result_check(got);
    }
    c.from = cur_zstd ? Member::DataZstd : Member::DataRaw;
    std::string rec;
    encode(c, rec);
    items.push_back(Item{cur_zstd ? group_key(cur.path) : 0, datacmds.size(), cur_off, cur.data_size,
                         static_cast<uint32_t>(rec.size()), cur_zstd});
    part_plain += rec.size();
    part_commands++;
    (cur_zstd ? stats->compressed_items : stats->stored_items)++;
    return datacmds.write(rec);
  }

  // Writes one member's stored bytes: the plain file as is, or sealed.
  Status emit_member(TempFile& src, Member m, const Header& h, Writer& out) {
    if (!h.encrypted)
      return src.copy_to(out, 0, src.size());
    std::string aad(kMagic, sizeof kMagic);
    ByteWriter w(aad);
    w.varint(h.id);
    w.varint(h.part);
    w.u8(static_cast<uint8_t>(member_kind(m)));
    crypto::SealWriter seal(*opt.encrypt, h.nonce, static_cast<uint8_t>(m), aad, out);
    CM_TRY(src.copy_to(seal, 0, src.size()));
    return seal.finish();
  }

  Status write_part(bool last) {
    if (receiving)
      return Error("assignment builder: part ends in the middle of an entry's data");
    where.writing_part = part;
    tell();
    where.writing_part = 0;
    Header h = opt.header;
    h.part = part;
    h.last_part = last;
    h.encrypted = opt.encrypt != nullptr;
    if (h.encrypted) {
      h.key_id = opt.encrypt->id();
      CM_TRY(crypto::random_bytes(h.nonce.data(), h.nonce.size()));
    }
    int level = opt.level == kAutoLevel ? auto_level(zdata.size()) : opt.level;

    // The solid stream: compressible data, similar files together.
    std::stable_sort(items.begin(), items.end(), [](const Item& a, const Item& b) {
      if (a.zstd != b.zstd)
        return a.zstd;  // data.zst commands first, then data
      return a.zstd && a.key < b.key;
    });
    CM_ASSIGN(TempFile zout, TempFile::create());
    uint64_t zplain = 0;
    if (zdata.size() > 0) {
      ZstdWriter z(zout, level, zdata.size());
      for (const Item& it : items) {
        if (!it.zstd)
          continue;
        CM_TRY(zdata.copy_to(z, it.data_off, it.data_len));
        zplain += it.data_len;
      }
      CM_TRY(z.finish());
      CM_TRY(zout.flush());
    }

    // The command list, in the order an applier runs it.
    CM_ASSIGN(TempFile cplain, TempFile::create());
    std::string rec;
    auto unpack = [&](Member m, bool zstd) -> Status {
      Command u;
      u.op = Op::Unpack;
      u.from = m;
      u.unpack = static_cast<uint8_t>((h.encrypted ? 1 : 0) | (zstd ? 2 : 0));
      rec.clear();
      encode(u, rec);
      part_commands++;
      return cplain.write(rec);
    };
    if (zdata.size() > 0)
      CM_TRY(unpack(Member::DataZstd, true));
    if (rdata.size() > 0)
      CM_TRY(unpack(Member::DataRaw, false));
    CM_TRY(structural.copy_to(cplain, 0, structural.size()));
    for (const Item& it : items)
      CM_TRY(datacmds.copy_to(cplain, it.cmd_off, it.cmd_len));
    CM_TRY(copynew.copy_to(cplain, 0, copynew.size()));
    CM_TRY(cplain.flush());
    CM_ASSIGN(TempFile cz, TempFile::create());
    {
      ZstdWriter z(cz, kCommandsLevel, cplain.size());
      CM_TRY(cplain.copy_to(z, 0, cplain.size()));
      CM_TRY(z.finish());
      CM_TRY(cz.flush());
    }

    h.commands = part_commands;
    h.data_bytes = zdata.size() + rdata.size();
    h.content_bytes = part_content;
    struct Src {
      Member m;
      TempFile* file;
      uint64_t plain;
      bool zstd;
    };
    Src srcs[] = {{Member::Commands, &cz, cplain.size(), true},
                  {Member::DataZstd, &zout, zplain, true},
                  {Member::DataRaw, &rdata, rdata.size(), false}};
    for (Src& s : srcs) {
      MemberInfo& mi = h.member(s.m);
      mi.present = s.m == Member::Commands || s.file->size() > 0;
      if (!mi.present)
        continue;
      mi.plain_size = s.plain;
      mi.zstd = s.zstd;
      HashWriter hw;
      CM_TRY(s.file->flush());
      CM_TRY(emit_member(*s.file, s.m, h, hw));
      mi.stored_size = hw.size();
      mi.hash = hw.digest();
    }
    std::string head = encode(h);

    CM_ASSIGN(Writer * out, sink.open(part));
    CountWriter counted(*out);
    std::string pre(kMagic, sizeof kMagic);
    ByteWriter(pre).varint(kVersion);
    std::string hframe;
    frame_head(hframe, 'H', head.size());
    hframe += head;
    Sha256 trailer;
    trailer.update(hframe);
    pre += hframe;
    if (opt.sign != nullptr) {
      CM_ASSIGN(std::string sig, opt.sign->sign(head));
      std::string payload(reinterpret_cast<const char*>(opt.sign->id().data()), opt.sign->id().size());
      payload += sig;
      frame_head(pre, 'S', payload.size());
      pre += payload;
    }
    CM_TRY(counted.write(pre));
    for (Src& s : srcs) {
      const MemberInfo& mi = h.member(s.m);
      if (!mi.present)
        continue;
      std::string fh;
      frame_head(fh, member_kind(s.m), mi.stored_size);
      CM_TRY(counted.write(fh));
      if (s.m == Member::Commands) {
        // The trailer covers the header and commands frames, as stored.
        trailer.update(fh);
        Tee both(counted, trailer);
        CM_TRY(emit_member(*s.file, s.m, h, both));
      } else {
        CM_TRY(emit_member(*s.file, s.m, h, counted));
      }
    }
    std::string tframe;
    frame_head(tframe, 'T', 32);
    Digest td = trailer.finish();
    tframe.append(reinterpret_cast<const char*>(td.data()), td.size());
    CM_TRY(counted.write(tframe));
    CM_TRY(out->flush());
    CM_TRY(sink.close(part, last));

    stats->parts++;
    stats->commands += part_commands;
    stats->data_plain += zdata.size() + rdata.size();
    stats->data_stored += h.member(Member::DataZstd).stored_size + h.member(Member::DataRaw).stored_size;
    stats->pack_bytes += counted.size();
    part++;
    part_commands = 0;
    part_plain = 0;
    part_content = 0;
    items.clear();
    for (TempFile* t : {&zdata, &rdata, &structural, &datacmds, &copynew})
      CM_TRY(t->clear());
    return {};
  }
};

Builder::Builder(BuildOptions opt, PartSink sink) : impl_(nullptr) {
  opt_pending_ = std::make_unique<std::pair<BuildOptions, PartSink>>(std::move(opt), std::move(sink));
}

Builder::~Builder() = default;

Status Builder::begin() {
  if (impl_ != nullptr)
    return Error("assignment builder: begun twice");
  CM_ASSIGN(TempFile z, TempFile::create());
  CM_ASSIGN(TempFile r, TempFile::create());
  CM_ASSIGN(TempFile st, TempFile::create());
  CM_ASSIGN(TempFile dc, TempFile::create());
  CM_ASSIGN(TempFile cn, TempFile::create());
  impl_ = std::make_unique<Impl>(std::move(opt_pending_->first), std::move(opt_pending_->second),
                                 std::move(z), std::move(r), std::move(st), std::move(dc), std::move(cn));
  opt_pending_.reset();
  impl_->stats = &stats_;
  impl_->warning = &warning;
  impl_->progress = &progress;
  return {};
}

Status Builder::add(const delta::Entry& e, bool hash_known) {
  if (impl_ == nullptr)
    return Error("assignment builder: add before begin");
  CM_TRY(impl_->add(e, hash_known));
  impl_->where.entries++;
  impl_->tell();
  return {};
}

Status Builder::data(const void* p, size_t n) {
  if (impl_ == nullptr)
    return Error("assignment builder: data before begin");
  return impl_->data(p, n);
}

Status Builder::finish() {
  if (impl_ == nullptr)
    return Error("assignment builder: finish before begin");
  return impl_->write_part(true);
}

}  // namespace cm::assign
