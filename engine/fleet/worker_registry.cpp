#include "fleet/worker_registry.hpp"

#include <unistd.h>

#include <boost/json/serialize.hpp>
#include <cstdio>
#include <random>
#include <set>

#include "core/logging.hpp"
#include "redis/lua_script.hpp"

namespace guardant::engine {
namespace {

using redis::Reply;

// KEYS[1] the record key; ARGV[1] the record JSON, ARGV[2] our instance
// token, ARGV[3] the TTL in ms. Writes when the key is free or holds a record
// of this instance: {1}. Otherwise writes nothing: {0, current value} for
// another worker's record (or any other string), {2, type} for a key that is
// not a string at all. Check and write in one script, so two workers racing
// for the same id cannot both win.
const redis::LuaScript& claim_script() {
  static const redis::LuaScript script("claim_worker_id", R"lua(
local kind = redis.call('TYPE', KEYS[1])['ok']
if kind ~= 'none' and kind ~= 'string' then
  return {2, kind}
end
local current = redis.call('GET', KEYS[1])
if current then
  local ok, record = pcall(cjson.decode, current)
  if not (ok and type(record) == 'table' and record['instance'] == ARGV[2]) then
    return {0, current}
  end
end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[3])
return {1}
)lua");
  return script;
}

// KEYS[1] the record key; ARGV[1] our instance token. Deletes the record only
// when this instance wrote it (a worker that lost its id during a partition
// must not delete the record of the worker that took it). 1 deleted, 0 not.
const redis::LuaScript& release_script() {
  static const redis::LuaScript script("release_worker_id", R"lua(
if redis.call('TYPE', KEYS[1])['ok'] ~= 'string' then
  return 0
end
local ok, record = pcall(cjson.decode, redis.call('GET', KEYS[1]))
if ok and type(record) == 'table' and record['instance'] == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
)lua");
  return script;
}

std::string random_token() {
  std::random_device rd;
  std::uniform_int_distribution<uint64_t> dist;
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016llx%016llx", static_cast<unsigned long long>(dist(rd)),
                static_cast<unsigned long long>(dist(rd)));
  return buf;
}

bool connection_error(const Error& e) {
  return e.code == redis::kErrorNotConnected || e.code == redis::kErrorDisconnected ||
         e.code == redis::kErrorStopped;
}

// A MATCH pattern that matches `prefix` literally, then anything.
std::string glob_prefix(const std::string& prefix) {
  std::string out;
  for (char c : prefix) {
    if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out += '\\';
    out += c;
  }
  return out + "*";
}

}  // namespace

class WorkerRegistry::Impl : public std::enable_shared_from_this<Impl> {
 public:
  enum class State { Idle, Claiming, Running, Stopping };

  Impl(redis::RedisConnection& conn, Clock& clock, std::function<WorkerRecord()> snapshot,
       std::string prefix, std::chrono::milliseconds ttl, std::chrono::milliseconds refresh)
      : conn_(conn),
        clock_(clock),
        snapshot_(std::move(snapshot)),
        prefix_(std::move(prefix)),
        ttl_(ttl),
        refresh_(refresh),
        instance_(random_token()),
        log_(logger("fleet")) {}

  void start(std::function<void(Status)> done) {
    if (state_ != State::Idle) return;
    WorkerRecord first = snapshot_();
    if (first.id.empty()) {
      done(Error{"invalid_worker_id", "the worker id is empty; set worker.id or WORKER_ID"});
      return;
    }
    id_ = first.id;
    key_ = prefix_ + id_;
    started_at_ms_ = clock_.wall_ms();
    ++generation_;
    state_ = State::Claiming;
    in_flight_ = again_ = conflict_ = false;
    waiting_logged_ = false;
    last_logged_error_.clear();
    start_done_ = std::move(done);
    conn_.on_ready([w = weak_from_this()] {
      if (auto self = w.lock()) self->reconnected();
    });
    schedule_tick();
    attempt();
  }

  void stop(std::function<void()> done) {
    if (state_ == State::Idle) {
      if (done) clock_.call_after(Nanos(0), std::move(done));
      return;
    }
    stop_done_.push_back(std::move(done));
    if (state_ == State::Stopping) return;
    auto pending_start = std::move(start_done_);
    start_done_ = nullptr;
    state_ = State::Stopping;
    again_ = false;
    registered_ = false;
    cancel_tick();
    // A claim still on its way may yet be retried after NOSCRIPT (SCRIPT
    // LOAD, EVALSHA again) and so land after a delete sent now: delete once
    // it has answered (claimed() calls release()).
    if (!in_flight_) release();
    if (pending_start)
      pending_start(Error{"stopped", "stopped before worker id '" + id_ + "' was claimed"});
  }

  void reconnected() {
    if (state_ == State::Claiming || state_ == State::Running) attempt();
  }

  // Drops everything: no callback of ours runs after this.
  void shutdown() {
    cancel_tick();
    ++generation_;
    state_ = State::Idle;
    start_done_ = nullptr;
    stop_done_.clear();
  }

  redis::RedisConnection& conn_;
  Clock& clock_;
  std::function<WorkerRecord()> snapshot_;
  const std::string prefix_;
  const std::chrono::milliseconds ttl_, refresh_;
  const std::string instance_;
  std::shared_ptr<spdlog::logger> log_;

  std::string id_, key_;
  int64_t started_at_ms_ = 0;
  State state_ = State::Idle;
  // Bumped by start(), a refusal and shutdown(), so that a reply to a script
  // sent in an earlier run is ignored.
  uint64_t generation_ = 0;
  std::function<void(Status)> start_done_;
  std::vector<std::function<void()>> stop_done_;
  Clock::TimerId tick_ = 0;
  bool in_flight_ = false;  // a claim script is on its way
  bool again_ = false;      // another attempt was asked for meanwhile
  bool conflict_ = false;   // another instance holds our id (while Running)
  bool waiting_logged_ = false;
  std::string last_logged_error_;

  bool registered_ = false;
  uint64_t writes_ = 0;
  std::string last_error_;

 private:
  void schedule_tick() {
    tick_ = clock_.call_after(refresh_, [w = weak_from_this()] {
      auto self = w.lock();
      if (!self) return;
      self->tick_ = 0;
      self->attempt();
      self->schedule_tick();
    });
  }

  void cancel_tick() {
    if (tick_) clock_.cancel(tick_);
    tick_ = 0;
  }

  void attempt() {
    if (state_ != State::Claiming && state_ != State::Running) return;
    if (in_flight_) {
      again_ = true;
      return;
    }
    WorkerRecord record = snapshot_();
    record.id = id_;
    record.last_seen_ms = clock_.wall_ms();
    if (record.started_at_ms == 0) record.started_at_ms = started_at_ms_;
    record.instance = instance_;
    in_flight_ = true;
    const auto gen = generation_;
    redis::eval(conn_, claim_script(), {key_},
                {boost::json::serialize(to_json(record)), instance_, std::to_string(ttl_.count())},
                [w = weak_from_this(), gen](Result<Reply> r) {
                  auto self = w.lock();
                  if (!self || self->generation_ != gen) return;
                  self->claimed(r);
                });
  }

  void claimed(const Result<Reply>& r) {
    in_flight_ = false;
    if (state_ == State::Stopping) {
      release();
      return;
    }
    std::function<void(Status)> finish_start;
    Status outcome = Ok{};

    if (!r) {
      failed(r.error());
    } else if (!r->is_array() || r->elements.empty() || !r->elements[0].as_int()) {
      failed(Error{"redis", "unexpected reply to the claim script: " + r->debug_string()});
    } else if (*r->elements[0].as_int() == 1) {
      registered_ = true;
      ++writes_;
      last_error_.clear();
      last_logged_error_.clear();
      if (conflict_) {
        conflict_ = false;
        log_->warn("worker id '{}' is free again; this worker's record {} is back", id_, key_);
      }
      if (state_ == State::Claiming) {
        state_ = State::Running;
        log_->info("registered as worker '{}' ({}, TTL {} ms, refreshed every {} ms)", id_, key_,
                   ttl_.count(), refresh_.count());
        finish_start = std::move(start_done_);
        start_done_ = nullptr;
      }
    } else {
      const std::string holder =
          r->elements.size() > 1 ? r->elements[1].as_string().value_or("") : "";
      const bool wrong_type = *r->elements[0].as_int() == 2;
      registered_ = false;
      last_error_ = refusal(holder, wrong_type, state_ == State::Running);
      if (state_ == State::Claiming) {
        // Refused at start-up: the caller must not run under this id.
        state_ = State::Idle;
        ++generation_;
        cancel_tick();
        finish_start = std::move(start_done_);
        start_done_ = nullptr;
        outcome = Error{kErrorWorkerIdInUse, last_error_};
      } else {
        // We lost the id while running (our record expired during a
        // partition and another process claimed it). Keep working and keep
        // trying; say so at error level on every attempt, since two workers
        // with one id make the fleet view and the results ambiguous.
        conflict_ = true;
        log_->error("{}", last_error_);
      }
    }

    if (again_ && (state_ == State::Claiming || state_ == State::Running)) {
      again_ = false;
      attempt();
    }
    if (finish_start) finish_start(std::move(outcome));
  }

  // The claim could not run (Redis unreachable, or an error reply).
  void failed(const Error& e) {
    registered_ = false;
    last_error_ = e.message;
    // Still connecting is the normal start, not worth a warning; the
    // connection itself warns when connecting fails.
    if (state_ == State::Claiming && !waiting_logged_ && conn_.attempts() > 1) {
      waiting_logged_ = true;
      log_->warn("cannot register worker id '{}' yet ({}); retrying on reconnect and every {} ms",
                 id_, e.message, refresh_.count());
      return;
    }
    // The connection logs its own drops; a Redis error reply is ours to say.
    if (connection_error(e) || e.message == last_logged_error_) {
      log_->debug("worker record {} not refreshed: {}", key_, e.message);
    } else {
      log_->warn("worker record {} not refreshed: {}", key_, e.message);
      last_logged_error_ = e.message;
    }
  }

  // Why the id cannot be ours. `running`: we held it and lost it, rather
  // than being refused at start-up.
  std::string refusal(const std::string& holder, bool wrong_type, bool running) const {
    if (wrong_type)
      return "worker id '" + id_ + "' cannot be claimed: " + key_ + " holds a Redis " + holder +
             ", not a worker record; give this worker another WORKER_ID or delete the key";
    auto other = parse_worker_record(holder);
    if (!other)
      return "worker id '" + id_ + "' cannot be claimed: " + key_ +
             " holds something that is not a worker record (" + other.error().message +
             "); give this worker another WORKER_ID or delete the key";
    const int64_t age_s = std::max<int64_t>(clock_.wall_ms() - other->last_seen_ms, 0) / 1000;
    std::string s = "worker id '" + id_ + "' is already in use by a live worker (host " +
                    (other->host.empty() ? "?" : other->host) + ", pid " +
                    std::to_string(other->pid) + ", last seen " + std::to_string(age_s) + " s ago)";
    if (running)
      return s +
             ", which claimed it while this worker's record was missing; this worker keeps "
             "running but is not in the registry until the id is free again; give one of them "
             "another WORKER_ID";
    return s + "; give this worker another WORKER_ID";
  }

  // Compare and delete; then stop()'s callbacks.
  void release() {
    const auto gen = generation_;
    redis::eval(conn_, release_script(), {key_}, {instance_},
                [w = weak_from_this(), gen](Result<Reply> r) {
                  auto self = w.lock();
                  if (!self || self->generation_ != gen) return;
                  self->released(r);
                });
  }

  void released(const Result<Reply>& r) {
    state_ = State::Idle;
    if (!r)
      log_->warn("worker record {} not deleted ({}); it expires within {} ms", key_,
                 r.error().message, ttl_.count());
    else if (r->as_int().value_or(0) == 1)
      log_->info("worker record {} deleted", key_);
    else
      log_->info("worker record {} was no longer ours; left in place", key_);
    auto done = std::move(stop_done_);
    stop_done_.clear();
    for (auto& d : done)
      if (d) d();
  }
};

WorkerRegistry::WorkerRegistry(redis::RedisConnection& conn, Clock& clock,
                               std::function<WorkerRecord()> snapshot, std::string prefix,
                               std::chrono::milliseconds ttl, std::chrono::milliseconds refresh)
    : impl_(std::make_shared<Impl>(conn, clock, std::move(snapshot), std::move(prefix), ttl,
                                   refresh)) {}

WorkerRegistry::~WorkerRegistry() {
  impl_->shutdown();
}

void WorkerRegistry::start(std::function<void(Status)> done) {
  impl_->start(std::move(done));
}
void WorkerRegistry::stop(std::function<void()> done) {
  impl_->stop(std::move(done));
}
void WorkerRegistry::reconnected() {
  impl_->reconnected();
}
const std::string& WorkerRegistry::key() const {
  return impl_->key_;
}
const std::string& WorkerRegistry::instance() const {
  return impl_->instance_;
}
bool WorkerRegistry::registered() const {
  return impl_->registered_;
}
uint64_t WorkerRegistry::writes() const {
  return impl_->writes_;
}
const std::string& WorkerRegistry::last_error() const {
  return impl_->last_error_;
}

// --- reading the fleet ------------------------------------------------------

namespace {

struct FleetRead {
  redis::RedisConnection& conn;
  std::string pattern;
  std::set<std::string> keys;  // SCAN may return a key twice
  std::function<void(Result<std::vector<WorkerRecord>>)> cb;
};

void fetch_records(const std::shared_ptr<FleetRead>& st) {
  if (st->keys.empty()) {
    st->cb(std::vector<WorkerRecord>{});
    return;
  }
  constexpr size_t kBatch = 500;
  std::vector<std::vector<std::string>> commands;
  for (auto it = st->keys.begin(); it != st->keys.end();) {
    std::vector<std::string> mget{"MGET"};
    for (size_t n = 0; n < kBatch && it != st->keys.end(); ++n, ++it) mget.push_back(*it);
    commands.push_back(std::move(mget));
  }
  st->conn.pipeline(std::move(commands), [st](std::vector<Result<Reply>> replies) {
    std::vector<WorkerRecord> records;
    auto key = st->keys.begin();
    for (auto& r : replies) {
      if (!r) {
        st->cb(r.error());
        return;
      }
      if (!r->is_array()) {
        st->cb(Error{"redis", "unexpected reply to MGET: " + r->debug_string()});
        return;
      }
      for (auto& v : r->elements) {
        const std::string& k = *key++;
        if (v.is_nil()) continue;  // expired since SCAN
        auto text = v.as_string();
        auto rec = text ? parse_worker_record(*text)
                        : Result<WorkerRecord>(Error{"invalid_worker_record", "not a string"});
        if (!rec) {
          logger("fleet")->warn("{}: skipped: {}", k, rec.error().message);
          continue;
        }
        records.push_back(std::move(rec.value()));
      }
    }
    st->cb(std::move(records));
  });
}

void scan_step(const std::shared_ptr<FleetRead>& st, const std::string& cursor) {
  st->conn.command({"SCAN", cursor, "MATCH", st->pattern, "COUNT", "500"}, [st](Result<Reply> r) {
    if (!r) {
      st->cb(r.error());
      return;
    }
    if (!r->is_array() || r->elements.size() != 2 || !r->elements[0].as_string() ||
        !r->elements[1].is_array()) {
      st->cb(Error{"redis", "unexpected reply to SCAN: " + r->debug_string()});
      return;
    }
    for (auto& k : r->elements[1].elements)
      if (auto s = k.as_string()) st->keys.insert(*s);
    const std::string next = *r->elements[0].as_string();
    if (next == "0")
      fetch_records(st);
    else
      scan_step(st, next);
  });
}

}  // namespace

void read_worker_records(redis::RedisConnection& conn, const std::string& prefix,
                         std::function<void(Result<std::vector<WorkerRecord>>)> cb) {
  auto st = std::make_shared<FleetRead>(FleetRead{conn, glob_prefix(prefix), {}, std::move(cb)});
  scan_step(st, "0");
}

std::string local_host_name() {
  char buf[256] = {};
  if (::gethostname(buf, sizeof buf - 1) != 0) return "";
  return buf;
}

}  // namespace guardant::engine
