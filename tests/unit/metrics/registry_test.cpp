#include "metrics/registry.hpp"

#include <gtest/gtest.h>

#include <stdexcept>
#include <thread>

namespace guardant::engine::metrics {
namespace {

TEST(MetricsFormat, Values) {
  EXPECT_EQ(format_value(0), "0");
  EXPECT_EQ(format_value(3), "3");
  EXPECT_EQ(format_value(0.005), "0.005");
  EXPECT_EQ(format_value(2.5), "2.5");
  EXPECT_EQ(format_value(-1.5), "-1.5");
  EXPECT_EQ(format_value(1e6), "1e+06");
  EXPECT_EQ(format_value(1764849600), "1764849600");
  EXPECT_EQ(format_value(std::numeric_limits<double>::infinity()), "+Inf");
  EXPECT_EQ(format_value(-std::numeric_limits<double>::infinity()), "-Inf");
  EXPECT_EQ(format_value(std::numeric_limits<double>::quiet_NaN()), "NaN");
}

TEST(MetricsFormat, Escaping) {
  EXPECT_EQ(escape_label_value(R"(a\b"c)"
                               "\n"
                               "d"),
            R"(a\\b\"c\nd)");
  EXPECT_EQ(escape_help("x\\y\n\"z\""), R"(x\\y\n"z")");
}

TEST(MetricsRegistry, CounterExposition) {
  Registry r;
  auto& checks = r.counter("guardant_checks_total", "Checks finished.", {"type", "status"});
  checks.labels({"http", "up"}).inc();
  checks.labels({"http", "up"}).inc(2);
  checks.labels({"dns", "down"}).inc();
  checks.labels({"http", "down"}).inc(0.5);
  EXPECT_EQ(r.render(),
            "# HELP guardant_checks_total Checks finished.\n"
            "# TYPE guardant_checks_total counter\n"
            "guardant_checks_total{type=\"dns\",status=\"down\"} 1\n"
            "guardant_checks_total{type=\"http\",status=\"down\"} 0.5\n"
            "guardant_checks_total{type=\"http\",status=\"up\"} 3\n");
}

TEST(MetricsRegistry, CounterNeverDecreases) {
  Registry r;
  auto& c = r.counter("c_total", "h").labels();
  c.inc(2);
  c.inc(-1);
  c.inc(std::numeric_limits<double>::quiet_NaN());
  EXPECT_EQ(c.value(), 2);
}

TEST(MetricsRegistry, UnlabeledSeriesRenderZeroBeforeFirstUse) {
  Registry r;
  r.counter("a_total", "A.");
  r.gauge("b", "B.");
  r.counter("c_total", "C.", {"kind"});  // labeled: no series until used
  EXPECT_EQ(r.render(),
            "# HELP a_total A.\n# TYPE a_total counter\na_total 0\n"
            "# HELP b B.\n# TYPE b gauge\nb 0\n"
            "# HELP c_total C.\n# TYPE c_total counter\n");
}

TEST(MetricsRegistry, GaugeSetIncDec) {
  Registry r;
  auto& g = r.gauge("guardant_checks_in_flight", "Checks running.").labels();
  g.set(5);
  g.inc();
  g.dec(2);
  EXPECT_EQ(g.value(), 4);
  EXPECT_EQ(r.render(),
            "# HELP guardant_checks_in_flight Checks running.\n"
            "# TYPE guardant_checks_in_flight gauge\n"
            "guardant_checks_in_flight 4\n");
}

TEST(MetricsRegistry, HistogramExposition) {
  Registry r;
  auto& h = r.histogram("d_seconds", "Durations.", {0.125, 1, 2.5}, {"type"});
  auto& http = h.labels({"http"});
  http.observe(0.0625);
  http.observe(0.125);  // le is inclusive
  http.observe(0.5);
  http.observe(100);
  EXPECT_EQ(r.render(),
            "# HELP d_seconds Durations.\n"
            "# TYPE d_seconds histogram\n"
            "d_seconds_bucket{type=\"http\",le=\"0.125\"} 2\n"
            "d_seconds_bucket{type=\"http\",le=\"1\"} 3\n"
            "d_seconds_bucket{type=\"http\",le=\"2.5\"} 3\n"
            "d_seconds_bucket{type=\"http\",le=\"+Inf\"} 4\n"
            "d_seconds_sum{type=\"http\"} 100.6875\n"
            "d_seconds_count{type=\"http\"} 4\n");
  EXPECT_EQ(http.count(), 4u);
  EXPECT_EQ(http.sum(), 100.6875);
}

TEST(MetricsRegistry, UnlabeledHistogram) {
  Registry r;
  r.histogram("h", "H.", {1}).labels().observe(0.5);
  EXPECT_EQ(r.render(),
            "# HELP h H.\n# TYPE h histogram\n"
            "h_bucket{le=\"1\"} 1\n"
            "h_bucket{le=\"+Inf\"} 1\n"
            "h_sum 0.5\n"
            "h_count 1\n");
}

TEST(MetricsRegistry, LabelAndHelpEscaping) {
  Registry r;
  r.counter("e_total", "Line one\nback\\slash \"quoted\"", {"reason"})
      .labels({"say \"hi\"\\\nbye"})
      .inc();
  EXPECT_EQ(r.render(),
            "# HELP e_total Line one\\nback\\\\slash \"quoted\"\n"
            "# TYPE e_total counter\n"
            "e_total{reason=\"say \\\"hi\\\"\\\\\\nbye\"} 1\n");
}

TEST(MetricsRegistry, FamiliesRenderInRegistrationOrder) {
  Registry r;
  r.gauge("zz", "Z.");
  r.gauge("aa", "A.");
  auto text = r.render();
  EXPECT_LT(text.find("# HELP zz"), text.find("# HELP aa"));
}

TEST(MetricsRegistry, CallbackMetrics) {
  Registry r;
  double v = 7;
  r.gauge_fn("q_depth", "Queue depth.", [&] { return std::optional<double>(v); });
  r.counter_fn("missing_total", "Not available.", [] { return std::optional<double>(); });
  r.gauge_fn("broken", "Throws.", []() -> std::optional<double> { throw std::runtime_error("x"); });
  EXPECT_EQ(r.render(),
            "# HELP q_depth Queue depth.\n# TYPE q_depth gauge\nq_depth 7\n"
            "# HELP missing_total Not available.\n# TYPE missing_total counter\n"
            "# HELP broken Throws.\n# TYPE broken gauge\n");
  v = 8;
  EXPECT_NE(r.render().find("q_depth 8\n"), std::string::npos);
}

TEST(MetricsRegistry, SameRegistrationSharesFamily) {
  Registry r;
  auto& a = r.counter("x_total", "X.", {"type"});
  auto& b = r.counter("x_total", "X again.", {"type"});
  EXPECT_EQ(&a, &b);
  a.labels({"http"}).inc();
  EXPECT_EQ(b.labels({"http"}).value(), 1);
  EXPECT_EQ(&a.labels({"http"}), &b.labels({"http"}));  // handles are stable
}

TEST(MetricsRegistry, ConflictsAndBadNamesThrow) {
  Registry r;
  r.counter("x_total", "X.", {"type"});
  EXPECT_THROW(r.gauge("x_total", "X."), std::invalid_argument);
  EXPECT_THROW(r.counter("x_total", "X.", {"kind"}), std::invalid_argument);
  r.histogram("h", "H.", {1, 2});
  EXPECT_THROW(r.histogram("h", "H.", {1, 3}), std::invalid_argument);
  EXPECT_THROW(r.counter("bad-name", "B."), std::invalid_argument);
  EXPECT_THROW(r.counter("1abc", "B."), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "B.", {"bad label"}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "B.", {"__reserved"}), std::invalid_argument);
  EXPECT_THROW(r.counter("ok_total", "B.", {"a", "a"}), std::invalid_argument);
  EXPECT_THROW(r.histogram("ok2", "B.", {1}, {"le"}), std::invalid_argument);
  EXPECT_THROW(r.histogram("ok3", "B.", {2, 1}), std::invalid_argument);
  EXPECT_THROW(r.histogram("ok4", "B.", {1, std::numeric_limits<double>::infinity()}),
               std::invalid_argument);
  auto& c = r.counter("y_total", "Y.", {"a", "b"});
  EXPECT_THROW(c.labels({"only-one"}), std::invalid_argument);
  // Nothing half-registered after the failures.
  EXPECT_EQ(r.render().find("ok"), std::string::npos);
}

TEST(MetricsRegistry, ConcurrentUpdatesAndRenders) {
  Registry r;
  auto& fam = r.counter("n_total", "N.", {"type"});
  auto& h = r.histogram("h_seconds", "H.", {0.5}, {"type"});
  std::thread reader([&] {
    for (int i = 0; i < 200; ++i) (void)r.render();
  });
  for (int i = 0; i < 20000; ++i) {
    fam.labels({i % 2 ? "a" : "b"}).inc();
    h.labels({"x"}).observe(i % 2 ? 0.25 : 1.0);
  }
  reader.join();
  EXPECT_EQ(fam.labels({"a"}).value() + fam.labels({"b"}).value(), 20000);
  EXPECT_EQ(h.labels({"x"}).count(), 20000u);
}

TEST(MetricsRegistry, DefaultDurationBuckets) {
  const auto& b = default_duration_buckets();
  ASSERT_FALSE(b.empty());
  EXPECT_EQ(b.front(), 0.005);
  EXPECT_EQ(b.back(), 60);
}

}  // namespace
}  // namespace guardant::engine::metrics
