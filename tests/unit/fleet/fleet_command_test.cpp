// `guardant-worker workers` (list_workers) against a real redis-server.
#include "worker/fleet_command.hpp"

#include <gtest/gtest.h>

#include <chrono>
#include <sstream>
#include <string>

#include "support/redis_server.hpp"

namespace guardant::engine {
namespace {

using test::RedisServer;

int64_t wall_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Config config_for(uint16_t port) {
  Config c;
  c.redis.port = port;
  c.redis.connect_timeout_ms = 2'000;
  return c;
}

TEST(ListWorkersTest, PrintsTheFleetAsATable) {
  RedisServer redis;
  const auto seen = std::to_string(wall_ms() - 3'000);
  redis.cli("SET", "guardant:workers:us-1",
            R"({"id":"us-1","region":"us-east","capabilities":["web"],"concurrency":20,)"
            R"("inFlight":0,"version":"0.5.0","host":"box-2","lastSeen":)" +
                seen + "}",
            "PX", "60000");
  redis.cli("SET", "guardant:workers:eu-1",
            R"({"id":"eu-1","region":"eu-west","capabilities":["tcp","web"],"concurrency":50,)"
            R"("inFlight":3,"version":"0.5.0","host":"box-1","lastSeen":)" +
                seen + "}",
            "PX", "60000");
  std::ostringstream out, err;
  EXPECT_EQ(list_workers(config_for(redis.port()), out, err), 0) << err.str();
  const auto text = out.str();
  EXPECT_EQ(text.rfind("ID    REGION   CAPABILITIES  IN-FLIGHT/CONCURRENCY  LAST SEEN", 0), 0u)
      << text;
  const auto eu = text.find("eu-1  eu-west  tcp,web       3/50");
  const auto us = text.find("us-1  us-east  web           0/20");
  EXPECT_NE(eu, std::string::npos) << text;
  EXPECT_NE(us, std::string::npos) << text;
  EXPECT_LT(eu, us) << text;
  EXPECT_NE(text.find("s ago"), std::string::npos) << text;
  EXPECT_NE(text.find("box-1"), std::string::npos) << text;
  EXPECT_EQ(err.str(), "");
}

TEST(ListWorkersTest, EmptyFleet) {
  RedisServer redis;
  std::ostringstream out, err;
  EXPECT_EQ(list_workers(config_for(redis.port()), out, err), 0) << err.str();
  EXPECT_EQ(out.str(), "no workers registered\n");
}

TEST(ListWorkersTest, UnreachableRedisIsAClearError) {
  uint16_t port;
  {
    RedisServer redis;
    port = redis.port();
  }  // stopped: nothing listens there now
  std::ostringstream out, err;
  EXPECT_EQ(list_workers(config_for(port), out, err), 1);
  EXPECT_EQ(out.str(), "");
  EXPECT_EQ(
      err.str().rfind(
          "guardant-worker: cannot reach Redis at 127.0.0.1:" + std::to_string(port) + ": ", 0),
      0u)
      << err.str();
  EXPECT_NE(err.str().find("refused"), std::string::npos) << err.str();
}

TEST(ListWorkersTest, RejectedPasswordIsNamedButNotPrinted) {
  test::RedisServerOptions options;
  options.args = {"--requirepass", "right-secret"};
  options.cli_args = {"-a", "right-secret"};
  RedisServer redis(options);
  auto config = config_for(redis.port());
  config.redis.password = "hunter2-wrong";
  std::ostringstream out, err;
  EXPECT_EQ(list_workers(config, out, err), 1);
  EXPECT_NE(err.str().find("cannot reach Redis at 127.0.0.1:"), std::string::npos) << err.str();
  EXPECT_NE(err.str().find("AUTH failed"), std::string::npos) << err.str();
  EXPECT_EQ(err.str().find("hunter2"), std::string::npos) << err.str();
}

}  // namespace
}  // namespace guardant::engine
