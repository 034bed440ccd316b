// guardant-worker: command-line entry. Parses flags, loads the config, and
// hands over to WorkerApp (or one of the one-shot commands).
#include <csignal>
#include <cstdlib>
#include <filesystem>
#include <iostream>
#include <optional>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/logging.hpp"
#include "worker/fleet_command.hpp"
#include "worker/worker_app.hpp"

namespace {

constexpr const char* kUsage = R"(usage: guardant-worker [options]
       guardant-worker probe <type> <target> [--config JSON] [--timeout MS] [--config-file PATH]
       guardant-worker workers [--config PATH]   list the fleet's registered workers (reads Redis)

Runs probe checks: in standalone mode from the monitors in the config file,
in queue mode from a BullMQ queue on Redis.

options:
  -c, --config PATH   config file (default: $GUARDANT_CONFIG or /etc/guardant/worker.toml)
      --config-file PATH  the same (the spelling to use with `probe`)
      --check-config  validate the config (and env overrides) and exit 0/1
      --list-plugins  load the plugin directories and list what loaded and what was refused
  -V, --version       print the version and exit
  -h, --help          this text

probe: runs one check now and prints its result record as JSON, e.g.
  guardant-worker probe web https://example.com --config '{"keyword":"Example"}'
  --config JSON       the check's options (as in a job's service.config)
  --timeout MS        host deadline for the check (default: worker.default_timeout_ms)
  exit code 0 up/degraded, 1 down/inconclusive, 2 the check could not run

environment overrides: REDIS_HOST REDIS_PORT REDIS_PASSWORD WORKER_ID WORKER_CONCURRENCY
  WORKER_REGION WORKER_CAPABILITIES HEALTH_PORT LOG_LEVEL
)";

int usage_error(const std::string& message) {
  std::cerr << "guardant-worker: " << message << "\n(run guardant-worker --help for usage)\n";
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  using namespace guardant::engine;
  // A peer that closes while a probe writes must give that probe EPIPE, never
  // kill the worker: plugins may use libraries that write() to sockets.
  std::signal(SIGPIPE, SIG_IGN);
  std::vector<std::string> args(argv + 1, argv + argc);
  std::optional<std::string> config_path;
  bool check_config = false, list = false;
  std::vector<std::string> positional;
  std::string probe_json = "{}";
  uint32_t probe_timeout = 0;

  // After `probe`, --config carries the check's JSON options (the operator's
  // habit from job data); the worker's config file is then --config-file.
  const bool probe_mode = !args.empty() && args[0] == "probe";
  for (size_t i = 0; i < args.size(); ++i) {
    const auto& a = args[i];
    auto value = [&](const char* name) -> std::optional<std::string> {
      if (i + 1 >= args.size()) return std::nullopt;
      (void)name;
      return args[++i];
    };
    if (a == "-h" || a == "--help") {
      std::cout << kUsage;
      return 0;
    } else if (a == "-V" || a == "--version") {
      std::cout << "guardant-worker " << GUARDANT_VERSION << "\n";
      return 0;
    } else if (a == "--config" && probe_mode) {
      auto v = value("--config");
      if (!v) return usage_error("--config needs the check's options as a JSON object");
      probe_json = *v;
    } else if (a == "-c" || a == "--config" || a == "--config-file") {
      auto v = value("--config");
      if (!v) return usage_error(a + " needs a path");
      config_path = *v;
    } else if (a.rfind("--config-file=", 0) == 0) {
      config_path = a.substr(14);
    } else if (a.rfind("--config=", 0) == 0) {
      (probe_mode ? probe_json : config_path.emplace()) = a.substr(9);
    } else if (a == "--check-config") {
      check_config = true;
    } else if (a == "--list-plugins") {
      list = true;
    } else if (a == "--config-json") {
      auto v = value("--config-json");
      if (!v) return usage_error("--config-json needs a JSON object");
      probe_json = *v;
    } else if (a == "--timeout") {
      auto v = value("--timeout");
      char* end = nullptr;
      unsigned long ms = v ? std::strtoul(v->c_str(), &end, 10) : 0;
      if (!v || *end || ms == 0 || ms > 3'600'000)
        return usage_error("--timeout needs milliseconds between 1 and 3600000");
      probe_timeout = static_cast<uint32_t>(ms);
    } else if (!a.empty() && a[0] == '-') {
      return usage_error("unknown option " + a);
    } else {
      positional.push_back(a);
    }
  }

  const bool probe = !positional.empty() && positional[0] == "probe";
  const bool workers = !positional.empty() && positional[0] == "workers";
  if (workers && positional.size() != 1) return usage_error("workers takes no arguments");
  if (!positional.empty() && !probe && !workers)
    return usage_error(positional[0] == "probe" ? "probe must be the first argument"
                                                : "unknown command " + positional[0]);
  if (probe && positional.size() != 3) return usage_error("probe needs <type> <target>");

  // One-shot commands work without a config file; the worker itself does not.
  std::string path;
  if (config_path) {
    path = *config_path;
  } else if (const char* env = std::getenv("GUARDANT_CONFIG"); env && *env) {
    path = env;
  } else {
    path = "/etc/guardant/worker.toml";
  }
  Result<Config> config = Config{};
  const bool optional_file = !config_path && (probe || list || workers);
  if (optional_file && !std::filesystem::exists(path))
    config = parse_config("", "(defaults)", process_env());
  else
    config = load_config(path, process_env());
  if (!config) {
    std::cerr << "guardant-worker: invalid config: " << config.error().message << "\n";
    return 1;
  }
  configure_logging(config->log.level,
                    config->log.format == "json" ? LogFormat::Json : LogFormat::Text);

  if (check_config) {
    std::cout << "config OK: " << path << " (mode "
              << (config->mode == WorkerMode::Queue ? "queue" : "standalone") << ", "
              << config->monitors.size() << " monitor(s), worker " << config->worker.id
              << ", region " << config->worker.region << ")\n";
    return 0;
  }
  if (list) return list_plugins(*config, std::cout);
  if (workers) return list_workers(*config, std::cout);
  if (probe) {
    if (!config_path) configure_logging("warn");
    return probe_once(*config, positional[1], positional[2], probe_json, probe_timeout, std::cout);
  }
  return WorkerApp(std::move(*config)).run();
}
