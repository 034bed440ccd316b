// The result record of one check, in the format of
// shared/spec/jobs-and-results.md: the job's returnvalue in queue mode and a
// JSON Lines row in standalone mode. Built in one place so both agree.
#pragma once

#include <boost/json/object.hpp>
#include <string>

#include "core/check_result.hpp"

namespace guardant::engine {

struct RecordContext {
  std::string service_id;
  std::string nest_id;
  std::string worker_id;
  std::string region;
  std::string probe_type;
  std::string plugin_name;  // empty when no plugin served the type
  std::string plugin_version;
  int64_t checked_at_ms = 0;  // wall clock when the result was recorded
};

// Builds the record. Invalid plugin details JSON is not passed through: it
// becomes {"invalidDetails": "<parser message>"} so the record stays valid.
boost::json::object make_check_record(const CheckResult& result, const RecordContext& ctx);

}  // namespace guardant::engine
