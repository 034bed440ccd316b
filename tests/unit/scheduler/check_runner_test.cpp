// Slots, host-owned deadlines and draining, on a manual clock: a 30-second
// timeout takes microseconds. Probes are the C fixture plugin, loaded for real.
#include "scheduler/check_runner.hpp"

#include <gtest/gtest.h>

#include <vector>

#include "support/engine_harness.hpp"

using namespace guardant::engine;
using namespace std::chrono_literals;
using guardant::test::fixture;
using guardant::test::ManualHarness;

namespace {

struct RunnerTest : ::testing::Test {
  ManualHarness h;
  std::vector<CheckReport> reports;

  void SetUp() override {
    ASSERT_TRUE(h.registry.load_file(fixture("fixture_behaviours")));
    ASSERT_TRUE(h.registry.load_file(fixture("fixture_throwing")));
  }
  CheckJob job(const std::string& type, std::chrono::milliseconds timeout = 30s,
               const std::string& config = "{}") {
    CheckJob j;
    j.check_id = type + ":" + std::to_string(reports.size());
    j.type = type;
    j.target = "t";
    j.timeout = timeout;
    j.config_json = config;
    return j;
  }
  CheckRunner::Callback collect() {
    return [this](CheckReport r) { reports.push_back(std::move(r)); };
  }
  void advance(Nanos d) {
    h.clock.advance(d);
    h.settle();
  }
};

}  // namespace

TEST_F(RunnerTest, HostDeadlineRecordsDownTimeout) {
  CheckRunner runner(h.registry, h.clock, 4);
  runner.submit(job("never", 30s), collect());
  h.settle();
  advance(29'999ms);
  EXPECT_TRUE(reports.empty());
  EXPECT_EQ(runner.in_flight(), 1u);
  advance(1ms);
  ASSERT_EQ(reports.size(), 1u);
  const auto& r = reports[0];
  EXPECT_TRUE(r.timed_out);
  EXPECT_EQ(r.result.status, CheckStatus::Down);
  ASSERT_TRUE(r.result.failure);
  EXPECT_EQ(r.result.failure->reason, "timeout");
  EXPECT_EQ(r.result.failure->detail, "no result within 30000 ms");
  EXPECT_DOUBLE_EQ(r.result.response_time_ms, 30000.0);
  EXPECT_EQ(r.duration_ms(), 30000.0);
  EXPECT_EQ(runner.in_flight(), 0u) << "a timed-out check frees its slot";
}

TEST_F(RunnerTest, LateCompletionIsDroppedAndCounted) {
  CheckRunner runner(h.registry, h.clock, 4);
  runner.submit(job("late", 30s, R"({"delay_ms": 40000})"), collect());
  advance(30s);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_TRUE(reports[0].timed_out);
  advance(10s);  // the plugin completes now, ten seconds too late
  EXPECT_EQ(reports.size(), 1u) << "the late result must not be reported";
  EXPECT_EQ(h.late, 1);
  EXPECT_EQ(h.registry.outstanding_checks(), 0u);
}

TEST_F(RunnerTest, CppProbeThatIgnoresCancelIsStillReleased) {
  CheckRunner runner(h.registry, h.clock, 4);
  runner.submit(job("hang", 5s), collect());
  advance(5s);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].result.failure->reason, "timeout");
  EXPECT_EQ(h.late, 1);
  EXPECT_EQ(h.registry.outstanding_checks(), 0u);
}

TEST_F(RunnerTest, CompletionBeforeDeadlineCancelsTheDeadline) {
  CheckRunner runner(h.registry, h.clock, 4);
  runner.submit(job("delayed", 30s, R"({"delay_ms": 250})"), collect());
  advance(250ms);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_FALSE(reports[0].timed_out);
  EXPECT_EQ(reports[0].result.status, CheckStatus::Up);
  EXPECT_DOUBLE_EQ(reports[0].duration_ms(), 250.0);
  EXPECT_EQ(h.clock.pending(), 0u) << "the deadline timer must be gone";
}

TEST_F(RunnerTest, SlotsLimitConcurrencyAndQueueIsFifo) {
  CheckRunner runner(h.registry, h.clock, 2);
  for (int i = 0; i < 5; ++i) {
    auto j = job("delayed", 30s, R"({"delay_ms": 1000})");
    j.check_id = "c" + std::to_string(i);
    runner.submit(j, collect());
  }
  EXPECT_EQ(runner.in_flight(), 2u);
  EXPECT_EQ(runner.queued(), 3u);
  advance(1s);
  EXPECT_EQ(reports.size(), 2u);
  EXPECT_EQ(runner.in_flight(), 2u);
  advance(1s);
  advance(1s);
  ASSERT_EQ(reports.size(), 5u);
  for (int i = 0; i < 5; ++i) EXPECT_EQ(reports[i].job.check_id, "c" + std::to_string(i));
}

TEST_F(RunnerTest, RefusedChecksAreReportedWithTheReasonAndFreeTheSlot) {
  CheckRunner runner(h.registry, h.clock, 1);
  runner.submit(job("badconfig"), collect());
  runner.submit(job("nosuchtype"), collect());
  ASSERT_EQ(reports.size(), 2u);
  ASSERT_TRUE(reports[0].refused);
  EXPECT_EQ(reports[0].refused->code, "invalid_config");
  EXPECT_EQ(reports[0].result.failure->reason, "invalid_config");
  EXPECT_EQ(reports[1].refused->code, "unknown_type");
  EXPECT_EQ(runner.in_flight(), 0u);
}

TEST_F(RunnerTest, DrainWaitsForInFlightChecks) {
  CheckRunner runner(h.registry, h.clock, 1);
  runner.submit(job("delayed", 30s, R"({"delay_ms": 2000})"), collect());
  runner.submit(job("instant"), collect());  // queued behind the slot
  bool drained = false;
  runner.drain(10s, [&] { drained = true; });
  ASSERT_EQ(reports.size(), 1u) << "queued work is handed back at once";
  EXPECT_EQ(reports[0].refused->code, "shutting_down");
  EXPECT_FALSE(runner.submit(job("instant"), collect()));
  EXPECT_FALSE(drained);
  advance(2s);
  EXPECT_TRUE(drained);
  ASSERT_EQ(reports.size(), 2u);
  EXPECT_EQ(reports[1].result.status, CheckStatus::Up);
}

TEST_F(RunnerTest, DrainTimeoutAbandonsWhatIsLeft) {
  CheckRunner runner(h.registry, h.clock, 2);
  runner.submit(job("never", 60s), collect());
  bool drained = false;
  runner.drain(5s, [&] { drained = true; });
  advance(4'999ms);
  EXPECT_FALSE(drained);
  advance(1ms);
  EXPECT_TRUE(drained);
  ASSERT_EQ(reports.size(), 1u);
  EXPECT_EQ(reports[0].result.status, CheckStatus::Inconclusive);
  EXPECT_EQ(h.clock.pending(), 0u);
}
