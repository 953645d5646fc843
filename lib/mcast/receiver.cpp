#include "mcast/receiver.hpp"

#include <algorithm>
#include <cstring>

#include "mcast/fec.hpp"

namespace cm::mcast {

ReceiverSession::ReceiverSession(const Packet& announce, ReceiverConfig cfg, std::unique_ptr<FrameSink> sink)
    : announce_(announce), cfg_(std::move(cfg)), sink_(std::move(sink)), rng_(cfg_.seed) {
  frames_ = announce_.frames;
  bits_.assign((frames_ + 63) / 64, 0);
  if (announce_.fec >= 2 && announce_.size > 0) {
    fec_ = announce_.fec;
    block_have_.assign((frames_ + fec_ - 1) / fec_, 0);
    // Room for the repairs of one block at least: the nearest incomplete
    // block must be able to hold all it needs.
    cfg_.max_held = std::max<size_t>(cfg_.max_held, static_cast<size_t>(fec_) * announce_.frame_size);
  }
}

size_t ReceiverSession::frame_length(uint64_t f) const {
  // Every frame is full but the last.
  return announce_.size == 0 ? 0
         : f + 1 == frames_  ? static_cast<size_t>(announce_.size - f * announce_.frame_size)
                             : announce_.frame_size;
}

uint32_t ReceiverSession::block_frames(uint64_t b) const {
  return mcast::block_frames(frames_, fec_, b);
}

uint32_t ReceiverSession::held_count(uint64_t b) const {
  auto it = held_.find(b);
  return it == held_.end() ? 0 : static_cast<uint32_t>(it->second.size());
}

uint64_t ReceiverSession::lacks(uint64_t b) const {
  uint64_t k = block_frames(b), got = block_have_[b] + held_count(b);
  return got < k ? k - got : 0;
}

std::vector<ReceiverSession::Held> ReceiverSession::take_held(uint64_t b) {
  std::vector<Held> held;
  auto it = held_.find(b);
  if (it == held_.end())
    return held;
  held = std::move(it->second);
  held_.erase(it);
  for (const Held& h : held)
    held_bytes_ -= h.bytes.size();
  return held;
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
  if (p.payload.size() != frame_length(f))
    return;  // not ours
  accept(f, p.payload);
  if (fec_ > 0 && !verified_) {
    uint64_t b = f / fec_;
    if (held_count(b) > 0 && lacks(b) == 0)
      decode(b);
    if (p.pass == 1)
      early_nack(f, p.pass);
  }
}

// In the first pass, once the sender is two blocks past a run of blocks,
// their needs go out at once: the sender sends their repairs within the
// pass, the blocks complete, and the file's hash follows them instead of
// waiting for the end. Blocks covered before and still incomplete (their
// repairs were lost too) are asked for again, once a run of blocks later
// (their repairs have had time to arrive): the hash stops at the first
// incomplete block, so one left for the end of the pass leaves nearly the
// whole file to hash then.
void ReceiverSession::early_nack(uint64_t f, uint32_t pass) {
  constexpr uint64_t kEvery = 8;  // blocks in an early NACK
  uint64_t b = f / fec_;
  if (b < early_from_ + kEvery + 1)
    return;
  uint64_t upto = b - 1;  // the block before this one may still be arriving
  std::vector<Range> needs;
  auto need = [&](uint64_t x) -> uint64_t {
    // None of it: this member came late; the end of the pass tells.
    uint64_t n = lacks(x);
    return n < block_frames(x) ? n : 0;
  };
  // Listed before, a run ago or more, and still incomplete: again.
  uint64_t again = early_from_ > kEvery ? early_from_ - kEvery : 0;
  for (auto it = early_open_.begin(); it != early_open_.end() && *it < again;) {
    uint64_t n = need(*it);
    if (n == 0) {
      it = early_open_.erase(it);
      continue;
    }
    if (needs.size() < kRangesPerNack / 2)
      needs.push_back(Range{*it, n});
    ++it;
  }
  for (uint64_t x = early_from_; x < upto; x++)
    if (uint64_t n = need(x); n > 0) {
      needs.push_back(Range{x, n});
      early_open_.insert(x);
    }
  early_from_ = upto;
  if (needs.empty())
    return;
  Packet n = base(Type::Nack);
  n.pass = pass;
  n.status = 1;
  n.missing = total(needs);
  n.needs = std::move(needs);
  out_.push_back(Outgoing{n, std::nullopt});
}

// The first failure is the one the session ends with (the sink's error
// names the file and the reason).
void ReceiverSession::fail(const std::string& why) {
  if (!failed_)
    fail_why_ = why;
  failed_ = true;
}

void ReceiverSession::accept(uint64_t f, std::string_view payload) {
  if (Status w = sink_->write(f * announce_.frame_size, payload); !w.ok()) {
    fail(w.error().message);
    return;
  }
  bits_[f / 64] |= uint64_t{1} << (f % 64);
  have_++;
  if (fec_ > 0) {
    uint64_t b = f / fec_;
    if (++block_have_[b] == block_frames(b))
      (void)take_held(b);  // whole without the repairs it holds
  }
  if (f == hashed_frames_) {
    hash_.update(payload);
    hashed_frames_++;
    // A gap just filled: hash on over what came after it (from the sink,
    // still in the page cache), up to the next gap. The hash then keeps up
    // with the repairs, and the check at the end has little left to read.
    if (have_ != frames_)
      hash_ahead();
  }
  if (have_ == frames_)
    (void)verify();
}

void ReceiverSession::hash_ahead() {
  thread_local std::vector<char> buf;
  const size_t len = announce_.frame_size;
  while (hashed_frames_ < frames_ && has(hashed_frames_)) {
    uint64_t end = hashed_frames_;
    while (end < frames_ && has(end) && end - hashed_frames_ < 128)
      end++;
    uint64_t off = hashed_frames_ * len;
    size_t n = static_cast<size_t>(std::min<uint64_t>(end * len, announce_.size) - off);
    buf.resize(n);
    auto got = sink_->read(off, buf.data(), n);
    if (!got.ok() || *got != n) {
      // What was written is not there to read.
      fail(got.ok() ? "the received file is shorter than what was written to it" : got.error().message);
      return;
    }
    hash_.update(buf.data(), n);
    hashed_frames_ = end;
  }
}

void ReceiverSession::on_repair(const Packet& p) {
  uint64_t b = p.seq;
  if (fec_ == 0 || verified_ || b >= block_have_.size() || p.payload.size() != announce_.frame_size)
    return;
  uint32_t k = block_frames(b);
  if (block_have_[b] >= k || p.index >= max_repairs(k))
    return;
  std::vector<Held>& held = held_[b];
  for (const Held& h : held)
    if (h.index == p.index)
      return;
  // Full: repairs that complete their block are taken (decoding frees
  // them at once); others make room by evicting the farthest block's, or
  // are dropped when theirs is the farthest. The nearest incomplete block
  // keeps its repairs, so memory never blocks progress. (Dropping instead
  // left every block holding some repairs and none able to take the last.)
  bool completes = lacks(b) <= 1;
  while (!completes && held_bytes_ + p.payload.size() > cfg_.max_held) {
    uint64_t far = std::prev(held_.end())->first;
    if (far <= b) {
      if (held.empty())
        held_.erase(b);
      return;  // asked for again after the pass
    }
    (void)take_held(far);
  }
  held.push_back(Held{p.index, p.payload});
  held_bytes_ += p.payload.size();
  if (lacks(b) == 0)
    decode(b);
}

// Enough frames and repairs of block b: the missing frames, recovered.
void ReceiverSession::decode(uint64_t b) {
  std::vector<Held> held = take_held(b);
  if (held.empty())
    return;
  uint32_t k = block_frames(b);
  size_t len = announce_.frame_size;
  uint64_t first = b * fec_;
  // The block's frames at hand, in one read (the slots of missing frames
  // get what the decoder recovers).
  thread_local std::string buf;
  buf.assign(static_cast<size_t>(k) * len, '\0');
  size_t want =
      static_cast<size_t>(std::min<uint64_t>(static_cast<uint64_t>(k) * len, announce_.size - first * len));
  auto got = sink_->read(first * len, buf.data(), want);
  if (!got.ok()) {
    fail(got.error().message);
    return;
  }
  std::vector<uint32_t> have, missing, repair_index;
  std::vector<const uint8_t*> frames, repairs;
  std::vector<uint8_t*> out;
  for (uint32_t j = 0; j < k; j++) {
    uint8_t* at = reinterpret_cast<uint8_t*>(buf.data()) + static_cast<size_t>(j) * len;
    if (!has(first + j)) {
      missing.push_back(j);
      out.push_back(at);
      continue;
    }
    if (static_cast<size_t>(j) * len + frame_length(first + j) > *got) {
      fail("the received file is shorter than what was written to it");
      return;
    }
    // Zeros past a short (last) frame, as the sender padded it.
    std::memset(at + frame_length(first + j), 0, len - frame_length(first + j));
    have.push_back(j);
    frames.push_back(at);
  }
  for (const Held& h : held) {
    repair_index.push_back(h.index);
    repairs.push_back(reinterpret_cast<const uint8_t*>(h.bytes.data()));
  }
  // (A forged repair, without a key, decodes into wrong frames: the file's
  // SHA-256 then fails and the file is received again, as with forged DATA.)
  if (!fec_decode(k, len, have, frames, repair_index, repairs, missing, out).ok())
    return;  // a repeated index (not sent so): needed again
  for (size_t i = 0; i < missing.size() && !verified_ && !failed_; i++) {
    uint64_t f = first + missing[i];
    accept(f, std::string_view(reinterpret_cast<const char*>(out[i]), frame_length(f)));
    repaired_++;
  }
}

Status ReceiverSession::verify() {
  // Hash what arrived out of order from the sink.
  hash_ahead();
  if (failed_)
    return Error("cannot read the received file back");
  if (hash_.finish() == announce_.sha256) {
    verified_ = true;
    return {};
  }
  // Damaged on the way (or forged, without a key): start over.
  std::fill(bits_.begin(), bits_.end(), 0);
  std::fill(block_have_.begin(), block_have_.end(), 0);
  held_.clear();
  held_bytes_ = 0;
  have_ = 0;
  hashed_frames_ = 0;
  early_from_ = 0;
  early_open_.clear();
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
  // The missing frames, as ranges, in as many NACKs as it takes. With
  // repairs: how many frames each block needs, whichever they are.
  std::vector<Range> ranges;
  for (uint64_t b = 0; b < block_have_.size(); b++)
    if (uint64_t n = lacks(b); n > 0)
      ranges.push_back(Range{b, n});
  for (uint64_t f = 0; fec_ == 0 && f < frames_;) {
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
    n.missing = fec_ > 0 ? total(ranges) : frames_ - have_;
    n.part = i;
    n.parts = parts;
    size_t from = i * kRangesPerNack, to = std::min(ranges.size(), from + kRangesPerNack);
    (fec_ > 0 ? n.needs : n.ranges)
        .assign(ranges.begin() + static_cast<ptrdiff_t>(from), ranges.begin() + static_cast<ptrdiff_t>(to));
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
    return Error(fail_why_);
  return {};
}

std::vector<Outgoing> ReceiverSession::take_outgoing() {
  std::vector<Outgoing> out;
  out.swap(out_);
  return out;
}

}  // namespace cm::mcast
