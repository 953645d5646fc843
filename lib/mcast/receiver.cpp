#include "mcast/receiver.hpp"

#include <algorithm>

namespace cm::mcast {

namespace {
constexpr size_t kRangesPerNack = 300;  // keeps a NACK within one frame
}

ReceiverSession::ReceiverSession(const Packet& announce, ReceiverConfig cfg, std::unique_ptr<FrameSink> sink)
    : announce_(announce), cfg_(std::move(cfg)), sink_(std::move(sink)), rng_(cfg_.seed) {
  frames_ = announce_.frames;
  bits_.assign((frames_ + 63) / 64, 0);
}

Packet ReceiverSession::base(Type t) {
  Packet p;
  p.type = t;
  p.session = announce_.session;
  p.seq = ++counter_;
  p.member = cfg_.member;
  return p;
}

void ReceiverSession::on_data(const Packet& p) {
  uint64_t f = p.seq;
  if (verified_ || f >= frames_ || has(f))
    return;
  // Every frame is full but the last; a wrong size is not ours.
  uint64_t want = announce_.size == 0 ? 0
                  : f + 1 == frames_  ? announce_.size - f * announce_.frame_size
                                      : announce_.frame_size;
  if (p.payload.size() != want)
    return;
  if (!sink_->write(f * announce_.frame_size, p.payload).ok()) {
    failed_ = true;
    return;
  }
  bits_[f / 64] |= uint64_t{1} << (f % 64);
  have_++;
  if (f == hashed_frames_) {
    hash_.update(p.payload);
    hashed_frames_++;
  }
  if (have_ == frames_)
    (void)verify();
}

Status ReceiverSession::verify() {
  // Hash what arrived out of order from the sink.
  std::vector<char> buf(256 * 1024);
  uint64_t off = hashed_frames_ * announce_.frame_size;
  while (off < announce_.size) {
    size_t want = static_cast<size_t>(std::min<uint64_t>(buf.size(), announce_.size - off));
    CM_ASSIGN(size_t got, sink_->read(off, buf.data(), want));
    if (got == 0)
      break;
    hash_.update(buf.data(), got);
    off += got;
  }
  hashed_frames_ = frames_;
  if (hash_.finish() == announce_.sha256) {
    verified_ = true;
    return {};
  }
  // Damaged on the way (or forged, without a key): start over.
  std::fill(bits_.begin(), bits_.end(), 0);
  have_ = 0;
  hashed_frames_ = 0;
  restarts_++;
  return Error("the file does not match its SHA-256; receiving it again");
}

void ReceiverSession::on_pass_end(const Packet& p, Nanos now) {
  pass_ = std::max(pass_, p.pass);
  pending_ = Reply::PassEnd;
  // Spread the answers of a whole cluster over a few milliseconds.
  reply_at_ = now + static_cast<Nanos>(rng_() % static_cast<uint64_t>(std::max<Nanos>(cfg_.backoff_max, 1)));
}

void ReceiverSession::on_report_req(const Packet& p, Nanos now) {
  if (!report_)
    return;  // the command still runs: the report follows when it ends
  bool listed = std::find(p.hashes.begin(), p.hashes.end(), member_hash(cfg_.member)) != p.hashes.end();
  if ((p.mode == 1) != listed)
    return;  // mode 0 names who reported; mode 1 who is asked
  pending_ = Reply::Report;
  reply_at_ =
      now + static_cast<Nanos>(rng_() % static_cast<uint64_t>(std::max<Nanos>(4 * cfg_.backoff_max, 1)));
}

void ReceiverSession::set_report(int32_t exit_code, std::string output, uint32_t millis, Nanos now) {
  Packet r = base(Type::Report);
  r.status = verified_ ? 1 : 0;
  r.exit_code = exit_code;
  if (output.size() > kMaxOutput)
    output.resize(kMaxOutput);
  r.output = std::move(output);
  r.millis = millis;
  report_ = r;
  out_.push_back(Outgoing{r, std::nullopt});
  (void)now;
}

void ReceiverSession::reply(Nanos now) {
  (void)now;
  if (pending_ == Reply::Report && report_) {
    Packet r = *report_;
    r.seq = ++counter_;
    out_.push_back(Outgoing{r, std::nullopt});
    return;
  }
  if (verified_) {
    Packet d = base(Type::Done);
    d.pass = pass_;
    out_.push_back(Outgoing{d, std::nullopt});
    return;
  }
  // The missing frames, as ranges, in as many NACKs as it takes.
  std::vector<Range> ranges;
  for (uint64_t f = 0; f < frames_;) {
    uint64_t word = bits_[f / 64];
    if (f % 64 == 0 && word == ~uint64_t{0}) {
      f += 64;
      continue;
    }
    if (has(f)) {
      f++;
      continue;
    }
    uint64_t start = f;
    while (f < frames_ && !has(f))
      f++;
    ranges.push_back(Range{start, f - start});
  }
  uint32_t parts =
      static_cast<uint32_t>(std::max<size_t>(1, (ranges.size() + kRangesPerNack - 1) / kRangesPerNack));
  for (uint32_t i = 0; i < parts; i++) {
    Packet n = base(Type::Nack);
    n.pass = pass_;
    n.missing = frames_ - have_;
    n.part = i;
    n.parts = parts;
    size_t from = i * kRangesPerNack, to = std::min(ranges.size(), from + kRangesPerNack);
    n.ranges.assign(ranges.begin() + static_cast<ptrdiff_t>(from),
                    ranges.begin() + static_cast<ptrdiff_t>(to));
    out_.push_back(Outgoing{n, std::nullopt});
  }
}

Status ReceiverSession::tick(Nanos now) {
  if (reply_at_ >= 0 && now >= reply_at_) {
    reply(now);
    reply_at_ = -1;
    pending_ = Reply::None;
  }
  if (failed_)
    return Error("cannot write the received file");
  return {};
}

std::vector<Outgoing> ReceiverSession::take_outgoing() {
  std::vector<Outgoing> out;
  out.swap(out_);
  return out;
}

}  // namespace cm::mcast
