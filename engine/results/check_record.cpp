#include "results/check_record.hpp"

#include <boost/json/parse.hpp>

namespace guardant::engine {
namespace {

// Milliseconds rounded to microseconds: sub-millisecond precision without
// float noise such as 0.30000000000000004.
double ms(double v) {
  return static_cast<double>(static_cast<int64_t>(v * 1000.0 + 0.5)) / 1000.0;
}

}  // namespace

boost::json::object make_check_record(const CheckResult& r, const RecordContext& ctx) {
  boost::json::object o;
  o["status"] = to_string(r.status);
  o["responseTime"] = ms(r.response_time_ms);
  o["message"] = r.message;
  if (r.protocol_code) o["statusCode"] = r.protocol_code;
  if (r.timings) {
    boost::json::object t;
    auto put = [&](const char* k, double v) {
      if (v >= 0) t[k] = ms(v);
    };
    put("resolve", r.timings->resolve);
    put("connect", r.timings->connect);
    put("tls", r.timings->tls);
    put("send", r.timings->send);
    put("wait", r.timings->wait);
    put("transfer", r.timings->transfer);
    put("total", r.timings->total);
    o["timings"] = std::move(t);
  } else {
    o["timings"] = boost::json::object{};
  }
  if (r.failure) {
    boost::json::object f;
    f["reason"] = r.failure->reason;
    f["phase"] = r.failure->phase.empty() ? boost::json::value(nullptr)
                                          : boost::json::value(r.failure->phase);
    f["detail"] = r.failure->detail;
    o["failure"] = std::move(f);
  } else {
    o["failure"] = nullptr;
  }
  boost::json::value details = boost::json::object{};
  if (!r.details_json.empty()) {
    boost::system::error_code ec;
    auto parsed = boost::json::parse(r.details_json, ec);
    if (ec || !parsed.is_object())
      details = boost::json::object{
          {"invalidDetails", ec ? ec.message() : std::string("details are not a JSON object")}};
    else
      details = std::move(parsed);
  }
  o["details"] = std::move(details);
  o["serviceId"] = ctx.service_id;
  o["nestId"] = ctx.nest_id.empty() ? boost::json::value(nullptr) : boost::json::value(ctx.nest_id);
  o["workerId"] = ctx.worker_id;
  o["region"] = ctx.region;
  o["checkedAt"] = ctx.checked_at_ms;
  boost::json::object probe{{"type", ctx.probe_type}};
  probe["plugin"] =
      ctx.plugin_name.empty() ? boost::json::value(nullptr) : boost::json::value(ctx.plugin_name);
  probe["version"] = ctx.plugin_version.empty() ? boost::json::value(nullptr)
                                                : boost::json::value(ctx.plugin_version);
  o["probe"] = std::move(probe);
  return o;
}

}  // namespace guardant::engine
