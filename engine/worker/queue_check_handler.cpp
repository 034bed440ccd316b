#include "worker/queue_check_handler.hpp"

#include <algorithm>
#include <cstdlib>

#include "core/logging.hpp"
#include "queue/job_data.hpp"
#include "results/check_record.hpp"
#include "results/json_text.hpp"

namespace guardant::engine {

QueueCheckHandler::QueueCheckHandler(const Config& config, PluginRegistry& registry,
                                     CheckRunner& runner, std::vector<std::string> capabilities,
                                     NestRateLimiter* limiter)
    : config_(config),
      registry_(registry),
      runner_(runner),
      capabilities_(std::move(capabilities)),
      limiter_(limiter) {}

std::string QueueCheckHandler::routing_mismatch(const CheckSpec& spec) const {
  auto has = [&](const std::string& c) {
    return std::find(capabilities_.begin(), capabilities_.end(), c) != capabilities_.end();
  };
  std::vector<std::string> why;
  if (!has(spec.type)) why.push_back("it needs probe type '" + spec.type + "'");
  std::vector<std::string> missing;
  for (auto& c : spec.required_capabilities)
    if (!has(c)) missing.push_back(c);
  if (!missing.empty())
    why.push_back(fmt::format("it requires capabilities [{}]", fmt::join(missing, ", ")));
  if (!spec.region.empty() && spec.region != config_.worker.region)
    why.push_back("it is routed to region '" + spec.region + "'");
  if (why.empty()) return {};
  return fmt::format("{}; worker {} is in region '{}' with capabilities [{}]",
                     fmt::join(why, " and "), config_.worker.id, config_.worker.region,
                     fmt::join(capabilities_, ", "));
}

void QueueCheckHandler::run(const QueueJob& job, std::function<void(JobOutcome)> done) {
  auto spec = parse_check_spec(job.data);
  if (!spec) return done(JobOutcome::failed(spec.error().message, true));
  if (auto missing = routing_mismatch(spec.value()); !missing.empty()) {
    // Another worker may be able to run it: hand it back for a while, a
    // bounded number of times, then fail it saying what was missing.
    int64_t handbacks = 0;
    if (auto* n = job.field(kHandbackField)) handbacks = std::atoll(n->c_str());
    if (handbacks >= static_cast<int64_t>(config_.queue.max_handbacks))
      return done(JobOutcome::failed("no worker took this job after " + std::to_string(handbacks) +
                                         " hand-back(s): " + missing,
                                     true));
    logger("queue")->debug("job {} of queue '{}' handed back: {}", job.id, job.queue, missing);
    return done(JobOutcome::postpone(config_.queue.handback_delay_ms, kHandbackField));
  }
  if (!limiter_ || spec->nest_id.empty()) return run_check(job, spec.value(), std::move(done));
  // The nest's limit is shared by the fleet: over it, the job waits in
  // delayed until the nest may run again (not an attempt, not a failure).
  limiter_->acquire(
      spec->nest_id, spec->tier,
      [this, job, spec = spec.value(), done = std::move(done)](Result<RateDecision> d) mutable {
        if (!d) {
          // Without an answer the check runs: a missed limit costs less than
          // a missed check.
          logger("ratelimit")
              ->warn("rate limit of nest '{}' unknown ({}); running job {} anyway", spec.nest_id,
                     d.error().message, job.id);
          return run_check(job, spec, std::move(done));
        }
        if (d->unknown_tier && unknown_tiers_reported_.insert(spec.tier).second)
          logger("ratelimit")
              ->warn(
                  "job {} names tier '{}', which limits.tiers does not define; the default tier "
                  "'{}' applies (reported once per tier)",
                  job.id, spec.tier, d->tier);
        if (d->allowed) return run_check(job, spec, std::move(done));
        limiter_->count_delayed(d->tier);
        logger("ratelimit")
            ->debug("nest '{}' over its {} limit: job {} delayed {} ms", spec.nest_id, d->tier,
                    job.id, d->retry_after_ms);
        done(JobOutcome::postpone(d->retry_after_ms));
      });
}

void QueueCheckHandler::run_check(const QueueJob& job, const CheckSpec& spec_value,
                                  std::function<void(JobOutcome)> done) {
  const CheckSpec* spec = &spec_value;
  CheckJob check;
  check.check_id = job.queue + ":" + job.id;
  check.type = spec->type;
  check.target = spec->target;
  check.config_json = spec->config_json;
  check.timeout =
      std::chrono::milliseconds(spec->timeout_ms.value_or(config_.worker.default_timeout_ms));

  auto accepted = runner_.submit(check, [this, job, spec = *spec, done](CheckReport r) {
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
    auto record = make_check_record(r.result, ctx);
    auto text = to_json_text(record);
    if (on_record) on_record(job, spec, std::move(record));
    done(JobOutcome::completed(std::move(text)));
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
