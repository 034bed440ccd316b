// The BullMQ worker side: takes jobs from one or more queues into a fixed
// number of slots, keeps their locks, finishes them (completed, failed,
// retried with backoff, handed back) with our own Lua scripts, recovers
// stalled jobs of dead workers and creates the next iteration of job
// schedulers, so Node's Queue, QueueEvents and Node workers on the same queue
// see what they would see from a Node worker.
//
// Round trips: one EVALSHA per fetch and one per finish, and the finish
// fetches the next job in the same script while this worker has room, so a
// busy worker costs Redis one script call per job. Idle, each queue waits on
// its marker key with BZPOPMIN on a connection of its own, waking when a job
// is added or the next delayed job is due.
//
// Threading: everything runs on the loop thread of the io_context; the
// JobHandler is called there and must call `done` there, exactly once.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <random>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/clock.hpp"
#include "queue/queue_job.hpp"
#include "queue/queue_keys.hpp"
#include "queue/repeat_schedule.hpp"
#include "redis/lua_script.hpp"
#include "redis/redis_connection.hpp"

namespace guardant::engine {

struct JobOutcome {
  enum class Kind { Completed, Failed, HandBack, Postpone };
  Kind kind = Kind::Completed;
  std::string value;           // Completed: returnvalue JSON text; Failed: reason
  bool unrecoverable = false;  // Failed: no retry, whatever attempts remain
  int64_t delay_ms = 0;        // Postpone
  std::string counter_field;   // Postpone: job hash field counting these, "" none

  static JobOutcome completed(std::string json) {
    JobOutcome o;
    o.value = std::move(json);
    return o;
  }
  static JobOutcome failed(std::string reason, bool unrecoverable = false) {
    JobOutcome o;
    o.kind = Kind::Failed;
    o.value = std::move(reason);
    o.unrecoverable = unrecoverable;
    return o;
  }
  // Not this worker's to run now (stopping): back to wait, no attempt and
  // no stall counted.
  static JobOutcome hand_back() {
    JobOutcome o;
    o.kind = Kind::HandBack;
    return o;
  }
  // Not now: to delayed for `delay_ms`, not counted as an attempt (a nest
  // over its rate limit, or a job for another worker). `counter_field`
  // counts how often, in the job hash, so hand-backs can be bounded.
  static JobOutcome postpone(int64_t delay_ms, std::string counter_field = {}) {
    JobOutcome o;
    o.kind = Kind::Postpone;
    o.delay_ms = delay_ms;
    o.counter_field = std::move(counter_field);
    return o;
  }
};

class JobHandler {
 public:
  virtual ~JobHandler() = default;
  // Runs the job. `done` must be called exactly once, on the loop thread
  // (calling it from inside run() is allowed).
  virtual void run(const QueueJob& job, std::function<void(JobOutcome)> done) = 0;
};

// Engine events for metrics and logs; all called on the loop thread.
struct QueueObserver {
  virtual ~QueueObserver() = default;
  virtual void on_job_started(const QueueJob&) {}
  // "completed" | "failed" | "retried" | "handed_back" | "postponed" | "lost"
  virtual void on_job_ended(const QueueJob&, std::string_view /*how*/) {}
  virtual void on_stalled_recovered(const std::string& /*queue*/, size_t /*count*/) {}
  virtual void on_active_changed(size_t /*active*/) {}
};

struct QueueWorkerOptions {
  std::string worker_name;  // the jobs' "pb", and part of CLIENT SETNAME
  uint32_t concurrency = 10;
  std::chrono::milliseconds lock_duration{30'000};
  std::chrono::milliseconds stalled_interval{30'000};
  uint32_t max_stalled_count = 1;
  // Longest marker wait when nothing is delayed (BullMQ's drainDelay).
  std::chrono::milliseconds idle_wait{5'000};
  // How long stop() keeps trying to write outcomes while Redis is away.
  std::chrono::milliseconds stop_write_timeout{5'000};
  redis::ConnectionOptions connection;
};

class QueueWorker {
 public:
  QueueWorker(boost::asio::io_context& io, Clock& clock, const RedisSettings& redis,
              const std::string& prefix, const std::vector<std::string>& queue_names,
              QueueWorkerOptions options, JobHandler& handler, QueueObserver* observer = nullptr);
  ~QueueWorker();
  QueueWorker(const QueueWorker&) = delete;
  QueueWorker& operator=(const QueueWorker&) = delete;

  // Connects (retrying until Redis is there), then fetches and recovers.
  void start();
  // Stops fetching; jobs in flight still finish and their outcomes are
  // written. Jobs fetched but not yet started are handed back. `done` runs
  // once this worker holds no job (or the write timeout passed).
  void stop(std::function<void()> done);

  bool connected() const;
  std::string redis_error() const;
  size_t active_jobs() const { return leases_.size(); }
  uint32_t concurrency() const { return options_.concurrency; }
  const std::vector<std::string>& queue_names() const { return queue_names_; }

 private:
  struct Consumer;
  struct Lease {
    Consumer* consumer;
    QueueJob job;
    Nanos last_renewed{};
    bool lost = false;    // lock renewal found another holder or none
    bool ending = false;  // the outcome is being written
  };
  // One outcome write: kept as data so that a write that meets a dropped
  // connection can be re-sent, unchanged, once Redis is back.
  struct OutcomeWrite {
    uint64_t id = 0;
    std::string lease_key;
    const redis::LuaScript* script = nullptr;
    std::vector<std::string> args;
    const char* how = "";
    std::string next_token;
  };

  std::string next_token();
  size_t free_slots() const;
  void pump(Consumer& c);
  void pump_all();
  void fetch(Consumer& c);
  void wait_for_marker(Consumer& c);
  void on_fetched(Consumer& c, FetchOutcome outcome, bool from_fetch);
  void begin(Consumer& c, QueueJob job);
  void end(const std::string& lease_key, JobOutcome outcome);
  void write_outcome(const std::string& lease_key, JobOutcome outcome);
  void send_write(OutcomeWrite write);
  void after_write(const std::string& lease_key, Result<redis::Reply> reply, const char* how,
                   const std::string& next_token);
  void every(Clock::TimerId& id, Nanos period, void (QueueWorker::*fn)());
  void release(const std::string& lease_key);
  void schedule_next_iteration(Consumer& c, const QueueJob& job);
  void create_next_iteration(Consumer& c, const QueueJob& job, const RepeatOptions& options);
  void renew_locks();
  void check_stalled();
  void maybe_stopped();
  std::string lease_key(const Consumer& c, const std::string& job_id) const;

  boost::asio::io_context& io_;
  Clock& clock_;
  QueueWorkerOptions options_;
  JobHandler& handler_;
  QueueObserver* observer_;
  std::vector<std::string> queue_names_;
  std::string token_prefix_;
  uint64_t token_counter_ = 0;
  size_t pump_rotation_ = 0;
  std::mt19937_64 rng_;

  std::map<std::string, Lease> leases_;
  std::map<uint64_t, OutcomeWrite> pending_writes_;  // failed on disconnect, re-sent on ready
  uint64_t next_write_id_ = 1;
  size_t writes_in_flight_ = 0;
  bool started_ = false;
  bool stopping_ = false;
  std::function<void()> stopped_;
  Clock::TimerId renew_timer_ = 0, stalled_timer_ = 0, stop_timer_ = 0;

  // Declared last: destroyed first, so their "stopped" callbacks still find
  // the members above alive.
  std::unique_ptr<redis::RedisConnection> commands_;
  std::vector<std::unique_ptr<Consumer>> consumers_;
};

}  // namespace guardant::engine
