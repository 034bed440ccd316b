// A config file that sets nothing, and one that sets everything.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <unistd.h>

#include "config/config.hpp"
#include "config_test_util.hpp"

namespace guardant::engine {
namespace {

using ::testing::ElementsAre;
using ::testing::Pair;
using testing::parse_ok;

std::string host_name() {
  char buf[256] = {};
  gethostname(buf, sizeof buf - 1);
  return buf;
}

TEST(ConfigDefaults, EmptyFileGivesTheDocumentedDefaults) {
  const Config c = parse_ok("");
  const Config d;  // the defaults declared in config.hpp
  EXPECT_EQ(c.source_path, "");
  EXPECT_EQ(c.mode, WorkerMode::Standalone);
  EXPECT_EQ(c.worker.id, host_name());
  EXPECT_FALSE(c.worker.id.empty());
  EXPECT_EQ(c.worker.region, "default");
  EXPECT_EQ(c.worker.concurrency, 50u);
  EXPECT_TRUE(c.worker.capabilities.empty());
  EXPECT_EQ(c.worker.drain_timeout_ms, 30'000u);
  EXPECT_EQ(c.worker.default_timeout_ms, 30'000u);
  EXPECT_EQ(c.log.level, "info");
  EXPECT_EQ(c.log.format, "text");
  EXPECT_TRUE(c.plugins.dirs.empty());
  EXPECT_TRUE(c.plugins.required.empty());
  EXPECT_EQ(c.redis.host, "127.0.0.1");
  EXPECT_EQ(c.redis.port, 6379);
  EXPECT_EQ(c.redis.password, "");
  EXPECT_EQ(c.redis.db, 0u);
  EXPECT_FALSE(c.redis.tls.enabled);
  EXPECT_TRUE(c.redis.tls.verify);
  EXPECT_EQ(c.redis.connect_timeout_ms, 5'000u);
  EXPECT_EQ(c.queue.names, d.queue.names);
  EXPECT_EQ(c.queue.prefix, "bull");
  EXPECT_TRUE(c.health.enabled);
  EXPECT_EQ(c.health.bind, "0.0.0.0");
  EXPECT_EQ(c.health.port, 3099);
  EXPECT_EQ(c.limits.default_tier, "free");
  EXPECT_EQ(c.limits.window_ms, 60'000u);
  EXPECT_THAT(c.limits.per_window, ElementsAre(Pair("free", std::optional<uint32_t>(60)),
                                               Pair("pro", std::optional<uint32_t>(600)),
                                               Pair("unlimited", std::optional<uint32_t>())));
  EXPECT_EQ(c.results.jsonl_path, "-");
  EXPECT_TRUE(c.results.stream_enabled);
  EXPECT_EQ(c.results.stream_key, "guardant:results");
  EXPECT_EQ(c.results.stream_maxlen, 100'000u);
  EXPECT_TRUE(c.results.status_enabled);
  EXPECT_EQ(c.results.status_prefix, "guardant:status:");
  EXPECT_EQ(c.results.spool_path, "");
  EXPECT_TRUE(c.monitors.empty());
}

TEST(ConfigDefaults, CommentsAndEmptyTablesChangeNothing) {
  const Config c = parse_ok(R"(
# nothing but comments
[worker]
[log]
[redis.tls]
[limits.tiers]
[results.stream]
)");
  EXPECT_EQ(c.worker.concurrency, 50u);
  EXPECT_EQ(c.limits.per_window.size(), 3u);
}

// Every key set to something other than its default, then read back.
TEST(ConfigRoundTrip, EveryKeyIsRead) {
  const Config c = parse_ok(R"(
mode = "queue"

[worker]
id = "w-1"
region = "eu-west"
concurrency = 8
capabilities = ["http", "tcp"]
drain_timeout_ms = 0
default_timeout_ms = 12000

[log]
level = "debug"
format = "json"

[plugins]
dirs = ["/opt/guardant/plugins"]
required = ["http", "tcp", "http"]

[redis]
host = "redis.internal"
port = 6380
unix_socket = "/run/redis.sock"
username = "worker"
password = "s3cret-pass"
db = 3
connect_timeout_ms = 750

[redis.tls]
enabled = true
verify = false
ca_file = "/etc/ca.pem"
cert_file = "/etc/client.pem"
key_file = "/etc/client.key"
server_name = "redis.example"

[queue]
names = ["monitoring-{region}", "priority"]
prefix = "gq"
lock_duration_ms = 10000
stalled_interval_ms = 5000
max_stalled_count = 3

[health]
enabled = false
bind = "127.0.0.1"
port = 0

[limits]
default_tier = "gold"
window_ms = 1000

[limits.tiers]
free = 10
pro = "unlimited"
gold = 1

[results]
jsonl = "/var/log/guardant/results.jsonl"
spool_path = "/var/spool/guardant"

[results.stream]
enabled = false
key = "gr"
maxlen = 5

[results.status]
enabled = false
prefix = "gs:"
)");
  EXPECT_EQ(c.mode, WorkerMode::Queue);
  EXPECT_EQ(c.worker.id, "w-1");
  EXPECT_EQ(c.worker.region, "eu-west");
  EXPECT_EQ(c.worker.concurrency, 8u);
  EXPECT_THAT(c.worker.capabilities, ElementsAre("http", "tcp"));
  EXPECT_EQ(c.worker.drain_timeout_ms, 0u);
  EXPECT_EQ(c.worker.default_timeout_ms, 12'000u);
  EXPECT_EQ(c.log.level, "debug");
  EXPECT_EQ(c.log.format, "json");
  EXPECT_THAT(c.plugins.dirs, ElementsAre("/opt/guardant/plugins"));
  EXPECT_THAT(c.plugins.required, ElementsAre("http", "tcp"));  // deduplicated
  EXPECT_EQ(c.redis.host, "redis.internal");
  EXPECT_EQ(c.redis.port, 6380);
  EXPECT_EQ(c.redis.unix_socket, "/run/redis.sock");
  EXPECT_EQ(c.redis.username, "worker");
  EXPECT_EQ(c.redis.password, "s3cret-pass");
  EXPECT_EQ(c.redis.db, 3u);
  EXPECT_EQ(c.redis.connect_timeout_ms, 750u);
  EXPECT_TRUE(c.redis.tls.enabled);
  EXPECT_FALSE(c.redis.tls.verify);
  EXPECT_EQ(c.redis.tls.ca_file, "/etc/ca.pem");
  EXPECT_EQ(c.redis.tls.cert_file, "/etc/client.pem");
  EXPECT_EQ(c.redis.tls.key_file, "/etc/client.key");
  EXPECT_EQ(c.redis.tls.server_name, "redis.example");
  // "{region}" is expanded with worker.region.
  EXPECT_THAT(c.queue.names, ElementsAre("monitoring-eu-west", "priority"));
  EXPECT_EQ(c.queue.prefix, "gq");
  EXPECT_EQ(c.queue.lock_duration_ms, 10'000u);
  EXPECT_EQ(c.queue.stalled_interval_ms, 5'000u);
  EXPECT_EQ(c.queue.max_stalled_count, 3u);
  EXPECT_FALSE(c.health.enabled);
  EXPECT_EQ(c.health.bind, "127.0.0.1");
  EXPECT_EQ(c.health.port, 0);
  EXPECT_EQ(c.limits.default_tier, "gold");
  EXPECT_EQ(c.limits.window_ms, 1'000u);
  // Built-in tiers can be overridden and new ones added; unlisted ones stay.
  EXPECT_THAT(c.limits.per_window, ElementsAre(Pair("free", std::optional<uint32_t>(10)),
                                               Pair("gold", std::optional<uint32_t>(1)),
                                               Pair("pro", std::optional<uint32_t>()),
                                               Pair("unlimited", std::optional<uint32_t>())));
  EXPECT_EQ(c.results.jsonl_path, "/var/log/guardant/results.jsonl");
  EXPECT_EQ(c.results.spool_path, "/var/spool/guardant");
  EXPECT_FALSE(c.results.stream_enabled);
  EXPECT_EQ(c.results.stream_key, "gr");
  EXPECT_EQ(c.results.stream_maxlen, 5u);
  EXPECT_FALSE(c.results.status_enabled);
  EXPECT_EQ(c.results.status_prefix, "gs:");
  EXPECT_TRUE(c.monitors.empty());
}

TEST(ConfigRoundTrip, DottedKeysAndInlineTablesAreEquivalent) {
  const Config c = parse_ok(R"(
worker.concurrency = 7
redis = { host = "r", tls = { enabled = true } }
)");
  EXPECT_EQ(c.worker.concurrency, 7u);
  EXPECT_EQ(c.redis.host, "r");
  EXPECT_TRUE(c.redis.tls.enabled);
}

TEST(ConfigRoundTrip, LogLevelIsCaseInsensitive) {
  EXPECT_EQ(parse_ok("[log]\nlevel = \"WARN\"\n").log.level, "warn");
}

}  // namespace
}  // namespace guardant::engine
