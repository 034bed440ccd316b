// ResultPersister against a real redis-server: the stream entry and status
// hash it writes, idempotency, the spool across an outage and a crash,
// damaged spool records, the MAXLEN cap and flush at shutdown.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <sstream>
#include <string>
#include <vector>

#include "core/asio_clock.hpp"
#include "metrics/registry.hpp"
#include "results/result_persister.hpp"
#include "support/redis_server.hpp"

namespace guardant::engine {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;
using test::RedisServerOptions;

// One result of service `svc` in nest-1, checked at 1000 + i.
PersistedResult result(int i, const std::string& svc = "svc-1") {
  PersistedResult r;
  r.idempotency_key = "monitoring:" + std::to_string(i) + ":1";
  r.nest_id = "nest-1";
  r.service_id = svc;
  r.record = {{"status", i % 2 ? "up" : "down"},
              {"responseTime", 12.5},
              {"message", "check " + std::to_string(i)},
              {"serviceId", svc},
              {"nestId", "nest-1"},
              {"workerId", "w-1"},
              {"region", "eu-west"},
              {"checkedAt", 1000 + i}};
  return r;
}

class PersistenceTest : public ::testing::Test {
 protected:
  explicit PersistenceTest(RedisServerOptions redis_options = {})
      : redis(std::move(redis_options)) {
    std::string tmpl = (std::filesystem::temp_directory_path() / "guardant-pers-XXXXXX").string();
    if (!::mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
    dir = tmpl;
    settings.spool_path = dir + "/results.spool";
  }
  ~PersistenceTest() override {
    persister.reset();
    conn.reset();
    std::error_code ec;
    std::filesystem::remove_all(dir, ec);
  }

  void start(PersisterOptions o = {}) {
    RedisSettings rs;
    rs.port = redis.port();
    redis::ConnectionOptions co;
    co.backoff_initial = 20ms;
    co.backoff_max = 100ms;
    conn = std::make_unique<redis::RedisConnection>(io, clock, rs, "results-test", "redis", co);
    o.retry_interval = 50ms;
    persister = std::make_unique<ResultPersister>(io, clock, *conn, settings, &registry, o);
    conn->on_ready([this] {
      if (persister) persister->on_redis_ready();
    });
    auto st = persister->open();
    ASSERT_TRUE(st.ok()) << st.error().message;
    conn->start();
  }
  // A crash: the persister and its connection vanish without flush().
  void crash() {
    persister.reset();
    conn.reset();
  }

  void run_until(const std::function<bool()>& pred, const std::string& what, Nanos limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) FAIL() << "timed out waiting for " << what;
      io.run_for(5ms);
    }
  }

  int64_t xlen() { return std::stoll(test::chomp(redis.cli("XLEN", settings.stream_key))); }
  // The idempotency keys of the stream entries, oldest first.
  std::vector<std::string> stream_keys() {
    std::istringstream lines(redis.cli("XRANGE", settings.stream_key, "-", "+"));
    std::vector<std::string> keys;
    for (std::string line; std::getline(lines, line);)
      if (line == "idempotencyKey" && std::getline(lines, line)) keys.push_back(line);
    return keys;
  }
  std::vector<std::string> keys(int from, int to) {
    std::vector<std::string> out;
    for (int i = from; i <= to; ++i) out.push_back(result(i).idempotency_key);
    return out;
  }
  std::string status(const std::string& field, const std::string& svc = "svc-1") {
    return test::chomp(redis.cli("HGET", "guardant:status:nest-1:" + svc, field));
  }
  // A sample from /metrics, e.g. metric("guardant_results_written_total{sink=\"redis\"}").
  double metric(const std::string& series) {
    std::istringstream lines(registry.render());
    for (std::string line; std::getline(lines, line);)
      if (line.rfind(series + " ", 0) == 0) return std::stod(line.substr(series.size() + 1));
    return 0;
  }
  double written() { return metric("guardant_results_written_total{sink=\"redis\"}"); }
  void write_spool(const std::vector<PersistedResult>& rs, const std::string& tail = "") {
    std::ofstream out(settings.spool_path, std::ios::binary | std::ios::trunc);
    for (const auto& r : rs) out << ResultSpool::encode(encode_spooled_result(r));
    out << tail;
  }
  uintmax_t spool_bytes() { return std::filesystem::file_size(settings.spool_path); }

  RedisServer redis;
  std::string dir;
  ResultSettings settings;
  boost::asio::io_context io;
  AsioClock clock{io};
  metrics::Registry registry;
  std::unique_ptr<redis::RedisConnection> conn;
  std::unique_ptr<ResultPersister> persister;
};

TEST_F(PersistenceTest, WritesTheStreamEntryAndTheStatusHash) {
  start();
  persister->persist(result(1));
  run_until([&] { return written() == 1; }, "the write");

  // Stream: XRANGE prints id, then field and value lines.
  std::istringstream lines(redis.cli("XRANGE", "guardant:results", "-", "+"));
  std::map<std::string, std::string> fields;
  std::string id, f, v;
  std::getline(lines, id);
  while (std::getline(lines, f) && std::getline(lines, v)) fields[f] = v;
  EXPECT_EQ(boost::json::parse(fields["result"]), boost::json::value(result(1).record));
  EXPECT_EQ(fields["serviceId"], "svc-1");
  EXPECT_EQ(fields["nestId"], "nest-1");
  EXPECT_EQ(fields["status"], "up");
  EXPECT_EQ(fields["checkedAt"], "1001");
  EXPECT_EQ(fields["workerId"], "w-1");
  EXPECT_EQ(fields["region"], "eu-west");
  EXPECT_EQ(fields["idempotencyKey"], "monitoring:1:1");

  EXPECT_EQ(status("status"), "up");
  EXPECT_EQ(status("responseTime"), "12.5");
  EXPECT_EQ(status("checkedAt"), "1001");
  EXPECT_EQ(status("workerId"), "w-1");
  EXPECT_EQ(status("region"), "eu-west");
  EXPECT_EQ(status("message"), "check 1");
  // The idempotency marker expires (24 h by default).
  auto ttl = std::stoll(test::chomp(redis.cli("PTTL", "guardant:results:written:monitoring:1:1")));
  EXPECT_GT(ttl, 23 * 3600 * 1000LL);
  EXPECT_EQ(persister->spooled(), 0u);
}

TEST_F(PersistenceTest, AnOlderResultDoesNotRollTheStatusBack) {
  start();
  persister->persist(result(5));
  persister->persist(result(4));  // e.g. from a spool flushed late
  run_until([&] { return written() == 2; }, "both writes");
  EXPECT_EQ(xlen(), 2);
  EXPECT_EQ(status("checkedAt"), "1005");
  EXPECT_EQ(status("message"), "check 5");
}

TEST_F(PersistenceTest, ADuplicateIdempotencyKeyIsWrittenOnce) {
  start();
  persister->persist(result(1));
  persister->persist(result(1));
  persister->persist(result(2));
  run_until([&] { return written() + metric("guardant_results_duplicates_skipped_total") == 3; },
            "three answers");
  EXPECT_EQ(written(), 2);
  EXPECT_EQ(metric("guardant_results_duplicates_skipped_total"), 1);
  EXPECT_EQ(stream_keys(), keys(1, 2));
}

// Redis keeps its data across the restart (AOF), so "in order, none twice"
// covers the results written before the outage too.
RedisServerOptions with_aof() {
  RedisServerOptions o;
  o.args = {"--appendonly", "yes"};
  return o;
}

class PersistenceOutageTest : public PersistenceTest {
 protected:
  PersistenceOutageTest() : PersistenceTest(with_aof()) {}
};

TEST_F(PersistenceOutageTest, ResultsSpoolWhileRedisIsDownAndArriveInOrderOnce) {
  start();
  for (int i = 1; i <= 3; ++i) persister->persist(result(i));
  run_until([&] { return written() == 3; }, "the first writes");

  redis.stop();
  run_until([&] { return !conn->ready(); }, "the connection to drop");
  double spooled_before = metric("guardant_results_spooled_total");
  for (int i = 4; i <= 13; ++i) {
    persister->persist(result(i));
    io.run_for(2ms);  // results keep coming while Redis is away
  }
  EXPECT_TRUE(persister->backlogged());
  EXPECT_EQ(persister->spooled(), 10u);
  EXPECT_GT(spool_bytes(), 0u);
  EXPECT_EQ(metric("guardant_results_spooled_total") - spooled_before, 10);
  EXPECT_EQ(metric("guardant_results_spool_size"), 10);

  redis.start();
  run_until([&] { return persister->spooled() == 0 && !persister->backlogged(); },
            "the spool to drain");
  persister->persist(result(14));  // written directly again, after the spooled ones
  run_until([&] { return xlen() == 14; }, "result 14");
  EXPECT_EQ(stream_keys(), keys(1, 14));
  EXPECT_EQ(spool_bytes(), 0u);
  EXPECT_EQ(metric("guardant_results_spool_size"), 0);
  EXPECT_EQ(status("checkedAt"), "1014");
}

TEST_F(PersistenceOutageTest, ACrashWithResultsInTheSpoolLosesNothing) {
  redis.stop();
  start();
  for (int i = 1; i <= 5; ++i) persister->persist(result(i));
  EXPECT_EQ(persister->spooled(), 5u);
  io.run_for(100ms);  // the batch fsync timer (50 ms) fires
  crash();

  redis.start();
  start();  // a new worker on the same spool
  EXPECT_EQ(persister->spooled(), 5u);
  persister->persist(result(6));  // newer: after the spooled ones
  run_until([&] { return xlen() == 6; }, "all results");
  EXPECT_EQ(stream_keys(), keys(1, 6));
  run_until([&] { return persister->spooled() == 0; }, "the spool to empty");
  EXPECT_EQ(spool_bytes(), 0u);
}

TEST_F(PersistenceOutageTest, RedisStoppedWithWritesInFlightLosesAndDuplicatesNothing) {
  start();
  run_until([&] { return conn->ready(); }, "the connection");
  int n = 0;
  for (; n < 200; ++n) persister->persist(result(n + 1));
  io.run_for(1ms);  // some answered, some in flight, some not yet sent
  redis.stop();
  for (; n < 250; ++n) persister->persist(result(n + 1));
  redis.start();
  run_until([&] { return xlen() == 250 && persister->spooled() == 0; }, "all 250 results", 20s);
  EXPECT_EQ(stream_keys(), keys(1, 250));
}

TEST_F(PersistenceTest, ASpoolReplayedAfterACrashWritesNothingTwice) {
  start();
  persister->persist(result(1));
  run_until([&] { return written() == 1; }, "the first write");
  // The worker died after result 1 was written but before its spool record
  // was cleared (a reply lost with the connection, say).
  crash();
  write_spool({result(1), result(2)});
  start();
  run_until([&] { return persister->spooled() == 0; }, "the replay");
  EXPECT_EQ(stream_keys(), keys(1, 2));
  EXPECT_EQ(metric("guardant_results_duplicates_skipped_total"), 1);
}

TEST_F(PersistenceTest, DamagedSpoolRecordsAreReportedAndSkipped) {
  std::string bad = ResultSpool::encode(encode_spooled_result(result(2)));
  bad[bad.size() / 2] ^= 0x20;  // CRC mismatch in the middle of the file
  std::string cut = ResultSpool::encode(encode_spooled_result(result(4)));
  {
    std::ofstream out(settings.spool_path, std::ios::binary);
    out << ResultSpool::encode(encode_spooled_result(result(1))) << bad
        << ResultSpool::encode(encode_spooled_result(result(3)))
        << cut.substr(0, cut.size() - 10);  // a trailing record cut short
  }
  start();
  EXPECT_EQ(metric("guardant_results_spool_corrupt_total"), 2);
  EXPECT_EQ(persister->spooled(), 2u);
  run_until([&] { return persister->spooled() == 0; }, "the replay");
  EXPECT_EQ(stream_keys(), (std::vector<std::string>{"monitoring:1:1", "monitoring:3:1"}));
}

TEST_F(PersistenceTest, TheStreamIsCappedApproximately) {
  settings.stream_maxlen = 10;
  start();
  for (int i = 1; i <= 300; ++i) persister->persist(result(i));
  run_until([&] { return written() == 300; }, "300 writes");
  // MAXLEN ~ trims whole stream nodes (100 entries by default).
  EXPECT_GE(xlen(), 10);
  EXPECT_LE(xlen(), 10 + 100);
}

TEST_F(PersistenceTest, ARejectedResultIsDroppedAndDoesNotBlockTheRest) {
  redis.cli("SET", "guardant:status:nest-1:broken", "not a hash");
  start();
  persister->persist(result(1, "broken"));  // HSET fails: WRONGTYPE
  persister->persist(result(2));
  run_until([&] { return written() == 1; }, "the second write");
  EXPECT_EQ(metric("guardant_results_dropped_total{reason=\"rejected\"}"), 1);
  EXPECT_EQ(persister->spooled(), 0u);
  EXPECT_FALSE(persister->backlogged());
}

TEST_F(PersistenceTest, WithoutASpoolFileResultsWaitInABoundedMemoryBacklog) {
  settings.spool_path.clear();
  PersisterOptions o;
  o.spool.memory_limit = 3;
  redis.stop();
  start(o);
  for (int i = 1; i <= 5; ++i) persister->persist(result(i));
  EXPECT_EQ(persister->spooled(), 3u);
  EXPECT_EQ(metric("guardant_results_dropped_total{reason=\"spool_full\"}"), 2);
  redis.start();
  run_until([&] { return persister->spooled() == 0 && xlen() == 3; }, "the backlog");
  EXPECT_EQ(stream_keys(), keys(1, 3));
}

TEST_F(PersistenceTest, FlushFinishesWritesInFlightAndSyncsTheSpool) {
  start();
  run_until([&] { return conn->ready(); }, "the connection");
  for (int i = 1; i <= 20; ++i) persister->persist(result(i));
  EXPECT_GT(persister->in_flight(), 0u);
  bool done = false;
  persister->flush([&] { done = true; });
  EXPECT_FALSE(done);  // never called inside flush()
  run_until([&] { return done; }, "flush");
  EXPECT_EQ(persister->in_flight(), 0u);
  EXPECT_EQ(xlen(), 20);

  redis.stop();
  run_until([&] { return !conn->ready(); }, "the connection to drop");
  persister->persist(result(21));
  done = false;
  persister->flush([&] { done = true; });
  run_until([&] { return done; }, "flush with Redis away");
  EXPECT_EQ(persister->spooled(), 1u);
  EXPECT_GT(spool_bytes(), 0u);
}

}  // namespace
}  // namespace guardant::engine
