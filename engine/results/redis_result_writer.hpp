// The Redis sinks of shared/spec/jobs-and-results.md ("Where results
// persist", 2 and 3) written together by one Lua script, so a result lands in
// both or neither:
//   - the results stream (settings.stream_key): XADD MAXLEN ~ stream_maxlen
//     with fields result (the record JSON), serviceId, nestId, status,
//     checkedAt, workerId, region, idempotencyKey;
//   - the last status per service, hash <status_prefix><nestId>:<serviceId>
//     (<status_prefix><serviceId> when there is no nest) with status,
//     responseTime, checkedAt, workerId, region, message, serviceId, nestId.
//     A result older (checkedAt) than the one stored does not overwrite it, so
//     a spool flushed late cannot roll a service's status back.
// The script first checks the idempotency marker
// <idempotency_prefix><idempotency_key> and sets it (PX ttl) after writing,
// so a result sent twice is written once.
#pragma once

#include <chrono>
#include <cstdint>
#include <string>

#include "config/config.hpp"
#include "redis/redis_connection.hpp"
#include "results/result_sink.hpp"

namespace guardant::engine {

struct RedisResultWriterOptions {
  std::string idempotency_prefix = "guardant:results:written:";
  // How long a written key is remembered. A spool re-flushed after this long
  // (a worker down for a day mid-flush) could write a result twice.
  std::chrono::milliseconds idempotency_ttl = std::chrono::hours(24);
};

class RedisResultWriter final : public ResultSink {
 public:
  // `conn` must outlive the writer; the writer neither starts nor stops it.
  RedisResultWriter(redis::RedisConnection& conn, ResultSettings settings,
                    RedisResultWriterOptions options = {});

  std::string_view name() const override { return "redis"; }
  bool ready() const override;
  // Completes with Written, Duplicate, or "unavailable" (connection errors
  // and LOADING, READONLY, BUSY, OOM, MASTERDOWN, TRYAGAIN ... replies) or
  // "rejected" (any other error reply). The callback captures nothing of the
  // writer, so it may run after the writer is destroyed (while `conn` lives).
  void write(const PersistedResult& result, WriteCallback done) override;

  std::string status_key(const std::string& nest_id, const std::string& service_id) const;
  std::string idempotency_marker(const std::string& idempotency_key) const;

 private:
  redis::RedisConnection& conn_;
  ResultSettings settings_;
  RedisResultWriterOptions options_;
  uint64_t script_loaded_for_ = 0;  // conn_.connects() when the script was last loaded
};

}  // namespace guardant::engine
