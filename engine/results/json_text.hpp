// Serialises JSON the way people read it: doubles in their shortest
// round-trip form ("0.24", "123.4") rather than Boost.JSON 1.81's "2.4E-1".
// Both are valid JSON; this is for operators reading result lines and for
// byte-identical records across sinks.
#pragma once

#include <boost/json/value.hpp>
#include <string>

namespace guardant::engine {

std::string to_json_text(const boost::json::value& v);

}  // namespace guardant::engine
