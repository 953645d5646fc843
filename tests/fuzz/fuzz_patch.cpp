// cm-apply patches files with deltas that arrive over the network: a
// malformed librsync or zstd delta must give an error, never a crash. Also
// checks that our delta makers' output always patches back exactly.
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <string>

#include "delta/rdiff.hpp"
#include "delta/zpatch.hpp"

namespace {
class StringFile : public cm::fs::File {
 public:
  explicit StringFile(std::string d) : d_(std::move(d)) {}
  cm::Result<size_t> read(void*, size_t) override { return size_t{0}; }
  cm::Result<size_t> pread(void* buf, size_t n, uint64_t off) override {
    if (off >= d_.size())
      return size_t{0};
    size_t k = std::min<size_t>(n, d_.size() - off);
    std::memcpy(buf, d_.data() + off, k);
    return k;
  }
  cm::Result<cm::fs::Stat> stat() override { return cm::fs::Stat{}; }
  const std::string& name() const override { return name_; }

 private:
  std::string d_;
  std::string name_ = "basis";
};
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::string input(reinterpret_cast<const char*>(data), size);
  std::string basis = "the basis file, with some content to copy from. 0123456789";
  {
    StringFile bf(basis);
    cm::StringReader delta(input);
    cm::StringWriter out;
    (void)cm::delta::apply_delta(bf, delta, out);
    static std::string zout(1 << 20, '\0');  // once: a fresh 1 MiB per input is slow
    (void)cm::delta::zstd_patch(basis, input, zout, "delta");
  }
  {
    // Round trip: input as a new version of the basis.
    cm::StringReader br(basis), nr(input);
    cm::StringWriter delta;
    auto r = cm::delta::positional_delta(br, nr, delta, UINT64_MAX);
    if (!r.ok() || !r->fits)
      std::abort();
    StringFile bf(basis);
    cm::StringReader dr(delta.data());
    cm::StringWriter out;
    if (!cm::delta::apply_delta(bf, dr, out).ok() || out.data() != input)
      std::abort();
  }
  {
    cm::StringWriter delta;
    auto fits = cm::delta::zstd_delta(basis, input, delta, UINT64_MAX, 3);
    if (!fits.ok() || !*fits)
      std::abort();
    // One byte of room more than the input: making more is an error.
    std::string out(input.size() + 1, '\0');
    auto n = cm::delta::zstd_patch(basis, delta.data(), out, "delta");
    if (!n.ok() || out.substr(0, *n) != input)
      std::abort();
  }
  return 0;
}
