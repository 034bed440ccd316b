// Runs checks through the probe plugins with a fixed number of concurrency
// slots and a deadline per check that belongs to the host: when it passes,
// the host records `down`/`timeout`, asks the plugin to cancel, and drops
// whatever the plugin delivers later (counted as a late completion).
#pragma once

#include <deque>
#include <functional>
#include <map>
#include <optional>
#include <string>

#include "core/check_result.hpp"
#include "core/clock.hpp"
#include "core/result.hpp"
#include "plugins/plugin_registry.hpp"

namespace guardant::engine {

struct CheckJob {
  std::string check_id;
  std::string type;
  std::string target;
  std::string config_json = "{}";
  std::chrono::milliseconds timeout{30'000};
};

struct CheckReport {
  CheckJob job;
  CheckResult result;
  // Set when the check never ran: "invalid_config" (fail the job, no retry),
  // "unknown_type", "worker_error" (retryable), "shutting_down".
  std::optional<Error> refused;
  bool timed_out = false;
  // The worker stopped before the check finished (drain timeout): the result
  // says nothing about the target, so a queue job goes back to wait.
  bool abandoned = false;
  Nanos started{}, finished{};
  int64_t finished_wall_ms = 0;
  double duration_ms() const { return static_cast<double>((finished - started).count()) / 1e6; }
};

// Hooks for metrics and logs; all run on the loop thread.
struct CheckObserver {
  virtual ~CheckObserver() = default;
  virtual void on_slots_changed(size_t /*in_flight*/, size_t /*total*/) {}
  virtual void on_finished(const CheckReport& /*report*/) {}
};

class CheckRunner {
 public:
  using Callback = std::function<void(CheckReport)>;

  CheckRunner(PluginRegistry& registry, Clock& clock, size_t slots,
              CheckObserver* observer = nullptr);
  ~CheckRunner();
  CheckRunner(const CheckRunner&) = delete;
  CheckRunner& operator=(const CheckRunner&) = delete;

  // Starts the check now if a slot is free, otherwise queues it (FIFO). The
  // callback runs exactly once, on the loop. Returns false (and does not call
  // back) once draining has begun.
  bool submit(CheckJob job, Callback done);

  size_t in_flight() const { return running_.size(); }
  size_t queued() const { return waiting_.size(); }
  size_t slots() const { return slots_; }
  bool has_free_slot() const { return running_.size() < slots_; }
  bool draining() const { return draining_; }

  // Stops taking work. Queued checks are reported as refused
  // ("shutting_down"); in-flight ones may finish until `timeout`, after which
  // they are abandoned and reported inconclusive. `done` runs once nothing is
  // in flight.
  void drain(Nanos timeout, std::function<void()> done);

 private:
  struct Running {
    CheckJob job;
    Callback done;
    RunningCheck check;
    Clock::TimerId deadline_timer = 0;
    Nanos started{};
  };
  void start(CheckJob job, Callback done);
  void finish(uint64_t id, CheckResult result, bool timed_out);
  void on_deadline(uint64_t id);
  void report(CheckReport r, Callback& done);
  void pump();
  void maybe_drained();

  PluginRegistry& registry_;
  Clock& clock_;
  size_t slots_;
  CheckObserver* observer_;
  uint64_t next_id_ = 1;
  std::map<uint64_t, Running> running_;
  std::deque<std::pair<CheckJob, Callback>> waiting_;
  bool draining_ = false;
  std::function<void()> drained_;
  Clock::TimerId drain_timer_ = 0;
  bool pumping_ = false;
  bool abandoning_ = false;
};

}  // namespace guardant::engine
