#include "push/plan.hpp"

#include <algorithm>
#include <cmath>
#include <cstdlib>

namespace cm::push {

namespace {

bool active(const LeaderState& l) {
  return l.state == "notified" || l.state == "receiving";
}

// A leader first named by a fetcher as a source that failed it is given
// this long (a few heartbeats) before it counts as dead.
constexpr int64_t kSuspectMs = 3000;

}  // namespace

Plan::Plan(JobMeta meta, std::vector<Leader> leaders, size_t quorum, bool cut_through, PlanOptions opt)
    : meta_(std::move(meta)), quorum_(quorum), cut_through_(cut_through), opt_(opt) {
  for (Leader& l : leaders) {
    LeaderState s;
    s.who = std::move(l);
    leaders_.push_back(std::move(s));
  }
}

LeaderState* Plan::get(const std::string& id) {
  for (LeaderState& l : leaders_)
    if (l.who.id == id)
      return &l;
  return nullptr;
}

const LeaderState* Plan::find(const std::string& id) const {
  for (const LeaderState& l : leaders_)
    if (l.who.id == id)
      return &l;
  return nullptr;
}

bool Plan::holder(const LeaderState& l) const {
  return l.state == "complete" || l.state == "delivered" || (cut_through_ && active(l));
}

void Plan::notify(LeaderState& l, const std::string& source, int64_t now, int64_t wall,
                  std::vector<Notice>& out) {
  l.source = source;
  if (l.state == "pending")
    l.state = "notified";
  l.last_heard = now;
  if (l.started_ms == 0)
    l.started_ms = wall;
  if (source == kManager)
    manager_serving_++;
  else if (LeaderState* s = get(source))
    s->serving++;
  out.push_back(Notice{l.who.id, source});
}

void Plan::release_source(const LeaderState& l) {
  if (l.source == kManager) {
    if (manager_serving_ > 0)
      manager_serving_--;
  } else if (LeaderState* s = get(l.source); s != nullptr && s->serving > 0) {
    s->serving--;
  }
}

std::vector<Notice> Plan::start(int64_t now, int64_t wall) {
  created_ms_ = wall;
  std::vector<Notice> out;
  fill_manager(now, wall, out);
  check(wall);
  return out;
}

Answer Plan::next(const std::string& id, int64_t now, int64_t wall, std::vector<Notice>& out) {
  LeaderState* h = get(id);
  if (done_ || h == nullptr || h->state == "failed")
    return Answer{Answer::None, "", 0};
  h->last_heard = std::max(h->last_heard, now);
  // The next leader waiting, from the holder's own location if there is one.
  LeaderState* pick = nullptr;
  for (LeaderState& l : leaders_)
    if (l.state == "pending" &&
        (pick == nullptr || (l.who.location == h->who.location && pick->who.location != h->who.location)))
      pick = &l;
  if (pick == nullptr)
    return Answer{Answer::None, "", 0};
  if (!holder(*h) || h->serving >= opt_.leader_fanout)
    return Answer{Answer::Wait, "", 200};
  notify(*pick, h->who.id, now, wall, out);
  return Answer{Answer::Target, pick->who.id, 0};
}

// The manager serves the next leaders waiting whenever it has room (the
// seed's tree without cut-through: it keeps serving while leaders do), and
// every one of them when the job is small enough for a star.
void Plan::fill_manager(int64_t now, int64_t wall, std::vector<Notice>& out) {
  bool star = opt_.star_bytes > 0 && meta_.size <= opt_.star_bytes / std::max<size_t>(leaders_.size(), 1);
  for (LeaderState& l : leaders_) {
    if (!star && manager_serving_ >= opt_.manager_fanout)
      break;
    if (l.state == "pending")
      notify(l, kManager, now, wall, out);
  }
}

std::string Plan::status(const std::string& id, const std::string& state, uint64_t bytes,
                         const std::string& source, const std::string& why, int64_t now, int64_t wall,
                         std::vector<Notice>& out) {
  LeaderState* l = get(id);
  if (l == nullptr)
    return "'" + id + "' is not a leader of job " + std::to_string(meta_.id);
  l->last_heard = now;
  if (state == "complete" && replaced(*l))
    return {};  // stays failed: serve tells it it was given up on
  if (state == "complete") {
    if (l->state == "failed")
      l->failure = "failed, then recovered: " + l->failure;
    if (l->state != "delivered" && l->state != "complete") {
      // A failed leader gave its slot back when it failed.
      if (active(*l))
        release_source(*l);
      l->state = "complete";
      l->completed_ms = wall;
    }
    l->bytes = meta_.size;
  } else if (state == "failed") {
    // It cannot hold the copy (its disk): failed now, its targets to
    // other holders, rather than when it falls silent.
    fail(*l, "its copy failed: " + (why.empty() ? std::string("no reason given") : why), now, wall, out);
  } else if (l->state == "failed") {
    return {};  // given up on: serve tells it so
  } else if (state == "receiving") {
    if (l->state == "notified")
      l->state = "receiving";
    l->bytes = std::max(l->bytes, std::min(bytes, meta_.size));
  } else if (state == "source-failed") {
    std::string src = source.empty() ? l->source : source;
    if (src == l->source && active(*l)) {
      l->bytes = std::max(l->bytes, std::min(bytes, meta_.size));
      l->failed_sources.push_back(src + (why.empty() ? "" : ": " + why));
      if (LeaderState* s = get(src); s != nullptr && s->state != "failed")
        s->last_heard = std::min(s->last_heard, now - opt_.stall_ms + kSuspectMs);
      reassign(*l, now, wall, out, get(src));
    }
  } else if (state != "delivering") {
    return "unknown state '" + state + "'";
  }
  fill_manager(now, wall, out);
  check(wall);
  return {};
}

std::string Plan::delivered(const std::string& id, int exit, const nlohmann::json& group, int64_t now,
                            int64_t wall) {
  LeaderState* l = get(id);
  if (l == nullptr)
    return "'" + id + "' is not a leader of job " + std::to_string(meta_.id);
  if (replaced(*l))
    return "'" + id + "' was replaced by its segment's new leader: its delivery is not counted";
  if (l->state == "failed")
    l->failure = "failed, then recovered: " + l->failure;
  // Its "complete" may have been lost (the manager unreachable for the
  // agent's two minutes): a delivery says the copy was verified whole.
  // Only a leader never told of the job cannot have delivered it.
  if (l->state == "pending")
    return "'" + id + "' delivered a copy of a job it was never told of";
  if (active(*l))
    release_source(*l);
  if (l->completed_ms == 0)
    l->completed_ms = wall;
  l->state = "delivered";
  l->bytes = meta_.size;
  l->deliver_exit = exit;
  l->group = group;
  l->last_heard = now;
  check(wall);
  return {};
}

void Plan::unreachable(const std::string& id, const std::string& why, int64_t now, int64_t wall,
                       std::vector<Notice>& out) {
  if (LeaderState* l = get(id))
    fail(*l, "cannot notify it: " + why, now, wall, out);
}

void Plan::fail(LeaderState& l, const std::string& why, int64_t now, int64_t wall, std::vector<Notice>& out) {
  if (l.state == "failed" || l.state == "delivered")
    return;
  if (active(l))
    release_source(l);
  l.state = "failed";
  l.failure = why;
  l.serving = 0;
  // Those it was serving go to other holders, resuming where they are.
  for (LeaderState& d : leaders_)
    if (d.source == l.who.id && active(d)) {
      d.failed_sources.push_back(l.who.id + ": it failed");
      // Its slot on the failed leader is gone already.
      d.source.clear();
      reassign(d, now, wall, out);
    }
  fill_manager(now, wall, out);
  if (successor_) {
    std::string segment = l.who.segment;
    if (auto n = successor_(l); n && n->segment == segment) {
      done_ = false;  // (not done yet: check() below decides)
      replace_leader(*n, now, wall, out);
    }
  }
  check(wall);
}

void Plan::reassign(LeaderState& d, int64_t now, int64_t wall, std::vector<Notice>& out,
                    const LeaderState* lost) {
  release_source(d);
  // d lost a source that was still receiving, and says so before the plan
  // gives up on it: the lost leader's own source still counts a slot for
  // it, though a leader that died closed both its connections at once and
  // that slot is most likely free. (A lost leader that was complete gave
  // its slot back already: no extra slot then.) That source is ahead of d
  // in the chain (it served the lost leader what that one served d), so d
  // resumes from it, one hop back, instead of a second stream on the
  // manager's uplink beside the first leader's.
  const std::string* behind_lost = nullptr;
  if (lost != nullptr && active(*lost) && lost->source != kManager && cut_through_)
    behind_lost = &lost->source;
  auto failed_before = [&](const std::string& who) {
    for (const std::string& f : d.failed_sources)
      if (f.compare(0, who.size() + 1, who + ":") == 0 || f == who)
        return true;
    return false;
  };
  // A holder downstream of d would wait for d: never one of those (a whole
  // copy waits for no one, wherever it came from).
  auto downstream_of_d = [&](const LeaderState& h) {
    const LeaderState* p = &h;
    for (size_t n = 0; p != nullptr && n <= leaders_.size(); n++) {
      if (p->source == d.who.id)
        return true;
      p = find(p->source);
    }
    return false;
  };
  LeaderState* best = nullptr;
  for (LeaderState& h : leaders_) {
    bool whole = h.state == "complete" || h.state == "delivered";
    bool lost_ones = behind_lost != nullptr && h.who.id == *behind_lost;
    if (&h == &d || !holder(h) || h.serving >= opt_.leader_fanout + (lost_ones ? 1u : 0u) ||
        (h.bytes < d.bytes && !lost_ones) || failed_before(h.who.id) || (!whole && downstream_of_d(h)))
      continue;
    bool best_whole = best != nullptr && (best->state == "complete" || best->state == "delivered");
    if (best == nullptr || (whole && !best_whole) || (whole == best_whole && h.bytes > best->bytes))
      best = &h;
  }
  // A leader that has only just started is no better than the manager.
  // (The lost leader's source too: after a restart it may be starting over.)
  if (best != nullptr && best->state != "complete" && best->state != "delivered" && best->bytes == 0)
    best = nullptr;
  notify(d, best != nullptr ? best->who.id : kManager, now, wall, out);
}

void Plan::tick(int64_t now, int64_t wall, std::vector<Notice>& out) {
  // By index: fail() may append a failed leader's successor to leaders_,
  // which moves the vector, so no reference or iterator survives the call.
  for (size_t i = 0; i < leaders_.size(); i++) {
    LeaderState& l = leaders_[i];
    bool watched = active(l) || (meta_.deliver && l.state == "complete");
    if (watched && now - l.last_heard > opt_.stall_ms)
      fail(l, "silent for " + std::to_string((now - l.last_heard) / 1000) + " s (dead or stalled)", now, wall,
           out);
  }
  check(wall);
}

bool Plan::replace_leader(const Leader& fresh, int64_t now, int64_t wall, std::vector<Notice>& out) {
  if (done_ || fresh.segment.empty() || find(fresh.id) != nullptr)
    return false;
  LeaderState* old = nullptr;
  for (LeaderState& l : leaders_)
    if (l.who.segment == fresh.segment && l.state == "failed")
      old = &l;
  if (old == nullptr)
    return false;
  old->failure += "; replaced by " + fresh.id;
  LeaderState n;
  n.who = fresh;
  leaders_.push_back(n);
  // The holders ask NEXT only while leaders wait; the manager serves it if
  // none does.
  fill_manager(now, wall, out);
  if (find(fresh.id)->state == "pending") {
    for (LeaderState& h : leaders_)
      if (holder(h) && h.serving < opt_.leader_fanout && h.bytes == meta_.size) {
        notify(*get(fresh.id), h.who.id, now, wall, out);
        break;
      }
  }
  if (find(fresh.id)->state == "pending")
    notify(*get(fresh.id), kManager, now, wall, out);
  return true;
}

std::vector<Notice> Plan::resume(int64_t now) {
  std::vector<Notice> out;
  manager_serving_ = 0;
  for (LeaderState& l : leaders_) {
    l.serving = 0;
    l.last_heard = now;
  }
  for (LeaderState& l : leaders_) {
    if (!active(l))
      continue;
    if (l.source == kManager)
      manager_serving_++;
    else if (LeaderState* s = get(l.source))
      s->serving++;
    if (l.state == "notified")
      out.push_back(Notice{l.who.id, l.source.empty() ? kManager : l.source});
  }
  return out;
}

bool Plan::replaced(const LeaderState& l) const {
  if (l.state != "failed" || l.who.segment.empty())
    return false;
  for (const LeaderState& o : leaders_)
    if (&o != &l && o.who.segment == l.who.segment && o.state != "failed")
      return true;
  return false;
}

bool Plan::rejoin(const std::string& id, int64_t now, int64_t wall, std::vector<Notice>& out) {
  LeaderState* l = get(id);
  if (done_ || l == nullptr || l->state == "pending" || l->state == "delivered")
    return false;
  if (active(*l)) {
    // The same source again: its slot there was never given back, and a
    // source that failed would have had it reassigned already.
    l->last_heard = now;
    out.push_back(Notice{l->who.id, l->source.empty() ? kManager : l->source});
    return true;
  }
  if (l->state == "failed") {
    if (replaced(*l))
      return false;
    l->failure = "restarted after: " + l->failure;
  } else {
    // Complete: its copy may have gone with the restart (a tmpfs), and the
    // source it had may be gone too. Served again like a new leader; a copy
    // still whole on its disk is found at once and reported complete.
    l->bytes = 0;
  }
  // Its slot was given back when it failed or completed; reassign() takes one.
  l->source.clear();
  l->state = "pending";
  reassign(*l, now, wall, out);
  check(wall);
  return true;
}

void Plan::check(int64_t wall) {
  if (done_)
    return;
  for (const LeaderState& l : leaders_) {
    bool final = l.state == "failed" || l.state == "delivered" || (!meta_.deliver && l.state == "complete");
    if (!final)
      return;
  }
  done_ = true;
  finished_ms_ = wall;
}

size_t Plan::leaders_ok() const {
  size_t ok = 0;
  for (const LeaderState& l : leaders_)
    ok += meta_.deliver ? (l.state == "delivered" && l.deliver_exit == 0)
                        : (l.state == "complete" || l.state == "delivered");
  return ok;
}

bool Plan::succeeded() const {
  return done_ && leaders_ok() >= quorum_;
}

nlohmann::json Plan::json() const {
  nlohmann::json leaders = nlohmann::json::array();
  size_t servers = 0, servers_ok = 0;
  for (const LeaderState& l : leaders_) {
    nlohmann::json j{{"id", l.who.id},
                     {"address", l.who.agent.str()},
                     {"location", l.who.location},
                     {"segment", l.who.segment},
                     {"priority", l.who.priority},
                     {"state", l.state},
                     {"source", l.source},
                     {"bytes", l.bytes}};
    if (!l.failed_sources.empty())
      j["failed_sources"] = l.failed_sources;
    if (l.started_ms > 0)
      j["started_ms"] = l.started_ms;
    if (l.completed_ms > 0)
      j["completed_ms"] = l.completed_ms;
    if (l.started_ms > 0 && l.completed_ms > 0)
      j["seconds"] = static_cast<double>(l.completed_ms - l.started_ms) / 1000.0;
    if (l.deliver_exit >= 0)
      j["deliver_exit"] = l.deliver_exit;
    if (!l.group.is_null())
      j["group"] = l.group;
    if (!l.failure.empty())
      j["failure"] = l.failure;
    if (l.group.is_object() && l.group.contains("members") && l.group["members"].is_array())
      for (const auto& m : l.group["members"]) {
        if (!counted_member(m))
          continue;
        servers++;
        servers_ok += m.is_object() && m.contains("succeeded") && m["succeeded"].is_boolean() &&
                      m["succeeded"].get<bool>();
      }
    leaders.push_back(j);
  }
  nlohmann::json j{{"job", meta_.id},
                   {"name", meta_.name},
                   {"bytes", meta_.size},
                   {"sha256", to_hex(meta_.sha256)},
                   {"chunk_size", meta_.chunk_size},
                   {"cut_through", cut_through_},
                   {"deliver", meta_.deliver},
                   {"quorum", quorum_},
                   {"done", done_},
                   {"leaders_ok", leaders_ok()},
                   {"succeeded", succeeded()},
                   {"servers", {{"reported", servers}, {"ok", servers_ok}}},
                   {"created_ms", created_ms_},
                   {"leaders", leaders}};
  if (finished_ms_ > 0) {
    j["finished_ms"] = finished_ms_;
    j["seconds"] = static_cast<double>(finished_ms_ - created_ms_) / 1000.0;
  }
  return j;
}

Plan Plan::from_json(const nlohmann::json& j, JobMeta meta, PlanOptions opt) {
  Plan p;
  p.meta_ = std::move(meta);
  p.opt_ = opt;
  p.meta_.deliver = j.at("deliver").get<bool>();
  p.cut_through_ = j.at("cut_through").get<bool>();
  p.quorum_ = j.at("quorum").get<size_t>();
  p.done_ = j.at("done").get<bool>();
  p.created_ms_ = j.at("created_ms").get<int64_t>();
  p.finished_ms_ = j.value("finished_ms", int64_t{0});
  for (const auto& x : j.at("leaders")) {
    LeaderState l;
    l.who.id = x.at("id").get<std::string>();
    auto e = net::parse_endpoint(x.at("address").get<std::string>());
    if (e.ok())
      l.who.agent = *e;
    l.who.location = x.value("location", std::string());
    l.who.segment = x.value("segment", std::string());
    l.who.priority = x.value("priority", uint32_t{0});
    l.state = x.at("state").get<std::string>();
    l.source = x.value("source", std::string());
    l.bytes = x.value("bytes", uint64_t{0});
    if (x.contains("failed_sources"))
      l.failed_sources = x["failed_sources"].get<std::vector<std::string>>();
    l.started_ms = x.value("started_ms", int64_t{0});
    l.completed_ms = x.value("completed_ms", int64_t{0});
    l.deliver_exit = x.value("deliver_exit", -1);
    if (x.contains("group"))
      l.group = x["group"];
    l.failure = x.value("failure", std::string());
    p.leaders_.push_back(std::move(l));
  }
  return p;
}

}  // namespace cm::push
