// Job-scheduler timing against the values Node computes.
//
// Every expected instant below was generated, not worked out by hand: with
// bullmq 6.7.6 and the cron-parser it pins (5.10.4) installed by
// `npm i bullmq@6.7.6` in a scratch directory, a throwaway Node script run
// with TZ=UTC printed, for each case, CronExpressionParser.parse(pattern,
// {currentDate: new Date(after), tz}).next().toISOString() (chains: the same
// call repeated from the previous result, as each bullmq worker does). The
// next_iteration_millis cases came from calling the real
// JobScheduler.prototype.upsertJobScheduler (worker path, Date.now pinned to
// `now`, backend stubbed to capture nextMillis) and, for `every`, the
// arithmetic of bullmq's updateJobScheduler-12 Lua script.
#include "queue/repeat_schedule.hpp"

#include <gtest/gtest.h>

#include <cstdio>
#include <ctime>
#include <optional>
#include <string>
#include <vector>

namespace guardant::engine {
namespace {

// "2025-03-30T01:30:00.000Z" <-> ms since the epoch.
int64_t utc(const std::string& iso) {
  std::tm tm{};
  int ms = 0;
  const int n = std::sscanf(iso.c_str(), "%d-%d-%dT%d:%d:%d.%dZ", &tm.tm_year, &tm.tm_mon,
                            &tm.tm_mday, &tm.tm_hour, &tm.tm_min, &tm.tm_sec, &ms);
  EXPECT_EQ(n, 7) << iso;
  tm.tm_year -= 1900;
  tm.tm_mon -= 1;
  return static_cast<int64_t>(timegm(&tm)) * 1000 + ms;
}

std::string iso(int64_t ms) {
  const std::time_t secs = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&secs, &tm);
  char buf[96];
  std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d.%03dZ", tm.tm_year + 1900,
                tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec,
                static_cast<int>(ms % 1000));
  return buf;
}

// The next fire time as ISO text, "none", or "error: <message>".
std::string next_iso(const std::string& pattern, const std::string& tz, int64_t after,
                     const CronTimeSpan& span = {}) {
  auto cron = CronExpression::parse(pattern);
  if (!cron) return "error: " + cron.error().message;
  auto next = cron->next_after(after, tz, span);
  if (!next) return "error: " + next.error().message;
  return next.value() ? iso(*next.value()) : "none";
}

TEST(RepeatScheduleHelpers, IsoRoundTrip) {
  EXPECT_EQ(utc("2025-01-01T00:00:00.000Z"), 1735689600000);
  EXPECT_EQ(iso(1735689600123), "2025-01-01T00:00:00.123Z");
}

struct NextCase {
  const char* name;
  const char* pattern;
  const char* tz;
  const char* after;
  const char* expected;  // "none": cron-parser gives up (no fire time)
};

// Time zone transitions used below:
//  Europe/Berlin     2025-03-30 02:00 CET -> 03:00 CEST (01:00Z)
//                    2025-10-26 03:00 CEST -> 02:00 CET (01:00Z)
//  America/New_York  2025-03-09 02:00 EST -> 03:00 EDT (07:00Z)
//                    2025-11-02 02:00 EDT -> 01:00 EST (06:00Z)
const NextCase kNextCases[] = {
    {"every minute", "* * * * *", "", "2025-01-01T00:00:00.000Z", "2025-01-01T00:01:00.000Z"},
    {"ms in the start instant round up", "* * * * *", "", "2025-01-01T00:00:30.500Z",
     "2025-01-01T00:01:00.000Z"},
    {"minute step", "*/15 * * * *", "", "2025-01-01T00:07:00.000Z", "2025-01-01T00:15:00.000Z"},
    {"minute step at the end of the hour", "*/15 * * * *", "", "2025-01-01T00:45:00.000Z",
     "2025-01-01T01:00:00.000Z"},
    {"step from a start value", "5/20 * * * *", "", "2025-01-01T00:26:00.000Z",
     "2025-01-01T00:45:00.000Z"},
    {"stepped range", "10-40/15 * * * *", "", "2025-01-01T00:41:00.000Z",
     "2025-01-01T01:10:00.000Z"},
    {"hour step", "0 */6 * * *", "", "2025-01-01T07:00:00.000Z", "2025-01-01T12:00:00.000Z"},
    {"list and range", "0 9-11,14 * * *", "", "2025-01-01T11:30:00.000Z",
     "2025-01-01T14:00:00.000Z"},
    {"seconds field", "* * * * * *", "", "2025-01-01T00:00:00.000Z", "2025-01-01T00:00:01.000Z"},
    {"seconds field, fractional start", "* * * * * *", "", "2025-01-01T00:00:00.999Z",
     "2025-01-01T00:00:01.000Z"},
    {"second step", "*/10 * * * * *", "", "2025-01-01T00:00:25.000Z", "2025-01-01T00:00:30.000Z"},
    {"second minute hour", "30 15 10 * * *", "", "2025-01-01T10:15:30.000Z",
     "2025-01-02T10:15:30.000Z"},
    {"question mark", "0 12 ? * *", "", "2025-01-01T13:00:00.000Z", "2025-01-02T12:00:00.000Z"},
    {"month name", "0 0 1 JUL *", "", "2025-01-01T00:00:00.000Z", "2025-07-01T00:00:00.000Z"},
    {"month names in any case, list", "0 0 1 jan,Jul *", "", "2025-07-01T00:00:00.000Z",
     "2026-01-01T00:00:00.000Z"},
    {"month step", "0 0 1 */3 *", "", "2025-02-10T00:00:00.000Z", "2025-04-01T00:00:00.000Z"},
    {"weekday names", "0 9 * * MON-FRI", "", "2025-01-04T12:00:00.000Z",
     "2025-01-06T09:00:00.000Z"},
    {"weekday names lower case", "0 9 * * mon-fri", "", "2025-01-03T10:00:00.000Z",
     "2025-01-06T09:00:00.000Z"},
    {"7 is Sunday", "0 0 * * 7", "", "2025-01-01T00:00:00.000Z", "2025-01-05T00:00:00.000Z"},
    {"0 is Sunday", "0 0 * * 0", "", "2025-01-01T00:00:00.000Z", "2025-01-05T00:00:00.000Z"},
    {"range up to 7", "0 0 * * 5-7", "", "2025-01-04T01:00:00.000Z", "2025-01-05T00:00:00.000Z"},
    {"last day of a leap February", "0 0 L * *", "", "2024-02-10T00:00:00.000Z",
     "2024-02-29T00:00:00.000Z"},
    {"last day of February", "0 0 L * *", "", "2025-02-10T00:00:00.000Z",
     "2025-02-28T00:00:00.000Z"},
    {"last day of April", "0 0 L * *", "", "2025-04-01T00:00:00.000Z", "2025-04-30T00:00:00.000Z"},
    {"last Friday", "0 0 * * 5L", "", "2025-01-01T00:00:00.000Z", "2025-01-31T00:00:00.000Z"},
    {"last Sunday (7L)", "0 3 * * 7L", "", "2025-03-01T00:00:00.000Z", "2025-03-30T03:00:00.000Z"},
    {"third Friday", "0 0 * * FRI#3", "", "2025-01-01T00:00:00.000Z", "2025-01-17T00:00:00.000Z"},
    {"first Monday", "0 10 * * 1#1", "", "2025-01-07T00:00:00.000Z", "2025-02-03T10:00:00.000Z"},
    {"fifth Wednesday skips months without one", "0 0 * * 3#5", "", "2025-02-01T00:00:00.000Z",
     "2025-04-30T00:00:00.000Z"},
    {"day-of-month OR day-of-week: the Friday first", "0 0 13 * 5", "", "2025-06-01T00:00:00.000Z",
     "2025-06-06T00:00:00.000Z"},
    {"day-of-month OR day-of-week: the 13th first", "0 0 13 * 5", "", "2025-06-07T00:00:00.000Z",
     "2025-06-13T00:00:00.000Z"},
    {"1st, 15th or Mondays", "0 0 1,15 * 1", "", "2025-06-02T00:00:00.000Z",
     "2025-06-09T00:00:00.000Z"},
    {"restricted day-of-week with day-of-month *", "0 0 * * 1", "", "2025-06-03T00:00:00.000Z",
     "2025-06-09T00:00:00.000Z"},
    {"leap day", "0 0 29 2 *", "", "2025-03-01T00:00:00.000Z", "2028-02-29T00:00:00.000Z"},
    {"leap day from a leap year", "0 0 29 2 *", "", "2024-01-01T00:00:00.000Z",
     "2024-02-29T00:00:00.000Z"},
    {"31st skips short months", "0 0 31 * *", "", "2025-04-01T00:00:00.000Z",
     "2025-05-31T00:00:00.000Z"},
    {"@daily", "@daily", "", "2025-01-01T12:00:00.000Z", "2025-01-02T00:00:00.000Z"},
    {"@hourly", "@hourly", "", "2025-01-01T12:00:00.000Z", "2025-01-01T13:00:00.000Z"},
    {"@weekly", "@weekly", "", "2025-01-01T12:00:00.000Z", "2025-01-05T00:00:00.000Z"},
    {"@monthly", "@monthly", "", "2025-01-15T12:00:00.000Z", "2025-02-01T00:00:00.000Z"},
    {"@yearly", "@yearly", "", "2025-01-15T12:00:00.000Z", "2026-01-01T00:00:00.000Z"},
    {"@weekdays", "@weekdays", "", "2025-01-03T12:00:00.000Z", "2025-01-06T00:00:00.000Z"},
    {"@weekends", "@weekends", "", "2025-01-06T12:00:00.000Z", "2025-01-11T00:00:00.000Z"},
    {"4 fields are padded from the left (hour dom month dow)", "12 1 * *", "",
     "2025-01-05T00:00:00.000Z", "2025-02-01T12:00:00.000Z"},
    {"no fire time: the 31st of February or April", "0 0 31 2,4 *", "", "2025-01-01T00:00:00.000Z",
     "none"},
    {"explicit UTC", "0 12 * * *", "UTC", "2025-01-01T00:00:00.000Z", "2025-01-01T12:00:00.000Z"},
    {"fixed offset zone", "0 12 * * *", "UTC+2", "2025-01-01T00:00:00.000Z",
     "2025-01-01T10:00:00.000Z"},
    {"Berlin winter", "0 12 * * *", "Europe/Berlin", "2025-01-01T00:00:00.000Z",
     "2025-01-01T11:00:00.000Z"},
    {"Berlin summer", "0 12 * * *", "Europe/Berlin", "2025-07-01T00:00:00.000Z",
     "2025-07-01T10:00:00.000Z"},
    {"Berlin spring-forward: 02:30 does not exist, fires 03:30 CEST", "30 2 * * *", "Europe/Berlin",
     "2025-03-29T12:00:00.000Z", "2025-03-30T01:30:00.000Z"},
    {"Berlin spring-forward: 02:00 does not exist, fires 03:00 CEST", "0 2 * * *", "Europe/Berlin",
     "2025-03-29T12:00:00.000Z", "2025-03-30T01:00:00.000Z"},
    {"Berlin spring-forward: 03:00 exists", "0 3 * * *", "Europe/Berlin",
     "2025-03-29T12:00:00.000Z", "2025-03-30T01:00:00.000Z"},
    {"Berlin spring-forward: every 30 min over the gap", "*/30 * * * *", "Europe/Berlin",
     "2025-03-30T00:45:00.000Z", "2025-03-30T01:00:00.000Z"},
    {"Berlin spring-forward: hours 1-3", "15 1-3 * * *", "Europe/Berlin",
     "2025-03-30T00:20:00.000Z", "2025-03-30T01:15:00.000Z"},
    {"Berlin fall-back: 02:30 first pass (CEST)", "30 2 * * *", "Europe/Berlin",
     "2025-10-25T12:00:00.000Z", "2025-10-26T00:30:00.000Z"},
    {"Berlin fall-back: no second 02:30 (CET)", "30 2 * * *", "Europe/Berlin",
     "2025-10-26T00:30:00.000Z", "2025-10-27T01:30:00.000Z"},
    {"Berlin fall-back: hourly keeps going", "0 * * * *", "Europe/Berlin",
     "2025-10-26T00:00:00.000Z", "2025-10-26T01:00:00.000Z"},
    {"Berlin fall-back: hourly through the repeat", "0 * * * *", "Europe/Berlin",
     "2025-10-26T01:00:00.000Z", "2025-10-26T02:00:00.000Z"},
    {"Berlin fall-back: 2 and 3 o'clock skip 02:00 CET", "0 2,3 * * *", "Europe/Berlin",
     "2025-10-26T00:00:00.000Z", "2025-10-26T02:00:00.000Z"},
    {"Berlin after 2037 (the zone's POSIX rule)", "0 12 * * *", "Europe/Berlin",
     "2040-07-01T00:00:00.000Z", "2040-07-01T10:00:00.000Z"},
    {"New York winter", "0 9 * * *", "America/New_York", "2025-01-01T00:00:00.000Z",
     "2025-01-01T14:00:00.000Z"},
    {"New York spring-forward: 02:30 does not exist", "30 2 * * *", "America/New_York",
     "2025-03-08T12:00:00.000Z", "2025-03-09T07:30:00.000Z"},
    {"New York spring-forward: every 20 min", "*/20 * * * *", "America/New_York",
     "2025-03-09T06:50:00.000Z", "2025-03-09T07:00:00.000Z"},
    {"New York fall-back: 01:30 first pass (EDT)", "30 1 * * *", "America/New_York",
     "2025-11-01T12:00:00.000Z", "2025-11-02T05:30:00.000Z"},
    {"New York fall-back: no second 01:30 (EST)", "30 1 * * *", "America/New_York",
     "2025-11-02T05:30:00.000Z", "2025-11-03T06:30:00.000Z"},
    {"New York fall-back: every 30 min", "*/30 * * * *", "America/New_York",
     "2025-11-02T05:45:00.000Z", "2025-11-02T06:00:00.000Z"},
    {"New York fall-back: every 30 min inside the repeat", "*/30 * * * *", "America/New_York",
     "2025-11-02T06:00:00.000Z", "2025-11-02T06:30:00.000Z"},
    {"zone name in lower case", "0 9 * * *", "america/new_york", "2025-01-01T00:00:00.000Z",
     "2025-01-01T14:00:00.000Z"},
    {"Kolkata +05:30", "0 9 * * *", "Asia/Kolkata", "2025-01-01T00:00:00.000Z",
     "2025-01-01T03:30:00.000Z"},
    {"Kolkata hourly at :00 local", "0 * * * *", "Asia/Kolkata", "2025-01-01T00:10:00.000Z",
     "2025-01-01T00:30:00.000Z"},
    {"Calcutta (a link)", "0 9 * * *", "Asia/Calcutta", "2025-01-01T00:00:00.000Z",
     "2025-01-01T03:30:00.000Z"},
    {"Lord Howe: 30-minute DST shift", "15 2 * * *", "Australia/Lord_Howe",
     "2025-10-04T12:00:00.000Z", "2025-10-05T15:15:00.000Z"},
    {"Santiago: spring-forward at midnight", "0 0 * * *", "America/Santiago",
     "2025-09-05T12:00:00.000Z", "2025-09-06T04:00:00.000Z"},
    {"Sydney: last Sunday of the month", "0 3 * * 0L", "Australia/Sydney",
     "2025-03-01T00:00:00.000Z", "2025-03-29T16:00:00.000Z"},
};

TEST(CronExpressionTest, NextMatchesCronParser) {
  for (const NextCase& c : kNextCases) {
    SCOPED_TRACE(c.name);
    EXPECT_EQ(next_iso(c.pattern, c.tz, utc(c.after)), c.expected)
        << "pattern '" << c.pattern << "' tz '" << c.tz << "' after " << c.after;
  }
}

struct ChainCase {
  const char* pattern;
  const char* tz;
  const char* after;
  std::vector<std::string> expected;
};

// Successive iterations through DST changes, each computed from the last.
TEST(CronExpressionTest, ChainsThroughDstMatchCronParser) {
  const ChainCase chains[] = {
      {"*/30 * * * *",
       "Europe/Berlin",
       "2025-10-26T00:00:00.000Z",
       {"2025-10-26T00:30:00.000Z", "2025-10-26T01:00:00.000Z", "2025-10-26T01:30:00.000Z",
        "2025-10-26T02:00:00.000Z", "2025-10-26T02:30:00.000Z", "2025-10-26T03:00:00.000Z"}},
      {"0 * * * *",
       "America/New_York",
       "2025-11-02T03:30:00.000Z",
       {"2025-11-02T04:00:00.000Z", "2025-11-02T05:00:00.000Z", "2025-11-02T06:00:00.000Z",
        "2025-11-02T07:00:00.000Z", "2025-11-02T08:00:00.000Z"}},
      {"30 2 * * *",
       "America/New_York",
       "2025-03-07T12:00:00.000Z",
       {"2025-03-08T07:30:00.000Z", "2025-03-09T07:30:00.000Z", "2025-03-10T06:30:00.000Z",
        "2025-03-11T06:30:00.000Z"}},
      // 01:00 CET, 03:00 CEST (for the skipped 02:00 and for 03:00), next day.
      {"0 1-3 * * *",
       "Europe/Berlin",
       "2025-03-29T23:00:00.000Z",
       {"2025-03-30T00:00:00.000Z", "2025-03-30T01:00:00.000Z", "2025-03-30T23:00:00.000Z",
        "2025-03-31T00:00:00.000Z", "2025-03-31T01:00:00.000Z"}},
      // 01:00 and 02:00 CEST, then 03:00 CET: 02:00 CET (the repeat) is skipped.
      {"0 1-3 * * *",
       "Europe/Berlin",
       "2025-10-25T22:00:00.000Z",
       {"2025-10-25T23:00:00.000Z", "2025-10-26T00:00:00.000Z", "2025-10-26T02:00:00.000Z",
        "2025-10-27T00:00:00.000Z", "2025-10-27T01:00:00.000Z"}},
  };
  for (const ChainCase& c : chains) {
    SCOPED_TRACE(std::string(c.pattern) + " in " + c.tz);
    auto cron = CronExpression::parse(c.pattern);
    ASSERT_TRUE(cron.ok()) << cron.error().message;
    int64_t at = utc(c.after);
    std::vector<std::string> got;
    for (size_t i = 0; i < c.expected.size(); ++i) {
      auto next = cron->next_after(at, c.tz);
      ASSERT_TRUE(next.ok()) << next.error().message;
      ASSERT_TRUE(next.value().has_value());
      at = *next.value();
      got.push_back(iso(at));
    }
    EXPECT_EQ(got, c.expected);
  }
}

TEST(CronExpressionTest, TimeSpanBoundsTheSearch) {
  const int64_t t = utc("2025-01-01T00:00:00.000Z");
  // startDate moves the walk forward; endDate stops it (inclusive).
  EXPECT_EQ(next_iso("0 * * * *", "", t, {t + 90 * 60000, std::nullopt}),
            "2025-01-01T02:00:00.000Z");
  EXPECT_EQ(next_iso("0 * * * *", "", t, {std::nullopt, t + 30 * 60000}), "none");
  EXPECT_EQ(next_iso("0 * * * *", "", t, {std::nullopt, t + 60 * 60000}),
            "2025-01-01T01:00:00.000Z");
  EXPECT_EQ(next_iso("0 * * * *", "", t + 2 * 3600000, {std::nullopt, t + 3600000}), "none");
}

TEST(CronExpressionTest, KeepsThePatternText) {
  auto cron = CronExpression::parse("@daily");
  ASSERT_TRUE(cron.ok());
  EXPECT_EQ(cron->pattern(), "@daily");
}

TEST(CronExpressionTest, InvalidPatternsNameTheFieldAndValue) {
  // Each of these is refused by cron-parser too (H aside: cron-parser draws
  // hashed values at random, which no other worker could reproduce).
  const std::pair<const char*, const char*> cases[] = {
      {"*/0 * * * *", "cron pattern '*/0 * * * *': minute field: step must be positive"},
      {"60 * * * *", "cron pattern '60 * * * *': minute field: value 60 is out of range 0-59"},
      {"* 24 * * *", "cron pattern '* 24 * * *': hour field: value 24 is out of range 0-23"},
      {"* * 0 * *", "cron pattern '* * 0 * *': day-of-month field: value 0 is out of range 1-31"},
      {"* * * 13 *", "cron pattern '* * * 13 *': month field: value 13 is out of range 1-12"},
      {"* * * * 8", "cron pattern '* * * * 8': day-of-week field: value 8 is out of range 0-7"},
      {"61 * * * * *", "cron pattern '61 * * * * *': second field: value 61 is out of range 0-59"},
      {"* * * FOO *", "cron pattern '* * * FOO *': month field: unknown name 'FOO'"},
      {"0 0 * * MONDAY", "cron pattern '0 0 * * MONDAY': day-of-week field: unknown name 'DAY'"},
      {"5-2 * * * *",
       "cron pattern '5-2 * * * *': minute field: range '5-2' has its start after its end"},
      {"0-70 * * * *", "cron pattern '0-70 * * * *': minute field: range '0-70' is outside 0-59"},
      {"1-2-3 * * * *", "cron pattern '1-2-3 * * * *': minute field: invalid range '1-2-3'"},
      {"/5 * * * *", "cron pattern '/5 * * * *': minute field: invalid range '/5'"},
      {"5/ * * * *", "cron pattern '5/ * * * *': minute field: step in '5/' is not a number"},
      {"1/2/3 * * * *", "cron pattern '1/2/3 * * * *': minute field: more than one '/' in '1/2/3'"},
      {"1,,2 * * * *", "cron pattern '1,,2 * * * *': minute field: empty list item in '1,,2'"},
      {"*/x * * * *", "cron pattern '*/x * * * *': minute field: invalid character 'x' in '*/x'"},
      {"1,1 * * * *", "cron pattern '1,1 * * * *': minute field: value 1 is listed twice"},
      {"0 0 * * 0,7",
       "cron pattern '0 0 * * 0,7': day-of-week field: value 0 (Sunday, also written 7) is "
       "listed twice"},
      {"0 0 LL * *",
       "cron pattern '0 0 LL * *': day-of-month field: value 'LL' is not valid (expected 1-31 "
       "or L)"},
      {"0 0 * * L",
       "cron pattern '0 0 * * L': day-of-week field: 'L' needs a weekday in front of it (e.g. "
       "5L = last Friday)"},
      {"0 0 * * 1#6",
       "cron pattern '0 0 * * 1#6': day-of-week field: occurrence after '#' must be 1-5 in "
       "'1#6'"},
      {"0 0 * * 1-5#2",
       "cron pattern '0 0 * * 1-5#2': day-of-week field: '#' cannot be combined with ',', '-' "
       "or '/'"},
      {"H * * * *", "cron pattern 'H * * * *': minute field: hashed values (H) are not supported"},
      {"0 0 30 2 *", "cron pattern '0 0 30 2 *': day-of-month 30 never occurs in month 2"},
      {"* * * * * * *", "cron pattern '* * * * * * *': 7 fields; expected 5, or 6 with seconds"},
      {"", "cron pattern '': empty pattern"},
      {"   ", "cron pattern '   ': empty pattern"},
  };
  for (const auto& [pattern, message] : cases) {
    auto cron = CronExpression::parse(pattern);
    ASSERT_FALSE(cron.ok()) << "accepted '" << pattern << "'";
    EXPECT_EQ(cron.error().code, "invalid_cron_pattern");
    EXPECT_EQ(cron.error().message, message);
  }
}

TEST(CronExpressionTest, AcceptsWhatCronParserAccepts) {
  // Quirks cron-parser accepts, so a Node producer can create schedulers
  // with them: `?`, 15L (read as L), a single month dropping days it lacks,
  // leading zeros, and extra whitespace.
  for (const char* pattern : {"0 0 ? * ?", "0 0 15L * *", "0 0 1,30 2 *", "00 09 * * 01",
                              "  0   12 * * *  ", "0\t12 * * *", "0 0 * * 5L,1"}) {
    EXPECT_TRUE(CronExpression::parse(pattern).ok()) << pattern;
  }
  // "1,30 2": the 30th is dropped for February, so only the 1st is left.
  EXPECT_EQ(next_iso("0 0 1,30 2 *", "", utc("2025-01-05T00:00:00.000Z")),
            "2025-02-01T00:00:00.000Z");
}

TEST(CronExpressionTest, UnknownTimeZoneIsAnErrorNamingIt) {
  auto cron = CronExpression::parse("0 12 * * *");
  ASSERT_TRUE(cron.ok());
  auto next = cron->next_after(utc("2025-01-01T00:00:00.000Z"), "Mars/Olympus_Mons");
  ASSERT_FALSE(next.ok());
  EXPECT_EQ(next.error().code, "invalid_time_zone");
  EXPECT_EQ(next.error().message, "unknown time zone 'Mars/Olympus_Mons'");

  EXPECT_FALSE(check_time_zone("Mars/Olympus_Mons").ok());
  auto local = check_time_zone("local");
  ASSERT_FALSE(local.ok());
  EXPECT_NE(local.error().message.find("'local'"), std::string::npos);
  for (const char* tz : {"", "UTC", "gmt", "UTC+5:30", "utc-3", "Europe/Berlin", "US/Eastern"}) {
    EXPECT_TRUE(check_time_zone(tz).ok()) << tz;
  }
}

// ---------------------------------------------------------------------------

struct IterationCase {
  const char* name;
  const char* repeat_json;
  int64_t prev;
  int64_t now;
  std::optional<int64_t> expected;  // nullopt: the schedule has ended
};

constexpr int64_t kT = 1735689600000;  // 2025-01-01T00:00:00.000Z

TEST(NextIterationMillisTest, MatchesBullmq) {
  const IterationCase cases[] = {
      {"every: prev + every", R"({"every":60000,"count":1})", kT, kT + 100, kT + 60000},
      {"every: missed slots, next slot after now", R"({"every":60000,"count":1})", kT, kT + 600005,
       kT + 660000},
      {"every: missed slots keep the offset", R"({"every":60000,"offset":5000,"count":1})",
       kT + 5000, kT + 600005, kT + 605000},
      {"every: aligned slot still ahead", R"({"every":60000,"offset":5000,"count":1})", kT + 5000,
       kT + 602000, kT + 605000},
      {"every: aligned slot is now", R"({"every":60000,"offset":5000,"count":1})", kT + 5000,
       kT + 605000, kT + 665000},
      {"every: below the limit", R"({"every":60000,"count":4,"limit":5})", kT, kT + 100,
       kT + 60000},
      {"every: limit reached", R"({"every":60000,"count":5,"limit":5})", kT, kT + 100,
       std::nullopt},
      {"every: endDate passed", R"({"every":60000,"endDate":1735689600050})", kT, kT + 100,
       std::nullopt},
      {"every: endDate is now", R"({"every":60000,"endDate":1735689600100})", kT, kT + 100,
       kT + 60000},
      {"pattern: next slot", R"({"pattern":"*/5 * * * *","count":2})", kT, kT + 50, kT + 300000},
      {"pattern: missed slots are skipped", R"({"pattern":"*/5 * * * *","count":2})", kT,
       kT + 5 * 3600000 + 1000, kT + 5 * 3600000 + 300000},
      {"pattern: worker clock behind prev", R"({"pattern":"*/5 * * * *","count":2})", kT, kT - 2000,
       kT + 300000},
      {"pattern: startDate ahead", R"({"pattern":"0 9 * * *","startDate":1736553600000})", kT,
       kT + 50, 1736586000000},
      {"pattern: next after endDate", R"({"pattern":"0 9 * * *","endDate":1735693200000})", kT,
       kT + 50, std::nullopt},
      {"pattern: next before endDate", R"({"pattern":"0 9 * * *","endDate":1735776000000})", kT,
       kT + 50, kT + 9 * 3600000},
      {"pattern: Berlin over spring-forward",
       R"({"pattern":"30 2 * * *","tz":"Europe/Berlin","count":7})", 1743211800000, 1743211800020,
       1743298200000},
      {"pattern: seconds, below the limit",
       R"({"pattern":"*/2 * * * * *","tz":"Europe/Berlin","count":3,"limit":4})", kT, kT + 3,
       kT + 2000},
      {"pattern: seconds, limit reached",
       R"({"pattern":"*/2 * * * * *","tz":"Europe/Berlin","count":4,"limit":4})", kT, kT + 3,
       std::nullopt},
      {"pattern: leap day to leap day", R"({"pattern":"0 0 29 2 *"})", 1709164800000, 1709164800010,
       1835395200000},
  };
  for (const IterationCase& c : cases) {
    SCOPED_TRACE(c.name);
    auto opts = parse_repeat_options(c.repeat_json);
    ASSERT_TRUE(opts.ok()) << opts.error().message;
    auto next = next_iteration_millis(opts.value(), c.prev, c.now);
    ASSERT_TRUE(next.ok()) << next.error().message;
    EXPECT_EQ(next.value(), c.expected);
  }
}

TEST(NextIterationMillisTest, RefusesInconsistentOptions) {
  RepeatOptions both;
  both.every_ms = 1000;
  both.pattern = "* * * * *";
  auto r = next_iteration_millis(both, kT, kT);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_repeat_options");
  EXPECT_EQ(r.error().message, "repeat options: both 'pattern' and 'every' set");

  r = next_iteration_millis(RepeatOptions{}, kT, kT);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "repeat options: neither 'pattern' nor 'every' set");

  RepeatOptions bad_pattern;
  bad_pattern.pattern = "* * * * 9";
  r = next_iteration_millis(bad_pattern, kT, kT);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_cron_pattern");

  RepeatOptions bad_tz;
  bad_tz.pattern = "* * * * *";
  bad_tz.tz = "Europe/Atlantis";
  r = next_iteration_millis(bad_tz, kT, kT);
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().message, "unknown time zone 'Europe/Atlantis'");
}

TEST(NextIterationMillisTest, LimitIsCheckedBeforeThePattern) {
  // bullmq stops on the limit before it looks at the pattern or the zone.
  RepeatOptions done;
  done.pattern = "* * * * *";
  done.tz = "Europe/Atlantis";
  done.count = 3;
  done.limit = 3;
  auto r = next_iteration_millis(done, kT, kT);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_FALSE(r.value().has_value());
}

// ---------------------------------------------------------------------------

TEST(ParseRepeatOptionsTest, ReadsWhatBullmqStores) {
  auto o = parse_repeat_options(
      R"({"pattern":"0 9 * * 1-5","tz":"Europe/Berlin","startDate":1735689600000,)"
      R"("endDate":"2026-01-01T00:00:00.000Z","limit":10,"count":3,"offset":null,)"
      R"("key":"ignored","jobId":"ignored","utc":true})");
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->pattern, "0 9 * * 1-5");
  EXPECT_EQ(o->tz, "Europe/Berlin");
  EXPECT_EQ(o->start_date_ms, std::optional<int64_t>(1735689600000));
  EXPECT_EQ(o->end_date_ms, std::optional<int64_t>(utc("2026-01-01T00:00:00.000Z")));
  EXPECT_EQ(o->limit, std::optional<int64_t>(10));
  EXPECT_EQ(o->count, 3);
  EXPECT_EQ(o->offset_ms, 0);
  EXPECT_FALSE(o->every_ms.has_value());

  o = parse_repeat_options(R"({"every":1000,"offset":250,"immediately":true})");
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->every_ms, std::optional<int64_t>(1000));
  EXPECT_EQ(o->offset_ms, 250);
  EXPECT_TRUE(o->immediately);
  EXPECT_TRUE(o->pattern.empty());
}

TEST(ParseRepeatOptionsTest, DateStrings) {
  auto o = parse_repeat_options(
      R"({"every":1000,"startDate":"2025-03-30","endDate":"2025-03-30T02:30:00+02:00"})");
  ASSERT_TRUE(o.ok()) << o.error().message;
  EXPECT_EQ(o->start_date_ms, std::optional<int64_t>(utc("2025-03-30T00:00:00.000Z")));
  EXPECT_EQ(o->end_date_ms, std::optional<int64_t>(utc("2025-03-30T00:30:00.000Z")));
}

TEST(ParseRepeatOptionsTest, ErrorsNameTheKey) {
  const std::pair<const char*, const char*> cases[] = {
      {R"({"every":"5s"})", R"(repeat options: 'every' must be a positive integer (ms), got "5s")"},
      {R"({"every":-5})", "repeat options: 'every' must be a positive integer (ms), got -5"},
      {R"({"pattern":5})", "repeat options: 'pattern' must be a string, got 5"},
      {R"({"tz":["Europe/Berlin"]})",
       R"(repeat options: 'tz' must be a string, got ["Europe/Berlin"])"},
      {R"({"endDate":"tomorrow"})",
       R"(repeat options: 'endDate' must be ms since the epoch or an ISO-8601 date with Z or an offset, got "tomorrow")"},
      {R"({"startDate":"2025-03-30T02:30:00"})",
       R"(repeat options: 'startDate' must be ms since the epoch or an ISO-8601 date with Z or an offset, got "2025-03-30T02:30:00")"},
      {R"({"limit":"ten"})", R"(repeat options: 'limit' must be a number, got "ten")"},
      {R"({"count":-1})", "repeat options: 'count' must be a non-negative number, got -1"},
      {R"({"immediately":1})", "repeat options: 'immediately' must be true or false, got 1"},
      {R"([1,2])", "repeat options: expected a JSON object, got [1,2]"},
  };
  for (const auto& [json, message] : cases) {
    auto o = parse_repeat_options(json);
    ASSERT_FALSE(o.ok()) << json;
    EXPECT_EQ(o.error().code, "invalid_repeat_options");
    EXPECT_EQ(o.error().message, message);
  }
  auto broken = parse_repeat_options("{\"every\":");
  ASSERT_FALSE(broken.ok());
  EXPECT_EQ(broken.error().message.rfind("repeat options: not valid JSON: ", 0), 0u);
}

}  // namespace
}  // namespace guardant::engine
