// The built-in `web` probe: does a URL answer as expected, and how long does
// each phase take on a cold connection?
//
// Target: an http:// or https:// URL (user:password@ in it works as basic
// auth and never appears in results). Options (config JSON):
//
//   option           type                         default     meaning
//   timeout          number, ms (1..600000)       the check's  time limit of the whole check
//                                                 timeout
//   method           string                       "GET"       HTTP method (upper-cased); HEAD is
//                                                             sent only when asked for
//   headers          object of strings (or a      none        request headers; they replace
//                    string holding one)                      libcurl's own (User-Agent, Host...)
//   body             string | object | array      none        request body; an object/array is
//                                                             sent as JSON with Content-Type
//                                                             application/json unless set
//   httpVersion      "auto" | "1.1" | "2"         "auto"      auto: HTTP/2 over TLS when the
//                                                             server offers it, else 1.1; "2":
//                                                             h2 (h2c prior knowledge on http://)
//                                                             and down unless HTTP/2 was spoken
//   followRedirects  boolean                      true        follow 3xx Location
//   maxRedirects     integer 0..50                10          hop limit; more is down
//                                                             (too_many_redirects)
//   expectedStatus   number | string | array      "200-299"   accepted codes: 200, "2xx",
//                                                             "200-299", or a list of these
//   keyword          string                       none        must occur in the body (case-
//                                                             sensitive)
//   invertKeyword    boolean                      false       keyword must NOT occur
//   regex            string (PCRE2, JS-like)      none        must match the body; flags inline,
//                                                             e.g. "(?i)ok"
//   invertRegex      boolean                      false       regex must NOT match
//   headerRegex      object name->regex, or       none        each named response header must
//                    "Name: regex" (or an array               exist and match
//                    of such strings)
//   jsonPath         string                       none        "$.status", "data.items[0].ok",
//                                                             "$['odd key']"; the body must be
//                                                             JSON and the path must exist
//   expectedValue    any JSON                     none        the value at jsonPath must equal it
//                                                             ("42" also matches 42, as strings
//                                                             were compared before)
//   maxBodyBytes     integer 0..268435456         1048576     stop reading past it: down,
//                                                             body_limit
//   basicAuth        {username, password}         none        HTTP basic auth (secret: never
//                                                             echoed)
//   bearerToken      string                       none        Authorization: Bearer (secret)
//   proxy            URL (http, https, socks4(a), none        proxy for this check; environment
//                    socks5(h))                               proxies are never used
//   tlsVerify        boolean                      true        verify chain and host name
//   servername       string (alias: sni)          none        TLS name (SNI, certificate check)
//                                                             and Host header; the connection
//                                                             still goes to the target's host
//   caFile           path                         system CAs  CA bundle (PEM) to verify against
//   clientCert       path                         none        client certificate (PEM)
//   clientKey        path                         in cert     its private key (PEM)
//   degradedAboveMs  number, ms (0..600000)       none        degraded when slower than this
//   certExpiryDays   number 0..3650               14          degraded when the verified chain's
//                                                             earliest expiry is closer than this
//                                                             (0: never; with tlsVerify false the
//                                                             chain as sent, expired included)
//   ipFamily         "auto" | "ipv4" | "ipv6"     "auto"      which addresses to use
//
// A wrong option type refuses the check with a message naming the option.
// Unknown keys are logged as a warning once per target and key.
//
// Flow: the target's host name is resolved through the host (precise
// dns_nxdomain / dns_timeout, no blocking) and handed to libcurl with
// CURLOPT_RESOLVE, in a DNS cache private to the check (a CURLSH per check)
// so no other check ever sees it. With a proxy, libcurl resolves the proxy
// instead. The transfer runs in the plugin's one multi handle (see
// curl_driver.hpp) on a fresh connection: no reuse, no TLS session cache,
// no DNS cache. The check's time limit is min(option timeout, host deadline
// minus a small margin) and is enforced by a host timer, which also tells in
// which phase time ran out.
//
// Results
//   up        response time = total; message "HTTP 200 in 12.34 ms";
//             protocol code = HTTP status.
//   degraded  slow_response (above degradedAboveMs) or cert_expiring
//             (certExpiryDays); the check itself passed.
//   down      dns_nxdomain / dns_timeout / dns_error (resolve); connect_refused /
//             connect_timeout / network_unreachable / connect_error
//             (connect); tls_handshake / cert_expired / cert_hostname (tls);
//             http_status ("HTTP 503, expected 200-299"), assertion (keyword,
//             regex, header, JSON or HTTP version mismatch; the detail says
//             which), too_many_redirects (assert); body_limit (transfer);
//             connection_closed (the server closed without (a full) answer),
//             protocol_error (not HTTP, broken HTTP/2...); timeout with the
//             phase (tls, wait, transfer) where time ran out.
//   inconclusive  the worker could not judge: out of memory, a local TLS
//             file libcurl could not use, a regex that hit PCRE2's limits.
//   timings   resolve, connect, tls, wait (to first byte), transfer, total in
//             ms, from libcurl's *_TIME_T infos; with redirects each phase is
//             the sum over the hops. Phases add up to total; one not reached
//             is < 0.
//   details   ip, family, port, method, httpVersion, redirects, finalUrl,
//             redirectUrl (a 3xx not followed), bodyBytes, contentType, and on
//             https `tls` (leaf/chain expiry, subject, issuer, SANs, version).
#include <arpa/inet.h>
#include <curl/curl.h>
#include <netinet/in.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "curl_driver.hpp"
#include "net_util.hpp"
#include "tls_report.hpp"
#include "web_options.hpp"

#ifndef GUARDANT_PLUGIN_VERSION
#define GUARDANT_PLUGIN_VERSION "0.0.0-dev"
#endif

namespace {

using guardant::Check;
using guardant::ConfigError;
using guardant::Host;
using guardant::LogLevel;
using guardant::Request;
using guardant::Result;
using guardant::Status;
using guardant::probes::CertReport;
using guardant::web::CurlDriver;
using guardant::web::Regex;
using guardant::web::WebOptions;
namespace json = guardant::json;

constexpr int64_t kNsPerMs = 1'000'000;
// Used only when the host gives no deadline and the config no timeout.
constexpr int64_t kDefaultTimeoutNs = 10'000 * kNsPerMs;
// libcurl's own limits sit this far behind ours, as a backstop only: the
// host timer decides, so the phase of a timeout is known.
constexpr long kCurlBackstopMs = 1000;
// Bounds the warn-once memory of unknown option keys.
constexpr size_t kMaxWarned = 10'000;

// Reasons beyond the fixed list in probe.h.
constexpr const char* kReasonConnectionClosed = "connection_closed";
constexpr const char* kReasonProtocolError = "protocol_error";
constexpr const char* kReasonTooManyRedirects = "too_many_redirects";
constexpr const char* kReasonSlow = "slow_response";
constexpr const char* kReasonCertExpiring = "cert_expiring";

constexpr const char* kOptionsSchema = R"({
  "type": "object",
  "properties": {
    "timeout": {"type": "number", "minimum": 1, "maximum": 600000},
    "method": {"type": "string", "default": "GET"},
    "headers": {"type": ["object", "string"], "additionalProperties": {"type": "string"}},
    "body": {"type": ["string", "object", "array"]},
    "httpVersion": {"enum": ["auto", "1.1", "2"], "default": "auto"},
    "followRedirects": {"type": "boolean", "default": true},
    "maxRedirects": {"type": "integer", "minimum": 0, "maximum": 50, "default": 10},
    "expectedStatus": {"type": ["number", "string", "array"], "default": "200-299"},
    "keyword": {"type": "string"},
    "invertKeyword": {"type": "boolean", "default": false},
    "regex": {"type": "string"},
    "invertRegex": {"type": "boolean", "default": false},
    "headerRegex": {"type": ["object", "string", "array"]},
    "jsonPath": {"type": "string"},
    "expectedValue": {},
    "maxBodyBytes": {"type": "integer", "minimum": 0, "maximum": 268435456, "default": 1048576},
    "basicAuth": {"type": "object", "properties": {"username": {"type": "string"},
                                                   "password": {"type": "string"}}},
    "bearerToken": {"type": "string"},
    "proxy": {"type": "string"},
    "tlsVerify": {"type": "boolean", "default": true},
    "servername": {"type": "string"},
    "sni": {"type": "string"},
    "caFile": {"type": "string"},
    "clientCert": {"type": "string"},
    "clientKey": {"type": "string"},
    "degradedAboveMs": {"type": "number", "minimum": 0},
    "certExpiryDays": {"type": "number", "minimum": 0, "maximum": 3650, "default": 14},
    "ipFamily": {"enum": ["auto", "ipv4", "ipv6"], "default": "auto"}
  }
})";

// SSL_CTX ex_data slot that points the verify callback at its check.
int g_ssl_ctx_index = -1;
// Unknown option keys already warned about ("<target>\n<key>"); loop thread.
std::set<std::string>* g_warned = nullptr;

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ms);
  return buf;
}

double ns_to_ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

std::string iso_time(int64_t ms) {
  std::time_t t = static_cast<std::time_t>(ms / 1000);
  std::tm tm{};
  gmtime_r(&t, &tm);
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

bool starts_with_ci(std::string_view s, std::string_view prefix) {
  if (s.size() < prefix.size()) return false;
  for (size_t i = 0; i < prefix.size(); ++i)
    if (std::tolower(static_cast<unsigned char>(s[i])) != prefix[i]) return false;
  return true;
}

bool equals_ci(std::string_view a, std::string_view b) {
  return a.size() == b.size() && std::equal(a.begin(), a.end(), b.begin(), [](char x, char y) {
           return std::tolower(static_cast<unsigned char>(x)) ==
                  std::tolower(static_cast<unsigned char>(y));
         });
}

struct UrlDeleter {
  void operator()(CURLU* u) const noexcept { curl_url_cleanup(u); }
};
using UrlPtr = std::unique_ptr<CURLU, UrlDeleter>;

std::string url_part(CURLU* u, CURLUPart part, unsigned flags = 0) {
  char* s = nullptr;
  if (curl_url_get(u, part, &s, flags) != CURLUE_OK || !s) return "";
  std::string out = s;
  curl_free(s);
  return out;
}

// `url` without user:password, for anything that leaves the probe. "" when
// it does not parse.
std::string safe_url(const std::string& url) {
  if (url.empty()) return "";
  UrlPtr u(curl_url());
  if (!u || curl_url_set(u.get(), CURLUPART_URL, url.c_str(), 0) != CURLUE_OK) return "";
  curl_url_set(u.get(), CURLUPART_USER, nullptr, 0);
  curl_url_set(u.get(), CURLUPART_PASSWORD, nullptr, 0);
  return url_part(u.get(), CURLUPART_URL);
}

struct Target {
  std::string url;    // what libcurl gets (servername applied)
  std::string shown;  // the target without credentials, for messages
  bool https = false;
  std::string host;  // without brackets
  int literal_family = 0;
  long port = 0;
};

Target parse_target(const std::string& text, const WebOptions& o) {
  const std::string expected = "; expected http://host[:port]/path or https://...";
  if (text.empty()) throw ConfigError("target is empty" + expected);
  UrlPtr u(curl_url());
  if (!u) throw std::bad_alloc();
  // The text itself is not echoed: it may carry credentials.
  if (!starts_with_ci(text, "http://") && !starts_with_ci(text, "https://"))
    throw ConfigError("target must be an http:// or https:// URL" + expected);
  CURLUcode rc = curl_url_set(u.get(), CURLUPART_URL, text.c_str(), 0);
  if (rc != CURLUE_OK)
    throw ConfigError(std::string("target is not a valid URL (") + curl_url_strerror(rc) + ")" +
                      expected);
  Target t;
  t.https = url_part(u.get(), CURLUPART_SCHEME) == "https";
  // An international name as libcurl looks it up (punycode), so that the
  // host resolves it and CURLOPT_RESOLVE matches it.
#ifdef CURLU_PUNYCODE
  t.host = url_part(u.get(), CURLUPART_HOST, CURLU_PUNYCODE);
#else
  t.host = url_part(u.get(), CURLUPART_HOST);
#endif
  if (t.host.size() >= 2 && t.host.front() == '[' && t.host.back() == ']')
    t.host = t.host.substr(1, t.host.size() - 2);
  if (t.host.empty()) throw ConfigError("target has no host" + expected);
  std::string port = url_part(u.get(), CURLUPART_PORT, CURLU_DEFAULT_PORT);
  t.port = port.empty() ? (t.https ? 443 : 80) : std::stol(port);
  unsigned char buf[sizeof(in6_addr)];
  if (inet_pton(AF_INET, t.host.c_str(), buf) == 1)
    t.literal_family = GUARDANT_FAMILY_IPV4;
  else if (inet_pton(AF_INET6, t.host.c_str(), buf) == 1)
    t.literal_family = GUARDANT_FAMILY_IPV6;
  if (o.servername) {
    // The URL names the server (SNI, certificate check, Host header); the
    // connection is redirected to the real host with CURLOPT_CONNECT_TO.
    if (curl_url_set(u.get(), CURLUPART_HOST, o.servername->c_str(), 0) != CURLUE_OK)
      throw ConfigError("option 'servername' is not a valid host name");
  }
  t.url = url_part(u.get(), CURLUPART_URL);
  t.shown = safe_url(t.url);
  return t;
}

// libcurl's cumulative progress marks (µs since the start of each hop,
// summed over the hops of a redirect chain).
struct Marks {
  long hop = 0;  // redirects followed so far
  curl_off_t nl = 0, conn = 0, app = 0, pre = 0, st = 0, total = 0;
};

enum class Phase { Resolve = 0, Connect, Tls, Wait, Transfer };

const char* phase_name(Phase p) {
  switch (p) {
    case Phase::Resolve:
      return "resolve";
    case Phase::Connect:
      return "connect";
    case Phase::Tls:
      return "tls";
    case Phase::Wait:
      return "wait";
    case Phase::Transfer:
      return "transfer";
  }
  return "";
}

const char* phase_activity(Phase p) {
  switch (p) {
    case Phase::Resolve:
      return "resolving";
    case Phase::Connect:
      return "connecting";
    case Phase::Tls:
      return "in the TLS handshake";
    case Phase::Wait:
      return "waiting for the first byte of the response";
    case Phase::Transfer:
      return "reading the response";
  }
  return "";
}

std::string http_version_name(long v) {
  switch (v) {
    case CURL_HTTP_VERSION_1_0:
      return "1.0";
    case CURL_HTTP_VERSION_1_1:
      return "1.1";
    case CURL_HTTP_VERSION_2_0:
      return "2";
#ifdef CURL_HTTP_VERSION_3
    case CURL_HTTP_VERSION_3:
      return "3";
#endif
    default:
      return "";
  }
}

class WebCheck final : public Check, public guardant::web::Transfer {
 public:
  explicit WebCheck(Request request)
      : Check(std::move(request)),
        opts_(guardant::web::parse_web_options(this->request().config_json)),
        target_(parse_target(this->request().target, opts_)) {
    if (target_.literal_family && opts_.family != GUARDANT_FAMILY_ANY &&
        target_.literal_family != opts_.family)
      throw ConfigError("the target's host is an IPv" + std::to_string(target_.literal_family) +
                        " address but option 'ipFamily' is \"" + opts_.family_name + "\"");
    if (!CurlDriver::get()) throw std::runtime_error("the web plugin is not initialised");
  }
  ~WebCheck() override { release(); }

  void start() override {
    warn_unknown_keys();
    start_ns_ = Host::now_ns();
    end_ns_ = start_ns_ + budget_ns(start_ns_);
    if (end_ns_ <= start_ns_) {
      finish_simple(GUARDANT_REASON_TIMEOUT, "", "no time left before the deadline to start");
      return;
    }
    if (!timer_.start(end_ns_ - start_ns_, [this] { on_time_up(); })) {
      finish(Result::inconclusive("the host refused a timer"));
      return;
    }
    // libcurl resolves an address literal itself (no lookup), and with a
    // proxy the target's name is the proxy's business.
    if (target_.literal_family || opts_.proxy) {
      begin_transfer();
      return;
    }
    phase_ = State::Resolving;
    if (!resolve_.start(target_.host, opts_.family,
                        [this](const guardant::Resolution& r) { on_resolved(r); }))
      finish(Result::inconclusive("the host refused to resolve '" + target_.host + "'"));
  }

  void on_cancel() override {
    release();
    complete(Result::inconclusive("cancelled by the host"));
  }

  Check* owner_check() noexcept override { return this; }

  // libcurl (7.88) reports CONNECT_TIME only once the whole connection,
  // TLS included, is up. When a handshake fails or stalls we need the TCP
  // connect's moment ourselves: the connecting socket turning writable, or
  // failing that (libcurl noticed the connect on its own) its first wait
  // for input, which only comes after the connect.
  void on_socket_writable() noexcept override {
    if (!hop_starts_.empty() && hop_tcp_ns_ == 0) hop_tcp_ns_ = Host::now_ns();
  }
  void on_socket_wait(int what) noexcept override {
    if ((what & CURL_POLL_IN) && !hop_starts_.empty() && hop_tcp_ns_ == 0)
      hop_tcp_ns_ = Host::now_ns();
  }

  void on_transfer_done(CURLcode rc) override {
    const int64_t now = Host::now_ns();
    Outcome out = read_outcome(now, /*timed_out=*/false);
    release();
    if (rc == CURLE_OK)
      finish(judge_response(out));
    else
      finish(judge_error(rc, out));
  }

 private:
  enum class State { Idle, Resolving, Transferring, Done };

  // Everything read from libcurl before the handle goes away.
  struct Outcome {
    Marks marks;
    Phase where = Phase::Resolve;  // how far the current hop got
    long status = 0;
    long http_version = 0;
    long os_errno = 0;
    long verify_result = 0;
    std::string ip;
    long port = 0;
    std::string final_url;
    std::string redirect_url;
    std::string content_type;
    std::string error;  // libcurl's error buffer
    double curl_total_ms = 0;
  };

  // ---------------------------------------------------------------------
  // Setup

  // The SDK's budget: min(timeout option, deadline minus a margin).
  int64_t budget_ns(int64_t now) const {
    return guardant::check_budget_ns(request(), opts_.timeout_ms, now, kDefaultTimeoutNs);
  }

  void warn_unknown_keys() {
    if (opts_.unknown_keys.empty() || !g_warned) return;
    for (const auto& key : opts_.unknown_keys) {
      std::string id = target_.shown + "\n" + key;
      if (g_warned->count(id)) continue;
      if (g_warned->size() >= kMaxWarned) g_warned->clear();
      g_warned->insert(id);
      std::string hint = guardant::web::suggest_option(key);
      Host::log(LogLevel::Warn, "web check of " + target_.shown + ": unknown option '" + key +
                                    "' ignored" +
                                    (hint.empty() ? "" : " (did you mean '" + hint + "'?)"));
    }
  }

  void on_resolved(const guardant::Resolution& r) {
    resolve_ms_ = ns_to_ms(Host::now_ns() - start_ns_);
    if (!r.ok) {
      std::string reason = r.error_reason.empty() ? "dns_error" : r.error_reason;
      std::string detail =
          r.error_detail.empty() ? "cannot resolve '" + target_.host + "'" : r.error_detail;
      finish_simple(reason, "resolve", detail);
      return;
    }
    for (const auto& a : r.addresses)
      if (opts_.family == GUARDANT_FAMILY_ANY || a.family == opts_.family) addrs_.push_back(a);
    if (addrs_.empty()) {
      finish_simple(GUARDANT_REASON_DNS_NXDOMAIN, "resolve",
                    "no " + std::string(opts_.family == GUARDANT_FAMILY_IPV4 ? "IPv4 " : "IPv6 ") +
                        "address for '" + target_.host + "'");
      return;
    }
    begin_transfer();
  }

  template <class T>
  void set(CURLoption option, T value, const char* name) {
    CURLcode rc = curl_easy_setopt(easy_, option, value);
    if (rc != CURLE_OK)
      throw std::runtime_error(std::string("libcurl refused ") + name + ": " +
                               curl_easy_strerror(rc));
  }

  void append(curl_slist*& list, const std::string& line) {
    curl_slist* next = curl_slist_append(list, line.c_str());
    if (!next) throw std::bad_alloc();
    list = next;
  }

  bool has_header(std::string_view name) const {
    for (const auto& [n, v] : opts_.headers)
      if (equals_ci(n, name)) return true;
    return false;
  }

  std::string host_for_curl(const std::string& host) const {
    return host.find(':') != std::string::npos ? "[" + host + "]" : host;
  }

  void begin_transfer() {
    phase_ = State::Transferring;
    transfer_start_ns_ = Host::now_ns();
    easy_ = curl_easy_init();
    share_ = curl_share_init();
    if (!easy_ || !share_) throw std::bad_alloc();
    // A DNS cache of the check's own: the addresses we put in with
    // CURLOPT_RESOLVE are seen by this check only.
    curl_share_setopt(share_, CURLSHOPT_SHARE, CURL_LOCK_DATA_DNS);
    set(CURLOPT_SHARE, share_, "CURLOPT_SHARE");
    set(CURLOPT_URL, target_.url.c_str(), "CURLOPT_URL");
    set(CURLOPT_PRIVATE, static_cast<void*>(static_cast<guardant::web::Transfer*>(this)),
        "CURLOPT_PRIVATE");
    errbuf_[0] = '\0';
    set(CURLOPT_ERRORBUFFER, errbuf_, "CURLOPT_ERRORBUFFER");
    set(CURLOPT_NOSIGNAL, 1L, "CURLOPT_NOSIGNAL");
    set(CURLOPT_PROTOCOLS_STR, "http,https", "CURLOPT_PROTOCOLS_STR");
    set(CURLOPT_REDIR_PROTOCOLS_STR, "http,https", "CURLOPT_REDIR_PROTOCOLS_STR");

    // A cold connection every time, so timings mean the same each check.
    set(CURLOPT_FRESH_CONNECT, 1L, "CURLOPT_FRESH_CONNECT");
    set(CURLOPT_FORBID_REUSE, 1L, "CURLOPT_FORBID_REUSE");
    set(CURLOPT_DNS_CACHE_TIMEOUT, 0L, "CURLOPT_DNS_CACHE_TIMEOUT");
    set(CURLOPT_SSL_SESSIONID_CACHE, 0L, "CURLOPT_SSL_SESSIONID_CACHE");
    set(CURLOPT_MAXCONNECTS, 1L, "CURLOPT_MAXCONNECTS");

    // Our timer decides; libcurl's limits are a backstop a little later.
    long left_ms = std::max<long>(1, static_cast<long>((end_ns_ - transfer_start_ns_) / kNsPerMs));
    set(CURLOPT_TIMEOUT_MS, left_ms + kCurlBackstopMs, "CURLOPT_TIMEOUT_MS");
    set(CURLOPT_CONNECTTIMEOUT_MS, left_ms + kCurlBackstopMs, "CURLOPT_CONNECTTIMEOUT_MS");

    // Only the configured proxy, never one from the environment.
    set(CURLOPT_PROXY, opts_.proxy ? opts_.proxy->c_str() : "", "CURLOPT_PROXY");
    set(CURLOPT_NOPROXY, "", "CURLOPT_NOPROXY");

    // libcurl reads a long: the CURL_IPRESOLVE_* macros are ints.
    long ipresolve = opts_.family == GUARDANT_FAMILY_IPV4   ? CURL_IPRESOLVE_V4
                     : opts_.family == GUARDANT_FAMILY_IPV6 ? CURL_IPRESOLVE_V6
                                                            : CURL_IPRESOLVE_WHATEVER;
    set(CURLOPT_IPRESOLVE, ipresolve, "CURLOPT_IPRESOLVE");

    set(CURLOPT_FOLLOWLOCATION, opts_.follow_redirects ? 1L : 0L, "CURLOPT_FOLLOWLOCATION");
    set(CURLOPT_MAXREDIRS, static_cast<long>(opts_.max_redirects), "CURLOPT_MAXREDIRS");
    // Cookies set along a redirect chain (login hops) are sent on, as a
    // browser does; the store lives and dies with this check.
    set(CURLOPT_COOKIEFILE, "", "CURLOPT_COOKIEFILE");
    // Accept what libcurl can decode; assertions see the decoded body.
    set(CURLOPT_ACCEPT_ENCODING, "", "CURLOPT_ACCEPT_ENCODING");

    long version = CURL_HTTP_VERSION_2TLS;
    if (opts_.http_version == "1.1")
      version = CURL_HTTP_VERSION_1_1;
    else if (opts_.http_version == "2")
      version = target_.https ? CURL_HTTP_VERSION_2_0 : CURL_HTTP_VERSION_2_PRIOR_KNOWLEDGE;
    set(CURLOPT_HTTP_VERSION, version, "CURLOPT_HTTP_VERSION");

    set_method_and_body();
    set_headers();
    set_auth();
    set_tls();
    set_addresses();

    set(CURLOPT_WRITEFUNCTION, &WebCheck::on_body, "CURLOPT_WRITEFUNCTION");
    set(CURLOPT_WRITEDATA, this, "CURLOPT_WRITEDATA");
    set(CURLOPT_HEADERFUNCTION, &WebCheck::on_header, "CURLOPT_HEADERFUNCTION");
    set(CURLOPT_HEADERDATA, this, "CURLOPT_HEADERDATA");
    set(CURLOPT_PREREQFUNCTION, &WebCheck::on_prereq, "CURLOPT_PREREQFUNCTION");
    set(CURLOPT_PREREQDATA, this, "CURLOPT_PREREQDATA");
    set(CURLOPT_SOCKOPTFUNCTION, &WebCheck::on_sockopt, "CURLOPT_SOCKOPTFUNCTION");
    set(CURLOPT_SOCKOPTDATA, this, "CURLOPT_SOCKOPTDATA");

    std::string error;
    if (!CurlDriver::get()->add(easy_, &error)) {
      finish(Result::inconclusive("libcurl refused the transfer: " + error));
      return;
    }
    in_multi_ = true;
  }

  void set_method_and_body() {
    const std::string& m = opts_.method;
    if (m == "HEAD") {
      set(CURLOPT_NOBODY, 1L, "CURLOPT_NOBODY");
    } else if (m == "GET" && !opts_.body) {
      set(CURLOPT_HTTPGET, 1L, "CURLOPT_HTTPGET");
    } else {
      if (m == "POST")
        set(CURLOPT_POST, 1L, "CURLOPT_POST");
      else
        set(CURLOPT_CUSTOMREQUEST, m.c_str(), "CURLOPT_CUSTOMREQUEST");
      if (opts_.body || m == "POST") {
        const std::string& b = opts_.body ? *opts_.body : std::string();
        set(CURLOPT_POSTFIELDSIZE_LARGE, static_cast<curl_off_t>(b.size()),
            "CURLOPT_POSTFIELDSIZE_LARGE");
        set(CURLOPT_COPYPOSTFIELDS, b.c_str(), "CURLOPT_COPYPOSTFIELDS");
      }
    }
  }

  void set_headers() {
    for (const auto& [name, value] : opts_.headers)
      append(headers_, value.empty() ? name + ";" : name + ": " + value);
    if (opts_.body_is_json && !has_header("Content-Type"))
      append(headers_, "Content-Type: application/json");
    // No "Expect: 100-continue" round trip: it would add a wait to the
    // timings that a browser does not have.
    if (opts_.body && !has_header("Expect")) append(headers_, "Expect:");
    if (headers_) set(CURLOPT_HTTPHEADER, headers_, "CURLOPT_HTTPHEADER");
    if (!has_header("User-Agent"))
      set(CURLOPT_USERAGENT, "Guardant-Worker/" GUARDANT_PLUGIN_VERSION, "CURLOPT_USERAGENT");
  }

  void set_auth() {
    // libcurl sends these to the target's host only, never to a host a
    // redirect leads to.
    if (opts_.basic_user) {
      set(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BASIC), "CURLOPT_HTTPAUTH");
      set(CURLOPT_USERNAME, opts_.basic_user->c_str(), "CURLOPT_USERNAME");
      set(CURLOPT_PASSWORD, opts_.basic_password->c_str(), "CURLOPT_PASSWORD");
    } else if (opts_.bearer_token) {
      set(CURLOPT_HTTPAUTH, static_cast<long>(CURLAUTH_BEARER), "CURLOPT_HTTPAUTH");
      set(CURLOPT_XOAUTH2_BEARER, opts_.bearer_token->c_str(), "CURLOPT_XOAUTH2_BEARER");
    }
  }

  void set_tls() {
    set(CURLOPT_SSL_VERIFYPEER, opts_.tls_verify ? 1L : 0L, "CURLOPT_SSL_VERIFYPEER");
    set(CURLOPT_SSL_VERIFYHOST, opts_.tls_verify ? 2L : 0L, "CURLOPT_SSL_VERIFYHOST");
    if (opts_.ca_file) set(CURLOPT_CAINFO, opts_.ca_file->c_str(), "CURLOPT_CAINFO");
    if (opts_.client_cert) {
      set(CURLOPT_SSLCERT, opts_.client_cert->c_str(), "CURLOPT_SSLCERT");
      set(CURLOPT_SSLCERTTYPE, "PEM", "CURLOPT_SSLCERTTYPE");
    }
    if (opts_.client_key) set(CURLOPT_SSLKEY, opts_.client_key->c_str(), "CURLOPT_SSLKEY");
    // Only for the report of a failed verification: a libcurl without this
    // hook (another TLS backend) still runs the check.
    if (g_ssl_ctx_index >= 0 &&
        curl_easy_setopt(easy_, CURLOPT_SSL_CTX_FUNCTION, &WebCheck::on_ssl_ctx) == CURLE_OK &&
        curl_easy_setopt(easy_, CURLOPT_SSL_CTX_DATA, this) == CURLE_OK)
      verify_hook_ = true;
  }

  void set_addresses() {
    const std::string port = std::to_string(target_.port);
    if (!addrs_.empty() && !target_.literal_family) {
      // The addresses the host found, in its order; libcurl tries them
      // (happy eyeballs across families) like a name it resolved itself.
      std::string line = target_.host + ":" + port + ":";
      for (size_t i = 0; i < addrs_.size(); ++i)
        line += (i ? "," : "") + host_for_curl(addrs_[i].text);
      append(resolve_list_, line);
      set(CURLOPT_RESOLVE, resolve_list_, "CURLOPT_RESOLVE");
    }
    if (opts_.servername) {
      append(connect_to_,
             *opts_.servername + ":" + port + ":" + host_for_curl(target_.host) + ":" + port);
      set(CURLOPT_CONNECT_TO, connect_to_, "CURLOPT_CONNECT_TO");
    }
  }

  // ---------------------------------------------------------------------
  // libcurl callbacks (inside curl_multi_socket_action: never touch the
  // multi from here, never throw)

  static size_t on_body(char* data, size_t size, size_t n, void* user) noexcept {
    auto* self = static_cast<WebCheck*>(user);
    const size_t len = size * n;
    self->body_bytes_ += len;
    if (self->body_bytes_ > static_cast<uint64_t>(self->opts_.max_body_bytes)) {
      self->body_limit_hit_ = true;
      return 0;  // aborts the transfer: CURLE_WRITE_ERROR
    }
    if (self->opts_.needs_body()) {
      try {
        self->body_.append(data, len);
      } catch (...) {
        self->callback_error_ = "out of memory keeping the body";
        return 0;
      }
    }
    return len;
  }

  static size_t on_header(char* data, size_t size, size_t n, void* user) noexcept {
    auto* self = static_cast<WebCheck*>(user);
    const size_t len = size * n;
    std::string_view line(data, len);
    try {
      if (line.substr(0, 5) == "HTTP/") {
        // A new response (a redirect hop, a 1xx): only the last one counts.
        self->response_headers_.clear();
      } else if (!self->opts_.header_checks.empty()) {
        auto colon = line.find(':');
        if (colon != std::string_view::npos) {
          auto trim = [](std::string_view s) {
            while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
            while (!s.empty() &&
                   (s.back() == '\r' || s.back() == '\n' || s.back() == ' ' || s.back() == '\t'))
              s.remove_suffix(1);
            return s;
          };
          self->response_headers_.emplace_back(std::string(trim(line.substr(0, colon))),
                                               std::string(trim(line.substr(colon + 1))));
        }
      }
    } catch (...) {
      self->callback_error_ = "out of memory keeping the response headers";
      return 0;
    }
    return len;
  }

  // The connection (with TLS) is up and the request about to go out. The
  // TLS session is alive only now: with FORBID_REUSE the connection is gone
  // by the time the transfer is reported done.
  static int on_prereq(void* user, char*, char*, int, int) noexcept {
    auto* self = static_cast<WebCheck*>(user);
    try {
      self->tls_report_.reset();
      const curl_tlssessioninfo* info = nullptr;
      if (curl_easy_getinfo(self->easy_, CURLINFO_TLS_SSL_PTR, &info) == CURLE_OK && info &&
          info->backend == CURLSSLBACKEND_OPENSSL && info->internals)
        self->tls_report_ = guardant::probes::report_from_ssl(static_cast<SSL*>(info->internals));
    } catch (...) {
      self->tls_report_.reset();
    }
    return CURL_PREREQFUNC_OK;
  }

  // A socket for a new connection: the start of a hop (with redirects, each
  // hop connects anew). The marks at this point split the cumulative
  // timings into hops.
  static int on_sockopt(void* user, curl_socket_t, curlsocktype purpose) noexcept {
    auto* self = static_cast<WebCheck*>(user);
    if (purpose != CURLSOCKTYPE_IPCXN) return CURL_SOCKOPT_OK;
    try {
      Marks m = self->read_marks();
      if (self->hop_starts_.empty() || self->hop_starts_.back().hop != m.hop) {
        self->hop_starts_.push_back(m);
        self->hop_socket_ns_ = Host::now_ns();
        self->hop_tcp_ns_ = 0;
      }
    } catch (...) {
    }
    return CURL_SOCKOPT_OK;
  }

  // Installs a verify callback that remembers the certificate that failed,
  // so that a cert_expired result can say which one and when. The mode (and
  // so libcurl's verification) is left as libcurl set it.
  static CURLcode on_ssl_ctx(CURL*, void* ctx, void* user) noexcept {
    auto* c = static_cast<SSL_CTX*>(ctx);
    if (g_ssl_ctx_index >= 0) {
      SSL_CTX_set_ex_data(c, g_ssl_ctx_index, user);
      SSL_CTX_set_verify(c, SSL_CTX_get_verify_mode(c), &WebCheck::on_verify);
    }
    return CURLE_OK;
  }

  static int on_verify(int ok, X509_STORE_CTX* store) noexcept {
    if (ok) return ok;
    auto* ssl =
        static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
    if (!ssl) return ok;
    auto* self = static_cast<WebCheck*>(SSL_CTX_get_ex_data(SSL_get_SSL_CTX(ssl), g_ssl_ctx_index));
    if (!self || self->failed_cert_) return ok;
    try {
      int err = X509_STORE_CTX_get_error(store);
      self->verify_error_code_ = err;
      self->verify_error_depth_ = X509_STORE_CTX_get_error_depth(store);
      self->failed_cert_ = guardant::probes::report_from_certs(
          X509_STORE_CTX_get0_cert(store), X509_STORE_CTX_get0_chain(store), false);
      if (X509* bad = X509_STORE_CTX_get_current_cert(store)) {
        char name[256] = {0};
        X509_NAME_oneline(X509_get_subject_name(bad), name, sizeof name);
        self->failed_subject_ = name;
        if (const ASN1_TIME* na = X509_get0_notAfter(bad)) {
          struct tm tm {};
          if (ASN1_TIME_to_tm(na, &tm) == 1)
            self->failed_not_after_ms_ = static_cast<int64_t>(timegm(&tm)) * 1000;
        }
      }
    } catch (...) {
    }
    return ok;
  }

  // ---------------------------------------------------------------------
  // Reading the outcome

  Marks read_marks() const {
    Marks m;
    curl_easy_getinfo(easy_, CURLINFO_REDIRECT_COUNT, &m.hop);
    curl_easy_getinfo(easy_, CURLINFO_NAMELOOKUP_TIME_T, &m.nl);
    curl_easy_getinfo(easy_, CURLINFO_CONNECT_TIME_T, &m.conn);
    curl_easy_getinfo(easy_, CURLINFO_APPCONNECT_TIME_T, &m.app);
    curl_easy_getinfo(easy_, CURLINFO_PRETRANSFER_TIME_T, &m.pre);
    curl_easy_getinfo(easy_, CURLINFO_STARTTRANSFER_TIME_T, &m.st);
    curl_easy_getinfo(easy_, CURLINFO_TOTAL_TIME_T, &m.total);
    return m;
  }

  std::string info_string(CURLINFO info) const {
    char* s = nullptr;
    if (curl_easy_getinfo(easy_, info, &s) != CURLE_OK || !s) return "";
    return s;
  }

  // How far the current hop got: compared with the marks at the hop's
  // first socket, which milestone has not moved yet.
  Phase where_now(const Marks& m) const {
    if (hop_starts_.empty() || hop_starts_.back().hop != m.hop) return Phase::Resolve;
    const Marks& s = hop_starts_.back();
    if (m.conn == s.conn && hop_tcp_ns_ == 0) return Phase::Connect;
    bool https = starts_with_ci(info_string(CURLINFO_EFFECTIVE_URL), "https:");
    if (https && m.app == s.app) return Phase::Tls;
    if (m.st == s.st) return Phase::Wait;
    return Phase::Transfer;
  }

  Outcome read_outcome(int64_t now, bool timed_out) const {
    Outcome o;
    if (!easy_) return o;
    o.marks = read_marks();
    o.where = where_now(o.marks);
    curl_easy_getinfo(easy_, CURLINFO_RESPONSE_CODE, &o.status);
    curl_easy_getinfo(easy_, CURLINFO_HTTP_VERSION, &o.http_version);
    curl_easy_getinfo(easy_, CURLINFO_OS_ERRNO, &o.os_errno);
    curl_easy_getinfo(easy_, CURLINFO_SSL_VERIFYRESULT, &o.verify_result);
    curl_easy_getinfo(easy_, CURLINFO_PRIMARY_PORT, &o.port);
    o.ip = info_string(CURLINFO_PRIMARY_IP);
    // libcurl names the address only once connected; for a failed connect
    // the first address tried is the best we know.
    if (o.ip.empty() && o.marks.hop == 0 && !opts_.proxy) {
      if (!addrs_.empty())
        o.ip = addrs_.front().text;
      else if (target_.literal_family)
        o.ip = target_.host;
    }
    if (o.port == 0 && o.marks.hop == 0 && !opts_.proxy) o.port = target_.port;
    o.final_url = safe_url(info_string(CURLINFO_EFFECTIVE_URL));
    o.redirect_url = safe_url(info_string(CURLINFO_REDIRECT_URL));
    o.content_type = info_string(CURLINFO_CONTENT_TYPE);
    o.error = errbuf_;
    // libcurl's total is only current once the transfer is done; when our
    // timer ends it, our own clock is.
    o.curl_total_ms = timed_out ? ns_to_ms(now - transfer_start_ns_)
                                : static_cast<double>(o.marks.total) / 1000.0;
    return o;
  }

  // Per-phase timings. `reached` is the phase the check ended in (Transfer
  // for a complete response); it also gets the time not attributed to an
  // earlier phase, so the phases add up to the total.
  guardant::Timings timings_of(const Outcome& o, Phase reached) const {
    const Marks& f = o.marks;
    const double nl = static_cast<double>(f.nl) / 1000.0;
    const double conn = static_cast<double>(f.conn) / 1000.0;
    double connect = f.conn > 0 ? std::max(0.0, conn - nl) : 0.0;
    // The current hop got past TCP but libcurl has not marked it (the TLS
    // handshake failed or stalled): our own moment of the TCP connect.
    if (!hop_starts_.empty() && f.conn == hop_starts_.back().conn && hop_tcp_ns_ > 0)
      connect += ns_to_ms(hop_tcp_ns_ - hop_socket_ns_);
    // TLS and wait per hop: a redirect chain may mix http and https hops.
    double tls = 0, wait = 0;
    bool any_tls = false;
    auto add_hop = [&](const Marks& s, const Marks& e) {
      curl_off_t c = e.conn - s.conn, a = e.app - s.app, st = e.st - s.st;
      if (a > 0 && c > 0) {
        tls += static_cast<double>(a - c) / 1000.0;
        any_tls = true;
      }
      if (st > 0) wait += static_cast<double>(st - std::max(a, c)) / 1000.0;
    };
    if (hop_starts_.empty()) {
      add_hop(Marks{}, f);
    } else {
      // The first hop's marks start at zero (its lookup, done before its
      // socket, belongs to it).
      Marks zero;
      for (size_t k = 0; k < hop_starts_.size(); ++k) {
        const Marks& s = k == 0 ? zero : hop_starts_[k];
        const Marks& e = k + 1 < hop_starts_.size() ? hop_starts_[k + 1] : f;
        add_hop(s, e);
      }
    }
    tls = std::max(0.0, tls);
    wait = std::max(0.0, wait);
    const double rest = std::max(0.0, o.curl_total_ms - nl - connect - tls - wait);

    guardant::Timings t;
    t.resolve_ms = resolve_ms_ + nl;
    if (reached >= Phase::Connect) t.connect_ms = connect;
    if (reached >= Phase::Tls && (any_tls || reached == Phase::Tls)) t.tls_ms = tls;
    if (reached >= Phase::Wait) t.wait_ms = wait;
    if (reached >= Phase::Transfer) t.transfer_ms = 0;
    double* last = reached == Phase::Resolve   ? &t.resolve_ms
                   : reached == Phase::Connect ? &t.connect_ms
                   : reached == Phase::Tls     ? &t.tls_ms
                   : reached == Phase::Wait    ? &t.wait_ms
                                               : &t.transfer_ms;
    *last += rest;
    t.total_ms = resolve_ms_ + o.curl_total_ms;
    return t;
  }

  std::string details(const Outcome& o) const {
    json::JsonWriter w;
    if (!o.ip.empty()) {
      w.field("ip", o.ip);
      w.field("family", o.ip.find(':') != std::string::npos ? 6 : 4);
    }
    if (o.port) w.field("port", o.port);
    w.field("method", opts_.method);
    std::string version = http_version_name(o.http_version);
    if (!version.empty()) w.field("httpVersion", version);
    w.field("redirects", o.marks.hop);
    if (!o.final_url.empty()) w.field("finalUrl", o.final_url);
    if (!o.redirect_url.empty() && !opts_.follow_redirects) w.field("redirectUrl", o.redirect_url);
    w.field("bodyBytes", body_bytes_);
    if (!o.content_type.empty()) w.field("contentType", o.content_type);
    const CertReport* report = tls_report_    ? &*tls_report_
                               : failed_cert_ ? &*failed_cert_
                                              : nullptr;
    if (report && starts_with_ci(o.final_url.empty() ? target_.url : o.final_url, "https:"))
      guardant::probes::write_tls_details(w, *report, Host::wall_ms());
    return w.str();
  }

  // ---------------------------------------------------------------------
  // Judging

  Result down(const std::string& reason, Phase phase, const std::string& detail,
              const Outcome& o) const {
    auto t = timings_of(o, phase);
    Result r = Result::down(reason, phase_name(phase), detail, t.total_ms);
    r.protocol_code = static_cast<int32_t>(o.status);
    r.timings = t;
    r.details_json = details(o);
    return r;
  }

  Result assertion_failed(const std::string& detail, const Outcome& o) const {
    Result r = down(GUARDANT_REASON_ASSERTION, Phase::Transfer, detail, o);
    r.failure->phase = "assert";
    return r;
  }

  std::string curl_text(CURLcode rc, const Outcome& o) const {
    return o.error.empty() ? curl_easy_strerror(rc) : o.error;
  }

  Result judge_error(CURLcode rc, const Outcome& o) const {
    const std::string text = curl_text(rc, o);
    switch (rc) {
      case CURLE_COULDNT_RESOLVE_HOST:
        return down(GUARDANT_REASON_DNS_NXDOMAIN, Phase::Resolve, text, o);
      case CURLE_COULDNT_RESOLVE_PROXY:
        return down(GUARDANT_REASON_DNS_NXDOMAIN, Phase::Resolve, "proxy: " + text, o);
      case CURLE_COULDNT_CONNECT: {
        std::string detail = text;
        if (o.os_errno == ECONNREFUSED && !o.ip.empty())
          detail = "connection refused by " + host_for_curl(o.ip) + ":" + std::to_string(o.port);
        if (opts_.proxy) detail = "proxy: " + detail;
        return down(guardant::probes::connect_reason_for_errno(o.os_errno), Phase::Connect, detail,
                    o);
      }
      case CURLE_OPERATION_TIMEDOUT:
        return timed_out(o);
      case CURLE_PEER_FAILED_VERIFICATION:
        return verification_failed(text, o);
      case CURLE_SSL_CONNECT_ERROR:
      case CURLE_SSL_CIPHER:
      case CURLE_SSL_ISSUER_ERROR:
      case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
      case CURLE_SSL_INVALIDCERTSTATUS:
      case CURLE_USE_SSL_FAILED:
        return down(GUARDANT_REASON_TLS_HANDSHAKE, Phase::Tls, text, o);
      case CURLE_SSL_CERTPROBLEM:
      case CURLE_SSL_CACERT_BADFILE:
      case CURLE_SSL_CRL_BADFILE:
      case CURLE_SSL_ENGINE_NOTFOUND:
      case CURLE_SSL_ENGINE_SETFAILED:
      case CURLE_SSL_ENGINE_INITFAILED: {
        // Our side's TLS files: the target cannot be judged.
        Result r = down(GUARDANT_REASON_WORKER_ERROR, Phase::Tls, "local TLS setup: " + text, o);
        r.status = Status::Inconclusive;
        return r;
      }
      case CURLE_GOT_NOTHING:
        return down(kReasonConnectionClosed, Phase::Wait,
                    "the server closed the connection without answering (" + text + ")", o);
      case CURLE_PARTIAL_FILE:
        return down(kReasonConnectionClosed, Phase::Transfer,
                    "the server closed the connection before the end of the body (" + text + ")",
                    o);
      case CURLE_RECV_ERROR:
      case CURLE_SEND_ERROR: {
        // A TLS alert after the handshake (TLS 1.3 reports a rejected
        // client certificate this way) is still a handshake failure.
        if (text.find("alert") != std::string::npos && text.find("SSL") != std::string::npos)
          return down(GUARDANT_REASON_TLS_HANDSHAKE, Phase::Tls, text, o);
        return down(kReasonConnectionClosed, o.where, text, o);
      }
      case CURLE_FILESIZE_EXCEEDED:
        return body_limit(o);
      case CURLE_WRITE_ERROR:
        if (body_limit_hit_) return body_limit(o);
        if (!callback_error_.empty()) return inconclusive(callback_error_, o);
        return inconclusive(text, o);
      case CURLE_TOO_MANY_REDIRECTS: {
        Result r = down(kReasonTooManyRedirects, Phase::Transfer,
                        "more than " + std::to_string(opts_.max_redirects) + " redirect" +
                            (opts_.max_redirects == 1 ? "" : "s") +
                            (o.final_url.empty() ? "" : " (stopped at " + o.final_url + ")"),
                        o);
        r.failure->phase = "assert";
        return r;
      }
      case CURLE_OUT_OF_MEMORY:
      case CURLE_FAILED_INIT:
      case CURLE_ABORTED_BY_CALLBACK:
        return inconclusive(text, o);
      default:
        return down(kReasonProtocolError, o.where, text, o);
    }
  }

  Result inconclusive(const std::string& text, const Outcome& o) const {
    Result r = Result::inconclusive(text);
    r.timings = timings_of(o, o.where);
    r.response_time_ms = r.timings->total_ms;
    r.details_json = details(o);
    return r;
  }

  Result body_limit(const Outcome& o) const {
    return down(GUARDANT_REASON_BODY_LIMIT, Phase::Transfer,
                "the body is larger than maxBodyBytes (" + std::to_string(opts_.max_body_bytes) +
                    " bytes); stopped reading",
                o);
  }

  Result timed_out(const Outcome& o) const {
    Phase p = o.where;
    std::string limit = format_ms(ns_to_ms(end_ns_ - start_ns_));
    std::string what = std::string(phase_activity(p));
    if (p == Phase::Resolve && opts_.proxy) what = "resolving the proxy";
    std::string detail = "no answer within " + limit + " ms (" + what + ")";
    if (p == Phase::Transfer)
      detail = "the response stalled: " + std::to_string(body_bytes_) + " body bytes in " + limit +
               " ms";
    const char* reason = p == Phase::Resolve   ? GUARDANT_REASON_DNS_TIMEOUT
                         : p == Phase::Connect ? GUARDANT_REASON_CONNECT_TIMEOUT
                                               : GUARDANT_REASON_TIMEOUT;
    return down(reason, p, detail, o);
  }

  Result verification_failed(const std::string& text, const Outcome& o) const {
    // What OpenSSL's chain verification said, as our verify callback saw
    // it: libcurl's verify result is not stored when its own name check
    // fails (it reads 1, "unspecified", then).
    long v = verify_hook_ ? verify_error_code_ : o.verify_result;
    if (v == X509_V_ERR_CERT_HAS_EXPIRED) {
      std::string detail = "certificate has expired";
      if (!failed_subject_.empty()) detail += ": " + failed_subject_;
      if (failed_not_after_ms_)
        detail += " (not valid after " + iso_time(failed_not_after_ms_) + ")";
      if (verify_error_depth_ > 0)
        detail += ", at depth " + std::to_string(verify_error_depth_) + " of the chain";
      return down(GUARDANT_REASON_CERT_EXPIRED, Phase::Tls, detail, o);
    }
    // libcurl checks the name itself after OpenSSL accepted the chain, so a
    // name mismatch comes with a clean verify result.
    if (v == X509_V_OK || v == X509_V_ERR_HOSTNAME_MISMATCH || v == X509_V_ERR_IP_ADDRESS_MISMATCH)
      return down(GUARDANT_REASON_CERT_HOSTNAME, Phase::Tls, text, o);
    return down(GUARDANT_REASON_TLS_HANDSHAKE, Phase::Tls, text, o);
  }

  Result judge_response(const Outcome& o) const {
    const long code = o.status;
    if (!opts_.expected_status.contains(code)) {
      std::string detail =
          "HTTP " + std::to_string(code) + ", expected " + opts_.expected_status.text;
      Result r = down(GUARDANT_REASON_HTTP_STATUS, Phase::Transfer, detail, o);
      r.failure->phase = "assert";
      return r;
    }
    if (opts_.http_version == "2" && o.http_version != CURL_HTTP_VERSION_2_0)
      return assertion_failed("the server spoke HTTP/" + http_version_name(o.http_version) +
                                  ", expected HTTP/2 (option httpVersion)",
                              o);
    for (const auto& hc : opts_.header_checks) {
      bool seen = false, matched = false;
      std::string error;
      for (const auto& [name, value] : response_headers_) {
        if (!equals_ci(name, hc.name)) continue;
        seen = true;
        auto m = hc.regex.search(value, &error);
        if (m == Regex::Outcome::Error) return regex_error("headerRegex." + hc.name, error, o);
        if (m == Regex::Outcome::Match) matched = true;
      }
      if (!seen) return assertion_failed("response header '" + hc.name + "' is missing", o);
      if (!matched)
        return assertion_failed(
            "response header '" + hc.name + "' does not match " + json::quote(hc.regex.pattern()),
            o);
    }
    if (opts_.keyword) {
      bool found = body_.find(*opts_.keyword) != std::string::npos;
      if (found == opts_.invert_keyword)
        return assertion_failed(
            "keyword " + json::quote(*opts_.keyword) +
                (found ? " found in the body (invertKeyword)" : " not found in the body") + " (" +
                std::to_string(body_.size()) + " bytes)",
            o);
    }
    if (opts_.regex) {
      std::string error;
      auto m = opts_.regex->search(body_, &error);
      if (m == Regex::Outcome::Error) return regex_error("regex", error, o);
      bool found = m == Regex::Outcome::Match;
      if (found == opts_.invert_regex)
        return assertion_failed(
            "regex " + json::quote(opts_.regex->pattern()) +
                (found ? " matches the body (invertRegex)" : " does not match the body"),
            o);
    }
    if (opts_.json_path) {
      json::Value doc;
      try {
        doc = json::parse(body_);
      } catch (const json::ParseError& e) {
        return assertion_failed(std::string("jsonPath: the body is not JSON (") + e.what() + ")",
                                o);
      }
      const json::Value* v = opts_.json_path->find(doc);
      if (!v)
        return assertion_failed(
            "jsonPath " + json::quote(opts_.json_path->text) + " not found in the body", o);
      if (opts_.expected_value && !guardant::web::json_value_matches(*v, *opts_.expected_value)) {
        std::string actual = json::serialize(*v);
        if (actual.size() > 200) actual = actual.substr(0, 200) + "...";
        return assertion_failed("jsonPath " + json::quote(opts_.json_path->text) + " is " + actual +
                                    ", expected " + json::serialize(*opts_.expected_value),
                                o);
      }
    }
    return passed(o);
  }

  Result regex_error(const std::string& option, const std::string& error, const Outcome& o) const {
    Result r = assertion_failed(
        "option '" + option + "' could not be evaluated on this response: " + error, o);
    r.status = Status::Inconclusive;
    return r;
  }

  Result passed(const Outcome& o) const {
    auto t = timings_of(o, Phase::Transfer);
    const double ms = t.total_ms;
    Result r = Result::up(ms, "HTTP " + std::to_string(o.status) + " in " + format_ms(ms) + " ms");
    r.protocol_code = static_cast<int32_t>(o.status);
    r.timings = t;
    r.details_json = details(o);

    std::vector<std::string> notes;
    std::string reason, phase;
    if (tls_report_ && tls_report_->present && opts_.cert_expiry_days > 0 &&
        starts_with_ci(o.final_url, "https:")) {
      double days = guardant::probes::days_until_expiry(*tls_report_, Host::wall_ms());
      if (days < opts_.cert_expiry_days) {
        char buf[160];
        if (days < 0)
          std::snprintf(buf, sizeof buf, "the certificate chain expired %.1f days ago (%s)", -days,
                        iso_time(tls_report_->chain_expires_at_ms).c_str());
        else
          std::snprintf(buf, sizeof buf,
                        "the certificate chain expires in %.1f days (%s), within certExpiryDays %g",
                        days, iso_time(tls_report_->chain_expires_at_ms).c_str(),
                        opts_.cert_expiry_days);
        notes.emplace_back(buf);
        reason = kReasonCertExpiring;
        phase = "tls";
      }
    }
    if (opts_.degraded_above_ms && ms > *opts_.degraded_above_ms) {
      notes.push_back("slower than degradedAboveMs " + format_ms(*opts_.degraded_above_ms) + " ms");
      if (reason.empty()) {
        reason = kReasonSlow;
        phase = "assert";
      }
    }
    if (!notes.empty()) {
      std::string detail;
      for (const auto& n : notes) detail += (detail.empty() ? "" : "; ") + n;
      r.status = Status::Degraded;
      r.message += ": " + detail;
      r.failure = guardant::Failure{reason, phase, detail};
    }
    return r;
  }

  // ---------------------------------------------------------------------
  // Ending

  void on_time_up() {
    const int64_t now = Host::now_ns();
    if (phase_ == State::Resolving) {
      resolve_.cancel();
      resolve_ms_ = ns_to_ms(now - start_ns_);
      finish_simple(
          GUARDANT_REASON_DNS_TIMEOUT, "resolve",
          "no answer resolving '" + target_.host + "' within " + format_ms(resolve_ms_) + " ms");
      return;
    }
    if (phase_ == State::Transferring && easy_) {
      Outcome o = read_outcome(now, /*timed_out=*/true);
      release();
      finish(timed_out(o));
      return;
    }
    finish_simple(GUARDANT_REASON_TIMEOUT, "", "the check's time limit ran out");
  }

  // A result before any transfer: resolve failures and the like.
  void finish_simple(const std::string& reason, const std::string& phase,
                     const std::string& detail) {
    int64_t now = Host::now_ns();
    double total = ns_to_ms(now - start_ns_);
    Result r = Result::down(reason, phase, detail, total);
    guardant::Timings t;
    t.resolve_ms = phase == "resolve" ? total : -1;
    t.total_ms = total;
    r.timings = t;
    finish(std::move(r));
  }

  void finish(Result r) {
    phase_ = State::Done;
    release();
    complete(r);
  }

  // Hands everything back: the timer, a lookup, and the transfer (out of
  // the multi first, which releases its sockets, then freed).
  void release() noexcept {
    timer_.cancel();
    resolve_.cancel();
    if (easy_) {
      if (in_multi_ && CurlDriver::get()) CurlDriver::get()->remove(easy_);
      in_multi_ = false;
      curl_easy_cleanup(easy_);
      easy_ = nullptr;
    }
    if (share_) {
      curl_share_cleanup(share_);
      share_ = nullptr;
    }
    curl_slist_free_all(headers_);
    curl_slist_free_all(resolve_list_);
    curl_slist_free_all(connect_to_);
    headers_ = resolve_list_ = connect_to_ = nullptr;
  }

  const WebOptions opts_;
  const Target target_;
  State phase_ = State::Idle;
  int64_t start_ns_ = 0;
  int64_t end_ns_ = 0;
  int64_t transfer_start_ns_ = 0;
  int64_t hop_socket_ns_ = 0;  // the current hop's first socket
  int64_t hop_tcp_ns_ = 0;     // its TCP connect (0: not yet)
  double resolve_ms_ = 0;      // the host-side lookup (0 when libcurl resolves)
  std::vector<guardant::Address> addrs_;

  CURL* easy_ = nullptr;
  CURLSH* share_ = nullptr;
  bool in_multi_ = false;
  curl_slist* headers_ = nullptr;
  curl_slist* resolve_list_ = nullptr;
  curl_slist* connect_to_ = nullptr;
  char errbuf_[CURL_ERROR_SIZE] = {0};

  // Filled by libcurl callbacks during the transfer.
  std::string body_;
  uint64_t body_bytes_ = 0;
  bool body_limit_hit_ = false;
  std::string callback_error_;
  std::vector<std::pair<std::string, std::string>> response_headers_;
  std::vector<Marks> hop_starts_;
  std::optional<CertReport> tls_report_;   // the last TLS hop's session
  std::optional<CertReport> failed_cert_;  // what the verify callback saw fail
  bool verify_hook_ = false;               // on_verify is installed
  int verify_error_code_ = 0;
  int verify_error_depth_ = 0;
  std::string failed_subject_;
  int64_t failed_not_after_ms_ = 0;

  guardant::Timer timer_{this};
  guardant::Resolve resolve_{this};
};

void plugin_init() {
  CurlDriver::init();
  g_warned = new std::set<std::string>();
  if (g_ssl_ctx_index < 0)
    g_ssl_ctx_index = SSL_CTX_get_ex_new_index(0, nullptr, nullptr, nullptr, nullptr);
}

void plugin_shutdown() {
  CurlDriver::shutdown();
  delete g_warned;
  g_warned = nullptr;
}

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"guardant-web", GUARDANT_PLUGIN_VERSION,
                                      "HTTP(S) probe on libcurl with phase timings", &plugin_init,
                                      &plugin_shutdown}),
                guardant::probe_type<WebCheck>("web", "HTTP(S) request to a URL",
                                               GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6 |
                                                   GUARDANT_CAP_TLS,
                                               kOptionsSchema))
