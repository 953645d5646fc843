#include "elect/elector.hpp"

#include <algorithm>

namespace cm::elect {

namespace {
constexpr uint32_t kMaxPriority = 1000;
// A recently deposed leader claims first, for this long.
constexpr Nanos kRecentWindow = 60000 * kMs;
}  // namespace

const char* state_name(State s) {
  switch (s) {
    case State::Known: return "known";
    case State::Unknown: return "unknown";
    case State::Conceding: return "conceding";
    case State::Open: return "voting";
    case State::Me: return "leader";
  }
  return "?";
}

Elector::Elector(Config cfg) : cfg_(std::move(cfg)), rng_(cfg_.seed) {
  boot_ = rng_() | 1;
  if (cfg_.priority > kMaxPriority)
    cfg_.priority = kMaxPriority;
}

uint32_t Elector::priority() const {
  return can_lead() ? cfg_.priority : 0;
}

bool Elector::beats(uint32_t pa, const std::string& ia, uint32_t pb, const std::string& ib) const {
  return pa != pb ? pa > pb : ia > ib;
}

Nanos Elector::dead_interval() const {
  Nanos t = leader_interval_ > 0 ? leader_interval_ : cfg_.la_interval;
  // Three LAs missed, and a little more so that the third one, on time,
  // does not race the timer.
  return cfg_.dead_factor * t + t / 16;
}

Nanos Elector::window() const {
  if (cfg_.vote_window > 0)
    return cfg_.vote_window;
  return std::max<Nanos>(cfg_.la_interval / 5, 10 * kMs);
}

Nanos Elector::claim_delay(Nanos now, const std::string& lost) const {
  if (last_led_ >= 0 && now - last_led_ < kRecentWindow)
    return 0;  // a recently deposed leader reclaims first
  Nanos step = cfg_.claim_step > 0 ? cfg_.claim_step : std::max<Nanos>(cfg_.la_interval / 10, 2 * kMs);
  Nanos rank = 0;
  for (const auto& [id, c] : candidates_)
    if (id != lost && id != cfg_.id && now - c.last_heard <= cfg_.member_timeout &&
        beats(c.priority, id, priority(), cfg_.id))
      rank++;
  return rank * step;
}

void Elector::heard(const Message& m, Nanos now) {
  if (m.priority > 0)
    candidates_[m.sender] = Candidate{m.priority, now};
  else
    candidates_.erase(m.sender);
}

void Elector::set_state(State s) {
  if (s == state_)
    return;
  state_ = s;
  events_.push_back(Event{Event::StateChanged, state_name(s)});
}

void Elector::set_leader(const std::string& id, uint32_t prio, Nanos interval) {
  leader_prio_ = prio;
  if (interval > 0)
    leader_interval_ = interval;
  if (id == leader_)
    return;
  leader_ = id;
  events_.push_back(Event{Event::LeaderChanged, id});
  // A new leader knows nobody yet: register with it soon (spread out, so
  // a whole segment does not answer in the same instant).
  registered_ = false;
  if (id != cfg_.id) {
    next_reg_ = last_tick_ + static_cast<Nanos>(rng_() % static_cast<uint64_t>(100 * kMs));
  }
}

void Elector::send(Kind k, int64_t wall_ms) {
  Message m;
  m.kind = k;
  m.sender = cfg_.id;
  m.priority = priority();
  m.boot = boot_;
  m.counter = ++counter_;
  m.time_ms = wall_ms;
  if (k == Kind::LeaderAlive) {
    m.interval_ms = static_cast<uint32_t>(cfg_.la_interval / kMs);
    m.members = static_cast<uint32_t>(members_.size());
  } else if (k == Kind::Register) {
    m.name = cfg_.name;
    m.address = cfg_.address;
    m.port = cfg_.port;
    m.caps = cfg_.caps;
  }
  out_.push_back(std::move(m));
}

void Elector::start(Nanos now, int64_t wall_ms) {
  (void)wall_ms;
  last_tick_ = now;
  state_ = State::Unknown;
  events_.push_back(Event{Event::StateChanged, state_name(state_)});
  // Listen for a leader for one dead interval before claiming.
  claim_at_ = now + dead_interval() + claim_delay(now, "");
}

void Elector::become_unknown(Nanos now, const std::string& lost) {
  set_state(State::Unknown);
  claim_at_ = now + claim_delay(now, lost);
}

void Elector::claim(Nanos now, int64_t wall_ms) {
  send(Kind::LeaderClaim, wall_ms);
  set_state(State::Open);
  vote_deadline_ = now + window();
  lc_sent_ = 1;
  next_lc_ = now + window() / 3;
}

void Elector::lead(Nanos now, int64_t wall_ms) {
  set_state(State::Me);
  set_leader(cfg_.id, priority(), cfg_.la_interval);
  last_led_ = now;
  send(Kind::LeaderAlive, wall_ms);
  next_la_ = now + cfg_.la_interval;
  Member self{cfg_.id, cfg_.name, cfg_.address, cfg_.caps, cfg_.port, priority(), now, now};
  members_.clear();
  members_[cfg_.id] = self;
  registered_ = true;
  report_due_ = now + cfg_.report_delay;
  next_report_ = now + cfg_.report_interval;
}

void Elector::concede(const Message& m, Nanos now) {
  set_state(State::Conceding);
  conceded_to_ = m.sender;
  concede_deadline_ = now + dead_interval();
}

void Elector::recv(const Message& m, Nanos now, int64_t wall_ms) {
  if (m.sender == cfg_.id) {
    // Our own, looped back; from another boot, another process uses our
    // id: each takes the other's messages for its own and ignores them,
    // so both may lead. Said once per such process.
    if (m.boot != boot_ && clashing_boots_.size() < 16 && clashing_boots_.insert(m.boot).second)
      warnings_.push_back(
          "another cm-elect on the segment uses this server's id '" + cfg_.id +
          "': each ignores the other's messages, so both may lead; give each server its own --id");
    return;
  }
  if (m.kind != Kind::LeaderResign)
    heard(m, now);
  switch (m.kind) {
    case Kind::LeaderAlive:
      switch (state_) {
        case State::Me:
          // Two leaders (a partition healed): the weaker yields, the
          // stronger says so at once.
          if (beats_me(m)) {
            members_.clear();
            set_state(State::Known);
            set_leader(m.sender, m.priority, static_cast<Nanos>(m.interval_ms) * kMs);
            last_la_ = now;
          } else {
            send(Kind::LeaderAlive, wall_ms);
          }
          return;
        case State::Open:
          // A live leader answered our claim. With preemption a better
          // claim stands; otherwise we follow it.
          if (cfg_.preempt && !beats_me(m) && priority() > m.priority + cfg_.preempt_margin) {
            send(Kind::LeaderClaim, wall_ms);
            return;
          }
          set_state(State::Known);
          set_leader(m.sender, m.priority, static_cast<Nanos>(m.interval_ms) * kMs);
          last_la_ = now;
          return;
        default:
          // Follow the best leader heard.
          if (state_ == State::Known && !leader_.empty() && m.sender != leader_ &&
              beats(leader_prio_, leader_, m.priority, m.sender) && now - last_la_ < dead_interval())
            return;
          set_state(State::Known);
          set_leader(m.sender, m.priority, static_cast<Nanos>(m.interval_ms) * kMs);
          last_la_ = now;
          // A better candidate than the live leader takes over, if allowed.
          if (cfg_.preempt && can_lead() && priority() > m.priority + cfg_.preempt_margin)
            claim(now, wall_ms);
          return;
      }
    case Kind::LeaderClaim:
      switch (state_) {
        case State::Me:
          if (cfg_.preempt && beats_me(m) && m.priority > priority() + cfg_.preempt_margin) {
            // A better candidate: step down.
            members_.clear();
            concede(m, now);
          } else {
            // Answer a weaker claim at once: the leader is alive.
            send(Kind::LeaderAlive, wall_ms);
          }
          return;
        case State::Open:
          if (beats_me(m))
            concede(m, now);
          else
            send(Kind::LeaderClaim, wall_ms);  // our claim stands
          return;
        case State::Unknown:
          if (beats_me(m) || !can_lead())
            concede(m, now);
          else
            claim(now, wall_ms);  // a weaker claim: ours goes out now
          return;
        case State::Conceding:
          if (m.sender == conceded_to_ || beats(m.priority, m.sender, 0, conceded_to_))
            concede_deadline_ = now + dead_interval();
          return;
        case State::Known: return;  // the leader answers it
      }
      return;
    case Kind::LeaderResign:
      candidates_.erase(m.sender);
      if (m.sender == leader_ && state_ != State::Me) {
        leader_.clear();
        events_.push_back(Event{Event::LeaderChanged, ""});
        become_unknown(now, m.sender);
      }
      return;
    case Kind::Register:
      if (state_ == State::Me)
        on_register(m, now);
      return;
    case Kind::Report:
      if (m.sender == leader_ && state_ != State::Me)
        on_report(m, now);
      return;
  }
}

void Elector::on_register(const Message& m, Nanos now) {
  auto it = members_.find(m.sender);
  if (it == members_.end()) {
    members_[m.sender] = Member{m.sender, m.name, m.address, m.caps, m.port, m.priority, now, now};
    events_.push_back(Event{Event::Joined, m.sender});
    report_due_ = now + cfg_.report_delay;  // a little after the last new one
    return;
  }
  Member& mem = it->second;
  if (mem.name != m.name || mem.address != m.address || mem.port != m.port || mem.caps != m.caps) {
    mem.name = m.name;
    mem.address = m.address;
    mem.port = m.port;
    mem.caps = m.caps;
    report_due_ = now + cfg_.report_delay;
  }
  mem.priority = m.priority;
  mem.last_seen = now;
}

void Elector::on_report(const Message& m, Nanos now) {
  auto& parts = report_parts_[m.report_seq];
  parts.insert(parts.end(), m.hashes.begin(), m.hashes.end());
  // Parts of a report come together; a report is judged once its last
  // part arrives (a lost part means we simply wait for the next report).
  if (m.part + 1 < m.parts)
    return;
  bool listed = std::find(parts.begin(), parts.end(), id_hash(cfg_.id)) != parts.end();
  report_parts_.clear();
  if (listed) {
    if (!registered_)
      events_.push_back(Event{Event::Registered, leader_});
    registered_ = true;
  } else {
    registered_ = false;
    next_reg_ =
        now + static_cast<Nanos>(rng_() % static_cast<uint64_t>(std::max<Nanos>(cfg_.reregister_max, 1)));
  }
}

void Elector::send_report(Nanos now, int64_t wall_ms) {
  std::vector<uint64_t> all;
  for (const auto& [id, mem] : members_)
    all.push_back(id_hash(id));
  report_seq_++;
  uint32_t parts = static_cast<uint32_t>(std::max<size_t>(1, (all.size() + kReportChunk - 1) / kReportChunk));
  for (uint32_t p = 0; p < parts; p++) {
    Message m;
    m.kind = Kind::Report;
    m.sender = cfg_.id;
    m.priority = priority();
    m.boot = boot_;
    m.counter = ++counter_;
    m.time_ms = wall_ms;
    m.report_seq = report_seq_;
    m.part = p;
    m.parts = parts;
    size_t from = p * kReportChunk;
    size_t to = std::min(all.size(), from + kReportChunk);
    m.hashes.assign(all.begin() + static_cast<ptrdiff_t>(from), all.begin() + static_cast<ptrdiff_t>(to));
    out_.push_back(std::move(m));
  }
  report_due_ = -1;
  next_report_ = now + cfg_.report_interval;
}

void Elector::member_tick(Nanos now, int64_t wall_ms) {
  if (leader_.empty() || state_ == State::Me || now < next_reg_)
    return;
  send(Kind::Register, wall_ms);
  next_reg_ = now + cfg_.member_interval;
}

void Elector::leader_tick(Nanos now, int64_t wall_ms) {
  for (auto it = members_.begin(); it != members_.end();) {
    if (it->first != cfg_.id && now - it->second.last_seen > cfg_.member_timeout) {
      events_.push_back(Event{Event::Left, it->first});
      it = members_.erase(it);
      report_due_ = now + cfg_.report_delay;
    } else {
      ++it;
    }
  }
  members_[cfg_.id].last_seen = now;
  if ((report_due_ >= 0 && now >= report_due_) || now >= next_report_)
    send_report(now, wall_ms);
}

void Elector::tick(Nanos now, int64_t wall_ms) {
  // A stall of our own (a busy host) is not the leader's fault: give it a
  // fresh dead interval instead of deposing it.
  if (last_tick_ > 0 && now - last_tick_ > 2 * cfg_.la_interval && state_ == State::Known)
    last_la_ = std::max(last_la_, now - cfg_.la_interval);
  last_tick_ = now;
  switch (state_) {
    case State::Known:
      if (now - last_la_ > dead_interval()) {
        std::string lost = leader_;
        leader_.clear();
        events_.push_back(Event{Event::LeaderChanged, ""});
        become_unknown(now, lost);
      }
      break;
    case State::Unknown:
      if (can_lead() && now >= claim_at_)
        claim(now, wall_ms);
      break;
    case State::Conceding:
      if (now >= concede_deadline_)
        become_unknown(now, conceded_to_);
      break;
    case State::Open:
      if (now >= vote_deadline_) {
        lead(now, wall_ms);
      } else if (now >= next_lc_ && lc_sent_ < 3) {
        // Claims are resent within the window: one lost LC, or one lost
        // answer from a live leader, must not make a second leader.
        send(Kind::LeaderClaim, wall_ms);
        lc_sent_++;
        next_lc_ = now + window() / 3;
      }
      break;
    case State::Me:
      if (now >= next_la_) {
        send(Kind::LeaderAlive, wall_ms);
        next_la_ += cfg_.la_interval;
        if (next_la_ < now)
          next_la_ = now + cfg_.la_interval;
      }
      last_led_ = now;
      leader_tick(now, wall_ms);
      break;
  }
  member_tick(now, wall_ms);
}

void Elector::stop(Nanos now, int64_t wall_ms) {
  (void)now;
  if (state_ == State::Me)
    send(Kind::LeaderResign, wall_ms);
}

Nanos Elector::next_wakeup() const {
  Nanos t = last_tick_ + cfg_.la_interval;
  auto consider = [&](Nanos x) {
    if (x > 0)
      t = std::min(t, x);
  };
  switch (state_) {
    case State::Known: consider(last_la_ + dead_interval() + 1); break;
    case State::Unknown:
      if (can_lead())
        consider(claim_at_);
      break;
    case State::Conceding: consider(concede_deadline_); break;
    case State::Open:
      consider(vote_deadline_);
      if (lc_sent_ < 3)
        consider(next_lc_);
      break;
    case State::Me:
      consider(next_la_);
      if (report_due_ >= 0)
        consider(report_due_);
      consider(next_report_);
      break;
  }
  if (!leader_.empty() && state_ != State::Me)
    consider(next_reg_);
  return t;
}

std::vector<Message> Elector::take_outgoing() {
  std::vector<Message> out;
  out.swap(out_);
  return out;
}

std::vector<std::string> Elector::take_warnings() {
  std::vector<std::string> w;
  w.swap(warnings_);
  return w;
}

std::vector<Event> Elector::take_events() {
  std::vector<Event> e;
  e.swap(events_);
  return e;
}

}  // namespace cm::elect
