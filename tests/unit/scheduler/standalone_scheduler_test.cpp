// Standalone scheduling on a manual clock: spread, jitter bounds, steady
// cadence without drift, and no overlapping runs of one monitor.
#include "scheduler/standalone_scheduler.hpp"

#include <gtest/gtest.h>

#include <map>

#include "support/engine_harness.hpp"

using namespace guardant::engine;
using namespace std::chrono_literals;
using guardant::test::fixture;
using guardant::test::ManualHarness;

namespace {

MonitorSettings monitor(const std::string& id, std::chrono::milliseconds interval,
                        const std::string& type = "instant", const std::string& config = "{}") {
  MonitorSettings m;
  m.id = id;
  m.type = type;
  m.target = "t-" + id;
  m.interval = interval;
  m.config_json = config;
  return m;
}

struct SchedulerTest : ::testing::Test {
  ManualHarness h;
  std::map<std::string, std::vector<Nanos>> started;  // monitor → finish times
  void SetUp() override { ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours"))); }
  StandaloneScheduler::ResultHandler record() {
    return [this](const MonitorSettings& m, const CheckReport& r) {
      started[m.id].push_back(r.started);
    };
  }
  void advance_in_steps(Nanos total, Nanos step = 10ms) {
    for (Nanos t{0}; t < total; t += step) {
      h.clock.advance(step);
      h.settle();
    }
  }
};

}  // namespace

TEST_F(SchedulerTest, SpreadsFirstRunsOverTheInterval) {
  CheckRunner runner(h.registry, h.clock, 10);
  std::vector<MonitorSettings> ms;
  for (int i = 0; i < 4; ++i) ms.push_back(monitor("m" + std::to_string(i), 60s));
  StandaloneScheduler s(h.clock, runner, ms, 10s, record(), /*seed=*/42);
  auto offsets = s.first_offsets();
  ASSERT_EQ(offsets.size(), 4u);
  EXPECT_EQ(offsets[0], 0s);
  EXPECT_EQ(offsets[1], 15s);
  EXPECT_EQ(offsets[2], 30s);
  EXPECT_EQ(offsets[3], 45s);

  auto t0 = h.clock.now();
  s.start();
  advance_in_steps(2min);
  for (int i = 0; i < 4; ++i) {
    auto& runs = started["m" + std::to_string(i)];
    ASSERT_EQ(runs.size(), 2u) << "monitor " << i;
    auto first = runs[0] - t0;
    EXPECT_GE(first, offsets[i]);
    EXPECT_LE(first, offsets[i] + StandaloneScheduler::max_jitter(60s) + 10ms);
    // The cadence follows the schedule (interval apart, give or take jitter).
    auto gap = runs[1] - runs[0];
    EXPECT_GE(gap, 60s - 1s - 10ms);
    EXPECT_LE(gap, 60s + 1s + 10ms);
  }
}

TEST_F(SchedulerTest, JitterIsSmallAndBounded) {
  EXPECT_EQ(StandaloneScheduler::max_jitter(10s), 200ms);
  EXPECT_EQ(StandaloneScheduler::max_jitter(5min), 1s);
}

TEST_F(SchedulerTest, NoDriftOverManyRuns) {
  CheckRunner runner(h.registry, h.clock, 10);
  StandaloneScheduler s(h.clock, runner, {monitor("m", 1s, "delayed", R"({"delay_ms": 300})")}, 10s,
                        record(), 7);
  auto t0 = h.clock.now();
  s.start();
  advance_in_steps(100s + 50ms);
  auto& runs = started["m"];
  // Each check takes 300 ms; a schedule computed from finish times would have
  // drifted to ~77 runs. Ours keeps the 1 s cadence.
  EXPECT_GE(runs.size(), 99u);
  EXPECT_LE(runs.size(), 101u);
  EXPECT_LE(runs.back() - t0, 100s + 50ms);
}

TEST_F(SchedulerTest, SlowCheckSkipsTicksInsteadOfOverlapping) {
  CheckRunner runner(h.registry, h.clock, 10);
  StandaloneScheduler s(h.clock, runner, {monitor("slow", 1s, "delayed", R"({"delay_ms": 2500})")},
                        10s, record(), 1);
  s.start();
  advance_in_steps(10s);
  EXPECT_GT(s.skipped(), 0u);
  EXPECT_LE(runner.in_flight(), 1u) << "one monitor never runs twice at once";
  EXPECT_GE(started["slow"].size(), 3u);
}

TEST_F(SchedulerTest, StopCancelsEveryTimer) {
  CheckRunner runner(h.registry, h.clock, 10);
  StandaloneScheduler s(h.clock, runner, {monitor("a", 5s), monitor("b", 7s)}, 10s, record(), 3);
  s.start();
  EXPECT_EQ(h.clock.pending(), 2u);
  s.stop();
  EXPECT_EQ(h.clock.pending(), 0u);
  advance_in_steps(20s, 1s);
  EXPECT_TRUE(started.empty());
}
