// Per-nest rate limits shared by the whole fleet: one sliding window per
// nest in Redis, updated by one atomic Lua script that reads the time with
// Redis TIME, so every worker counts against the same budget on the same
// clock.
//
// Semantics (tier limit L checks per window W): a check runs when fewer than L
// of the nest's checks started in the last W, so no window of length W, however
// placed, holds more than L (60 per minute really is 60 in any minute; an idle
// nest may still run its L at once). A refused check changes nothing in Redis
// and learns when the oldest check leaves the window. The key
// <key_prefix><nestId> is a sorted set of at most L start times and expires W
// after the nest's last check, so idle nests cost no memory.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "config/config.hpp"
#include "core/result.hpp"
#include "metrics/registry.hpp"
#include "redis/lua_script.hpp"
#include "redis/redis_connection.hpp"

namespace guardant::engine {

struct RateDecision {
  bool allowed = true;
  int64_t retry_after_ms = 0;  // when not allowed: how long until this nest may run again
  std::string tier;            // the tier applied (after defaulting)
  bool unknown_tier = false;   // the job named a tier the config does not define; the default
                               // tier was applied
};

// A tier name resolved against LimitSettings.
struct ResolvedTier {
  std::string name;               // the tier applied
  std::optional<uint32_t> limit;  // checks per window; nullopt = unlimited
  bool unknown = false;           // the requested name is not configured; `name` is the default
};

// Error codes acquire() can report besides the connection's own
// (redis::kErrorNotConnected, kErrorDisconnected, kErrorStopped, kErrorRedis):
// invalid_argument for an empty nest id; invalid_limit for a tier limit of 0
// or a default tier that is not defined (the config loader refuses both, so
// only hand-built LimitSettings get it).
inline constexpr const char* kErrorInvalidArgument = "invalid_argument";
inline constexpr const char* kErrorInvalidLimit = "invalid_limit";

class NestRateLimiter {
 public:
  // key_prefix: Redis keys are <key_prefix><nestId>. Loop-thread only, like
  // RedisConnection. `conn` must outlive the limiter; `metrics` (may be null)
  // must outlive every pending acquire() callback. The limiter itself may be
  // destroyed with acquires in flight: their callbacks do not touch it.
  // Registers guardant_ratelimit_delayed_total{tier} (a zero series for every
  // configured tier) and guardant_ratelimit_errors_total.
  NestRateLimiter(redis::RedisConnection& conn, const LimitSettings& limits,
                  metrics::Registry* metrics = nullptr,
                  std::string key_prefix = "guardant:ratelimit:");

  NestRateLimiter(const NestRateLimiter&) = delete;
  NestRateLimiter& operator=(const NestRateLimiter&) = delete;

  // One check for nest_id under tier (empty: limits.default_tier; a name the
  // config does not define: the default tier, flagged unknown_tier). An
  // allowed answer consumes one unit of the nest's budget; a refused one
  // consumes nothing.
  // Unlimited tiers, an empty nest_id and a zero limit answer without a round
  // trip, and then `cb` runs before acquire() returns; otherwise it runs later
  // on the loop, after the script's reply.
  // Connection errors pass through as Error (the caller decides; the lead will
  // let the job run rather than lose it), counted in
  // guardant_ratelimit_errors_total.
  void acquire(const std::string& nest_id, const std::string& tier,
               std::function<void(Result<RateDecision>)> cb);

  // Counts a job that was delayed by the limiter (metric
  // guardant_ratelimit_delayed_total{tier}). A tier the config does not define
  // is counted under the default tier, so job data cannot add label values.
  void count_delayed(const std::string& tier);

  // The tier a job naming `tier` gets (the rule acquire() applies).
  ResolvedTier resolve(const std::string& tier) const;

  // The Redis key of a nest's state (tests, operators).
  std::string key_for(const std::string& nest_id) const { return key_prefix_ + nest_id; }

  // The sliding-window script: KEYS[1] the nest's key; ARGV[1] the window in
  // microseconds, ARGV[2] the tier's limit, ARGV[3] a unique id of this
  // check. Returns {1, 0} when allowed, {0, retry_after_ms} when not.
  static const redis::LuaScript& script();

 private:
  redis::RedisConnection& conn_;
  LimitSettings limits_;
  std::string key_prefix_;
  metrics::CounterFamily* delayed_ = nullptr;
  metrics::Counter* errors_ = nullptr;
  // Makes each check's entry in the nest's window unique across the fleet.
  std::string instance_;
  uint64_t sequence_ = 0;
};

}  // namespace guardant::engine
