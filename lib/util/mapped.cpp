#include "util/mapped.hpp"

#include <signal.h>
#include <sys/mman.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdint>

#include "util/io.hpp"

namespace cm {

namespace {

// The live mappings a SIGBUS may be answered in. The handler reads them
// with lock-free atomics only; a slot is claimed with a compare-exchange.
struct Slot {
  std::atomic<bool> used{false};
  std::atomic<uintptr_t> lo{0}, hi{0};
  std::atomic<bool> cut{false};
};
static_assert(std::atomic<uintptr_t>::is_always_lock_free);
constexpr int kSlots = 16;
Slot g_slots[kSlots];
struct sigaction g_previous;
uintptr_t g_page = 4096;

// The handling there was before, for a SIGBUS that was sent, not a fault
// (kill(1), sigqueue(3)): run as if this handler had never been installed.
void forward(int sig, siginfo_t* info, void* ctx) {
  if ((g_previous.sa_flags & SA_SIGINFO) != 0) {
    if (g_previous.sa_sigaction != nullptr)
      g_previous.sa_sigaction(sig, info, ctx);
    return;
  }
  if (g_previous.sa_handler == SIG_IGN)
    return;
  if (g_previous.sa_handler == SIG_DFL) {
    // Delivered again, by default, once this handler returns: the end.
    ::sigaction(SIGBUS, &g_previous, nullptr);
    ::raise(SIGBUS);
    return;
  }
  g_previous.sa_handler(sig);
}

void on_sigbus(int sig, siginfo_t* info, void* ctx) {
  if (info->si_code <= 0) {
    forward(sig, info, ctx);
    return;
  }
  auto at = reinterpret_cast<uintptr_t>(info->si_addr);
  for (Slot& s : g_slots) {
    uintptr_t lo = s.lo.load(std::memory_order_acquire);
    if (lo == 0 || at < lo || at >= s.hi.load(std::memory_order_acquire))
      continue;
    // A page of zeros where the file's page was: the read goes on, and
    // the owner learns of it from cut().
    void* page = reinterpret_cast<void*>(at & ~(g_page - 1));
    if (::mmap(page, g_page, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0) != MAP_FAILED) {
      s.cut.store(true, std::memory_order_release);
      return;
    }
    break;
  }
  // Not one of ours: the previous handling, on the same fault again.
  ::sigaction(SIGBUS, &g_previous, nullptr);
}

bool install() {
  long page = ::sysconf(_SC_PAGESIZE);
  if (page > 0)
    g_page = static_cast<uintptr_t>(page);
  struct sigaction sa {};
  sa.sa_sigaction = on_sigbus;
  sa.sa_flags = SA_SIGINFO;
  sigemptyset(&sa.sa_mask);
  return ::sigaction(SIGBUS, &sa, &g_previous) == 0;
}

}  // namespace

Result<Mapped> Mapped::map(int fd, size_t size, const std::string& name) {
  if (size == 0)
    return Error("'" + name + "': an empty file is not mapped");
  static const bool installed = install();
  if (!installed)
    return Error("cannot guard a mapping of '" + name + "' (sigaction failed)");
  int slot = -1;
  for (int i = 0; i < kSlots && slot < 0; i++) {
    bool free = false;
    if (g_slots[i].used.compare_exchange_strong(free, true))
      slot = i;
  }
  if (slot < 0)
    return Error("cannot guard a mapping of '" + name + "': " + std::to_string(kSlots) + " already are");
  size_t len = (size + g_page - 1) & ~(g_page - 1);
  void* p = ::mmap(nullptr, len, PROT_READ, MAP_PRIVATE | MAP_POPULATE, fd, 0);
  if (p == MAP_FAILED) {
    int err = errno;
    g_slots[slot].used.store(false);
    return sys_error("cannot map", name, err);
  }
  Slot& s = g_slots[slot];
  auto lo = reinterpret_cast<uintptr_t>(p);
  s.cut.store(false);
  s.hi.store(lo + len, std::memory_order_release);
  s.lo.store(lo, std::memory_order_release);
  return Mapped(static_cast<const char*>(p), size, len, slot);
}

Mapped::Mapped(Mapped&& o) noexcept : data_(o.data_), size_(o.size_), len_(o.len_), slot_(o.slot_) {
  o.slot_ = -1;
}

Mapped::~Mapped() {
  if (slot_ < 0)
    return;
  Slot& s = g_slots[slot_];
  s.lo.store(0, std::memory_order_release);
  s.hi.store(0, std::memory_order_release);
  ::munmap(const_cast<char*>(data_), len_);
  s.used.store(false, std::memory_order_release);
}

bool Mapped::cut() const {
  return slot_ >= 0 && g_slots[slot_].cut.load(std::memory_order_acquire);
}

}  // namespace cm
