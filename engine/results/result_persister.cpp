#include "results/result_persister.hpp"

#include <boost/asio/post.hpp>
#include <boost/json/parse.hpp>
#include <optional>
#include <utility>

#include "core/logging.hpp"
#include "results/json_text.hpp"

namespace guardant::engine {
namespace {

using namespace std::chrono_literals;

}  // namespace

std::string encode_spooled_result(const PersistedResult& r) {
  boost::json::object o;
  o["key"] = r.idempotency_key;
  o["nestId"] = r.nest_id;
  o["serviceId"] = r.service_id;
  o["record"] = r.record;
  return to_json_text(o);
}

std::optional<PersistedResult> decode_spooled_result(std::string_view payload) {
  boost::system::error_code ec;
  auto v = boost::json::parse(payload, ec);
  if (ec || !v.is_object()) return std::nullopt;
  const auto& o = v.get_object();
  auto str = [&](const char* k) -> const boost::json::string* {
    auto it = o.find(k);
    return it != o.end() && it->value().is_string() ? &it->value().get_string() : nullptr;
  };
  auto rec = o.find("record");
  if (!str("key") || !str("nestId") || !str("serviceId") || rec == o.end() ||
      !rec->value().is_object())
    return std::nullopt;
  return PersistedResult{std::string(*str("key")), std::string(*str("nestId")),
                         std::string(*str("serviceId")), rec->value().get_object()};
}

// One batch of spooled results in flight, in spool order.
struct ResultPersister::Batch {
  std::vector<std::optional<Result<WriteOutcome>>> outcomes;  // empty: not answered yet
  std::vector<std::string> keys;                              // idempotency keys, for logs
  size_t answered = 0;
};

ResultPersister::ResultPersister(boost::asio::io_context& io, Clock& clock,
                                 redis::RedisConnection& conn, const ResultSettings& settings,
                                 metrics::Registry* metrics, PersisterOptions options)
    : io_(io),
      clock_(clock),
      sink_(std::make_unique<RedisResultWriter>(conn, settings, options.writer)),
      options_(std::move(options)),
      spool_(std::make_unique<ResultSpool>(clock, settings.spool_path, options_.spool)),
      enabled_(settings.stream_enabled || settings.status_enabled) {
  init(metrics);
}

ResultPersister::ResultPersister(boost::asio::io_context& io, Clock& clock,
                                 std::unique_ptr<ResultSink> sink, std::string spool_path,
                                 metrics::Registry* metrics, PersisterOptions options)
    : io_(io),
      clock_(clock),
      sink_(std::move(sink)),
      options_(std::move(options)),
      spool_(std::make_unique<ResultSpool>(clock, std::move(spool_path), options_.spool)) {
  init(metrics);
}

void ResultPersister::init(metrics::Registry* metrics) {
  if (options_.drain_batch == 0) options_.drain_batch = 1;
  if (metrics) {
    written_ = &metrics
                    ->counter("guardant_results_written_total",
                              "Results written to a result sink, by sink", {"sink"})
                    .labels({sink_->name()});
    spooled_total_ = &metrics
                          ->counter("guardant_results_spooled_total",
                                    "Results put in the spool because the sink was unavailable")
                          .labels();
    spool_size_ =
        &metrics->gauge("guardant_results_spool_size", "Results waiting in the spool").labels();
    corrupt_ = &metrics
                    ->counter("guardant_results_spool_corrupt_total",
                              "Damaged spool records found and skipped")
                    .labels();
    duplicates_ = &metrics
                       ->counter("guardant_results_duplicates_skipped_total",
                                 "Results not written again because their idempotency key was")
                       .labels();
    dropped_ = &metrics->counter("guardant_results_dropped_total", "Results given up on, by reason",
                                 {"reason"});
  }
  spool_->set_on_corrupt([this](const std::string&) {
    if (corrupt_) corrupt_->inc();
  });
  if (!enabled_)
    logger("results")->info("results.stream and results.status are both off: no Redis results");
}

ResultPersister::~ResultPersister() {
  for (auto id : {retry_timer_, flush_timer_})
    if (id) clock_.cancel(id);
  life_.reset();
}

Status ResultPersister::open() {
  if (opened_) return Ok{};
  opened_ = true;
  auto report = spool_->open();
  if (!report) {
    logger("results")->error("{}; results wait in memory instead", report.error().message);
    spool_ = std::make_unique<ResultSpool>(clock_, "", options_.spool);
    return report.error();
  }
  update_gauge();
  if (!spool_->empty()) {
    enter_backlog("results from an earlier run in the spool");
    boost::asio::post(io_, [w = std::weak_ptr<char>(life_), this] {
      if (w.lock()) maybe_drain();
    });
  }
  return Ok{};
}

void ResultPersister::persist(PersistedResult r) {
  if (!enabled_) return;
  if (!opened_) (void)open();
  if (!backlog_ && sink_->ready()) return send_direct(std::move(r));
  if (!backlog_) enter_backlog("not connected");
  to_backlog(std::move(r));
}

void ResultPersister::send_direct(PersistedResult r) {
  uint64_t seq = next_seq_++;
  auto& d = direct_[seq];
  d.result = std::move(r);
  ++direct_pending_;
  sink_->write(d.result, [w = std::weak_ptr<char>(life_), this, seq](Result<WriteOutcome> res) {
    if (w.lock()) on_direct_done(seq, std::move(res));
  });
}

void ResultPersister::on_direct_done(uint64_t seq, Result<WriteOutcome> res) {
  auto it = direct_.find(seq);
  if (it == direct_.end()) {
    // flush() gave up on it and spooled it; the spooled copy is a duplicate
    // now if this one was written.
    if (res.ok()) count_outcome(res, "");
    return;
  }
  --direct_pending_;
  if (!res.ok() && res.error().code == kSinkUnavailable) {
    it->second.failed = true;
    enter_backlog(res.error().message);
  } else {
    count_outcome(res, it->second.result.idempotency_key);
    direct_.erase(it);
  }
  if (direct_pending_ == 0) {
    settle(false);
    maybe_drain();
  }
  check_flush();
}

void ResultPersister::to_backlog(PersistedResult r) {
  // Behind unanswered direct writes: wait, so that the ones among them that
  // fail reach the spool first.
  if (direct_pending_ > 0 && held_.size() < options_.held_limit) {
    held_.push_back(std::move(r));
    update_gauge();
    return;
  }
  spool_append(r);
  update_gauge();
  maybe_drain();
}

void ResultPersister::spool_append(const PersistedResult& r) {
  auto st = spool_->append(encode_spooled_result(r));
  if (st) {
    if (spooled_total_) spooled_total_->inc();
    return;
  }
  drop(st.error().code, "result " + r.idempotency_key + " not spooled: " + st.error().message);
}

// Moves failed direct writes (in order) and then held results to the spool.
// `force`: also writes still unanswered (flush gave up waiting on them).
void ResultPersister::settle(bool force) {
  if (direct_pending_ > 0 && !force) return;
  for (auto& [seq, d] : direct_) spool_append(d.result);
  direct_.clear();
  direct_pending_ = 0;
  for (auto& r : held_) spool_append(r);
  held_.clear();
  update_gauge();
}

void ResultPersister::enter_backlog(const std::string& why) {
  if (!backlog_) {
    backlog_ = true;
    logger("results")->warn("{} unavailable ({}); results wait in the {} until it is back",
                            sink_->name(), why,
                            spool_->file_backed() ? "spool " + spool_->path() : "memory backlog");
  }
  arm_retry();
}

void ResultPersister::arm_retry() {
  if (retry_timer_ || !backlog_) return;
  retry_timer_ = clock_.call_after(options_.retry_interval, [this] {
    retry_timer_ = 0;
    maybe_drain();
    arm_retry();
  });
}

void ResultPersister::on_redis_ready() {
  maybe_drain();
}

void ResultPersister::maybe_drain() {
  while (backlog_ && !draining_ && direct_pending_ == 0) {
    settle(false);
    if (spool_->empty()) {
      backlog_ = false;
      if (retry_timer_) clock_.cancel(retry_timer_);
      retry_timer_ = 0;
      logger("results")->info("{}: spool flushed, writing results directly again", sink_->name());
      update_gauge();
      check_flush();
      return;
    }
    if (!sink_->ready()) return;
    auto payloads = spool_->peek(options_.drain_batch);
    if (payloads.empty()) {
      if (spool_->empty()) continue;  // only damaged records were left
      return;                         // a read error; the retry timer tries again
    }
    auto batch = std::make_shared<Batch>();
    batch->outcomes.resize(payloads.size());
    batch->keys.resize(payloads.size());
    std::vector<std::optional<PersistedResult>> results;
    results.reserve(payloads.size());
    for (size_t i = 0; i < payloads.size(); ++i) {
      results.push_back(decode_spooled_result(payloads[i]));
      if (results.back()) batch->keys[i] = results.back()->idempotency_key;
      if (!results.back()) {
        if (corrupt_) corrupt_->inc();
        logger("results")->error("{}: skipping a spooled result that is not valid JSON: {:.200}",
                                 sink_->name(), payloads[i]);
        batch->outcomes[i] = Result<WriteOutcome>(Error{"corrupt", "not a spooled result"});
        ++batch->answered;
      }
    }
    if (batch->answered == payloads.size()) {
      (void)finish_batch(*batch);  // only damaged records: go on with the next batch
      continue;
    }
    draining_ = true;
    batch_pending_ = payloads.size() - batch->answered;
    for (size_t i = 0; i < results.size(); ++i) {
      if (!results[i]) continue;
      sink_->write(*results[i],
                   [w = std::weak_ptr<char>(life_), this, batch, i](Result<WriteOutcome> res) {
                     if (!w.lock()) return;
                     --batch_pending_;
                     batch->outcomes[i] = std::move(res);
                     if (++batch->answered == batch->outcomes.size()) {
                       draining_ = false;
                       if (finish_batch(*batch)) maybe_drain();
                       check_flush();
                     }
                   });
    }
    return;
  }
}

// Consumes the batch's records up to the first one the sink could not take
// now; that one and those after it stay in the spool for the next attempt
// (any of them that was written is a Duplicate then). Returns false when it
// stopped there: the next attempt waits for on_redis_ready() or the retry
// timer, so a read-only or loading server is not hammered.
bool ResultPersister::finish_batch(Batch& batch) {
  size_t consumed = 0;
  std::string why;
  for (size_t i = 0; i < batch.outcomes.size(); ++i) {
    const auto& o = *batch.outcomes[i];
    if (!o.ok() && o.error().code == kSinkUnavailable) {
      if (why.empty()) why = o.error().message.empty() ? "unavailable" : o.error().message;
      continue;
    }
    if (o.ok() || o.error().code != "corrupt") count_outcome(o, batch.keys[i]);
    if (why.empty()) ++consumed;
  }
  spool_->consume(consumed);
  update_gauge();
  if (why.empty()) return true;
  enter_backlog(why);
  return false;
}

void ResultPersister::count_outcome(const Result<WriteOutcome>& res, const std::string& key) {
  if (res.ok()) {
    if (res.value() == WriteOutcome::Written) {
      if (written_) written_->inc();
    } else if (duplicates_) {
      duplicates_->inc();
    }
    return;
  }
  drop("rejected",
       std::string(sink_->name()) + " rejected result " + key + ": " + res.error().message);
}

// Counted always; logged at most every 10 s so a full disk or a broken key
// cannot flood the log.
void ResultPersister::drop(const std::string& reason, const std::string& message) {
  if (dropped_) dropped_->labels({reason}).inc();
  ++drops_since_log_;
  Nanos now = clock_.now();
  if (last_drop_log_.count() != 0 && now - last_drop_log_ < 10s) return;
  logger("results")->error("result dropped ({}): {} ({} dropped since the last message)", reason,
                           message, drops_since_log_);
  last_drop_log_ = now;
  drops_since_log_ = 0;
}

void ResultPersister::update_gauge() {
  if (spool_size_) spool_size_->set(static_cast<double>(spooled()));
}

size_t ResultPersister::spooled() const {
  size_t failed = 0;
  for (const auto& [seq, d] : direct_) failed += d.failed ? 1 : 0;
  return spool_->size() + held_.size() + failed;
}

size_t ResultPersister::in_flight() const {
  return direct_pending_ + batch_pending_;
}

void ResultPersister::flush(std::function<void()> done) {
  if (flush_waiters_.empty()) {
    flush_deadline_ = clock_.now() + options_.flush_timeout;
    flush_syncing_ = false;
  }
  flush_waiters_.push_back(std::move(done));
  check_flush();
}

// Flush in two steps: wait for the writes in flight (until the deadline),
// then spool what is left and wait for the fdatasync (for at most another
// flush_timeout). Polled every few milliseconds: it runs once, at shutdown.
void ResultPersister::check_flush() {
  if (flush_waiters_.empty()) return;
  if (flush_timer_) {
    clock_.cancel(flush_timer_);
    flush_timer_ = 0;
  }
  Nanos now = clock_.now();
  if (!flush_syncing_) {
    if ((direct_pending_ > 0 || draining_) && now < flush_deadline_) {
      flush_timer_ = clock_.call_after(5ms, [this] {
        flush_timer_ = 0;
        check_flush();
      });
      return;
    }
    if (direct_pending_ > 0)
      logger("results")->warn(
          "{} write(s) unanswered after {} ms; spooling them", direct_pending_,
          std::chrono::duration_cast<std::chrono::milliseconds>(options_.flush_timeout).count());
    bool had_unsettled = !direct_.empty() || !held_.empty();
    settle(true);
    if (had_unsettled && !spool_->empty()) enter_backlog("shutting down");
    flush_syncing_ = true;
    flush_ticket_ = spool_->request_sync();
    flush_deadline_ = now + options_.flush_timeout;
  }
  if (!spool_->synced(flush_ticket_) && now < flush_deadline_) {
    flush_timer_ = clock_.call_after(5ms, [this] {
      flush_timer_ = 0;
      check_flush();
    });
    return;
  }
  if (!spool_->synced(flush_ticket_))
    logger("results")->error("result spool {}: fdatasync did not finish in time", spool_->path());
  auto waiters = std::move(flush_waiters_);
  flush_waiters_.clear();
  for (auto& w : waiters)
    if (w) boost::asio::post(io_, std::move(w));
}

}  // namespace guardant::engine
