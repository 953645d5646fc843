#include "delta/rdiff.hpp"

#include <fcntl.h>
#include <librsync.h>
#include <unistd.h>

#include <cerrno>

#include <cstdlib>
#include <cstring>
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
// kBaseBlock is the measured sweet spot; kMaxBlocks caps memory for huge
// files (a 1 GiB basis gets 4 KiB blocks: a few changed bytes still cost
// only a few KiB). See bench/RESULTS.md for the block-size sweep.
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
Result<rs_result> crank(rs_job_t* job, const char* in, size_t n, bool eof, std::vector<char>& obuf,
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
  std::vector<char> in(kBuf), obuf(kBuf);
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
