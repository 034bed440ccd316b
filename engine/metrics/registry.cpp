#include "metrics/registry.hpp"

#include <charconv>
#include <cmath>
#include <set>
#include <stdexcept>
#include <type_traits>

namespace guardant::engine::metrics {
namespace {

bool valid_metric_name(std::string_view n) {
  if (n.empty()) return false;
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_' || c == ':';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

bool valid_label_name(std::string_view n) {
  if (n.empty() || n.starts_with("__")) return false;  // "__" is reserved for Prometheus
  for (size_t i = 0; i < n.size(); ++i) {
    char c = n[i];
    bool alpha = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
    if (!alpha && !(i > 0 && c >= '0' && c <= '9')) return false;
  }
  return true;
}

const char* type_name(MetricType t) {
  switch (t) {
    case MetricType::Counter:
      return "counter";
    case MetricType::Gauge:
      return "gauge";
    case MetricType::Histogram:
      return "histogram";
  }
  return "untyped";
}

void append_sample(std::string& out, std::string_view name, std::string_view labels, double value) {
  out.append(name);
  out.append(labels);
  out.push_back(' ');
  out.append(format_value(value));
  out.push_back('\n');
}

}  // namespace

std::string format_value(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  char buf[64];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  if (ec != std::errc{}) return "NaN";  // cannot happen with 64 bytes; stay well-formed anyway
  return std::string(buf, end);
}

std::string escape_label_value(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '"')
      out += "\\\"";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

std::string escape_help(std::string_view v) {
  std::string out;
  out.reserve(v.size());
  for (char c : v) {
    if (c == '\\')
      out += "\\\\";
    else if (c == '\n')
      out += "\\n";
    else
      out.push_back(c);
  }
  return out;
}

void Counter::inc(double v) noexcept {
  if (!(v >= 0)) return;
  value_.fetch_add(v, std::memory_order_relaxed);
}

Histogram::Histogram(const std::vector<double>& bounds)
    : bounds_(bounds), counts_(new std::atomic<uint64_t>[bounds.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::observe(double v) noexcept {
  // `le` is inclusive: the first bound >= v. NaN lands in +Inf, as in the Go client.
  size_t i = std::isnan(v)
                 ? bounds_.size()
                 : static_cast<size_t>(std::lower_bound(bounds_.begin(), bounds_.end(), v) -
                                       bounds_.begin());
  counts_[i].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::cumulative_counts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    out[i] = total;
  }
  return out;
}

uint64_t Histogram::count() const noexcept {
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) total += counts_[i].load(std::memory_order_relaxed);
  return total;
}

FamilyBase::FamilyBase(std::string name, std::string help, MetricType type,
                       std::vector<std::string> label_names)
    : name_(std::move(name)),
      help_(std::move(help)),
      type_(type),
      label_names_(std::move(label_names)) {
  if (!valid_metric_name(name_))
    throw std::invalid_argument("metrics: invalid metric name '" + name_ + "'");
  std::set<std::string_view> seen;
  for (const auto& l : label_names_) {
    if (!valid_label_name(l))
      throw std::invalid_argument("metrics: " + name_ + ": invalid label name '" + l + "'");
    if (type_ == MetricType::Histogram && l == "le")
      throw std::invalid_argument("metrics: " + name_ + ": label 'le' is reserved for histograms");
    if (!seen.insert(l).second)
      throw std::invalid_argument("metrics: " + name_ + ": duplicate label name '" + l + "'");
  }
}

void FamilyBase::render(std::string& out) const {
  out += "# HELP ";
  out += name_;
  out.push_back(' ');
  out += escape_help(help_);
  out += "\n# TYPE ";
  out += name_;
  out.push_back(' ');
  out += type_name(type_);
  out.push_back('\n');
  render_samples(out);
}

std::string FamilyBase::open_labels(const std::vector<std::string>& values) const {
  if (values.empty()) return {};
  std::string s = "{";
  for (size_t i = 0; i < values.size(); ++i) {
    if (i) s.push_back(',');
    s += label_names_[i];
    s += "=\"";
    s += escape_label_value(values[i]);
    s.push_back('"');
  }
  return s;
}

void FamilyBase::throw_label_count(size_t got) const {
  throw std::invalid_argument("metrics: " + name_ + ": expected " +
                              std::to_string(label_names_.size()) + " label values, got " +
                              std::to_string(got));
}

CounterFamily::CounterFamily(std::string name, std::string help,
                             std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), MetricType::Counter, std::move(label_names)) {
  // A label-less series exists from the start, so it is scraped as 0 rather
  // than missing until the first event.
  if (this->label_names().empty()) labels();
}

void CounterFamily::render_series(std::string& out, const std::vector<std::string>& values,
                                  const Counter& s) const {
  auto l = open_labels(values);
  if (!l.empty()) l.push_back('}');
  append_sample(out, name(), l, s.value());
}

GaugeFamily::GaugeFamily(std::string name, std::string help, std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), MetricType::Gauge, std::move(label_names)) {
  if (this->label_names().empty()) labels();
}

void GaugeFamily::render_series(std::string& out, const std::vector<std::string>& values,
                                const Gauge& s) const {
  auto l = open_labels(values);
  if (!l.empty()) l.push_back('}');
  append_sample(out, name(), l, s.value());
}

HistogramFamily::HistogramFamily(std::string name, std::string help, std::vector<double> buckets,
                                 std::vector<std::string> label_names)
    : Family(std::move(name), std::move(help), MetricType::Histogram, std::move(label_names)),
      bounds_(std::move(buckets)) {
  for (size_t i = 0; i < bounds_.size(); ++i) {
    if (!std::isfinite(bounds_[i]))
      throw std::invalid_argument("metrics: " + this->name() +
                                  ": bucket bounds must be finite (+Inf is implicit)");
    if (i && !(bounds_[i] > bounds_[i - 1]))
      throw std::invalid_argument("metrics: " + this->name() +
                                  ": bucket bounds must be strictly increasing");
  }
  if (this->label_names().empty()) labels();
}

void HistogramFamily::render_series(std::string& out, const std::vector<std::string>& values,
                                    const Histogram& s) const {
  auto open = open_labels(values);
  auto cumulative = s.cumulative_counts();
  std::string bucket_name = name() + "_bucket";
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    std::string l = open.empty() ? "{" : open + ",";
    l += "le=\"";
    l += i < bounds_.size() ? format_value(bounds_[i]) : "+Inf";
    l += "\"}";
    append_sample(out, bucket_name, l, static_cast<double>(cumulative[i]));
  }
  std::string closed = open.empty() ? open : open + "}";
  append_sample(out, name() + "_sum", closed, s.sum());
  // From the same snapshot as the buckets, so _count always equals +Inf.
  append_sample(out, name() + "_count", closed, static_cast<double>(cumulative.back()));
}

CallbackFamily::CallbackFamily(std::string name, std::string help, MetricType type, Fn fn)
    : FamilyBase(std::move(name), std::move(help), type, {}), fn_(std::move(fn)) {
  if (type == MetricType::Histogram)
    throw std::invalid_argument("metrics: " + this->name() + ": callback histograms unsupported");
}

void CallbackFamily::render_samples(std::string& out) const {
  // A failing source loses its own sample, not the whole scrape.
  std::optional<double> v;
  try {
    v = fn_();
  } catch (const std::exception&) {
    v.reset();
  }
  if (v) append_sample(out, name(), "", *v);
}

const std::vector<double>& default_duration_buckets() {
  static const std::vector<double> b{0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5,
                                     1,     2.5,  5,     10,   30,  60};
  return b;
}

FamilyBase* Registry::find(const std::string& name) const {
  for (const auto& f : families_)
    if (f->name() == name) return f.get();
  return nullptr;
}

template <class F>
F& Registry::add(std::unique_ptr<F> family) {
  std::lock_guard lock(mu_);
  if (FamilyBase* existing = find(family->name())) {
    auto* same = dynamic_cast<F*>(existing);
    bool compatible = same && same->label_names() == family->label_names();
    if constexpr (std::is_same_v<F, HistogramFamily>)
      compatible = compatible && same->buckets() == family->buckets();
    if constexpr (std::is_same_v<F, CallbackFamily>) compatible = false;  // two callbacks: which?
    if (!compatible)
      throw std::invalid_argument("metrics: " + family->name() +
                                  " is already registered with a different type or labels");
    return *same;
  }
  F& ref = *family;
  families_.push_back(std::move(family));
  return ref;
}

CounterFamily& Registry::counter(std::string name, std::string help,
                                 std::vector<std::string> label_names) {
  return add(
      std::make_unique<CounterFamily>(std::move(name), std::move(help), std::move(label_names)));
}

GaugeFamily& Registry::gauge(std::string name, std::string help,
                             std::vector<std::string> label_names) {
  return add(
      std::make_unique<GaugeFamily>(std::move(name), std::move(help), std::move(label_names)));
}

HistogramFamily& Registry::histogram(std::string name, std::string help,
                                     std::vector<double> buckets,
                                     std::vector<std::string> label_names) {
  return add(std::make_unique<HistogramFamily>(std::move(name), std::move(help), std::move(buckets),
                                               std::move(label_names)));
}

void Registry::counter_fn(std::string name, std::string help, CallbackFamily::Fn fn) {
  add(std::make_unique<CallbackFamily>(std::move(name), std::move(help), MetricType::Counter,
                                       std::move(fn)));
}

void Registry::gauge_fn(std::string name, std::string help, CallbackFamily::Fn fn) {
  add(std::make_unique<CallbackFamily>(std::move(name), std::move(help), MetricType::Gauge,
                                       std::move(fn)));
}

std::string Registry::render() const {
  std::string out;
  std::lock_guard lock(mu_);
  for (const auto& f : families_) f->render(out);
  return out;
}

}  // namespace guardant::engine::metrics
