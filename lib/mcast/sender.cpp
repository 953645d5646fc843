#include "mcast/sender.hpp"

#include <algorithm>
#include <cstring>

#include "mcast/fec.hpp"

namespace cm::mcast {

void add_range(std::vector<Range>& set, Range r) {
  if (r.count == 0)
    return;
  auto it = std::lower_bound(set.begin(), set.end(), r.start,
                             [](const Range& a, uint64_t s) { return a.start + a.count < s; });
  // Merge with every range it touches.
  uint64_t lo = r.start, hi = r.start + r.count;
  auto first = it;
  while (it != set.end() && it->start <= hi) {
    lo = std::min(lo, it->start);
    hi = std::max(hi, it->start + it->count);
    ++it;
  }
  it = set.erase(first, it);
  set.insert(it, Range{lo, hi - lo});
}

uint64_t total(const std::vector<Range>& set) {
  uint64_t t = 0;
  for (const Range& r : set)
    t += r.count;
  return t;
}

Sender::Sender(SenderConfig cfg, FrameSource source)
    : cfg_(std::move(cfg)), source_(std::move(source)), rng_(cfg_.seed) {
  frames_ = cfg_.size == 0 ? 1 : (cfg_.size + cfg_.frame_size - 1) / cfg_.frame_size;
  rate_ = cfg_.rate;
  if (cfg_.fec_block >= 2 && frames_ >= 2) {
    fec_ = std::min(cfg_.fec_block, kMaxFecBlock);
    need_.assign((frames_ + fec_ - 1) / fec_, 0);
    next_repair_.assign(need_.size(), 0);
    early_queued_.assign(need_.size(), 0);
  }
  for (const Expected& e : cfg_.expected) {
    Member& m = member(e.id);
    m.out.address = e.address;
    m.out.expected = true;
  }
}

Sender::Member& Sender::member(const std::string& id) {
  auto [it, inserted] = members_.try_emplace(id);
  if (inserted) {
    it->second.out.id = id;
    it->second.hash = member_hash(id);
    it->second.out.expected = cfg_.expected.empty();  // with a list: listed ones only (above)
  }
  return it->second;
}

size_t Sender::quorum() const {
  if (cfg_.quorum > 0)
    return cfg_.quorum;
  return std::max<size_t>(expected(), 1);
}

std::string Sender::phase_name() const {
  switch (phase_) {
    case Phase::Announce: return "announce";
    case Phase::Send: return "pass " + std::to_string(pass_);
    case Phase::Collect: return "collect " + std::to_string(pass_);
    case Phase::Reports: return "reports";
    case Phase::Finished: return "finished";
  }
  return "?";
}

uint64_t wire_bytes(uint64_t udp, uint32_t mtu) {
  constexpr uint64_t kIp = 20, kUdp = 8, kEthernet = 14;
  // Fragments carry multiples of 8 bytes of the IP payload, but the last.
  uint64_t per = mtu > kIp + 8 ? (mtu - kIp) / 8 * 8 : 8;
  uint64_t ip_payload = udp + kUdp;
  uint64_t fragments = (ip_payload + per - 1) / per;
  return ip_payload + fragments * (kIp + kEthernet);
}

uint64_t Sender::wire_cost(size_t payload, uint64_t frame) const {
  return wire_bytes(payload + data_header(frame, pass_, cfg_.keyed), cfg_.mtu) * 8;
}

uint32_t Sender::block_frames(uint64_t b) const {
  return mcast::block_frames(frames_, fec_, b);
}

// Repairs n of block b, the next ones not sent yet, onto queue q.
void Sender::queue_repairs(RepairQueue& q, uint64_t b, uint32_t n) {
  q.items.push_back(RepairItem{b, next_repair_[b], n});
  next_repair_[b] = static_cast<uint8_t>(next_repair_[b] + n);
}

// The next repair of queue q; an item's repairs are made at once (the
// block is read once).
Status Sender::send_repair(RepairQueue& q) {
  const RepairItem& it = q.items[q.index];
  if (&q == &early_) {
    stats_.early_repairs++;
    if (early_queued_[it.block] > 0)
      early_queued_[it.block]--;
  }
  if (q.cache.empty()) {
    uint32_t k = block_frames(it.block);
    size_t len = cfg_.frame_size;
    std::string buf(static_cast<size_t>(k) * len, '\0');
    std::vector<const uint8_t*> frames;
    for (uint32_t j = 0; j < k; j++) {
      CM_ASSIGN(std::string f, source_(it.block * fec_ + j));
      std::memcpy(buf.data() + static_cast<size_t>(j) * len, f.data(), std::min(f.size(), len));
      frames.push_back(reinterpret_cast<const uint8_t*>(buf.data()) + static_cast<size_t>(j) * len);
    }
    CM_TRY(fec_encode(k, len, frames, it.first, it.count, q.cache));
  }
  Packet d;
  d.type = Type::Repair;
  d.session = cfg_.session;
  d.seq = it.block;
  d.pass = pass_;
  d.index = it.first + q.sent;
  d.payload = std::move(q.cache[q.sent]);
  uint64_t cost =
      wire_bytes(d.payload.size() + repair_header(it.block, pass_, d.index, cfg_.keyed), cfg_.mtu) * 8;
  stats_.repairs++;
  stats_.retransmitted++;
  stats_.wire_bytes += cost / 8;
  out_.push_back(Outgoing{std::move(d), std::nullopt});
  if (++q.sent == it.count) {
    q.index++;
    q.sent = 0;
    q.cache.clear();
  }
  pass_sent_++;
  budget_at_ += static_cast<Nanos>(cost * 1'000'000'000ull / rate_);
  return {};
}

// An early NACK: blocks the pass is past, and what they need. Their
// repairs go out within the pass: one more than the neediest asks, less
// what is queued for the block and not sent yet (a NACK does not know of
// those; of repairs sent, it does, as they arrive before it is made).
void Sender::early_needs(const Packet& p) {
  // Only in the first pass, only about it, and only for blocks it is past
  // (anything else is stale, or a stranger's).
  if (phase_ != Phase::Send || fec_ == 0 || pass_ != 1 || p.pass != pass_)
    return;
  uint64_t past = todo_index_ >= todo_.size() ? need_.size() : todo_next_ / fec_;
  for (const Range& r : p.needs) {
    if (r.start >= past)
      continue;
    uint64_t b = r.start;
    uint32_t k = block_frames(b);
    if (r.count >= k)
      continue;  // the whole block: the end of the pass decides
    uint32_t want = static_cast<uint32_t>(r.count) + 1;
    if (want <= early_queued_[b])
      continue;
    uint32_t n = std::min(want - early_queued_[b], max_repairs(k) - next_repair_[b]);
    if (n == 0)
      continue;
    queue_repairs(early_, b, n);
    early_queued_[b] = static_cast<uint8_t>(early_queued_[b] + n);
  }
}
Packet Sender::base(Type t) {
  Packet p;
  p.type = t;
  p.session = cfg_.session;
  p.seq = ++counter_;
  return p;
}

void Sender::send(Packet p, std::optional<net::Endpoint> to) {
  if (p.type != Type::Data)
    stats_.wire_bytes += wire_bytes(64 + p.payload.size(), cfg_.mtu);
  out_.push_back(Outgoing{std::move(p), to});
}

Packet Sender::announce_packet() {
  Packet a = base(Type::Announce);
  a.assignment = cfg_.assignment;
  a.name = cfg_.name;
  a.size = cfg_.size;
  a.sha256 = cfg_.sha256;
  a.frame_size = cfg_.frame_size;
  a.frames = frames_;
  a.rate = rate_;
  a.reply_port = cfg_.reply_port;
  a.expected = static_cast<uint32_t>(expected());
  a.fec = fec_;
  return a;
}

void Sender::start(Nanos now) {
  send(announce_packet());
  progress_at_ = now;
  phase_ = Phase::Announce;
  deadline_ = now + cfg_.join_wait;
  next_announce_ = now + cfg_.announce_every;
  if (expected() > 0 && cfg_.size <= cfg_.eager_bytes) {
    eager_ = true;
    next_pass(now);
  }
}

bool Sender::all_reported() const {
  for (const auto& [id, m] : members_)
    if (m.out.expected && m.out.received && !m.out.reported && !m.out.had_it)
      return false;
  return true;
}

size_t Sender::complete_members() const {
  size_t n = 0;
  for (const auto& [id, m] : members_)
    n += m.out.expected && (m.out.received || m.out.had_it);
  return n;
}

bool Sender::all_received() const {
  size_t joined = 0;
  for (const auto& [id, m] : members_) {
    if (!m.out.expected)
      continue;  // not listed: served while the session lasts, not waited for
    if (m.out.joined || m.out.received || m.out.had_it)
      joined++;
    if (needed(m) && m.out.joined)
      return false;
  }
  return joined >= expected();
}

void Sender::recv(const Packet& p, const net::Endpoint& from, Nanos now) {
  if (p.session != cfg_.session || p.member.empty())
    return;
  Member& m = member(p.member);
  m.last_heard = now;
  if (!m.out.address)
    m.out.address = from;
  m.out.address->port = from.port;  // answers come from the receiver's socket
  m.out.address->addr = from.addr;
  switch (p.type) {
    case Type::Join:
      if (p.status == 2) {
        // It hears the session but missed the announce: tell it again.
        if (phase_ != Phase::Reports && phase_ != Phase::Finished)
          send(announce_packet(), from);
        break;
      }
      m.out.joined = true;
      if (p.status == 1) {
        m.out.had_it = true;
        m.out.received = false;
      }
      break;
    case Type::Nack:
      m.out.joined = true;
      if (p.status == 1) {
        early_needs(p);
        break;
      }
      // No file needs more parts than one per kRangesPerNack frames.
      if (p.parts > frames_ / kRangesPerNack + 2)
        break;
      if (p.pass == pass_) {
        // A long NACK comes in parts: the member has answered once all
        // are in (else the next pass would go without what the later
        // parts ask for, and those would wait a pass more).
        if (p.part < p.parts && m.parts.size() < p.parts)
          m.parts.insert(p.part);
        m.replied = m.parts.size() >= p.parts;
        m.missing = p.missing;
      }
      if (p.pass == pass_ || phase_ != Phase::Reports) {
        // (From another pass: a late joiner, or a lost PASS_END; whatever
        // it lacks goes into the next pass too.)
        for (const Range& r : p.ranges)
          if (r.start < frames_)
            add_range(missing_, Range{r.start, std::min(r.count, frames_ - r.start)});
        for (const Range& r : p.needs)
          if (r.start < need_.size())
            need_[r.start] = static_cast<uint8_t>(
                std::max<uint64_t>(need_[r.start], std::min<uint64_t>(r.count, block_frames(r.start))));
      }
      break;
    case Type::Done:
      m.out.joined = true;
      if (!m.out.received)
        m.out.passes = p.pass;
      m.out.received = true;
      m.replied = true;
      break;
    case Type::Report:
      m.out.joined = true;
      if (p.status == 1 && !m.out.had_it)
        m.out.received = true;
      m.out.reported = true;
      m.out.exit_code = p.exit_code;
      m.out.output = p.output;
      m.out.millis = p.millis;
      break;
    default: break;
  }
}

void Sender::pass_end(Nanos now) {
  Packet e = base(Type::PassEnd);
  e.pass = pass_;
  e.sent = pass_sent_;
  send(e);
  phase_ = Phase::Collect;
  deadline_ = now + cfg_.collect_wait;
  pass_end_again_ = now + cfg_.collect_wait / 2;
}

void Sender::next_pass(Nanos now) {
  // Progress: members completed, or fewer frames missing than before.
  size_t complete = complete_members();
  uint64_t missing = total(missing_);
  for (uint8_t n : need_)
    missing += n;
  if (pass_ > 0) {
    if (complete > last_complete_ || missing < last_union_) {
      idle_passes_ = 0;
      progress_at_ = now;
    } else {
      idle_passes_++;
    }
    last_complete_ = complete;
    last_union_ = missing;
    // Loss this heavy is the network (or the receivers) not keeping up.
    uint64_t worst = 0;
    for (const auto& [id, m] : members_)
      if (needed(m))
        worst = std::max(worst, m.missing);
    if (pass_sent_ > 0 && worst * 4 > pass_sent_)
      rate_ = std::max<uint64_t>(rate_ / 2, 1'000'000);
    else if (worst * 50 < pass_sent_)
      rate_ = std::min(cfg_.rate, rate_ + rate_ / 4);
  }
  if (all_received() || (idle_passes_ >= cfg_.max_idle_passes && now - progress_at_ >= cfg_.max_idle)) {
    enter_reports(now);
    return;
  }
  if (pass_ == 0)
    todo_ = {Range{0, frames_}};
  else
    todo_ = missing_;
  repairs_.clear();
  early_.clear();
  std::fill(early_queued_.begin(), early_queued_.end(), 0);
  for (uint64_t b = 0; b < need_.size(); b++) {
    uint32_t n = need_[b], k = block_frames(b);
    if (n == 0)
      continue;
    if (n >= k || next_repair_[b] + n > max_repairs(k)) {
      // Someone has none of it (a late joiner), or the repairs ran out:
      // the frames themselves.
      add_range(todo_, Range{b * fec_, k});
    } else {
      // One more than asked: the neediest member loses some repairs too,
      // and each block it cannot decode yet holds its repairs in memory
      // (and needs a pass more). On 200 MiB at 5 % loss: 3 passes, not 12;
      // on 2 GiB, 11 MiB resident at a receiver, not 23 (bench/RESULTS.md).
      n = std::min(n + 1, max_repairs(k) - next_repair_[b]);
      queue_repairs(repairs_, b, n);
    }
    need_[b] = 0;
  }
  // Nothing reported missing, but someone said nothing at all (or an
  // expected member has not joined yet): announce and ask again.
  if (todo_.empty() && !repairs_.pending()) {
    send(announce_packet());
    pass_++;
    pass_sent_ = 0;
    for (auto& [id, m] : members_) {
      m.replied = false;
      m.parts.clear();
    }
    pass_end(now);
    return;
  }
  missing_.clear();
  for (auto& [id, m] : members_) {
    m.replied = false;
    m.parts.clear();
    m.missing = 0;
  }
  pass_++;
  stats_.passes = pass_;
  pass_sent_ = 0;
  todo_index_ = 0;
  todo_next_ = todo_.empty() ? 0 : todo_[0].start;
  phase_ = Phase::Send;
  budget_at_ = std::max(budget_at_, now);
}

void Sender::enter_reports(Nanos now) {
  phase_ = Phase::Reports;
  reports_started_ = now;
  report_rounds_ = 0;
  next_round_ = now + cfg_.report_round;
  stats_.rate = rate_;
}

void Sender::report_round(Nanos now) {
  std::vector<const Member*> reported, missing;
  for (const auto& [id, m] : members_) {
    if (!(m.out.received || m.out.had_it))
      continue;
    (m.out.reported || m.out.had_it ? reported : missing).push_back(&m);
  }
  if (missing.empty())
    return;
  report_rounds_++;
  if (missing.size() <= 3) {
    // A few: ask each directly.
    for (const Member* m : missing) {
      Packet q = base(Type::ReportReq);
      q.mode = 1;
      q.hashes = {m->hash};
      send(q, m->out.address);
    }
  } else {
    // Many: one multicast naming the shorter list.
    Packet q = base(Type::ReportReq);
    q.mode = reported.size() < missing.size() ? 0 : 1;
    for (const Member* m : q.mode == 0 ? reported : missing)
      q.hashes.push_back(m->hash);
    send(q);
  }
  next_round_ = now + (cfg_.report_round << std::min(report_rounds_, 6));
}

void Sender::finish() {
  for (int i = 0; i < 3; i++)
    send(base(Type::End));
  phase_ = Phase::Finished;
  stats_.rate = rate_;
}

Status Sender::tick(Nanos now) {
  if (phase_ != Phase::Finished && phase_ != Phase::Reports && now >= next_announce_) {
    // Late joiners learn of the session from these.
    send(announce_packet());
    next_announce_ = now + cfg_.announce_every;
  }
  switch (phase_) {
    case Phase::Announce: {
      size_t expected = this->expected();
      size_t joined = 0;
      bool anyone_needs = false;
      for (const auto& [id, m] : members_) {
        joined += m.out.expected && m.out.joined;
        anyone_needs |= m.out.expected && m.out.joined && !m.out.had_it;
      }
      if (joined >= expected && expected > 0 && !anyone_needs) {
        enter_reports(now);  // everyone has it already
        break;
      }
      if (now >= deadline_ || (expected > 0 && joined >= expected))
        next_pass(now);
      break;
    }
    case Phase::Send: {
      // Pacing: each packet takes its wire size at the rate.
      int burst = 0;
      while (phase_ == Phase::Send && budget_at_ <= now && burst < 64) {
        // Early repairs first (their blocks are behind us), then the
        // frames, then this pass's repairs.
        if (early_.pending() || (todo_index_ >= todo_.size() && repairs_.pending())) {
          CM_TRY(send_repair(early_.pending() ? early_ : repairs_));
          burst++;
          continue;
        }
        if (todo_index_ >= todo_.size()) {
          pass_end(now);
          break;
        }
        uint64_t f = todo_next_;
        CM_ASSIGN(std::string payload, source_(f));
        Packet d;
        d.type = Type::Data;
        d.session = cfg_.session;
        d.seq = f;
        d.pass = pass_;
        uint64_t cost = wire_cost(payload.size(), f);
        stats_.data_packets++;
        stats_.data_bytes += payload.size();
        stats_.wire_bytes += cost / 8;
        if (pass_ > 1)
          stats_.retransmitted++;
        d.payload = std::move(payload);
        out_.push_back(Outgoing{std::move(d), std::nullopt});
        pass_sent_++;
        burst++;
        budget_at_ += static_cast<Nanos>(cost * 1'000'000'000ull / rate_);
        if (++todo_next_ >= todo_[todo_index_].start + todo_[todo_index_].count) {
          todo_index_++;
          if (todo_index_ < todo_.size())
            todo_next_ = todo_[todo_index_].start;
        }
      }
      // Do not bank time lost to a slow tick: pace from now on.
      if (budget_at_ < now - 2 * kMs)
        budget_at_ = now - 2 * kMs;
      break;
    }
    case Phase::Collect: {
      bool all = true;
      size_t joined = 0;
      for (const auto& [id, m] : members_) {
        if (!m.out.expected)
          continue;  // not listed: its NACKs are served, its silence not waited for
        joined += m.out.joined;
        if (needed(m) && m.out.joined && !m.replied)
          all = false;
      }
      // No member heard yet: wait for one, or the deadline, rather than
      // pass again on nothing. And after an eager first pass (sent before
      // the joins) wait the same way for every expected member: those not
      // heard yet are not silent, just later than the frames.
      if (joined == 0 || (eager_ && pass_ <= 1 && joined < expected()))
        all = false;
      if (all || now >= deadline_) {
        next_pass(now);
      } else if (pass_end_again_ > 0 && now >= pass_end_again_) {
        // A PASS_END may be lost too: once more to those still silent.
        for (const auto& [id, m] : members_)
          if (needed(m) && m.out.joined && !m.replied && m.out.address) {
            Packet e = base(Type::PassEnd);
            e.pass = pass_;
            e.sent = pass_sent_;
            send(e, m.out.address);
          }
        pass_end_again_ = 0;
      }
      break;
    }
    case Phase::Reports: {
      if (all_reported() || now - reports_started_ >= cfg_.report_timeout) {
        finish();
        break;
      }
      if (now >= next_round_)
        report_round(now);
      break;
    }
    case Phase::Finished: break;
  }
  return {};
}

Nanos Sender::next_wakeup() const {
  Nanos t = next_announce_;
  switch (phase_) {
    case Phase::Announce:
    case Phase::Collect: t = std::min(t, deadline_); break;
    case Phase::Send: t = std::min(t, budget_at_); break;
    case Phase::Reports:
      // The reports often arrive with the last DONEs: end at once, not at
      // the next report round (100 ms and more of nothing). No announces
      // here: their time, left behind, would make the loop spin.
      return all_reported() ? 0 : std::min(next_round_, reports_started_ + cfg_.report_timeout);
    case Phase::Finished: break;
  }
  if (phase_ == Phase::Collect && pass_end_again_ > 0)
    t = std::min(t, pass_end_again_);
  return t;
}

std::vector<Outgoing> Sender::take_outgoing() {
  std::vector<Outgoing> out;
  out.swap(out_);
  return out;
}

bool Sender::succeeded() const {
  size_t ok = 0;
  for (const auto& [id, m] : members_)
    ok += m.out.expected && m.out.succeeded();
  return ok >= quorum();
}

std::vector<MemberOutcome> Sender::outcome() const {
  std::vector<MemberOutcome> v;
  for (const auto& [id, m] : members_)
    v.push_back(m.out);
  return v;
}

}  // namespace cm::mcast
