// One spdlog logger per layer ("config", "plugins", "scheduler", "http",
// "results", "worker", and "plugin:<name>" for plugins), sharing one sink.
#pragma once

#include <spdlog/spdlog.h>

#include <memory>
#include <string>

namespace guardant::engine {

enum class LogFormat { Text, Json };

// Sets the level and format of every facility; safe to call again. Logs go
// to stderr so that stdout stays free for JSON Lines results.
void configure_logging(const std::string& level, LogFormat format = LogFormat::Text);
// The logger of one facility, created on first use.
std::shared_ptr<spdlog::logger> logger(const std::string& facility);
// Parses "trace|debug|info|warn|error|critical|off"; false when unknown.
bool parse_log_level(const std::string& text, spdlog::level::level_enum& out);

}  // namespace guardant::engine
