// Timing of BullMQ job schedulers (`upsertJobScheduler` with `pattern` or
// `every`), computed exactly as bullmq 6.7.6 and the cron-parser it pins
// (5.10.4, on luxon) compute it, so that a fleet of C++ workers keeps every
// schedule firing at the same instants a Node worker would.
//
// When a worker fetches a job carrying `rjk`, it must create the scheduler's
// next job before processing this one (shared/spec/bullmq-protocol.md §9);
// next_iteration_millis() says when that next job is due. Everything here is
// pure: no Redis, no clock reads (the caller passes the time in), no logging.
// Values are immutable after construction; const members may be called from
// any thread. The first time-zone lookup reads the system tz database
// (/usr/share/zoneinfo, via the date/tz library): call check_time_zone() once
// at start-up to keep that I/O off the event loop.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace guardant::engine {

// Optional bounds of a cron search: cron-parser's `startDate`/`endDate`, which
// bullmq passes through from the repeat options. A fire time before `start_ms`
// or after `end_ms` (inclusive bounds) is never returned.
struct CronTimeSpan {
  std::optional<int64_t> start_ms;
  std::optional<int64_t> end_ms;
};

// A parsed cron pattern, cron-parser compatible: 5 fields, or 6 with leading
// seconds (fewer fields are padded from the left like cron-parser does);
// `*`, `?`, lists, ranges, steps (`*/n`, `a/n`, `a-b/n`); JAN-DEC and SUN-SAT
// in any case; day-of-week 0-7 (7 = Sunday); `L` in day-of-month (last day),
// `nL` in day-of-week (last weekday n of the month), `n#k` (k-th weekday n);
// @yearly @annually @monthly @weekly @daily @hourly @minutely @secondly
// @weekdays @weekends. When both day-of-month and day-of-week are restricted,
// a day matches if either matches. Hashed values (`H`) are refused: without
// a seed cron-parser draws them at random, which no other worker can repeat.
//
// Errors (code "invalid_cron_pattern") quote the pattern and name the field,
// e.g. "cron pattern '*/0 * * * *': minute field: step must be positive".
class CronExpression {
 public:
  static Result<CronExpression> parse(std::string_view pattern);

  // The next fire time after `after_ms` (ms since the epoch), found by
  // cron-parser's own walk in time zone `tz`, DST quirks included: a local
  // time a spring-forward skips fires once, shifted by the gap (02:30 becomes
  // 03:30 CEST); with a restricted hour field the hour a fall-back repeats is
  // not visited twice (02:30 fires in CEST only), while with hour `*` every
  // matching instant through it fires.
  //
  // `tz` is an IANA name (case-insensitive, links such as Asia/Calcutta
  // accepted), "UTC"/"GMT", or "UTC+h[:mm]"; "" means UTC. (Node uses the
  // process's local zone when tz is absent, so a scheduler without tz only
  // agrees with Node workers running with TZ=UTC.) Offsets come from the
  // system tz database and, past its last listed transition (2037), from the
  // zone's POSIX rule, as ICU does for Node. An unknown tz is an error (code
  // "invalid_time_zone") naming it.
  //
  // nullopt when cron-parser finds no time: outside `span`, or when its
  // search limit (10000 steps, years ahead for any satisfiable pattern) runs
  // out, e.g. for "0 0 31 2,4 *".
  Result<std::optional<int64_t>> next_after(int64_t after_ms, std::string_view tz,
                                            const CronTimeSpan& span = {}) const;

  const std::string& pattern() const { return pattern_; }

 private:
  struct Field {
    std::vector<int> values;  // sorted, the numeric values the field matches
    bool wildcard = false;    // written as `*` or `?`
    bool has_last = false;    // an `L` appears in the field
  };
  friend class CronSearch;

  std::string pattern_;
  Field second_, minute_, hour_, day_of_month_, month_, day_of_week_;
  int nth_weekday_ = 0;  // k of `n#k`, 0 = none
  // For `nL`: the weekday (0-6) of each day-of-week item's first character,
  // the way cron-parser reads them; -1 where that is not a digit.
  std::vector<int> last_weekdays_;
};

// Checks that `tz` names a time zone next_after() accepts (see there). The
// first call loads the tz database index from disk.
Status check_time_zone(std::string_view tz);

// A scheduler's repeat options, as bullmq stores them in each scheduler job's
// `opts.repeat` (and partly in the hash `P repeat:<id>`).
struct RepeatOptions {
  std::optional<int64_t> every_ms;  // fixed interval; set or `pattern`, never both
  std::string pattern;              // cron pattern
  std::string tz;                   // "" = UTC (see CronExpression::next_after)
  std::optional<int64_t> start_date_ms, end_date_ms;
  std::optional<int64_t> limit;  // max iterations
  int64_t offset_ms = 0;         // `every` slot alignment
  int64_t count = 0;             // iterations so far (opts.repeat.count)
  bool immediately = false;      // bullmq strips it from job opts; kept for completeness
};

// When the scheduler's next job is due, given the job just fetched:
// `prev_millis` is that job's iteration millis (its opts.prevMillis, equal to
// the scheduler's score in `P repeat`), `now_ms` the worker's wall clock.
// nullopt means the schedule has ended: `count + 1 > limit`, `now > endDate`,
// or cron has no further fire time (e.g. past endDate).
//  - every: prev + every; when that is already in the past (missed slots),
//    the first slot after now aligned to `offset_ms`. bullmq's Lua reads
//    `every` and `offset` from the scheduler hash `P repeat:<id>` first and
//    only then from the job's opts.repeat, and the hash is where the phase of
//    an `every` scheduler lives (`offset` = creation time mod every; the jobs'
//    opts.repeat carry no offset unless the producer gave one), so fill
//    every_ms/offset_ms from the hash when it has them.
//  - pattern: the next cron time after max(now, prev, startDate), clamped to
//    max(now, prev).
// The new job's opts then carry `repeat.count = count + 1` and
// `prevMillis = ` the result. Errors: neither or both of every/pattern, an
// invalid pattern, an unknown tz (codes "invalid_repeat_options",
// "invalid_cron_pattern", "invalid_time_zone").
Result<std::optional<int64_t>> next_iteration_millis(const RepeatOptions& opts, int64_t prev_millis,
                                                     int64_t now_ms);

// Parses RepeatOptions from the JSON text of an `opts.repeat` object. Keys:
// every, pattern, tz, startDate, endDate (ms number or ISO-8601 string with a
// date, optionally a time and then `Z` or an offset; a date alone is UTC),
// limit, offset, count, immediately; null counts as absent, other keys (key,
// jobId, utc…) are ignored. Errors (code "invalid_repeat_options") name the
// key, e.g. "repeat options: 'every' must be a positive integer (ms), got \"5s\"".
Result<RepeatOptions> parse_repeat_options(std::string_view json_text);

}  // namespace guardant::engine
