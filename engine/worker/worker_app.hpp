// Wires the layers into a running worker: config → logging → event loop and
// clock → plugin host and registry → check runner → (standalone scheduler |
// queue consumer) → result sinks, with the health server beside them and
// SIGTERM/SIGINT draining in-flight checks before exit.
#pragma once

#include <iosfwd>
#include <string>
#include <vector>

#include "config/config.hpp"

namespace guardant::engine {

// Plugin directories used when the config names none: the install location
// and the build tree's plugins/ next to the executable's directory.
std::vector<std::string> default_plugin_dirs();

class WorkerApp {
 public:
  explicit WorkerApp(Config config) : config_(std::move(config)) {}
  // Runs until SIGTERM/SIGINT, then drains; returns the process exit code.
  int run();

 private:
  Config config_;
};

// `--list-plugins`: loads the configured plugin dirs and prints one block per
// plugin plus the refusals. Returns the exit code.
int list_plugins(const Config& config, std::ostream& out);

// `probe <type> <target>`: one check, its result record printed as JSON.
// Exit code 0 for up/degraded, 1 for down/inconclusive, 2 when the check
// could not run (bad options, unknown type).
int probe_once(const Config& config, const std::string& type, const std::string& target,
               const std::string& config_json, uint32_t timeout_ms, std::ostream& out);

}  // namespace guardant::engine
