#include "mcast/daemon.hpp"

#include <dirent.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <sys/file.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstring>
#include <deque>
#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <random>
#include <system_error>
#include <thread>

#include "assign/reader.hpp"
#include "mcast/receiver.hpp"
#include "util/clock.hpp"
#include "util/proc.hpp"
#include "util/quorum.hpp"
#include "util/text.hpp"

namespace cm::mcast {

namespace {

uint64_t random64() {
  static std::mt19937_64 rng{std::random_device{}() ^ static_cast<uint64_t>(steady_ns())};
  return rng();
}

// The payload that fits one packet (IP 20, UDP 8, our header) of 1500
// bytes, or of the link when its MTU is smaller (a tunnel). Not larger by
// default: a receiver behind a hop with a smaller MTU would lose every
// frame in silence (DF set, and no 'fragmentation needed' for multicast);
// --frame-size asks for more.
uint32_t default_frame(uint64_t size, bool keyed, uint32_t mtu) {
  mtu = std::min<uint32_t>(mtu, 1500);
  return static_cast<uint32_t>(mtu - 28 - data_overhead(size, keyed));
}

Result<Fd> signal_fd() {
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  sigprocmask(SIG_BLOCK, &mask, nullptr);
  Fd fd(::signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK));
  if (!fd.valid())
    return sys_error("cannot watch signals", "signalfd", errno);
  return fd;
}

void set_buffers(int fd) {
  int size = 8 << 20;  // clamped to net.core.{r,w}mem_max
  ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &size, sizeof size);
  ::setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &size, sizeof size);
  // A receiver that does not run for a moment (a busy host) loses what
  // overflows its buffer, and every loss costs a pass: with CAP_NET_ADMIN,
  // past the system's cap (which is often 208 KiB).
  int big = 32 << 20;
  (void)::setsockopt(fd, SOL_SOCKET, SO_RCVBUFFORCE, &big, sizeof big);
}

}  // namespace

Result<std::vector<Expected>> members_from_report(const std::string& path, uint16_t port,
                                                  std::string* self_out) {
  CM_ASSIGN(auto in, open_input(path));
  CM_ASSIGN(std::string text, read_all(*in, 16 << 20));
  auto j = nlohmann::json::parse(text, nullptr, false);
  if (j.is_discarded() || !j.is_object() || !j.contains("members") || !j["members"].is_array())
    return Error("'" + path + "' is not a cm-elect cluster report", kExitBadInput);
  std::string self = j.value("id", std::string());
  if (self_out != nullptr)
    *self_out = self;
  std::vector<Expected> out;
  for (const auto& m : j["members"]) {
    // An empty id never joins (the wire refuses it): malformed, not a
    // member to wait passes for.
    if (!m.is_object() || !m.contains("id") || !m["id"].is_string() ||
        m["id"].get_ref<const std::string&>().empty())
      return Error("'" + path + "': a member without an id", kExitBadInput);
    std::string id = m["id"].get<std::string>();
    if (id == self)
      continue;  // the leader sends; it does not receive
    Expected e{id, std::nullopt};
    if (m.contains("address") && m["address"].is_string()) {
      auto a = net::parse_address(m["address"].get<std::string>());
      if (a.ok())
        e.address = net::Endpoint{*a, port};
    }
    out.push_back(e);
  }
  return out;
}

// ---- send

namespace {

// The leader's own copy: its command runs here and reports like a member.
MemberOutcome run_self(const SendOptions& opt, uint64_t assignment) {
  MemberOutcome m;
  m.id = opt.self_id;
  m.joined = m.received = m.reported = true;
  Spawn sp;
  sp.command = expand_braces(opt.self_exec, opt.file);
  sp.env = {"CM_FILE=" + opt.file, "CM_ASSIGNMENT=" + std::to_string(assignment)};
  sp.capture_stdout = true;
  auto t0 = steady_ns();
  auto ran = run_shell(sp, 8192);
  m.exit_code = ran.ok() ? exit_code_of(ran->status) : 127;
  if (ran.ok()) {
    m.output = ran->output;
    while (!m.output.empty() && m.output.back() == '\n')
      m.output.pop_back();
  }
  m.millis = static_cast<uint32_t>((steady_ns() - t0) / 1000000);
  return m;
}

// Waits until `ok()` holds, checking every 2 ms; false after `idle`
// seconds without `progress()` changing.
template <class Ok, class Progress>
bool wait_until(Ok ok, Progress progress, double idle) {
  auto last = progress();
  Nanos since = steady_ns();
  while (!ok()) {
    auto now = progress();
    if (now != last) {
      last = now;
      since = steady_ns();
    } else if (static_cast<double>(steady_ns() - since) / 1e9 >= idle) {
      return false;
    }
    ::usleep(2000);
  }
  return true;
}

uint64_t file_size(int fd) {
  struct stat st;
  return ::fstat(fd, &st) == 0 ? static_cast<uint64_t>(st.st_size) : 0;
}

bool exists(const std::string& path) {
  return ::access(path.c_str(), F_OK) == 0;
}

// With --follow: FILE appears when the writer has it whole.
Status wait_for_file(const SendOptions& opt) {
  if (opt.follow.empty() || wait_until([&] { return exists(opt.file); }, [] { return 0; }, opt.follow_idle))
    return {};
  return Error("'" + opt.file + "' did not appear within " + std::to_string(opt.follow_idle) + " s",
               kExitFailure);
}

// The file to send, its size and SHA-256: read whole, or (--follow) the
// growing file with the size and digest given.
struct Source {
  Fd file;
  uint64_t size = 0;
  Digest sha256{};
  bool growing = false;
  std::string name;    // for messages
  uint32_t frame = 0;  // the frame size it goes in
  // A whole file's identity when it was hashed: one rewritten in place
  // (same size) is told by these, not by a short read.
  struct timespec mtime {
  }, ctime{};
  bool changed() const {
    struct stat st;
    return !growing && (::fstat(file.get(), &st) != 0 || static_cast<uint64_t>(st.st_size) != size ||
                        st.st_mtim.tv_sec != mtime.tv_sec || st.st_mtim.tv_nsec != mtime.tv_nsec ||
                        st.st_ctim.tv_sec != ctime.tv_sec || st.st_ctim.tv_nsec != ctime.tv_nsec);
  }
};

// The frame size for `size` bytes (and that the session can carry them:
// receivers take at most kMaxFrames frames, said before the file is read
// through).
Result<uint32_t> frame_for(const SendOptions& opt, uint64_t size, uint32_t mtu) {
  uint32_t frame = opt.frame_size != 0 ? opt.frame_size : default_frame(size, opt.key != nullptr, mtu);
  if (size / frame < kMaxFrames)
    return frame;
  return Error("cannot send '" + opt.file + "': " + human_bytes(size) +
                   " is more than one session carries (" + std::to_string(kMaxFrames) + " frames of " +
                   std::to_string(frame) + " bytes); split it (cm-assign build --max-size)",
               kExitUsage);
}

Result<Source> open_source(const SendOptions& opt, uint32_t mtu) {
  Source src;
  if (!opt.follow.empty()) {
    // Still growing; or renamed already, whole.
    src.file = Fd(::open(opt.follow.c_str(), O_RDONLY | O_CLOEXEC));
    src.name = opt.follow;
    src.growing = src.file.valid();
    if (!src.file.valid() && errno == ENOENT) {
      src.file = Fd(::open(opt.file.c_str(), O_RDONLY | O_CLOEXEC));
      src.name = opt.file;
    }
    if (!src.file.valid())
      return sys_error("cannot open", src.name, errno);
    src.size = opt.follow_size;
    src.sha256 = opt.follow_sha256;
    if (!src.growing) {
      // Renamed already: whole, and watched for changes like any file.
      struct stat st;
      if (::fstat(src.file.get(), &st) != 0)
        return sys_error("cannot read", src.name, errno);
      src.mtime = st.st_mtim;
      src.ctime = st.st_ctim;
    }
    CM_ASSIGN(src.frame, frame_for(opt, src.size, mtu));
    return src;
  }
  src.file = Fd(::open(opt.file.c_str(), O_RDONLY | O_CLOEXEC));
  src.name = opt.file;
  if (!src.file.valid())
    return sys_error("cannot open", opt.file, errno);
  struct stat st;
  if (::fstat(src.file.get(), &st) != 0 || !S_ISREG(st.st_mode))
    return Error("'" + opt.file + "' is not a regular file", kExitFailure);
  CM_ASSIGN(src.frame, frame_for(opt, static_cast<uint64_t>(st.st_size), mtu));
  FdReader reader(src.file.get(), opt.file);
  CM_ASSIGN(HashedSize hs, sha256_stream(reader));
  src.size = hs.size;
  src.sha256 = hs.digest;
  src.mtime = st.st_mtim;
  src.ctime = st.st_ctim;
  if (src.changed())
    return Error("'" + opt.file + "' changed while it was read", kExitChanged);
  return src;
}

}  // namespace

Result<SendResult> run_send(const SendOptions& opt) {
  auto start = steady_ns();
  // Read first, whatever is sent (a cluster of one too): a bad quorum is
  // a usage error before anything is opened or waited for.
  std::optional<Quorum> quorum;
  if (opt.quorum) {
    CM_ASSIGN(quorum, parse_quorum(*opt.quorum));
  }
  if (opt.expected.empty() && opt.expect_count == 0 && !opt.self_exec.empty()) {
    // A cluster of one: nothing to multicast.
    SendResult r;
    r.succeeded = true;
    r.quorum = 0;
    CM_TRY(wait_for_file(opt));
    MemberOutcome m = run_self(opt, r.assignment);
    r.succeeded = m.succeeded();
    r.members.push_back(std::move(m));
    r.seconds = static_cast<double>(steady_ns() - start) / 1e9;
    return r;
  }
  const uint32_t mtu = net::interface_mtu(opt.interface);
  CM_ASSIGN(Source src, open_source(opt, mtu));
  Fd& file = src.file;

  SenderConfig cfg;
  cfg.session = random64();
  cfg.name = opt.file.substr(opt.file.rfind('/') == std::string::npos ? 0 : opt.file.rfind('/') + 1);
  if (cfg.name.empty() || cfg.name[0] == '.')
    return Error(
        "cannot send '" + opt.file + "': receivers take no name with a leading dot (their own files)",
        kExitUsage);
  cfg.size = src.size;
  cfg.sha256 = src.sha256;
  cfg.frame_size = src.frame;
  cfg.mtu = mtu;
  cfg.rate = opt.rate;
  cfg.keyed = opt.key != nullptr;
  cfg.expected = opt.expected;
  cfg.expect_count = opt.expect_count;
  cfg.max_idle_passes = opt.max_idle_passes;
  cfg.fec_block = opt.fec_block;
  cfg.report_timeout = static_cast<Nanos>(opt.report_timeout * 1e9);
  cfg.seed = random64();
  {
    // An assignment pack names its id in its header (a growing file:
    // once the header can be there; a file that is no pack has no id).
    if (src.growing &&
        !wait_until([&] { return file_size(file.get()) >= std::min<uint64_t>(src.size, 72 << 10); },
                    [&] { return file_size(file.get()); }, opt.follow_idle))
      return Error("'" + src.name + "' did not grow for " + std::to_string(opt.follow_idle) + " s",
                   kExitFailure);
    FdReader r(file.get(), opt.file);
    ::lseek(file.get(), 0, SEEK_SET);
    assign::BufferedInput buf(r, opt.file);
    assign::PackReader pack(buf, assign::Keys{});
    if (pack.open().ok())
      cfg.assignment = pack.header().id;
  }
  size_t expected = cfg.expected.empty() ? cfg.expect_count : cfg.expected.size();
  if (quorum) {
    const Quorum& q = *quorum;
    if (!q.percent && cfg.expected.empty()) {
      // --expect N: members that were not expected count too when they
      // join (Sender::succeeded), so a count stands as given.
      cfg.quorum = static_cast<size_t>(q.value);
    } else {
      CM_TRY(q.check_count(expected, "members in --members"));
      cfg.quorum = q.of(expected);
    }
  }

  CM_ASSIGN(net::UdpSocket sock, net::UdpSocket::open_unicast(opt.interface, 0));
  set_buffers(sock.fd());
  {
    unsigned char ttl = 1, loop = 1;
    ::setsockopt(sock.fd(), IPPROTO_IP, IP_MULTICAST_TTL, &ttl, sizeof ttl);
    ::setsockopt(sock.fd(), IPPROTO_IP, IP_MULTICAST_LOOP, &loop, sizeof loop);
  }
  cfg.reply_port = sock.local().port;
  CM_ASSIGN(Fd sigfd, signal_fd());

  uint32_t frame = cfg.frame_size;
  uint64_t size = cfg.size;
  std::vector<char> buf(frame);
  uint64_t frames_read = 0;
  Sender s(cfg, [&](uint64_t f) -> Result<std::string> {
    // Rewritten in place while it goes out: every receiver would fail the
    // digest pass after pass. Looked at every 256 frames (an fstat).
    if (++frames_read % 256 == 0 && src.changed())
      return Error("'" + src.name + "' changed while it was sent", kExitChanged);
    uint64_t off = f * frame;
    size_t n = off >= size ? 0 : static_cast<size_t>(std::min<uint64_t>(frame, size - off));
    std::string out(n, '\0');
    size_t have = 0;
    while (have < n) {
      ssize_t got = ::pread(file.get(), out.data() + have, n - have, static_cast<off_t>(off + have));
      if (got > 0) {
        have += static_cast<size_t>(got);
        continue;
      }
      if (got < 0 && errno == EINTR)
        continue;
      if (got < 0 || !src.growing)
        return Error("'" + src.name + "' changed while it was sent", kExitChanged);
      // Not written yet: wait for it (the receivers see the writer's pace;
      // the sender does not bank the time for a burst).
      if (!wait_until([&] { return file_size(file.get()) > off + have; },
                      [&] { return file_size(file.get()); }, opt.follow_idle))
        return Error("'" + src.name + "' stopped growing at " + with_commas(off + have) + " of " +
                         with_commas(size) + " bytes",
                     kExitFailure);
    }
    return out;
  });
  // The leader applies its own copy while the session runs, not after
  // it: the file is whole here already, and the group's time is then the
  // slower of the two, not their sum. It starts once every frame went out
  // once: the first pass is when the receivers drop what they cannot keep
  // up with, and a 100 MB apply beside it on the same cores made more of
  // them drop. (The thread blocks SIGTERM and SIGINT too, as it is made
  // after signal_fd(); a jthread joins on every return.)
  std::optional<MemberOutcome> self;
  std::jthread self_thread;
  // With --follow, FILE appears when the writer has it whole.
  // (When the send fails after the command started, the failure returns
  // once the command has ended: the jthread joins.)
  bool self_started = false;
  auto start_self = [&] {
    if (opt.self_exec.empty() || self_started || (!opt.follow.empty() && !exists(opt.file)))
      return;
    self_started = true;
    try {
      self_thread = std::jthread([&opt, &self, id = cfg.assignment] { self = run_self(opt, id); });
    } catch (const std::system_error&) {
      self = run_self(opt, cfg.assignment);  // no thread to be had: here, now
    }
  };
  s.start(steady_ns());
  Nanos next_progress = 0;
  for (;;) {
    Nanos now = steady_ns();
    CM_TRY(s.tick(now));
    for (Outgoing& o : s.take_outgoing())
      CM_TRY(sock.send_to(o.to ? *o.to : opt.channel, encode(o.packet, opt.key)));
    if (s.first_pass_sent())
      start_self();
    if (s.finished())
      break;
    if (opt.progress && now >= next_progress) {
      opt.progress(s.phase_name() + ", " + with_commas(s.stats().data_packets) + " frames sent of " +
                   with_commas(s.frames()) + ", " + std::to_string(s.complete_members()) + " complete");
      next_progress = now + 100 * kMs;
    }
    Nanos wake = s.next_wakeup();
    int timeout = static_cast<int>(std::clamp<Nanos>((wake - steady_ns()) / kMs, 0, 100));
    pollfd fds[2] = {{sock.fd(), POLLIN, 0}, {sigfd.get(), POLLIN, 0}};
    if (timeout > 0 || wake > steady_ns()) {
      if (::poll(fds, 2, timeout) < 0 && errno != EINTR)
        return sys_error("cannot wait", "poll", errno);
    } else {
      ::poll(fds, 2, 0);
    }
    if (fds[1].revents & POLLIN)
      return Error("interrupted", kExitFailure);
    for (int k = 0; k < 256; k++) {
      CM_ASSIGN(auto d, sock.receive());
      if (!d)
        break;
      auto p = decode(d->data, opt.key);
      if (!p.ok())
        continue;
      s.recv(*p, d->from, steady_ns());
    }
  }
  SendResult r;
  r.members = s.outcome();
  if (s.expected() > r.members.size())
    r.unheard = s.expected() - r.members.size();
  r.stats = s.stats();
  r.succeeded = s.succeeded();
  r.quorum = s.quorum();
  r.size = size;
  r.assignment = cfg.assignment;
  // A session that ended before: no member needed it.
  if (!opt.self_exec.empty())
    CM_TRY(wait_for_file(opt));
  start_self();
  if (self_thread.joinable())
    self_thread.join();
  if (self) {
    r.succeeded = r.succeeded && self->succeeded();
    r.members.insert(r.members.begin(), *self);
  }
  r.seconds = static_cast<double>(steady_ns() - start) / 1e9;
  return r;
}

nlohmann::json to_json(const SendResult& r) {
  nlohmann::json members = nlohmann::json::array();
  for (const MemberOutcome& m : r.members) {
    nlohmann::json j{{"id", m.id},
                     {"received", m.received},
                     {"had_it", m.had_it},
                     {"reported", m.reported},
                     {"exit_code", m.exit_code},
                     {"seconds", m.millis / 1000.0},
                     {"pass", m.passes},
                     {"succeeded", m.succeeded()},
                     {"expected", m.expected}};
    if (m.address)
      j["address"] = m.address->str();
    auto out = nlohmann::json::parse(m.output, nullptr, false);
    if (!m.output.empty())
      j["output"] = out.is_discarded() ? nlohmann::json(m.output) : out;
    members.push_back(j);
  }
  return nlohmann::json{{"succeeded", r.succeeded},
                        {"quorum", r.quorum},
                        {"assignment", r.assignment},
                        {"bytes", r.size},
                        {"seconds", r.seconds},
                        {"passes", r.stats.passes},
                        {"data_packets", r.stats.data_packets},
                        {"retransmitted", r.stats.retransmitted},
                        {"repairs", r.stats.repairs},
                        {"early_repairs", r.stats.early_repairs},
                        {"wire_bytes", r.stats.wire_bytes},
                        {"members", members},
                        {"unheard", r.unheard}};
}

std::string to_text(const SendResult& r) {
  size_t ok = 0, counted = 0;
  for (const MemberOutcome& m : r.members) {
    ok += m.expected && m.succeeded();
    counted += m.expected;
  }
  char head[256];
  std::snprintf(head, sizeof head,
                "%s in %.2f s, %u pass(es), %s frames sent again (%s as repairs); %zu of %zu members OK "
                "(quorum %zu): %s\n",
                human_bytes(r.size).c_str(), r.seconds, r.stats.passes,
                with_commas(r.stats.retransmitted).c_str(), with_commas(r.stats.repairs).c_str(), ok,
                counted + r.unheard, r.quorum, r.succeeded ? "succeeded" : "FAILED");
  std::string t = head;
  for (const MemberOutcome& m : r.members) {
    std::string state = m.had_it ? "had it" : m.received ? "received" : m.joined ? "incomplete" : "missing";
    t += "  " + m.id + (m.address ? " " + m.address->str() : "") + ": " + state;
    if (m.reported && m.exit_code >= 0)
      t += ", command exit " + std::to_string(m.exit_code);
    else if (m.received && !m.reported)
      t += ", no report";
    if (!m.expected)
      t += " (not in --members: not counted)";
    t += "\n";
  }
  if (r.unheard > 0)
    t += "  " + std::to_string(r.unheard) + " more expected (--expect): never heard from\n";
  return t;
}

// ---- recv

namespace {

// Frames arrive mostly in order: consecutive ones are gathered and
// written 64 KiB at a time, not one pwrite(2) each (a receiver made some
// 150,000 of them for 200 MiB, a large part of its CPU beside three others
// and the sender on two cores). Reads, and the fsync before a file is
// placed, write out what is gathered first.
class FileSink : public FrameSink {
 public:
  FileSink(Fd fd, std::string path) : fd_(std::move(fd)), path_(std::move(path)) {}
  Status write(uint64_t offset, std::string_view data) override {
    if (!error_.empty())
      return Error(error_);
    if (!pending_.empty() && offset == pending_at_ + pending_.size() &&
        pending_.size() + data.size() <= kGather) {
      pending_.append(data);
      return {};
    }
    CM_TRY(flush());
    if (data.size() >= kGather)
      return write_now(offset, data);
    pending_at_ = offset;
    pending_.assign(data);
    return {};
  }
  Result<size_t> read(uint64_t offset, void* buf, size_t n) override {
    CM_TRY(flush());
    ssize_t r = ::pread(fd_.get(), buf, n, static_cast<off_t>(offset));
    if (r < 0)
      return sys_error("cannot read", path_, errno);
    return static_cast<size_t>(r);
  }
  // A write error sticks: every later write, read and flush returns it
  // (frames gathered and lost must not pass for written).
  Status flush() {
    if (!error_.empty())
      return Error(error_);
    if (pending_.empty())
      return {};
    Status st = write_now(pending_at_, pending_);
    pending_.clear();
    return st;
  }
  int fd() const { return fd_.get(); }

 private:
  Status write_now(uint64_t offset, std::string_view data) {
    size_t done = 0;
    while (done < data.size()) {
      ssize_t w =
          ::pwrite(fd_.get(), data.data() + done, data.size() - done, static_cast<off_t>(offset + done));
      if (w < 0) {
        if (errno == EINTR)
          continue;
        Error e = sys_error("cannot write", path_, errno);
        error_ = e.message;
        return e;
      }
      done += static_cast<size_t>(w);
    }
    // Start the write-back now and then, so the fsync before the file is
    // placed has little left to wait for (a hint: fsync reports errors).
    unsynced_ += data.size();
    if (unsynced_ >= kWritebackEvery) {
      (void)::sync_file_range(fd_.get(), 0, 0, SYNC_FILE_RANGE_WRITE);
      unsynced_ = 0;
    }
    return {};
  }

  static constexpr size_t kGather = 64u << 10;
  static constexpr uint64_t kWritebackEvery = 8u << 20;
  Fd fd_;
  std::string path_;
  std::string pending_;
  uint64_t pending_at_ = 0;
  std::string error_;  // the first write error
  uint64_t unsynced_ = 0;
};

struct Session {
  std::unique_ptr<ReceiverSession> rx;
  FileSink* sink = nullptr;
  std::string temp, final_path;
  net::Endpoint sender;
  Nanos last_heard = 0, started = 0;
  bool had_it = false;
  bool placed = false;  // renamed into place
  bool queued = false;  // for the command
  bool ended = false;
  Nanos asked_announce = 0;
};

struct Command {
  uint64_t session;
  pid_t pid = -1;
  Fd pidfd, out;
  std::string output;
  Nanos started = 0;
};

}  // namespace

Status run_recv(const RecvOptions& opt) {
  auto log = [&](const std::string& m) {
    if (opt.log)
      opt.log(m);
  };
  auto fail = [&](const std::string& m) {
    if (opt.error)
      opt.error(m);
    else
      log(m);
  };
  struct stat st;
  if (::stat(opt.dir.c_str(), &st) != 0)
    return sys_error("cannot use the receive directory", opt.dir, errno);
  if (!S_ISDIR(st.st_mode))
    return Error("'" + opt.dir + "' is not a directory", kExitFailure);
  // One receiver a directory: two would write the same session's part
  // file. Creating the lock also says at once that DIR is not writable.
  const std::string lock_path = opt.dir + "/.cm-mcast.lock";
  Fd lock(::open(lock_path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0644));
  if (!lock.valid())
    return sys_error("cannot create", lock_path, errno);
  if (::flock(lock.get(), LOCK_EX | LOCK_NB) != 0)
    return Error("'" + opt.dir + "' is taken by another cm-mcast recv (it holds " + lock_path + ")",
                 kExitBusy);
  // Part files a killed receiver left: their sessions are over.
  if (DIR* d = ::opendir(opt.dir.c_str())) {
    while (struct dirent* de = ::readdir(d)) {
      std::string n = de->d_name;
      if (n.rfind(".cm-mcast.", 0) == 0 && n.size() > 5 && n.compare(n.size() - 5, 5, ".part") == 0) {
        ::unlinkat(::dirfd(d), n.c_str(), 0);
        log("removed " + opt.dir + "/" + n + ", left by a receiver that stopped");
      }
    }
    ::closedir(d);
  }
  CM_ASSIGN(net::UdpSocket sock, net::UdpSocket::open(opt.channel, opt.interface));
  set_buffers(sock.fd());
  CM_ASSIGN(Fd sigfd, signal_fd());
  std::map<uint64_t, Session> sessions;
  std::map<uint64_t, Nanos> finished;  // sessions forgotten, not to be rejoined
  std::deque<uint64_t> to_run;
  std::optional<Command> running;
  std::map<std::string, std::pair<Digest, int64_t>> hash_cache;  // final path -> (sha256, mtime)
  uint64_t dropped_bad = 0, dropped_auth = 0;
  bool stop = false;
  bool done_once = false;

  // The names of the files received here, oldest first (see --keep), in
  // hex: a name is any bytes but '/' and NUL, JSON strings are UTF-8.
  const std::string received_list = opt.dir + "/.cm-mcast.received";
  std::vector<std::string> received;
  if (auto in = open_input(received_list); in.ok()) {
    auto text = read_all(**in, 16 << 20);
    auto j = nlohmann::json::parse(text.ok() ? *text : std::string(), nullptr, false);
    if (j.is_array()) {
      for (const auto& n : j) {
        std::string name;
        // Only plain names in DIR, as an announce has them.
        if (n.is_string() && from_hex(n.get<std::string>(), name) && !name.empty() && name[0] != '.' &&
            name.find('/') == std::string::npos && name.find('\0') == std::string::npos)
          received.push_back(name);
      }
    } else {
      log("ignoring the damaged list '" + received_list + "': older files are not removed");
    }
  }
  // A file just placed becomes the newest; the oldest beyond --keep go,
  // unless a session still has them. (Listed with --keep 0 too, so that a
  // later --keep N knows them.)
  auto remember = [&](const std::string& name) {
    std::erase(received, name);
    received.push_back(name);
    size_t skipped = 0;
    while (opt.keep > 0 && received.size() - skipped > opt.keep) {
      std::string path = opt.dir + "/" + received[skipped];
      bool busy = std::any_of(sessions.begin(), sessions.end(),
                              [&](const auto& kv) { return kv.second.final_path == path; });
      if (busy) {
        skipped++;
        continue;
      }
      if (::unlink(path.c_str()) != 0 && errno != ENOENT)
        log("cannot remove " + path + ": " + std::strerror(errno));
      hash_cache.erase(path);
      received.erase(received.begin() + static_cast<std::ptrdiff_t>(skipped));
    }
    nlohmann::json list = nlohmann::json::array();
    for (const std::string& n : received)
      list.push_back(to_hex(reinterpret_cast<const uint8_t*>(n.data()), n.size()));
    // A failed write is tried again with the next file (the list is whole
    // in memory); until then a restart forgets the newest names.
    Status saved = write_file_atomic(received_list, json_text(list) + "\n");
    if (!saved.ok())
      log(saved.error().message);
  };

  auto send_to = [&](const net::Endpoint& to, const Packet& p) {
    (void)sock.send_to(to, encode(p, opt.key));
  };
  auto drop = [&](uint64_t id) {
    auto it = sessions.find(id);
    if (it == sessions.end())
      return;
    if (!it->second.temp.empty() && !it->second.placed)
      ::unlink(it->second.temp.c_str());
    finished[id] = steady_ns();
    sessions.erase(it);
  };
  // Does DIR hold this file already (same name, size and SHA-256)?
  auto have_it = [&](const Packet& a, const std::string& path) {
    struct stat fs;
    if (::stat(path.c_str(), &fs) != 0 || !S_ISREG(fs.st_mode) || static_cast<uint64_t>(fs.st_size) != a.size)
      return false;
    int64_t mtime = fs.st_mtim.tv_sec * 1000000000 + fs.st_mtim.tv_nsec;
    auto it = hash_cache.find(path);
    if (it == hash_cache.end() || it->second.second != mtime) {
      auto in = open_input(path);
      if (!in.ok())
        return false;
      auto h = sha256_stream(**in);
      if (!h.ok())
        return false;
      hash_cache[path] = {h->digest, mtime};
    }
    return hash_cache[path].first == a.sha256;
  };
  // This member's JOIN: 0 joining, 1 "I have it", 2 "announce it again".
  auto join = [&](uint64_t session, uint8_t status) {
    Packet j;
    j.type = Type::Join;
    j.session = session;
    j.member = opt.id;
    j.status = status;
    return j;
  };
  auto on_announce = [&](const Packet& a, const net::Endpoint& from, Nanos now) {
    net::Endpoint sender{from.addr, static_cast<uint16_t>(a.reply_port)};
    auto it = sessions.find(a.session);
    if (it != sessions.end()) {
      it->second.last_heard = now;
      // "I have it" is said once, and nothing else of this member's would
      // reach the sender: said again at each announce, so that a lost
      // JOIN does not leave the member "missing" (the sender takes it as
      // often as it comes).
      if (it->second.had_it)
        send_to(it->second.sender, join(a.session, 1));
      return;
    }
    if (finished.count(a.session))
      return;
    Session s;
    s.sender = sender;
    s.last_heard = s.started = now;
    s.final_path = opt.dir + "/" + a.name;
    Packet j = join(a.session, 0);
    if (have_it(a, s.final_path)) {
      s.had_it = true;
      j.status = 1;
      log("already have " + a.name);
    } else {
      // Room for the whole file first: a file system filled by a partial
      // copy would fail this session late and the next ones too.
      struct statvfs fs;
      uint64_t room = ::statvfs(opt.dir.c_str(), &fs) == 0
                          ? static_cast<uint64_t>(fs.f_bavail) * static_cast<uint64_t>(fs.f_frsize)
                          : UINT64_MAX;  // unknown: the writes will tell
      if (a.size > room) {
        fail("no room for " + a.name + " (" + human_bytes(a.size) + ") in " + opt.dir + ": " +
             human_bytes(room) + " free; not taking it");
        finished[a.session] = now;
        return;
      }
      char hex[32];
      std::snprintf(hex, sizeof hex, "%016llx", static_cast<unsigned long long>(a.session));
      s.temp = opt.dir + "/.cm-mcast." + hex + ".part";
      // A failure here is said once: the session is forgotten, not tried
      // again at each of the sender's announces.
      int fd = ::open(s.temp.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
      if (fd < 0) {
        fail("cannot create '" + s.temp + "': " + std::strerror(errno) + "; not taking " + a.name);
        finished[a.session] = now;
        return;
      }
      // The space is taken now (fallocate), not as frames come: two
      // sessions at once that fit the free space one by one but not
      // together would both pass the check above and both fail late.
      // Where fallocate is not supported, a sparse file as before.
      int fa = a.size > 0 ? ::fallocate(fd, 0, 0, static_cast<off_t>(a.size)) : 0;
      if (fa != 0 && (errno == EOPNOTSUPP || errno == ENOSYS))
        fa = ::ftruncate(fd, static_cast<off_t>(a.size));
      if (fa != 0) {
        int err = errno;
        fail(err == ENOSPC
                 ? "no room for " + a.name + " (" + human_bytes(a.size) + ") in " + opt.dir +
                       " beside the files being received; not taking it"
                 : "cannot make room for " + a.name + " in '" + s.temp + "': " + std::strerror(err));
        ::close(fd);
        ::unlink(s.temp.c_str());
        finished[a.session] = now;
        return;
      }
      auto sink = std::make_unique<FileSink>(Fd(fd), s.temp);
      s.sink = sink.get();
      s.rx =
          std::make_unique<ReceiverSession>(a, ReceiverConfig{opt.id, 5 * kMs, random64()}, std::move(sink));
      log("receiving " + a.name + " (" + human_bytes(a.size) + ")");
    }
    send_to(sender, j);
    sessions.emplace(a.session, std::move(s));
  };
  auto start_command = [&](Nanos now) {
    while (!running && !to_run.empty()) {
      uint64_t id = to_run.front();
      to_run.pop_front();
      auto it = sessions.find(id);
      if (it == sessions.end())
        continue;
      Session& s = it->second;
      Spawn sp;
      sp.command = expand_braces(opt.exec, s.final_path);
      sp.env = {"CM_FILE=" + s.final_path, "CM_ASSIGNMENT=" + std::to_string(s.rx->announce().assignment)};
      sp.capture_stdout = true;
      auto child = spawn_shell(sp);
      if (!child.ok()) {
        log(child.error().message);
        s.rx->set_report(127, "", 0, now);
        continue;
      }
      Command c;
      c.session = id;
      c.started = now;
      c.pid = child->pid;
      ::fcntl(child->out.get(), F_SETFL, O_NONBLOCK);
      c.out = std::move(child->out);
      c.pidfd.reset(static_cast<int>(::syscall(SYS_pidfd_open, c.pid, 0)));
      running = std::move(c);
    }
  };
  auto finish_command = [&](Nanos now) {
    int status = 0;
    if (::waitpid(running->pid, &status, WNOHANG) != running->pid)
      return;
    char buf[4096];
    ssize_t n;
    while ((n = ::read(running->out.get(), buf, sizeof buf)) > 0)
      if (running->output.size() < kMaxOutput)
        running->output.append(buf, static_cast<size_t>(n));
    int code = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
    auto it = sessions.find(running->session);
    if (it != sessions.end()) {
      Session& s = it->second;
      while (!running->output.empty() && running->output.back() == '\n')
        running->output.pop_back();
      s.rx->set_report(code, running->output, static_cast<uint32_t>((now - running->started) / kMs), now);
      for (Outgoing& o : s.rx->take_outgoing())
        send_to(s.sender, o.packet);
      log("command for " + s.rx->announce().name + " exited " + std::to_string(code));
      if (opt.completed)
        opt.completed(nlohmann::json{{"file", s.final_path},
                                     {"bytes", s.rx->announce().size},
                                     {"assignment", s.rx->announce().assignment},
                                     {"exit_code", code},
                                     {"seconds", static_cast<double>(now - s.started) / 1e9}});
    }
    running.reset();
    done_once = true;
  };

  Nanos last_gc = steady_ns();
  // Sessions heard of without their announce, and when we last asked for
  // it (forgotten after a minute: each unknown session id adds one).
  std::map<uint64_t, Nanos> asked;
  while (!stop) {
    Nanos now = steady_ns();
    Nanos wake = now + 200 * kMs;
    for (auto& [id, s] : sessions)
      if (s.rx)
        wake = std::min(wake, s.rx->next_wakeup());
    int timeout = static_cast<int>(std::clamp<Nanos>((wake - now) / kMs + 1, 0, 200));
    pollfd fds[4] = {{sock.fd(), POLLIN, 0},
                     {sigfd.get(), POLLIN, 0},
                     {running ? running->pidfd.get() : -1, POLLIN, 0},
                     {running ? running->out.get() : -1, POLLIN, 0}};
    if (::poll(fds, 4, timeout) < 0 && errno != EINTR)
      return sys_error("cannot wait", "poll", errno);
    now = steady_ns();
    if (fds[1].revents & POLLIN)
      stop = true;
    if (running && (fds[3].revents & (POLLIN | POLLHUP | POLLERR))) {
      char buf[4096];
      ssize_t n;
      while ((n = ::read(running->out.get(), buf, sizeof buf)) > 0)
        if (running->output.size() < kMaxOutput)
          running->output.append(buf, static_cast<size_t>(n));
      // The command closed its output (it may run on, writing elsewhere):
      // no more polling the pipe, which would wake poll() at once forever.
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EINTR))
        running->out.reset();
    }
    if (running && ((fds[2].revents & POLLIN) || !running->pidfd.valid()))
      finish_command(now);
    for (int k = 0; k < 512 && (fds[0].revents & POLLIN); k++) {
      CM_ASSIGN(auto d, sock.receive());
      if (!d)
        break;
      auto pr = decode(d->data, opt.key);
      if (!pr.ok()) {
        (pr.error().code == kExitSecurity ? dropped_auth : dropped_bad)++;
        continue;
      }
      // This server's own leader sending: it takes its copy with
      // cm-mcast send --self-exec, not as a member of its own session.
      if (d->from.addr.s_addr == opt.interface.s_addr)
        continue;
      const Packet& p = *pr;
      if (p.type == Type::Announce) {
        on_announce(p, d->from, now);
        continue;
      }
      auto it = sessions.find(p.session);
      if (it == sessions.end()) {
        // A session whose announce we missed: ask for it (now and then).
        if ((p.type == Type::Data || p.type == Type::Repair || p.type == Type::PassEnd) &&
            !finished.count(p.session)) {
          if (now - asked[p.session] > 50 * kMs) {
            asked[p.session] = now;
            // The sender's port is in its announce; its data comes from it.
            send_to(d->from, join(p.session, 2));
          }
        }
        continue;
      }
      Session& s = it->second;
      s.last_heard = now;
      if (p.type == Type::End) {
        s.ended = true;
        if (s.had_it || !s.rx || !s.rx->complete() || s.rx->reported())
          drop(p.session);
        continue;
      }
      if (!s.rx)
        continue;
      switch (p.type) {
        case Type::Data: s.rx->on_data(p); break;
        case Type::Repair: s.rx->on_repair(p); break;
        case Type::PassEnd: s.rx->on_pass_end(p, now); break;
        case Type::ReportReq: s.rx->on_report_req(p, now); break;
        default: break;
      }
    }
    for (auto it = sessions.begin(); it != sessions.end();) {
      Session& s = it->second;
      uint64_t id = it->first;
      ++it;
      if (s.rx) {
        Status t = s.rx->tick(now);
        if (!t.ok()) {
          fail(s.rx->announce().name + ": " + t.error().message + "; the partial copy is removed");
          drop(id);
          continue;
        }
        if (s.rx->complete() && !s.placed) {
          // Verified: only now does the file take its name.
          if (Status f = s.sink->flush(); !f.ok()) {
            fail("cannot place " + s.final_path + ": " + f.error().message);
            drop(id);
            continue;
          }
          if (::fsync(s.sink->fd()) != 0 || ::rename(s.temp.c_str(), s.final_path.c_str()) != 0) {
            fail("cannot place " + s.final_path + ": " + std::strerror(errno));
            drop(id);
            continue;
          }
          s.placed = true;
          log("received " + s.final_path);
          remember(s.rx->announce().name);
          if (opt.exec.empty()) {
            s.rx->set_report(-1, "", 0, now);
            if (opt.completed)
              opt.completed(nlohmann::json{{"file", s.final_path},
                                           {"bytes", s.rx->announce().size},
                                           {"assignment", s.rx->announce().assignment},
                                           {"seconds", static_cast<double>(now - s.started) / 1e9}});
            done_once = true;
          } else {
            to_run.push_back(id);
          }
        }
        for (Outgoing& o : s.rx->take_outgoing())
          send_to(s.sender, o.packet);
      }
    }
    start_command(now);
    if (now - last_gc > kMs * 1000) {
      last_gc = now;
      std::vector<uint64_t> old;
      for (auto& [id, s] : sessions) {
        bool idle = now - s.last_heard > 60000 * kMs;
        bool reported_long_ago = s.rx && s.rx->reported() && now - s.last_heard > 5000 * kMs;
        bool running_it = running && running->session == id;
        // A file whose command waits behind a long one keeps its session
        // however quiet its sender: dropped, its command would never run.
        bool queued = std::find(to_run.begin(), to_run.end(), id) != to_run.end();
        if ((idle || reported_long_ago) && !running_it && !queued)
          old.push_back(id);
      }
      for (uint64_t id : old)
        drop(id);
      std::erase_if(finished, [&](const auto& kv) { return now - kv.second > 600000 * kMs; });
      std::erase_if(asked, [&](const auto& kv) { return now - kv.second > 60000 * kMs; });
    }
    if (opt.once && done_once && !running && to_run.empty()) {
      // Let the last report go out, then stop.
      bool pending = false;
      for (auto& [id, s] : sessions)
        if (s.rx && s.rx->next_wakeup() != INT64_MAX)
          pending = true;
      if (!pending)
        stop = true;
    }
  }
  // Clean shutdown: the command in progress finishes, partial files go.
  if (running) {
    int status;
    ::waitpid(running->pid, &status, 0);
  }
  std::vector<uint64_t> all;
  for (auto& [id, s] : sessions)
    all.push_back(id);
  for (uint64_t id : all)
    drop(id);
  log("stopped; dropped " + std::to_string(dropped_bad) + " malformed and " + std::to_string(dropped_auth) +
      " unauthenticated packets");
  return {};
}

}  // namespace cm::mcast
