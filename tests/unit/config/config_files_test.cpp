// Loading from disk: relative plugin dirs, and the configs shipped in config/.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "config/config.hpp"
#include "config_test_util.hpp"

namespace guardant::engine {
namespace {

namespace fs = std::filesystem;
using ::testing::Contains;
using ::testing::ElementsAre;
using testing::no_env;
using ::testing::StartsWith;
using testing::TempDir;

void write_file(const fs::path& path, const std::string& text) {
  fs::create_directories(path.parent_path());
  std::ofstream(path) << text;
}

TEST(ConfigFiles, RelativePluginDirsAreResolvedAgainstTheFile) {
  TempDir tmp;
  const fs::path file = tmp.path() / "etc" / "worker.toml";
  write_file(file, "[plugins]\ndirs = [\"plugins\", \"../lib/./plugins\", \"/opt/p\"]\n");
  auto r = load_config(file.string(), no_env());
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_EQ(r->source_path, file.string());
  EXPECT_THAT(r->plugins.dirs, ElementsAre((tmp.path() / "etc" / "plugins").string(),
                                           (tmp.path() / "lib" / "plugins").string(), "/opt/p"));
}

TEST(ConfigFiles, RelativeConfigPathStillGivesAbsolutePluginDirs) {
  TempDir tmp;
  write_file(tmp.path() / "conf" / "w.toml", "plugins.dirs = [\"p\"]\n");
  const fs::path cwd = fs::current_path();
  fs::current_path(tmp.path());
  auto r = load_config("conf/w.toml", no_env());
  fs::current_path(cwd);
  ASSERT_TRUE(r.ok()) << r.error().message;
  EXPECT_THAT(r->plugins.dirs, ElementsAre((tmp.path() / "conf" / "p").string()));
}

TEST(ConfigFiles, ErrorsNameThePathAsGiven) {
  TempDir tmp;
  const fs::path file = tmp.path() / "bad.toml";
  write_file(file, "[worker]\nconcurrency = \"ten\"\n");
  auto r = load_config(file.string(), no_env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "invalid_config");
  EXPECT_EQ(r.error().message, file.string() +
                                   ":2:15: worker.concurrency: expected a positive integer, "
                                   "got string \"ten\"");
}

TEST(ConfigFiles, DirectoryIsNotAConfig) {
  TempDir tmp;
  auto r = load_config(tmp.path().string(), no_env());
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.error().code, "config_unreadable");
  EXPECT_THAT(r.error().message, StartsWith("cannot read config file " + tmp.path().string()));
}

// worker.toml documents every key with its default: reading it must give
// exactly the defaults of config.hpp, apart from what a queue node needs.
TEST(ConfigFiles, ShippedWorkerTomlHoldsTheDefaults) {
  auto r = load_config(GUARDANT_SOURCE_DIR "/config/worker.toml", no_env());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Config& c = *r;
  const Config d;
  EXPECT_EQ(c.mode, WorkerMode::Queue);
  EXPECT_THAT(c.plugins.dirs,
              ElementsAre("/usr/lib/guardant/plugins", "/usr/local/lib/guardant/plugins"));
  EXPECT_EQ(c.plugins.required, d.plugins.required);
  EXPECT_EQ(c.worker.region, d.worker.region);
  EXPECT_EQ(c.worker.concurrency, d.worker.concurrency);
  EXPECT_EQ(c.worker.capabilities, d.worker.capabilities);
  EXPECT_EQ(c.worker.drain_timeout_ms, d.worker.drain_timeout_ms);
  EXPECT_EQ(c.worker.default_timeout_ms, d.worker.default_timeout_ms);
  EXPECT_EQ(c.log.level, d.log.level);
  EXPECT_EQ(c.log.format, d.log.format);
  EXPECT_EQ(c.redis.host, d.redis.host);
  EXPECT_EQ(c.redis.port, d.redis.port);
  EXPECT_EQ(c.redis.unix_socket, d.redis.unix_socket);
  EXPECT_EQ(c.redis.username, d.redis.username);
  EXPECT_EQ(c.redis.password, d.redis.password);
  EXPECT_EQ(c.redis.db, d.redis.db);
  EXPECT_EQ(c.redis.connect_timeout_ms, d.redis.connect_timeout_ms);
  EXPECT_EQ(c.redis.tls.enabled, d.redis.tls.enabled);
  EXPECT_EQ(c.redis.tls.verify, d.redis.tls.verify);
  EXPECT_EQ(c.redis.tls.ca_file, d.redis.tls.ca_file);
  EXPECT_EQ(c.redis.tls.cert_file, d.redis.tls.cert_file);
  EXPECT_EQ(c.redis.tls.key_file, d.redis.tls.key_file);
  EXPECT_EQ(c.redis.tls.server_name, d.redis.tls.server_name);
  EXPECT_EQ(c.queue.names, d.queue.names);
  EXPECT_EQ(c.queue.prefix, d.queue.prefix);
  EXPECT_EQ(c.queue.lock_duration_ms, d.queue.lock_duration_ms);
  EXPECT_EQ(c.queue.stalled_interval_ms, d.queue.stalled_interval_ms);
  EXPECT_EQ(c.queue.max_stalled_count, d.queue.max_stalled_count);
  EXPECT_EQ(c.health.enabled, d.health.enabled);
  EXPECT_EQ(c.health.bind, d.health.bind);
  EXPECT_EQ(c.health.port, d.health.port);
  EXPECT_EQ(c.limits.default_tier, d.limits.default_tier);
  EXPECT_EQ(c.limits.window_ms, d.limits.window_ms);
  EXPECT_EQ(c.limits.per_window, d.limits.per_window);
  EXPECT_EQ(c.results.jsonl_path, d.results.jsonl_path);
  EXPECT_EQ(c.results.spool_path, d.results.spool_path);
  EXPECT_EQ(c.results.stream_enabled, d.results.stream_enabled);
  EXPECT_EQ(c.results.stream_key, d.results.stream_key);
  EXPECT_EQ(c.results.stream_maxlen, d.results.stream_maxlen);
  EXPECT_EQ(c.results.status_enabled, d.results.status_enabled);
  EXPECT_EQ(c.results.status_prefix, d.results.status_prefix);
  EXPECT_TRUE(c.monitors.empty());
}

TEST(ConfigFiles, ShippedStandaloneTomlIsTheOfflineDemo) {
  auto r = load_config(GUARDANT_SOURCE_DIR "/config/standalone.toml", no_env());
  ASSERT_TRUE(r.ok()) << r.error().message;
  const Config& c = *r;
  EXPECT_EQ(c.mode, WorkerMode::Standalone);
  EXPECT_EQ(c.health.bind, "127.0.0.1");
  EXPECT_EQ(c.health.port, 3099);
  EXPECT_EQ(c.results.jsonl_path, "-");
  EXPECT_FALSE(c.results.stream_enabled);
  EXPECT_FALSE(c.results.status_enabled);
  // The build tree's plugins, wherever the source tree is.
  EXPECT_THAT(c.plugins.dirs,
              ElementsAre((fs::path(GUARDANT_SOURCE_DIR) / "build" / "plugins").string()));
  EXPECT_THAT(c.plugins.required, Contains("tcp"));
  ASSERT_EQ(c.monitors.size(), 4u);
  EXPECT_EQ(c.monitors[0].type, "tcp");
  EXPECT_EQ(c.monitors[0].target, "127.0.0.1:3099");  // the worker's own health port
  EXPECT_EQ(c.monitors[0].interval, std::chrono::seconds(5));
  EXPECT_EQ(c.monitors[1].type, "tcp");
  EXPECT_EQ(c.monitors[1].target, "127.0.0.1:9");  // discard port: normally closed
  EXPECT_EQ(c.monitors[1].interval, std::chrono::seconds(10));
  EXPECT_EQ(c.monitors[2].type, "ping");
  EXPECT_EQ(c.monitors[2].target, "127.0.0.1");
  EXPECT_EQ(c.monitors[3].type, "web");
}

}  // namespace
}  // namespace guardant::engine
