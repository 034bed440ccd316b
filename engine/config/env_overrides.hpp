// Internal to engine_config: applies the environment variables that
// container deployments use to override the file (see config.hpp).
#pragma once

#include "config/config.hpp"
#include "config/diagnostics.hpp"

namespace guardant::engine::config_detail {

// The log levels spdlog understands, as written in messages and worker.toml.
inline constexpr std::string_view kLogLevels = "trace, debug, info, warn, error, critical, off";

// Lower-cases `level` and checks it against core's parser; false if unknown.
bool normalize_log_level(std::string& level);

// Each variable that is set (and not empty) replaces the file's value; a bad
// value is reported under the variable's name and leaves the config as it was.
void apply_env_overrides(Config& config, const EnvLookup& env, Diagnostics& diag);

}  // namespace guardant::engine::config_detail
