#include "web_options.hpp"

#include <guardant/probe.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstring>

namespace guardant::web {
namespace {

using json::Options;
using json::Type;
using json::Value;

// Bounds for one regex search: enough for any sensible pattern over a
// maxBodyBytes body, small enough that a pathological one gives up within
// milliseconds instead of stalling every other check on the loop.
constexpr uint32_t kMatchLimit = 2'000'000;
constexpr uint32_t kHeapLimitKiB = 16 * 1024;
constexpr size_t kJitStackMax = 1 << 20;

constexpr int64_t kMaxBodyLimit = 256ll << 20;
constexpr double kMaxTimeoutMs = 600'000;

[[noreturn]] void fail(const std::string& option, const std::string& what) {
  throw ConfigError("option '" + option + "' " + what);
}

std::string got(const Value& v) {
  return std::string("got ") + json::type_name(v.type());
}

std::string shorten(const std::string& s, size_t max = 64) {
  return s.size() > max ? s.substr(0, max) + "..." : s;
}

bool is_token_char(unsigned char c) {
  return std::isalnum(c) || std::strchr("!#$%&'*+-.^_`|~", c) != nullptr;
}

// One entry of expectedStatus.
void add_status(StatusSet& set, const Value& v, const std::string& option) {
  const std::string expected =
      "must hold status codes (200), classes (\"2xx\") or ranges (\"200-299\")";
  auto valid = [](long n) { return n >= 100 && n <= 599; };
  if (v.is_number()) {
    if (!v.is_integer() || !valid(static_cast<long>(v.as_int64())))
      fail(option, expected + " between 100 and 599, got " + json::format_number(v.as_number()));
    int n = static_cast<int>(v.as_int64());
    set.ranges.push_back({n, n});
    set.text += (set.text.empty() ? "" : ", ") + std::to_string(n);
    return;
  }
  if (!v.is_string()) fail(option, expected + ", " + got(v));
  std::string s = v.as_string();
  auto all_digits = [](std::string_view t) {
    return !t.empty() && t.size() <= 3 &&
           std::all_of(t.begin(), t.end(), [](char c) { return c >= '0' && c <= '9'; });
  };
  StatusSet::Range r{};
  if (s.size() == 3 && s[0] >= '1' && s[0] <= '5' && (s[1] == 'x' || s[1] == 'X') &&
      (s[2] == 'x' || s[2] == 'X')) {
    r.lo = (s[0] - '0') * 100;
    r.hi = r.lo + 99;
  } else if (auto dash = s.find('-'); dash != std::string::npos) {
    std::string a = s.substr(0, dash), b = s.substr(dash + 1);
    if (!all_digits(a) || !all_digits(b))
      fail(option, expected + ", got " + json::quote(shorten(s)));
    r.lo = std::stoi(a);
    r.hi = std::stoi(b);
    if (!valid(r.lo) || !valid(r.hi) || r.lo > r.hi)
      fail(option, "range " + json::quote(s) + " must be two codes between 100 and 599, low-high");
  } else if (all_digits(s) && valid(std::stoi(s))) {
    r.lo = r.hi = std::stoi(s);
  } else {
    fail(option, expected + ", got " + json::quote(shorten(s)));
  }
  set.ranges.push_back(r);
  set.text += (set.text.empty() ? "" : ", ") + s;
}

StatusSet parse_status(const Value* v) {
  StatusSet set;
  if (!v) {
    set.ranges.push_back({200, 299});
    set.text = "200-299";
    return set;
  }
  if (v->is_array()) {
    if (v->size() == 0) fail("expectedStatus", "must not be an empty array");
    for (const auto& e : v->as_array()) add_status(set, e, "expectedStatus");
  } else if (v->is_number() || v->is_string()) {
    add_status(set, *v, "expectedStatus");
  } else {
    fail("expectedStatus", "must be a number, a string or an array, " + got(*v));
  }
  return set;
}

void check_header_field(const std::string& name, const std::string& value,
                        const std::string& option) {
  if (name.empty() || !std::all_of(name.begin(), name.end(), [](char c) {
        return is_token_char(static_cast<unsigned char>(c));
      }))
    fail(option, "has an invalid header name " + json::quote(shorten(name)));
  for (char c : value)
    if (c == '\r' || c == '\n' || c == '\0')
      fail(option, "header " + json::quote(name) + " has a line break or NUL in its value");
}

// headers: an object of strings, or (as the original system stored it) a
// string holding such an object.
std::vector<std::pair<std::string, std::string>> parse_headers(const Value* v) {
  std::vector<std::pair<std::string, std::string>> out;
  if (!v) return out;
  Value parsed;
  if (v->is_string()) {
    try {
      parsed = json::parse(v->as_string());
    } catch (const json::ParseError& e) {
      fail("headers", std::string("is a string but not a JSON object: ") + e.what());
    }
    v = &parsed;
  }
  if (!v->is_object()) fail("headers", "must be an object of strings, " + got(*v));
  for (const auto& [name, value] : v->as_object()) {
    if (!value.is_string()) fail("headers." + name, "must be a string, " + got(value));
    check_header_field(name, value.as_string(), "headers");
    out.emplace_back(name, value.as_string());
  }
  return out;
}

std::vector<HeaderCheck> parse_header_regex(const Value* v) {
  std::vector<HeaderCheck> out;
  if (!v) return out;
  auto from_line = [&](const std::string& line, const std::string& option) {
    // "Name: regex"
    auto colon = line.find(':');
    if (colon == std::string::npos || colon == 0)
      fail(option, "must be \"Header-Name: regex\", got " + json::quote(shorten(line)));
    std::string name = line.substr(0, colon);
    std::string pattern = line.substr(colon + 1);
    pattern.erase(0, std::min(pattern.find_first_not_of(' '), pattern.size()));
    check_header_field(name, "", option);
    out.push_back(HeaderCheck{name, Regex(pattern, option)});
  };
  if (v->is_string()) {
    from_line(v->as_string(), "headerRegex");
  } else if (v->is_array()) {
    for (const auto& e : v->as_array()) {
      if (!e.is_string()) fail("headerRegex", "array elements must be strings, " + got(e));
      from_line(e.as_string(), "headerRegex");
    }
  } else if (v->is_object()) {
    for (const auto& [name, pattern] : v->as_object()) {
      if (!pattern.is_string()) fail("headerRegex." + name, "must be a string, " + got(pattern));
      check_header_field(name, "", "headerRegex");
      out.push_back(HeaderCheck{name, Regex(pattern.as_string(), "headerRegex." + name)});
    }
  } else {
    fail("headerRegex", "must be an object (header name to regex) or a string, " + got(*v));
  }
  return out;
}

// A file the check reads (CA, client certificate). Checked here so that a
// typo is a config error naming the option, not a TLS failure of the target.
std::optional<std::string> readable_file(const Options& opts, const char* option) {
  auto path = opts.optional_string(option);
  if (!path) return path;
  if (path->empty()) fail(option, "must be a file path, got an empty string");
  if (::access(path->c_str(), R_OK) != 0)
    fail(option, "cannot read " + json::quote(*path) + ": " + std::strerror(errno));
  return path;
}

size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<size_t> row(b.size() + 1);
  for (size_t j = 0; j <= b.size(); ++j) row[j] = j;
  for (size_t i = 1; i <= a.size(); ++i) {
    size_t prev = row[0];
    row[0] = i;
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cur = row[j];
      bool same = std::tolower(static_cast<unsigned char>(a[i - 1])) ==
                  std::tolower(static_cast<unsigned char>(b[j - 1]));
      row[j] = std::min({row[j] + 1, row[j - 1] + 1, prev + (same ? 0 : 1)});
      prev = cur;
    }
  }
  return row[b.size()];
}

// The JIT stack every search shares. Searches run on the loop thread only,
// one at a time, so one stack serves them all.
struct JitStack {
  pcre2_jit_stack* stack = pcre2_jit_stack_create(32 * 1024, kJitStackMax, nullptr);
  ~JitStack() {
    if (stack) pcre2_jit_stack_free(stack);
  }
};

}  // namespace

// ------------------------------------------------------------------------
// Regex

Regex::Regex(const std::string& pattern, const std::string& option) : pattern_(pattern) {
  std::unique_ptr<pcre2_compile_context, decltype(&pcre2_compile_context_free)> cctx(
      pcre2_compile_context_create(nullptr), &pcre2_compile_context_free);
  if (!cctx) throw std::bad_alloc();
  pcre2_set_compile_extra_options(cctx.get(), PCRE2_EXTRA_ALT_BSUX);
  int code = 0;
  PCRE2_SIZE offset = 0;
  pcre2_code* re = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(pattern.data()), pattern.size(),
                                 PCRE2_UTF | PCRE2_MATCH_INVALID_UTF | PCRE2_ALT_BSUX, &code,
                                 &offset, cctx.get());
  if (!re) {
    PCRE2_UCHAR text[256];
    pcre2_get_error_message(code, text, sizeof text);
    fail(option, "is not a valid regular expression (at offset " + std::to_string(offset) +
                     "): " + reinterpret_cast<const char*>(text));
  }
  // JIT when the platform has it; the interpreter is the fallback.
  pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
  code_.reset(re, &pcre2_code_free);
}

Regex::Outcome Regex::search(std::string_view subject, std::string* error) const {
  static JitStack jit;
  std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> mctx(
      pcre2_match_context_create(nullptr), &pcre2_match_context_free);
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> md(
      pcre2_match_data_create(1, nullptr), &pcre2_match_data_free);
  if (!mctx || !md) throw std::bad_alloc();
  pcre2_set_match_limit(mctx.get(), kMatchLimit);
  pcre2_set_heap_limit(mctx.get(), kHeapLimitKiB);
  if (jit.stack) pcre2_jit_stack_assign(mctx.get(), nullptr, jit.stack);
  int rc = pcre2_match(code_.get(), reinterpret_cast<PCRE2_SPTR>(subject.data()), subject.size(), 0,
                       0, md.get(), mctx.get());
  if (rc >= 0) return Outcome::Match;
  if (rc == PCRE2_ERROR_NOMATCH) return Outcome::NoMatch;
  if (error) {
    PCRE2_UCHAR text[256];
    pcre2_get_error_message(rc, text, sizeof text);
    *error = reinterpret_cast<const char*>(text);
  }
  return Outcome::Error;
}

// ------------------------------------------------------------------------
// JSON paths

JsonPath parse_json_path(const std::string& text, const std::string& option) {
  JsonPath p;
  p.text = text;
  size_t i = 0;
  auto bad = [&](const std::string& why) {
    fail(option, "is not a valid JSON path (" + why + " at character " + std::to_string(i + 1) +
                     "), e.g. \"$.data.items[0].ok\"");
  };
  if (text.empty()) bad("empty");
  if (text[0] == '$') ++i;
  bool first = true;
  while (i < text.size()) {
    char c = text[i];
    if (c == '[') {
      ++i;
      JsonPathStep step;
      if (i < text.size() && (text[i] == '\'' || text[i] == '"')) {
        char quote = text[i++];
        size_t end = text.find(quote, i);
        if (end == std::string::npos) bad("unterminated quoted name");
        step.key = text.substr(i, end - i);
        i = end + 1;
      } else {
        size_t start = i;
        while (i < text.size() && text[i] >= '0' && text[i] <= '9') ++i;
        if (i == start || i - start > 9) bad("expected an array index or a quoted name");
        step.is_index = true;
        step.index = std::stoul(text.substr(start, i - start));
      }
      if (i >= text.size() || text[i] != ']') bad("expected ']'");
      ++i;
      p.steps.push_back(std::move(step));
    } else {
      if (c == '.') {
        ++i;
      } else if (!(first && text[0] != '$')) {
        bad("expected '.' or '['");
      }
      size_t start = i;
      while (i < text.size() && text[i] != '.' && text[i] != '[') ++i;
      if (i == start) bad("empty member name");
      JsonPathStep step;
      step.key = text.substr(start, i - start);
      p.steps.push_back(std::move(step));
    }
    first = false;
  }
  return p;
}

const json::Value* JsonPath::find(const json::Value& root) const noexcept {
  const json::Value* v = &root;
  for (const auto& s : steps) {
    if (s.is_index) {
      if (!v->is_array() || s.index >= v->size()) return nullptr;
      v = &v->as_array()[s.index];
    } else {
      v = v->find(s.key);
      if (!v) return nullptr;
    }
  }
  return v;
}

bool json_value_matches(const json::Value& actual, const json::Value& expected) {
  if (actual == expected) return true;
  if (expected.is_string() && !actual.is_string() && !actual.is_array() && !actual.is_object())
    return json::serialize(actual) == expected.as_string();
  return false;
}

// ------------------------------------------------------------------------
// Options

const std::vector<std::string_view>& known_option_names() {
  static const std::vector<std::string_view> names = {
      "timeout",       "method",          "headers",
      "body",          "httpVersion",     "followRedirects",
      "maxRedirects",  "expectedStatus",  "keyword",
      "invertKeyword", "regex",           "invertRegex",
      "headerRegex",   "jsonPath",        "expectedValue",
      "maxBodyBytes",  "basicAuth",       "bearerToken",
      "proxy",         "tlsVerify",       "servername",
      "sni",           "caFile",          "clientCert",
      "clientKey",     "degradedAboveMs", "certExpiryDays",
      "ipFamily"};
  return names;
}

std::string suggest_option(std::string_view key) {
  std::string best;
  size_t best_d = 3;  // at most two edits away
  for (auto name : known_option_names()) {
    size_t d = edit_distance(key, name);
    if (d < best_d) {
      best_d = d;
      best = std::string(name);
    }
  }
  return best;
}

WebOptions parse_web_options(const std::string& config_json) {
  auto opts = Options::parse(config_json);
  WebOptions o;

  o.timeout_ms = opts.optional_number("timeout", 1, kMaxTimeoutMs);

  o.method = opts.string("method", "GET");
  if (o.method.empty() || o.method.size() > 32 ||
      !std::all_of(o.method.begin(), o.method.end(),
                   [](char c) { return is_token_char(static_cast<unsigned char>(c)); }))
    fail("method", "must be an HTTP method such as \"GET\" or \"POST\", got " +
                       json::quote(shorten(o.method)));
  std::transform(o.method.begin(), o.method.end(), o.method.begin(),
                 [](unsigned char c) { return static_cast<char>(std::toupper(c)); });

  o.headers = parse_headers(opts.get("headers"));

  if (const Value* b = opts.get("body")) {
    if (b->is_string()) {
      o.body = b->as_string();
    } else if (b->is_object() || b->is_array()) {
      o.body = json::serialize(*b);
      o.body_is_json = true;
    } else {
      fail("body", "must be a string, an object or an array, " + got(*b));
    }
    if (o.method == "HEAD") fail("body", "cannot be sent with method HEAD");
  }

  o.http_version = opts.one_of("httpVersion", "auto", {"auto", "1.1", "2"});
  o.follow_redirects = opts.boolean("followRedirects", true);
  o.max_redirects = opts.integer("maxRedirects", 10, 0, 50);
  o.expected_status = parse_status(opts.get("expectedStatus"));

  o.keyword = opts.optional_string("keyword");
  if (o.keyword && o.keyword->empty()) fail("keyword", "must not be empty");
  o.invert_keyword = opts.boolean("invertKeyword", false);
  if (o.invert_keyword && !o.keyword) fail("invertKeyword", "needs option 'keyword'");

  if (auto r = opts.optional_string("regex")) o.regex.emplace(*r, "regex");
  o.invert_regex = opts.boolean("invertRegex", false);
  if (o.invert_regex && !o.regex) fail("invertRegex", "needs option 'regex'");

  o.header_checks = parse_header_regex(opts.get("headerRegex"));

  if (auto p = opts.optional_string("jsonPath")) o.json_path = parse_json_path(*p, "jsonPath");
  // expectedValue may be any JSON value, null included: read it raw so that
  // an explicit null is "the value must be null", not "absent".
  if (const Value* ev = opts.root().find("expectedValue")) {
    o.expected_value = *ev;
    if (!o.json_path) fail("expectedValue", "needs option 'jsonPath'");
  }

  o.max_body_bytes = opts.integer("maxBodyBytes", 1 << 20, 0, kMaxBodyLimit);

  if (const Value* a = opts.get("basicAuth")) {
    if (!a->is_object()) fail("basicAuth", "must be an object {username, password}, " + got(*a));
    const Value* u = a->find("username");
    const Value* p = a->find("password");
    if (!u || !u->is_string())
      fail("basicAuth.username", "must be a string, " + (u ? got(*u) : std::string("missing")));
    if (p && !p->is_null() && !p->is_string())
      fail("basicAuth.password", "must be a string, " + got(*p));
    if (u->as_string().find(':') != std::string::npos)
      fail("basicAuth.username", "must not contain ':'");
    o.basic_user = u->as_string();
    o.basic_password = p && p->is_string() ? p->as_string() : std::string();
  }
  o.bearer_token = opts.optional_string("bearerToken");
  if (o.bearer_token && o.basic_user)
    fail("bearerToken", "cannot be combined with option 'basicAuth'");
  if (o.bearer_token)
    for (char c : *o.bearer_token)
      if (c == '\r' || c == '\n' || c == '\0') fail("bearerToken", "must not contain line breaks");

  o.proxy = opts.optional_string("proxy");
  if (o.proxy) {
    auto scheme_end = o.proxy->find("://");
    std::string scheme = scheme_end == std::string::npos ? "" : o.proxy->substr(0, scheme_end);
    static const char* const kSchemes[] = {"http",    "https",  "socks4",
                                           "socks4a", "socks5", "socks5h"};
    if (std::none_of(std::begin(kSchemes), std::end(kSchemes),
                     [&](const char* s) { return scheme == s; }))
      fail("proxy",
           "must be a URL starting with http://, https://, socks4://, socks4a://, socks5:// or "
           "socks5h://");
  }

  o.tls_verify = opts.boolean("tlsVerify", true);
  auto servername = opts.optional_string("servername");
  auto sni = opts.optional_string("sni");
  if (servername && sni && *servername != *sni)
    fail("sni", "and option 'servername' are the same setting and disagree");
  o.servername = servername ? servername : sni;
  if (o.servername) {
    const std::string& s = *o.servername;
    if (s.empty() || s.size() > 253 || !std::all_of(s.begin(), s.end(), [](unsigned char c) {
          return std::isalnum(c) || c == '-' || c == '.' || c == '_';
        }))
      fail(servername ? "servername" : "sni",
           "must be a host name, got " + json::quote(shorten(s)));
  }
  o.ca_file = readable_file(opts, "caFile");
  o.client_cert = readable_file(opts, "clientCert");
  o.client_key = readable_file(opts, "clientKey");
  if (o.client_key && !o.client_cert) fail("clientKey", "needs option 'clientCert'");

  o.degraded_above_ms = opts.optional_number("degradedAboveMs", 0, kMaxTimeoutMs);
  o.cert_expiry_days = opts.number("certExpiryDays", 14, 0, 3650);

  o.family_name = opts.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
  o.family = o.family_name == "ipv4"   ? GUARDANT_FAMILY_IPV4
             : o.family_name == "ipv6" ? GUARDANT_FAMILY_IPV6
                                       : GUARDANT_FAMILY_ANY;

  o.unknown_keys = json::unknown_keys(opts.root(), known_option_names());
  return o;
}

}  // namespace guardant::web
