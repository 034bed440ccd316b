// WorkerRecord JSON and the `workers` table: pure functions, no Redis.
#include "fleet/worker_record.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <sstream>

namespace guardant::engine {
namespace {

WorkerRecord record(std::string id, std::string region, std::vector<std::string> caps,
                    uint32_t in_flight, uint32_t concurrency, int64_t last_seen) {
  WorkerRecord r;
  r.id = std::move(id);
  r.region = std::move(region);
  r.capabilities = std::move(caps);
  r.in_flight = in_flight;
  r.concurrency = concurrency;
  r.last_seen_ms = last_seen;
  r.version = "0.5.0";
  r.host = "host-" + r.id;
  return r;
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string l; std::getline(in, l);) out.push_back(l);
  return out;
}

TEST(WorkerRecordTest, JsonRoundTripKeepsEveryField) {
  WorkerRecord r = record("eu-1", "eu-west", {"web", "tcp"}, 3, 50, 1'700'000'005'000);
  r.plugins = boost::json::parse(R"([{"name":"guardant-web","version":"1.0.0","types":["web"]}])")
                  .as_array();
  r.pid = 4242;
  r.started_at_ms = 1'700'000'000'000;
  r.instance = "abc";
  auto json = to_json(r);
  for (const char* key : {"id", "region", "capabilities", "plugins", "concurrency", "inFlight",
                          "version", "host", "pid", "startedAt", "lastSeen", "instance"})
    EXPECT_TRUE(json.contains(key)) << key;
  EXPECT_EQ(json.at("inFlight").to_number<int64_t>(), 3);
  EXPECT_EQ(json.at("startedAt").to_number<int64_t>(), 1'700'000'000'000);

  auto back = parse_worker_record(boost::json::serialize(json));
  ASSERT_TRUE(back) << back.error().message;
  EXPECT_EQ(back->id, "eu-1");
  EXPECT_EQ(back->region, "eu-west");
  EXPECT_EQ(back->capabilities, (std::vector<std::string>{"web", "tcp"}));
  EXPECT_EQ(back->plugins, r.plugins);
  EXPECT_EQ(back->concurrency, 50u);
  EXPECT_EQ(back->in_flight, 3u);
  EXPECT_EQ(back->version, "0.5.0");
  EXPECT_EQ(back->host, "host-eu-1");
  EXPECT_EQ(back->pid, 4242);
  EXPECT_EQ(back->started_at_ms, 1'700'000'000'000);
  EXPECT_EQ(back->last_seen_ms, 1'700'000'005'000);
  EXPECT_EQ(back->instance, "abc");
}

TEST(WorkerRecordTest, ParseToleratesMissingKeysAndRejectsWrongTypes) {
  auto minimal = parse_worker_record(R"({"id":"w","lastSeen":1.7e12})");
  ASSERT_TRUE(minimal) << minimal.error().message;
  EXPECT_EQ(minimal->last_seen_ms, 1'700'000'000'000);
  EXPECT_TRUE(minimal->capabilities.empty());

  auto bad_caps = parse_worker_record(R"({"id":"w","capabilities":"web"})");
  ASSERT_FALSE(bad_caps);
  EXPECT_NE(bad_caps.error().message.find("capabilities"), std::string::npos);
  auto bad_count = parse_worker_record(R"({"id":"w","inFlight":-1})");
  ASSERT_FALSE(bad_count);
  EXPECT_NE(bad_count.error().message.find("inFlight"), std::string::npos);
  EXPECT_FALSE(parse_worker_record(R"({"region":"eu"})"));
  EXPECT_FALSE(parse_worker_record(R"(["id"])"));
  EXPECT_FALSE(parse_worker_record("not json"));
}

TEST(WorkerRecordTest, AgesAreShort) {
  EXPECT_EQ(format_age(0), "0s ago");
  EXPECT_EQ(format_age(2'400), "2s ago");
  EXPECT_EQ(format_age(-5'000), "0s ago");  // skewed clocks
  EXPECT_EQ(format_age(119'000), "119s ago");
  EXPECT_EQ(format_age(5 * 60'000), "5m ago");
  EXPECT_EQ(format_age(3 * 3'600'000), "3h ago");
  EXPECT_EQ(format_age(3 * 86'400'000LL), "3d ago");
}

TEST(WorkerTableTest, EmptyFleetSaysSo) {
  EXPECT_EQ(format_worker_table({}, 0), "no workers registered\n");
}

TEST(WorkerTableTest, SortedByRegionThenIdWithAlignedColumns) {
  const int64_t now = 1'700'000'010'000;
  auto text =
      format_worker_table({record("us-2", "us-east", {"web"}, 0, 10, now - 1'000),
                           record("eu-10", "eu-west", {"web", "tcp", "ping"}, 12, 50, now - 2'000),
                           record("eu-1", "eu-west", {}, 1, 5, now - 61'000)},
                          now);
  auto l = lines(text);
  ASSERT_EQ(l.size(), 4u) << text;
  EXPECT_EQ(l[0], "ID     REGION   CAPABILITIES  IN-FLIGHT/CONCURRENCY  LAST SEEN  VERSION  HOST");
  EXPECT_EQ(l[1],
            "eu-1   eu-west  -             1/5                    61s ago    0.5.0    host-eu-1");
  EXPECT_EQ(l[2],
            "eu-10  eu-west  web,tcp,ping  12/50                  2s ago     0.5.0    host-eu-10");
  EXPECT_EQ(l[3],
            "us-2   us-east  web           0/10                   1s ago     0.5.0    host-us-2");
}

}  // namespace
}  // namespace guardant::engine
