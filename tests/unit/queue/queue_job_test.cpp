#include "queue/queue_job.hpp"

#include <gtest/gtest.h>

#include <boost/json/parse.hpp>

namespace guardant::engine {
namespace {

QueueJob job_with_opts(const char* opts) {
  QueueJob j;
  j.opts = boost::json::parse(opts).as_object();
  return j;
}

TEST(QueueJob, KeepJobsInEveryForm) {
  EXPECT_EQ(keep_jobs_from(nullptr).count, -1);
  auto t = boost::json::value(true), f = boost::json::value(false), n = boost::json::value(5);
  EXPECT_EQ(keep_jobs_from(&t).count, 0);
  EXPECT_EQ(keep_jobs_from(&f).count, -1);
  EXPECT_EQ(keep_jobs_from(&n).count, 5);
  auto o = boost::json::parse(R"({"age":3600,"count":100,"limit":50})");
  auto k = keep_jobs_from(&o);
  EXPECT_EQ(k.count, 100);
  EXPECT_EQ(k.age_s, 3600);
  EXPECT_EQ(k.limit, 50);
  auto age_only = boost::json::parse(R"({"age":60})");
  EXPECT_EQ(keep_jobs_from(&age_only).count, -1);
  EXPECT_EQ(job_with_opts(R"({"removeOnFail":{"age":86400}})").keep_on_fail().age_s, 86400);
}

TEST(QueueJob, BackoffFixedExponentialAndJitter) {
  std::mt19937_64 rng(42);
  auto fixed = job_with_opts(R"({"backoff":{"type":"fixed","delay":1000}})").backoff();
  EXPECT_EQ(fixed.delay_for(1, rng), 1000);
  EXPECT_EQ(fixed.delay_for(3, rng), 1000);
  // A bare number is BullMQ's shorthand for fixed.
  EXPECT_EQ(job_with_opts(R"({"backoff":250})").backoff().delay_for(2, rng), 250);
  auto expo = job_with_opts(R"({"backoff":{"type":"exponential","delay":500}})").backoff();
  EXPECT_EQ(expo.delay_for(1, rng), 500);
  EXPECT_EQ(expo.delay_for(2, rng), 1000);
  EXPECT_EQ(expo.delay_for(3, rng), 2000);
  auto jitter =
      job_with_opts(R"({"backoff":{"type":"exponential","delay":1000,"jitter":0.5}})").backoff();
  for (int i = 0; i < 100; ++i) {
    auto d = jitter.delay_for(2, rng);  // X = 2000: floor(rand*1000 + 1000)
    EXPECT_GE(d, 1000);
    EXPECT_LT(d, 2000);
  }
  EXPECT_EQ(job_with_opts("{}").backoff().delay_for(1, rng), 0);
  EXPECT_EQ(job_with_opts(R"({"backoff":{"type":"custom","delay":5}})").backoff().delay_for(1, rng),
            0);
}

TEST(QueueJob, AttemptsAndStacktraceLimit) {
  EXPECT_EQ(job_with_opts("{}").attempts(), 1);
  EXPECT_EQ(job_with_opts(R"({"attempts":0})").attempts(), 1);
  EXPECT_EQ(job_with_opts(R"({"attempts":3})").attempts(), 3);
  auto j = job_with_opts(R"({"stackTraceLimit":2})");
  j.fields["stacktrace"] = R"(["one","two"])";
  EXPECT_EQ(j.stacktrace_with("three"), R"(["two","three"])");
  auto fresh = job_with_opts("{}");
  EXPECT_EQ(fresh.stacktrace_with("a \"quoted\" reason"), R"(["a \"quoted\" reason"])");
  fresh.fields["stacktrace"] = "not json";
  EXPECT_EQ(fresh.stacktrace_with("x"), R"(["x"])");
}

TEST(QueueJob, ParsesTheFetchReply) {
  using redis::Reply;
  auto none = parse_fetch_reply(Reply::array({Reply::from_int(0), Reply::from_int(0),
                                              Reply::from_int(0), Reply::from_int(1764849600000)}),
                                "q", "t");
  ASSERT_TRUE(none);
  EXPECT_FALSE(none->job);
  EXPECT_EQ(none->next_delayed_due_ms, 1764849600000);

  auto got = parse_fetch_reply(
      Reply::array(
          {Reply::array({Reply::string("name"), Reply::string("check"), Reply::string("data"),
                         Reply::string("{}"), Reply::string("opts"),
                         Reply::string(R"({"attempts":2})"), Reply::string("atm"),
                         Reply::string("1"), Reply::string("rjk"), Reply::string("sched")}),
           Reply::string("42"), Reply::from_int(0), Reply::from_int(0)}),
      "q", "tok");
  ASSERT_TRUE(got);
  ASSERT_TRUE(got->job);
  EXPECT_EQ(got->job->id, "42");
  EXPECT_EQ(got->job->token, "tok");
  EXPECT_EQ(got->job->attempts_made, 1);
  EXPECT_EQ(got->job->attempts(), 2);
  EXPECT_EQ(got->job->scheduler_id, "sched");

  EXPECT_FALSE(parse_fetch_reply(Reply::from_int(3), "q", "t"));
}

}  // namespace
}  // namespace guardant::engine
