#include "scheduler/check_runner.hpp"

#include <guardant/probe.h>

#include "core/logging.hpp"

namespace guardant::engine {

CheckRunner::CheckRunner(PluginRegistry& registry, Clock& clock, size_t slots,
                         CheckObserver* observer)
    : registry_(registry), clock_(clock), slots_(slots == 0 ? 1 : slots), observer_(observer) {}

CheckRunner::~CheckRunner() {
  for (auto& [id, r] : running_) {
    clock_.cancel(r.deadline_timer);
    registry_.abandon(r.check);
  }
  if (drain_timer_) clock_.cancel(drain_timer_);
}

bool CheckRunner::submit(CheckJob job, Callback done) {
  if (draining_) return false;
  if (has_free_slot() && waiting_.empty())
    start(std::move(job), std::move(done));
  else
    waiting_.emplace_back(std::move(job), std::move(done));
  return true;
}

void CheckRunner::start(CheckJob job, Callback done) {
  const auto id = next_id_++;
  const auto now = clock_.now();
  CheckRequest req;
  req.check_id = job.check_id;
  req.type = job.type;
  req.target = job.target;
  req.config_json = job.config_json;
  req.timeout_ms = job.timeout.count();
  req.deadline = now + std::chrono::duration_cast<Nanos>(job.timeout);

  auto started = registry_.start_check(
      req, [this, id](CheckResult result) { finish(id, std::move(result), false); });
  if (!started) {
    CheckReport r;
    r.job = std::move(job);
    r.refused = started.error();
    r.result = CheckResult::failed(
        CheckStatus::Inconclusive,
        started.error().code == "invalid_config" ? "invalid_config" : GUARDANT_REASON_WORKER_ERROR,
        "", started.error().message);
    r.started = r.finished = now;
    r.finished_wall_ms = clock_.wall_ms();
    report(std::move(r), done);
    return;
  }
  Running run{std::move(job), std::move(done), started.value(), 0, now};
  run.deadline_timer = clock_.call_at(req.deadline, [this, id] { on_deadline(id); });
  running_.emplace(id, std::move(run));
  if (observer_) observer_->on_slots_changed(running_.size(), slots_);
}

void CheckRunner::on_deadline(uint64_t id) {
  auto it = running_.find(id);
  if (it == running_.end()) return;
  it->second.deadline_timer = 0;
  auto ms = it->second.job.timeout.count();
  registry_.abandon(it->second.check);
  auto result = CheckResult::failed(CheckStatus::Down, GUARDANT_REASON_TIMEOUT, "",
                                    "no result within " + std::to_string(ms) + " ms",
                                    static_cast<double>(ms));
  finish(id, std::move(result), true);
}

void CheckRunner::finish(uint64_t id, CheckResult result, bool timed_out) {
  auto it = running_.find(id);
  if (it == running_.end()) return;  // already reported (deadline won)
  Running run = std::move(it->second);
  running_.erase(it);
  if (run.deadline_timer) clock_.cancel(run.deadline_timer);
  CheckReport r;
  r.job = std::move(run.job);
  r.result = std::move(result);
  r.timed_out = timed_out;
  r.started = run.started;
  r.finished = clock_.now();
  r.finished_wall_ms = clock_.wall_ms();
  report(std::move(r), run.done);
  if (observer_) observer_->on_slots_changed(running_.size(), slots_);
  pump();
  maybe_drained();
}

void CheckRunner::report(CheckReport r, Callback& done) {
  r.abandoned = abandoning_;
  if (observer_) observer_->on_finished(r);
  if (done) done(std::move(r));
}

void CheckRunner::pump() {
  // A check that is refused at start finishes synchronously; the guard keeps
  // that from recursing through pump() once per queued job.
  if (pumping_) return;
  pumping_ = true;
  while (!draining_ && has_free_slot() && !waiting_.empty()) {
    auto [job, done] = std::move(waiting_.front());
    waiting_.pop_front();
    start(std::move(job), std::move(done));
  }
  pumping_ = false;
}

void CheckRunner::drain(Nanos timeout, std::function<void()> done) {
  draining_ = true;
  drained_ = std::move(done);
  while (!waiting_.empty()) {
    auto [job, cb] = std::move(waiting_.front());
    waiting_.pop_front();
    CheckReport r;
    r.job = std::move(job);
    r.refused = Error{"shutting_down", "the worker is shutting down"};
    r.result = CheckResult::failed(CheckStatus::Inconclusive, GUARDANT_REASON_WORKER_ERROR, "",
                                   "the worker is shutting down");
    r.started = r.finished = clock_.now();
    r.finished_wall_ms = clock_.wall_ms();
    report(std::move(r), cb);
  }
  if (running_.empty()) return maybe_drained();
  drain_timer_ = clock_.call_after(timeout, [this] {
    drain_timer_ = 0;
    logger("scheduler")
        ->warn("drain timeout: abandoning {} check(s) still in flight", running_.size());
    abandoning_ = true;
    while (!running_.empty()) {
      auto id = running_.begin()->first;
      registry_.abandon(running_.begin()->second.check);
      finish(id,
             CheckResult::failed(CheckStatus::Inconclusive, GUARDANT_REASON_WORKER_ERROR, "",
                                 "abandoned: the worker stopped before the check finished"),
             false);
    }
    abandoning_ = false;
  });
}

void CheckRunner::maybe_drained() {
  if (!draining_ || !running_.empty() || !drained_) return;
  if (drain_timer_) {
    clock_.cancel(drain_timer_);
    drain_timer_ = 0;
  }
  auto cb = std::move(drained_);
  drained_ = nullptr;
  cb();
}

}  // namespace guardant::engine
