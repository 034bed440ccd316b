// Environment overrides: applied after the file, validated one by one.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <cstdlib>

#include "config/config.hpp"
#include "config_test_util.hpp"

namespace guardant::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::EndsWith;
using testing::env_of;
using testing::parse_error;
using testing::parse_ok;
using ::testing::StartsWith;

constexpr const char* kFile =
    "[worker]\n"
    "id = \"file-id\"\n"
    "region = \"file-region\"\n"
    "concurrency = 3\n"
    "capabilities = [\"http\"]\n"
    "[redis]\n"
    "host = \"file-host\"\n"
    "port = 7000\n"
    "password = \"file-pass\"\n"
    "[health]\n"
    "port = 4000\n"
    "[log]\n"
    "level = \"warn\"\n";

TEST(ConfigEnv, OverridesTheFile) {
  const Config c = parse_ok(kFile, env_of({{"REDIS_HOST", "env-host"},
                                           {"REDIS_PORT", "7001"},
                                           {"REDIS_PASSWORD", "env pass "},
                                           {"WORKER_ID", "env-id"},
                                           {"WORKER_CONCURRENCY", " 12 "},
                                           {"WORKER_REGION", "env-region"},
                                           {"WORKER_CAPABILITIES", "tcp, dns,,tcp"},
                                           {"HEALTH_PORT", "0"},
                                           {"LOG_LEVEL", "DEBUG"}}));
  EXPECT_EQ(c.redis.host, "env-host");
  EXPECT_EQ(c.redis.port, 7001);
  EXPECT_EQ(c.redis.password, "env pass ");  // verbatim
  EXPECT_EQ(c.worker.id, "env-id");
  EXPECT_EQ(c.worker.concurrency, 12u);
  EXPECT_EQ(c.worker.region, "env-region");
  EXPECT_THAT(c.worker.capabilities, ElementsAre("tcp", "dns"));
  EXPECT_EQ(c.health.port, 0);
  EXPECT_EQ(c.log.level, "debug");
}

TEST(ConfigEnv, UnsetAndEmptyVariablesKeepTheFileValues) {
  const Config c = parse_ok(kFile, env_of({{"REDIS_HOST", ""},
                                           {"REDIS_PORT", ""},
                                           {"REDIS_PASSWORD", ""},
                                           {"WORKER_ID", ""},
                                           {"WORKER_CONCURRENCY", ""},
                                           {"WORKER_CAPABILITIES", ""},
                                           {"LOG_LEVEL", ""}}));
  EXPECT_EQ(c.redis.host, "file-host");
  EXPECT_EQ(c.redis.port, 7000);
  EXPECT_EQ(c.redis.password, "file-pass");
  EXPECT_EQ(c.worker.id, "file-id");
  EXPECT_EQ(c.worker.region, "file-region");
  EXPECT_EQ(c.worker.concurrency, 3u);
  EXPECT_THAT(c.worker.capabilities, ElementsAre("http"));
  EXPECT_EQ(c.health.port, 4000);
  EXPECT_EQ(c.log.level, "warn");
}

TEST(ConfigEnv, RegionFromEnvIsUsedInQueueNames) {
  const Config c = parse_ok("mode = \"queue\"\nqueue.names = [\"monitoring-{region}\"]\n",
                            env_of({{"WORKER_REGION", "ap"}}));
  EXPECT_THAT(c.queue.names, ElementsAre("monitoring-ap"));
}

TEST(ConfigEnv, BadValuesNameTheVariable) {
  EXPECT_EQ(parse_error("", env_of({{"WORKER_CONCURRENCY", "abc"}})),
            "WORKER_CONCURRENCY: expected a positive integer, got \"abc\"");
  EXPECT_EQ(parse_error("", env_of({{"WORKER_CONCURRENCY", "0"}})),
            "WORKER_CONCURRENCY: expected a positive integer, got \"0\"");
  EXPECT_EQ(parse_error("", env_of({{"WORKER_CONCURRENCY", "-4"}})),
            "WORKER_CONCURRENCY: expected a positive integer, got \"-4\"");
  EXPECT_EQ(parse_error("", env_of({{"WORKER_CONCURRENCY", "12abc"}})),
            "WORKER_CONCURRENCY: expected a positive integer, got \"12abc\"");
  EXPECT_EQ(parse_error("", env_of({{"REDIS_PORT", "70000"}})),
            "REDIS_PORT: expected a port number between 1 and 65535, got \"70000\"");
  EXPECT_EQ(parse_error("", env_of({{"HEALTH_PORT", "http"}})),
            "HEALTH_PORT: expected a port number between 0 and 65535 (0 = any free port), got "
            "\"http\"");
  EXPECT_EQ(parse_error("", env_of({{"LOG_LEVEL", "verbose"}})),
            "LOG_LEVEL: expected one of trace, debug, info, warn, error, critical, off, got "
            "\"verbose\"");
  EXPECT_EQ(parse_error("", env_of({{"WORKER_CAPABILITIES", " , ,"}})),
            "WORKER_CAPABILITIES: expected a comma-separated list of probe types like "
            "\"http,tcp\", got \" , ,\"");
  EXPECT_EQ(parse_error("", env_of({{"WORKER_ID", "   "}})),
            "WORKER_ID: expected a non-empty value, got \"   \"");
}

TEST(ConfigEnv, FileAndEnvErrorsAreReportedTogether) {
  EXPECT_EQ(parse_error("[worker]\nconcurrency = 0\n", env_of({{"REDIS_PORT", "x"}})),
            "worker.toml:2:15: worker.concurrency: expected a positive integer, got integer 0\n"
            "REDIS_PORT: expected a port number between 1 and 65535, got \"x\"");
  // Even a file that is not TOML at all.
  const std::string e = parse_error("[worker\n", env_of({{"REDIS_PORT", "x"}}));
  EXPECT_THAT(e, StartsWith("worker.toml:1:"));
  EXPECT_THAT(e, EndsWith("\nREDIS_PORT: expected a port number between 1 and 65535, got \"x\""));
}

TEST(ConfigEnv, ProcessEnvReadsTheEnvironment) {
  ::setenv("GUARDANT_CONFIG_TEST_VARIABLE", "value-1", 1);
  const EnvLookup env = process_env();
  EXPECT_EQ(env("GUARDANT_CONFIG_TEST_VARIABLE"), std::optional<std::string>("value-1"));
  ::unsetenv("GUARDANT_CONFIG_TEST_VARIABLE");
  EXPECT_EQ(env("GUARDANT_CONFIG_TEST_VARIABLE"), std::nullopt);
}

TEST(ConfigEnv, NullLookupMeansNoOverrides) {
  auto r = parse_config("[worker]\nconcurrency = 9\n", "worker.toml", EnvLookup{});
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->worker.concurrency, 9u);
}

}  // namespace
}  // namespace guardant::engine
