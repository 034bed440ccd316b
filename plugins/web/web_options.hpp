// Options of the `web` probe: parsing and validation of the check's config
// JSON (every error is a guardant::ConfigError naming the option), and the
// small matchers the assertions use (status sets, PCRE2 regexes, JSON paths).
// The option table with defaults is in web_probe.cpp's header comment.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstdint>
#include <guardant/json.hpp>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace guardant::web {

// Accepted HTTP status codes: single codes, classes ("2xx") and ranges
// ("200-299"). `text` is how messages show it ("200-299", "200, 3xx").
struct StatusSet {
  struct Range {
    int lo, hi;
  };
  std::vector<Range> ranges;
  std::string text;
  bool contains(long code) const noexcept {
    for (const auto& r : ranges)
      if (code >= r.lo && code <= r.hi) return true;
    return false;
  }
};

// A compiled PCRE2 pattern. PCRE2 rather than std::regex: libstdc++'s
// std::regex recurses once per matched character (".*x" over a 1 MiB
// one-line body overflows the loop thread's stack and kills the worker) and
// has no bound on backtracking. PCRE2 runs with a match limit, a heap limit
// and a bounded JIT stack, so a hostile pattern or body ends the assertion
// with an error instead of stalling or crashing the loop. The syntax is
// Perl/JavaScript-compatible (JavaScript's \u escapes included); flags go
// inline, e.g. "(?i)ok".
class Regex {
 public:
  enum class Outcome { Match, NoMatch, Error };

  // Throws ConfigError naming `option` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& option);

  // Searches `subject` (bytes; invalid UTF-8 is tolerated). On Error,
  // `error` says why (match limit, JIT stack limit...).
  Outcome search(std::string_view subject, std::string* error) const;
  const std::string& pattern() const noexcept { return pattern_; }

 private:
  std::string pattern_;
  std::shared_ptr<pcre2_code> code_;
};

// One step of a JSON path: a member name or an array index.
struct JsonPathStep {
  bool is_index = false;
  size_t index = 0;
  std::string key;
};

// "$.data.items[0].ok", "data.items[0].ok", "$['odd key'][2]", "$".
struct JsonPath {
  std::string text;
  std::vector<JsonPathStep> steps;
  // The value at the path, or nullptr when some step does not exist.
  const json::Value* find(const json::Value& root) const noexcept;
};

// Throws ConfigError naming `option` for a malformed path.
JsonPath parse_json_path(const std::string& text, const std::string& option);

// Equality as the assertion uses it: JSON equality, and a string expected
// value also matches a number/boolean/null whose JSON text it is ("42",
// "true"), as the original system compared values as strings.
bool json_value_matches(const json::Value& actual, const json::Value& expected);

struct HeaderCheck {
  std::string name;  // compared case-insensitively
  Regex regex;
};

struct WebOptions {
  std::optional<double> timeout_ms;
  std::string method = "GET";
  std::vector<std::pair<std::string, std::string>> headers;  // in order
  std::optional<std::string> body;
  bool body_is_json = false;  // body given as a JSON object/array
  std::string http_version = "auto";
  bool follow_redirects = true;
  int64_t max_redirects = 10;
  StatusSet expected_status;
  std::optional<std::string> keyword;
  bool invert_keyword = false;
  std::optional<Regex> regex;
  bool invert_regex = false;
  std::vector<HeaderCheck> header_checks;
  std::optional<JsonPath> json_path;
  std::optional<json::Value> expected_value;
  int64_t max_body_bytes = 1 << 20;
  std::optional<std::string> basic_user, basic_password;  // secrets: never echoed
  std::optional<std::string> bearer_token;                // secret: never echoed
  std::optional<std::string> proxy;
  bool tls_verify = true;
  std::optional<std::string> servername;
  std::optional<std::string> ca_file, client_cert, client_key;
  std::optional<double> degraded_above_ms;
  double cert_expiry_days = 14;
  int family = 0;  // GUARDANT_FAMILY_*
  std::string family_name = "auto";
  std::vector<std::string> unknown_keys;

  // Whether an assertion needs the body kept in memory.
  bool needs_body() const noexcept { return keyword || regex || json_path; }
};

// Every option name the probe knows, for the unknown-key warning.
const std::vector<std::string_view>& known_option_names();

// Parses and validates the options. Throws ConfigError.
WebOptions parse_web_options(const std::string& config_json);

// The closest known option name to `key` when it is a likely typo, else "".
std::string suggest_option(std::string_view key);

}  // namespace guardant::web
