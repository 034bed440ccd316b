// The worker's configuration: one TOML file per node, overridden by env vars.
// `load_config` validates everything up front and names file, line and key in
// every error, so a broken config never gets as far as starting the worker.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "core/result.hpp"

namespace guardant::engine {

enum class WorkerMode { Standalone, Queue };

struct WorkerSettings {
  std::string id;  // default: the host name
  std::string region = "default";
  uint32_t concurrency = 50;              // concurrent checks (slots)
  std::vector<std::string> capabilities;  // empty: every loaded probe type
  uint32_t drain_timeout_ms = 30'000;     // graceful stop
  uint32_t default_timeout_ms = 30'000;   // per check, when the job has none
};

struct LogSettings {
  std::string level = "info";   // trace|debug|info|warn|error|critical|off
  std::string format = "text";  // text|json
};

struct PluginSettings {
  std::vector<std::string> dirs;  // scanned in order
  // Probe types that must load, or the worker refuses to start. Standalone
  // monitors add their types to this implicitly.
  std::vector<std::string> required;
};

struct TlsSettings {
  bool enabled = false;
  bool verify = true;
  std::string ca_file, cert_file, key_file, server_name;
};

struct RedisSettings {
  std::string host = "127.0.0.1";
  uint16_t port = 6379;
  std::string unix_socket;  // used instead of host:port when set
  std::string username;     // ACL user; empty: password-only AUTH
  std::string password;     // never logged
  uint32_t db = 0;
  TlsSettings tls;
  uint32_t connect_timeout_ms = 5'000;
};

struct QueueSettings {
  std::vector<std::string> names{"monitoring"};  // "{region}" is expanded
  std::string prefix = "bull";
  uint32_t lock_duration_ms = 30'000;
  uint32_t stalled_interval_ms = 30'000;
  uint32_t max_stalled_count = 1;
  // A job this worker cannot run (type, region, required capabilities) is
  // handed back, delayed by handback_delay_ms, at most max_handbacks times;
  // then it fails with a reason naming what was missing.
  uint32_t max_handbacks = 20;
  uint32_t handback_delay_ms = 500;
};

struct HealthSettings {
  bool enabled = true;
  std::string bind = "0.0.0.0";
  uint16_t port = 3099;  // 0: pick a free port (tests)
};

struct LimitSettings {
  std::string default_tier = "free";
  // Checks per window for each tier; nullopt = unlimited.
  std::map<std::string, std::optional<uint32_t>> per_window{
      {"free", 60}, {"pro", 600}, {"unlimited", std::nullopt}};
  uint32_t window_ms = 60'000;
};

struct ResultSettings {
  // JSON Lines: "-" for stdout, a path, or empty for none.
  std::string jsonl_path = "-";
  bool stream_enabled = true;
  std::string stream_key = "guardant:results";
  uint32_t stream_maxlen = 100'000;
  bool status_enabled = true;
  std::string status_prefix = "guardant:status:";
  std::string spool_path;  // local spool while Redis is away
};

struct MonitorSettings {
  std::string id;
  std::string type;
  std::string target;
  std::chrono::milliseconds interval{60'000};
  uint32_t timeout_ms = 0;         // 0: worker.default_timeout_ms
  std::string config_json = "{}";  // the [monitor.config] table as JSON
  std::string nest_id;             // optional, copied into results
  int64_t line = 0;                // where it was declared, for messages
};

struct Config {
  std::string source_path;  // the file it came from ("" for defaults)
  WorkerMode mode = WorkerMode::Standalone;
  WorkerSettings worker;
  LogSettings log;
  PluginSettings plugins;
  RedisSettings redis;
  QueueSettings queue;
  HealthSettings health;
  LimitSettings limits;
  ResultSettings results;
  std::vector<MonitorSettings> monitors;
};

// Looks up an environment variable; injected so tests need not touch the
// process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string& name)>;
EnvLookup process_env();

// Reads, validates and applies env overrides (REDIS_HOST REDIS_PORT
// REDIS_PASSWORD WORKER_ID WORKER_CONCURRENCY WORKER_REGION
// WORKER_CAPABILITIES HEALTH_PORT LOG_LEVEL). Error messages look like
//   worker.toml:12:15: worker.concurrency: expected a positive integer, got string "ten"
Result<Config> load_config(const std::string& path, const EnvLookup& env);
// Same, from TOML text (tests); `name` is used in messages.
Result<Config> parse_config(const std::string& toml_text, const std::string& name,
                            const EnvLookup& env);

}  // namespace guardant::engine
