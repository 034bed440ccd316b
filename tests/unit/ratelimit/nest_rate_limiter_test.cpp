// NestRateLimiter against a real redis-server: two limiters on two
// connections stand for two workers of one fleet and share each nest's
// budget; windows are short or the assertions do not depend on elapsed time.
#include "ratelimit/nest_rate_limiter.hpp"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "core/asio_clock.hpp"
#include "support/redis_server.hpp"

namespace guardant::engine {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;
using ::testing::HasSubstr;
using ::testing::Not;

LimitSettings limits(std::map<std::string, std::optional<uint32_t>> tiers, uint32_t window_ms,
                     std::string default_tier) {
  LimitSettings l;
  l.per_window = std::move(tiers);
  l.window_ms = window_ms;
  l.default_tier = std::move(default_tier);
  return l;
}

class NestRateLimiterTest : public ::testing::Test {
 protected:
  RedisServer redis;
  boost::asio::io_context io;
  AsioClock clock{io};
  metrics::Registry registry;
  // Two workers' connections (declared after what their callbacks use).
  std::unique_ptr<redis::RedisConnection> conn_a, conn_b;

  void SetUp() override {
    conn_a = connect("worker-a");
    conn_b = connect("worker-b");
    ASSERT_TRUE(run_until([&] { return conn_a->ready() && conn_b->ready(); }))
        << conn_a->last_error() << " / " << conn_b->last_error();
  }

  std::unique_ptr<redis::RedisConnection> connect(const std::string& name, uint16_t port = 0) {
    RedisSettings s;
    s.host = "127.0.0.1";
    s.port = port ? port : redis.port();
    redis::ConnectionOptions o;
    o.backoff_initial = 20ms;
    o.backoff_max = 200ms;
    auto c = std::make_unique<redis::RedisConnection>(io, clock, s, name, "redis", o);
    c->start();
    return c;
  }

  // Runs the loop until pred() holds; false after `limit`.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      if (io.run_one_for(10ms) == 0) std::this_thread::sleep_for(1ms);
    }
    return true;
  }
  void run_for(std::chrono::milliseconds d) {
    auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      if (io.run_one_for(5ms) == 0) std::this_thread::sleep_for(1ms);
    }
  }

  // Issues every (limiter, nest, tier) request before running the loop, so
  // they reach Redis back to back, and returns the answers in issue order.
  struct Request {
    NestRateLimiter* limiter;
    std::string nest, tier;
  };
  std::vector<Result<RateDecision>> acquire_all(const std::vector<Request>& requests) {
    std::vector<std::optional<Result<RateDecision>>> out(requests.size());
    for (size_t i = 0; i < requests.size(); ++i) {
      requests[i].limiter->acquire(requests[i].nest, requests[i].tier,
                                   [&out, i](Result<RateDecision> r) { out[i].emplace(r); });
    }
    bool done = run_until([&] {
      for (const auto& o : out)
        if (!o) return false;
      return true;
    });
    std::vector<Result<RateDecision>> results;
    for (auto& o : out)
      results.push_back(o ? std::move(*o) : Result<RateDecision>(Error{"test_timeout", "none"}));
    EXPECT_TRUE(done) << "not every acquire answered";
    return results;
  }
  RateDecision acquire_ok(NestRateLimiter& l, const std::string& nest, const std::string& tier) {
    auto r = acquire_all({{&l, nest, tier}});
    EXPECT_TRUE(r[0].ok()) << r[0].error().code << ": " << r[0].error().message;
    return r[0].ok() ? r[0].value() : RateDecision{};
  }

  int64_t pttl(const std::string& key) { return std::stoll(test::chomp(redis.cli("PTTL", key))); }
};

TEST_F(NestRateLimiterTest, TwoWorkersShareOneNestsBudget) {
  // 5 per 10 s: the window is far longer than the requests take, so exactly 5 pass.
  auto l = limits({{"t5", 5}}, 10'000, "t5");
  NestRateLimiter a(*conn_a, l), b(*conn_b, l);
  std::vector<Request> requests;
  for (int i = 0; i < 10; ++i) requests.push_back({i % 2 ? &b : &a, "nest-1", "t5"});
  auto results = acquire_all(requests);

  int allowed = 0;
  for (const auto& r : results) {
    ASSERT_TRUE(r.ok()) << r.error().message;
    EXPECT_EQ(r->tier, "t5");
    EXPECT_FALSE(r->unknown_tier);
    if (r->allowed) {
      ++allowed;
      EXPECT_EQ(r->retry_after_ms, 0);
    } else {
      // The next slot frees when the first check leaves the window.
      EXPECT_GT(r->retry_after_ms, 9'000);
      EXPECT_LE(r->retry_after_ms, 10'000);
    }
  }
  EXPECT_EQ(allowed, 5);
  // The state is one key per nest that expires when the budget is full again.
  const int64_t ttl = pttl(a.key_for("nest-1"));
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 10'000);
  EXPECT_EQ(a.key_for("nest-1"), "guardant:ratelimit:nest-1");
}

TEST_F(NestRateLimiterTest, WaitingRetryAfterLetsTheNextCheckRun) {
  // 3 per 1.5 s.
  auto l = limits({{"t3", 3}}, 1'500, "t3");
  NestRateLimiter a(*conn_a, l), b(*conn_b, l);
  // Two connections: Redis may run their requests in either order, so count.
  auto burst = acquire_all({{&a, "n", "t3"}, {&b, "n", "t3"}, {&a, "n", "t3"}, {&b, "n", "t3"}});
  int allowed = 0;
  int64_t retry = 0;
  for (const auto& r : burst) {
    ASSERT_TRUE(r.ok()) << r.error().message;
    if (r->allowed) {
      ++allowed;
    } else {
      retry = r->retry_after_ms;
    }
  }
  EXPECT_EQ(allowed, 3);
  EXPECT_GT(retry, 1'000);
  EXPECT_LE(retry, 1'500);

  // Once the first checks have left the window their slots are free again;
  // a little slack covers the few ms between the three starts.
  run_for(std::chrono::milliseconds(retry + 100));
  auto next = acquire_all({{&b, "n", "t3"}, {&b, "n", "t3"}, {&b, "n", "t3"}, {&b, "n", "t3"}});
  for (const auto& r : next) ASSERT_TRUE(r.ok());
  EXPECT_TRUE(next[0]->allowed);
  EXPECT_TRUE(next[1]->allowed);
  EXPECT_TRUE(next[2]->allowed);
  // One connection, so in this order: the fourth finds the window full.
  EXPECT_FALSE(next[3]->allowed);
  EXPECT_GT(next[3]->retry_after_ms, 1'000);
  EXPECT_LE(next[3]->retry_after_ms, 1'500);
}

TEST_F(NestRateLimiterTest, OtherNestsAreUnaffected) {
  auto l = limits({{"t5", 5}}, 10'000, "t5");
  NestRateLimiter a(*conn_a, l), b(*conn_b, l);
  std::vector<Request> requests;
  for (int i = 0; i < 6; ++i) requests.push_back({&a, "busy", "t5"});
  for (int i = 0; i < 6; ++i) requests.push_back({&b, "quiet", "t5"});
  auto results = acquire_all(requests);
  // Each nest's requests went over one connection, so they ran in order.
  for (int i = 0; i < 12; ++i) ASSERT_TRUE(results[i].ok()) << i;
  for (int i = 0; i < 5; ++i) EXPECT_TRUE(results[i]->allowed) << i;
  EXPECT_FALSE(results[5]->allowed);
  for (int i = 6; i < 11; ++i) EXPECT_TRUE(results[i]->allowed) << i;
  EXPECT_FALSE(results[11]->allowed);
  // The busy nest is still over its limit for the other worker too.
  EXPECT_FALSE(acquire_ok(b, "busy", "t5").allowed);
}

TEST_F(NestRateLimiterTest, UnlimitedTierNeverTouchesRedis) {
  auto l = limits({{"free", 2}, {"unlimited", std::nullopt}}, 1'000, "free");
  NestRateLimiter a(*conn_a, l);
  for (int i = 0; i < 50; ++i) {
    bool answered = false;
    a.acquire("big-nest", "unlimited", [&](Result<RateDecision> r) {
      answered = true;
      ASSERT_TRUE(r.ok());
      EXPECT_TRUE(r->allowed);
      EXPECT_EQ(r->tier, "unlimited");
      EXPECT_FALSE(r->unknown_tier);
    });
    EXPECT_TRUE(answered) << "an unlimited tier answers before acquire() returns";
  }
  EXPECT_THAT(redis.cli("INFO", "commandstats"), Not(HasSubstr("cmdstat_evalsha")));
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", a.key_for("big-nest"))), "0");

  // The same limiter does use Redis for a limited tier (the check above could fail).
  EXPECT_TRUE(acquire_ok(a, "big-nest", "free").allowed);
  EXPECT_THAT(redis.cli("INFO", "commandstats"), HasSubstr("cmdstat_evalsha"));

  // And with no server at all, unlimited still answers.
  redis.stop();
  ASSERT_TRUE(run_until([&] { return !conn_a->ready(); }));
  bool answered = false;
  a.acquire("big-nest", "unlimited", [&](Result<RateDecision> r) {
    answered = true;
    EXPECT_TRUE(r.ok() && r->allowed);
  });
  EXPECT_TRUE(answered);
}

TEST_F(NestRateLimiterTest, UnknownTierGetsTheDefaultAndIsFlagged) {
  auto l = limits({{"free", 2}, {"pro", 100}}, 10'000, "free");
  NestRateLimiter a(*conn_a, l);
  auto results = acquire_all({{&a, "n", "platinum"}, {&a, "n", ""}, {&a, "n", "free"}});
  ASSERT_TRUE(results[0].ok() && results[1].ok() && results[2].ok());
  EXPECT_TRUE(results[0]->allowed);
  EXPECT_EQ(results[0]->tier, "free");
  EXPECT_TRUE(results[0]->unknown_tier);
  // No tier at all is the default too, but not a mistake.
  EXPECT_TRUE(results[1]->allowed);
  EXPECT_EQ(results[1]->tier, "free");
  EXPECT_FALSE(results[1]->unknown_tier);
  // All three counted against the default tier's budget of 2.
  EXPECT_FALSE(results[2]->allowed);
  EXPECT_EQ(results[2]->tier, "free");

  EXPECT_EQ(a.resolve("pro").name, "pro");
  EXPECT_EQ(a.resolve("pro").limit, std::optional<uint32_t>(100));
  EXPECT_FALSE(a.resolve("pro").unknown);
  EXPECT_TRUE(a.resolve("Pro").unknown);  // tier names are case-sensitive
}

TEST_F(NestRateLimiterTest, MetricsSeriesByTier) {
  auto l = limits({{"free", 60}, {"pro", 600}, {"unlimited", std::nullopt}}, 60'000, "free");
  NestRateLimiter a(*conn_a, l, &registry);
  std::string text = registry.render();
  EXPECT_THAT(text, HasSubstr("# TYPE guardant_ratelimit_delayed_total counter\n"));
  EXPECT_THAT(text, HasSubstr("guardant_ratelimit_delayed_total{tier=\"free\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("guardant_ratelimit_delayed_total{tier=\"pro\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("guardant_ratelimit_delayed_total{tier=\"unlimited\"} 0\n"));
  EXPECT_THAT(text, HasSubstr("guardant_ratelimit_errors_total 0\n"));

  a.count_delayed("pro");
  a.count_delayed("pro");
  a.count_delayed("");
  a.count_delayed("made-up-by-a-job");  // counted under the default, no new series
  text = registry.render();
  EXPECT_THAT(text, HasSubstr("guardant_ratelimit_delayed_total{tier=\"pro\"} 2\n"));
  EXPECT_THAT(text, HasSubstr("guardant_ratelimit_delayed_total{tier=\"free\"} 2\n"));
  EXPECT_THAT(text, Not(HasSubstr("made-up-by-a-job")));

  // A second limiter (another queue's) shares the families.
  NestRateLimiter b(*conn_b, l, &registry);
  b.count_delayed("free");
  EXPECT_THAT(registry.render(), HasSubstr("guardant_ratelimit_delayed_total{tier=\"free\"} 3\n"));
}

TEST_F(NestRateLimiterTest, ConnectionErrorsPassThroughAndAreCounted) {
  auto l = limits({{"free", 5}}, 1'000, "free");
  NestRateLimiter a(*conn_a, l, &registry);
  redis.stop();
  ASSERT_TRUE(run_until([&] { return !conn_a->ready(); }));
  auto r = acquire_all({{&a, "n", "free"}});
  ASSERT_FALSE(r[0].ok());
  EXPECT_EQ(r[0].error().code, redis::kErrorNotConnected);
  EXPECT_THAT(registry.render(), HasSubstr("guardant_ratelimit_errors_total 1\n"));

  // Back again: the script is loaded anew (the restarted server has none).
  redis.start();
  ASSERT_TRUE(run_until([&] { return conn_a->ready(); })) << conn_a->last_error();
  EXPECT_TRUE(acquire_ok(a, "n", "free").allowed);
}

TEST_F(NestRateLimiterTest, KeyExpiresOnceTheBudgetIsFullAgain) {
  // 2 per 1 s.
  auto l = limits({{"t2", 2}}, 1'000, "t2");
  NestRateLimiter a(*conn_a, l);
  // The key lives one window after the nest's last check.
  ASSERT_TRUE(acquire_ok(a, "one", "t2").allowed);
  int64_t ttl = pttl(a.key_for("one"));
  EXPECT_GT(ttl, 500);
  EXPECT_LE(ttl, 1'000);
  // Three back to back (one connection, so in this order): the whole window
  // is used, the third is refused and writes nothing.
  const std::string key = a.key_for("idle");
  auto burst = acquire_all({{&a, "idle", "t2"}, {&a, "idle", "t2"}, {&a, "idle", "t2"}});
  ASSERT_TRUE(burst[0].ok() && burst[1].ok() && burst[2].ok());
  EXPECT_TRUE(burst[0]->allowed);
  EXPECT_TRUE(burst[1]->allowed);
  EXPECT_FALSE(burst[2]->allowed);
  ttl = pttl(key);
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 1'000);
  EXPECT_TRUE(run_until([&] { return test::chomp(redis.cli("EXISTS", key)) == "0"; }, 5s))
      << "the idle nest's key did not expire";
  // A fresh burst after expiry.
  auto again = acquire_all({{&a, "idle", "t2"}, {&a, "idle", "t2"}});
  ASSERT_TRUE(again[0].ok() && again[1].ok());
  EXPECT_TRUE(again[0]->allowed);
  EXPECT_TRUE(again[1]->allowed);
}

TEST_F(NestRateLimiterTest, BadArgumentsAreErrorsWithoutARoundTrip) {
  auto l = limits({{"free", 5}, {"closed", 0}}, 1'000, "free");
  NestRateLimiter a(*conn_a, l);
  std::optional<Result<RateDecision>> out;
  a.acquire("", "free", [&](Result<RateDecision> r) { out.emplace(r); });
  ASSERT_TRUE(out.has_value());
  ASSERT_FALSE(out->ok());
  EXPECT_EQ(out->error().code, kErrorInvalidArgument);

  // The config loader refuses a limit of 0; hand-built settings get an error.
  out.reset();
  a.acquire("n", "closed", [&](Result<RateDecision> r) { out.emplace(r); });
  ASSERT_TRUE(out.has_value());
  ASSERT_FALSE(out->ok());
  EXPECT_EQ(out->error().code, kErrorInvalidLimit);
  EXPECT_THAT(out->error().message, HasSubstr("'closed'"));
  EXPECT_THAT(redis.cli("INFO", "commandstats"), Not(HasSubstr("cmdstat_evalsha")));
}

TEST_F(NestRateLimiterTest, KeyPrefixIsConfigurable) {
  auto l = limits({{"free", 1}}, 10'000, "free");
  NestRateLimiter a(*conn_a, l, nullptr, "other-fleet:rl:");
  NestRateLimiter b(*conn_b, l);  // default prefix: a separate budget
  EXPECT_TRUE(acquire_ok(a, "n", "free").allowed);
  EXPECT_FALSE(acquire_ok(a, "n", "free").allowed);
  EXPECT_TRUE(acquire_ok(b, "n", "free").allowed);
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", "other-fleet:rl:n")), "1");
}

TEST_F(NestRateLimiterTest, ScriptRejectsNonsenseArguments) {
  // The script guards itself too (another caller could pass anything).
  std::optional<Result<redis::Reply>> out;
  redis::eval(*conn_a, NestRateLimiter::script(), {"k"}, {"0", "5"},
              [&](Result<redis::Reply> r) { out.emplace(r); });
  ASSERT_TRUE(run_until([&] { return out.has_value(); }));
  ASSERT_FALSE(out->ok());
  EXPECT_THAT(out->error().message, HasSubstr("script 'nest_rate_limit': ERR bad arguments"));
}

}  // namespace
}  // namespace guardant::engine
