#include "queue/job_data.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

namespace guardant::engine {
namespace json = boost::json;

namespace {

Error malformed(const std::string& what) {
  return Error{"malformed_job", "malformed job data: " + what};
}

const char* kind_of(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "a value";
}

// An optional string field; ids may also be numbers in producers' data.
Result<std::string> optional_id(const json::object& o, const char* key, const std::string& path) {
  auto* v = o.if_contains(key);
  if (!v || v->is_null()) return std::string();
  if (v->is_string()) return std::string(v->as_string());
  if (v->is_int64() || v->is_uint64()) return json::serialize(*v);
  return malformed(path + " must be a string, got " + kind_of(*v));
}

}  // namespace

Result<CheckSpec> parse_check_spec(std::string_view data_json) {
  boost::system::error_code ec;
  auto root = json::parse(data_json, ec);
  if (ec) return malformed("not JSON (" + ec.message() + ")");
  if (!root.is_object()) return malformed(std::string("expected an object, got ") + kind_of(root));
  const auto& data = root.as_object();

  CheckSpec spec;
  const json::object* service = &data;
  std::string at;  // path prefix of the fields below
  if (auto* s = data.if_contains("service")) {
    if (!s->is_object())
      return malformed(std::string("service must be an object, got ") + kind_of(*s));
    service = &s->as_object();
    at = "service.";
  }

  for (const char* key : {"type", "target"}) {
    auto* v = service->if_contains(key);
    if (!v) return malformed(at + key + " is missing");
    if (!v->is_string()) return malformed(at + key + " must be a string, got " + kind_of(*v));
    if (v->as_string().empty()) return malformed(at + key + " is empty");
  }
  spec.type = std::string(service->at("type").as_string());
  spec.target = std::string(service->at("target").as_string());

  if (auto* cfg = service->if_contains("config"); cfg && !cfg->is_null()) {
    if (!cfg->is_object()) return malformed(at + "config must be an object, got " + kind_of(*cfg));
    spec.config_json = json::serialize(*cfg);
    if (auto* t = cfg->as_object().if_contains("timeout"); t && !t->is_null()) {
      if (!t->is_number() || t->to_number<double>() <= 0)
        return malformed(at + "config.timeout must be a positive number of milliseconds");
      spec.timeout_ms = static_cast<int64_t>(t->to_number<double>());
    }
  }

  auto id = optional_id(*service, at.empty() ? "serviceId" : "id",
                        at + (at.empty() ? "serviceId" : "id"));
  if (!id) return id.error();
  spec.service_id = id.value();
  auto nest = optional_id(data, "nestId", "nestId");
  if (!nest) return nest.error();
  spec.nest_id = nest.value();
  if (spec.nest_id.empty() && service != &data) {
    auto inner = optional_id(*service, "nestId", "service.nestId");
    if (!inner) return inner.error();
    spec.nest_id = inner.value();
  }
  auto tier = optional_id(data, "tier", "tier");
  if (!tier) return tier.error();
  spec.tier = tier.value();
  if (spec.tier.empty() && service != &data) {
    auto inner = optional_id(*service, "tier", "service.tier");
    if (!inner) return inner.error();
    spec.tier = inner.value();
  }

  if (auto* r = data.if_contains("routing"); r && !r->is_null()) {
    if (!r->is_object())
      return malformed(std::string("routing must be an object, got ") + kind_of(*r));
    auto& routing = r->as_object();
    auto region = optional_id(routing, "region", "routing.region");
    if (!region) return region.error();
    spec.region = region.value();
    if (auto* caps = routing.if_contains("requiredCapabilities"); caps && !caps->is_null()) {
      if (!caps->is_array())
        return malformed("routing.requiredCapabilities must be an array of strings");
      for (auto& c : caps->as_array()) {
        if (!c.is_string())
          return malformed("routing.requiredCapabilities must be an array of strings");
        spec.required_capabilities.emplace_back(c.as_string());
      }
    }
  }
  return spec;
}

}  // namespace guardant::engine
