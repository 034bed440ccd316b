// Durable result persistence: every result goes to a ResultSink (the Redis
// stream + status hash by default); while the sink is unavailable results
// wait in a ResultSpool (a file when results.spool_path is set, else a
// bounded in-memory backlog) and are written, oldest first, before any newer
// result once the sink is back. With the Redis sink each result is written at
// most once per idempotency key, so re-sending after a crash or a dropped
// reply never duplicates.
//
// Order: results reach the sink in the order persist() was called, across
// outages, restarts (the spool is replayed first) and reconnects. The one
// exception is a pile-up of more than `held_limit` results while writes of an
// interrupted batch are still unanswered; those then go to the spool ahead of
// the unanswered ones (still once each, still none lost).
//
// When the sink comes back: call on_redis_ready() from the connection's
// on_ready (RedisConnection has one subscriber, so the persister does not take
// it); without that call the persister still notices within retry_interval.
//
// Threading: every member on the loop thread of `io`; nothing blocks it (the
// spool's fdatasync runs on the spool's helper thread). `io`, `clock`, `conn`
// and `metrics` must outlive the persister. Destroying it without flush()
// behaves like a crash: what is in the spool file stays there for the next
// run; results still in flight or held in memory are lost.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/result.hpp"
#include "metrics/registry.hpp"
#include "redis/redis_connection.hpp"
#include "results/redis_result_writer.hpp"
#include "results/result_sink.hpp"
#include "results/result_spool.hpp"

namespace guardant::engine {

struct PersisterOptions {
  RedisResultWriterOptions writer;
  SpoolOptions spool;
  // Spooled results sent per batch (pipelined) when flushing the spool.
  size_t drain_batch = 100;
  // While results wait, how often to look whether the sink is back.
  Nanos retry_interval = std::chrono::seconds(1);
  // flush(): longest wait for in-flight writes before spooling them.
  Nanos flush_timeout = std::chrono::seconds(5);
  // Results kept in memory (not yet spooled) while the writes ahead of them
  // are unanswered, so they can follow those into the spool in order.
  size_t held_limit = 10'000;
};

// A result as a spool record's payload: one line of JSON,
// {"key":<idempotency key>,"nestId":..,"serviceId":..,"record":{..}}.
std::string encode_spooled_result(const PersistedResult& result);
// nullopt when `payload` is not such an object.
std::optional<PersistedResult> decode_spooled_result(std::string_view payload);

class ResultPersister {
 public:
  // The Redis sinks of `settings` (stream and/or status hash) on `conn`,
  // spooling to settings.spool_path. With both sinks disabled persist() does
  // nothing. `conn` is neither started nor stopped here.
  ResultPersister(boost::asio::io_context& io, Clock& clock, redis::RedisConnection& conn,
                  const ResultSettings& settings, metrics::Registry* metrics = nullptr,
                  PersisterOptions options = {});
  // Any other sink (e.g. a future Golem Base sink), with its own spool file
  // ("" for the in-memory backlog).
  ResultPersister(boost::asio::io_context& io, Clock& clock, std::unique_ptr<ResultSink> sink,
                  std::string spool_path, metrics::Registry* metrics = nullptr,
                  PersisterOptions options = {});
  ~ResultPersister();
  ResultPersister(const ResultPersister&) = delete;
  ResultPersister& operator=(const ResultPersister&) = delete;

  // Opens or recovers the spool; results found there are written first, as
  // soon as the sink is ready. Damaged records are logged, counted
  // (guardant_results_spool_corrupt_total) and skipped, which is not an
  // error. Errors ("spool_io", "spool_locked") leave the persister working
  // with the in-memory backlog instead; the caller decides whether to refuse
  // to start. Call once, before persist() (which otherwise opens it).
  Status open();

  // Queues one result for the sink. Never blocks, never fails: a result that
  // cannot be written or spooled is counted (guardant_results_dropped_total)
  // and logged.
  void persist(PersistedResult result);

  // The sink's connection is ready again: write what waits, in order.
  void on_redis_ready();

  // At shutdown: waits (at most flush_timeout) for writes in flight, moves
  // whatever is still unwritten to the spool, fdatasyncs it, then calls
  // `done` (posted, never inside flush()). persist() keeps working after.
  void flush(std::function<void()> done);

  // Results waiting to be written after an outage: in the spool, or about to
  // be appended to it.
  size_t spooled() const;
  // Writes sent to the sink and not answered yet.
  size_t in_flight() const;
  // True while results go to the spool instead of straight to the sink.
  bool backlogged() const { return backlog_; }
  const ResultSink& sink() const { return *sink_; }

 private:
  struct Direct {
    PersistedResult result;
    bool failed = false;  // "unavailable": goes to the spool
  };
  struct Batch;

  void init(metrics::Registry* metrics);
  void send_direct(PersistedResult r);
  void on_direct_done(uint64_t seq, Result<WriteOutcome> res);
  void to_backlog(PersistedResult r);
  void spool_append(const PersistedResult& r);
  void settle(bool force);
  void enter_backlog(const std::string& why);
  void arm_retry();
  void maybe_drain();
  bool finish_batch(Batch& batch);
  void count_outcome(const Result<WriteOutcome>& res, const std::string& key);
  void drop(const std::string& reason, const std::string& message);
  void update_gauge();
  void check_flush();

  boost::asio::io_context& io_;
  Clock& clock_;
  std::unique_ptr<ResultSink> sink_;
  PersisterOptions options_;
  std::unique_ptr<ResultSpool> spool_;
  bool enabled_ = true;
  bool opened_ = false;

  bool backlog_ = false;               // new results go to the spool
  bool draining_ = false;              // a batch from the spool is in flight
  size_t batch_pending_ = 0;           // writes of that batch not answered yet
  std::map<uint64_t, Direct> direct_;  // written straight to the sink, by order
  size_t direct_pending_ = 0;          // entries of direct_ not answered yet
  uint64_t next_seq_ = 0;
  std::deque<PersistedResult> held_;  // wait behind unanswered direct writes
  Clock::TimerId retry_timer_ = 0;

  std::vector<std::function<void()>> flush_waiters_;
  Nanos flush_deadline_{0};
  bool flush_syncing_ = false;
  uint64_t flush_ticket_ = 0;
  Clock::TimerId flush_timer_ = 0;

  Nanos last_drop_log_{0};
  uint64_t drops_since_log_ = 0;

  metrics::Counter* written_ = nullptr;
  metrics::Counter* spooled_total_ = nullptr;
  metrics::Gauge* spool_size_ = nullptr;
  metrics::Counter* corrupt_ = nullptr;
  metrics::Counter* duplicates_ = nullptr;
  metrics::CounterFamily* dropped_ = nullptr;

  // Sink callbacks hold a weak reference: they may arrive after destruction.
  std::shared_ptr<char> life_ = std::make_shared<char>();
};

}  // namespace guardant::engine
