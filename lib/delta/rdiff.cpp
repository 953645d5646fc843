#include "delta/rdiff.hpp"

#include <fcntl.h>
#include <librsync.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <cstring>
#include <span>
#include <vector>

namespace cm::delta {

// Block length. librsync recommends sqrt(size) (rsync uses at least 700),
// which keeps the signature small for sending over a network. Ours never
// leaves the process, so only two things limit how small blocks can be:
// CPU (more weak-sum lookups, more strong sums to compute) and memory
// (~40 bytes a block in librsync's table). Smaller blocks give much smaller
// deltas for the scattered small edits of a rebuilt site (a changed date, a
// renamed asset hash), because every change costs about one block of
// literal data.
//
// kBaseBlock is the measured sweet spot: on the npm corpus of bench/delta.sh
// 64-byte blocks gave the smallest deltas (75.8 KB; 32 -> 102 KB, 128 ->
// 98 KB, 1024 -> 332 KB, 16 -> 379 KB as per-block COPY commands dominate)
// at 0.12 s against 0.10 s for 1024 (bench/RESULTS.md). kMaxBlocks caps
// memory for huge files (a 1 GiB basis gets 4 KiB blocks: a few changed
// bytes still cost only a few KiB). Files up to 16 MiB now use zstd
// deltas (zpatch.hpp), so librsync serves the large ones.
namespace {
constexpr size_t kBaseBlock = 64;
}

size_t choose_block_len(uint64_t size) {
  size_t block = kBaseBlock;
  while (size / block > kMaxBlocks)
    block *= 2;
  return block;
}

Signature& Signature::operator=(Signature&& o) noexcept {
  if (this != &o) {
    if (sig_ != nullptr)
      rs_free_sumset(sig_);
    sig_ = o.sig_;
    o.sig_ = nullptr;
  }
  return *this;
}

Signature::~Signature() {
  if (sig_ != nullptr)
    rs_free_sumset(sig_);
}

namespace {

constexpr size_t kBuf = 256 * 1024;

struct Job {
  rs_job_t* job;
  explicit Job(rs_job_t* j) : job(j) {}
  ~Job() {
    if (job != nullptr)
      rs_job_free(job);
  }
  Job(const Job&) = delete;
  Job& operator=(const Job&) = delete;
};

// librsync logs its errors on stderr; ours carry them instead.
void quiet_trace(rs_loglevel, char const*) {}
const bool kQuiet = [] {
  rs_trace_to(quiet_trace);
  return true;
}();

Error rs_error(const char* what, rs_result r) {
  (void)kQuiet;
  return Error(std::string(what) + ": " + rs_strerror(r), kExitFailure);
}

// Runs `job` over one chunk of input (the last one when eof), handing every
// output byte to sink. Returns RS_DONE when the job finished, RS_BLOCKED
// when it ate the chunk and wants more.
template <class Sink>
Result<rs_result> crank(rs_job_t* job, const char* in, size_t n, bool eof, std::span<char> obuf,
                        Sink&& sink) {
  rs_buffers_t b;
  std::memset(&b, 0, sizeof b);
  b.next_in = const_cast<char*>(in);
  b.avail_in = n;
  b.eof_in = eof ? 1 : 0;
  int stalls = 0;
  for (;;) {
    b.next_out = obuf.data();
    b.avail_out = obuf.size();
    size_t before = b.avail_in;
    rs_result r = rs_job_iter(job, &b);
    if (r != RS_DONE && r != RS_BLOCKED)
      return rs_error("librsync", r);
    size_t produced = obuf.size() - b.avail_out;
    if (produced > 0)
      CM_TRY(sink(obuf.data(), produced));
    if (r == RS_DONE)
      return r;
    if (!eof && b.avail_in == 0 && produced < obuf.size())
      return r;
    if (produced == 0 && b.avail_in == before) {
      if (++stalls > 100)
        return Error("librsync made no progress", kExitFailure);
    } else {
      stalls = 0;
    }
  }
}

}  // namespace

Result<Signature> make_signature(Reader& basis, size_t block_len, Digest* hash, uint64_t* size) {
  Job sig(rs_sig_begin(block_len, RS_MAX_STRONG_SUM_LENGTH, RS_RK_BLAKE2_SIG_MAGIC));
  rs_signature_t* loaded = nullptr;
  Job load(rs_loadsig_begin(&loaded));
  Signature out;
  std::vector<char> in(kBuf), mid(kBuf), sink_buf(64);
  Sha256 h;
  uint64_t total = 0;
  auto into_loader = [&](const char* p, size_t n) -> Status {
    auto r = crank(load.job, p, n, false, sink_buf, [](const char*, size_t) { return Status(); });
    if (!r.ok())
      return std::move(r).error();
    return {};
  };
  bool eof = false;
  while (!eof) {
    CM_ASSIGN(size_t got, basis.read(in.data(), in.size()));
    eof = got == 0;
    h.update(in.data(), got);
    total += got;
    CM_TRY(crank(sig.job, in.data(), got, eof, mid, into_loader));
  }
  auto r = crank(load.job, nullptr, 0, true, sink_buf, [](const char*, size_t) { return Status(); });
  if (!r.ok()) {
    if (loaded != nullptr)
      rs_free_sumset(loaded);
    return std::move(r).error();
  }
  out.sig_ = loaded;
  rs_result br = rs_build_hash_table(loaded);
  if (br != RS_DONE)
    return rs_error("librsync: cannot index a signature", br);
  if (hash != nullptr)
    *hash = h.finish();
  if (size != nullptr)
    *size = total;
  return out;
}

Result<bool> make_delta(const Signature& sig, Reader& next, Writer& out, uint64_t limit, Digest* hash,
                        uint64_t* size) {
  Job job(rs_delta_begin(sig.get()));
  std::vector<char> in(kBuf), obuf(kBuf);
  Sha256 h;
  uint64_t total = 0, produced = 0;
  bool over = false;
  auto sink = [&](const char* p, size_t n) -> Status {
    produced += n;
    if (produced > limit) {
      over = true;
      return Error("delta over limit");
    }
    return out.write(p, n);
  };
  bool eof = false;
  while (!eof) {
    CM_ASSIGN(size_t got, next.read(in.data(), in.size()));
    eof = got == 0;
    h.update(in.data(), got);
    total += got;
    auto r = crank(job.job, in.data(), got, eof, obuf, sink);
    if (!r.ok()) {
      if (over)
        return false;
      return std::move(r).error();
    }
  }
  if (hash != nullptr)
    *hash = h.finish();
  if (size != nullptr)
    *size = total;
  return true;
}

namespace {
struct PatchSource {
  fs::File* file;
  Error err;
  bool failed = false;
};

rs_result copy_cb(void* opaque, rs_long_t pos, size_t* len, void** buf) {
  auto* src = static_cast<PatchSource*>(opaque);
  auto r = src->file->pread(*buf, *len, static_cast<uint64_t>(pos));
  if (!r.ok()) {
    src->err = std::move(r).error();
    src->failed = true;
    return RS_IO_ERROR;
  }
  if (*r == 0)
    return RS_INPUT_ENDED;
  *len = *r;
  return RS_DONE;
}
}  // namespace

Status apply_delta(fs::File& basis, Reader& delta, Writer& out) {
  PatchSource src{&basis, Error(), false};
  Job job(rs_patch_begin(copy_cb, &src));
  // Kept per thread and never zero-filled: two fresh zeroed 256 KiB vectors
  // per patched file were a sixth of a publish's page faults.
  thread_local Buffer in_buf(kBuf), out_buf(kBuf);
  std::span<char> in(in_buf.data(), kBuf), obuf(out_buf.data(), kBuf);
  auto sink = [&](const char* p, size_t n) { return out.write(p, n); };
  bool eof = false;
  rs_result last = RS_BLOCKED;
  while (!eof) {
    CM_ASSIGN(size_t got, delta.read(in.data(), in.size()));
    eof = got == 0;
    auto r = crank(job.job, in.data(), got, eof, obuf, sink);
    if (!r.ok()) {
      if (src.failed)
        return src.err;
      return Error("'" + delta.name() + "': bad delta (" + r.error().message + ")", kExitBadInput);
    }
    last = *r;
  }
  if (last != RS_DONE)
    return Error("'" + delta.name() + "': truncated delta", kExitBadInput);
  return {};
}

Status SpillBuffer::write(const void* p, size_t n) {
  size_ += n;
  if (!file_.valid() && mem_.size() + n <= mem_limit_) {
    mem_.append(static_cast<const char*>(p), n);
    return {};
  }
  if (!file_.valid()) {
    const char* dir = std::getenv("TMPDIR");
    std::string tmpl = std::string(dir != nullptr && *dir ? dir : "/tmp") + "/cm-spill.XXXXXX";
    int fd = ::mkostemp(tmpl.data(), O_CLOEXEC);
    if (fd < 0)
      return sys_error("cannot create a temporary file in", tmpl.substr(0, tmpl.rfind('/')), errno);
    ::unlink(tmpl.c_str());
    file_.reset(fd);
  }
  FdWriter w(file_.get(), "temporary file");
  CM_TRY(w.write(p, n));
  return w.flush();
}

Status SpillBuffer::replay(Writer& out) {
  CM_TRY(out.write(mem_.data(), mem_.size()));
  if (!file_.valid())
    return {};
  if (::lseek(file_.get(), 0, SEEK_SET) < 0)
    return sys_error("cannot seek", "temporary file", errno);
  FdReader r(file_.get(), "temporary file");
  std::vector<char> buf(kBuf);
  for (;;) {
    CM_ASSIGN(size_t got, r.read(buf.data(), buf.size()));
    if (got == 0)
      return {};
    CM_TRY(out.write(buf.data(), got));
  }
}

void SpillBuffer::clear() {
  mem_.clear();
  file_.reset();
  size_ = 0;
}

}  // namespace cm::delta

namespace cm::delta {

namespace {
void put_be(std::string& s, uint64_t v, int bytes) {
  for (int i = bytes - 1; i >= 0; i--)
    s.push_back(static_cast<char>((v >> (8 * i)) & 0xFF));
}
// librsync's integer widths: 1, 2, 4 or 8 bytes, as index 0..3.
int width_index(uint64_t v) {
  if (v <= 0xFF)
    return 0;
  if (v <= 0xFFFF)
    return 1;
  if (v <= 0xFFFFFFFFu)
    return 2;
  return 3;
}
constexpr int kWidths[4] = {1, 2, 4, 8};
}  // namespace

Status DeltaEncoder::put(const std::string& s) {
  size_ += s.size();
  return out_.write(s);
}

Status DeltaEncoder::header() {
  std::string s;
  put_be(s, RS_DELTA_MAGIC, 4);
  return put(s);
}

Status DeltaEncoder::literal(const char* p, size_t n) {
  while (n > 0) {
    size_t k = std::min<size_t>(n, 1 << 20);
    std::string s;
    if (k <= 64) {
      s.push_back(static_cast<char>(k));  // RS_OP_LITERAL_1 .. _64
    } else {
      int w = width_index(k);
      s.push_back(static_cast<char>(0x41 + w));  // RS_OP_LITERAL_N1 ..
      put_be(s, k, kWidths[w]);
    }
    CM_TRY(put(s));
    size_ += k;
    CM_TRY(out_.write(p, k));
    p += k;
    n -= k;
  }
  return {};
}

Status DeltaEncoder::copy(uint64_t pos, uint64_t len) {
  if (len == 0)
    return {};
  int wp = width_index(pos), wl = width_index(len);
  std::string s;
  s.push_back(static_cast<char>(0x45 + 4 * wp + wl));  // RS_OP_COPY_Nx_Ny
  put_be(s, pos, kWidths[wp]);
  put_be(s, len, kWidths[wl]);
  return put(s);
}

Status DeltaEncoder::end() {
  return put(std::string(1, '\0'));
}

namespace {

// Reads up to n bytes, fewer only at the end of input.
Result<size_t> read_full(Reader& r, char* buf, size_t n) {
  size_t have = 0;
  while (have < n) {
    CM_ASSIGN(size_t got, r.read(buf + have, n - have));
    if (got == 0)
      break;
    have += got;
  }
  return have;
}

class PositionalDiff {
 public:
  PositionalDiff(DeltaEncoder& enc, uint64_t limit) : enc_(enc), limit_(limit) {}

  // Feeds the next stretch of both files at the same offsets; whole equal
  // pages are found with memcmp, the rest byte by byte.
  Status feed(const char* next, const char* basis, size_t n) {
    constexpr size_t kPage = 4096;
    for (size_t off = 0; off < n;) {
      size_t k = std::min(kPage, n - off);
      if (std::memcmp(next + off, basis + off, k) == 0) {
        CM_TRY(equal(next + off, k));
      } else {
        for (size_t i = 0; i < k;) {
          size_t j = i;
          bool eq = next[off + i] == basis[off + i];
          while (j < k && (next[off + j] == basis[off + j]) == eq)
            j++;
          CM_TRY(eq ? equal(next + off + i, j - i) : differ(next + off + i, j - i));
          i = j;
        }
      }
      off += k;
    }
    return {};
  }

  // Bytes of the new file beyond the basis's end.
  Status extra(const char* p, size_t n) { return differ(p, n); }

  Status finish() {
    // A pending equal run is shorter than kMinCopy: it ends the literal.
    lit_.append(eq_bytes_);
    eq_run_ = 0;
    eq_bytes_.clear();
    CM_TRY(flush_literal());
    CM_TRY(flush_copy());
    return enc_.end();
  }

  bool over() const { return over_; }
  uint64_t scanned() const { return pos_; }

 private:
  Status equal(const char* p, size_t n) {
    // Equal bytes either extend the copy, or wait to see whether the run
    // gets long enough to be worth a COPY after a literal.
    if (lit_.empty() && eq_run_ == 0) {
      copy_len_ += n;
    } else {
      size_t room = eq_run_ < kMinCopy ? kMinCopy - eq_run_ : 0;
      eq_bytes_.append(p, std::min(n, room));
      eq_run_ += n;
      if (eq_run_ >= kMinCopy) {
        CM_TRY(flush_literal());
        copy_start_ = pos_ + n - eq_run_;
        copy_len_ = eq_run_;
        eq_run_ = 0;
        eq_bytes_.clear();
      }
    }
    pos_ += n;
    return {};
  }

  Status differ(const char* p, size_t n) {
    if (eq_run_ > 0) {  // a short equal gap: it stays in the literal
      lit_.append(eq_bytes_);
      eq_run_ = 0;
      eq_bytes_.clear();
    }
    if (copy_len_ > 0)
      CM_TRY(flush_copy());
    lit_.append(p, n);
    literal_total_ += n;
    pos_ += n;
    if (enc_.size() + lit_.size() > limit_ || (pos_ > (1u << 20) && literal_total_ > pos_ / 4))
      over_ = true;
    if (lit_.size() >= (1u << 20))
      CM_TRY(flush_literal());
    return {};
  }

  Status flush_literal() {
    if (lit_.empty())
      return {};
    CM_TRY(enc_.literal(lit_.data(), lit_.size()));
    lit_.clear();
    copy_start_ = pos_;
    return {};
  }

  Status flush_copy() {
    if (copy_len_ > 0)
      CM_TRY(enc_.copy(copy_start_, copy_len_));
    copy_start_ += copy_len_;
    copy_len_ = 0;
    return {};
  }

  DeltaEncoder& enc_;
  uint64_t limit_;
  uint64_t pos_ = 0;         // bytes of the new file seen
  uint64_t copy_start_ = 0;  // basis offset of the pending copy
  uint64_t copy_len_ = 0;
  std::string lit_;       // pending literal
  uint64_t eq_run_ = 0;   // equal bytes seen after the literal
  std::string eq_bytes_;  // the first kMinCopy of them
  uint64_t literal_total_ = 0;
  bool over_ = false;
};

}  // namespace

Result<PositionalResult> positional_delta(Reader& basis, Reader& next, Writer& out, uint64_t limit) {
  PositionalResult res;
  DeltaEncoder enc(out);
  CM_TRY(enc.header());
  PositionalDiff diff(enc, limit);
  std::vector<char> nb(kBuf), bb(kBuf);
  Sha256 hn, hb;
  bool basis_done = false;
  for (;;) {
    CM_ASSIGN(size_t n, read_full(next, nb.data(), nb.size()));
    size_t b = 0;
    if (!basis_done) {
      CM_ASSIGN(b, read_full(basis, bb.data(), bb.size()));
      basis_done = b < bb.size();
      hb.update(bb.data(), b);
      res.basis_size += b;
    }
    hn.update(nb.data(), n);
    res.next_size += n;
    size_t common = std::min(n, b);
    CM_TRY(diff.feed(nb.data(), bb.data(), common));
    if (n > common)
      CM_TRY(diff.extra(nb.data() + common, n - common));
    if (diff.over())
      return res;  // fits = false
    if (n < nb.size())
      break;
  }
  // The rest of the basis, for its hash.
  while (!basis_done) {
    CM_ASSIGN(size_t b, read_full(basis, bb.data(), bb.size()));
    basis_done = b < bb.size();
    hb.update(bb.data(), b);
    res.basis_size += b;
  }
  CM_TRY(diff.finish());
  res.fits = enc.size() <= limit;
  res.basis_hash = hb.finish();
  res.next_hash = hn.finish();
  return res;
}

}  // namespace cm::delta
