#include "queue/queue_worker.hpp"

#include <algorithm>
#include <boost/asio/post.hpp>
#include <boost/json/object.hpp>
#include <boost/json/serialize.hpp>
#include <random>
#include <set>

#include "core/logging.hpp"
#include "queue/queue_scripts.hpp"
#include "queue/repeat_schedule.hpp"
#include "redis/lua_script.hpp"

namespace guardant::engine {
namespace json = boost::json;
using redis::Reply;
using std::chrono::duration_cast;
using std::chrono::milliseconds;

namespace {

bool is_connection_error(const Error& e) {
  return e.code == redis::kErrorNotConnected || e.code == redis::kErrorDisconnected;
}

std::string str(int64_t v) {
  return std::to_string(v);
}

}  // namespace

// One queue: its keys and the connection that waits on its marker.
struct QueueWorker::Consumer {
  QueueKeys keys;
  std::unique_ptr<redis::RedisConnection> blocking;
  bool idle = false;          // the last fetch found nothing: wait on the marker
  bool waiting = false;       // a BZPOPMIN is in flight
  bool rate_limited = false;  // a rate-limit pause timer is running
  size_t fetches_in_flight = 0;
  size_t fetch_window = 1;  // parallel fetches allowed; doubles while jobs keep coming
  int64_t next_due_ms = 0;  // earliest delayed job, 0 = none known
  Clock::TimerId rate_timer = 0;

  Consumer(std::string prefix, std::string name) : keys(std::move(prefix), std::move(name)) {}
};

QueueWorker::QueueWorker(boost::asio::io_context& io, Clock& clock, const RedisSettings& redis,
                         const std::string& prefix, const std::vector<std::string>& queue_names,
                         QueueWorkerOptions options, JobHandler& handler, QueueObserver* observer)
    : io_(io),
      clock_(clock),
      options_(std::move(options)),
      handler_(handler),
      observer_(observer),
      queue_names_(queue_names),
      rng_(std::random_device{}()) {
  // Lock tokens are "<random worker nonce>:<counter>", unique per fetch.
  char nonce[17];
  std::snprintf(nonce, sizeof nonce, "%016llx", static_cast<unsigned long long>(rng_()));
  token_prefix_ = std::string(nonce) + ":";

  commands_ = std::make_unique<redis::RedisConnection>(
      io_, clock_, redis, "guardant:w:" + options_.worker_name, "redis", options_.connection);
  for (const auto& name : queue_names_) {
    auto c = std::make_unique<Consumer>(prefix, name);
    // Node's Queue.getWorkers() lists connections by this name.
    c->blocking = std::make_unique<redis::RedisConnection>(
        io_, clock_, redis, c->keys.worker_client_name(options_.worker_name), "redis",
        options_.connection);
    Consumer* cp = c.get();
    c->blocking->on_ready([this, cp] {
      if (cp->idle && !cp->waiting) wait_for_marker(*cp);
    });
    consumers_.push_back(std::move(c));
  }
  commands_->on_ready([this] {
    // Outcomes that could not be written while Redis was away go first, in
    // the order they were made.
    auto pending = std::move(pending_writes_);
    pending_writes_.clear();
    for (auto& [id, w] : pending) send_write(std::move(w));
    if (!started_) return;
    // Fetch again; recover jobs of workers that died meanwhile (the script
    // itself keeps this to once per interval fleet-wide).
    check_stalled();
    for (auto& c : consumers_) c->idle = false;
    pump_all();
  });
  commands_->on_down([](const std::string& why) {
    logger("queue")->warn("lost the Redis connection ({}); jobs in flight keep running", why);
  });
}

QueueWorker::~QueueWorker() {
  for (auto id : {renew_timer_, stalled_timer_, stop_timer_})
    if (id) clock_.cancel(id);
  for (auto& c : consumers_)
    if (c->rate_timer) clock_.cancel(c->rate_timer);
  // Connections stop before the members their callbacks use go away.
  for (auto& c : consumers_) c->blocking.reset();
  commands_.reset();
}

void QueueWorker::start() {
  started_ = true;
  // The first time-zone lookup reads the tz database from disk: do it now,
  // not on the loop when the first cron scheduler job arrives.
  if (auto st = check_time_zone("Europe/Berlin"); !st)
    logger("queue")->warn("time zones are unavailable ({}); cron schedulers with tz will fail",
                          st.error().message);
  commands_->start();
  for (auto& c : consumers_) c->blocking->start();
  // Locks are renewed every quarter of their duration, so a renewal that
  // fails once still leaves time for the next before the lock expires.
  auto period = std::max<milliseconds>(options_.lock_duration / 4, milliseconds(10));
  every(renew_timer_, period, &QueueWorker::renew_locks);
  // A fleet of only our workers must recover crashed jobs itself; the script
  // throttles the check fleet-wide, so running it beside Node is harmless.
  // The first check runs once connected (on_ready).
  every(stalled_timer_, options_.stalled_interval, &QueueWorker::check_stalled);
  logger("queue")->info(
      "consuming queue(s) [{}] with {} slot(s), lock {} ms, stalled check every {} ms",
      fmt::join(queue_names_, ", "), options_.concurrency, options_.lock_duration.count(),
      options_.stalled_interval.count());
}

bool QueueWorker::connected() const {
  return commands_->ready();
}
std::string QueueWorker::redis_error() const {
  return commands_->last_error();
}

std::string QueueWorker::next_token() {
  return token_prefix_ + std::to_string(token_counter_++);
}

std::string QueueWorker::lease_key(const Consumer& c, const std::string& job_id) const {
  return c.keys.queue_name() + '\n' + job_id;
}

size_t QueueWorker::free_slots() const {
  size_t used = leases_.size();
  for (auto& c : consumers_) used += c->fetches_in_flight;
  return used >= options_.concurrency ? 0 : options_.concurrency - used;
}

void QueueWorker::pump_all() {
  // Start with a different queue each time so one busy queue cannot take
  // every slot that frees up.
  for (size_t i = 0; i < consumers_.size(); ++i)
    pump(*consumers_[(pump_rotation_ + i) % consumers_.size()]);
  ++pump_rotation_;
}

void QueueWorker::pump(Consumer& c) {
  if (!started_ || stopping_ || !commands_->ready()) return;
  if (c.idle) {
    if (!c.waiting && c.fetches_in_flight == 0) wait_for_marker(c);
    return;
  }
  while (!c.rate_limited && free_slots() > 0 && c.fetches_in_flight < c.fetch_window) fetch(c);
}

void QueueWorker::fetch(Consumer& c) {
  ++c.fetches_in_flight;
  auto token = next_token();
  redis::eval(*commands_, queue_scripts().fetch_job, c.keys.script_keys(),
              {c.keys.key_prefix(), str(clock_.wall_ms()), token,
               str(options_.lock_duration.count()), options_.worker_name},
              [this, &c, token](Result<Reply> r) {
                --c.fetches_in_flight;
                if (!r) {
                  if (r.error().code == redis::kErrorStopped) return;
                  if (!is_connection_error(r.error()))
                    logger("queue")->error("fetch from queue '{}' failed: {}", c.keys.queue_name(),
                                           r.error().message);
                  // Reconnect (on_ready) pumps again.
                  return;
                }
                auto outcome = parse_fetch_reply(r.value(), c.keys.queue_name(), token);
                if (!outcome) {
                  logger("queue")->error("{}", outcome.error().message);
                  return;
                }
                on_fetched(c, std::move(outcome.value()), true);
              });
}

void QueueWorker::on_fetched(Consumer& c, FetchOutcome outcome, bool from_fetch) {
  if (outcome.job) {
    c.fetch_window = std::min<size_t>({c.fetch_window * 2, 64, options_.concurrency});
    begin(c, std::move(*outcome.job));
  } else if (outcome.rate_limit_ttl_ms > 0) {
    // Global rate limit: no marker wakes us, so sleep until the window ends.
    c.fetch_window = 1;
    if (!c.rate_limited) {
      c.rate_limited = true;
      auto pause = milliseconds(std::min<int64_t>(outcome.rate_limit_ttl_ms, 30'000));
      c.rate_timer = clock_.call_after(pause, [this, &c] {
        c.rate_timer = 0;
        c.rate_limited = false;
        pump(c);
      });
    }
  } else {
    c.fetch_window = 1;
    c.idle = true;
    c.next_due_ms = outcome.next_delayed_due_ms;
  }
  if (!from_fetch) return;
  pump(c);
}

void QueueWorker::wait_for_marker(Consumer& c) {
  if (c.waiting || stopping_ || !c.blocking->ready()) return;
  // Block until a job is added or the next delayed job is due; never longer
  // than 10 s, as Node does, so a missed marker costs at most that.
  double timeout_s = static_cast<double>(options_.idle_wait.count()) / 1000.0;
  if (c.next_due_ms > 0) {
    double until_due = static_cast<double>(c.next_due_ms - clock_.wall_ms()) / 1000.0;
    timeout_s = std::clamp(until_due, 0.001, 10.0);
  }
  timeout_s = std::min(timeout_s, 10.0);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3f", timeout_s);
  c.waiting = true;
  c.blocking->command({"BZPOPMIN", c.keys.marker(), buf}, [this, &c](Result<Reply> r) {
    c.waiting = false;
    if (stopping_) return maybe_stopped();
    if (!r) {
      if (r.error().code != redis::kErrorStopped && !is_connection_error(r.error()))
        logger("queue")->error("waiting on queue '{}' failed: {}", c.keys.queue_name(),
                               r.error().message);
      // The blocking connection's on_ready waits again.
      return;
    }
    const Reply& reply = r.value();
    if (reply.is_array() && reply.elements.size() == 3) {
      auto due = static_cast<int64_t>(std::strtod(reply.elements[2].str.c_str(), nullptr));
      if (due > clock_.wall_ms() + 1) {
        // A delay marker for the future: wait until it is due.
        c.next_due_ms = due;
        return wait_for_marker(c);
      }
    }
    // A job was added, a delayed one is due, or the wait timed out (which is
    // when delayed jobs get promoted): fetch.
    c.idle = false;
    pump(c);
  });
}

void QueueWorker::begin(Consumer& c, QueueJob job) {
  auto key = lease_key(c, job.id);
  auto [it, inserted] = leases_.try_emplace(key, Lease{&c, std::move(job), clock_.now()});
  if (!inserted) {
    // The same job twice means our earlier lease was lost and the job came
    // back; the old attempt's outcome will be refused by the lock check.
    logger("queue")->warn("job {} of queue '{}' fetched again while still running here",
                          it->second.job.id, c.keys.queue_name());
    it->second = Lease{&c, std::move(job), clock_.now()};
  }
  auto& lease = it->second;
  if (observer_) {
    observer_->on_job_started(lease.job);
    observer_->on_active_changed(leases_.size());
  }
  if (stopping_) return end(key, JobOutcome::hand_back());
  if (!lease.job.scheduler_id.empty()) schedule_next_iteration(c, lease.job);
  if (!lease.job.deferred_failure.empty())
    return end(key, JobOutcome::failed(lease.job.deferred_failure, true));
  auto token = lease.job.token;
  handler_.run(lease.job, [this, key, token](JobOutcome outcome) {
    auto held = leases_.find(key);
    // A newer fetch of the same job replaced this lease: not ours to end.
    if (held == leases_.end() || held->second.job.token != token || held->second.ending) return;
    end(key, std::move(outcome));
  });
}

void QueueWorker::end(const std::string& key, JobOutcome outcome) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return;
  it->second.ending = true;
  write_outcome(key, std::move(outcome));
}

void QueueWorker::write_outcome(const std::string& key, JobOutcome outcome) {
  auto& lease = leases_.at(key);
  auto& c = *lease.consumer;
  const auto& job = lease.job;
  const auto& scripts = queue_scripts();
  const auto now = str(clock_.wall_ms());
  // Fold the next fetch into this round trip while there is work to take
  // and no other queue is waiting for a slot.
  bool others_want_slots = std::any_of(consumers_.begin(), consumers_.end(),
                                       [&](auto& o) { return o.get() != &c && !o->idle; });
  bool fetch_next = !stopping_ && !c.idle && !c.rate_limited && !others_want_slots;
  auto next_token_str = fetch_next ? next_token() : std::string();

  const redis::LuaScript* script = nullptr;
  std::vector<std::string> args;
  const char* how = "completed";
  switch (outcome.kind) {
    case JobOutcome::Kind::Completed:
    case JobOutcome::Kind::Failed: {
      bool completed = outcome.kind == JobOutcome::Kind::Completed;
      const int64_t attempts = job.attempts();
      bool retry = !completed && !outcome.unrecoverable && job.attempts_made + 1 < attempts;
      if (retry) {
        how = "retried";
        auto delay = job.backoff().delay_for(job.attempts_made + 1, rng_);
        script = &scripts.retry_job;
        args = {c.keys.key_prefix(),
                job.id,
                job.token,
                now,
                str(delay),
                outcome.value,
                job.stacktrace_with(outcome.value),
                job.lifo() ? "1" : "0",
                fetch_next ? "1" : "0",
                str(options_.lock_duration.count()),
                options_.worker_name,
                next_token_str};
        break;
      }
      how = completed ? "completed" : "failed";
      auto keep = completed ? job.keep_on_complete() : job.keep_on_fail();
      script = &scripts.finish_job;
      args = {c.keys.key_prefix(),
              job.id,
              job.token,
              now,
              completed ? "completed" : "failed",
              outcome.value,
              completed ? std::string() : job.stacktrace_with(outcome.value),
              str(keep.count),
              keep.age_s ? str(*keep.age_s) : std::string(),
              str(keep.limit),
              str(attempts),
              fetch_next ? "1" : "0",
              str(options_.lock_duration.count()),
              options_.worker_name,
              next_token_str};
      break;
    }
    case JobOutcome::Kind::Postpone:
      how = "postponed";
      script = &scripts.postpone_job;
      args = {c.keys.key_prefix(),
              job.id,
              job.token,
              now,
              str(outcome.delay_ms),
              outcome.counter_field,
              fetch_next ? "1" : "0",
              str(options_.lock_duration.count()),
              options_.worker_name,
              next_token_str};
      break;
    case JobOutcome::Kind::HandBack:
      how = "handed_back";
      script = &scripts.return_job_to_wait;
      args = {c.keys.key_prefix(), job.id, job.token};
      fetch_next = false;
      break;
  }
  send_write({next_write_id_++, key, script, std::move(args), how, next_token_str});
}

void QueueWorker::send_write(OutcomeWrite write) {
  ++writes_in_flight_;
  const auto& keys = leases_.at(write.lease_key).consumer->keys.script_keys();
  auto script = write.script;
  auto args = write.args;
  redis::eval(*commands_, *script, keys, std::move(args),
              [this, write = std::move(write)](Result<Reply> r) mutable {
                --writes_in_flight_;
                // The scripts refuse a second finish of the same attempt (the
                // lock is gone), so re-sending after a drop never doubles it.
                if (!r && is_connection_error(r.error())) {
                  auto id = write.id;
                  pending_writes_.emplace(id, std::move(write));
                  return maybe_stopped();
                }
                after_write(write.lease_key, std::move(r), write.how, write.next_token);
              });
}

}  // namespace guardant::engine

namespace guardant::engine {

void QueueWorker::every(Clock::TimerId& id, Nanos period, void (QueueWorker::*fn)()) {
  id = clock_.call_after(period, [this, &id, period, fn] {
    id = 0;
    if (stopping_ && (fn != &QueueWorker::renew_locks || leases_.empty())) return;
    (this->*fn)();
    every(id, period, fn);
  });
}

void QueueWorker::after_write(const std::string& key, Result<Reply> r, const char* how,
                              const std::string& next_token) {
  auto it = leases_.find(key);
  if (it == leases_.end()) return;
  auto& c = *it->second.consumer;
  auto job_id = it->second.job.id;
  if (!r) {
    // A script error: the job stays active under our (expiring) lock and
    // stalled recovery returns it; nothing is acknowledged and dropped.
    logger("queue")->error("job {} of queue '{}': writing the outcome failed: {}", job_id,
                           c.keys.queue_name(), r.error().message);
    if (observer_) observer_->on_job_ended(it->second.job, "lost");
    return release(key);
  }
  const Reply& reply = r.value();
  if (auto code = reply.as_int(); code && *code < 0) {
    // -1 no such job, -2 our lock expired, -3 not active, -6 another worker
    // holds it: another worker owns the job now; never finish it twice.
    const char* why = *code == -1   ? "the job no longer exists"
                      : *code == -2 ? "its lock expired"
                      : *code == -6 ? "another worker holds its lock"
                                    : "it is no longer active";
    logger("queue")->warn("job {} of queue '{}' was not {}: {} (code {})", job_id,
                          c.keys.queue_name(), how, why, *code);
    if (observer_) observer_->on_job_ended(it->second.job, "lost");
    return release(key);
  }
  if (reply.is_integer() && reply.integer == 0 && std::string_view(how) == "handed_back") {
    logger("queue")->warn("job {} of queue '{}' could not be handed back (lock lost)", job_id,
                          c.keys.queue_name());
  }
  logger("queue")->debug("job {} of queue '{}' {}", job_id, c.keys.queue_name(), how);
  if (observer_) observer_->on_job_ended(it->second.job, how);
  release(key);
  if (reply.is_array() && !next_token.empty()) {
    auto outcome = parse_fetch_reply(reply, c.keys.queue_name(), next_token);
    if (!outcome)
      logger("queue")->error("{}", outcome.error().message);
    else
      on_fetched(c, std::move(outcome.value()), false);
  }
  pump_all();
}

void QueueWorker::release(const std::string& key) {
  leases_.erase(key);
  if (observer_) observer_->on_active_changed(leases_.size());
  maybe_stopped();
}

void QueueWorker::schedule_next_iteration(Consumer& c, const QueueJob& job) {
  auto log = logger("queue");
  auto* repeat = job.opts.if_contains("repeat");
  if (!repeat || !repeat->is_object()) {
    log->warn("job {} of queue '{}' belongs to scheduler '{}' but has no repeat options", job.id,
              c.keys.queue_name(), job.scheduler_id);
    return;
  }
  auto options = parse_repeat_options(json::serialize(*repeat));
  if (!options) {
    log->error("job scheduler '{}' of queue '{}': {}", job.scheduler_id, c.keys.queue_name(),
               options.error().message);
    return;
  }
  if (!options->every_ms) return create_next_iteration(c, job, options.value());
  // For `every`, the scheduler's hash holds the interval and the slot
  // alignment (offset) the job's options lack; BullMQ reads them there.
  commands_->command({"HMGET", c.keys.key("repeat:" + job.scheduler_id), "every", "offset"},
                     [this, &c, job, opts = options.value()](Result<Reply> r) mutable {
                       if (r && r->is_array() && r->elements.size() == 2) {
                         if (auto every = r->elements[0].as_int(); every && *every > 0)
                           opts.every_ms = *every;
                         if (auto offset = r->elements[1].as_int()) opts.offset_ms = *offset;
                       }
                       create_next_iteration(c, job, opts);
                     });
}

void QueueWorker::create_next_iteration(Consumer& c, const QueueJob& job,
                                        const RepeatOptions& options) {
  auto log = logger("queue");
  // The current iteration's time is the last part of its id
  // ("repeat:<scheduler>:<millis>"), the same as opts.prevMillis.
  int64_t current = 0;
  if (auto pos = job.id.rfind(':'); pos != std::string::npos) {
    try {
      current = std::stoll(job.id.substr(pos + 1));
    } catch (...) {
    }
  }
  if (auto* prev = job.opts.if_contains("prevMillis"); prev && prev->is_number())
    current = prev->to_number<int64_t>();
  const int64_t now = clock_.wall_ms();
  auto next = next_iteration_millis(options, current, now);
  if (!next) {
    log->error("job scheduler '{}' of queue '{}': {}", job.scheduler_id, c.keys.queue_name(),
               next.error().message);
    return;
  }
  if (!next.value()) {
    log->info("job scheduler '{}' of queue '{}' has ended", job.scheduler_id, c.keys.queue_name());
    return;
  }
  const int64_t next_ms = *next.value();
  const int64_t delay = std::max<int64_t>(0, next_ms - now);
  const std::string next_id = "repeat:" + job.scheduler_id + ":" + std::to_string(next_ms);
  // The next iteration carries the same options with the counters moved on,
  // as BullMQ's own upsertJobScheduler writes them.
  json::object opts = job.opts;
  auto& rep = opts["repeat"].as_object();
  int64_t count = 0;
  if (auto* n = rep.if_contains("count"); n && n->is_number()) count = n->to_number<int64_t>();
  rep["count"] = count + 1;
  opts["prevMillis"] = next_ms;
  opts["jobId"] = next_id;
  opts["delay"] = delay;
  opts["timestamp"] = now;
  opts["repeatJobKey"] = job.scheduler_id;
  redis::eval(*commands_, queue_scripts().schedule_next_iteration, c.keys.script_keys(),
              {c.keys.key_prefix(), job.scheduler_id, job.id, std::to_string(next_ms),
               std::to_string(now), job.name, job.data, json::serialize(opts),
               std::to_string(delay), std::to_string(job.priority)},
              [log, id = job.id, queue = c.keys.queue_name()](Result<Reply> r) {
                if (!r)
                  log->error("job {} of queue '{}': creating the next iteration failed: {}", id,
                             queue, r.error().message);
              });
}

void QueueWorker::renew_locks() {
  if (!commands_->ready() || leases_.empty()) return;
  const auto now = clock_.now();
  const auto threshold = options_.lock_duration / 4;
  std::map<Consumer*, std::vector<std::string>> batches;  // jobId, token pairs
  for (auto& [key, lease] : leases_) {
    if (lease.lost || now - lease.last_renewed < threshold) continue;
    auto& args = batches[lease.consumer];
    if (args.empty()) {
      args.push_back(lease.consumer->keys.key_prefix());
      args.push_back(str(options_.lock_duration.count()));
    }
    args.push_back(lease.job.id);
    args.push_back(lease.job.token);
  }
  for (auto& [c, args] : batches) {
    redis::eval(*commands_, queue_scripts().extend_locks, c->keys.script_keys(), args,
                [this, c, args, now](Result<Reply> r) {
                  if (!r) {
                    if (!is_connection_error(r.error()) && r.error().code != redis::kErrorStopped)
                      logger("queue")->error("renewing locks on queue '{}' failed: {}",
                                             c->keys.queue_name(), r.error().message);
                    return;
                  }
                  std::set<std::string> lost;
                  for (auto& e : r.value().elements) lost.insert(e.str);
                  for (size_t i = 2; i + 1 < args.size(); i += 2) {
                    auto it = leases_.find(lease_key(*c, args[i]));
                    if (it == leases_.end() || it->second.job.token != args[i + 1]) continue;
                    if (lost.count(args[i])) {
                      if (!it->second.lost)
                        logger("queue")->warn(
                            "lost the lock of job {} on queue '{}'; its outcome will not be "
                            "written",
                            args[i], c->keys.queue_name());
                      it->second.lost = true;
                    } else {
                      it->second.last_renewed = now;
                    }
                  }
                });
  }
}

void QueueWorker::check_stalled() {
  if (!commands_->ready()) return;
  for (auto& c : consumers_) {
    Consumer* cp = c.get();
    redis::eval(*commands_, queue_scripts().recover_stalled_jobs, cp->keys.script_keys(),
                {cp->keys.key_prefix(), str(clock_.wall_ms()), str(options_.max_stalled_count),
                 str(options_.stalled_interval.count())},
                [this, cp](Result<Reply> r) {
                  if (!r) {
                    if (!is_connection_error(r.error()) && r.error().code != redis::kErrorStopped)
                      logger("queue")->error("stalled-job check on queue '{}' failed: {}",
                                             cp->keys.queue_name(), r.error().message);
                    return;
                  }
                  auto n = r.value().elements.size();
                  if (n == 0) return;
                  std::vector<std::string> ids;
                  for (auto& e : r.value().elements) ids.push_back(e.str);
                  logger("queue")->warn(
                      "queue '{}': {} stalled job(s) of dead workers returned to wait: {}",
                      cp->keys.queue_name(), n, fmt::join(ids, ", "));
                  if (observer_) observer_->on_stalled_recovered(cp->keys.queue_name(), n);
                });
  }
}

void QueueWorker::stop(std::function<void()> done) {
  if (stopping_) return;
  stopping_ = true;
  stopped_ = std::move(done);
  for (auto& c : consumers_) {
    if (c->rate_timer) clock_.cancel(c->rate_timer), c->rate_timer = 0;
    c->blocking->stop();
  }
  // The renewal timer keeps running while jobs in flight finish.
  if (stalled_timer_) clock_.cancel(stalled_timer_), stalled_timer_ = 0;
  maybe_stopped();
}

void QueueWorker::maybe_stopped() {
  if (!stopping_ || !stopped_) return;
  size_t fetching = 0;
  for (auto& c : consumers_) fetching += c->fetches_in_flight;
  // Only outcomes waiting for Redis to come back remain: give them a while.
  bool only_pending = leases_.size() == pending_writes_.size() && writes_in_flight_ == 0;
  if (fetching == 0 && !leases_.empty() && only_pending && stop_timer_ == 0) {
    stop_timer_ = clock_.call_after(options_.stop_write_timeout, [this] {
      stop_timer_ = 0;
      logger("queue")->error(
          "stopping with {} outcome(s) unwritten (Redis unreachable: {}); those jobs return to "
          "wait by stalled-job recovery",
          pending_writes_.size(), commands_->last_error());
      pending_writes_.clear();
      leases_.clear();
      maybe_stopped();
    });
  }
  if (fetching != 0 || !leases_.empty()) return;
  if (stop_timer_) clock_.cancel(stop_timer_), stop_timer_ = 0;
  auto done = std::move(stopped_);
  stopped_ = nullptr;
  boost::asio::post(io_, std::move(done));
}

}  // namespace guardant::engine
