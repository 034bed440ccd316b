// Process metrics in the names Prometheus client libraries use, read from
// /proc/self on demand (at scrape time) rather than sampled on a timer.
#pragma once

#include <optional>

namespace guardant::engine::metrics {

struct ProcessStats {
  std::optional<double> cpu_seconds;  // user + system
  std::optional<double> resident_bytes;
  std::optional<double> virtual_bytes;
  std::optional<double> start_time_seconds;  // since the Unix epoch
  std::optional<double> open_fds;
  std::optional<double> max_fds;  // soft RLIMIT_NOFILE
};

// Fields that cannot be read (no /proc, e.g. outside Linux) stay nullopt.
ProcessStats read_process_stats();

}  // namespace guardant::engine::metrics
