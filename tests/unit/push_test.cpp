// cm-push: the message codec, the job's chunk table, the leaders file, and
// the manager's tree (Plan) driven in simulated time: who fetches from
// whom, with and without cut-through, and what happens when a leader dies,
// stalls, or the manager restarts.
#include <gtest/gtest.h>

#include <map>
#include <set>

#include "push/client.hpp"
#include "push/job.hpp"
#include "push/plan.hpp"
#include "push/proto.hpp"
#include "push/recent.hpp"
#include "support.hpp"

using namespace cm;
using namespace cm::push;
using cm::test::TempDir;
using cm::test::write_file;

namespace {

JobMeta meta_of(uint64_t size, uint32_t chunk = 4096) {
  JobMeta m;
  m.id = 7;
  m.name = "site.cmpack";
  m.size = size;
  m.chunk_size = chunk;
  std::string data(size, 'x');
  for (uint64_t i = 0; i < m.chunk_count(); i++)
    m.chunks.push_back(sha256(std::string_view(data).substr(i * chunk, m.chunk_length(i))));
  m.sha256 = sha256(data);
  return m;
}

std::vector<Leader> leaders(int n, const std::vector<std::string>& locations = {}) {
  std::vector<Leader> v;
  for (int i = 1; i <= n; i++) {
    Leader l;
    l.id = "l" + std::to_string(i);
    l.agent = *net::parse_endpoint("10.0.0." + std::to_string(i) + ":7801");
    l.location = locations.empty() ? "" : locations[static_cast<size_t>(i - 1) % locations.size()];
    v.push_back(l);
  }
  return v;
}

// n leaders, each in its own segment (seg1 ... segN).
std::vector<Leader> segmented_leaders(int n) {
  std::vector<Leader> v = leaders(n);
  for (size_t i = 0; i < v.size(); i++)
    v[i].segment = "seg" + std::to_string(i + 1);
  return v;
}

// When a leader of `segment` fails, the segment has elected l9 (what
// serve finds in its registry).
void elect_l9_in(Plan& p, const std::string& segment) {
  Leader next;
  next.id = "l9";
  next.segment = segment;
  next.agent = *net::parse_endpoint("10.0.0.9:7801");
  p.set_successor([next](const LeaderState& l) -> std::optional<Leader> {
    if (l.who.segment == next.segment)
      return next;
    return std::nullopt;
  });
}

// The agents' side, simulated: every notified leader asks NEXT until
// NONE, reports receiving, and completes `speed` ms after it started,
// unless dead.
struct Sim {
  explicit Sim(Plan p) : plan(std::move(p)) {}
  Plan plan;
  int64_t now = 0;
  std::map<std::string, std::string> source;  // leader -> current source
  std::set<std::string> dead, stalled;
  std::map<std::string, int64_t> since;  // when it got its current source
  std::vector<std::pair<std::string, std::string>> notices;
  int64_t copy_ms = 1000;  // how long one copy takes

  void apply(const std::vector<Notice>& ns) {
    for (const Notice& n : ns) {
      source[n.leader] = n.source;
      since[n.leader] = now;
      notices.emplace_back(n.leader, n.source);
    }
  }
  void step(int64_t ms, bool cut_through) {
    now += ms;
    std::vector<Notice> out;
    for (const LeaderState& l : plan.leaders()) {
      const std::string& id = l.who.id;
      if (dead.count(id) || stalled.count(id) || !source.count(id))
        continue;
      if (l.state == "notified" || l.state == "receiving") {
        const std::string& src = source[id];
        if (src != kManager && dead.count(src)) {
          plan.status(id, "source-failed", l.bytes, src, "connection lost", now, now, out);
          continue;
        }
        bool src_whole =
            src == kManager || plan.find(src)->state == "complete" || plan.find(src)->state == "delivered";
        if (now - since[id] >= copy_ms && (src_whole || cut_through))
          plan.status(id, "complete", 0, "", "", now, now, out);
        else
          plan.status(id, "receiving", l.bytes + 1000, "", "", now, now, out);
      } else if (l.state == "complete") {
        plan.delivered(id, 0, nlohmann::json{{"members", {{{"id", "s"}, {"succeeded", true}}}}}, now, now);
      }
      if (plan.find(id)->state != "failed" &&
          (cut_through || plan.find(id)->state == "complete" || plan.find(id)->state == "delivered"))
        plan.next(id, now, now, out);
    }
    plan.tick(now, now, out);
    apply(out);
  }
  bool run(bool cut_through, int max_steps = 1000) {
    for (int i = 0; i < max_steps && !plan.done(); i++)
      step(50, cut_through);
    return plan.done();
  }
};

}  // namespace

TEST(PushProto, RoundTrip) {
  Message m{Msg::Chunk, {{"offset", 4096}}, std::string("\0\1\2", 3)};
  std::string bytes = encode(m);
  StringReader r(bytes);
  auto back = receive(r, "peer");
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->type, Msg::Chunk);
  EXPECT_EQ(*back->num("offset"), 4096u);
  EXPECT_EQ(back->blob, std::string("\0\1\2", 3));
  EXPECT_FALSE(back->str("offset").ok());
}

namespace {
// Hands out at most `step` bytes per read, as a TLS stream does per record.
class DribbleReader : public Reader {
 public:
  DribbleReader(std::string data, size_t step) : data_(std::move(data)), step_(step) {}
  Result<size_t> read(void* buf, size_t n) override {
    size_t k = std::min({n, step_, data_.size() - pos_});
    std::memcpy(buf, data_.data() + pos_, k);
    pos_ += k;
    return k;
  }
  const std::string& name() const override { return name_; }

 private:
  std::string data_, name_ = "dribble";
  size_t step_, pos_ = 0;
};
}  // namespace

// Chunks read straight into their own string, past the first read of the
// head; long JSON heads; several messages back to back on one stream.
TEST(PushProto, LargeBlobsAndHeadsRoundTrip) {
  std::string big(300000, '\0');
  for (size_t i = 0; i < big.size(); i++)
    big[i] = static_cast<char>(i * 131 % 251);
  std::string long_text(5000, 'x');
  std::vector<Message> ms = {
      Message{Msg::Chunk, {{"offset", 262144}}, big},
      Message{Msg::Notify, {{"name", long_text}}, big.substr(0, 20000)},
      Message{Msg::Notify, {{"name", long_text}}, ""},
      Message{Msg::Chunk, {{"offset", 0}}, big.substr(0, 1000)},
      Message{Msg::Ok, {{"end", true}}, ""},
  };
  StringWriter w;
  for (const Message& m : ms) {
    size_t before = w.data().size();
    ASSERT_TRUE(send(w, m.type, m.body, m.blob).ok());
    EXPECT_EQ(w.data().substr(before), encode(m));
  }
  for (size_t step : {size_t{1} << 20, size_t{16384}, size_t{7}}) {
    DribbleReader r(w.data(), step);
    for (const Message& m : ms) {
      auto back = receive(r, "peer");
      ASSERT_TRUE(back.ok()) << back.error().message;
      EXPECT_EQ(back->type, m.type);
      EXPECT_EQ(back->body, m.body);
      EXPECT_EQ(back->blob, m.blob) << step;
    }
    auto end = receive(r, "peer");
    ASSERT_FALSE(end.ok());
    EXPECT_NE(end.error().message.find("closed the connection"), std::string::npos);
  }
  // Cut inside the blob of a chunk: an error naming how much came.
  std::string chunk = encode(ms[0]);
  StringReader cut(chunk.substr(0, 100000));
  auto m = receive(cut, "peer");
  ASSERT_FALSE(m.ok());
  EXPECT_NE(m.error().message.find("truncated message (99996 of"), std::string::npos) << m.error().message;
}

// What a leader keeps to serve from memory while it receives.
TEST(PushRecent, KeepsTheNewestChunksWithinItsBudget) {
  RecentChunks r(3000);
  EXPECT_EQ(r.get(0), nullptr);
  for (uint64_t i = 0; i < 10; i++)
    r.keep(i, std::string(1000, static_cast<char>('a' + i)));
  EXPECT_EQ(r.bytes(), 3000u);
  EXPECT_EQ(r.get(6), nullptr);  // dropped: a reader this far behind reads the copy
  ASSERT_NE(r.get(7), nullptr);
  EXPECT_EQ(*r.get(7), std::string(1000, 'h'));
  EXPECT_EQ(*r.get(9), std::string(1000, 'j'));
  EXPECT_EQ(r.get(10), nullptr);
  auto held = r.get(8);
  r.keep(10, std::string(5000, 'k'));  // larger than the budget: kept alone
  EXPECT_EQ(r.bytes(), 5000u);
  EXPECT_EQ(r.get(9), nullptr);
  EXPECT_EQ(*held, std::string(1000, 'i'));  // a reader's chunk outlives its place
  EXPECT_EQ(r.get(10)->size(), 5000u);
  r.keep(20, "x");  // not the next one: what was kept goes
  EXPECT_EQ(r.get(10), nullptr);
  EXPECT_EQ(*r.get(20), "x");
  EXPECT_EQ(r.bytes(), 1u);
  r.clear();
  EXPECT_EQ(r.get(20), nullptr);
  EXPECT_EQ(r.bytes(), 0u);
}

TEST(PushProto, RejectsMalformedAndTruncated) {
  std::string good = encode(Message{Msg::Status, {{"job", 1}}, ""});
  for (size_t cut = 1; cut < good.size(); cut++) {
    StringReader r(good.substr(0, cut));
    auto m = receive(r, "peer");
    ASSERT_FALSE(m.ok()) << cut;
    EXPECT_NE(m.error().message.find("peer"), std::string::npos);
  }
  std::string bad_type = good;
  bad_type[4] = 99;
  StringReader r1(bad_type);
  EXPECT_NE(receive(r1, "p").error().message.find("unknown type"), std::string::npos);
  std::string huge = good;
  huge[0] = 0x7f;
  StringReader r2(huge);
  EXPECT_NE(receive(r2, "p").error().message.find("length"), std::string::npos);
  std::string not_object = encode(Message{Msg::Ok, nlohmann::json::array({1, 2}), ""});
  StringReader r3(not_object);
  EXPECT_NE(receive(r3, "p").error().message.find("not a JSON object"), std::string::npos);
}

TEST(PushJob, TableRoundTripAndChecks) {
  JobMeta m = meta_of(10000);
  Message n;
  m.put(n);
  auto back = JobMeta::get(n);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->chunks, m.chunks);
  EXPECT_EQ(back->chunk_count(), 3u);
  EXPECT_EQ(back->chunk_length(2), 10000u - 8192u);
  Message short_table = n;
  short_table.blob.pop_back();
  EXPECT_FALSE(JobMeta::get(short_table).ok());
  for (const char* bad : {"../x", "", ".hidden", "a/b"}) {
    Message b = n;
    b.body["name"] = bad;
    EXPECT_FALSE(JobMeta::get(b).ok()) << bad;
  }
  Message tiny = n;
  tiny.body["chunk_size"] = 100;
  EXPECT_FALSE(JobMeta::get(tiny).ok());
}

TEST(PushJob, ASmallFileTravelsInsideItsNotify) {
  TempDir d;
  std::string data(10000, 'x');
  for (size_t i = 0; i < data.size(); i++)
    data[i] = static_cast<char>(i * 13);
  write_file(d.path() + "/a7", data);
  auto meta = describe_file(d.path() + "/a7", 7, 4096);
  ASSERT_TRUE(meta.ok());
  Message m;
  m.type = Msg::Notify;
  meta->put(m);
  meta->put_inline(m, data);
  auto back = JobMeta::get(m);
  ASSERT_TRUE(back.ok()) << back.error().message;
  EXPECT_EQ(back->chunks.size(), 3u);
  auto got = back->inline_data(m);
  ASSERT_TRUE(got.ok()) << got.error().message;
  EXPECT_EQ(*got, data);
  // Without the flag: no inline file, and the extra bytes are refused.
  Message plain = m;
  plain.body.erase("inline");
  EXPECT_FALSE(JobMeta::get(plain).ok());
  meta->put(plain);
  EXPECT_EQ(*JobMeta::get(plain)->inline_data(plain), "");
  // A flipped byte fails its chunk; a short file fails the size.
  Message bad = m;
  bad.blob[bad.blob.size() - 5] ^= 1;
  ASSERT_TRUE(JobMeta::get(bad).ok());
  auto e = JobMeta::get(bad)->inline_data(bad);
  ASSERT_FALSE(e.ok());
  EXPECT_NE(e.error().message.find("chunk 2"), std::string::npos) << e.error().message;
  Message shorter = m;
  shorter.blob.pop_back();
  EXPECT_FALSE(JobMeta::get(shorter).ok());
  // Too large to be inline.
  Message big = m;
  big.body["size"] = kInlineBytes + 1;
  EXPECT_FALSE(JobMeta::get(big).ok());
}

TEST(PushJob, DescribeFile) {
  TempDir d;
  std::string data(700000, '\0');
  for (size_t i = 0; i < data.size(); i++)
    data[i] = static_cast<char>(i * 7 + i / 1000);
  write_file(d.path() + "/f", data);
  auto m = describe_file(d.path() + "/f", 3, 262144);
  ASSERT_TRUE(m.ok()) << m.error().message;
  EXPECT_EQ(m->size, data.size());
  EXPECT_EQ(m->sha256, sha256(data));
  ASSERT_EQ(m->chunks.size(), 3u);
  EXPECT_EQ(m->chunks[2], sha256(std::string_view(data).substr(2 * 262144)));
}

TEST(PushJob, DescribeFileAcrossReadBatches) {
  // Read 4 MiB at a time, the whole file's digest hashed beside the chunks':
  // the same table and digest as one pass over the bytes.
  TempDir d;
  std::string data((9u << 20) + 100, '\0');
  for (size_t i = 0; i < data.size(); i++)
    data[i] = static_cast<char>(i * 31 + i / 4099);
  write_file(d.path() + "/f", data);
  for (uint32_t chunk : {4096u, 262144u, 3u << 20}) {
    auto m = describe_file(d.path() + "/f", 1, chunk);
    ASSERT_TRUE(m.ok()) << m.error().message;
    EXPECT_EQ(m->size, data.size());
    EXPECT_EQ(m->sha256, sha256(data));
    ASSERT_EQ(m->chunks.size(), (data.size() + chunk - 1) / chunk);
    for (size_t i = 0; i < m->chunks.size(); i += 97)
      EXPECT_EQ(m->chunks[i], sha256(std::string_view(data).substr(i * chunk, chunk))) << chunk << " " << i;
    EXPECT_EQ(m->chunks.back(), sha256(std::string_view(data).substr((m->chunks.size() - 1) * chunk)));
  }
}

TEST(PushLeaders, TextAndJson) {
  auto t = parse_leaders("# the tree's order\nl1 10.0.0.1 east\nl2 10.0.0.2:9000\n\n", "f", 7801);
  ASSERT_TRUE(t.ok()) << t.error().message;
  ASSERT_EQ(t->size(), 2u);
  EXPECT_EQ((*t)[0]["address"], "10.0.0.1:7801");
  EXPECT_EQ((*t)[0]["location"], "east");
  EXPECT_EQ((*t)[1]["address"], "10.0.0.2:9000");
  auto j = parse_leaders(R"([{"id":"a","address":"10.1.1.1"}])", "f", 7801);
  ASSERT_TRUE(j.ok());
  EXPECT_EQ((*j)[0]["address"], "10.1.1.1:7801");
  EXPECT_NE(parse_leaders("l1\n", "f", 1).error().message.find("f:1"), std::string::npos);
  EXPECT_FALSE(parse_leaders("l1 nowhere\n", "f", 1).ok());
  EXPECT_FALSE(parse_leaders("# nothing\n", "f", 1).ok());
  EXPECT_FALSE(parse_leaders("[{\"id\":1}]", "f", 1).ok());
  // A leader listed twice, in either form: malformed input, named.
  for (const char* twice : {"l1 10.0.0.1\nl2 10.0.0.2\nl1 10.0.0.3\n",
                            R"([{"id":"a","address":"10.1.1.1"},{"id":"a","address":"10.1.1.2"}])"}) {
    auto d = parse_leaders(twice, "f", 1);
    ASSERT_FALSE(d.ok()) << twice;
    EXPECT_EQ(d.error().code, cm::kExitBadInput);
    EXPECT_NE(d.error().message.find("twice"), std::string::npos) << d.error().message;
  }
}

TEST(PushPlan, CutThroughBuildsAChainAtOnce) {
  Sim s(Plan(meta_of(100000), leaders(8), 8, true, PlanOptions{}));
  s.apply(s.plan.start(0, 0));
  ASSERT_EQ(s.notices.size(), 1u);
  EXPECT_EQ(s.notices[0], std::make_pair(std::string("l1"), std::string(kManager)));
  // One round trip of NEXT per leader and every leader has a source, long
  // before the first copy is whole: l(k) from l(k-1).
  for (int i = 0; i < 8 && s.source.size() < 8; i++)
    s.step(50, true);
  std::map<std::string, std::string> src(s.source.begin(), s.source.end());
  ASSERT_EQ(src.size(), 8u);
  EXPECT_EQ(s.plan.find("l1")->state, "receiving");
  for (int i = 2; i <= 8; i++)
    EXPECT_EQ(src["l" + std::to_string(i)], "l" + std::to_string(i - 1));
  ASSERT_TRUE(s.run(true));
  EXPECT_TRUE(s.plan.succeeded());
  EXPECT_EQ(s.plan.json()["servers"]["ok"], 8);
}

TEST(PushPlan, ASmallJobGoesToEveryLeaderAtOnce) {
  PlanOptions o;
  o.star_bytes = 1 << 20;
  // 3 x 100 kB fits the star: the manager notifies everyone at the start.
  Sim s(Plan(meta_of(100000), leaders(3), 3, true, o));
  s.apply(s.plan.start(0, 0));
  ASSERT_EQ(s.notices.size(), 3u);
  for (auto& [l, src] : s.notices)
    EXPECT_EQ(src, kManager) << l;
  ASSERT_TRUE(s.run(true));
  EXPECT_TRUE(s.plan.succeeded());
  // 11 x 100 kB does not: the tree, one leader from the manager first.
  Sim t(Plan(meta_of(100000), leaders(11), 11, true, o));
  t.apply(t.plan.start(0, 0));
  EXPECT_EQ(t.notices.size(), 1u);
  ASSERT_TRUE(t.run(true));
  int from_manager = 0;
  for (auto& [l, src] : t.notices)
    from_manager += src == kManager;
  EXPECT_EQ(from_manager, 1);
}

TEST(PushPlan, WithoutCutThroughTheTreeDoubles) {
  Sim s(Plan(meta_of(100000), leaders(7), 7, false, PlanOptions{}));
  s.apply(s.plan.start(0, 0));
  ASSERT_TRUE(s.run(false));
  EXPECT_TRUE(s.plan.succeeded());
  // The manager served more than one (it keeps serving while others do),
  // and some leader served a leader only after its own copy was whole.
  int from_manager = 0;
  for (auto& [l, src] : s.notices)
    from_manager += src == kManager;
  EXPECT_GE(from_manager, 2);
  EXPECT_LT(from_manager, 7);
  for (const LeaderState& l : s.plan.leaders())
    if (l.source != kManager) {
      const LeaderState* src = s.plan.find(l.source);
      ASSERT_NE(src, nullptr);
      EXPECT_LE(src->completed_ms, l.started_ms) << l.who.id << " from " << l.source;
    }
}

TEST(PushPlan, PrefersTheHoldersOwnLocation) {
  Sim s(Plan(meta_of(100000), leaders(6, {"east", "west"}), 6, true, PlanOptions{}));
  s.apply(s.plan.start(0, 0));
  ASSERT_TRUE(s.run(true));
  int crossings = 0;
  for (const LeaderState& l : s.plan.leaders())
    if (l.source != kManager)
      crossings += s.plan.find(l.source)->who.location != l.who.location;
  EXPECT_EQ(crossings, 1);  // one link from east to west, not one per leader
}

TEST(PushPlan, ALateCompleteFromAFailedLeaderDoesNotFreeTheManagerTwice) {
  PlanOptions o;
  o.stall_ms = 1000;
  Plan p(meta_of(100000), leaders(3), 3, false, o);
  std::vector<Notice> out = p.start(0, 0);
  ASSERT_EQ(out.size(), 1u);  // l1 from the manager, the only slot
  out.clear();
  p.tick(5000, 5000, out);  // l1 silent: failed; its slot goes to l2
  EXPECT_EQ(p.find("l1")->state, "failed");
  EXPECT_EQ(p.find("l2")->source, kManager);
  out.clear();
  // l1 was not dead after all: its copy completes. The manager still
  // serves l2 only; l3 waits for a holder or the slot.
  EXPECT_EQ(p.status("l1", "complete", 100000, "", "", 5100, 5100, out), "");
  EXPECT_EQ(p.find("l3")->state, "pending");
  EXPECT_TRUE(out.empty());
}

TEST(PushPlan, ADeadLeadersTargetsGoElsewhereAndTheReportNamesIt) {
  PlanOptions o;
  o.stall_ms = 10000;
  Sim s(Plan(meta_of(100000), leaders(6), 5, true, o));
  s.apply(s.plan.start(0, 0));
  for (int i = 0; i < 8; i++)
    s.step(50, true);
  ASSERT_EQ(s.source.size(), 6u);
  s.dead.insert("l3");
  ASSERT_TRUE(s.run(true));
  const LeaderState* l3 = s.plan.find("l3");
  EXPECT_EQ(l3->state, "failed");
  EXPECT_NE(l3->failure.find("silent"), std::string::npos);
  const LeaderState* l4 = s.plan.find("l4");
  EXPECT_EQ(l4->state, "delivered");
  EXPECT_NE(l4->source, "l3");
  ASSERT_FALSE(l4->failed_sources.empty());
  EXPECT_EQ(l4->failed_sources[0].rfind("l3", 0), 0u);
  EXPECT_EQ(s.plan.leaders_ok(), 5u);
  EXPECT_TRUE(s.plan.succeeded());  // quorum 5 of 6
  // Named a failed source by its fetcher, it was given up on after a few
  // silent seconds, not the full stall time.
  EXPECT_LT(s.now, 400 + o.stall_ms);
}

TEST(PushPlan, ALeaderThatLosesItsSourceResumesFromTheOneBehindIt) {
  // l3 is killed: l4 says so at once (its connection closed), seconds before
  // the plan gives up on l3. l2, which was serving l3 only, is ahead of l4
  // and now idle: l4 resumes from it rather than from the manager, whose
  // uplink is still busy with l1.
  Sim s(Plan(meta_of(100000), leaders(6), 5, true, PlanOptions{}));
  s.apply(s.plan.start(0, 0));
  for (int i = 0; i < 8 && s.source.size() < 6; i++)
    s.step(50, true);
  ASSERT_EQ(s.source["l4"], "l3");
  ASSERT_EQ(s.source["l3"], "l2");
  s.dead.insert("l3");
  std::vector<Notice> out;
  // l4 has verified more than l2 last reported (reports come once a second):
  // l2 is ahead of it all the same.
  s.plan.status("l4", "source-failed", 90000, "l3", "connection lost", s.now, s.now, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].leader, "l4");
  EXPECT_EQ(out[0].source, "l2");
  s.apply(out);
  ASSERT_TRUE(s.run(true));
  EXPECT_TRUE(s.plan.succeeded());
  EXPECT_EQ(s.plan.find("l3")->state, "failed");
  size_t from_manager = 0;
  for (const auto& n : s.notices)
    from_manager += n.second == kManager ? 1 : 0;
  EXPECT_EQ(from_manager, 1u);
}

TEST(PushPlan, NoExtraSlotBehindALostLeaderThatWasComplete) {
  // l3 completed (its slot at l2 given back), l2 took l5, then l3 died while
  // serving l4. l4 must not push l2 past its fanout: nothing would take that
  // slot back when l3 is given up on.
  Plan p(meta_of(100000), leaders(5), 5, true, PlanOptions{});
  std::vector<Notice> out = p.start(0, 0);
  ASSERT_EQ(p.next("l1", 10, 10, out).kind, Answer::Target);
  ASSERT_EQ(p.next("l2", 20, 20, out).kind, Answer::Target);
  ASSERT_EQ(p.next("l3", 30, 30, out).kind, Answer::Target);
  ASSERT_EQ(p.find("l4")->source, "l3");
  p.status("l3", "complete", 0, "", "", 40, 40, out);
  ASSERT_EQ(p.find("l2")->serving, 0u);
  Answer a = p.next("l2", 50, 50, out);
  ASSERT_EQ(a.kind, Answer::Target);
  ASSERT_EQ(a.leader, "l5");
  ASSERT_EQ(p.find("l2")->serving, 1u);
  p.status("l2", "receiving", 50000, "", "", 55, 55, out);
  out.clear();
  p.status("l4", "source-failed", 5000, "l3", "connection lost", 60, 60, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].leader, "l4");
  EXPECT_NE(out[0].source, "l2");
  EXPECT_EQ(p.find("l2")->serving, 1u);
}

TEST(PushPlan, AStalledLeaderFailsAfterTheStallTime) {
  PlanOptions o;
  o.stall_ms = 3000;
  Sim s(Plan(meta_of(100000), leaders(3), 3, false, o));
  s.apply(s.plan.start(0, 0));
  s.stalled.insert("l1");
  s.run(false);
  ASSERT_TRUE(s.plan.done());
  EXPECT_EQ(s.plan.find("l1")->state, "failed");
  EXPECT_GE(s.now, 3000);
  // The others were served by the manager instead.
  EXPECT_EQ(s.plan.find("l2")->state, "delivered");
  EXPECT_EQ(s.plan.find("l3")->state, "delivered");
  EXPECT_FALSE(s.plan.succeeded());
}

TEST(PushPlan, ReassignmentNeverPicksADownstreamHolder) {
  Sim s(Plan(meta_of(100000), leaders(4), 4, true, PlanOptions{}));
  s.apply(s.plan.start(0, 0));
  s.step(50, true);
  // l2's source (l1) fails: l3 and l4 are downstream of l2 and would wait on it.
  std::vector<Notice> out;
  s.plan.status("l2", "source-failed", 2000, "l1", "reset", s.now, s.now, out);
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].leader, "l2");
  EXPECT_NE(out[0].source, "l3");
  EXPECT_NE(out[0].source, "l4");
}

TEST(PushPlan, SurvivesARestartOfTheManager) {
  Sim s(Plan(meta_of(100000), leaders(5), 5, true, PlanOptions{}));
  s.apply(s.plan.start(0, 0));
  s.step(50, true);
  s.step(50, true);
  nlohmann::json saved = s.plan.json();
  Plan back = Plan::from_json(saved, meta_of(100000), PlanOptions{});
  EXPECT_EQ(back.json().dump(), saved.dump());
  auto again = back.resume(s.now);
  for (const Notice& n : again)
    EXPECT_EQ(back.find(n.leader)->state, "notified");
  s.plan = std::move(back);
  s.apply(again);
  ASSERT_TRUE(s.run(true));
  EXPECT_TRUE(s.plan.succeeded());
}

TEST(PushPlan, StrangersAndLateComers) {
  Plan p(meta_of(100000), leaders(2), 2, true, PlanOptions{});
  std::vector<Notice> out = p.start(0, 0);
  EXPECT_FALSE(p.status("mallory", "receiving", 1, "", "", 0, 0, out).empty());
  EXPECT_FALSE(p.delivered("l2", 0, nullptr, 0, 0).empty());  // never complete
  EXPECT_FALSE(p.status("l1", "bogus", 1, "", "", 0, 0, out).empty());
  Answer a = p.next("mallory", 0, 0, out);
  EXPECT_EQ(a.kind, Answer::None);
}

namespace {

// Four leaders in four segments, quorum 4; l3 dies early in the job and
// l9, elected in seg3 meanwhile, joins it in l3's place. Run to the end.
Sim run_with_l3_replaced_by_l9() {
  PlanOptions o;
  o.stall_ms = 2000;
  Sim s(Plan(meta_of(100000), segmented_leaders(4), 4, true, o));
  elect_l9_in(s.plan, "seg3");
  s.apply(s.plan.start(0, 0));
  for (int i = 0; i < 6; i++)
    s.step(50, true);
  s.dead.insert("l3");
  EXPECT_TRUE(s.run(true));
  return s;
}

}  // namespace

TEST(PushPlan, AFailedLeadersSuccessorJoinsTheJob) {
  Sim s = run_with_l3_replaced_by_l9();
  ASSERT_FALSE(::testing::Test::HasFailure());
  EXPECT_EQ(s.plan.find("l3")->state, "failed");
  EXPECT_NE(s.plan.find("l3")->failure.find("replaced by l9"), std::string::npos);
  ASSERT_NE(s.plan.find("l9"), nullptr);
  EXPECT_EQ(s.plan.find("l9")->state, "delivered");
  EXPECT_TRUE(s.plan.succeeded());  // 4 of 5 leaders, quorum 4
}

// The replaced leader comes back (a paused VM) and says it is complete,
// then that it delivered: neither counts, or its segment would count
// twice toward the quorum.
TEST(PushPlan, AReplacedLeaderThatRecoversIsNotCountedAgain) {
  Sim s = run_with_l3_replaced_by_l9();
  ASSERT_FALSE(::testing::Test::HasFailure());
  ASSERT_EQ(s.plan.find("l9")->state, "delivered");
  size_t ok = s.plan.leaders_ok();
  std::vector<Notice> out;
  EXPECT_EQ(s.plan.status("l3", "complete", 100000, "", "", s.now, s.now, out), "");
  EXPECT_EQ(s.plan.find("l3")->state, "failed");
  EXPECT_NE(s.plan.delivered("l3", 0, nlohmann::json::object(), s.now, s.now), "");
  EXPECT_EQ(s.plan.find("l3")->state, "failed");
  EXPECT_EQ(s.plan.leaders_ok(), ok);
}

// Its "complete" lost (the manager unreachable longer than the agent
// retries), a leader delivers all the same: that counts, and the source's
// slot is given back. A leader never told of the job cannot deliver.
TEST(PushPlan, ADeliveryWhoseCompleteWasLostCounts) {
  Sim s(Plan(meta_of(100000), leaders(4), 4, true, PlanOptions{}));
  s.copy_ms = 3000;
  s.apply(s.plan.start(0, 0));
  for (int i = 0; i < 6; i++)
    s.step(50, true);
  ASSERT_EQ(s.plan.find("l2")->state, "receiving");
  std::string src = s.plan.find("l2")->source;
  unsigned slots = src == kManager ? 0 : s.plan.find(src)->serving;
  EXPECT_EQ(s.plan.delivered("l2", 0, nlohmann::json::object(), s.now, s.now), "");
  EXPECT_EQ(s.plan.find("l2")->state, "delivered");
  if (src != kManager) {
    EXPECT_EQ(s.plan.find(src)->serving, slots - 1);
  }
  Sim fresh(Plan(meta_of(100000), leaders(2), 2, true, PlanOptions{}));
  EXPECT_NE(fresh.plan.delivered("l1", 0, nlohmann::json::object(), 0, 0), "");
}

TEST(PushPlan, ARestartedLeaderIsNotifiedAgainFromTheSameSource) {
  Sim s(Plan(meta_of(100000), leaders(4), 4, true, PlanOptions{}));
  s.copy_ms = 3000;
  s.apply(s.plan.start(0, 0));
  for (int i = 0; i < 6; i++)
    s.step(50, true);
  ASSERT_EQ(s.plan.find("l2")->state, "receiving");
  std::string src = s.plan.find("l2")->source;
  ASSERT_NE(src, kManager);
  unsigned slots = s.plan.find(src)->serving;
  std::vector<Notice> out;
  ASSERT_TRUE(s.plan.rejoin("l2", s.now, s.now, out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].leader, "l2");
  EXPECT_EQ(out[0].source, src);
  EXPECT_EQ(s.plan.find("l2")->state, "receiving");
  EXPECT_EQ(s.plan.find(src)->serving, slots);  // one slot, not two
  s.apply(out);
  ASSERT_TRUE(s.run(true));
  EXPECT_TRUE(s.plan.succeeded());
  // One slot on its source, not two: every other leader was served.
  EXPECT_EQ(s.plan.leaders_ok(), 4u);
}

TEST(PushPlan, ALeaderGivenUpOnJoinsAgainWhenItRestarts) {
  PlanOptions o;
  o.stall_ms = 2000;
  Sim s(Plan(meta_of(100000), leaders(4), 4, true, o));
  s.copy_ms = 6000;
  s.apply(s.plan.start(0, 0));
  for (int i = 0; i < 6; i++)
    s.step(50, true);
  s.dead.insert("l2");
  for (int i = 0; i < 200 && s.plan.find("l2")->state != "failed"; i++)
    s.step(50, true);
  ASSERT_EQ(s.plan.find("l2")->state, "failed");
  ASSERT_FALSE(s.plan.done());
  s.dead.erase("l2");
  std::vector<Notice> out;
  ASSERT_TRUE(s.plan.rejoin("l2", s.now, s.now, out));
  ASSERT_FALSE(out.empty());
  EXPECT_EQ(out.back().leader, "l2");
  EXPECT_NE(out.back().source, "l2");
  EXPECT_EQ(s.plan.find("l2")->state, "notified");
  EXPECT_EQ(s.plan.find("l2")->failure.rfind("restarted after: silent", 0), 0u);
  s.apply(out);
  ASSERT_TRUE(s.run(true));
  EXPECT_EQ(s.plan.find("l2")->state, "delivered");
  EXPECT_TRUE(s.plan.succeeded());
}

TEST(PushPlan, NoRejoinForStrangersWaitersReplacedLeadersOrAFinishedJob) {
  PlanOptions o;
  o.stall_ms = 2000;
  Sim s(Plan(meta_of(100000), segmented_leaders(3), 3, false, o));
  s.copy_ms = 5000;
  elect_l9_in(s.plan, "seg1");
  s.apply(s.plan.start(0, 0));
  std::vector<Notice> out;
  EXPECT_FALSE(s.plan.rejoin("mallory", s.now, s.now, out));
  EXPECT_FALSE(s.plan.rejoin("l3", s.now, s.now, out));  // pending: it will be notified
  EXPECT_TRUE(out.empty());
  s.dead.insert("l1");
  for (int i = 0; i < 200 && s.plan.find("l1")->state != "failed"; i++)
    s.step(50, false);
  ASSERT_EQ(s.plan.find("l1")->state, "failed");
  ASSERT_NE(s.plan.find("l9"), nullptr);
  // Its segment has another leader now: l1 stays out.
  EXPECT_FALSE(s.plan.rejoin("l1", s.now, s.now, out));
  EXPECT_TRUE(out.empty());
  EXPECT_EQ(s.plan.find("l1")->state, "failed");
  ASSERT_TRUE(s.run(false));
  EXPECT_FALSE(s.plan.rejoin("l2", s.now, s.now, out));  // the job is over
  EXPECT_TRUE(out.empty());
}

TEST(PushPlan, ACompleteLeaderThatRestartsIsServedAgainByALiveHolder) {
  JobMeta meta = meta_of(100000);
  meta.deliver = true;
  Plan p(meta, leaders(3), 3, true, PlanOptions{});
  std::vector<Notice> out = p.start(0, 0);
  ASSERT_EQ(out.size(), 1u);
  ASSERT_EQ(p.next("l1", 5, 5, out).kind, Answer::Target);  // l2 from l1
  ASSERT_EQ(p.find("l2")->source, "l1");
  p.status("l1", "complete", 0, "", "", 10, 10, out);
  p.status("l2", "complete", 0, "", "", 30, 30, out);
  // l1 reboots with its copy gone and its report not sent: served again,
  // by a whole holder (l2, though l2 once fetched from it), and the job
  // waits for its report.
  out.clear();
  ASSERT_TRUE(p.rejoin("l1", 40, 40, out));
  ASSERT_EQ(out.size(), 1u);
  EXPECT_EQ(out[0].leader, "l1");
  EXPECT_EQ(out[0].source, "l2");
  EXPECT_EQ(p.find("l1")->state, "notified");
  EXPECT_EQ(p.find("l1")->bytes, 0u);
  EXPECT_EQ(p.find("l2")->serving, 1u);
  p.status("l1", "complete", 0, "", "", 50, 50, out);
  EXPECT_EQ(p.find("l2")->serving, 0u);
  EXPECT_EQ(p.find("l1")->state, "complete");
  EXPECT_FALSE(p.done());
}

// Two NOTIFYs to one leader can cross (each goes on its own thread): the
// newer of one serve process wins; another process's, or an older serve's
// without an order, always counts.
TEST(PushNotice, AnOlderNoticeOfTheSameServeIsStale) {
  EXPECT_FALSE(notice_is_stale(0, 0, 100, 1));    // the first one
  EXPECT_FALSE(notice_is_stale(100, 1, 100, 2));  // newer
  EXPECT_TRUE(notice_is_stale(100, 2, 100, 1));   // crossed: older
  EXPECT_TRUE(notice_is_stale(100, 2, 100, 2));   // the same again
  EXPECT_FALSE(notice_is_stale(100, 9, 200, 1));  // serve restarted
  EXPECT_FALSE(notice_is_stale(100, 9, 0, 0));    // a serve without order
}
