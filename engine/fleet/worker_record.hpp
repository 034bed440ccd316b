// The record each worker keeps in Redis under guardant:workers:<id>, and the
// pure functions around it: JSON in and out, and the `workers` table.
#pragma once

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace guardant::engine {

// Default key prefix of worker records (shared/spec/jobs-and-results.md).
inline constexpr const char* kDefaultWorkerPrefix = "guardant:workers:";

// One worker as the fleet sees it. Serialised as one JSON object with the
// camelCase keys id, region, capabilities, plugins, concurrency, inFlight,
// version, host, pid, startedAt, lastSeen and instance.
struct WorkerRecord {
  std::string id;
  std::string region;
  std::string version;  // the worker build, GUARDANT_VERSION
  std::string host;
  std::vector<std::string> capabilities;  // probe types this worker runs
  boost::json::array plugins;             // [{name, version, types: [...]}], as given
  uint32_t concurrency = 0;
  uint32_t in_flight = 0;
  int64_t started_at_ms = 0;  // wall clock, ms since the Unix epoch
  int64_t last_seen_ms = 0;   // wall clock of the last heartbeat
  int pid = 0;
  // Random per process; set by WorkerRegistry, so that only the process that
  // wrote a record refreshes or deletes it. Not a secret: it only tells two
  // processes with the same id apart.
  std::string instance;
};

boost::json::object to_json(const WorkerRecord& record);
// Parses a record as stored. Missing keys keep their defaults (records from
// an older or newer worker still list); a key of the wrong type, a missing
// or empty id, or text that is not a JSON object is an error naming it.
Result<WorkerRecord> parse_worker_record(std::string_view json);

// "0s ago", "42s ago", "3m ago", "5h ago", "2d ago"; a negative age (clock
// skew between hosts) shows as "0s ago".
std::string format_age(int64_t age_ms);

// The `guardant-worker workers` table: a header line and one line per worker,
// columns ID, REGION, CAPABILITIES, IN-FLIGHT/CONCURRENCY, LAST SEEN,
// VERSION, HOST, space-aligned, sorted by region then id. LAST SEEN is the age
// of lastSeen at `now_ms`. No records: "no workers registered\n".
std::string format_worker_table(std::vector<WorkerRecord> records, int64_t now_ms);

}  // namespace guardant::engine
