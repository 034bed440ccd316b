#include "tcp_options.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <algorithm>
#include <cstring>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>

namespace guardant::tcp {

namespace json = guardant::json;

namespace {

constexpr double kMaxTimeoutMs = 600'000;
// Generous for a dialogue, small enough that a check cannot hold much memory.
constexpr int64_t kMaxReadBytesLimit = 16 * 1024 * 1024;

// Bounds on one expectRegex evaluation. A pathological pattern then fails
// the check with PCRE2's "match limit exceeded" instead of spinning the loop.
constexpr uint32_t kMatchLimit = 1'000'000;
constexpr uint32_t kHeapLimitKiB = 8 * 1024;

[[noreturn]] void config_error(const std::string& text) {
  throw ConfigError(text);
}

// Re-throws a json::Options error about a step member with the member's full
// name ("option 'send'" -> "option 'steps[1].send'").
[[noreturn]] void rethrow_for_step(const ConfigError& e, const std::string& step_name) {
  std::string message = e.what();
  const std::string prefix = "option '";
  if (message.rfind(prefix, 0) == 0) message.insert(prefix.size(), step_name + ".");
  throw ConfigError(message);
}

Step parse_step(const json::Value& element, const std::string& name) {
  if (!element.is_object())
    config_error("option '" + name + "' must be an object, got " + json::type_name(element.type()));
  static constexpr std::string_view kKnown[] = {"send", "expect", "expectRegex", "timeout"};
  // Strict here, unlike at the top level: the host only warns about unknown
  // top-level keys, so a typo inside a step ("expct") would otherwise pass
  // the check silently.
  for (const auto& [key, value] : element.as_object()) {
    if (std::find(std::begin(kKnown), std::end(kKnown), key) == std::end(kKnown))
      config_error("option '" + name + "' has an unknown key '" + key +
                   "'; known: send, expect, expectRegex, timeout");
  }
  Step step;
  try {
    json::Options o(element);
    step.send = o.string("send", "");
    step.expect = o.string("expect", "");
    std::string pattern = o.string("expectRegex", "");
    if (!pattern.empty()) step.regex = std::make_shared<Regex>(pattern, name + ".expectRegex");
    step.timeout_ms = o.optional_number("timeout", 1, kMaxTimeoutMs);
  } catch (const ConfigError& e) {
    std::string message = e.what();
    if (message.find("option '" + name) == 0) throw;  // already names the step
    rethrow_for_step(e, name);
  }
  if (step.send.empty() && !step.reads())
    config_error("option '" + name + "' needs at least one of 'send', 'expect', 'expectRegex'");
  return step;
}

}  // namespace

Target parse_target(const std::string& text) {
  const std::string shown =
      "target '" + (text.size() > 100 ? text.substr(0, 100) + "..." : text) + "'";
  const std::string expected = "; expected host:port or [ipv6]:port";
  if (text.empty()) config_error("target is empty" + expected);

  Target t;
  std::string port_text;
  if (text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) config_error(shown + " has no closing ']'" + expected);
    t.host = text.substr(1, close - 1);
    if (!is_ipv6_literal(t.host)) config_error(shown + ": '" + t.host + "' is not an IPv6 address");
    t.literal_family = 6;
    if (close + 1 == text.size()) config_error(shown + " has no port" + expected);
    if (text[close + 1] != ':') config_error(shown + ": expected ':' after ']'" + expected);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) config_error(shown + " has no port" + expected);
    if (text.find(':') != colon)
      config_error(shown + ": an IPv6 address must be in brackets, e.g. [::1]:443");
    t.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (t.host.empty()) config_error(shown + " has no host" + expected);
    if (t.host.size() > 253) config_error(shown + ": host name longer than 253 characters");
    for (unsigned char c : t.host)
      if (c <= 0x20 || c == 0x7F || std::strchr("/\\?#@[]%", c))
        config_error(shown + ": invalid character in host name");
    if (is_ipv4_literal(t.host)) t.literal_family = 4;
  }
  if (port_text.empty()) config_error(shown + " has no port" + expected);
  bool digits = port_text.size() <= 5 && std::all_of(port_text.begin(), port_text.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
  long port = digits ? std::stol(port_text) : 0;
  if (port < 1 || port > 65535) config_error(shown + ": port must be a number between 1 and 65535");
  t.port = static_cast<uint16_t>(port);
  return t;
}

Regex::Regex(const std::string& pattern, const std::string& option) : pattern_(pattern) {
  int code = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(), 0, &code,
                        &offset, nullptr);
  if (!code_) {
    PCRE2_UCHAR text[256];
    pcre2_get_error_message(code, text, sizeof text);
    config_error("option '" + option + "' is not a valid regular expression: " +
                 reinterpret_cast<const char*>(text) + " at offset " + std::to_string(offset));
  }
  mctx_ = pcre2_match_context_create(nullptr);
  if (!mctx_) {
    pcre2_code_free(code_);
    throw std::bad_alloc();
  }
  pcre2_set_match_limit(mctx_, kMatchLimit);
  pcre2_set_heap_limit(mctx_, kHeapLimitKiB);
}

Regex::~Regex() {
  pcre2_match_context_free(mctx_);
  pcre2_code_free(code_);
}

Regex::Scan Regex::scan(std::string_view subject, size_t* from) const {
  Scan out;
  size_t start = std::min(*from, subject.size());
  pcre2_match_data* md = pcre2_match_data_create_from_pattern(code_, nullptr);
  if (!md) {
    out.kind = Scan::Error;
    out.error = "out of memory";
    return out;
  }
  // PARTIAL_SOFT: a complete match anywhere wins; otherwise PCRE2 says where
  // the earliest match that more bytes could complete begins.
  int rc = pcre2_match(code_, reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), start,
                       PCRE2_PARTIAL_SOFT, md, mctx_);
  const PCRE2_SIZE* ov = pcre2_get_ovector_pointer(md);
  if (rc >= 0) {
    out.kind = Scan::Match;
    out.end = ov[1];
  } else if (rc == PCRE2_ERROR_PARTIAL) {
    *from = ov[0];
  } else if (rc == PCRE2_ERROR_NOMATCH) {
    // No match can start before the end; lookbehinds still see earlier bytes
    // because the whole subject is passed with a start offset.
    *from = subject.size();
  } else {
    PCRE2_UCHAR text[256];
    pcre2_get_error_message(rc, text, sizeof text);
    out.kind = Scan::Error;
    out.error = reinterpret_cast<const char*>(text);
  }
  pcre2_match_data_free(md);
  return out;
}

Settings parse_settings(const std::string& config_json) {
  auto opts = json::Options::parse(config_json);
  Settings s;
  s.timeout_ms = opts.optional_number("timeout", 1, kMaxTimeoutMs);
  s.family_name = opts.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
  s.family = s.family_name == "ipv4"   ? GUARDANT_FAMILY_IPV4
             : s.family_name == "ipv6" ? GUARDANT_FAMILY_IPV6
                                       : GUARDANT_FAMILY_ANY;

  s.tls = opts.boolean("tls", false);
  s.tls_verify = opts.boolean("tlsVerify", true);
  s.servername = opts.string("servername", "");
  if (s.servername.size() > 253)
    config_error("option 'servername' must be a host name of at most 253 characters");
  for (unsigned char c : s.servername)
    if (c <= 0x20 || c == 0x7F || std::strchr("/\\?#@[]", c))
      config_error("option 'servername' contains an invalid character");
  s.ca_file = opts.string("caFile", "");
  s.client_cert = opts.string("clientCert", "");
  s.client_key = opts.string("clientKey", "");
  if (!s.client_key.empty() && s.client_cert.empty())
    config_error("option 'clientKey' needs option 'clientCert'");
  s.cert_expiry_days = opts.number("certExpiryDays", 14, 0, 3650);

  s.read_banner = opts.boolean("readBanner", false);
  s.max_read_bytes = opts.integer("maxReadBytes", 64 * 1024, 1, kMaxReadBytesLimit);
  s.step_timeout_ms = opts.optional_number("stepTimeout", 1, kMaxTimeoutMs);
  s.expect_closed = opts.boolean("expectClosed", false);

  if (s.read_banner) {
    Step banner;
    banner.banner = true;
    banner.label = "banner";
    s.steps.push_back(std::move(banner));
  }
  // The flat options are the one-step form of `steps` (the original system's
  // names); an empty string counts as not set, as its forms sent them.
  Step flat;
  flat.send = opts.string("sendData", "");
  flat.expect = opts.string("expectData", "");
  std::string pattern = opts.string("expectRegex", "");
  if (!pattern.empty()) flat.regex = std::make_shared<Regex>(pattern, "expectRegex");
  const bool flat_send = !flat.send.empty(), flat_expect = flat.reads();
  if (flat_send || flat_expect) s.steps.push_back(std::move(flat));

  if (const json::Value* v = opts.get("steps")) {
    if (!v->is_array())
      config_error(std::string("option 'steps' must be an array of objects, got ") +
                   json::type_name(v->type()));
    const auto& list = v->as_array();
    for (size_t i = 0; i < list.size(); ++i)
      s.steps.push_back(parse_step(list[i], "steps[" + std::to_string(i) + "]"));
  }
  int n = 0;
  for (auto& step : s.steps)
    if (!step.banner) step.label = "step " + std::to_string(++n);

  if (s.expect_closed) {
    // Nothing is sent to a port that must be closed: these options would
    // never run, so saying so beats ignoring them.
    const char* other = s.tls           ? "tls"
                        : s.read_banner ? "readBanner"
                        : flat_send     ? "sendData"
                        : flat_expect   ? (opts.has("expectData") ? "expectData" : "expectRegex")
                        : opts.has("steps") ? "steps"
                                            : nullptr;
    if (other)
      config_error(std::string("option 'expectClosed' cannot be combined with '") + other + "'");
  }
  return s;
}

const char* const kOptionsSchema = R"schema({
  "type": "object",
  "properties": {
    "timeout": {"type": "number", "minimum": 1, "maximum": 600000,
                "description": "Time limit of the check in milliseconds (default: the check's timeout)"},
    "ipFamily": {"enum": ["auto", "ipv4", "ipv6"], "default": "auto",
                 "description": "Which addresses of the host name to connect to"},
    "tls": {"type": "boolean", "default": false,
            "description": "Speak TLS right after connecting (implicit TLS)"},
    "tlsVerify": {"type": "boolean", "default": true,
                  "description": "Verify the certificate chain and host name"},
    "servername": {"type": "string",
                   "description": "SNI and the name the certificate must match (default: the target host)"},
    "caFile": {"type": "string",
               "description": "PEM file of trusted CAs, replacing the system store"},
    "clientCert": {"type": "string", "description": "PEM client certificate (chain)"},
    "clientKey": {"type": "string", "description": "PEM private key (default: clientCert)"},
    "certExpiryDays": {"type": "number", "minimum": 0, "maximum": 3650, "default": 14,
                       "description": "degraded when the chain expires within this many days; 0: off"},
    "readBanner": {"type": "boolean", "default": false,
                   "description": "Wait for the peer's first data and report it as the banner"},
    "sendData": {"type": "string", "description": "Sent after connect (and TLS)"},
    "expectData": {"type": "string", "description": "Exact text expected in what the peer sends"},
    "expectRegex": {"type": "string", "description": "PCRE2 pattern expected in what the peer sends"},
    "steps": {"type": "array", "description": "Further send/expect steps",
              "items": {"type": "object", "additionalProperties": false,
                        "properties": {"send": {"type": "string"}, "expect": {"type": "string"},
                                       "expectRegex": {"type": "string"},
                                       "timeout": {"type": "number", "minimum": 1, "maximum": 600000}}}},
    "maxReadBytes": {"type": "integer", "minimum": 1, "maximum": 16777216, "default": 65536,
                     "description": "Bytes one step may read while looking for its expectation"},
    "stepTimeout": {"type": "number", "minimum": 1, "maximum": 600000,
                    "description": "Time limit of each step in ms (default: the time left)"},
    "expectClosed": {"type": "boolean", "default": false,
                     "description": "up when the port refuses connections, down when it accepts"}
  }
})schema";

}  // namespace guardant::tcp
