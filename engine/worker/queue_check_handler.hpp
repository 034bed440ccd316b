// Runs a queue job as a check: reads the check from the job data, runs it in
// the check runner's slots under the host's deadline, and turns the report
// into the job's outcome (shared/spec/jobs-and-results.md, "What the worker
// does with a job"): a result, whatever the target's status, completes the
// job with the result record as returnvalue; malformed data or an invalid
// probe config fails it without retry; a worker-side error fails it so
// BullMQ's attempts/backoff apply; a check cut off by shutdown is handed back.
#pragma once

#include <set>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "metrics/registry.hpp"
#include "plugins/plugin_registry.hpp"
#include "queue/job_data.hpp"
#include "queue/queue_worker.hpp"
#include "ratelimit/nest_rate_limiter.hpp"
#include "scheduler/check_runner.hpp"

namespace guardant::engine {

class QueueCheckHandler final : public JobHandler {
 public:
  // `limiter` may be null (no per-nest limits).
  QueueCheckHandler(const Config& config, PluginRegistry& registry, CheckRunner& runner,
                    std::vector<std::string> capabilities, NestRateLimiter* limiter = nullptr);
  void run(const QueueJob& job, std::function<void(JobOutcome)> done) override;

  // Every result record, for the sinks beside the job's returnvalue (Redis
  // stream and status, spool, JSON Lines).
  std::function<void(const QueueJob&, const CheckSpec&, boost::json::object)> on_record;

 private:
  // Why this worker cannot run the job (empty: it can).
  std::string routing_mismatch(const CheckSpec& spec) const;
  void run_check(const QueueJob& job, const CheckSpec& spec, std::function<void(JobOutcome)> done);

  // Job hash field counting routing hand-backs.
  static constexpr const char* kHandbackField = "handbacks";
  const Config& config_;
  PluginRegistry& registry_;
  CheckRunner& runner_;
  std::vector<std::string> capabilities_;
  NestRateLimiter* limiter_;
  std::set<std::string> unknown_tiers_reported_;
};

// QueueWorker events as /metrics series.
class QueueMetricsObserver final : public QueueObserver {
 public:
  explicit QueueMetricsObserver(metrics::Registry& registry);
  void on_job_started(const QueueJob& job) override;
  void on_job_ended(const QueueJob& job, std::string_view how) override;
  void on_stalled_recovered(const std::string& queue, size_t count) override;
  void on_active_changed(size_t active) override;

 private:
  metrics::CounterFamily& started_;
  metrics::CounterFamily& ended_;
  metrics::CounterFamily& stalled_;
  metrics::Gauge& active_;
};

}  // namespace guardant::engine
