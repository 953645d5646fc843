// cm-sched's pieces without processes: schedules (cron fields, shorthands,
// one-time, day-of-month OR day-of-week), the database and its migrations,
// and the scheduler driven with a stand-in runner and a moved clock.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <fstream>

#include "sched/admin.hpp"
#include "sched/cron.hpp"
#include "sched/scheduler.hpp"
#include "support.hpp"

using namespace cm;
using namespace cm::sched;
using cm::test::TempDir;

namespace {

struct Utc {
  Utc() {
    setenv("TZ", "UTC", 1);
    tzset();
  }
};
const Utc utc;

int64_t at(const char* s) {
  return *parse_time(s);
}

std::string next_of(const char* expr, const char* after) {
  auto s = Schedule::parse(expr);
  EXPECT_TRUE(s.ok()) << expr;
  auto n = s->next(at(after));
  return n ? format_time(*n) : "never";
}

// Runs nothing: writes the result the test wants and returns its code.
class FakeRunner : public Runner {
 public:
  int code = 0;
  std::string result = R"({"status":"succeeded","message":"ok"})";
  std::vector<std::vector<std::string>> calls;
  Result<int> run(const RunSpec& spec, const std::function<void(pid_t)>& started) override {
    calls.push_back(spec.env);
    started(12345);
    for (const std::string& e : spec.env)
      if (e.rfind("CM_RESULT=", 0) == 0)
        std::ofstream(e.substr(10)) << result;
    return code;
  }
  bool alive(pid_t, int64_t) override { return false; }
  void stop(pid_t) override {}
};

}  // namespace

TEST(Schedule, CronFields) {
  EXPECT_EQ(next_of("*/15 * * * *", "2026-11-25T10:07"), "2026-11-25 10:15:00");
  EXPECT_EQ(next_of("*/15 * * * *", "2026-11-25T10:15"), "2026-11-25 10:30:00");  // strictly after
  EXPECT_EQ(next_of("0 3 * * *", "2026-11-25T10:07"), "2026-11-26 03:00:00");
  EXPECT_EQ(next_of("30 9-17/4 * * *", "2026-11-25T10:07"), "2026-11-25 13:30:00");
  EXPECT_EQ(next_of("0 0 1 * *", "2026-11-25T10:07"), "2026-12-01 00:00:00");
  EXPECT_EQ(next_of("0 0 29 2 *", "2026-11-25T10:07"), "2028-02-29 00:00:00");
  EXPECT_EQ(next_of("0 0 31 2 *", "2026-11-25T10:07"), "never");
  EXPECT_EQ(next_of("5,10 8 * * 1-5", "2026-11-27T08:10"), "2026-11-30 08:05:00");  // Fri -> Mon
  EXPECT_EQ(next_of("0 12 * * 7", "2026-11-25T10:07"), "2026-11-29 12:00:00");      // 7 is Sunday
  // Both day fields restricted: either matches (cron's rule).
  EXPECT_EQ(next_of("0 0 1 * 3", "2026-11-25T10:07"), "2026-12-01 00:00:00");
  EXPECT_EQ(next_of("0 0 1 * 2", "2026-11-25T10:07"), "2026-12-01 00:00:00");
  EXPECT_EQ(next_of("0 0 15 * 4", "2026-11-25T10:07"), "2026-11-26 00:00:00");
}

TEST(Schedule, ShorthandsOnceAndManual) {
  EXPECT_EQ(next_of("@hourly", "2026-11-25T10:07"), "2026-11-25 11:00:00");
  EXPECT_EQ(next_of("@daily", "2026-11-25T10:07"), "2026-11-26 00:00:00");
  EXPECT_EQ(next_of("@weekly", "2026-11-25T10:07"), "2026-11-29 00:00:00");
  EXPECT_EQ(next_of("at 2026-11-25T12:00", "2026-11-25T10:07"), "2026-11-25 12:00:00");
  EXPECT_EQ(next_of("at 2026-11-25T12:00", "2026-11-25T12:00"), "never");
  EXPECT_EQ(next_of("manual", "2026-11-25T10:07"), "never");
}

TEST(Schedule, RejectsBadExpressions) {
  for (const char* bad : {"", "* * * *", "60 * * * *", "* 24 * * *", "* * 0 * *", "* * * 13 *", "* * * * 8",
                          "*/0 * * * *", "5-1 * * * *", "a * * * *", "1,,2 * * * *", "@often", "at yesterday",
                          "at 2026-13-01T00:00", "at 2026-02-30T00:00", "* * * * * *"}) {
    auto s = Schedule::parse(bad);
    EXPECT_FALSE(s.ok()) << "'" << bad << "'";
    if (!s.ok()) {
      EXPECT_EQ(s.error().code, kExitUsage);
    }
  }
  EXPECT_TRUE(parse_time("@1795600800").ok());
  EXPECT_FALSE(parse_time("@").ok());
}

TEST(Schedule, ReversedRangesAndDaysThatNeverComeAreNamed) {
  auto r = Schedule::parse("5-1 * * * *");
  ASSERT_FALSE(r.ok());
  EXPECT_NE(r.error().message.find("reversed range in the minute field (write 1-5)"), std::string::npos)
      << r.error().message;
  // An end outside the field is named as such, not turned round into a
  // suggestion that is itself out of range.
  for (const char* out : {"70-5 * * * *", "5-70 * * * *", "0 0 0-3 * *", "0 0 * 13-2 *"}) {
    auto o = Schedule::parse(out);
    ASSERT_FALSE(o.ok()) << out;
    EXPECT_NE(o.error().message.find("is outside"), std::string::npos) << o.error().message;
    EXPECT_EQ(o.error().message.find("write"), std::string::npos) << o.error().message;
  }
  // A day of the month no month it names has: the job would never run.
  // (Parsed, so that a job an older cm-sched stored still loads; a job is
  // refused one when it is added or set: see the cm-sched bats test.)
  for (const char* never : {"0 0 31 2 *", "0 0 30 2 *", "0 0 31 4,6,9,11 *", "0 0 30,31 2 *"}) {
    auto s = Schedule::parse(never);
    ASSERT_TRUE(s.ok()) << never;
    EXPECT_FALSE(s->can_match()) << never;
    EXPECT_FALSE(s->next(1795600800).has_value()) << never;
  }
  // Rare but real: a leap day, the 31st of some month, or a weekday too
  // (either day field may match then).
  for (const char* rare : {"0 0 29 2 *", "0 0 31 1-3 *", "0 0 31 2 1", "0 0 31 * *"}) {
    auto s = Schedule::parse(rare);
    ASSERT_TRUE(s.ok()) << rare << ": " << s.error().message;
    EXPECT_TRUE(s->can_match()) << rare;
    EXPECT_TRUE(s->next(1795600800).has_value()) << rare;
  }
}

TEST(SchedStore, MigratesAndRefusesNewer) {
  TempDir d;
  std::string path = d.path() + "/cm.db";
  {
    auto s = Store::open(path, true);
    ASSERT_TRUE(s.ok()) << s.error().message;
    ASSERT_TRUE((*s)->db().exec("PRAGMA user_version = 42").ok());
  }
  auto again = Store::open(path, false);
  ASSERT_FALSE(again.ok());
  EXPECT_EQ(again.error().code, kExitBadInput);
  EXPECT_NE(again.error().message.find("newer"), std::string::npos);
  EXPECT_EQ(Store::open(d.path() + "/missing.db", false).error().code, kExitFailure);
}

TEST(Scheduler, RunsWhatIsDueRecordsAndRetries) {
  TempDir d;
  auto store = std::move(Store::open(d.path() + "/cm.db", true).value());
  test::make_dir(d.path() + "/staging");
  ASSERT_TRUE(add_site(*store, "www", SiteEdit{d.path() + "/staging", d.path() + "/shadow"}).ok());
  ASSERT_TRUE(add_group(*store, "g", GroupEdit{std::string("east"), std::nullopt}).ok());
  nlohmann::json report = {{"segment", "east"}, {"members", {{{"id", "s1"}}, {{"id", "s2"}}}}};
  int64_t t0 = at("2026-11-25T10:00");
  ASSERT_TRUE(import_servers(*store, report, t0).ok());
  JobEdit e;
  e.type = "publish";
  e.site = "www";
  e.group = "g";
  e.schedule = "*/5 * * * *";
  e.policy = {{"retries", 1}, {"backoff", 30}};
  ASSERT_TRUE(add_job(*store, "pub", e, t0 - 60).ok());

  FakeRunner runner;
  SchedOptions o;
  o.db_path = d.path() + "/cm.db";
  o.job_cmd = "unused";
  o.runner = &runner;
  o.now = t0;
  runner.result = R"({"status":"succeeded","message":"ok","sequence":1})";
  auto ev = tick(*store, o);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  ASSERT_EQ(runner.calls.size(), 1u);
  EXPECT_EQ((*store->site("www"))->sequence, 1);
  EXPECT_EQ(*(*store->job("pub"))->next_run, at("2026-11-25T10:05"));
  // The next occurrence fails: one retry after the back-off, then the schedule.
  runner.code = 1;
  runner.result = R"({"status":"failed","message":"no"})";
  o.now = at("2026-11-25T10:05");
  ASSERT_TRUE(tick(*store, o).ok());
  auto j = *store->job("pub");
  EXPECT_EQ(j->attempt, 1);
  EXPECT_EQ(*j->next_run, at("2026-11-25T10:05") + 30);
  o.now += 30;
  ASSERT_TRUE(tick(*store, o).ok());
  j = *store->job("pub");
  EXPECT_EQ(j->attempt, 0);
  EXPECT_EQ(*j->next_run, at("2026-11-25T10:10"));
  EXPECT_NE(j->message.find("gave up after 2 attempts"), std::string::npos) << j->message;
  EXPECT_EQ(runner.calls.size(), 3u);
  auto runs = *store->runs("pub", 10);
  ASSERT_EQ(runs.size(), 3u);
  EXPECT_EQ(runs[0].status, "failed");
  EXPECT_EQ(runs[2].status, "succeeded");
}

TEST(Scheduler, RecoversAJobWhoseTickDied) {
  TempDir d;
  auto store = std::move(Store::open(d.path() + "/cm.db", true).value());
  test::make_dir(d.path() + "/staging");
  ASSERT_TRUE(add_site(*store, "www", SiteEdit{d.path() + "/staging", d.path() + "/shadow"}).ok());
  ASSERT_TRUE(add_group(*store, "g", GroupEdit{}).ok());
  JobEdit e;
  e.type = "checkpoint";
  e.site = "www";
  e.group = "g";
  ASSERT_TRUE(add_job(*store, "cp", e, 0).ok());
  Job j = **store->job("cp");
  j.state = "running";
  j.owner_pid = 999999;
  j.child_pid = 4242;
  ASSERT_TRUE(store->put_job(j, true).ok());
  FakeRunner runner;
  SchedOptions o;
  o.db_path = d.path() + "/cm.db";
  o.runner = &runner;
  o.now = 1000;
  auto ev = recover(*store, o);
  ASSERT_TRUE(ev.ok()) << ev.error().message;
  ASSERT_EQ(ev->size(), 2u);
  EXPECT_EQ((*ev)[0].action, "recovered");
  EXPECT_EQ((*ev)[1].action, "interrupted");
  EXPECT_EQ((*store->job("cp"))->state, "failed");  // manual, no retries: nothing scheduled
}
