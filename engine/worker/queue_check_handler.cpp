#include "worker/queue_check_handler.hpp"

#include <algorithm>

#include "core/logging.hpp"
#include "queue/job_data.hpp"
#include "results/check_record.hpp"
#include "results/json_text.hpp"

namespace guardant::engine {

QueueCheckHandler::QueueCheckHandler(const Config& config, PluginRegistry& registry,
                                     CheckRunner& runner, std::vector<std::string> capabilities)
    : config_(config),
      registry_(registry),
      runner_(runner),
      capabilities_(std::move(capabilities)) {}

void QueueCheckHandler::run(const QueueJob& job, std::function<void(JobOutcome)> done) {
  auto spec = parse_check_spec(job.data);
  if (!spec) return done(JobOutcome::failed(spec.error().message, true));
  if (std::find(capabilities_.begin(), capabilities_.end(), spec->type) == capabilities_.end())
    return done(JobOutcome::failed(
        "no probe for type '" + spec->type + "' on worker " + config_.worker.id +
            " (capabilities: " + fmt::format("{}", fmt::join(capabilities_, ", ")) + ")",
        true));
  CheckJob check;
  check.check_id = job.queue + ":" + job.id;
  check.type = spec->type;
  check.target = spec->target;
  check.config_json = spec->config_json;
  check.timeout =
      std::chrono::milliseconds(spec->timeout_ms.value_or(config_.worker.default_timeout_ms));

  auto accepted = runner_.submit(check, [this, spec = spec.value(), done](CheckReport r) {
    if (r.abandoned || (r.refused && r.refused->code == "shutting_down"))
      return done(JobOutcome::hand_back());
    if (r.refused) {
      bool permanent = r.refused->code == "invalid_config" || r.refused->code == "unknown_type";
      return done(JobOutcome::failed(r.refused->message, permanent));
    }
    // The worker could not judge (the probe threw, out of resources): not a
    // fact about the target, so the job fails and BullMQ's retries apply.
    if (r.result.status == CheckStatus::Inconclusive && r.result.failure &&
        r.result.failure->reason == GUARDANT_REASON_WORKER_ERROR)
      return done(JobOutcome::failed(r.result.message.empty() ? r.result.failure->detail
                                                              : r.result.message));
    RecordContext ctx;
    ctx.service_id = spec.service_id;
    ctx.nest_id = spec.nest_id;
    ctx.worker_id = config_.worker.id;
    ctx.region = config_.worker.region;
    ctx.probe_type = spec.type;
    if (auto p = registry_.plugin_for(spec.type)) {
      ctx.plugin_name = p->name;
      ctx.plugin_version = p->version;
    }
    ctx.checked_at_ms = r.finished_wall_ms;
    done(JobOutcome::completed(to_json_text(make_check_record(r.result, ctx))));
  });
  if (!accepted) done(JobOutcome::hand_back());
}

QueueMetricsObserver::QueueMetricsObserver(metrics::Registry& registry)
    : started_(registry.counter("guardant_queue_jobs_started_total",
                                "Jobs taken from the queues, by queue.", {"queue"})),
      ended_(registry.counter("guardant_queue_jobs_ended_total",
                              "Jobs let go, by queue and how: completed, failed, retried, "
                              "handed_back, lost (another worker owns it now).",
                              {"queue", "outcome"})),
      stalled_(registry.counter("guardant_queue_stalled_recovered_total",
                                "Jobs of dead workers returned to wait by this worker's "
                                "stalled-job checks.",
                                {"queue"})),
      active_(
          registry.gauge("guardant_queue_jobs_active", "Jobs this worker holds now.").labels()) {}

void QueueMetricsObserver::on_job_started(const QueueJob& job) {
  started_.labels({job.queue}).inc();
}
void QueueMetricsObserver::on_job_ended(const QueueJob& job, std::string_view how) {
  ended_.labels({job.queue, how}).inc();
}
void QueueMetricsObserver::on_stalled_recovered(const std::string& queue, size_t count) {
  stalled_.labels({queue}).inc(static_cast<double>(count));
}
void QueueMetricsObserver::on_active_changed(size_t active) {
  active_.set(static_cast<double>(active));
}

}  // namespace guardant::engine
