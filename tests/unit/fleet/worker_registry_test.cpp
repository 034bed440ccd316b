// WorkerRegistry and read_worker_records against a real redis-server.
#include "fleet/worker_registry.hpp"

#include <gtest/gtest.h>

#include <boost/asio/io_context.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <string>

#include "core/asio_clock.hpp"
#include "support/redis_server.hpp"

namespace guardant::engine {
namespace {

using namespace std::chrono_literals;
using test::RedisServer;

class WorkerRegistryTest : public ::testing::Test {
 protected:
  RedisServer redis;
  boost::asio::io_context io;
  AsioClock clock{io};
  // One connection per simulated worker process; declared before the
  // registries, which must not outlive them.
  std::vector<std::unique_ptr<redis::RedisConnection>> connections;
  uint32_t in_flight = 0;
  const std::string key = "guardant:workers:eu-1";

  redis::RedisConnection& connect() {
    RedisSettings s;
    s.port = redis.port();
    redis::ConnectionOptions o;
    o.backoff_initial = 20ms;
    o.backoff_max = 200ms;
    connections.push_back(
        std::make_unique<redis::RedisConnection>(io, clock, s, "fleet-test", "redis", o));
    connections.back()->start();
    return *connections.back();
  }

  std::function<WorkerRecord()> snapshot(std::string id, std::string host = "host-a",
                                         int pid = 111) {
    return [this, id, host, pid] {
      WorkerRecord r;
      r.id = id;
      r.region = "eu-west";
      r.capabilities = {"tcp", "web"};
      r.plugins =
          boost::json::parse(R"([{"name":"guardant-tcp","version":"0.1.0","types":["tcp"]},)"
                             R"({"name":"guardant-web","version":"0.1.0","types":["web"]}])")
              .as_array();
      r.concurrency = 50;
      r.in_flight = in_flight;
      r.version = "0.5.0";
      r.host = host;
      r.pid = pid;
      return r;
    };
  }

  std::unique_ptr<WorkerRegistry> make(std::string id, std::chrono::milliseconds ttl = 2s,
                                       std::chrono::milliseconds refresh = 200ms,
                                       std::string host = "host-a", int pid = 111) {
    return std::make_unique<WorkerRegistry>(connect(), clock, snapshot(std::move(id), host, pid),
                                            kDefaultWorkerPrefix, ttl, refresh);
  }

  void run_until(const std::function<bool()>& pred, Nanos limit, const std::string& what) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) FAIL() << "timed out waiting for " << what;
      io.run_for(10ms);
    }
  }
  void run_for(Nanos d) { io.run_for(d); }

  Status start(WorkerRegistry& r) {
    std::optional<Status> result;
    r.start([&](Status st) { result = std::move(st); });
    run_until([&] { return result.has_value(); }, 5s, "start() to finish");
    return result ? *result : Status(Error{"test", "start() did not finish"});
  }
  void stop(WorkerRegistry& r) {
    bool done = false;
    r.stop([&] { done = true; });
    run_until([&] { return done; }, 5s, "stop() to finish");
  }

  std::string get(const std::string& k) { return test::chomp(redis.cli("GET", k)); }
  int64_t pttl(const std::string& k) { return std::stoll(test::chomp(redis.cli("PTTL", k))); }
  bool exists(const std::string& k) { return test::chomp(redis.cli("EXISTS", k)) == "1"; }
  boost::json::object stored(const std::string& k) {
    auto text = get(k);
    boost::system::error_code ec;
    auto v = boost::json::parse(text, ec);
    if (ec || !v.is_object()) {
      ADD_FAILURE() << k << " does not hold a JSON object: '" << text << "'";
      return {};
    }
    return v.as_object();
  }
  std::string stored_instance(const std::string& k) {
    auto o = stored(k);
    auto* v = o.if_contains("instance");
    return v && v->is_string() ? std::string(v->as_string()) : "";
  }
};

TEST_F(WorkerRegistryTest, RecordAppearsWithEveryFieldAndTheTtl) {
  in_flight = 4;
  auto reg = make("eu-1", 2s);
  const int64_t before = clock.wall_ms();
  auto st = start(*reg);
  ASSERT_TRUE(st) << st.error().message;
  EXPECT_TRUE(reg->registered());
  EXPECT_EQ(reg->key(), key);

  auto o = stored(key);
  EXPECT_EQ(o.at("id").as_string(), "eu-1");
  EXPECT_EQ(o.at("region").as_string(), "eu-west");
  EXPECT_EQ(boost::json::serialize(o.at("capabilities")), R"(["tcp","web"])");
  ASSERT_TRUE(o.at("plugins").is_array());
  EXPECT_EQ(o.at("plugins").as_array().size(), 2u);
  EXPECT_EQ(o.at("plugins").as_array()[1].as_object().at("version").as_string(), "0.1.0");
  EXPECT_EQ(o.at("concurrency").to_number<int64_t>(), 50);
  EXPECT_EQ(o.at("inFlight").to_number<int64_t>(), 4);
  EXPECT_EQ(o.at("version").as_string(), "0.5.0");
  EXPECT_EQ(o.at("host").as_string(), "host-a");
  EXPECT_EQ(o.at("pid").to_number<int64_t>(), 111);
  EXPECT_GE(o.at("startedAt").to_number<int64_t>(), before);
  EXPECT_GE(o.at("lastSeen").to_number<int64_t>(), o.at("startedAt").to_number<int64_t>());
  EXPECT_EQ(o.at("instance").as_string(), reg->instance());
  EXPECT_EQ(reg->instance().size(), 32u);

  auto ttl = pttl(key);
  EXPECT_GT(ttl, 0);
  EXPECT_LE(ttl, 2000);
}

TEST_F(WorkerRegistryTest, RefreshMovesLastSeenAndResetsTheTtl) {
  auto reg = make("eu-1", 1s, 100ms);
  ASSERT_TRUE(start(*reg));
  auto first = stored(key);
  const int64_t seen0 = first.at("lastSeen").to_number<int64_t>();
  const int64_t started = first.at("startedAt").to_number<int64_t>();

  in_flight = 7;
  // Longer than the TTL: the key survives only because it is rewritten.
  run_for(1500ms);
  ASSERT_TRUE(exists(key));
  auto later = stored(key);
  EXPECT_GT(later.at("lastSeen").to_number<int64_t>(), seen0);
  EXPECT_EQ(later.at("inFlight").to_number<int64_t>(), 7);
  EXPECT_EQ(later.at("startedAt").to_number<int64_t>(), started);
  EXPECT_GT(pttl(key), 0);
  EXPECT_GE(reg->writes(), 5u);
}

TEST_F(WorkerRegistryTest, StopDeletesTheRecord) {
  auto reg = make("eu-1");
  ASSERT_TRUE(start(*reg));
  ASSERT_TRUE(exists(key));
  stop(*reg);
  EXPECT_FALSE(exists(key));
  EXPECT_FALSE(reg->registered());
  // No refresh brings it back.
  run_for(500ms);
  EXPECT_FALSE(exists(key));
}

TEST_F(WorkerRegistryTest, StopWithARefreshOnItsWayStillDeletes) {
  auto reg = make("eu-1");
  ASSERT_TRUE(start(*reg));
  reg->reconnected();  // a claim is now in flight
  stop(*reg);
  EXPECT_FALSE(exists(key));
  run_for(300ms);
  EXPECT_FALSE(exists(key));
}

TEST_F(WorkerRegistryTest, StopWithoutRedisFinishesAndLeavesTheRecordToExpire) {
  auto reg = make("eu-1");
  ASSERT_TRUE(start(*reg));
  redis.kill();
  run_until([&] { return !connections[0]->ready(); }, 5s, "the connection to drop");
  stop(*reg);
  EXPECT_FALSE(reg->registered());
}

TEST_F(WorkerRegistryTest, StopLeavesARecordThatIsNoLongerOurs) {
  auto reg = make("eu-1");
  ASSERT_TRUE(start(*reg));
  const std::string other = R"({"id":"eu-1","host":"host-b","pid":222,"instance":"someone-else"})";
  redis.cli("SET", key, other, "PX", "60000");
  stop(*reg);
  EXPECT_EQ(get(key), other);
}

TEST_F(WorkerRegistryTest, SecondWorkerWithTheSameIdIsRefusedUntilTheFirstExpires) {
  auto first = make("eu-1", 1500ms, 200ms, "host-a", 111);
  ASSERT_TRUE(start(*first));
  auto second = make("eu-1", 1500ms, 200ms, "host-b", 222);

  auto refused = start(*second);
  ASSERT_FALSE(refused);
  EXPECT_EQ(refused.error().code, kErrorWorkerIdInUse);
  const auto& msg = refused.error().message;
  EXPECT_NE(msg.find("worker id 'eu-1' is already in use by a live worker (host host-a, pid 111, "
                     "last seen "),
            std::string::npos)
      << msg;
  EXPECT_NE(msg.find(" s ago); give this worker another WORKER_ID"), std::string::npos) << msg;
  EXPECT_FALSE(second->registered());
  // The refused one wrote nothing and keeps writing nothing.
  run_for(500ms);
  EXPECT_EQ(stored_instance(key), first->instance());
  EXPECT_EQ(second->writes(), 0u);

  // The first one crashes: no clean stop, its record expires after the TTL.
  first.reset();
  run_until([&] { return !exists(key); }, 5s, "the crashed worker's record to expire");
  auto accepted = start(*second);
  ASSERT_TRUE(accepted) << accepted.error().message;
  EXPECT_EQ(stored_instance(key), second->instance());
  EXPECT_EQ(stored(key).at("host").as_string(), "host-b");
}

TEST_F(WorkerRegistryTest, TwoWorkersStartingTogetherGetOneWinner) {
  auto a = make("eu-1", 2s, 200ms, "host-a", 1);
  auto b = make("eu-1", 2s, 200ms, "host-b", 2);
  run_until([&] { return connections[0]->ready() && connections[1]->ready(); }, 5s, "connections");
  std::optional<Status> ra, rb;
  a->start([&](Status s) { ra = std::move(s); });
  b->start([&](Status s) { rb = std::move(s); });
  run_until([&] { return ra && rb; }, 5s, "both starts");
  EXPECT_NE(ra->ok(), rb->ok());
  auto& winner = ra->ok() ? *a : *b;
  EXPECT_EQ(stored_instance(key), winner.instance());
  EXPECT_EQ((ra->ok() ? *rb : *ra).error().code, kErrorWorkerIdInUse);
}

TEST_F(WorkerRegistryTest, RecreatesTheRecordAfterARedisRestart) {
  auto reg = make("eu-1", 2s, 200ms);
  int done_calls = 0;
  reg->start([&](Status st) {
    ++done_calls;
    EXPECT_TRUE(st) << st.error().message;
  });
  run_until([&] { return done_calls == 1; }, 5s, "the claim");
  const auto writes = reg->writes();

  redis.restart();  // no persistence: the record is gone
  ASSERT_FALSE(exists(key));
  run_until([&] { return exists(key); }, 5s, "the record to come back");
  EXPECT_EQ(stored_instance(key), reg->instance());
  EXPECT_GT(reg->writes(), writes);
  run_until([&] { return reg->registered(); }, 2s, "registered() again");
  EXPECT_EQ(done_calls, 1);
}

TEST_F(WorkerRegistryTest, WaitsForRedisAtStartup) {
  redis.stop();
  auto reg = make("eu-1", 2s, 200ms);
  std::optional<Status> result;
  reg->start([&](Status st) { result = std::move(st); });
  run_for(500ms);
  EXPECT_FALSE(result.has_value());
  EXPECT_FALSE(reg->registered());
  EXPECT_FALSE(reg->last_error().empty());

  redis.start();
  run_until([&] { return result.has_value(); }, 5s, "the claim once Redis is up");
  EXPECT_TRUE(*result) << result->error().message;
  EXPECT_EQ(stored_instance(key), reg->instance());
}

TEST_F(WorkerRegistryTest, StopBeforeTheClaimReportsStopped) {
  redis.stop();
  auto reg = make("eu-1");
  std::optional<Status> result;
  bool stopped = false;
  reg->start([&](Status st) { result = std::move(st); });
  run_for(100ms);
  reg->stop([&] { stopped = true; });
  run_until([&] { return stopped; }, 5s, "stop()");
  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().code, "stopped");
}

TEST_F(WorkerRegistryTest, IdTakenWhileRunningIsLeftAloneAndReclaimedWhenFree) {
  auto reg = make("eu-1", 2s, 150ms);
  ASSERT_TRUE(start(*reg));
  // As if our record had expired during a partition and another process had
  // claimed the id meanwhile.
  const std::string other =
      boost::json::serialize(boost::json::object{{"id", "eu-1"},
                                                 {"host", "host-b"},
                                                 {"pid", 222},
                                                 {"lastSeen", clock.wall_ms()},
                                                 {"instance", "someone-else"}});
  redis.cli("SET", key, other, "PX", "60000");
  run_for(600ms);
  EXPECT_EQ(get(key), other);  // never overwritten
  EXPECT_FALSE(reg->registered());
  EXPECT_NE(reg->last_error().find("already in use by a live worker (host host-b, pid 222"),
            std::string::npos)
      << reg->last_error();

  redis.cli("DEL", key);  // the other worker stopped
  run_until([&] { return exists(key) && stored_instance(key) == reg->instance(); }, 5s,
            "the record to be re-claimed");
  run_until([&] { return reg->registered(); }, 2s, "registered() again");
}

TEST_F(WorkerRegistryTest, KeyOfAnotherTypeIsRefusedWithTheReason) {
  redis.cli("HSET", key, "a", "b");
  auto reg = make("eu-1");
  auto st = start(*reg);
  ASSERT_FALSE(st);
  EXPECT_EQ(st.error().code, kErrorWorkerIdInUse);
  EXPECT_NE(st.error().message.find("holds a Redis hash"), std::string::npos) << st.error().message;
  EXPECT_EQ(test::chomp(redis.cli("TYPE", key)), "hash");
}

TEST_F(WorkerRegistryTest, EmptyIdIsRefused) {
  auto reg = make("");
  std::optional<Status> result;
  reg->start([&](Status st) { result = std::move(st); });
  ASSERT_TRUE(result.has_value());
  ASSERT_FALSE(*result);
  EXPECT_EQ(result->error().code, "invalid_worker_id");
}

// --- read_worker_records ------------------------------------------------------

class ReadWorkerRecordsTest : public WorkerRegistryTest {
 protected:
  Result<std::vector<WorkerRecord>> read(const std::string& prefix) {
    auto& conn = connect();
    std::optional<Result<std::vector<WorkerRecord>>> out;
    run_until([&] { return conn.ready(); }, 5s, "the connection");
    read_worker_records(conn, prefix, [&](Result<std::vector<WorkerRecord>> r) { out = r; });
    run_until([&] { return out.has_value(); }, 10s, "read_worker_records");
    return out ? *out : Result<std::vector<WorkerRecord>>(Error{"test", "no answer"});
  }
};

TEST_F(ReadWorkerRecordsTest, ReadsTheFleetAndSkipsWhatIsNotARecord) {
  auto a = make("eu-1");
  auto b = make("us-1");
  in_flight = 2;
  ASSERT_TRUE(start(*a));
  ASSERT_TRUE(start(*b));
  redis.cli("SET", "guardant:workers:junk", "not json");
  redis.cli("HSET", "guardant:workers:hash", "a", "b");
  redis.cli("SET", "guardant:other", R"({"id":"outside"})");

  auto records = read(kDefaultWorkerPrefix);
  ASSERT_TRUE(records) << records.error().message;
  ASSERT_EQ(records->size(), 2u);
  EXPECT_EQ((*records)[0].id, "eu-1");
  EXPECT_EQ((*records)[1].id, "us-1");
  EXPECT_EQ((*records)[0].in_flight, 2u);
  EXPECT_EQ((*records)[0].capabilities, (std::vector<std::string>{"tcp", "web"}));
  EXPECT_EQ((*records)[1].instance, b->instance());

  auto table = format_worker_table(std::move(records.value()), clock.wall_ms());
  EXPECT_NE(table.find("eu-1  eu-west  tcp,web       2/50"), std::string::npos) << table;
}

TEST_F(ReadWorkerRecordsTest, ScansManyKeysAndTakesThePrefixLiterally) {
  // 1200 records: several SCAN rounds and MGET batches.
  redis.cli("EVAL",
            "for i = 1, 1200 do redis.call('SET', ARGV[1] .. i, "
            "'{\"id\":\"w' .. i .. '\",\"region\":\"r\"}') end return 1",
            "0", "fleet:w*rk:");
  redis.cli("SET", "fleet:wXrk:1", R"({"id":"not-matched"})");
  auto records = read("fleet:w*rk:");
  ASSERT_TRUE(records) << records.error().message;
  EXPECT_EQ(records->size(), 1200u);
  for (auto& r : *records) ASSERT_NE(r.id, "not-matched");
}

TEST_F(ReadWorkerRecordsTest, EmptyFleetIsAnEmptyList) {
  auto records = read(kDefaultWorkerPrefix);
  ASSERT_TRUE(records) << records.error().message;
  EXPECT_TRUE(records->empty());
}

}  // namespace
}  // namespace guardant::engine
