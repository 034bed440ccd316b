// QueueWorker against a real redis-server: the state each transition leaves
// behind, in BullMQ's layout (the interop suite checks the same through the
// real bullmq package). Jobs are added the way bullmq's producer adds them.
#include "queue/queue_worker.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <functional>
#include <map>
#include <string>

#include "core/asio_clock.hpp"
#include "support/redis_server.hpp"

namespace guardant::engine {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;

// A JobHandler whose behaviour each test scripts per job id.
class ScriptedHandler : public JobHandler {
 public:
  explicit ScriptedHandler(Clock& clock) : clock_(clock) {}
  std::function<JobOutcome(const QueueJob&)> outcome = [](const QueueJob&) {
    return JobOutcome::completed(R"({"status":"up"})");
  };
  Nanos duration{0};
  std::vector<std::string> started;  // job ids in start order
  int running = 0;
  int max_running = 0;

  void run(const QueueJob& job, std::function<void(JobOutcome)> done) override {
    started.push_back(job.id);
    max_running = std::max(max_running, ++running);
    auto result = outcome(job);
    clock_.call_after(duration, [this, done, result] {
      --running;
      done(result);
    });
  }

 private:
  Clock& clock_;
};

class QueueWorkerTest : public ::testing::Test {
 protected:
  RedisServer redis;
  boost::asio::io_context io;
  AsioClock clock{io};
  ScriptedHandler handler{clock};
  std::unique_ptr<QueueWorker> worker;
  const std::string P = "bull:monitoring:";

  QueueWorkerOptions options() {
    QueueWorkerOptions o;
    o.worker_name = "test-worker";
    o.concurrency = 1;
    o.connection.backoff_initial = 20ms;
    o.connection.backoff_max = 200ms;
    return o;
  }

  RedisSettings settings() {
    RedisSettings s;
    s.port = redis.port();
    return s;
  }

  void start(QueueWorkerOptions o, std::vector<std::string> queues = {"monitoring"}) {
    worker = std::make_unique<QueueWorker>(io, clock, settings(), "bull", queues, o, handler);
    worker->start();
  }

  int64_t now_ms() const { return clock.wall_ms(); }

  // As bullmq's Queue.add: the hash, then wait / prioritized / delayed, and
  // the marker that wakes idle workers.
  void add(const std::string& id, const std::string& opts = "{}", int priority = 0,
           int64_t delay = 0, const std::string& data = R"({"x":1})") {
    redis.cli("HSET", P + id, "name", "check", "data", data, "opts", opts, "timestamp",
              std::to_string(now_ms()), "delay", std::to_string(delay), "priority",
              std::to_string(priority));
    if (delay > 0) {
      auto due = now_ms() + delay;
      redis.cli("ZADD", P + "delayed", std::to_string(due * 4096), id);
      redis.cli("ZADD", P + "marker", std::to_string(due), "1");
    } else if (priority > 0) {
      auto seq = std::stoll(test::chomp(redis.cli("INCR", P + "pc")));
      redis.cli("ZADD", P + "prioritized", std::to_string(priority * 4294967296LL + seq), id);
      redis.cli("ZADD", P + "marker", "0", "0");
    } else {
      redis.cli("LPUSH", P + "wait", id);
      redis.cli("ZADD", P + "marker", "0", "0");
    }
  }

  std::string field(const std::string& id, const std::string& f) {
    return test::chomp(redis.cli("HGET", P + id, f));
  }
  int64_t zcard(const std::string& k) { return std::stoll(test::chomp(redis.cli("ZCARD", P + k))); }
  int64_t llen(const std::string& k) { return std::stoll(test::chomp(redis.cli("LLEN", P + k))); }
  std::string events() { return redis.cli("XRANGE", P + "events", "-", "+"); }

  // Runs the loop until `pred` holds; fails the test after `limit`.
  void run_until(const std::function<bool()>& pred, Nanos limit, const std::string& what) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) FAIL() << "timed out waiting for " << what;
      io.run_for(10ms);
    }
  }
  void run_for(Nanos d) { io.run_for(d); }

  void wait_finished(const std::string& id, Nanos limit = 5s) {
    run_until([&] { return !field(id, "finishedOn").empty(); }, limit, "job " + id + " to finish");
  }

  void stop_worker() {
    bool stopped = false;
    worker->stop([&] { stopped = true; });
    run_until([&] { return stopped; }, 10s, "the worker to stop");
  }
};

TEST_F(QueueWorkerTest, CompletesAJobWithItsReturnValueAndEvents) {
  start(options());
  add("1");
  wait_finished("1");
  EXPECT_EQ(field("1", "returnvalue"), R"({"status":"up"})");
  EXPECT_EQ(field("1", "atm"), "1");
  EXPECT_EQ(field("1", "ats"), "1");
  EXPECT_EQ(field("1", "pb"), "test-worker");
  EXPECT_EQ(zcard("completed"), 1);
  EXPECT_EQ(llen("active"), 0);
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", P + "1:lock")), "0");
  auto ev = events();
  EXPECT_NE(ev.find("active\njobId\n1\nprev\nwaiting"), std::string::npos) << ev;
  EXPECT_NE(ev.find("completed\njobId\n1\nreturnvalue\n{\"status\":\"up\"}\nprev\nactive"),
            std::string::npos)
      << ev;
  EXPECT_NE(ev.find("drained"), std::string::npos) << ev;
  // The worker names itself the way Node's Queue.getWorkers() looks for.
  EXPECT_NE(redis.cli("CLIENT", "LIST").find("name=bull:bW9uaXRvcmluZw==:w:test-worker"),
            std::string::npos);
}

TEST_F(QueueWorkerTest, TakesWaitBeforePrioritizedAndPrioritiesInOrder) {
  add("p5", "{}", 5);
  add("p1a", "{}", 1);
  add("plain");
  add("p1b", "{}", 1);
  add("p3", "{}", 3);
  start(options());
  run_until([&] { return handler.started.size() == 5; }, 5s, "five jobs");
  EXPECT_EQ(handler.started, (std::vector<std::string>{"plain", "p1a", "p1b", "p3", "p5"}));
  wait_finished("p5");
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", P + "pc")), "0");
}

TEST_F(QueueWorkerTest, RetriesWithBackoffThenFailsWithStacktraceAndRetriesExhausted) {
  handler.outcome = [](const QueueJob&) { return JobOutcome::failed("target exploded"); };
  start(options());
  add("r", R"({"attempts":3,"backoff":{"type":"fixed","delay":150}})");
  wait_finished("r");
  EXPECT_EQ(handler.started.size(), 3u);
  EXPECT_EQ(field("r", "atm"), "3");
  EXPECT_EQ(field("r", "failedReason"), "target exploded");
  auto trace = boost::json::parse(field("r", "stacktrace"));
  ASSERT_TRUE(trace.is_array());
  EXPECT_EQ(trace.as_array().size(), 3u);
  EXPECT_EQ(zcard("failed"), 1);
  auto ev = events();
  EXPECT_NE(ev.find("retries-exhausted\njobId\nr\nattemptsMade\n3"), std::string::npos) << ev;
  // Two delayed events, one per retry.
  size_t delayed = 0;
  for (size_t pos = 0; (pos = ev.find("delayed\njobId\nr", pos)) != std::string::npos; ++pos)
    ++delayed;
  EXPECT_EQ(delayed, 2u);
}

TEST_F(QueueWorkerTest, UnrecoverableFailureIsNotRetried) {
  handler.outcome = [](const QueueJob&) {
    return JobOutcome::failed("malformed job data: service.type is missing", true);
  };
  start(options());
  add("bad", R"({"attempts":5})");
  wait_finished("bad");
  EXPECT_EQ(handler.started.size(), 1u);
  EXPECT_EQ(field("bad", "atm"), "1");
  EXPECT_EQ(events().find("retries-exhausted"), std::string::npos);
}

TEST_F(QueueWorkerTest, DeferredFailureFailsAtOnceWithoutRunning) {
  add("d", R"({"attempts":5})");
  redis.cli("HSET", P + "d", "defa", "job stalled more than allowable limit");
  start(options());
  wait_finished("d");
  EXPECT_TRUE(handler.started.empty());
  EXPECT_EQ(field("d", "failedReason"), "job stalled more than allowable limit");
  EXPECT_EQ(field("d", "defa"), "");
}

TEST_F(QueueWorkerTest, RemoveOnCompleteForms) {
  start(options());
  add("gone", R"({"removeOnComplete":true})");
  add("k1", R"({"removeOnComplete":2})");
  add("k2", R"({"removeOnComplete":2})");
  add("k3", R"({"removeOnComplete":{"count":2,"age":3600}})");
  run_until([&] { return handler.started.size() == 4 && llen("active") == 0; }, 5s, "4 jobs");
  run_until([&] { return !field("k3", "finishedOn").empty(); }, 5s, "k3");
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", P + "gone")), "0");
  EXPECT_EQ(zcard("completed"), 2);
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", P + "k1")), "0");
  // The completed event still carries the removed job's return value.
  EXPECT_NE(events().find("completed\njobId\ngone\nreturnvalue"), std::string::npos);
}

TEST_F(QueueWorkerTest, RunsADelayedJobWhenDueWithNoOtherWorker) {
  start(options());
  run_for(300ms);  // idle in the marker wait
  auto added = now_ms();
  add("later", "{}", 0, 600);
  wait_finished("later");
  auto started = std::stoll(field("later", "processedOn"));
  EXPECT_GE(started, added + 600);
  EXPECT_LT(started, added + 600 + 300);
}

TEST_F(QueueWorkerTest, HonoursConcurrencyAndPause) {
  handler.duration = 100ms;
  auto o = options();
  o.concurrency = 3;
  start(o);
  for (int i = 0; i < 9; ++i) add("c" + std::to_string(i));
  run_until([&] { return zcard("completed") == 9; }, 10s, "nine jobs");
  EXPECT_EQ(handler.max_running, 3);

  redis.cli("HSET", P + "meta", "paused", "1");
  redis.cli("DEL", P + "marker");
  add("while-paused");
  run_for(400ms);
  EXPECT_EQ(handler.started.size(), 9u);
  redis.cli("HDEL", P + "meta", "paused");
  redis.cli("ZADD", P + "marker", "0", "0");
  wait_finished("while-paused");
}

TEST_F(QueueWorkerTest, KeepsTheLockOfALongJob) {
  handler.duration = 1500ms;
  auto o = options();
  o.lock_duration = 400ms;
  o.stalled_interval = 200ms;
  start(o);
  add("long");
  wait_finished("long", 5s);
  EXPECT_EQ(handler.started.size(), 1u);
  EXPECT_EQ(field("long", "stc"), "");
  EXPECT_EQ(field("long", "returnvalue"), R"({"status":"up"})");
}

TEST_F(QueueWorkerTest, RecoversTheJobOfADeadWorker) {
  // A job some dead worker took: active, suspected at the last check, and
  // its lock long expired.
  redis.cli("HSET", P + "orphan", "name", "check", "data", "{}", "opts", "{}", "timestamp", "1",
            "ats", "1");
  redis.cli("LPUSH", P + "active", "orphan");
  redis.cli("SADD", P + "stalled", "orphan");
  start(options());
  wait_finished("orphan");
  EXPECT_EQ(field("orphan", "stc"), "1");
  EXPECT_EQ(field("orphan", "ats"), "2");
  EXPECT_NE(events().find("stalled\njobId\norphan"), std::string::npos);
}

TEST_F(QueueWorkerTest, HandBackCountsNoAttemptAndNoStall) {
  int runs = 0;
  handler.outcome = [&](const QueueJob&) {
    return ++runs == 1 ? JobOutcome::hand_back() : JobOutcome::completed("null");
  };
  start(options());
  add("back", R"({"attempts":1})");
  wait_finished("back");
  EXPECT_EQ(runs, 2);
  EXPECT_EQ(field("back", "atm"), "1");
  EXPECT_EQ(field("back", "ats"), "2");
  EXPECT_EQ(field("back", "stc"), "");
  EXPECT_EQ(field("back", "returnvalue"), "null");
  EXPECT_NE(events().find("waiting\njobId\nback\nprev\nactive"), std::string::npos);
}

TEST_F(QueueWorkerTest, PostponeIsNotAnAttemptAndIsCounted) {
  int runs = 0;
  handler.outcome = [&](const QueueJob&) {
    return ++runs <= 2 ? JobOutcome::postpone(50, "handbacks") : JobOutcome::completed("1");
  };
  start(options());
  add("later", R"({"attempts":1})");
  wait_finished("later");
  EXPECT_EQ(runs, 3);
  EXPECT_EQ(field("later", "atm"), "1");
  EXPECT_EQ(field("later", "ats"), "1");
  EXPECT_EQ(field("later", "handbacks"), "2");
  size_t delayed = 0;
  auto ev = events();
  for (size_t pos = 0; (pos = ev.find("delayed\njobId\nlater", pos)) != std::string::npos; ++pos)
    ++delayed;
  EXPECT_EQ(delayed, 2u);
}

TEST_F(QueueWorkerTest, StopWaitsForRunningJobsThatHandBack) {
  handler.duration = 2s;
  handler.outcome = [](const QueueJob&) { return JobOutcome::hand_back(); };
  start(options());
  add("slow");
  run_until([&] { return handler.started.size() == 1; }, 5s, "the job to start");
  stop_worker();
  EXPECT_EQ(llen("active"), 0);
  EXPECT_EQ(llen("wait"), 1);
  EXPECT_EQ(field("slow", "stc"), "");
  EXPECT_EQ(test::chomp(redis.cli("EXISTS", P + "slow:lock")), "0");
}

TEST_F(QueueWorkerTest, StopLetsRunningJobsFinish) {
  handler.duration = 300ms;
  auto o = options();
  o.concurrency = 2;
  start(o);
  add("a");
  add("b");
  run_until([&] { return handler.started.size() == 2; }, 5s, "both jobs");
  stop_worker();
  EXPECT_EQ(zcard("completed"), 2);
  EXPECT_EQ(llen("active"), 0);
}

TEST_F(QueueWorkerTest, SurvivesScriptFlushAndARedisRestart) {
  start(options());
  add("one");
  wait_finished("one");
  redis.cli("SCRIPT", "FLUSH");
  add("two");
  wait_finished("two");

  redis.restart();  // no persistence: the queue is empty again
  run_until([&] { return worker->connected(); }, 10s, "the worker to reconnect");
  add("three");
  wait_finished("three", 12s);
  EXPECT_EQ(handler.started, (std::vector<std::string>{"one", "two", "three"}));
}

TEST_F(QueueWorkerTest, ConsumesSeveralQueues) {
  start(options(), {"monitoring", "monitoring:eu"});
  add("m");
  const std::string eu = "bull:monitoring:eu:";
  redis.cli("HSET", eu + "e", "name", "check", "data", "{}", "opts", "{}", "timestamp", "1");
  redis.cli("LPUSH", eu + "wait", "e");
  redis.cli("ZADD", eu + "marker", "0", "0");
  wait_finished("m");
  run_until([&] { return !test::chomp(redis.cli("HGET", eu + "e", "finishedOn")).empty(); }, 5s,
            "the job of the second queue");
}

}  // namespace
}  // namespace guardant::engine
