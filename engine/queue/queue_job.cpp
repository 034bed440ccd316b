#include "queue/queue_job.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <cmath>

namespace guardant::engine {
namespace json = boost::json;

namespace {

std::optional<int64_t> to_int(const json::value* v) {
  if (!v) return std::nullopt;
  if (v->is_int64()) return v->as_int64();
  if (v->is_uint64()) return static_cast<int64_t>(v->as_uint64());
  if (v->is_double()) return static_cast<int64_t>(v->as_double());
  return std::nullopt;
}

int64_t field_int(const std::map<std::string, std::string>& f, const char* k, int64_t def = 0) {
  auto it = f.find(k);
  if (it == f.end()) return def;
  try {
    return std::stoll(it->second);
  } catch (...) {
    return def;
  }
}

}  // namespace

int64_t Backoff::delay_for(int64_t attempt, std::mt19937_64& rng) const {
  double base = 0;
  switch (type) {
    case Type::None:
      return 0;
    case Type::Fixed:
      base = static_cast<double>(delay_ms);
      break;
    case Type::Exponential:
      base = std::round(std::pow(2.0, static_cast<double>(attempt - 1)) * delay_ms);
      break;
  }
  if (jitter > 0) {
    // BullMQ: floor(rand * X * j + X * (1 - j)).
    std::uniform_real_distribution<double> uni(0.0, 1.0);
    base = std::floor(uni(rng) * base * jitter + base * (1 - jitter));
  }
  return static_cast<int64_t>(base);
}

const std::string* QueueJob::field(const std::string& k) const {
  auto it = fields.find(k);
  return it == fields.end() ? nullptr : &it->second;
}

int64_t QueueJob::attempts() const {
  auto n = to_int(opts.if_contains("attempts"));
  return n && *n > 0 ? *n : 1;
}

bool QueueJob::lifo() const {
  auto* v = opts.if_contains("lifo");
  return v && v->is_bool() && v->as_bool();
}

Backoff QueueJob::backoff() const {
  Backoff b;
  auto* v = opts.if_contains("backoff");
  if (!v) return b;
  if (auto n = to_int(v)) {
    b.type = *n > 0 ? Backoff::Type::Fixed : Backoff::Type::None;
    b.delay_ms = *n;
    return b;
  }
  if (!v->is_object()) return b;
  auto& o = v->as_object();
  auto* type = o.if_contains("type");
  b.delay_ms = to_int(o.if_contains("delay")).value_or(0);
  if (auto* j = o.if_contains("jitter"); j && j->is_number())
    b.jitter = std::clamp(j->to_number<double>(), 0.0, 1.0);
  if (type && type->is_string()) {
    if (type->as_string() == "fixed") b.type = Backoff::Type::Fixed;
    if (type->as_string() == "exponential") b.type = Backoff::Type::Exponential;
  }
  if (b.delay_ms <= 0) b.type = Backoff::Type::None;
  return b;
}

KeepJobs keep_jobs_from(const json::value* v) {
  KeepJobs k;
  if (!v || v->is_null()) return k;
  if (v->is_bool()) {
    k.count = v->as_bool() ? 0 : -1;
    return k;
  }
  if (auto n = to_int(v)) {
    k.count = *n;
    return k;
  }
  if (v->is_object()) {
    auto& o = v->as_object();
    if (auto c = to_int(o.if_contains("count"))) k.count = *c;
    if (auto a = to_int(o.if_contains("age"))) k.age_s = *a;
    if (auto l = to_int(o.if_contains("limit"))) k.limit = *l;
  }
  return k;
}

KeepJobs QueueJob::keep_on_complete() const {
  return keep_jobs_from(opts.if_contains("removeOnComplete"));
}
KeepJobs QueueJob::keep_on_fail() const {
  return keep_jobs_from(opts.if_contains("removeOnFail"));
}

std::string QueueJob::stacktrace_with(const std::string& entry) const {
  json::array trace;
  if (auto* old = field("stacktrace")) {
    boost::system::error_code ec;
    auto v = json::parse(*old, ec);
    if (!ec && v.is_array()) trace = std::move(v.as_array());
  }
  trace.emplace_back(entry);
  int64_t limit = to_int(opts.if_contains("stackTraceLimit")).value_or(10);
  if (limit > 0)
    while (static_cast<int64_t>(trace.size()) > limit) trace.erase(trace.begin());
  return json::serialize(trace);
}

Result<FetchOutcome> parse_fetch_reply(const redis::Reply& reply, const std::string& queue,
                                       const std::string& token) {
  if (!reply.is_array() || reply.elements.size() != 4)
    return Error{"protocol",
                 "unexpected fetch reply from queue '" + queue + "': " + reply.debug_string()};
  FetchOutcome out;
  out.rate_limit_ttl_ms = reply.elements[2].as_int().value_or(0);
  out.next_delayed_due_ms = reply.elements[3].as_int().value_or(0);
  const auto& fields = reply.elements[0];
  if (!fields.is_array()) return out;  // no job
  QueueJob job;
  job.queue = queue;
  job.token = token;
  job.id = reply.elements[1].as_string().value_or("");
  if (job.id.empty())
    return Error{"protocol", "fetch reply from queue '" + queue + "' without a job id"};
  for (size_t i = 0; i + 1 < fields.elements.size(); i += 2)
    job.fields[fields.elements[i].str] = fields.elements[i + 1].str;
  if (auto* n = job.field("name")) job.name = *n;
  job.data = job.field("data") ? *job.field("data") : "{}";
  if (auto* o = job.field("opts")) {
    boost::system::error_code ec;
    auto v = json::parse(*o, ec);
    if (!ec && v.is_object()) job.opts = std::move(v.as_object());
  }
  // Older BullMQ data may carry attemptsMade instead of atm.
  job.attempts_made =
      job.field("atm") ? field_int(job.fields, "atm") : field_int(job.fields, "attemptsMade");
  job.attempts_started = field_int(job.fields, "ats");
  job.stalled_count = field_int(job.fields, "stc");
  job.priority = field_int(job.fields, "priority");
  job.timestamp = field_int(job.fields, "timestamp");
  if (auto* d = job.field("defa")) job.deferred_failure = *d;
  if (auto* r = job.field("rjk")) job.scheduler_id = *r;
  out.job = std::move(job);
  return out;
}

}  // namespace guardant::engine
