// Target and option parsing for the `tcp` probe (see tcp_probe.cpp for the
// option table). Everything here runs in the check's constructor, so a bad
// option refuses the check before any socket is opened.
#pragma once

#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "net_util.hpp"

namespace guardant::tcp {

struct Target {
  std::string host;
  uint16_t port = 0;
  int literal_family = 0;  // 4 or 6 when host is an address literal, else 0
};

using guardant::probes::is_ipv4_literal;
using guardant::probes::is_ipv6_literal;

// Parses `host:port` or `[ipv6]:port`. Throws ConfigError saying what is
// wrong and what is expected.
Target parse_target(const std::string& text);

// A compiled expectRegex. PCRE2 rather than std::regex: libstdc++'s regex
// recurses once per subject character and can overflow the loop thread's
// stack on a 64 KiB read, and PCRE2 bounds a pathological pattern with match
// and heap limits instead of hanging the loop.
class Regex {
 public:
  // Throws ConfigError naming `option` when the pattern does not compile.
  Regex(const std::string& pattern, const std::string& option);
  ~Regex();
  Regex(const Regex&) = delete;
  Regex& operator=(const Regex&) = delete;

  const std::string& pattern() const noexcept { return pattern_; }

  struct Scan {
    enum Kind { Match, NoMatch, Error } kind = NoMatch;
    size_t end = 0;     // Match: offset just past the match
    std::string error;  // Error: PCRE2's text (e.g. match limit exceeded)
  };
  // Looks for a match in `subject` starting at `*from`, and moves `*from` so
  // that the next call, on the same bytes with more appended, does not
  // rescan what cannot start a match any more (PCRE2 partial matching). This
  // keeps a peer that trickles bytes from costing quadratic CPU.
  Scan scan(std::string_view subject, size_t* from) const;

 private:
  std::string pattern_;
  pcre2_code* code_ = nullptr;
  pcre2_match_context* mctx_ = nullptr;
};

// One send/expect step of the dialogue after connect (and TLS).
struct Step {
  bool banner = false;  // readBanner: wait for the peer's first data, send nothing
  std::string send;     // sent first; empty: nothing
  std::string expect;   // exact bytes expected in what is read; empty: none
  std::shared_ptr<const Regex> regex;
  std::optional<double> timeout_ms;  // this step's limit; else stepTimeout
  std::string label;                 // "banner", "step 2": for messages

  bool reads() const noexcept { return banner || !expect.empty() || regex; }
};

struct Settings {
  std::optional<double> timeout_ms;
  int family = 0;  // GUARDANT_FAMILY_*
  std::string family_name = "auto";

  bool tls = false;
  bool tls_verify = true;
  std::string servername;  // empty: the target host
  std::string ca_file, client_cert, client_key;
  double cert_expiry_days = 14;

  std::vector<Step> steps;  // the readBanner step first, then sendData/expect*, then steps[]
  bool read_banner = false;
  int64_t max_read_bytes = 64 * 1024;
  std::optional<double> step_timeout_ms;

  bool expect_closed = false;
};

// Parses and validates the options object. Throws ConfigError naming the
// option (`option 'steps[1].expect' must be a string, got number`).
Settings parse_settings(const std::string& config_json);

// The JSON Schema of the options, for the probe type descriptor.
extern const char* const kOptionsSchema;

}  // namespace guardant::tcp
