// A job as fetched from a BullMQ queue, and what the worker reads from its
// options: retention (removeOnComplete/removeOnFail), attempts and backoff.
#pragma once

#include <boost/json/object.hpp>
#include <cstdint>
#include <map>
#include <optional>
#include <random>
#include <string>

#include "core/result.hpp"
#include "redis/reply.hpp"

namespace guardant::engine {

// keepJobs of BullMQ: count -1 keeps all, 0 removes at once, n keeps the
// newest n of the whole finished set; age (seconds) also removes older ones.
struct KeepJobs {
  int64_t count = -1;
  std::optional<int64_t> age_s;
  int64_t limit = 1000;
};

struct Backoff {
  enum class Type { None, Fixed, Exponential } type = Type::None;
  int64_t delay_ms = 0;
  double jitter = 0;  // 0..1
  // Delay before retry number `attempt` (1 for the first retry).
  int64_t delay_for(int64_t attempt, std::mt19937_64& rng) const;
};

struct QueueJob {
  std::string queue;  // queue name, for messages
  std::string id;
  std::string token;  // our lock token
  std::map<std::string, std::string> fields;

  std::string name;
  std::string data;  // JSON text as stored
  boost::json::object opts;
  int64_t attempts_made = 0;     // atm (before this attempt ends)
  int64_t attempts_started = 0;  // ats
  int64_t stalled_count = 0;     // stc
  int64_t priority = 0;
  int64_t timestamp = 0;
  std::string deferred_failure;  // defa: fail at once, no retry
  std::string scheduler_id;      // rjk: an iteration of a job scheduler

  const std::string* field(const std::string& k) const;
  // opts.attempts (at least 1).
  int64_t attempts() const;
  bool lifo() const;
  Backoff backoff() const;
  KeepJobs keep_on_complete() const;
  KeepJobs keep_on_fail() const;
  // The stacktrace array stored by earlier attempts plus `entry`, cut to
  // opts.stackTraceLimit (default 10), as JSON text.
  std::string stacktrace_with(const std::string& entry) const;
};

// What fetch_job.lua (and the fetch-next of finish/retry) returned.
struct FetchOutcome {
  std::optional<QueueJob> job;
  int64_t rate_limit_ttl_ms = 0;
  int64_t next_delayed_due_ms = 0;  // 0: nothing delayed
};

// Parses the fetch tuple {fields, id, ttl, nextDue}. A reply of another
// shape is an error naming what was wrong.
Result<FetchOutcome> parse_fetch_reply(const redis::Reply& reply, const std::string& queue,
                                       const std::string& token);

// removeOnComplete/removeOnFail in every form: bool, count, {age, count, limit}.
KeepJobs keep_jobs_from(const boost::json::value* option);

}  // namespace guardant::engine
