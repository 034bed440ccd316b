// The result record format (shared/spec/jobs-and-results.md) and its text.
#include "results/check_record.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cstdio>
#include <fstream>
#include <limits>
#include <sstream>

#include "results/json_lines_sink.hpp"
#include "results/json_text.hpp"

using namespace guardant::engine;
namespace json = boost::json;

namespace {
RecordContext context() {
  RecordContext c;
  c.service_id = "svc-7";
  c.nest_id = "nest-42";
  c.worker_id = "eu-west-1";
  c.region = "eu-west";
  c.probe_type = "web";
  c.plugin_name = "guardant-web";
  c.plugin_version = "1.0.0";
  c.checked_at_ms = 1764849600123;
  return c;
}
}  // namespace

TEST(ResultRecord, UpResultHasEveryFieldOfTheSpec) {
  CheckResult r;
  r.status = CheckStatus::Up;
  r.protocol_code = 200;
  r.response_time_ms = 123.4;
  r.message = "HTTP 200";
  r.details_json = R"({"ip":"127.0.0.1","family":4})";
  r.timings = CheckTimings{1.2, 10.5, 30.1, -1, 70.3, 11.3, 123.4};
  auto text = to_json_text(make_check_record(r, context()));
  EXPECT_EQ(text,
            R"({"status":"up","responseTime":123.4,"message":"HTTP 200","statusCode":200,)"
            R"("timings":{"resolve":1.2,"connect":10.5,"tls":30.1,"wait":70.3,"transfer":11.3,)"
            R"("total":123.4},"failure":null,"details":{"ip":"127.0.0.1","family":4},)"
            R"("serviceId":"svc-7","nestId":"nest-42","workerId":"eu-west-1","region":"eu-west",)"
            R"("checkedAt":1764849600123,"probe":{"type":"web","plugin":"guardant-web",)"
            R"("version":"1.0.0"}})");
}

TEST(ResultRecord, FailureCarriesReasonPhaseAndDetail) {
  auto r = CheckResult::failed(CheckStatus::Down, "connect_refused", "connect",
                               "connection refused by 127.0.0.1:9", 0.3333333);
  auto o = make_check_record(r, context());
  EXPECT_EQ(o.at("status").as_string(), "down");
  EXPECT_EQ(o.at("failure").at("reason").as_string(), "connect_refused");
  EXPECT_EQ(o.at("failure").at("phase").as_string(), "connect");
  EXPECT_DOUBLE_EQ(o.at("responseTime").as_double(), 0.333) << "rounded to microseconds";
  auto empty_phase = CheckResult::failed(CheckStatus::Down, "timeout", "", "no result");
  EXPECT_TRUE(make_check_record(empty_phase, context()).at("failure").at("phase").is_null());
}

TEST(ResultRecord, InvalidPluginDetailsNeverBreakTheRecord) {
  CheckResult r;
  r.status = CheckStatus::Up;
  r.details_json = "{not json";
  auto o = make_check_record(r, context());
  ASSERT_TRUE(o.at("details").is_object());
  EXPECT_TRUE(o.at("details").as_object().contains("invalidDetails"));
  r.details_json = "[1,2]";
  EXPECT_TRUE(make_check_record(r, context()).at("details").as_object().contains("invalidDetails"));
  // The text always parses back.
  EXPECT_NO_THROW(json::parse(to_json_text(o)));
}

TEST(ResultRecord, JsonTextUsesShortestNumbersAndEscapesStrings) {
  json::value v = {{"a", 0.24},
                   {"b", 1e-7},
                   {"c", 3.0},
                   {"s", "quote\" nl\n é"},
                   {"n", nullptr},
                   {"i", -5},
                   {"inf", std::numeric_limits<double>::infinity()}};
  auto text = to_json_text(v);
  EXPECT_NE(text.find(R"("a":0.24)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("b":1e-07)"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("s":"quote\" nl\n é")"), std::string::npos) << text;
  EXPECT_NE(text.find(R"("inf":null)"), std::string::npos) << text;
  auto back = json::parse(text);
  EXPECT_DOUBLE_EQ(back.at("a").as_double(), 0.24);
  EXPECT_DOUBLE_EQ(back.at("c").to_number<double>(), 3.0);
}

TEST(ResultRecord, JsonLinesSinkWritesWholeLinesAndReportsOpenErrors) {
  char tmpl[] = "/tmp/guardant-jsonl-XXXXXX";
  int fd = ::mkstemp(tmpl);
  ::close(fd);
  {
    auto sink = JsonLinesSink::open(tmpl);
    ASSERT_TRUE(sink);
    ASSERT_TRUE(sink->write(json::object{{"n", 1}}));
    ASSERT_TRUE(sink->write(json::object{{"n", 2}}));
  }
  std::ifstream in(tmpl);
  std::stringstream ss;
  ss << in.rdbuf();
  EXPECT_EQ(ss.str(), "{\"n\":1}\n{\"n\":2}\n");
  std::remove(tmpl);
  auto bad = JsonLinesSink::open("/nonexistent-dir/results.jsonl");
  ASSERT_FALSE(bad);
  EXPECT_EQ(bad.error().message,
            "cannot open results file /nonexistent-dir/results.jsonl: No such file or directory");
}
