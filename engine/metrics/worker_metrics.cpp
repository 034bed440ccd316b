#include "metrics/worker_metrics.hpp"

namespace guardant::engine {

using metrics::default_duration_buckets;

WorkerMetrics::WorkerMetrics()
    : checks_(registry_.counter("guardant_checks_total",
                                "Checks finished, by check type and status "
                                "(up, down, degraded, inconclusive).",
                                {"type", "status"})),
      duration_(registry_.histogram("guardant_check_duration_seconds",
                                    "Duration of finished checks, by check type.",
                                    default_duration_buckets(), {"type"})),
      timeouts_(registry_.counter("guardant_check_timeouts_total",
                                  "Checks abandoned by the engine at their deadline.", {"type"})),
      late_(registry_.counter("guardant_late_completions_total",
                              "Probe completions that arrived after their check had timed out.",
                              {"type"})),
      errors_(registry_.counter("guardant_check_errors_total",
                                "Checks refused before running, by check type and reason.",
                                {"type", "reason"})),
      in_flight_(
          registry_.gauge("guardant_checks_in_flight", "Checks currently running.").labels()),
      slots_(registry_.gauge("guardant_check_slots", "Concurrent check slots available in total.")
                 .labels()),
      plugins_loaded_(registry_.gauge("guardant_plugins_loaded", "Probe plugins loaded.").labels()),
      plugins_refused_(registry_
                           .counter("guardant_plugins_refused_total",
                                    "Probe plugins refused at load (ABI, manifest or symbol "
                                    "problems).")
                           .labels()) {
  registry_.counter_fn("process_cpu_seconds_total",
                       "Total user and system CPU time spent in seconds.",
                       [this] { return proc_.cpu_seconds; });
  registry_.gauge_fn("process_resident_memory_bytes", "Resident memory size in bytes.",
                     [this] { return proc_.resident_bytes; });
  registry_.gauge_fn("process_virtual_memory_bytes", "Virtual memory size in bytes.",
                     [this] { return proc_.virtual_bytes; });
  registry_.gauge_fn("process_start_time_seconds",
                     "Start time of the process since unix epoch in seconds.",
                     [this] { return proc_.start_time_seconds; });
  registry_.gauge_fn("process_open_fds", "Number of open file descriptors.",
                     [this] { return proc_.open_fds; });
  registry_.gauge_fn("process_max_fds", "Maximum number of open file descriptors.",
                     [this] { return proc_.max_fds; });
}

void WorkerMetrics::check_finished(const std::string& type, std::string_view status,
                                   double duration_seconds) {
  checks_.labels({type, status}).inc();
  duration_.labels({type}).observe(duration_seconds);
}

void WorkerMetrics::check_timed_out(const std::string& type) {
  timeouts_.labels({type}).inc();
}

void WorkerMetrics::late_completion(const std::string& type) {
  late_.labels({type}).inc();
}

void WorkerMetrics::check_refused(const std::string& type, std::string_view reason) {
  errors_.labels({type, reason}).inc();
}

void WorkerMetrics::set_in_flight(size_t n) {
  in_flight_.set(static_cast<double>(n));
}

void WorkerMetrics::set_slots(size_t total) {
  slots_.set(static_cast<double>(total));
}

void WorkerMetrics::plugin_refused() {
  plugins_refused_.inc();
}

void WorkerMetrics::set_plugins_loaded(size_t n) {
  plugins_loaded_.set(static_cast<double>(n));
}

std::string WorkerMetrics::render() const {
  std::lock_guard lock(render_mu_);
  proc_ = metrics::read_process_stats();
  return registry_.render();
}

}  // namespace guardant::engine
