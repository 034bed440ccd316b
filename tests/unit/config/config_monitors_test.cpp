// Standalone monitors: intervals, their config table as JSON, ids, types.
#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>

#include "config/config.hpp"
#include "config_test_util.hpp"

namespace guardant::engine {
namespace {

using std::chrono::milliseconds;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using testing::parse_error;
using testing::parse_ok;
using ::testing::StartsWith;

std::string monitor_with(const std::string& extra) {
  return "[[monitor]]\nid = \"m\"\ntype = \"tcp\"\ntarget = \"h:1\"\n" + extra;
}

TEST(ConfigMonitors, AllFieldsAreRead) {
  const Config c = parse_ok(
      "[plugins]\n"
      "required = [\"dns\", \"tcp\"]\n"
      "\n"
      "[[monitor]]\n"
      "id = \"web\"\n"
      "type = \"http\"\n"
      "target = \"https://example.com\"\n"
      "interval = \"30s\"\n"
      "timeout_ms = 5000\n"
      "nest_id = \"nest-1\"\n"
      "\n"
      "[[monitor]]\n"
      "id = \"db\"\n"
      "type = \"tcp\"\n"
      "target = \"db:5432\"\n"
      "\n"
      "[[monitor]]\n"
      "id = \"api\"\n"
      "type = \"http\"\n"
      "target = \"https://api.example.com\"\n");
  ASSERT_EQ(c.monitors.size(), 3u);
  const MonitorSettings& web = c.monitors[0];
  EXPECT_EQ(web.id, "web");
  EXPECT_EQ(web.type, "http");
  EXPECT_EQ(web.target, "https://example.com");
  EXPECT_EQ(web.interval, milliseconds(30'000));
  EXPECT_EQ(web.timeout_ms, 5'000u);
  EXPECT_EQ(web.nest_id, "nest-1");
  EXPECT_EQ(web.config_json, "{}");
  EXPECT_EQ(web.line, 4);
  const MonitorSettings& db = c.monitors[1];
  EXPECT_EQ(db.interval, milliseconds(60'000));  // default
  EXPECT_EQ(db.timeout_ms, 0u);                  // default: worker.default_timeout_ms
  EXPECT_EQ(db.nest_id, "");
  EXPECT_EQ(db.line, 12);
  EXPECT_EQ(c.monitors[2].line, 17);
  // Standalone: each monitor's type must load; listed once, after the file's.
  EXPECT_THAT(c.plugins.required, ElementsAre("dns", "tcp", "http"));
}

TEST(ConfigMonitors, IntervalForms) {
  const std::pair<const char*, long> cases[] = {
      {"30", 30'000},      {"0.5", 500},       {"1.25", 1'250},         {"\"30s\"", 30'000},
      {"\"5m\"", 300'000}, {"\"500ms\"", 500}, {"\"1h\"", 3'600'000},   {"\"1m30s\"", 90'000},
      {"\"1.5s\"", 1'500}, {"\"100ms\"", 100}, {"\"24h\"", 86'400'000},
  };
  for (const auto& [text, ms] : cases) {
    const Config c = parse_ok(monitor_with("interval = " + std::string(text) + "\n"));
    ASSERT_EQ(c.monitors.size(), 1u) << text;
    EXPECT_EQ(c.monitors[0].interval, milliseconds(ms)) << text;
  }
}

TEST(ConfigMonitors, BadIntervals) {
  const std::string forms =
      "expected an interval (seconds as a number, or a string like \"30s\", \"5m\", "
      "\"500ms\")";
  EXPECT_EQ(parse_error(monitor_with("interval = \"fast\"\n")),
            "worker.toml:5:12: monitor[0].interval: " + forms + ", got string \"fast\"");
  EXPECT_EQ(parse_error(monitor_with("interval = \"30\"\n")),
            "worker.toml:5:12: monitor[0].interval: " + forms + ", got string \"30\"");
  EXPECT_EQ(parse_error(monitor_with("interval = true\n")),
            "worker.toml:5:12: monitor[0].interval: " + forms + ", got boolean true");
  EXPECT_EQ(parse_error(monitor_with("interval = \"50ms\"\n")),
            "worker.toml:5:12: monitor[0].interval: expected an interval between 100ms and 24h, "
            "got string \"50ms\"");
  EXPECT_EQ(parse_error(monitor_with("interval = 0\n")),
            "worker.toml:5:12: monitor[0].interval: expected an interval between 100ms and 24h, "
            "got integer 0");
  EXPECT_EQ(parse_error(monitor_with("interval = -5\n")),
            "worker.toml:5:12: monitor[0].interval: expected an interval between 100ms and 24h, "
            "got integer -5");
  EXPECT_EQ(parse_error(monitor_with("interval = 99999999999999\n")),
            "worker.toml:5:12: monitor[0].interval: expected an interval between 100ms and 24h, "
            "got integer 99999999999999");
  EXPECT_THAT(parse_error(monitor_with("interval = \"25h\"\n")),
              HasSubstr("between 100ms and 24h, got string \"25h\""));
  EXPECT_THAT(parse_error(monitor_with("interval = nan\n")), HasSubstr(forms + ", got float nan"));
}

TEST(ConfigMonitors, ConfigTableBecomesJson) {
  const Config c =
      parse_ok(monitor_with("[monitor.config]\n"
                            "method = \"GET\"\n"
                            "expect_status = [200, 204]\n"
                            "follow = true\n"
                            "ratio = 0.25\n"
                            "since = 2024-05-01\n"
                            "headers = { Accept = \"text/html\", \"X-Two Words\" = \"y\" }\n"
                            "[monitor.config.tls]\n"
                            "min_version = \"1.2\"\n"));
  ASSERT_EQ(c.monitors.size(), 1u);
  // toml++ tables are ordered by key, so the text is deterministic.
  EXPECT_EQ(c.monitors[0].config_json,
            R"({"expect_status":[200,204],"follow":true,)"
            R"("headers":{"Accept":"text/html","X-Two Words":"y"},"method":"GET",)"
            R"("ratio":2.5E-1,"since":"2024-05-01","tls":{"min_version":"1.2"}})");
}

TEST(ConfigMonitors, ConfigTableRejectsWhatJsonCannotHold) {
  EXPECT_EQ(parse_error(monitor_with("[monitor.config]\nlimits = [1, inf]\n")),
            "worker.toml:6:14: monitor[0].config.limits[1]: expected a finite number (JSON has "
            "no nan or inf), got float inf");
  EXPECT_EQ(parse_error(monitor_with("config = 5\n")),
            "worker.toml:5:10: monitor[0].config: expected a table ([monitor[0].config]), got "
            "integer 5");
}

TEST(ConfigMonitors, RequiredKeysAreNamed) {
  EXPECT_EQ(parse_error("\n[[monitor]]\nid = \"a\"\ntarget = \"h:1\"\n"),
            "worker.toml:2:1: monitor[0].type: required key is missing (expected the probe "
            "type, e.g. \"tcp\" or \"http\")");
  EXPECT_EQ(parse_error("[[monitor]]\nid = \"a\"\ntype = \"tcp\"\n"),
            "worker.toml:1:1: monitor[0].target: required key is missing (expected what to "
            "check, e.g. \"127.0.0.1:3099\")");
  EXPECT_EQ(parse_error("[[monitor]]\ntype = \"tcp\"\ntarget = \"h:1\"\n"),
            "worker.toml:1:1: monitor[0].id: required key is missing (expected a unique, "
            "non-empty string naming this monitor)");
  EXPECT_EQ(parse_error("[[monitor]]\nid = \"\"\ntype = \"tcp\"\ntarget = \"h:1\"\n"),
            "worker.toml:2:6: monitor[0].id: expected a non-empty string, got string \"\"");
}

TEST(ConfigMonitors, SecondMonitorIsIndexedFromZero) {
  EXPECT_THAT(parse_error(monitor_with("\n[[monitor]]\nid = \"n\"\ntype = \"tcp\"\n")),
              StartsWith("worker.toml:6:1: monitor[1].target: required key is missing"));
}

TEST(ConfigMonitors, DuplicateIdNamesBothLines) {
  EXPECT_EQ(parse_error("[[monitor]]\n"
                        "id = \"web\"\ntype = \"tcp\"\ntarget = \"a:1\"\n"
                        "\n"
                        "[[monitor]]\n"
                        "id = \"web\"\ntype = \"tcp\"\ntarget = \"b:1\"\n"),
            "worker.toml:7:6: monitor[1].id: duplicate monitor id \"web\" (first declared at "
            "line 1, again at line 6)");
}

TEST(ConfigMonitors, UnknownMonitorKeyHasHint) {
  EXPECT_EQ(parse_error(monitor_with("timeout = 5\n")),
            "worker.toml:5:1: monitor[0].timeout: unknown key; did you mean 'timeout_ms'?");
  EXPECT_EQ(parse_error(monitor_with("intervall = 5\n")),
            "worker.toml:5:1: monitor[0].intervall: unknown key; did you mean 'interval'?");
}

TEST(ConfigMonitors, SingleBracketTableIsExplained) {
  EXPECT_EQ(parse_error("[monitor]\nid = \"a\"\n"),
            "worker.toml:1:1: monitor: expected an array of tables (write [[monitor]], not "
            "[monitor]), got a table");
}

}  // namespace
}  // namespace guardant::engine
