#include "scheduler/standalone_scheduler.hpp"

#include "core/logging.hpp"

namespace guardant::engine {

StandaloneScheduler::StandaloneScheduler(Clock& clock, CheckRunner& runner,
                                         std::vector<MonitorSettings> monitors,
                                         std::chrono::milliseconds default_timeout,
                                         ResultHandler on_result, uint64_t seed)
    : clock_(clock),
      runner_(runner),
      default_timeout_(default_timeout),
      on_result_(std::move(on_result)),
      rng_(seed) {
  const size_t n = monitors.size();
  for (size_t i = 0; i < n; ++i) {
    Slot s;
    s.monitor = std::move(monitors[i]);
    // Monitor i of n starts i/n of the way into its own interval.
    auto interval = std::chrono::duration_cast<Nanos>(s.monitor.interval);
    s.offset = Nanos{interval.count() / static_cast<int64_t>(n) * static_cast<int64_t>(i)};
    slots_.push_back(std::move(s));
  }
}

StandaloneScheduler::~StandaloneScheduler() {
  stop();
}

Nanos StandaloneScheduler::max_jitter(std::chrono::milliseconds interval) {
  auto j = std::chrono::duration_cast<Nanos>(interval) / 50;
  return std::min<Nanos>(j, std::chrono::seconds(1));
}

Nanos StandaloneScheduler::jitter(std::chrono::milliseconds interval) {
  auto max = max_jitter(interval).count();
  if (max <= 0) return Nanos{0};
  return Nanos{std::uniform_int_distribution<int64_t>(0, max)(rng_)};
}

std::vector<Nanos> StandaloneScheduler::first_offsets() const {
  std::vector<Nanos> out;
  for (auto& s : slots_) out.push_back(s.offset);
  return out;
}

void StandaloneScheduler::start() {
  if (running_) return;
  running_ = true;
  auto now = clock_.now();
  for (size_t i = 0; i < slots_.size(); ++i) {
    slots_[i].base = now + slots_[i].offset;
    slots_[i].tick = 0;
    arm(i);
  }
  logger("scheduler")->info("standalone scheduler started with {} monitor(s)", slots_.size());
}

void StandaloneScheduler::stop() {
  running_ = false;
  for (auto& s : slots_)
    if (s.timer) {
      clock_.cancel(s.timer);
      s.timer = 0;
    }
}

void StandaloneScheduler::arm(size_t i) {
  auto& s = slots_[i];
  auto interval = std::chrono::duration_cast<Nanos>(s.monitor.interval);
  auto due = s.base + interval * static_cast<int64_t>(s.tick) + jitter(s.monitor.interval);
  s.timer = clock_.call_at(due, [this, i] { fire(i); });
}

void StandaloneScheduler::fire(size_t i) {
  auto& s = slots_[i];
  s.timer = 0;
  if (!running_) return;
  // Catch up without a burst: skip ticks that are already in the past.
  auto interval = std::chrono::duration_cast<Nanos>(s.monitor.interval);
  auto now = clock_.now();
  s.tick++;
  while (s.base + interval * static_cast<int64_t>(s.tick) < now) s.tick++;
  if (s.in_flight) {
    ++skipped_;
    logger("scheduler")
        ->warn("monitor {}: previous check still running, skipping this run", s.monitor.id);
  } else {
    CheckJob job;
    job.check_id = s.monitor.id + ":" + std::to_string(++s.seq);
    job.type = s.monitor.type;
    job.target = s.monitor.target;
    job.config_json = s.monitor.config_json;
    job.timeout =
        s.monitor.timeout_ms ? std::chrono::milliseconds(s.monitor.timeout_ms) : default_timeout_;
    s.in_flight = true;
    s.runs++;
    bool accepted = runner_.submit(std::move(job), [this, i](CheckReport r) {
      auto& slot = slots_[i];
      slot.in_flight = false;
      if (on_result_) on_result_(slot.monitor, r);
    });
    if (!accepted) s.in_flight = false;
  }
  arm(i);
}

}  // namespace guardant::engine
