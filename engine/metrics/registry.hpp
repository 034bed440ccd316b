// A small Prometheus registry: counters, gauges and histograms with fixed label
// sets, rendered in the text exposition format 0.0.4.
//
// Threading: values are atomics, so the loop thread may update them while
// another thread renders. Creating a series (first use of a label
// combination) and rendering take a per-family mutex; handles returned by
// labels() stay valid for the registry's lifetime, so hot paths can keep them.
#pragma once

#include <algorithm>
#include <atomic>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <initializer_list>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <vector>

namespace guardant::engine::metrics {

enum class MetricType { Counter, Gauge, Histogram };

// A value in exposition syntax: shortest round-trip form ("0.005", "3",
// "1e+06"), "+Inf", "-Inf", "NaN".
std::string format_value(double v);
// Escapes a label value: backslash, double quote and newline.
std::string escape_label_value(std::string_view v);
// Escapes HELP text: backslash and newline.
std::string escape_help(std::string_view v);

// A monotonically increasing value.
class Counter {
 public:
  // Negative and NaN increments are ignored: a counter must never go down,
  // and throwing from a hot path would be worse than dropping the sample.
  void inc(double v = 1.0) noexcept;
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// A value that goes up and down.
class Gauge {
 public:
  void set(double v) noexcept { value_.store(v, std::memory_order_relaxed); }
  void inc(double v = 1.0) noexcept { value_.fetch_add(v, std::memory_order_relaxed); }
  void dec(double v = 1.0) noexcept { value_.fetch_sub(v, std::memory_order_relaxed); }
  double value() const noexcept { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into buckets with upper bounds `le`; +Inf is implicit.
class Histogram {
 public:
  explicit Histogram(const std::vector<double>& bounds);
  void observe(double v) noexcept;
  // Cumulative counts, one per bound plus +Inf last.
  std::vector<uint64_t> cumulative_counts() const;
  double sum() const noexcept { return sum_.load(std::memory_order_relaxed); }
  uint64_t count() const noexcept;

 private:
  const std::vector<double>& bounds_;  // owned by the family, which outlives us
  // Per-bucket (non-cumulative) counts: _count and the +Inf bucket are both
  // derived from them at render time, so a scrape never sees them disagree.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  std::atomic<double> sum_{0.0};
};

// Common part of a metric family: name, help, type, label names.
class FamilyBase {
 public:
  FamilyBase(std::string name, std::string help, MetricType type,
             std::vector<std::string> label_names);
  virtual ~FamilyBase() = default;
  FamilyBase(const FamilyBase&) = delete;
  FamilyBase& operator=(const FamilyBase&) = delete;

  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  MetricType type() const { return type_; }
  const std::vector<std::string>& label_names() const { return label_names_; }
  // Appends HELP, TYPE and every sample line to `out`.
  void render(std::string& out) const;

 protected:
  virtual void render_samples(std::string& out) const = 0;
  // `{a="x",b="y"` without the closing brace (histograms append `le`), or ""
  // when there are no labels.
  std::string open_labels(const std::vector<std::string>& values) const;
  [[noreturn]] void throw_label_count(size_t got) const;

 private:
  std::string name_;
  std::string help_;
  MetricType type_;
  std::vector<std::string> label_names_;
};

namespace detail {
// Orders label-value tuples and lets a span of string_views find a stored
// vector of strings without allocating.
struct LabelValuesLess {
  using is_transparent = void;
  template <class A, class B>
  bool operator()(const A& a, const B& b) const {
    return std::lexicographical_compare(
        a.begin(), a.end(), b.begin(), b.end(),
        [](std::string_view x, std::string_view y) { return x < y; });
  }
};
}  // namespace detail

// A family of series of one kind, keyed by label values.
template <class Series>
class Family : public FamilyBase {
 public:
  using FamilyBase::FamilyBase;

  // The series for these label values (in label-name order), created on
  // first use. Throws std::invalid_argument when the count does not match
  // the family's label names: that is a programming error.
  Series& labels(std::span<const std::string_view> values);
  Series& labels(std::initializer_list<std::string_view> values = {}) {
    return labels(std::span<const std::string_view>(values.begin(), values.size()));
  }

 protected:
  virtual std::unique_ptr<Series> make_series() const = 0;
  void render_samples(std::string& out) const override;
  virtual void render_series(std::string& out, const std::vector<std::string>& values,
                             const Series& s) const = 0;

 private:
  mutable std::mutex mu_;
  std::map<std::vector<std::string>, std::unique_ptr<Series>, detail::LabelValuesLess> series_;
};

class CounterFamily final : public Family<Counter> {
 public:
  CounterFamily(std::string name, std::string help, std::vector<std::string> label_names);

 private:
  std::unique_ptr<Counter> make_series() const override { return std::make_unique<Counter>(); }
  void render_series(std::string& out, const std::vector<std::string>& values,
                     const Counter& s) const override;
};

class GaugeFamily final : public Family<Gauge> {
 public:
  GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names);

 private:
  std::unique_ptr<Gauge> make_series() const override { return std::make_unique<Gauge>(); }
  void render_series(std::string& out, const std::vector<std::string>& values,
                     const Gauge& s) const override;
};

class HistogramFamily final : public Family<Histogram> {
 public:
  // `buckets`: finite upper bounds, strictly increasing, without +Inf.
  HistogramFamily(std::string name, std::string help, std::vector<double> buckets,
                  std::vector<std::string> label_names);
  const std::vector<double>& buckets() const { return bounds_; }

 private:
  std::unique_ptr<Histogram> make_series() const override {
    return std::make_unique<Histogram>(bounds_);
  }
  void render_series(std::string& out, const std::vector<std::string>& values,
                     const Histogram& s) const override;

  std::vector<double> bounds_;
};

// A label-less counter or gauge whose value is read when rendering (process
// metrics, queue depths owned by someone else). nullopt omits the sample.
class CallbackFamily final : public FamilyBase {
 public:
  using Fn = std::function<std::optional<double>()>;
  CallbackFamily(std::string name, std::string help, MetricType type, Fn fn);

 private:
  void render_samples(std::string& out) const override;
  Fn fn_;
};

// Default buckets for check durations, in seconds.
const std::vector<double>& default_duration_buckets();

// Owns metric families and renders them in registration order.
//
// Registering a name again with the same kind and labels (and buckets)
// returns the existing family, so independent components may share one;
// any other clash, or an invalid metric/label name, throws
// std::invalid_argument.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  CounterFamily& counter(std::string name, std::string help,
                         std::vector<std::string> label_names = {});
  GaugeFamily& gauge(std::string name, std::string help, std::vector<std::string> label_names = {});
  HistogramFamily& histogram(std::string name, std::string help, std::vector<double> buckets,
                             std::vector<std::string> label_names = {});
  void counter_fn(std::string name, std::string help, CallbackFamily::Fn fn);
  void gauge_fn(std::string name, std::string help, CallbackFamily::Fn fn);

  // The whole registry in text exposition format 0.0.4.
  std::string render() const;

 private:
  FamilyBase* find(const std::string& name) const;
  template <class F>
  F& add(std::unique_ptr<F> family);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<FamilyBase>> families_;
};

// ---------------------------------------------------------------------------

template <class Series>
Series& Family<Series>::labels(std::span<const std::string_view> values) {
  if (values.size() != label_names().size()) throw_label_count(values.size());
  std::lock_guard lock(mu_);
  auto it = series_.find(values);
  if (it == series_.end())
    it = series_.emplace(std::vector<std::string>(values.begin(), values.end()), make_series())
             .first;
  return *it->second;
}

template <class Series>
void Family<Series>::render_samples(std::string& out) const {
  std::lock_guard lock(mu_);
  for (const auto& [values, series] : series_) render_series(out, values, *series);
}

}  // namespace guardant::engine::metrics
