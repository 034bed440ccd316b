// Standalone mode's scheduler: runs each configured monitor every `interval`.
// Start times are spread evenly over each monitor's interval (so N monitors
// do not all fire at t=0), each run gets a small random jitter, and the next
// run is computed from the schedule rather than from the last finish, so
// timing does not drift. One timer per monitor, owned here only: a monitor
// never runs twice at once (a run still in flight skips the next tick).
#pragma once

#include <functional>
#include <random>
#include <vector>

#include "config/config.hpp"
#include "scheduler/check_runner.hpp"

namespace guardant::engine {

class StandaloneScheduler {
 public:
  using ResultHandler = std::function<void(const MonitorSettings&, const CheckReport&)>;

  StandaloneScheduler(Clock& clock, CheckRunner& runner, std::vector<MonitorSettings> monitors,
                      std::chrono::milliseconds default_timeout, ResultHandler on_result,
                      uint64_t seed = std::random_device{}());
  ~StandaloneScheduler();

  void start();
  void stop();

  // When each monitor first runs, relative to start() (for tests and logs).
  std::vector<Nanos> first_offsets() const;
  size_t skipped() const { return skipped_; }
  size_t runs(size_t monitor_index) const { return slots_.at(monitor_index).runs; }

  // The largest jitter added to a run: 2% of the interval, at most 1 s.
  static Nanos max_jitter(std::chrono::milliseconds interval);

 private:
  struct Slot {
    MonitorSettings monitor;
    Nanos base{};       // start of the schedule
    uint64_t tick = 0;  // index of the next run
    bool in_flight = false;
    size_t runs = 0;
    uint64_t seq = 0;
    Clock::TimerId timer = 0;
    Nanos offset{};
  };
  void arm(size_t i);
  void fire(size_t i);
  Nanos jitter(std::chrono::milliseconds interval);

  Clock& clock_;
  CheckRunner& runner_;
  std::chrono::milliseconds default_timeout_;
  ResultHandler on_result_;
  std::vector<Slot> slots_;
  std::mt19937_64 rng_;
  bool running_ = false;
  size_t skipped_ = 0;
};

}  // namespace guardant::engine
