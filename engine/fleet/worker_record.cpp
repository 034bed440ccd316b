#include "fleet/worker_record.hpp"

#include <algorithm>
#include <boost/json/parse.hpp>
#include <boost/json/value.hpp>
#include <limits>
#include <optional>
#include <tuple>

namespace guardant::engine {
namespace {

using boost::json::object;
using boost::json::value;

Error bad_field(const char* key, const char* expected) {
  return Error{"invalid_worker_record",
               std::string("worker record: ") + key + ": expected " + expected};
}

// An integral JSON number within [lo, hi] (a double that is exactly integral
// counts: another producer may have written 1.7e12).
std::optional<int64_t> integral(const value& v, int64_t lo, int64_t hi) {
  int64_t n = 0;
  if (v.is_int64()) {
    n = v.get_int64();
  } else if (v.is_uint64()) {
    if (v.get_uint64() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max()))
      return std::nullopt;
    n = static_cast<int64_t>(v.get_uint64());
  } else if (v.is_double()) {
    double d = v.get_double();
    if (!(d >= -9.2e18 && d <= 9.2e18) || static_cast<double>(static_cast<int64_t>(d)) != d)
      return std::nullopt;
    n = static_cast<int64_t>(d);
  } else {
    return std::nullopt;
  }
  if (n < lo || n > hi) return std::nullopt;
  return n;
}

}  // namespace

boost::json::object to_json(const WorkerRecord& r) {
  boost::json::array caps;
  for (const auto& c : r.capabilities) caps.emplace_back(c);
  return object{{"id", r.id},
                {"region", r.region},
                {"capabilities", std::move(caps)},
                {"plugins", r.plugins},
                {"concurrency", r.concurrency},
                {"inFlight", r.in_flight},
                {"version", r.version},
                {"host", r.host},
                {"pid", r.pid},
                {"startedAt", r.started_at_ms},
                {"lastSeen", r.last_seen_ms},
                {"instance", r.instance}};
}

Result<WorkerRecord> parse_worker_record(std::string_view json) {
  boost::system::error_code ec;
  value v = boost::json::parse(json, ec);
  if (ec) return Error{"invalid_worker_record", "worker record: not JSON: " + ec.message()};
  if (!v.is_object()) return Error{"invalid_worker_record", "worker record: not a JSON object"};
  const object& o = v.get_object();
  WorkerRecord r;

  auto string_field = [&](const char* key, std::string& out) -> std::optional<Error> {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) return std::nullopt;
    if (!it->value().is_string()) return bad_field(key, "a string");
    out = std::string(it->value().get_string());
    return std::nullopt;
  };
  auto int_field = [&](const char* key, int64_t lo, int64_t hi, auto& out) -> std::optional<Error> {
    auto it = o.find(key);
    if (it == o.end() || it->value().is_null()) return std::nullopt;
    auto n = integral(it->value(), lo, hi);
    if (!n) return bad_field(key, "an integer in range");
    out = static_cast<std::remove_reference_t<decltype(out)>>(*n);
    return std::nullopt;
  };

  constexpr int64_t kMax = std::numeric_limits<int64_t>::max();
  constexpr int64_t kU32 = std::numeric_limits<uint32_t>::max();
  constexpr int64_t kInt = std::numeric_limits<int>::max();
  for (auto e :
       {string_field("id", r.id), string_field("region", r.region),
        string_field("version", r.version), string_field("host", r.host),
        string_field("instance", r.instance), int_field("concurrency", 0, kU32, r.concurrency),
        int_field("inFlight", 0, kU32, r.in_flight), int_field("pid", 0, kInt, r.pid),
        int_field("startedAt", 0, kMax, r.started_at_ms),
        int_field("lastSeen", 0, kMax, r.last_seen_ms)}) {
    if (e) return *e;
  }
  if (r.id.empty()) return bad_field("id", "a non-empty string");

  if (auto it = o.find("capabilities"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return bad_field("capabilities", "an array of strings");
    for (const auto& c : it->value().get_array()) {
      if (!c.is_string()) return bad_field("capabilities", "an array of strings");
      r.capabilities.emplace_back(c.get_string());
    }
  }
  if (auto it = o.find("plugins"); it != o.end() && !it->value().is_null()) {
    if (!it->value().is_array()) return bad_field("plugins", "an array");
    r.plugins = it->value().get_array();
  }
  return r;
}

std::string format_age(int64_t age_ms) {
  int64_t s = std::max<int64_t>(age_ms, 0) / 1000;
  if (s < 120) return std::to_string(s) + "s ago";
  if (s < 120 * 60) return std::to_string(s / 60) + "m ago";
  if (s < 48 * 3600) return std::to_string(s / 3600) + "h ago";
  return std::to_string(s / 86400) + "d ago";
}

std::string format_worker_table(std::vector<WorkerRecord> records, int64_t now_ms) {
  if (records.empty()) return "no workers registered\n";
  std::sort(records.begin(), records.end(), [](const WorkerRecord& a, const WorkerRecord& b) {
    return std::tie(a.region, a.id) < std::tie(b.region, b.id);
  });

  std::vector<std::vector<std::string>> rows;
  rows.push_back(
      {"ID", "REGION", "CAPABILITIES", "IN-FLIGHT/CONCURRENCY", "LAST SEEN", "VERSION", "HOST"});
  for (const auto& r : records) {
    std::string caps;
    for (const auto& c : r.capabilities) caps += (caps.empty() ? "" : ",") + c;
    auto dash = [](const std::string& s) { return s.empty() ? std::string("-") : s; };
    rows.push_back({r.id, dash(r.region), dash(caps),
                    std::to_string(r.in_flight) + "/" + std::to_string(r.concurrency),
                    format_age(now_ms - r.last_seen_ms), dash(r.version), dash(r.host)});
  }

  std::vector<size_t> width(rows[0].size(), 0);
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) width[i] = std::max(width[i], row[i].size());

  std::string out;
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    out += line + "\n";
  }
  return out;
}

}  // namespace guardant::engine
