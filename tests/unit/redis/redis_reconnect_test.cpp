// Drops and reconnects: a server killed with commands in flight, restarted on
// the same port; a server that is not there yet when the worker starts.
#include <gtest/gtest.h>

#include "redis/redis_connection.hpp"
#include "redis_test_util.hpp"

namespace guardant::test {
namespace {

using engine::redis::RedisConnection;

class RedisReconnectTest : public RedisLoopTest {};

TEST_F(RedisReconnectTest, ServerKilledWithCommandsInFlightThenRestarted) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  int ready_calls = 0;
  std::vector<std::string> downs;
  conn->on_ready([&] { ++ready_calls; });
  conn->on_down([&](const std::string& why) { downs.push_back(why); });
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  EXPECT_EQ(ready_calls, 1);

  // Commands that stay in flight: the pipeline's BLPOP blocks the connection
  // (Redis answers a client in order), so everything after it waits too.
  std::optional<std::vector<Result<Reply>>> pipe;
  conn->pipeline({{"PING"}, {"BLPOP", "never", "0"}, {"PING"}},
                 [&](std::vector<Result<Reply>> r) { pipe = std::move(r); });
  std::vector<Result<Reply>> failed;
  for (int i = 0; i < 3; ++i)
    conn->command({"INCR", "n"}, [&](Result<Reply> r) { failed.push_back(std::move(r)); });
  ASSERT_TRUE(run_until([&] { return conn->in_flight() == 5; }));  // the first PING answered
  run_for(50ms);
  ASSERT_TRUE(failed.empty());
  ASSERT_FALSE(pipe.has_value());
  server.kill();

  ASSERT_TRUE(run_until([&] { return failed.size() == 3 && pipe.has_value(); }));
  for (auto& r : failed) {
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.error().code, "disconnected");
    EXPECT_NE(r.error().message.find("lost"), std::string::npos) << r.error().message;
  }
  // The pipeline: the reply that arrived keeps its value, the rest fail.
  ASSERT_EQ(pipe->size(), 3u);
  EXPECT_TRUE((*pipe)[0].ok());
  EXPECT_EQ((*pipe)[1].error().code, "disconnected");
  EXPECT_EQ((*pipe)[2].error().code, "disconnected");
  ASSERT_EQ(downs.size(), 1u);
  EXPECT_NE(downs[0].find("closed"), std::string::npos) << downs[0];
  EXPECT_FALSE(conn->ready());
  EXPECT_EQ(conn->in_flight(), 0u);

  // While the server is away: retries keep failing, commands fail fast.
  auto attempts = conn->attempts();
  ASSERT_TRUE(run_until([&] { return conn->attempts() >= attempts + 2; }));
  auto r = call(*conn, {"PING"});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "not_connected");

  server.start();  // same port
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  EXPECT_EQ(ready_calls, 2);
  EXPECT_EQ(conn->connects(), 2u);
  EXPECT_EQ(downs.size(), 1u);
  auto after = call(*conn, {"SET", "back", "1"});
  ASSERT_TRUE(after.ok()) << after.error().message;
  EXPECT_EQ(server.cli("GET", "back"), "1\n");
}

TEST_F(RedisReconnectTest, ServerStoppedGracefullyIsADropToo) {
  RedisServer server;
  auto conn = connect(settings_for(server));
  int downs = 0;
  conn->on_down([&](const std::string&) { ++downs; });
  ASSERT_TRUE(run_until([&] { return conn->ready(); })) << conn->last_error();
  server.restart();
  ASSERT_TRUE(run_until([&] { return downs == 1 && conn->ready(); })) << conn->last_error();
  EXPECT_TRUE(call(*conn, {"PING"}).ok());
}

TEST_F(RedisReconnectTest, KeepsRetryingUntilTheServerAppears) {
  uint16_t port = free_port();
  engine::RedisSettings s;
  s.host = "127.0.0.1";
  s.port = port;
  int ready_calls = 0;
  RedisConnection conn(io, clock, s, "late", "redis", fast_backoff());
  conn.on_ready([&] { ++ready_calls; });
  conn.start();
  ASSERT_TRUE(run_until([&] { return conn.attempts() >= 4; }));
  EXPECT_FALSE(conn.ready());
  EXPECT_EQ(conn.connects(), 0u);
  EXPECT_NE(conn.last_error().find("Connection refused"), std::string::npos) << conn.last_error();

  RedisServerOptions opts;
  opts.port = port;
  RedisServer server(opts);
  ASSERT_TRUE(run_until([&] { return conn.ready(); })) << conn.last_error();
  EXPECT_EQ(ready_calls, 1);
  EXPECT_TRUE(conn.last_error().empty());
  EXPECT_TRUE(call(conn, {"PING"}).ok());
}

TEST_F(RedisReconnectTest, BackoffGrowsAndIsCapped) {
  // With 20 ms doubling to a 200 ms cap (+-20 %), 1.5 s of refused connects
  // gives at most ~1+5 quick attempts plus ~1500/160 capped ones, and at
  // least (1500-620)/240 of the capped ones: far fewer than an unthrottled loop.
  engine::RedisSettings s;
  s.host = "127.0.0.1";
  s.port = free_port();
  RedisConnection conn(io, clock, s, "", "redis", fast_backoff());
  conn.start();
  run_for(1500ms);
  EXPECT_GE(conn.attempts(), 5u);
  EXPECT_LE(conn.attempts(), 20u);
}

}  // namespace
}  // namespace guardant::test
