#include "ratelimit/nest_rate_limiter.hpp"

#include <algorithm>
#include <string_view>
#include <utility>
#include <vector>

namespace guardant::engine {

namespace {

// GCRA (generic cell rate algorithm) for one nest. The key holds the nest's
// theoretical arrival time (TAT) in microseconds of Redis TIME: the time at
// which the nest's budget is full again. A check at `now` is allowed when
// TAT <= now + (burst - 1) * interval, and then moves TAT one interval on.
// Reading TIME inside the script gives the whole fleet one clock, and the
// read-check-write is atomic because Redis runs one script at a time.
constexpr std::string_view kGcraLua = R"lua(
-- Redis < 5 replicates scripts verbatim unless told otherwise, and refuses a
-- write after TIME; newer servers always replicate effects.
if redis.replicate_commands then redis.replicate_commands() end
local interval = tonumber(ARGV[1])
local burst = tonumber(ARGV[2])
if not interval or interval < 1 or not burst or burst < 1 then
  return redis.error_reply('ERR bad arguments: interval ' .. tostring(ARGV[1]) ..
                           ', burst ' .. tostring(ARGV[2]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local tat = tonumber(redis.call('GET', KEYS[1])) or now
if tat < now then tat = now end
-- TAT is never more than one window ahead; if it is, the clock went back
-- (a failover to a server with a slower clock): do not block the nest longer.
if tat > now + burst * interval then tat = now + burst * interval end
local wait = tat - now - (burst - 1) * interval
if wait > 0 then
  return {0, math.ceil(wait / 1000)}
end
tat = tat + interval
-- Expires when the budget is full again: an absent key means the same.
redis.call('SET', KEYS[1], string.format('%.0f', tat), 'PX', math.ceil((tat - now) / 1000))
return {1, 0}
)lua";

Error unexpected_reply(const redis::Reply& reply) {
  return Error{redis::kErrorRedis, "script '" + NestRateLimiter::script().name() +
                                       "': unexpected reply " + reply.debug_string()};
}

}  // namespace

const redis::LuaScript& NestRateLimiter::script() {
  static const redis::LuaScript s("nest_rate_limit", std::string(kGcraLua));
  return s;
}

NestRateLimiter::NestRateLimiter(redis::RedisConnection& conn, const LimitSettings& limits,
                                 metrics::Registry* metrics, std::string key_prefix)
    : conn_(conn), limits_(limits), key_prefix_(std::move(key_prefix)) {
  if (metrics) {
    delayed_ = &metrics->counter("guardant_ratelimit_delayed_total",
                                 "Jobs moved to delayed because their nest was over its rate "
                                 "limit, by tier",
                                 {"tier"});
    // A zero series per tier, so dashboards see every tier before the first delay.
    for (const auto& [name, limit] : limits_.per_window) delayed_->labels({name});
    errors_ = &metrics
                   ->counter("guardant_ratelimit_errors_total",
                             "Rate-limit checks that got no answer from Redis (the job was "
                             "not limited)")
                   .labels();
  }
}

ResolvedTier NestRateLimiter::resolve(const std::string& tier) const {
  ResolvedTier r;
  if (!tier.empty()) {
    if (auto it = limits_.per_window.find(tier); it != limits_.per_window.end()) {
      r.name = it->first;
      r.limit = it->second;
      return r;
    }
    r.unknown = true;
  }
  r.name = limits_.default_tier;
  if (auto it = limits_.per_window.find(r.name); it != limits_.per_window.end()) {
    r.limit = it->second;
  } else {
    // The config loader refuses this; hand-built settings can still say it.
    // acquire() reports it as invalid_limit.
    r.limit = 0;
  }
  return r;
}

void NestRateLimiter::acquire(const std::string& nest_id, const std::string& tier,
                              std::function<void(Result<RateDecision>)> cb) {
  ResolvedTier resolved = resolve(tier);
  RateDecision decision;
  decision.tier = resolved.name;
  decision.unknown_tier = resolved.unknown;
  if (!resolved.limit) {
    cb(std::move(decision));  // unlimited: no round trip
    return;
  }
  if (nest_id.empty()) {
    cb(Error{kErrorInvalidArgument, "rate limit: empty nest id"});
    return;
  }
  const uint32_t limit = *resolved.limit;
  if (limit == 0) {
    cb(Error{kErrorInvalidLimit,
             "rate limit: tier '" + resolved.name + "' has " +
                 (limits_.per_window.contains(resolved.name) ? "a limit of 0 checks per window"
                                                             : "no definition in limits.tiers")});
    return;
  }
  // Rounded up, so the fleet never runs faster than the configured rate.
  const uint64_t window_us = uint64_t{limits_.window_ms} * 1000;
  const uint64_t interval_us = std::max<uint64_t>(1, (window_us + limit - 1) / limit);

  redis::eval(conn_, script(), {key_prefix_ + nest_id},
              {std::to_string(interval_us), std::to_string(limit)},
              [cb = std::move(cb), decision = std::move(decision),
               errors = errors_](Result<redis::Reply> r) mutable {
                if (!r.ok()) {
                  if (errors) errors->inc();
                  cb(r.error());
                  return;
                }
                const redis::Reply& reply = r.value();
                if (!reply.is_array() || reply.elements.size() != 2) {
                  if (errors) errors->inc();
                  cb(unexpected_reply(reply));
                  return;
                }
                auto allowed = reply.elements[0].as_int();
                auto retry = reply.elements[1].as_int();
                if (!allowed || !retry || *retry < 0) {
                  if (errors) errors->inc();
                  cb(unexpected_reply(reply));
                  return;
                }
                decision.allowed = *allowed == 1;
                decision.retry_after_ms = decision.allowed ? 0 : std::max<int64_t>(1, *retry);
                cb(std::move(decision));
              });
}

void NestRateLimiter::count_delayed(const std::string& tier) {
  if (delayed_) delayed_->labels({resolve(tier).name}).inc();
}

}  // namespace guardant::engine
