#include "delta/zpatch.hpp"

#include <zstd.h>
#include <zstd_errors.h>

#include <memory>
#include <vector>

namespace cm::delta {

namespace {

struct CCtxFree {
  void operator()(ZSTD_CCtx* c) const { ZSTD_freeCCtx(c); }
};
struct DCtxFree {
  void operator()(ZSTD_DCtx* d) const { ZSTD_freeDCtx(d); }
};

// The window must cover the basis and the new file.
int window_log_for(uint64_t n) {
  int log = 10;
  while (log < 27 && (uint64_t{1} << log) < n)
    log++;
  return log;
}

constexpr int kMaxWindowLog = 27;

}  // namespace

Result<bool> zstd_delta(std::string_view basis, std::string_view next, Writer& out, uint64_t limit,
                        int level) {
  std::unique_ptr<ZSTD_CCtx, CCtxFree> cctx(ZSTD_createCCtx());
  if (!cctx)
    return Error("zstd: out of memory");
  int wlog = window_log_for(basis.size() + next.size());
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_compressionLevel, level);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_windowLog, wlog);
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_checksumFlag, 0);  // the entry carries a SHA-256
  ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_contentSizeFlag, 1);
  if (basis.size() > (1u << 20))  // as zstd --patch-from does for large bases
    ZSTD_CCtx_setParameter(cctx.get(), ZSTD_c_enableLongDistanceMatching, 1);
  size_t r = ZSTD_CCtx_refPrefix(cctx.get(), basis.data(), basis.size());
  if (ZSTD_isError(r))
    return Error(std::string("zstd: ") + ZSTD_getErrorName(r));
  size_t bound = ZSTD_compressBound(next.size());
  size_t cap = static_cast<size_t>(std::min<uint64_t>(bound, limit));
  std::vector<char> buf(cap + 1);
  size_t n = ZSTD_compress2(cctx.get(), buf.data(), buf.size(), next.data(), next.size());
  if (ZSTD_isError(n)) {
    if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
      return false;
    return Error(std::string("zstd: ") + ZSTD_getErrorName(n));
  }
  if (n > limit)
    return false;
  CM_TRY(out.write(buf.data(), n));
  return true;
}

Result<size_t> zstd_patch(std::string_view basis, std::string_view delta, std::span<char> out,
                          const std::string& name) {
  if (delta.empty())
    return Error("'" + name + "': empty zstd delta", kExitBadInput);
  // Exactly one frame: what zstd_delta makes.
  size_t frame = ZSTD_findFrameCompressedSize(delta.data(), delta.size());
  if (ZSTD_isError(frame)) {
    if (ZSTD_getErrorCode(frame) == ZSTD_error_srcSize_wrong)
      return Error("'" + name + "': truncated zstd delta", kExitBadInput);
    return Error("'" + name + "': bad zstd delta (" + ZSTD_getErrorName(frame) + ")", kExitBadInput);
  }
  if (frame != delta.size())
    return Error("'" + name + "': trailing bytes after the zstd delta", kExitBadInput);
  // One decoder per thread, kept from one patch to the next.
  thread_local std::unique_ptr<ZSTD_DCtx, DCtxFree> dctx(ZSTD_createDCtx());
  if (!dctx)
    return Error("zstd: out of memory");
  ZSTD_DCtx_reset(dctx.get(), ZSTD_reset_session_and_parameters);
  ZSTD_DCtx_setParameter(dctx.get(), ZSTD_d_windowLogMax, kMaxWindowLog);
  size_t r = ZSTD_DCtx_refPrefix(dctx.get(), basis.data(), basis.size());
  if (ZSTD_isError(r))
    return Error(std::string("zstd: ") + ZSTD_getErrorName(r));
  size_t n = ZSTD_decompressDCtx(dctx.get(), out.data(), out.size(), delta.data(), delta.size());
  if (ZSTD_isError(n)) {
    if (ZSTD_getErrorCode(n) == ZSTD_error_dstSize_tooSmall)
      return Error("'" + name + "': zstd delta produces more than expected", kExitBadInput);
    return Error("'" + name + "': bad zstd delta (" + ZSTD_getErrorName(n) + ")", kExitBadInput);
  }
  return n;
}

}  // namespace cm::delta
