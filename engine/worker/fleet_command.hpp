// `guardant-worker workers`: the fleet as a table, read from Redis.
#pragma once

#include <iosfwd>
#include <string>

#include "config/config.hpp"
#include "fleet/worker_record.hpp"

namespace guardant::engine {

// Connects to config.redis, reads every worker record under `prefix` and
// prints format_worker_table() to `out`. Exit code 0; 1 when Redis cannot be
// reached within redis.connect_timeout_ms ("cannot reach Redis at host:port:
// <why>" on `err`) or the read fails. Runs its own io_context until done;
// call it from main, not from a running loop.
int list_workers(const Config& config, std::ostream& out, std::ostream& err,
                 const std::string& prefix = kDefaultWorkerPrefix);
// The same with errors on std::cerr.
int list_workers(const Config& config, std::ostream& out);

}  // namespace guardant::engine
