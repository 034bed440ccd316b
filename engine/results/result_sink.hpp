// A destination for check results beyond the job's returnvalue: the Redis
// stream and status hash today (RedisResultWriter), other stores (e.g. Golem
// Base) later. A sink only writes; durability while it is unavailable (the
// spool, ordering, retries) is ResultPersister's job, so a new sink needs
// nothing but these four members.
#pragma once

#include <boost/json/object.hpp>
#include <functional>
#include <string>
#include <string_view>

#include "core/result.hpp"

namespace guardant::engine {

// One result on its way to the sinks.
struct PersistedResult {
  // Unique per job attempt, e.g. "<queue>:<jobId>:<attempt>" (standalone:
  // "<monitorId>:<checkedAt>"). A sink writes a key at most once (within its
  // deduplication window), so a result flushed again after a crash or a
  // dropped reply is not duplicated.
  std::string idempotency_key;
  std::string nest_id;  // may be empty (standalone monitors without a nest)
  std::string service_id;
  boost::json::object record;  // the check record (make_check_record)
};

enum class WriteOutcome {
  Written,    // stored now
  Duplicate,  // this idempotency key was stored before; nothing written
};

// Error codes a sink's write completes with (Error::code):
//   "unavailable"  the store cannot be reached or cannot take writes right now
//                  (disconnected, loading, read-only replica, out of memory);
//                  the write may or may not have happened. Retry later.
//   "rejected"     the store refused this result for good (e.g. a key of the
//                  wrong type); retrying would fail the same way.
inline constexpr const char* kSinkUnavailable = "unavailable";
inline constexpr const char* kSinkRejected = "rejected";

using WriteCallback = std::function<void(Result<WriteOutcome>)>;

// Threading: every member, and the callback, on the loop thread. write()
// never calls `done` inside itself. Writes issued in order are applied in
// order (ResultPersister relies on it to keep results ordered).
class ResultSink {
 public:
  virtual ~ResultSink() = default;
  // Short name for logs and the `sink` metric label, e.g. "redis".
  virtual std::string_view name() const = 0;
  // Whether a write now has a chance (e.g. the connection is up). A write
  // while not ready completes with "unavailable".
  virtual bool ready() const = 0;
  // Writes one result. `done` may be called after the sink's owner is gone
  // only if the sink says so; RedisResultWriter's callbacks touch nothing of
  // the writer, so callers guard their own state (see ResultPersister).
  virtual void write(const PersistedResult& result, WriteCallback done) = 0;
};

}  // namespace guardant::engine
