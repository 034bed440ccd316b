// What a check produced, as the engine keeps it: owned copies of everything a
// plugin handed over through guardant_check_result.
#pragma once

#include <optional>
#include <string>
#include <string_view>

namespace guardant::engine {

enum class CheckStatus { Up, Down, Degraded, Inconclusive };

inline std::string_view to_string(CheckStatus s) {
  switch (s) {
    case CheckStatus::Up:
      return "up";
    case CheckStatus::Down:
      return "down";
    case CheckStatus::Degraded:
      return "degraded";
    case CheckStatus::Inconclusive:
      return "inconclusive";
  }
  return "inconclusive";
}

struct CheckFailure {
  std::string reason;  // dns_nxdomain, connect_refused, timeout, worker_error…
  std::string phase;   // resolve|connect|tls|send|wait|transfer|assert, or empty
  std::string detail;
};

// Per-phase timings in ms; a phase that did not happen is negative.
struct CheckTimings {
  double resolve = -1, connect = -1, tls = -1, send = -1, wait = -1, transfer = -1, total = -1;
};

struct CheckResult {
  CheckStatus status = CheckStatus::Inconclusive;
  int protocol_code = 0;  // e.g. HTTP status; 0 when not applicable
  double response_time_ms = 0;
  std::string message;
  std::optional<CheckFailure> failure;
  std::string details_json;  // a JSON object text, or empty
  std::optional<CheckTimings> timings;

  static CheckResult failed(CheckStatus status, std::string reason, std::string phase,
                            std::string detail, double response_time_ms = 0) {
    CheckResult r;
    r.status = status;
    r.response_time_ms = response_time_ms;
    r.message = detail;
    r.failure = CheckFailure{std::move(reason), std::move(phase), std::move(detail)};
    return r;
  }
};

}  // namespace guardant::engine
