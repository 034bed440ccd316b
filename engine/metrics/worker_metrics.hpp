// The worker's own metrics, behind methods named after engine events so the
// engine never spells a metric name. Later components register theirs on
// registry() and are rendered with these.
#pragma once

#include <cstddef>
#include <mutex>
#include <string>
#include <string_view>

#include "metrics/process.hpp"
#include "metrics/registry.hpp"

namespace guardant::engine {

class WorkerMetrics {
 public:
  WorkerMetrics();
  WorkerMetrics(const WorkerMetrics&) = delete;
  WorkerMetrics& operator=(const WorkerMetrics&) = delete;

  // status: "up" | "down" | "degraded" | "inconclusive".
  void check_finished(const std::string& type, std::string_view status, double duration_seconds);
  void check_timed_out(const std::string& type);
  void late_completion(const std::string& type);
  void check_refused(const std::string& type, std::string_view reason);
  void set_in_flight(size_t n);
  void set_slots(size_t total);
  void plugin_refused();
  void set_plugins_loaded(size_t n);

  metrics::Registry& registry() { return registry_; }
  // Everything in exposition format 0.0.4, process metrics read just now.
  std::string render() const;

 private:
  metrics::Registry registry_;
  metrics::CounterFamily& checks_;
  metrics::HistogramFamily& duration_;
  metrics::CounterFamily& timeouts_;
  metrics::CounterFamily& late_;
  metrics::CounterFamily& errors_;
  metrics::Gauge& in_flight_;
  metrics::Gauge& slots_;
  metrics::Gauge& plugins_loaded_;
  metrics::Counter& plugins_refused_;

  // One /proc read per scrape feeds all process_* callbacks; the mutex keeps
  // two concurrent scrapes from tearing it.
  mutable std::mutex render_mu_;
  mutable metrics::ProcessStats proc_;
};

}  // namespace guardant::engine
