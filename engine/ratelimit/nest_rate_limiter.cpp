#include "ratelimit/nest_rate_limiter.hpp"

#include <algorithm>
#include <cstdio>
#include <random>
#include <string_view>
#include <utility>
#include <vector>

namespace guardant::engine {

namespace {

// A sliding window log per nest: a sorted set of the start times (Redis TIME,
// microseconds) of the nest's checks in the last window. A check is allowed
// while fewer than `limit` started within the window, so no window of that
// length ever holds more than `limit` checks, however it is placed (a token
// bucket with a burst of `limit` lets up to 2 * limit - 1 into one window).
// Memory is at most `limit` entries per busy nest, and the key expires one
// window after its last check. Reading TIME inside the script gives the whole
// fleet one clock, and the read-check-write is atomic because Redis runs one
// script at a time.
constexpr std::string_view kSlidingWindowLua = R"lua(
-- Redis < 5 replicates scripts verbatim unless told otherwise, and refuses a
-- write after TIME; newer servers always replicate effects.
if redis.replicate_commands then redis.replicate_commands() end
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
if not window or window < 1 or not limit or limit < 1 then
  return redis.error_reply('ERR bad arguments: window ' .. tostring(ARGV[1]) ..
                           ', limit ' .. tostring(ARGV[2]))
end
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', string.format('%.0f', now - window))
if redis.call('ZCARD', KEYS[1]) < limit then
  -- The member only has to be unique; the caller's id makes it so.
  redis.call('ZADD', KEYS[1], string.format('%.0f', now), string.format('%.0f', now) .. ':' .. ARGV[3])
  redis.call('PEXPIRE', KEYS[1], math.ceil(window / 1000))
  return {1, 0}
end
-- Full: the next slot frees when the oldest check leaves the window. A clock
-- that went back (failover) can put it further out than one window: cap it.
local oldest = tonumber(redis.call('ZRANGE', KEYS[1], 0, 0, 'WITHSCORES')[2])
local wait = math.min(oldest + window - now, window)
return {0, math.max(1, math.ceil(wait / 1000))}
)lua";

Error unexpected_reply(const redis::Reply& reply) {
  return Error{redis::kErrorRedis, "script '" + NestRateLimiter::script().name() +
                                       "': unexpected reply " + reply.debug_string()};
}

}  // namespace

const redis::LuaScript& NestRateLimiter::script() {
  static const redis::LuaScript s("nest_rate_limit", std::string(kSlidingWindowLua));
  return s;
}

NestRateLimiter::NestRateLimiter(redis::RedisConnection& conn, const LimitSettings& limits,
                                 metrics::Registry* metrics, std::string key_prefix)
    : conn_(conn), limits_(limits), key_prefix_(std::move(key_prefix)) {
  std::random_device rd;
  char id[24];
  std::snprintf(id, sizeof id, "%08x%08x:", rd(), rd());
  instance_ = id;
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
  const uint64_t window_us = uint64_t{limits_.window_ms} * 1000;
  redis::eval(
      conn_, script(), {key_prefix_ + nest_id},
      {std::to_string(window_us), std::to_string(limit), instance_ + std::to_string(++sequence_)},
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
