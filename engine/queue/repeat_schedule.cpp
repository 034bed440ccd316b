// How this matches Node exactly: cron-parser 5.10.4 (pinned by bullmq 6.7.6)
// does not compute fire times arithmetically; it walks a luxon DateTime
// forward field by field (month, day, hour, minute, second), and the result
// in DST transitions depends on the precise luxon operations it uses (`plus`
// with calendar units, `startOf`, `set`) and on how luxon maps a local time
// back to an instant (its fixOffset, which keeps the current offset for a
// repeated local time when that offset fits it, and moves a skipped local
// time forward by the gap). So this file has three layers:
//   ZonedTime   - the subset of luxon's DateTime that cron-parser uses;
//   CronDate    - cron-parser's CronDate (DST start/end markers);
//   CronSearch  - cron-parser's #findSchedule, step for step, with its loop
//                 limit and time-span checks;
// plus the parser, which follows cron-parser's string handling (including
// its quirks: JS parseInt, ranges filtered by month, duplicates refused), and
// bullmq's JobScheduler/updateJobScheduler arithmetic for the next iteration.
#include "queue/repeat_schedule.hpp"

#include <date/date.h>
#include <date/tz.h>

#include <algorithm>
#include <array>
#include <boost/json.hpp>
#include <cctype>
#include <charconv>
#include <cmath>
#include <cstdlib>
#include <exception>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <memory>
#include <mutex>
#include <utility>

namespace guardant::engine {
namespace {

constexpr int64_t kMsPerSecond = 1000;
constexpr int64_t kMsPerMinute = 60 * kMsPerSecond;
constexpr int64_t kMsPerHour = 60 * kMsPerMinute;
constexpr int64_t kMsPerDay = 24 * kMsPerHour;

// cron-parser's limits.
constexpr int kLoopLimit = 10000;
constexpr size_t kMaxFieldValues = 256;
constexpr size_t kMaxExpressionLength = 1024;

// Where Debian's tzdata (and so the date library built with USE_OS_TZDB) keeps
// the compiled zones.
const std::string kZoneInfoDir = "/usr/share/zoneinfo/";

// cron-parser's DAYS_IN_MONTH (February counted as 29).
constexpr std::array<int, 12> kDaysInMonth = {31, 29, 31, 30, 31, 30, 31, 31, 30, 31, 30, 31};

int64_t floor_div(int64_t a, int64_t b) {
  int64_t q = a / b;
  if ((a % b != 0) && ((a < 0) != (b < 0))) --q;
  return q;
}
int64_t floor_mod(int64_t a, int64_t b) {
  return a - floor_div(a, b) * b;
}

bool is_leap_year(int64_t y) {
  return (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
}

// luxon's daysInMonth: the month may overflow into neighbouring years.
int days_in_month(int64_t year, int64_t month) {
  const int64_t mod_month = floor_mod(month - 1, 12) + 1;
  const int64_t mod_year = year + (month - mod_month) / 12;
  if (mod_month == 2) return is_leap_year(mod_year) ? 29 : 28;
  return kDaysInMonth[static_cast<size_t>(mod_month - 1)];
}

// Howard Hinnant's days_from_civil / civil_from_days (proleptic Gregorian).
int64_t days_from_civil(int64_t y, int64_t m, int64_t d) {
  y -= m <= 2;
  const int64_t era = floor_div(y, 400);
  const int64_t yoe = y - era * 400;
  const int64_t doy = (153 * (m > 2 ? m - 3 : m + 9) + 2) / 5 + d - 1;
  const int64_t doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
  return era * 146097 + doe - 719468;
}

struct Civil {
  int64_t year = 1970;
  int64_t month = 1;  // may overflow transiently (luxon/Date.UTC normalise it)
  int64_t day = 1;
  int64_t hour = 0, minute = 0, second = 0, millisecond = 0;
};

Civil civil_from_ms(int64_t ms) {
  const int64_t z0 = floor_div(ms, kMsPerDay);
  int64_t rest = ms - z0 * kMsPerDay;
  const int64_t z = z0 + 719468;
  const int64_t era = floor_div(z, 146097);
  const int64_t doe = z - era * 146097;
  const int64_t yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
  const int64_t doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
  const int64_t mp = (5 * doy + 2) / 153;
  Civil c;
  c.day = doy - (153 * mp + 2) / 5 + 1;
  c.month = mp < 10 ? mp + 3 : mp - 9;
  c.year = yoe + era * 400 + (c.month <= 2);
  c.hour = rest / kMsPerHour;
  rest %= kMsPerHour;
  c.minute = rest / kMsPerMinute;
  rest %= kMsPerMinute;
  c.second = rest / kMsPerSecond;
  c.millisecond = rest % kMsPerSecond;
  return c;
}

// luxon's objToLocalTS (Date.UTC): month and day overflow roll over.
int64_t local_ms_from_civil(const Civil& c) {
  const int64_t year = c.year + floor_div(c.month - 1, 12);
  const int64_t month = floor_mod(c.month - 1, 12) + 1;
  const int64_t days = days_from_civil(year, month, 1) + (c.day - 1);
  return days * kMsPerDay + c.hour * kMsPerHour + c.minute * kMsPerMinute +
         c.second * kMsPerSecond + c.millisecond;
}

std::string lower(std::string_view s) {
  std::string out(s);
  for (char& ch : out) ch = static_cast<char>(std::tolower(static_cast<unsigned char>(ch)));
  return out;
}

bool iequals(std::string_view a, std::string_view b) {
  if (a.size() != b.size()) return false;
  for (size_t i = 0; i < a.size(); ++i) {
    if (std::tolower(static_cast<unsigned char>(a[i])) !=
        std::tolower(static_cast<unsigned char>(b[i])))
      return false;
  }
  return true;
}

// ---------------------------------------------------------------------------
// Time zones: a fixed offset or an IANA zone of the system tz database.

// The rule a TZif file ends with (POSIX TZ, e.g. "CET-1CEST,M3.5.0,M10.5.0/3"),
// which governs every instant after the file's last listed transition.
// Debian's files list transitions only up to 2037 and the date library does
// not read this rule, while Node (ICU) keeps applying DST, so it is read here.
class PosixRule {
 public:
  static std::optional<PosixRule> parse(std::string_view text);

  bool has_dst() const { return has_dst_; }
  int64_t offset_s(int64_t utc_s) const {
    if (!has_dst_) return std_s_;
    const int64_t year = civil_from_ms((utc_s + std_s_) * kMsPerSecond).year;
    const int64_t start = transition_day(start_, year) * 86400 + start_.time_s - std_s_;
    const int64_t end = transition_day(end_, year) * 86400 + end_.time_s - dst_s_;
    const bool dst =
        start < end ? (utc_s >= start && utc_s < end) : !(utc_s >= end && utc_s < start);
    return dst ? dst_s_ : std_s_;
  }

 private:
  struct When {
    char kind = 'M';  // 'M' month.week.day, 'J' 1-365 without Feb 29, 'N' 0-365
    int64_t month = 3, week = 2, weekday = 0, day = 0;
    int64_t time_s = 2 * 3600;
  };
  static int64_t transition_day(const When& w, int64_t year) {
    const int64_t jan1 = days_from_civil(year, 1, 1);
    if (w.kind == 'J') return jan1 + w.day - 1 + (is_leap_year(year) && w.day >= 60 ? 1 : 0);
    if (w.kind == 'N') return jan1 + w.day;
    const int64_t first = days_from_civil(year, w.month, 1);
    int64_t day = first + floor_mod(w.weekday - floor_mod(first + 4, 7), 7) + (w.week - 1) * 7;
    while (day >= first + days_in_month(year, w.month)) day -= 7;
    return day;
  }

  int64_t std_s_ = 0, dst_s_ = 0;  // east of UTC
  bool has_dst_ = false;
  When start_, end_;
};

std::optional<PosixRule> PosixRule::parse(std::string_view text) {
  size_t i = 0;
  auto name = [&]() -> bool {
    if (i < text.size() && text[i] == '<') {
      const size_t close = text.find('>', i);
      if (close == std::string_view::npos) return false;
      i = close + 1;
      return true;
    }
    const size_t begin = i;
    while (i < text.size() && std::isalpha(static_cast<unsigned char>(text[i]))) ++i;
    return i - begin >= 3;
  };
  auto number = [&](int64_t& out) -> bool {
    const size_t begin = i;
    out = 0;
    while (i < text.size() && std::isdigit(static_cast<unsigned char>(text[i]))) {
      out = out * 10 + (text[i++] - '0');
    }
    return i > begin;
  };
  // [+-]hh[:mm[:ss]] in seconds, sign as written.
  auto duration = [&](int64_t& out) -> bool {
    int64_t sign = 1;
    if (i < text.size() && (text[i] == '+' || text[i] == '-')) sign = text[i++] == '-' ? -1 : 1;
    int64_t h = 0, m = 0, sec = 0;
    if (!number(h)) return false;
    if (i < text.size() && text[i] == ':') {
      ++i;
      if (!number(m)) return false;
      if (i < text.size() && text[i] == ':') {
        ++i;
        if (!number(sec)) return false;
      }
    }
    out = sign * (h * 3600 + m * 60 + sec);
    return true;
  };
  auto when = [&](When& w) -> bool {
    if (i < text.size() && text[i] == 'M') {
      ++i;
      w.kind = 'M';
      if (!number(w.month) || i >= text.size() || text[i++] != '.' || !number(w.week) ||
          i >= text.size() || text[i++] != '.' || !number(w.weekday)) {
        return false;
      }
      if (w.month < 1 || w.month > 12 || w.week < 1 || w.week > 5 || w.weekday > 6) return false;
    } else if (i < text.size() && text[i] == 'J') {
      ++i;
      w.kind = 'J';
      if (!number(w.day) || w.day < 1 || w.day > 365) return false;
    } else {
      w.kind = 'N';
      if (!number(w.day) || w.day > 365) return false;
    }
    w.time_s = 2 * 3600;
    if (i < text.size() && text[i] == '/') {
      ++i;
      if (!duration(w.time_s)) return false;
    }
    return true;
  };

  PosixRule rule;
  int64_t std_west = 0;
  if (!name() || !duration(std_west)) return std::nullopt;
  rule.std_s_ = -std_west;
  if (i == text.size()) return rule;
  if (!name()) return std::nullopt;
  rule.has_dst_ = true;
  rule.dst_s_ = rule.std_s_ + 3600;
  if (i < text.size() && text[i] != ',') {
    int64_t dst_west = 0;
    if (!duration(dst_west)) return std::nullopt;
    rule.dst_s_ = -dst_west;
  }
  if (i == text.size()) {  // POSIX default rule (US)
    rule.start_ = When{'M', 3, 2, 0, 0, 2 * 3600};
    rule.end_ = When{'M', 11, 1, 0, 0, 2 * 3600};
    return rule;
  }
  if (text[i++] != ',' || !when(rule.start_) || i >= text.size() || text[i++] != ',' ||
      !when(rule.end_) || i != text.size()) {
    return std::nullopt;
  }
  return rule;
}

uint64_t read_be(const std::string& data, size_t pos, size_t len) {
  uint64_t v = 0;
  for (size_t k = 0; k < len; ++k) v = (v << 8) | static_cast<unsigned char>(data[pos + k]);
  return v;
}

// A TZif file's last listed transition and its footer rule, when that rule
// has DST (otherwise the date library's last period already is the rule).
struct ZoneTail {
  int64_t after_s = 0;
  PosixRule rule;
};

std::optional<ZoneTail> read_zone_tail(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return std::nullopt;
  const std::string data((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  auto counts = [&](size_t at, std::array<uint64_t, 6>& c) {
    if (data.size() < at + 44 || data.compare(at, 4, "TZif") != 0) return false;
    for (size_t k = 0; k < 6; ++k) c[k] = read_be(data, at + 20 + 4 * k, 4);
    return true;
  };
  // isutcnt, isstdcnt, leapcnt, timecnt, typecnt, charcnt
  std::array<uint64_t, 6> c{};
  if (!counts(0, c) || data[4] < '2') return std::nullopt;
  const size_t v1 = c[3] * 5 + c[4] * 6 + c[5] + c[2] * 8 + c[1] + c[0];
  const size_t header2 = 44 + v1;
  if (!counts(header2, c)) return std::nullopt;
  const size_t body = header2 + 44;
  const size_t v2 = c[3] * 9 + c[4] * 6 + c[5] + c[2] * 12 + c[1] + c[0];
  const size_t footer = body + v2;
  if (data.size() < footer + 2 || data[footer] != '\n') return std::nullopt;
  const size_t footer_end = data.find('\n', footer + 1);
  if (footer_end == std::string::npos) return std::nullopt;
  auto rule = PosixRule::parse(std::string_view(data).substr(footer + 1, footer_end - footer - 1));
  if (!rule || !rule->has_dst()) return std::nullopt;
  ZoneTail tail{std::numeric_limits<int64_t>::min(), *rule};
  if (c[3] > 0) tail.after_s = static_cast<int64_t>(read_be(data, body + (c[3] - 1) * 8, 8));
  return tail;
}

// An IANA zone with its tail rule, looked up once per name (any thread).
struct IanaZone {
  const date::time_zone* zone = nullptr;
  std::shared_ptr<const ZoneTail> tail;
};

// nullopt: no such zone. Throws what the date library throws when the tz
// database cannot be read.
std::optional<IanaZone> find_iana_zone(const std::string& name) {
  static std::mutex mutex;
  static std::map<std::string, IanaZone, std::less<>> cache;  // known names only
  const std::lock_guard<std::mutex> lock(mutex);
  if (auto it = cache.find(name); it != cache.end()) return it->second;
  IanaZone found;
  try {
    found.zone = date::locate_zone(name);
  } catch (const std::runtime_error&) {
    // Intl (and so Node) accepts zone names in any case. (With the OS tz
    // database, links such as US/Eastern are zones of their own.)
    for (const auto& z : date::get_tzdb().zones) {
      if (iequals(z.name(), name)) {
        found.zone = &z;
        break;
      }
    }
  }
  if (found.zone == nullptr) return std::nullopt;
  if (auto tail = read_zone_tail(kZoneInfoDir + std::string(found.zone->name()))) {
    found.tail = std::make_shared<const ZoneTail>(*tail);
  }
  cache.emplace(name, found);
  return found;
}

class Zone {
 public:
  static Result<Zone> resolve(std::string_view tz);

  // Offset from UTC at instant `ts`, in ms (luxon's zone.offset(), which works
  // at second resolution).
  int64_t offset_ms(int64_t ts) const {
    if (iana_ == nullptr) return fixed_ms_;
    const int64_t s = floor_div(ts, kMsPerSecond);
    if (tail_ && s >= tail_->after_s) return tail_->rule.offset_s(s) * kMsPerSecond;
    const auto info = iana_->get_info(date::sys_seconds{std::chrono::seconds{s}});
    return static_cast<int64_t>(info.offset.count()) * kMsPerSecond;
  }

 private:
  const date::time_zone* iana_ = nullptr;
  std::shared_ptr<const ZoneTail> tail_;
  int64_t fixed_ms_ = 0;
};

Result<Zone> Zone::resolve(std::string_view tz) {
  Zone zone;
  if (tz.empty()) return zone;  // our documented default: UTC
  const std::string lowered = lower(tz);
  if (lowered == "utc" || lowered == "gmt") return zone;
  if (lowered == "local" || lowered == "system" || lowered == "default") {
    return Result<Zone>::failure("invalid_time_zone",
                                 "time zone '" + std::string(tz) +
                                     "': the process-local zone is not supported; name an IANA "
                                     "zone such as 'Europe/Berlin', or 'UTC'");
  }
  // luxon's FixedOffsetZone specifier: utc, utc+h, utc-hh:mm.
  if (lowered.size() > 3 && lowered.compare(0, 3, "utc") == 0 &&
      (lowered[3] == '+' || lowered[3] == '-')) {
    const std::string_view rest = std::string_view(lowered).substr(4);
    size_t i = 0;
    while (i < rest.size() && i < 2 && std::isdigit(static_cast<unsigned char>(rest[i]))) ++i;
    bool ok = i >= 1;
    int64_t hours = 0, minutes = 0;
    if (ok) {
      hours = std::atoi(std::string(rest.substr(0, i)).c_str());
      if (i < rest.size()) {
        ok = rest.size() == i + 3 && rest[i] == ':' &&
             std::isdigit(static_cast<unsigned char>(rest[i + 1])) &&
             std::isdigit(static_cast<unsigned char>(rest[i + 2]));
        if (ok) minutes = std::atoi(std::string(rest.substr(i + 1, 2)).c_str());
      }
    }
    if (ok) {
      const int64_t sign = lowered[3] == '-' ? -1 : 1;
      zone.fixed_ms_ = sign * (hours * 60 + minutes) * kMsPerMinute;
      return zone;
    }
  }
  // The date library signals failures by throwing; keep that inside.
  try {
    if (auto found = find_iana_zone(std::string(tz))) {
      zone.iana_ = found->zone;
      zone.tail_ = std::move(found->tail);
      return zone;
    }
  } catch (const std::exception& e) {
    return Result<Zone>::failure(
        "invalid_time_zone",
        "time zone '" + std::string(tz) + "': cannot read the tz database: " + e.what());
  }
  return Result<Zone>::failure("invalid_time_zone", "unknown time zone '" + std::string(tz) + "'");
}

// ---------------------------------------------------------------------------
// ZonedTime: the subset of luxon's DateTime that cron-parser uses. Like luxon,
// an instant plus its zone; the local fields and offset derive from them.

enum class Unit { kMonth, kDay, kHour, kMinute, kSecond };

class ZonedTime {
 public:
  ZonedTime(const Zone& zone, int64_t ts) : zone_(&zone) { reset(ts); }

  int64_t ts() const { return ts_; }
  int64_t offset() const { return offset_; }
  const Civil& local() const { return c_; }
  // 0 = Sunday … 6 = Saturday.
  int weekday() const {
    const int64_t days = days_from_civil(c_.year, c_.month, c_.day);
    return static_cast<int>(floor_mod(days + 4, 7));
  }

  struct Fields {
    std::optional<int64_t> month, day, hour, minute, second, millisecond;
  };
  // luxon set(): replace fields, keep a day that would overflow inside the
  // month, then map the local time back with the current offset as guess.
  void set(const Fields& f) {
    Civil mixed = c_;
    if (f.month) mixed.month = *f.month;
    if (f.day) mixed.day = *f.day;
    if (f.hour) mixed.hour = *f.hour;
    if (f.minute) mixed.minute = *f.minute;
    if (f.second) mixed.second = *f.second;
    if (f.millisecond) mixed.millisecond = *f.millisecond;
    if (!f.day) mixed.day = std::min<int64_t>(days_in_month(mixed.year, mixed.month), mixed.day);
    reset(fix_offset(local_ms_from_civil(mixed)));
  }

  // luxon plus({months}) / plus({days}): calendar arithmetic on local fields.
  void plus_months(int64_t n) {
    Civil c = c_;
    c.month = c_.month + n;
    c.day = std::min<int64_t>(c_.day, days_in_month(c.year, c.month));
    reset(fix_offset(local_ms_from_civil(c)));
  }
  void plus_days(int64_t n) {
    Civil c = c_;
    c.day = std::min<int64_t>(c_.day, days_in_month(c.year, c.month)) + n;
    reset(fix_offset(local_ms_from_civil(c)));
  }
  // luxon plus({hours|minutes|seconds|milliseconds}): absolute time.
  void plus_ms(int64_t n) { reset(ts_ + n); }

  void start_of(Unit unit) {
    Fields f;
    switch (unit) {
      case Unit::kMonth:
        f.day = 1;
        [[fallthrough]];
      case Unit::kDay:
        f.hour = 0;
        [[fallthrough]];
      case Unit::kHour:
        f.minute = 0;
        [[fallthrough]];
      case Unit::kMinute:
        f.second = 0;
        [[fallthrough]];
      case Unit::kSecond:
        f.millisecond = 0;
        break;
    }
    set(f);
  }
  // luxon endOf('day') = plus({days: 1}).startOf('day').minus(1).
  void end_of_day() {
    plus_days(1);
    start_of(Unit::kDay);
    plus_ms(-1);
  }

 private:
  void reset(int64_t ts) {
    ts_ = ts;
    offset_ = zone_->offset_ms(ts);
    c_ = civil_from_ms(ts + offset_);
  }
  // luxon's fixOffset: which instant a local time means. The current offset
  // is the guess, so in a repeated hour the reading with the current offset
  // wins; a local time inside a gap moves forward by the gap.
  int64_t fix_offset(int64_t local) const {
    int64_t utc_guess = local - offset_;
    const int64_t o2 = zone_->offset_ms(utc_guess);
    if (o2 == offset_) return utc_guess;
    utc_guess -= o2 - offset_;
    const int64_t o3 = zone_->offset_ms(utc_guess);
    if (o2 == o3) return utc_guess;
    return local - std::min(o2, o3);
  }

  const Zone* zone_;
  int64_t ts_ = 0;
  int64_t offset_ = 0;
  Civil c_;
};

// ---------------------------------------------------------------------------
// CronDate: cron-parser's date wrapper, forward operations only.

class CronDate {
 public:
  CronDate(const Zone& zone, int64_t ts) : t_(zone, ts) {}

  int64_t ts() const { return t_.ts(); }
  int64_t offset() const { return t_.offset(); }
  int64_t month() const { return t_.local().month; }
  int64_t date() const { return t_.local().day; }
  int64_t year() const { return t_.local().year; }
  int64_t hours() const { return t_.local().hour; }
  int64_t minutes() const { return t_.local().minute; }
  int64_t seconds() const { return t_.local().second; }
  int64_t milliseconds() const { return t_.local().millisecond; }
  int day_of_week() const { return t_.weekday(); }

  void set_hours(int64_t h) {
    ZonedTime::Fields f;
    f.hour = h;
    t_.set(f);
  }
  void set_minutes(int64_t m) {
    ZonedTime::Fields f;
    f.minute = m;
    t_.set(f);
  }
  void set_seconds(int64_t s) {
    ZonedTime::Fields f;
    f.second = s;
    t_.set(f);
  }
  void set_milliseconds(int64_t ms) {
    ZonedTime::Fields f;
    f.millisecond = ms;
    t_.set(f);
  }

  int64_t start_of_day_offset() const {
    ZonedTime t = t_;
    t.start_of(Unit::kDay);
    return t.offset();
  }
  int64_t end_of_day_offset() const {
    ZonedTime t = t_;
    t.end_of_day();
    return t.offset();
  }

  bool is_last_day_of_month() const {
    const int64_t m = month();
    if (m == 2) return date() == kDaysInMonth[1] - (is_leap_year(year()) ? 0 : 1);
    return date() == kDaysInMonth[static_cast<size_t>(m - 1)];
  }
  bool is_last_weekday_of_month() const {
    const int64_t m = month();
    const int64_t last = m == 2 ? kDaysInMonth[1] - (is_leap_year(year()) ? 0 : 1)
                                : kDaysInMonth[static_cast<size_t>(m - 1)];
    return date() > last - 7;
  }

  // cron-parser's applyDateOperation(Add, unit, hoursLength): steps forward and
  // records a DST start (hours skipped) or end (an hour repeated), unless the
  // hour field matches every hour.
  void add(Unit unit, size_t hours_length) {
    if (unit == Unit::kMonth) {
      t_.plus_months(1);
      t_.start_of(Unit::kMonth);
      return;
    }
    if (unit == Unit::kDay) {
      t_.plus_days(1);
      t_.start_of(Unit::kDay);
      return;
    }
    const int64_t previous_hour = hours();
    const int64_t previous_offset = offset();
    switch (unit) {
      case Unit::kHour:
        t_.plus_ms(kMsPerHour);
        t_.start_of(Unit::kHour);
        break;
      case Unit::kMinute:
        t_.plus_ms(kMsPerMinute);
        t_.start_of(Unit::kMinute);
        break;
      default:
        t_.plus_ms(kMsPerSecond);
        break;
    }
    const int64_t current_hour = hours();
    const int64_t advance = (current_hour - previous_hour + 24) % 24;
    if (offset() > previous_offset && advance >= 2) {
      if (hours_length != 24) {
        dst_start_ = static_cast<int>((previous_hour + 1) % 24);
        dst_start_landing_hour_ = static_cast<int>(current_hour);
      }
    } else if (advance == 0 && minutes() == 0 && seconds() == 0) {
      if (hours_length != 24) dst_end_ = static_cast<int>(current_hour);
    }
  }

  std::optional<int> dst_start() const { return dst_start_; }
  std::optional<int> dst_start_landing_hour() const { return dst_start_landing_hour_; }
  void clear_dst_start() {
    dst_start_.reset();
    dst_start_landing_hour_.reset();
  }
  std::optional<int> dst_end() const { return dst_end_; }
  void clear_dst_end() { dst_end_.reset(); }

 private:
  ZonedTime t_;
  std::optional<int> dst_start_, dst_start_landing_hour_, dst_end_;
};

bool contains(const std::vector<int>& values, int64_t v) {
  return std::binary_search(values.begin(), values.end(), v);
}

// The first value strictly greater than `current`.
std::optional<int> nearest_above(const std::vector<int>& values, int64_t current) {
  auto it = std::upper_bound(values.begin(), values.end(), current);
  if (it == values.end()) return std::nullopt;
  return *it;
}

}  // namespace

// ---------------------------------------------------------------------------
// CronSearch: cron-parser's CronExpression (constructor + #findSchedule).

class CronSearch {
 public:
  CronSearch(const CronExpression& e, const Zone& zone, const CronTimeSpan& span)
      : e_(e), zone_(zone), span_(span) {}

  std::optional<int64_t> next(int64_t current_ms) {
    // The constructor clamps the start of the walk into the time span.
    if (span_.start_ms && current_ms < *span_.start_ms) {
      current_ms = *span_.start_ms;
    } else if (span_.end_ms && current_ms > *span_.end_ms) {
      current_ms = *span_.end_ms;
    }
    const size_t hours_length = e_.hour_.values.size();
    CronDate current(zone_, current_ms);
    const int64_t start_ts = current.ts();
    if (current.milliseconds() > 0) {
      current.set_milliseconds(0);
      current.add(Unit::kSecond, hours_length);
    }
    int step = 0;
    while (++step < kLoopLimit) {
      if (!in_span(current)) return std::nullopt;  // "Out of the time span range"
      if (!contains(e_.month_.values, current.month())) {
        current.add(Unit::kMonth, hours_length);
        continue;
      }
      if (!match_day(current)) {
        current.add(Unit::kDay, hours_length);
        continue;
      }
      if (!match_hour(current)) continue;
      if (!contains(e_.minute_.values, current.minutes())) {
        move_to_next_minute(current);
        continue;
      }
      if (!contains(e_.second_.values, current.seconds())) {
        move_to_next_second(current);
        continue;
      }
      if (start_ts == current.ts()) {
        current.add(Unit::kSecond, hours_length);
        continue;
      }
      break;
    }
    if (step >= kLoopLimit) return std::nullopt;  // "loop limit exceeded"
    return current.ts();
  }

 private:
  bool in_span(const CronDate& d) const {
    if (span_.start_ms && d.ts() < *span_.start_ms) return false;
    if (span_.end_ms && d.ts() > *span_.end_ms) return false;
    return true;
  }

  // Day-of-month / day-of-week with cron's OR rule when both are restricted.
  bool match_day(const CronDate& d) const {
    const auto& dom = e_.day_of_month_;
    const auto& dow = e_.day_of_week_;
    const bool matched_dom =
        contains(dom.values, d.date()) || (dom.has_last && d.is_last_day_of_month());
    const int weekday = d.day_of_week();
    const bool nth_ok =
        e_.nth_weekday_ <= 0 || (d.date() + 6) / 7 == static_cast<int64_t>(e_.nth_weekday_);
    bool matched_dow = contains(dow.values, weekday) && nth_ok;
    if (!matched_dow && dow.has_last && d.is_last_weekday_of_month()) {
      matched_dow = std::find(e_.last_weekdays_.begin(), e_.last_weekdays_.end(), weekday) !=
                    e_.last_weekdays_.end();
    }
    if (!dom.wildcard && !dow.wildcard && (matched_dom || matched_dow)) return true;
    if (matched_dom && dow.wildcard) return true;
    if (dom.wildcard && !dow.wildcard && matched_dow) return true;
    return false;
  }

  bool is_dst_transition_day(const CronDate& d) {
    const std::array<int64_t, 3> key = {d.year(), d.month(), d.date()};
    if (dst_day_key_ && *dst_day_key_ == key) return dst_day_;
    dst_day_key_ = key;
    dst_day_ = d.start_of_day_offset() != d.end_of_day_offset();
    return dst_day_;
  }

  bool match_hour(CronDate& d) {
    const auto& hours = e_.hour_.values;
    const int64_t current_hour = d.hours();
    const bool is_match = contains(hours, current_hour);
    const bool is_dst_end = d.dst_end() && *d.dst_end() == current_hour;
    // DST start: a scheduled hour inside the gap fires in the landing hour.
    if (d.dst_start() && d.dst_start_landing_hour() &&
        *d.dst_start_landing_hour() == current_hour) {
      for (int64_t skipped = *d.dst_start(); skipped != current_hour;
           skipped = (skipped + 1) % 24) {
        if (contains(hours, skipped)) return true;
      }
    }
    // DST end: the repeated hour is not visited a second time.
    if (is_dst_end) {
      d.clear_dst_end();
      d.add(Unit::kHour, hours.size());
      return false;
    }
    if (is_match) return true;
    d.clear_dst_start();
    const auto next_hour = nearest_above(hours, current_hour);
    if (!next_hour) {
      d.add(Unit::kDay, hours.size());
      return false;
    }
    if (is_dst_transition_day(d)) {
      const int64_t steps = *next_hour - current_hour;
      for (int64_t i = 0; i < steps; ++i) {
        d.add(Unit::kHour, hours.size());
        if (d.hours() >= *next_hour) break;  // a spring-forward step can jump 2 hours
      }
    } else {
      d.set_hours(*next_hour);
    }
    d.set_minutes(e_.minute_.values.front());
    d.set_seconds(e_.second_.values.front());
    return false;
  }

  void move_to_next_minute(CronDate& d) {
    if (const auto next = nearest_above(e_.minute_.values, d.minutes())) {
      d.set_minutes(*next);
      d.set_seconds(e_.second_.values.front());
      return;
    }
    d.add(Unit::kHour, e_.hour_.values.size());
    d.set_minutes(e_.minute_.values.front());
    d.set_seconds(e_.second_.values.front());
  }

  void move_to_next_second(CronDate& d) {
    if (const auto next = nearest_above(e_.second_.values, d.seconds())) {
      d.set_seconds(*next);
      return;
    }
    d.add(Unit::kMinute, e_.hour_.values.size());
    d.set_seconds(e_.second_.values.front());
  }

  const CronExpression& e_;
  const Zone& zone_;
  const CronTimeSpan& span_;
  std::optional<std::array<int64_t, 3>> dst_day_key_;
  bool dst_day_ = false;
};

// ---------------------------------------------------------------------------
// Parsing, after cron-parser's CronExpressionParser.

namespace {

enum class FieldKind { kSecond, kMinute, kHour, kDayOfMonth, kMonth, kDayOfWeek };

struct FieldSpec {
  const char* name;
  int min;
  int max;
  bool allows_last;  // `L` (day-of-month, day-of-week)
};

FieldSpec spec_of(FieldKind kind) {
  switch (kind) {
    case FieldKind::kSecond:
      return {"second", 0, 59, false};
    case FieldKind::kMinute:
      return {"minute", 0, 59, false};
    case FieldKind::kHour:
      return {"hour", 0, 23, false};
    case FieldKind::kDayOfMonth:
      return {"day-of-month", 1, 31, true};
    case FieldKind::kMonth:
      return {"month", 1, 12, false};
    case FieldKind::kDayOfWeek:
      return {"day-of-week", 0, 7, true};
  }
  return {"?", 0, 0, false};
}

// Saturates: anything this large is out of every field's range anyway.
constexpr int64_t kHuge = int64_t{1} << 53;

// JS parseInt(s, 10): optional leading whitespace and sign, then as many
// digits as there are; nullopt = NaN.
std::optional<int64_t> js_parse_int(std::string_view s) {
  size_t i = 0;
  while (i < s.size() && std::isspace(static_cast<unsigned char>(s[i]))) ++i;
  bool negative = false;
  if (i < s.size() && (s[i] == '+' || s[i] == '-')) negative = s[i++] == '-';
  const size_t first = i;
  int64_t v = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) {
    v = std::min(kHuge, v * 10 + (s[i] - '0'));
    ++i;
  }
  if (i == first) return std::nullopt;
  return negative ? -v : v;
}

bool all_digits(std::string_view s) {
  return !s.empty() && std::all_of(s.begin(), s.end(), [](char ch) {
    return std::isdigit(static_cast<unsigned char>(ch)) != 0;
  });
}

// JS Number(s) (unary plus) for the `#` occurrence: whitespace-trimmed
// decimal, exponent, hex/octal/binary, Infinity; "" is 0. nullopt = NaN.
std::optional<double> js_to_number(std::string_view s) {
  auto is_ws = [](char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; };
  while (!s.empty() && is_ws(s.front())) s.remove_prefix(1);
  while (!s.empty() && is_ws(s.back())) s.remove_suffix(1);
  if (s.empty()) return 0.0;
  if (s.size() > 2 && s[0] == '0') {
    int base = 0;
    if (s[1] == 'x' || s[1] == 'X') base = 16;
    if (s[1] == 'o' || s[1] == 'O') base = 8;
    if (s[1] == 'b' || s[1] == 'B') base = 2;
    if (base != 0) {
      double v = 0;
      for (char ch : s.substr(2)) {
        int digit = -1;
        if (std::isdigit(static_cast<unsigned char>(ch))) digit = ch - '0';
        if (ch >= 'a' && ch <= 'f') digit = ch - 'a' + 10;
        if (ch >= 'A' && ch <= 'F') digit = ch - 'A' + 10;
        if (digit < 0 || digit >= base) return std::nullopt;
        v = v * base + digit;
      }
      return v;
    }
  }
  std::string_view body = s;
  if (body.front() == '+' || body.front() == '-') body.remove_prefix(1);
  if (body == "Infinity") {
    return s.front() == '-' ? -std::numeric_limits<double>::infinity()
                            : std::numeric_limits<double>::infinity();
  }
  // StrDecimalLiteral: digits [. digits] | . digits, then [eE][+-]digits.
  size_t i = 0;
  size_t int_digits = 0, frac_digits = 0;
  while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++int_digits;
  if (i < body.size() && body[i] == '.') {
    ++i;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++frac_digits;
  }
  if (int_digits + frac_digits == 0) return std::nullopt;
  if (i < body.size() && (body[i] == 'e' || body[i] == 'E')) {
    ++i;
    if (i < body.size() && (body[i] == '+' || body[i] == '-')) ++i;
    size_t exp_digits = 0;
    while (i < body.size() && std::isdigit(static_cast<unsigned char>(body[i]))) ++i, ++exp_digits;
    if (exp_digits == 0) return std::nullopt;
  }
  if (i != body.size()) return std::nullopt;
  return std::strtod(std::string(s).c_str(), nullptr);
}

// parseInt(String(Number(digits))): what cron-parser range-checks for a plain
// number. Past 1e21 JS prints exponent notation, so parseInt keeps only the
// first digit.
int64_t js_reparsed_number(std::string_view digits) {
  const double v = std::strtod(std::string(digits).c_str(), nullptr);
  if (v < 1e21) return *js_parse_int(digits);
  std::array<char, 64> buf{};
  const auto res = std::to_chars(buf.data(), buf.data() + buf.size(), v);
  (void)res;
  return buf[0] - '0';
}

struct Item {
  bool is_text = false;  // a value with `L` (`L`, `5L`)
  int64_t number = 0;
  std::string text;
};

bool same_item(const Item& a, const Item& b) {
  return a.is_text == b.is_text && (a.is_text ? a.text == b.text : a.number == b.number);
}

class PatternParser {
 public:
  explicit PatternParser(std::string_view pattern) : pattern_(pattern) {}

  Error fail(std::string detail) const {
    return Error{"invalid_cron_pattern", "cron pattern '" + pattern_ + "': " + std::move(detail)};
  }
  Error fail(FieldKind kind, std::string detail) const {
    return fail(std::string(spec_of(kind).name) + " field: " + std::move(detail));
  }

  // Month and weekday names, three letters at a time like cron-parser's
  // /[a-z]{3}/gi (so "MONDAY" is "MON" then the unknown "DAY").
  Result<std::string> replace_names(FieldKind kind, std::string_view value) const {
    static constexpr std::array<const char*, 12> kMonths = {
        "jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"};
    static constexpr std::array<const char*, 7> kDays = {"sun", "mon", "tue", "wed",
                                                         "thu", "fri", "sat"};
    auto is_alpha = [](char ch) { return std::isalpha(static_cast<unsigned char>(ch)) != 0; };
    std::string out;
    for (size_t i = 0; i < value.size();) {
      if (i + 3 <= value.size() && is_alpha(value[i]) && is_alpha(value[i + 1]) &&
          is_alpha(value[i + 2])) {
        const std::string name = lower(value.substr(i, 3));
        int found = -1;
        if (kind == FieldKind::kMonth) {
          for (size_t k = 0; k < kMonths.size(); ++k)
            if (name == kMonths[k]) found = static_cast<int>(k) + 1;
        } else {
          for (size_t k = 0; k < kDays.size(); ++k)
            if (name == kDays[k]) found = static_cast<int>(k);
        }
        if (found < 0) {
          return fail(kind, "unknown name '" + std::string(value.substr(i, 3)) + "'");
        }
        out += std::to_string(found);
        i += 3;
      } else {
        out += value[i++];
      }
    }
    return out;
  }

  // One field's text (names already replaced) → its items, checked like
  // cron-parser's #parseSequence / #parseRepeat / #parseRange.
  Result<std::vector<Item>> parse_items(FieldKind kind, const std::string& value) const {
    const FieldSpec spec = spec_of(kind);
    if (value.find('H') != std::string::npos) {
      return fail(kind, "hashed values (H) are not supported");
    }
    if (value.empty()) return fail(kind, "empty");
    for (char ch : value) {
      const bool ok = std::isdigit(static_cast<unsigned char>(ch)) || ch == ',' || ch == '/' ||
                      ch == '-' || ch == '*' || ch == '?' || (ch == 'L' && spec.allows_last);
      if (!ok)
        return fail(kind, "invalid character '" + std::string(1, ch) + "' in '" + value + "'");
    }
    std::vector<Item> items;
    size_t begin = 0;
    while (true) {
      const size_t comma = value.find(',', begin);
      const std::string atom =
          value.substr(begin, comma == std::string::npos ? std::string::npos : comma - begin);
      if (items.size() > kMaxFieldValues) {
        return fail(kind, "more than " + std::to_string(kMaxFieldValues) + " values");
      }
      if (atom.empty()) return fail(kind, "empty list item in '" + value + "'");
      if (auto st = parse_atom(kind, atom, items); !st) return st.error();
      if (comma == std::string::npos) break;
      begin = comma + 1;
    }
    return items;
  }

 private:
  // `*`/`?` become "min-max" first, exactly as cron-parser substitutes them.
  Status parse_atom(FieldKind kind, const std::string& written, std::vector<Item>& items) const {
    const FieldSpec spec = spec_of(kind);
    std::string atom;
    for (char ch : written) {
      if (ch == '*' || ch == '?') {
        atom += std::to_string(spec.min) + "-" + std::to_string(spec.max);
      } else {
        atom += ch;
      }
    }
    std::string range = atom;
    std::optional<int64_t> step = 1;
    const size_t slash = atom.find('/');
    if (slash != std::string::npos) {
      if (atom.find('/', slash + 1) != std::string::npos) {
        return fail(kind, "more than one '/' in '" + written + "'");
      }
      range = atom.substr(0, slash);
      if (range.find('-') == std::string::npos) range += "-" + std::to_string(spec.max);
      step = js_parse_int(std::string_view(atom).substr(slash + 1));
    }
    const size_t dash = range.find('-');
    if (dash == std::string::npos) {
      // A single value (a step always makes a range above).
      if (!all_digits(range)) {
        Item item;
        item.is_text = true;
        item.text = range;
        items.push_back(std::move(item));  // contains L (the charset allows nothing else)
        return Ok{};
      }
      const int64_t v = js_reparsed_number(range);
      if (v < spec.min || v > spec.max) {
        return fail(kind, "value " + range + " is out of range " + std::to_string(spec.min) + "-" +
                              std::to_string(spec.max));
      }
      Item item;
      item.number = kind == FieldKind::kDayOfWeek ? v % 7 : *js_parse_int(range);
      items.push_back(std::move(item));
      return Ok{};
    }
    if (range.find('-', dash + 1) != std::string::npos) {
      return fail(kind, "invalid range '" + written + "'");
    }
    const auto lo = js_parse_int(std::string_view(range).substr(0, dash));
    const auto hi = js_parse_int(std::string_view(range).substr(dash + 1));
    if (!lo || !hi) return fail(kind, "invalid range '" + written + "'");
    if (*lo < spec.min || *hi > spec.max) {
      return fail(kind, "range '" + written + "' is outside " + std::to_string(spec.min) + "-" +
                            std::to_string(spec.max));
    }
    if (*lo > *hi) return fail(kind, "range '" + written + "' has its start after its end");
    if (!step) return fail(kind, "step in '" + written + "' is not a number");
    if (*step <= 0) return fail(kind, "step must be positive");
    // Day-of-week ranges ending on 7 (Sunday) that the step reaches add 0.
    std::vector<int64_t> values;
    if (kind == FieldKind::kDayOfWeek && *hi % 7 == 0 && (*hi - *lo) % *step == 0) {
      values.push_back(0);
    }
    for (int64_t v = *lo; v <= *hi; v += *step) {
      if (std::find(values.begin(), values.end(), v) == values.end()) values.push_back(v);
    }
    for (int64_t v : values) {
      Item item;
      item.number = v;
      items.push_back(std::move(item));
    }
    return Ok{};
  }

 public:
  // cron-parser's CronField validate(): range, L forms, no duplicates.
  Status validate(FieldKind kind, const std::vector<Item>& items) const {
    const FieldSpec spec = spec_of(kind);
    for (const Item& item : items) {
      if (item.is_text) {
        // ^\d{0,2}L$
        const std::string& t = item.text;
        const bool ok = !t.empty() && t.size() <= 3 && t.back() == 'L' &&
                        std::all_of(t.begin(), t.end() - 1, [](char ch) {
                          return std::isdigit(static_cast<unsigned char>(ch)) != 0;
                        });
        if (!ok || !spec.allows_last) {
          return fail(kind, "value '" + t + "' is not valid (expected " + std::to_string(spec.min) +
                                "-" + std::to_string(spec.max) +
                                (kind == FieldKind::kDayOfWeek ? " or nL)" : " or L)"));
        }
      } else if (item.number < spec.min || item.number > spec.max) {
        return fail(kind, "value " + std::to_string(item.number) + " is out of range " +
                              std::to_string(spec.min) + "-" + std::to_string(spec.max));
      }
    }
    for (size_t i = 0; i < items.size(); ++i) {
      for (size_t j = 0; j < i; ++j) {
        if (same_item(items[i], items[j])) {
          std::string shown = items[i].is_text ? items[i].text : std::to_string(items[i].number);
          if (kind == FieldKind::kDayOfWeek && !items[i].is_text && items[i].number == 0) {
            shown += " (Sunday, also written 7)";
          }
          return fail(kind, "value " + shown + " is listed twice");
        }
      }
    }
    return Ok{};
  }

 private:
  std::string pattern_;
};

std::vector<int> numbers_of(const std::vector<Item>& items) {
  std::vector<int> out;
  for (const Item& item : items) {
    if (!item.is_text) out.push_back(static_cast<int>(item.number));
  }
  std::sort(out.begin(), out.end());
  return out;
}

const char* predefined(std::string_view pattern) {
  static constexpr std::array<std::pair<const char*, const char*>, 10> kNames = {{
      {"@yearly", "0 0 0 1 1 *"},
      {"@annually", "0 0 0 1 1 *"},
      {"@monthly", "0 0 0 1 * *"},
      {"@weekly", "0 0 0 * * 0"},
      {"@daily", "0 0 0 * * *"},
      {"@hourly", "0 0 * * * *"},
      {"@minutely", "0 * * * * *"},
      {"@secondly", "* * * * * *"},
      {"@weekdays", "0 0 0 * * 1-5"},
      {"@weekends", "0 0 0 * * 0,6"},
  }};
  for (const auto& [name, expansion] : kNames) {
    if (pattern == name) return expansion;
  }
  return nullptr;
}

}  // namespace

Result<CronExpression> CronExpression::parse(std::string_view pattern) {
  const PatternParser parser(pattern);
  std::string_view text = pattern;
  if (const char* expansion = predefined(pattern)) text = expansion;
  // cron-parser turns "" into "0 * * * * *"; a scheduler never has an empty
  // pattern (bullmq refuses it), so here it is an error.
  if (text.empty()) return parser.fail("empty pattern");
  if (text.size() > kMaxExpressionLength) {
    return parser.fail("longer than " + std::to_string(kMaxExpressionLength) + " characters");
  }
  std::vector<std::string> atoms;
  {
    size_t i = 0;
    auto is_ws = [](char ch) { return std::isspace(static_cast<unsigned char>(ch)) != 0; };
    while (i < text.size() && is_ws(text[i])) ++i;
    size_t end = text.size();
    while (end > i && is_ws(text[end - 1])) --end;
    if (i == end) return parser.fail("empty pattern");
    while (i < end) {
      const size_t start = i;
      while (i < end && !is_ws(text[i])) ++i;
      atoms.emplace_back(text.substr(start, i - start));
      while (i < end && is_ws(text[i])) ++i;
    }
  }
  if (atoms.size() > 6) {
    return parser.fail(std::to_string(atoms.size()) + " fields; expected 5, or 6 with seconds");
  }
  // Fewer fields are padded from the left (cron-parser: second 0, then `*`).
  static constexpr std::array<const char*, 6> kDefaults = {"0", "*", "*", "*", "*", "*"};
  const size_t missing = 6 - atoms.size();
  atoms.insert(atoms.begin(), kDefaults.begin(), kDefaults.begin() + static_cast<long>(missing));

  CronExpression e;
  e.pattern_ = std::string(pattern);
  const std::string& raw_dom = atoms[3];
  const std::string& raw_month = atoms[4];
  const std::string& raw_dow = atoms[5];

  // Seconds, minutes, hours: numbers only.
  auto simple_field = [&](FieldKind kind, const std::string& raw, Field& out) -> Status {
    auto items = parser.parse_items(kind, raw);
    if (!items) return items.error();
    if (auto st = parser.validate(kind, items.value()); !st) return st.error();
    out.values = numbers_of(items.value());
    out.wildcard = raw == "*" || raw == "?";
    return Ok{};
  };
  if (auto st = simple_field(FieldKind::kSecond, atoms[0], e.second_); !st) return st.error();
  if (auto st = simple_field(FieldKind::kMinute, atoms[1], e.minute_); !st) return st.error();
  if (auto st = simple_field(FieldKind::kHour, atoms[2], e.hour_); !st) return st.error();

  // Month before day-of-month: a single month limits the days (below).
  auto month_names = parser.replace_names(FieldKind::kMonth, raw_month);
  if (!month_names) return month_names.error();
  auto month_items = parser.parse_items(FieldKind::kMonth, month_names.value());
  if (!month_items) return month_items.error();

  auto dom_items = parser.parse_items(FieldKind::kDayOfMonth, raw_dom);
  if (!dom_items) return dom_items.error();

  // `n#k`: split before the names are replaced, like cron-parser.
  std::string dow_value = raw_dow;
  const size_t hash = raw_dow.find('#');
  if (hash != std::string::npos) {
    if (raw_dow.find_first_of(",-/") != std::string::npos) {
      return parser.fail(FieldKind::kDayOfWeek, "'#' cannot be combined with ',', '-' or '/'");
    }
    const size_t last_hash = raw_dow.rfind('#');
    const auto nth = js_to_number(std::string_view(raw_dow).substr(last_hash + 1));
    if (last_hash != hash || !nth || !(*nth >= 1 && *nth <= 5)) {
      return parser.fail(FieldKind::kDayOfWeek,
                         "occurrence after '#' must be 1-5 in '" + raw_dow + "'");
    }
    // A fractional occurrence (cron-parser accepts "#1.5") never matches a day.
    e.nth_weekday_ = *nth == std::floor(*nth) ? static_cast<int>(*nth) : 6;
    dow_value = raw_dow.substr(0, hash);
  }
  auto dow_names = parser.replace_names(FieldKind::kDayOfWeek, dow_value);
  if (!dow_names) return dow_names.error();
  auto dow_items = parser.parse_items(FieldKind::kDayOfWeek, dow_names.value());
  if (!dow_items) return dow_items.error();

  // CronDayOfMonth.fromMonth: with one month, days it never has are dropped
  // (unless that leaves nothing).
  std::vector<Item> dom = dom_items.value();
  const std::vector<int> months = numbers_of(month_items.value());
  if (month_items.value().size() == 1 && months.size() == 1) {
    const int limit = kDaysInMonth[static_cast<size_t>(std::clamp(months[0], 1, 12) - 1)];
    std::vector<Item> kept;
    for (const Item& item : dom) {
      if (item.is_text || item.number <= limit) kept.push_back(item);
    }
    if (!kept.empty()) dom = std::move(kept);
  }
  if (auto st = parser.validate(FieldKind::kDayOfMonth, dom); !st) return st.error();
  e.day_of_month_.values = numbers_of(dom);
  e.day_of_month_.wildcard = raw_dom == "*" || raw_dom == "?";
  e.day_of_month_.has_last = raw_dom.find('L') != std::string::npos;

  if (auto st = parser.validate(FieldKind::kMonth, month_items.value()); !st) return st.error();
  e.month_.values = months;
  e.month_.wildcard = raw_month == "*" || raw_month == "?";

  const auto& dow = dow_items.value();
  if (auto st = parser.validate(FieldKind::kDayOfWeek, dow); !st) return st.error();
  for (const Item& item : dow) {
    if (item.is_text && item.text == "L") {
      return parser.fail(FieldKind::kDayOfWeek,
                         "'L' needs a weekday in front of it (e.g. 5L = last Friday)");
    }
  }
  e.day_of_week_.values = numbers_of(dow);
  e.day_of_week_.wildcard = raw_dow == "*" || raw_dow == "?";
  e.day_of_week_.has_last = raw_dow.find('L') != std::string::npos;
  // cron-parser reads `nL` by the first character of every item, in sorted
  // order: numbers, then texts.
  for (int v : e.day_of_week_.values) e.last_weekdays_.push_back(std::to_string(v)[0] - '0');
  for (const Item& item : dow) {
    if (item.is_text) {
      const char c0 = item.text[0];
      e.last_weekdays_.push_back(std::isdigit(static_cast<unsigned char>(c0)) ? (c0 - '0') % 7
                                                                              : -1);
    }
  }
  for (int& v : e.last_weekdays_) {
    if (v >= 0) v %= 7;
  }

  // An explicit day the only month never has can never fire.
  if (e.month_.values.size() == 1 && !e.day_of_month_.has_last && e.day_of_week_.wildcard &&
      !e.day_of_month_.values.empty()) {
    const int month = e.month_.values[0];
    if (e.day_of_month_.values.front() > kDaysInMonth[static_cast<size_t>(month - 1)]) {
      return parser.fail("day-of-month " + std::to_string(e.day_of_month_.values.front()) +
                         " never occurs in month " + std::to_string(month));
    }
  }
  return e;
}

Result<std::optional<int64_t>> CronExpression::next_after(int64_t after_ms, std::string_view tz,
                                                          const CronTimeSpan& span) const {
  auto zone = Zone::resolve(tz);
  if (!zone) return zone.error();
  CronSearch search(*this, zone.value(), span);
  return search.next(after_ms);
}

Status check_time_zone(std::string_view tz) {
  auto zone = Zone::resolve(tz);
  if (!zone) return zone.error();
  return Ok{};
}

// ---------------------------------------------------------------------------
// bullmq: JobScheduler.upsertJobScheduler (worker path) and the `every`
// arithmetic of the updateJobScheduler script.

Result<std::optional<int64_t>> next_iteration_millis(const RepeatOptions& opts, int64_t prev_millis,
                                                     int64_t now_ms) {
  using R = Result<std::optional<int64_t>>;
  const bool has_every = opts.every_ms && *opts.every_ms != 0;
  if (has_every && !opts.pattern.empty()) {
    return R::failure("invalid_repeat_options", "repeat options: both 'pattern' and 'every' set");
  }
  if (!has_every && opts.pattern.empty()) {
    return R::failure("invalid_repeat_options",
                      "repeat options: neither 'pattern' nor 'every' set");
  }
  if (has_every && *opts.every_ms < 0) {
    return R::failure("invalid_repeat_options", "repeat options: 'every' must be positive");
  }
  if (opts.immediately && opts.start_date_ms) {
    return R::failure("invalid_repeat_options",
                      "repeat options: both 'immediately' and 'startDate' set");
  }
  const int64_t iteration = opts.count != 0 ? opts.count + 1 : 1;
  if (opts.limit && iteration > *opts.limit) return std::optional<int64_t>{};
  if (opts.end_date_ms && *opts.end_date_ms != 0 && now_ms > *opts.end_date_ms) {
    return std::optional<int64_t>{};
  }

  if (has_every) {
    const int64_t every = *opts.every_ms;
    int64_t next = prev_millis + every;
    if (next < now_ms) {
      // Missed slots: the first slot after now, keeping the offset.
      const int64_t aligned = floor_div(now_ms, every) * every + opts.offset_ms;
      next = aligned <= now_ms ? aligned + every : aligned;
    }
    return std::optional<int64_t>{next};
  }

  auto cron = CronExpression::parse(opts.pattern);
  if (!cron) return cron.error();
  const int64_t now = std::max(now_ms, prev_millis);
  CronTimeSpan span{opts.start_date_ms, opts.end_date_ms};
  int64_t from = now;
  if (opts.start_date_ms && *opts.start_date_ms != 0 && *opts.start_date_ms > now) {
    from = *opts.start_date_ms;
  }
  auto next = cron->next_after(from, opts.tz, span);
  if (!next) return next.error();
  if (opts.immediately) next = std::optional<int64_t>{now_ms};
  if (!next.value()) return std::optional<int64_t>{};
  int64_t millis = std::max(*next.value(), now);
  if (millis == 0) return std::optional<int64_t>{};
  return std::optional<int64_t>{millis};
}

// ---------------------------------------------------------------------------
// JSON.

namespace {

Error bad_key(std::string_view key, std::string_view expected, const boost::json::value& got) {
  return Error{"invalid_repeat_options", "repeat options: '" + std::string(key) + "' must be " +
                                             std::string(expected) + ", got " +
                                             boost::json::serialize(got)};
}

std::optional<double> as_number(const boost::json::value& v) {
  if (v.is_int64()) return static_cast<double>(v.get_int64());
  if (v.is_uint64()) return static_cast<double>(v.get_uint64());
  if (v.is_double()) return v.get_double();
  return std::nullopt;
}

// ISO-8601 as JS Date parses it: YYYY-MM-DD[THH:mm[:ss[.sss]](Z|±HH:mm)].
// A date alone is UTC; a time without a zone designator would be the
// process's local time in JS, so it is refused here.
std::optional<int64_t> parse_iso_date(std::string_view s) {
  auto num = [&](size_t pos, size_t len) -> std::optional<int64_t> {
    if (pos + len > s.size()) return std::nullopt;
    int64_t v = 0;
    for (size_t i = pos; i < pos + len; ++i) {
      if (!std::isdigit(static_cast<unsigned char>(s[i]))) return std::nullopt;
      v = v * 10 + (s[i] - '0');
    }
    return v;
  };
  const auto year = num(0, 4), month = num(5, 2), day = num(8, 2);
  if (!year || !month || !day || s[4] != '-' || s[7] != '-') return std::nullopt;
  if (*month < 1 || *month > 12 || *day < 1 || *day > days_in_month(*year, *month)) {
    return std::nullopt;
  }
  int64_t ms = days_from_civil(*year, *month, *day) * kMsPerDay;
  if (s.size() == 10) return ms;
  if (s[10] != 'T' && s[10] != 't') return std::nullopt;
  const auto hour = num(11, 2), minute = num(14, 2);
  if (!hour || !minute || s[13] != ':' || *hour > 24 || *minute > 59) return std::nullopt;
  ms += *hour * kMsPerHour + *minute * kMsPerMinute;
  size_t pos = 16;
  if (pos < s.size() && s[pos] == ':') {
    const auto second = num(pos + 1, 2);
    if (!second || *second > 59) return std::nullopt;
    ms += *second * kMsPerSecond;
    pos += 3;
    if (pos < s.size() && s[pos] == '.') {
      ++pos;
      int64_t frac = 0;
      size_t digits = 0;
      while (pos < s.size() && std::isdigit(static_cast<unsigned char>(s[pos]))) {
        if (digits < 3) frac = frac * 10 + (s[pos] - '0');
        ++digits;
        ++pos;
      }
      if (digits == 0) return std::nullopt;
      for (size_t d = digits; d < 3; ++d) frac *= 10;
      ms += frac;
    }
  }
  if (pos == s.size()) return std::nullopt;  // no zone designator
  if ((s[pos] == 'Z' || s[pos] == 'z') && pos + 1 == s.size()) return ms;
  if (s[pos] == '+' || s[pos] == '-') {
    const auto oh = num(pos + 1, 2), om = num(pos + 4, 2);
    if (!oh || !om || s[pos + 3] != ':' || pos + 6 != s.size() || *oh > 23 || *om > 59) {
      return std::nullopt;
    }
    const int64_t offset = (*oh * 60 + *om) * kMsPerMinute;
    return s[pos] == '+' ? ms - offset : ms + offset;
  }
  return std::nullopt;
}

}  // namespace

Result<RepeatOptions> parse_repeat_options(std::string_view json_text) {
  using R = Result<RepeatOptions>;
  boost::system::error_code ec;
  const boost::json::value doc = boost::json::parse(json_text, ec);
  if (ec) {
    return R::failure("invalid_repeat_options", "repeat options: not valid JSON: " + ec.message());
  }
  if (!doc.is_object()) {
    return R::failure("invalid_repeat_options",
                      "repeat options: expected a JSON object, got " + boost::json::serialize(doc));
  }
  RepeatOptions out;
  for (const auto& [key_sv, value] : doc.get_object()) {
    const std::string_view key = key_sv;
    if (value.is_null()) continue;
    if (key == "every") {
      const auto n = as_number(value);
      if (!n || *n < 0 || *n != std::floor(*n) || *n > 9e15) {
        return bad_key(key, "a positive integer (ms)", value);
      }
      if (*n != 0) out.every_ms = static_cast<int64_t>(*n);  // 0 means "not set" to bullmq
    } else if (key == "pattern" || key == "tz") {
      if (!value.is_string()) return bad_key(key, "a string", value);
      (key == "pattern" ? out.pattern : out.tz) = std::string(value.get_string());
    } else if (key == "startDate" || key == "endDate") {
      std::optional<int64_t> ms;
      if (const auto n = as_number(value); n && std::abs(*n) <= 8.64e15) {
        ms = static_cast<int64_t>(std::trunc(*n));  // JS Date truncates
      } else if (value.is_string()) {
        ms = parse_iso_date(value.get_string());
      }
      if (!ms) {
        return bad_key(key, "ms since the epoch or an ISO-8601 date with Z or an offset", value);
      }
      (key == "startDate" ? out.start_date_ms : out.end_date_ms) = ms;
    } else if (key == "limit" || key == "offset" || key == "count") {
      const auto n = as_number(value);
      if (!n || std::abs(*n) > 9e15) return bad_key(key, "a number", value);
      // Only integers are compared with these, so flooring keeps every decision.
      const auto v = static_cast<int64_t>(std::floor(*n));
      if (key == "limit") out.limit = v;
      if (key == "offset") out.offset_ms = v;
      if (key == "count") {
        if (v < 0) return bad_key(key, "a non-negative number", value);
        out.count = v;
      }
    } else if (key == "immediately") {
      if (!value.is_bool()) return bad_key(key, "true or false", value);
      out.immediately = value.get_bool();
    }
  }
  return out;
}

}  // namespace guardant::engine
