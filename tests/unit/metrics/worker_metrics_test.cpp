#include "metrics/worker_metrics.hpp"

#include <gtest/gtest.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <optional>
#include <string>

namespace guardant::engine {
namespace {

// The value of the sample line that starts with `series` followed by a space.
std::optional<double> sample(const std::string& text, const std::string& series) {
  size_t pos = 0;
  while (pos < text.size()) {
    size_t end = text.find('\n', pos);
    if (end == std::string::npos) end = text.size();
    std::string_view line(text.data() + pos, end - pos);
    if (line.starts_with(series + " "))
      return std::strtod(std::string(line.substr(series.size() + 1)).c_str(), nullptr);
    pos = end + 1;
  }
  return std::nullopt;
}

TEST(MetricsWorker, ChecksAndDurations) {
  WorkerMetrics m;
  m.check_finished("http", "up", 0.02);
  m.check_finished("http", "up", 0.3);
  m.check_finished("http", "down", 45);
  m.check_finished("dns", "inconclusive", 0.001);
  auto text = m.render();
  EXPECT_EQ(sample(text, R"(guardant_checks_total{type="http",status="up"})"), 2);
  EXPECT_EQ(sample(text, R"(guardant_checks_total{type="http",status="down"})"), 1);
  EXPECT_EQ(sample(text, R"(guardant_checks_total{type="dns",status="inconclusive"})"), 1);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="http",le="0.005"})"), 0);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="http",le="0.025"})"), 1);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="http",le="0.5"})"), 2);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="http",le="30"})"), 2);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="http",le="60"})"), 3);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="http",le="+Inf"})"), 3);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_count{type="http"})"), 3);
  EXPECT_DOUBLE_EQ(*sample(text, R"(guardant_check_duration_seconds_sum{type="http"})"), 45.32);
  EXPECT_EQ(sample(text, R"(guardant_check_duration_seconds_bucket{type="dns",le="0.005"})"), 1);
  EXPECT_NE(text.find("# TYPE guardant_check_duration_seconds histogram\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE guardant_checks_total counter\n"), std::string::npos);
}

TEST(MetricsWorker, EngineEvents) {
  WorkerMetrics m;
  m.check_timed_out("tcp");
  m.check_timed_out("tcp");
  m.late_completion("tcp");
  m.check_refused("http", "rate_limited");
  m.check_refused("http", "no_plugin");
  m.check_refused("http", "no_plugin");
  m.set_in_flight(3);
  m.set_slots(64);
  m.plugin_refused();
  m.set_plugins_loaded(5);
  auto text = m.render();
  EXPECT_EQ(sample(text, R"(guardant_check_timeouts_total{type="tcp"})"), 2);
  EXPECT_EQ(sample(text, R"(guardant_late_completions_total{type="tcp"})"), 1);
  EXPECT_EQ(sample(text, R"(guardant_check_errors_total{type="http",reason="rate_limited"})"), 1);
  EXPECT_EQ(sample(text, R"(guardant_check_errors_total{type="http",reason="no_plugin"})"), 2);
  EXPECT_EQ(sample(text, "guardant_checks_in_flight"), 3);
  EXPECT_EQ(sample(text, "guardant_check_slots"), 64);
  EXPECT_EQ(sample(text, "guardant_plugins_refused_total"), 1);
  EXPECT_EQ(sample(text, "guardant_plugins_loaded"), 5);
  m.set_in_flight(0);
  EXPECT_EQ(sample(m.render(), "guardant_checks_in_flight"), 0);
}

TEST(MetricsWorker, UnlabeledMetricsPresentFromTheStart) {
  WorkerMetrics m;
  auto text = m.render();
  EXPECT_EQ(sample(text, "guardant_checks_in_flight"), 0);
  EXPECT_EQ(sample(text, "guardant_check_slots"), 0);
  EXPECT_EQ(sample(text, "guardant_plugins_refused_total"), 0);
  EXPECT_EQ(sample(text, "guardant_plugins_loaded"), 0);
  for (const char* name : {"guardant_checks_total", "guardant_check_timeouts_total",
                           "guardant_late_completions_total", "guardant_check_errors_total"})
    EXPECT_NE(text.find(std::string("# TYPE ") + name + " counter\n"), std::string::npos) << name;
}

TEST(MetricsWorker, ExtensibleThroughRegistry) {
  WorkerMetrics m;
  m.registry().gauge("guardant_queue_depth", "Jobs waiting.", {"queue"}).labels({"eu"}).set(12);
  EXPECT_EQ(sample(m.render(), R"(guardant_queue_depth{queue="eu"})"), 12);
}

TEST(MetricsProcess, PresentAndPlausible) {
  WorkerMetrics m;
  // Burn a little CPU so the counter is measurably positive.
  volatile double x = 0;
  for (int i = 0; i < 20'000'000; ++i) x = x + i * 0.5;
  auto text = m.render();
  EXPECT_NE(text.find("# TYPE process_cpu_seconds_total counter\n"), std::string::npos);
  EXPECT_NE(text.find("# TYPE process_resident_memory_bytes gauge\n"), std::string::npos);

  auto cpu = sample(text, "process_cpu_seconds_total");
  ASSERT_TRUE(cpu);
  EXPECT_GT(*cpu, 0);
  EXPECT_LT(*cpu, 3600);

  auto rss = sample(text, "process_resident_memory_bytes");
  ASSERT_TRUE(rss);
  EXPECT_GT(*rss, 1 << 20);  // a gtest binary is more than 1 MiB resident
  EXPECT_LT(*rss, 16.0 * (1 << 30));

  auto vsz = sample(text, "process_virtual_memory_bytes");
  ASSERT_TRUE(vsz);
  EXPECT_GE(*vsz, *rss);

  auto start = sample(text, "process_start_time_seconds");
  ASSERT_TRUE(start);
  double now =
      std::chrono::duration<double>(std::chrono::system_clock::now().time_since_epoch()).count();
  EXPECT_LE(*start, now + 2);  // clock-tick and btime rounding
  EXPECT_GT(*start, now - 3600);

  auto fds = sample(text, "process_open_fds");
  ASSERT_TRUE(fds);
  EXPECT_GE(*fds, 3);  // stdin, stdout, stderr
  int extra = dup(0);
  ASSERT_GE(extra, 0);
  EXPECT_EQ(sample(m.render(), "process_open_fds"), *fds + 1);
  close(extra);

  auto max = sample(text, "process_max_fds");
  if (max) {
    EXPECT_GE(*max, *fds);
  }
}

}  // namespace
}  // namespace guardant::engine
