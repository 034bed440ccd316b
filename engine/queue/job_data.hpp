// The check a job asks for, read from its data as the producers write it
// (shared/spec/jobs-and-results.md): the nested form {nestId, tier, service:
// {id, type, target, config}, routing} or the flat form {nestId, serviceId,
// type, target, config}. Anything else is malformed: the job fails at once
// with a reason that names the field, and is not retried.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "core/result.hpp"

namespace guardant::engine {

struct CheckSpec {
  std::string type;
  std::string target;
  std::string config_json = "{}";
  std::string service_id;
  std::string nest_id;
  std::string tier;                   // empty: the configured default tier
  std::optional<int64_t> timeout_ms;  // service.config.timeout, when set
  std::string region;                 // routing.region, empty: any
  std::vector<std::string> required_capabilities;
};

// Error code "malformed_job", message "malformed job data: <what>".
Result<CheckSpec> parse_check_spec(std::string_view data_json);

}  // namespace guardant::engine
