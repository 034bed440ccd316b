// The worker's heartbeat record in Redis, and the claim on its worker id.
//
// Threading and ownership contract:
// - Every member function and every callback (done, snapshot) runs on the
//   loop thread of the RedisConnection; nothing here blocks or is thread-safe.
// - The RedisConnection and the Clock must outlive the WorkerRegistry. The
//   registry never starts or stops the connection: its owner does.
// - start() takes the connection's on_ready slot (RedisConnection has one
//   subscriber) to re-claim the id as soon as a reconnect completes. An owner
//   that needs on_ready for itself sets its handler after start() and calls
//   reconnected() from it.
// - Destroying the registry stops refreshing without deleting the record
//   (that is what a crash looks like: the record expires after its TTL);
//   callbacks still in flight are dropped. Call stop() for a clean shutdown.
#pragma once

#include <chrono>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "core/clock.hpp"
#include "core/result.hpp"
#include "fleet/worker_record.hpp"
#include "redis/redis_connection.hpp"

namespace guardant::engine {

// Error code passed to start()'s callback when a live worker holds the id.
inline constexpr const char* kErrorWorkerIdInUse = "worker_id_in_use";

class WorkerRegistry {
 public:
  // `snapshot` describes this worker now; it is called for every write (claim
  // and each refresh). The registry fills in lastSeen (clock.wall_ms()),
  // startedAt when the snapshot leaves it 0 (the wall time of start()), and
  // instance. The id is taken from the snapshot at start() and fixes the key
  // <prefix><id> until stop(). The record lives `ttl` and is rewritten (TTL
  // reset) every `refresh`; keep ttl at two or three refresh periods so one
  // slow round trip does not let it expire.
  WorkerRegistry(redis::RedisConnection& conn, Clock& clock, std::function<WorkerRecord()> snapshot,
                 std::string prefix = kDefaultWorkerPrefix,
                 std::chrono::milliseconds ttl = std::chrono::seconds(15),
                 std::chrono::milliseconds refresh = std::chrono::seconds(5));
  ~WorkerRegistry();

  WorkerRegistry(const WorkerRegistry&) = delete;
  WorkerRegistry& operator=(const WorkerRegistry&) = delete;

  // Claims the id with one Lua script: when the key is free, or holds a record
  // written by this process (same instance token), the record is written with
  // the TTL; otherwise nothing is written. `done` runs exactly once:
  // - Ok once the record is written;
  // - Error{kErrorWorkerIdInUse, "worker id 'eu-1' is already in use by a live
  //   worker (host h, pid 123, last seen 2 s ago); give this worker another
  //   WORKER_ID"} when another live process holds the id (the registry then
  //   stays idle; start() may be called again);
  // - Error{"invalid_worker_id", ...} when the snapshot has an empty id
  //   (called inside start());
  // - Error{"stopped", ...} when stop() comes first (called inside stop()).
  // While Redis is unreachable (or answers with an error) start() keeps
  // trying, on every reconnect and every `refresh`, and `done` waits.
  // After Ok the record is refreshed until stop(). If the record is lost (a
  // Redis restart, an expiry during a partition) it is re-created on the
  // next reconnect or refresh; if meanwhile another live process took the id,
  // every attempt logs an error naming it, and the registry keeps trying.
  // Calling start() while started or stopping does nothing.
  void start(std::function<void(Status)> done);

  // Stops refreshing and deletes the record if it is still ours (compare and
  // delete in one Lua script), then calls `done` (on the loop, never inside
  // stop()). When Redis is unreachable the record is left to expire. Calling
  // it while idle just calls `done`.
  void stop(std::function<void()> done);

  // Re-claims now (start() wires this to the connection's on_ready).
  void reconnected();

  // The Redis key of this worker's record ("" before the first start()).
  const std::string& key() const;
  // This process's random instance token (32 hex digits).
  const std::string& instance() const;
  // The last write confirmed the record is ours and fresh; false before the
  // first claim, after a failed or refused refresh, and after stop().
  bool registered() const;
  // Successful writes so far (claim and refreshes).
  uint64_t writes() const;
  // Why the last attempt did not write ("" after a successful one).
  const std::string& last_error() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

// Reads every worker record under `prefix` (SCAN with MATCH, never KEYS, then
// MGET), for the `workers` command and for operators' tools. A key that
// vanishes between SCAN and MGET is skipped; a value that is not a worker
// record is skipped with a warning in the "fleet" log. Records come sorted by
// key. Errors are the connection's (not_connected, disconnected, redis ...).
// `conn` must outlive the callback; loop thread only.
void read_worker_records(redis::RedisConnection& conn, const std::string& prefix,
                         std::function<void(Result<std::vector<WorkerRecord>>)> cb);

// gethostname(), for WorkerRecord::host ("" when it fails).
std::string local_host_name();

}  // namespace guardant::engine
