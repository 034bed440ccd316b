// The built-in `tcp` probe: is something accepting TCP connections at
// host:port, does it speak TLS with a good certificate, and does it answer
// a short dialogue the way it should?
//
// Target: `host:port` or `[ipv6]:port`. Options (config JSON; null, and an
// empty string for the text options, count as not set):
//
//   option          type                       default      meaning
//   timeout         number, ms (1..600000)     the check's  time limit of the whole check
//                                              timeout      (connect, TLS and every step)
//   ipFamily        "auto"|"ipv4"|"ipv6"       "auto"       which addresses of the name to use
//   tls             boolean                    false        implicit TLS right after connect
//   tlsVerify       boolean                    true         verify chain and host name
//   servername      string                     target host  SNI and the name the certificate
//                                                           must match (an IP: no SNI, IP SAN)
//   caFile          string (PEM path)          system CAs   trusted CAs, replacing the system store
//   clientCert      string (PEM path)          none         client certificate (chain)
//   clientKey       string (PEM path)          clientCert   client private key
//   certExpiryDays  number (0..3650)           14           degraded when the chain expires
//                                                           within this many days; 0: off
//   readBanner      boolean                    false        wait for the peer's first data
//                                                           before anything is sent
//   sendData        string                     none         sent after connect/TLS
//   expectData      string                     none         exact bytes expected in the reply
//   expectRegex     string (PCRE2)             none         pattern expected in the reply
//   steps           array of {send, expect,    []           further steps, after sendData/
//                   expectRegex, timeout}                   expect*; unknown keys are errors
//   maxReadBytes    integer (1..16777216)      65536        bytes one step may read while
//                                                           looking for its expectation
//   stepTimeout     number, ms (1..600000)     time left    limit of each step (send + wait);
//                                                           a step's own `timeout` wins
//   expectClosed    boolean                    false        "must be closed": up when the port
//                                                           refuses (or does not answer),
//                                                           down when it accepts
//
// A wrong type or range refuses the check as invalid configuration, naming
// the option (`option 'steps[0].expect' must be a string, got number`); so
// does a caFile/clientCert/clientKey that cannot be loaded, an expectRegex
// that does not compile, or expectClosed together with tls/readBanner/steps.
// Unknown top-level keys are left to the host, which warns about them.
//
// Flow: resolve through the host (never blocks the loop), then a
// non-blocking connect to each address in the resolver's order until one
// succeeds or time runs out. Each attempt gets an equal share of the time
// left, so one black-holed address cannot starve the others. The outcome of
// a connect is read with SO_ERROR once the socket turns writable. Then, on
// the connected socket and driven by the same host fd watch: the TLS
// handshake (SSL_connect's WANT_READ/WANT_WRITE become the watched events),
// then the steps in order: readBanner, sendData/expectData/expectRegex, then
// steps[]. A step sends its text, then reads until its expectations are met
// (exact substring and/or regex, both when both are given), the peer
// closes, maxReadBytes are buffered without a match, or the step's time is
// up. Bytes after a match stay buffered for the next step; regexes see the
// step's bytes from that point on. The banner is the first line of the
// first data the peer sends (one read), at most 256 bytes, with control
// characters and invalid UTF-8 escaped (\r, \n, \t, \xNN).
//
// The check's own time limit is min(option timeout, time to the host's
// deadline minus a small margin): the probe ends with the precise reason
// before the host's deadline would record a generic timeout.
//
// Results
//   up    response time = connect (+ TLS handshake + steps) duration;
//         message "connected to 127.0.0.1:8080 in 0.21 ms[, TLSv1.3 in ..]";
//         details {ip, family, port, tls?, banner?, bytesSent?,
//         bytesReceived?}; timings {resolve, connect, tls, send, wait,
//         total} (send/wait summed over the steps). expectClosed: up when
//         every address refused or did not answer.
//   degraded  certificate chain expiring within certExpiryDays, or already
//         expired when tlsVerify is false (reason cert_expiring, phase tls);
//         otherwise as up.
//   down  dns_nxdomain / dns_error / dns_timeout (phase resolve);
//         connect_refused / connect_timeout / network_unreachable /
//         connect_error (phase connect, reason of the last address tried,
//         every attempt in the detail); assertion (phase connect) when
//         expectClosed finds the port open; tls_handshake / cert_expired /
//         cert_hostname (phase tls), timeout (phase tls) when the handshake
//         does not finish in time; assertion (phase wait) when an expectation
//         is not met (the detail shows what was expected and an escaped
//         excerpt of what arrived) or the peer closes first, assertion
//         (phase send) when the peer closes while we send; timeout (phase
//         wait/send) when a step's time runs out with nothing received (or
//         nothing accepted); timeout when no time was left to start at all.
//         Response time = time until the failure.
//   inconclusive  the worker itself could not run the check (out of file
//         descriptors or memory, a host service refused, a regex hit PCRE2's
//         match limit).
#include <netinet/in.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <openssl/x509v3.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "net_util.hpp"
#include "tcp_options.hpp"
#include "tcp_tls.hpp"
#include "tls_report.hpp"

#ifndef GUARDANT_PLUGIN_VERSION
#define GUARDANT_PLUGIN_VERSION "0.0.0-dev"
#endif

namespace {

using guardant::Check;
using guardant::Host;
using guardant::Request;
using guardant::Result;
using guardant::tcp::Settings;
using guardant::tcp::Step;
using guardant::tcp::Target;

constexpr int64_t kNsPerMs = 1'000'000;
// Used only when the host gives no deadline and the config no timeout.
constexpr int64_t kDefaultTimeoutNs = 10'000 * kNsPerMs;
constexpr size_t kBannerMaxBytes = 256;
constexpr size_t kExcerptMaxBytes = 128;
constexpr size_t kMessageBannerBytes = 64;
constexpr size_t kReadChunk = 16 * 1024;
// Not in probe.h's list: a certificate that still works but expires soon is
// not `cert_expired`, and dashboards should be able to tell the two apart.
constexpr const char* kReasonCertExpiring = "cert_expiring";

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ms);
  return buf;
}

std::string format_days(double days) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f", days);
  return buf;
}

double ns_to_ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// Adds to a timing that is < 0 while its phase has not happened.
void add_ms(double& total, double ms) {
  total = (total < 0 ? 0 : total) + ms;
}

// Bytes off the network as printable, unambiguous text: valid UTF-8 passes,
// control characters and invalid bytes become \r \n \t \xNN, a backslash
// \\ (and a double quote \" when `quotes`, for text shown inside quotes).
// At most `max_bytes` of input; "..." marks a cut.
std::string escape_bytes(std::string_view data, size_t max_bytes, bool quotes) {
  static const char kHex[] = "0123456789abcdef";
  const std::string_view shown = data.substr(0, std::min(data.size(), max_bytes));
  std::string out;
  out.reserve(shown.size() + 8);
  for (size_t i = 0; i < shown.size();) {
    auto c = static_cast<unsigned char>(shown[i]);
    if (c >= 0x80) {
      // A sequence cut by max_bytes is invalid here and escaped byte-wise.
      size_t len = guardant::json::detail::utf8_sequence_length(shown, i);
      if (len > 0) {
        out.append(shown.data() + i, len);
        i += len;
        continue;
      }
    }
    switch (c) {
      case '\r':
        out += "\\r";
        break;
      case '\n':
        out += "\\n";
        break;
      case '\t':
        out += "\\t";
        break;
      case '\\':
        out += "\\\\";
        break;
      case '"':
        out += quotes ? "\\\"" : "\"";
        break;
      default:
        if (c < 0x20 || c == 0x7F || c >= 0x80) {
          out += "\\x";
          out += kHex[c >> 4];
          out += kHex[c & 0xF];
        } else {
          out += static_cast<char>(c);
        }
    }
    ++i;
  }
  if (data.size() > shown.size()) out += "...";
  return out;
}

// Errors that say the worker, not the target, is in trouble.
bool is_worker_errno(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

bool is_retry_errno(int e) {
  return e == EAGAIN || e == EWOULDBLOCK || e == EINTR;
}

class TcpCheck final : public Check {
 public:
  explicit TcpCheck(Request request)
      : Check(std::move(request)),
        target_(guardant::tcp::parse_target(this->request().target)),
        settings_(guardant::tcp::parse_settings(this->request().config_json)) {
    if (target_.literal_family && settings_.family != GUARDANT_FAMILY_ANY &&
        target_.literal_family != settings_.family)
      throw guardant::ConfigError("target '" + this->request().target + "' is an IPv" +
                                  std::to_string(target_.literal_family) +
                                  " address but option 'ipFamily' is \"" + settings_.family_name +
                                  "\"");
  }
  ~TcpCheck() override {
    release();
    SSL_CTX_free(ctx_);
  }

  void start() override {
    // Before any work, so that a CA or client certificate that cannot be
    // loaded refuses the check as invalid configuration.
    if (settings_.tls) ctx_ = guardant::tcp::acquire_client_ctx(settings_);
    start_ns_ = Host::now_ns();
    end_ns_ = start_ns_ + budget_ns(start_ns_);
    if (end_ns_ <= start_ns_) {
      finish_down(GUARDANT_REASON_TIMEOUT, "", "no time left before the deadline to start");
      return;
    }
    phase_ = Phase::Resolve;
    // This timer bounds the resolve phase: if the lookup has not answered
    // when it fires, the check ends with dns_timeout.
    if (!timer_.start(end_ns_ - start_ns_, [this] { on_timeout(); })) {
      finish(Result::inconclusive("the host refused a timer"));
      return;
    }
    if (!resolve_.start(target_.host, settings_.family,
                        [this](const guardant::Resolution& r) { on_resolved(r); })) {
      finish(Result::inconclusive("the host refused to resolve '" + target_.host + "'"));
    }
  }

  void on_cancel() override {
    phase_ = Phase::Done;
    release();
    complete(Result::inconclusive("cancelled by the host"));
  }

 private:
  enum class Phase { Idle, Resolve, Connect, Tls, Dialogue, Done };
  enum class Io { Done, Want, Eof, Failed };
  enum class Expect { Met, NotYet, Failed };
  enum class Unmet { Timeout, Closed, Limit };

  struct Attempt {
    std::string endpoint;  // 127.0.0.1:80 or [::1]:80
    std::string reason;
    std::string detail;
  };

  // ---------------------------------------------------------------------
  // Time
  // ---------------------------------------------------------------------

  // The SDK's budget: min(timeout option, deadline minus a margin).
  int64_t budget_ns(int64_t now) const {
    return guardant::check_budget_ns(request(), settings_.timeout_ms, now, kDefaultTimeoutNs);
  }

  void on_timeout() {
    switch (phase_) {
      case Phase::Resolve:
        resolve_.cancel();
        finish_down(GUARDANT_REASON_DNS_TIMEOUT, "resolve",
                    "no answer resolving '" + target_.host + "' within " +
                        format_ms(ns_to_ms(Host::now_ns() - start_ns_)) + " ms");
        return;
      case Phase::Connect: {
        close_socket();
        double waited = ns_to_ms(Host::now_ns() - attempt_start_ns_);
        attempts_.push_back(Attempt{endpoint(addrs_[current_]), GUARDANT_REASON_CONNECT_TIMEOUT,
                                    "no answer from " + endpoint(addrs_[current_]) + " within " +
                                        format_ms(waited) + " ms"});
        try_next();
        return;
      }
      case Phase::Tls:
        tls_ms_ = ns_to_ms(Host::now_ns() - tls_start_ns_);
        finish_connected_down(GUARDANT_REASON_TIMEOUT, "tls",
                              "TLS handshake with " + endpoint(addrs_[current_]) +
                                  " not finished within " + format_ms(tls_ms_) +
                                  " ms (is the port speaking TLS?)");
        return;
      case Phase::Dialogue:
        on_step_timeout();
        return;
      default:
        finish_down(GUARDANT_REASON_TIMEOUT, "", "the check's time limit ran out");
    }
  }

  // ---------------------------------------------------------------------
  // Resolve and connect
  // ---------------------------------------------------------------------

  std::string endpoint(const guardant::Address& a) const {
    return (a.family == GUARDANT_FAMILY_IPV6 ? "[" + a.text + "]" : a.text) + ":" +
           std::to_string(target_.port);
  }

  void on_resolved(const guardant::Resolution& r) {
    timer_.cancel();
    int64_t now = Host::now_ns();
    resolve_ms_ = ns_to_ms(now - start_ns_);
    if (!r.ok) {
      std::string reason = r.error_reason.empty() ? "dns_error" : r.error_reason;
      std::string detail =
          r.error_detail.empty() ? "cannot resolve '" + target_.host + "'" : r.error_detail;
      finish_down(reason, "resolve", detail);
      return;
    }
    for (const auto& a : r.addresses)
      if (settings_.family == GUARDANT_FAMILY_ANY || a.family == settings_.family)
        addrs_.push_back(a);
    if (addrs_.empty()) {
      finish_down(GUARDANT_REASON_DNS_NXDOMAIN, "resolve",
                  "no " +
                      std::string(settings_.family == GUARDANT_FAMILY_IPV4 ? "IPv4 " : "IPv6 ") +
                      "address for '" + target_.host + "'");
      return;
    }
    phase_ = Phase::Connect;
    connect_start_ns_ = now;
    try_next();
  }

  // Starts a connect to the next address while time remains; finishes the
  // check when there is none left.
  void try_next() {
    while (next_ < addrs_.size()) {
      int64_t now = Host::now_ns();
      int64_t left = end_ns_ - now;
      if (left <= 0) break;
      size_t index = next_++;
      int64_t share = left / static_cast<int64_t>(addrs_.size() - index);
      if (begin_connect(index, now, share)) return;
    }
    finish_failed();
  }

  // Returns true when the attempt is in flight or ended the check, false when
  // this address failed at once (recorded in attempts_).
  bool begin_connect(size_t index, int64_t now, int64_t slice_ns) {
    const guardant::Address& a = addrs_[index];
    current_ = index;
    attempt_start_ns_ = now;

    sockaddr_storage ss{};
    size_t len = std::min(a.sockaddr.size(), sizeof ss);
    std::memcpy(&ss, a.sockaddr.data(), len);
    if (ss.ss_family == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(target_.port);
    else
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(target_.port);

    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      int e = errno;
      if (is_worker_errno(e)) {
        finish(Result::inconclusive(std::string("cannot create a socket: ") + std::strerror(e)));
        return true;
      }
      record_failure(index, e);
      return false;
    }
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&ss), static_cast<socklen_t>(len)) == 0) {
      on_connected();  // possible on some loopback paths
      return true;
    }
    int e = errno;
    if (e != EINPROGRESS) {
      close_socket();
      if (is_worker_errno(e)) {
        finish(Result::inconclusive(std::string("cannot connect: ") + std::strerror(e)));
        return true;
      }
      record_failure(index, e);
      return false;
    }
    if (!watch_.watch(fd_, GUARDANT_FD_WRITE, [this](uint32_t ev) { on_writable(ev); }) ||
        !timer_.start(slice_ns, [this] { on_timeout(); })) {
      finish(Result::inconclusive("the host refused an fd watch or timer"));
      return true;
    }
    return true;
  }

  void on_writable(uint32_t events) {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) < 0) err = errno;
    if (err == 0 && (events & GUARDANT_FD_ERROR)) {
      // An error state whose code was already consumed: trust the peer check.
      sockaddr_storage peer{};
      socklen_t plen = sizeof peer;
      if (::getpeername(fd_, reinterpret_cast<sockaddr*>(&peer), &plen) < 0)
        err = errno == ENOTCONN ? ECONNREFUSED : errno;
    }
    if (err == EINPROGRESS || err == EALREADY) return;  // not decided yet
    timer_.cancel();
    if (err == 0) {
      on_connected();
      return;
    }
    close_socket();
    record_failure(current_, err);
    try_next();
  }

  void record_failure(size_t index, int e) {
    std::string ep = endpoint(addrs_[index]);
    std::string detail = e == ECONNREFUSED ? "connection refused by " + ep
                                           : ep + ": " + std::string(std::strerror(e));
    attempts_.push_back(
        Attempt{std::move(ep), guardant::probes::connect_reason_for_errno(e), std::move(detail)});
  }

  void on_connected() {
    int64_t now = Host::now_ns();
    connect_ms_ = ns_to_ms(now - attempt_start_ns_);
    if (settings_.expect_closed) {
      const std::string ep = endpoint(addrs_[current_]);
      finish_connected_down(GUARDANT_REASON_ASSERTION, "connect",
                            "port is open: " + ep + " accepted the connection in " +
                                format_ms(connect_ms_) + " ms, but it must be closed");
      return;
    }
    if (settings_.tls)
      start_tls();
    else
      start_dialogue();
  }

  // Every address failed, or time ran out before the next one.
  void finish_failed() {
    int64_t now = Host::now_ns();
    if (attempts_.empty()) {
      finish_down(GUARDANT_REASON_TIMEOUT, "connect",
                  "no time left to connect after resolving took " + format_ms(resolve_ms_) + " ms");
      return;
    }
    const Attempt& last = attempts_.back();
    std::string detail;
    for (const auto& at : attempts_) detail += (detail.empty() ? "" : "; ") + at.detail;
    const size_t untried = addrs_.size() - next_;
    if (untried)
      detail += " (" + std::to_string(untried) + " more address" + (untried == 1 ? "" : "es") +
                " not tried: out of time)";
    const double connect_ms = ns_to_ms(now - connect_start_ns_);
    if (settings_.expect_closed) {
      // Refused and unanswered both mean nothing accepts connections there;
      // any other error (an unreachable network) cannot confirm it.
      bool closed = untried == 0 && std::all_of(attempts_.begin(), attempts_.end(), [](auto& a) {
                      return a.reason == GUARDANT_REASON_CONNECT_REFUSED ||
                             a.reason == GUARDANT_REASON_CONNECT_TIMEOUT;
                    });
      if (closed) {
        Result r = Result::up(connect_ms, "port " + std::to_string(target_.port) +
                                              " is closed as required: " + detail);
        r.details_json = details();
        r.timings = timings(now);
        r.timings->connect_ms = connect_ms;
        finish(std::move(r));
        return;
      }
      detail = "cannot confirm that port " + std::to_string(target_.port) + " is closed: " + detail;
    }
    Result r = Result::down(last.reason, "connect", detail, ns_to_ms(now - start_ns_));
    r.details_json = details();
    r.timings = timings(now);
    r.timings->connect_ms = connect_ms;
    finish(std::move(r));
  }

  // ---------------------------------------------------------------------
  // I/O on the connected socket
  // ---------------------------------------------------------------------

  // Watches the connected socket for `events`, dispatching to on_io().
  bool want_io(uint32_t events) {
    if (!io_watch_) {
      if (!watch_.watch(fd_, events, [this](uint32_t) { on_io(); })) {
        finish(Result::inconclusive("the host refused an fd watch"));
        return false;
      }
      io_watch_ = true;
    } else if (events != io_events_ && !watch_.update(events)) {
      finish(Result::inconclusive("the host refused to update an fd watch"));
      return false;
    }
    io_events_ = events;
    return true;
  }

  // Readiness (or an error state) on the connected socket: retry whatever
  // is pending; the operation itself reports errors precisely.
  void on_io() {
    if (phase_ == Phase::Tls)
      drive_handshake();
    else if (phase_ == Phase::Dialogue)
      drive_dialogue();
  }

  // ---------------------------------------------------------------------
  // TLS
  // ---------------------------------------------------------------------

  void start_tls() {
    phase_ = Phase::Tls;
    const int64_t now = Host::now_ns();
    tls_start_ns_ = now;
    ERR_clear_error();
    ssl_ = SSL_new(ctx_);
    BIO* bio = ssl_ ? guardant::tcp::new_socket_bio(fd_) : nullptr;
    if (!bio) {
      finish(Result::inconclusive("cannot set up TLS: " + guardant::tcp::drain_openssl_errors()));
      return;
    }
    SSL_set_bio(ssl_, bio, bio);
    SSL_set_connect_state(ssl_);
    SSL_set_app_data(ssl_, &capture_);
    SSL_set_verify(ssl_, settings_.tls_verify ? SSL_VERIFY_PEER : SSL_VERIFY_NONE,
                   &guardant::tcp::capture_verify_callback);
    verify_name_ = settings_.servername.empty() ? target_.host : settings_.servername;
    bool ok;
    if (guardant::tcp::is_ipv4_literal(verify_name_) ||
        guardant::tcp::is_ipv6_literal(verify_name_)) {
      // SNI carries host names only (RFC 6066); an address is matched
      // against the certificate's IP SANs.
      std::string ip = verify_name_.substr(0, verify_name_.find('%'));
      ok = X509_VERIFY_PARAM_set1_ip_asc(SSL_get0_param(ssl_), ip.c_str()) == 1;
    } else {
      SSL_set_hostflags(ssl_, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
      ok = SSL_set_tlsext_host_name(ssl_, verify_name_.c_str()) == 1 &&
           SSL_set1_host(ssl_, verify_name_.c_str()) == 1;
    }
    if (!ok) {
      finish(Result::inconclusive("cannot set the TLS server name '" + verify_name_ +
                                  "': " + guardant::tcp::drain_openssl_errors()));
      return;
    }
    if (!timer_.start(end_ns_ - now, [this] { on_timeout(); })) {
      finish(Result::inconclusive("the host refused a timer"));
      return;
    }
    drive_handshake();
  }

  void drive_handshake() {
    ERR_clear_error();
    errno = 0;
    int rc = SSL_connect(ssl_);
    int sys = errno;
    if (rc == 1) {
      on_handshake_done();
      return;
    }
    int err = SSL_get_error(ssl_, rc);
    if (err == SSL_ERROR_WANT_READ) {
      want_io(GUARDANT_FD_READ);
      return;
    }
    if (err == SSL_ERROR_WANT_WRITE) {
      want_io(GUARDANT_FD_WRITE);
      return;
    }
    handshake_failed(err, sys);
  }

  void handshake_failed(int err, int sys) {
    tls_ms_ = ns_to_ms(Host::now_ns() - tls_start_ns_);
    const long verify = SSL_get_verify_result(ssl_);
    std::string errors = guardant::tcp::drain_openssl_errors();
    // The certificate the failure was about, for the details.
    if (X509* leaf = SSL_get0_peer_certificate(ssl_))
      set_cert(guardant::probes::report_from_certs(leaf, nullptr, false));
    else if (capture_.leaf)
      set_cert(guardant::probes::report_from_certs(capture_.leaf, nullptr, false));
    if (settings_.tls_verify && verify != X509_V_OK) {
      auto f = guardant::tcp::classify_verify_error(verify, capture_, verify_name_);
      finish_connected_down(f.reason, "tls", f.detail);
      return;
    }
    std::string why = errors;
    if (why.empty())
      why = err == SSL_ERROR_SYSCALL && sys != 0 ? std::strerror(sys)
            : err == SSL_ERROR_SYSCALL || err == SSL_ERROR_ZERO_RETURN
                ? "the peer closed the connection"
                : "OpenSSL error " + std::to_string(err);
    // What OpenSSL says when the other side answers in plain text.
    bool plain = errors.find("wrong version number") != std::string::npos ||
                 errors.find("packet length too long") != std::string::npos ||
                 errors.find("record layer failure") != std::string::npos;
    finish_connected_down(GUARDANT_REASON_TLS_HANDSHAKE, "tls",
                          "TLS handshake with " + endpoint(addrs_[current_]) + " failed: " + why +
                              (plain ? " (is the port speaking TLS?)" : ""));
  }

  void on_handshake_done() {
    const int64_t now = Host::now_ns();
    timer_.cancel();
    tls_ms_ = ns_to_ms(now - tls_start_ns_);
    tls_done_ = true;
    set_cert(guardant::probes::report_from_ssl(ssl_));
    const long verify = SSL_get_verify_result(ssl_);
    if (settings_.tls_verify && verify != X509_V_OK) {
      // SSL_VERIFY_PEER fails the handshake first; kept so that a chain that
      // did not verify can never pass.
      auto f = guardant::tcp::classify_verify_error(verify, capture_, verify_name_);
      finish_connected_down(f.reason, "tls", f.detail);
      return;
    }
    if (settings_.cert_expiry_days > 0 && cert_.present) {
      const double days = guardant::probes::days_until_expiry(cert_, Host::wall_ms());
      const std::string when = guardant::tcp::format_utc(cert_.chain_expires_at_ms);
      if (days < 0)
        degraded_ = "the certificate chain expired " + format_days(-days) + " days ago, at " + when;
      else if (days < settings_.cert_expiry_days)
        degraded_ = "the certificate chain expires in " + format_days(days) + " days, at " + when +
                    " (certExpiryDays " +
                    guardant::json::format_number(settings_.cert_expiry_days) + ")";
    }
    start_dialogue();
  }

  void set_cert(guardant::probes::CertReport report) {
    cert_ = std::move(report);
    have_cert_ = true;
  }

  // ---------------------------------------------------------------------
  // Steps
  // ---------------------------------------------------------------------

  void start_dialogue() {
    phase_ = Phase::Dialogue;
    step_ = 0;
    step_active_ = false;
    drive_dialogue();
  }

  void begin_step() {
    const Step& s = settings_.steps[step_];
    const int64_t now = Host::now_ns();
    step_active_ = true;
    step_start_ns_ = now;
    const std::optional<double> limit_ms = s.timeout_ms ? s.timeout_ms : settings_.step_timeout_ms;
    step_deadline_ns_ = end_ns_;
    step_limited_ = false;
    if (limit_ms) {
      int64_t d = now + static_cast<int64_t>(std::llround(*limit_ms * kNsPerMs));
      if (d < end_ns_) {
        step_deadline_ns_ = d;
        step_limited_ = true;
      }
    }
    sending_ = !s.send.empty();
    sent_ = 0;
    wait_start_ns_ = now;
    expect_from_ = regex_from_ = 0;
    expect_end_ = regex_end_ = std::string::npos;
    if (!timer_.start(step_deadline_ns_ - now, [this] { on_timeout(); }))
      finish(Result::inconclusive("the host refused a timer"));
  }

  // Runs the steps as far as the socket allows; returns when it has to wait
  // (the watch is set) or the check finished.
  void drive_dialogue() {
    while (!completed()) {
      if (step_ >= settings_.steps.size()) {
        finish_up();
        return;
      }
      const Step& s = settings_.steps[step_];
      if (!step_active_) {
        begin_step();
        if (completed()) return;
      }
      if (sending_) {
        Io io = send_some(s.send);
        if (io != Io::Done) return;
        sending_ = false;
        const int64_t now = Host::now_ns();
        add_ms(send_ms_, ns_to_ms(now - step_start_ns_));
        wait_start_ns_ = now;
      }
      if (s.reads()) {
        for (;;) {
          Expect e = check_expectation(s);
          if (e == Expect::Failed) return;
          if (e == Expect::Met) break;
          if (inbuf_.size() >= static_cast<size_t>(settings_.max_read_bytes)) {
            expectation_unmet(Unmet::Limit);
            return;
          }
          Io io = read_some();
          // At the end of the stream nothing new arrived: what was buffered
          // was already checked above.
          if (io == Io::Eof) expectation_unmet(Unmet::Closed);
          if (io != Io::Done) return;
        }
        add_ms(wait_ms_, ns_to_ms(Host::now_ns() - wait_start_ns_));
      }
      timer_.cancel();
      step_active_ = false;
      ++step_;
    }
  }

  // Writes the rest of the step's text. Done when all of it is out.
  Io send_some(const std::string& data) {
    while (sent_ < data.size()) {
      const char* p = data.data() + sent_;
      const size_t len = data.size() - sent_;
      size_t n = 0;
      int sys = 0;
      if (!ssl_) {
        ssize_t w = ::send(fd_, p, len, MSG_NOSIGNAL);
        if (w >= 0) {
          n = static_cast<size_t>(w);
        } else if (errno == EINTR) {
          continue;
        } else if (is_retry_errno(errno)) {
          return want_io(GUARDANT_FD_WRITE) ? Io::Want : Io::Failed;
        } else {
          sys = errno;
        }
      } else {
        ERR_clear_error();
        errno = 0;
        int rc = SSL_write_ex(ssl_, p, len, &n);
        sys = errno;
        if (rc != 1) {
          int err = SSL_get_error(ssl_, rc);
          if (err == SSL_ERROR_WANT_WRITE)
            return want_io(GUARDANT_FD_WRITE) ? Io::Want : Io::Failed;
          if (err == SSL_ERROR_WANT_READ) return want_io(GUARDANT_FD_READ) ? Io::Want : Io::Failed;
          if (err == SSL_ERROR_SSL) {
            tls_error_after_handshake("send");
            return Io::Failed;
          }
          if (sys == 0) sys = EPIPE;
          n = 0;
        } else {
          sys = 0;
        }
      }
      if (sys != 0) {
        const Step& s = settings_.steps[step_];
        finish_connected_down(GUARDANT_REASON_ASSERTION, "send",
                              s.label + ": the peer closed the connection while " +
                                  std::to_string(sent_) + " of " + std::to_string(data.size()) +
                                  " bytes were sent (" + std::strerror(sys) + ")");
        return Io::Failed;
      }
      sent_ += n;
      bytes_sent_ += n;
    }
    return Io::Done;
  }

  // Reads one chunk into inbuf_ (never past maxReadBytes).
  Io read_some() {
    char buf[kReadChunk];
    const size_t room = static_cast<size_t>(settings_.max_read_bytes) - inbuf_.size();
    const size_t want = std::min(room, sizeof buf);
    size_t got = 0;
    if (!ssl_) {
      for (;;) {
        ssize_t n = ::recv(fd_, buf, want, 0);
        if (n > 0) {
          got = static_cast<size_t>(n);
          break;
        }
        if (n == 0) return Io::Eof;
        if (errno == EINTR) continue;
        if (is_retry_errno(errno)) return want_io(GUARDANT_FD_READ) ? Io::Want : Io::Failed;
        close_reason_ = std::strerror(errno);  // e.g. a reset: ends the stream like a close
        return Io::Eof;
      }
    } else {
      ERR_clear_error();
      errno = 0;
      int rc = SSL_read_ex(ssl_, buf, want, &got);
      int sys = errno;
      if (rc != 1) {
        int err = SSL_get_error(ssl_, rc);
        if (err == SSL_ERROR_WANT_READ) return want_io(GUARDANT_FD_READ) ? Io::Want : Io::Failed;
        if (err == SSL_ERROR_WANT_WRITE) return want_io(GUARDANT_FD_WRITE) ? Io::Want : Io::Failed;
        if (err == SSL_ERROR_ZERO_RETURN) return Io::Eof;
        if (err == SSL_ERROR_SYSCALL) {
          guardant::tcp::drain_openssl_errors();
          if (sys != 0) close_reason_ = std::strerror(sys);
          return Io::Eof;
        }
        tls_error_after_handshake("wait");
        return Io::Failed;
      }
    }
    if (bytes_received_ == 0) {
      // The banner: the first line of the first data the peer sent.
      std::string_view first(buf, got);
      first = first.substr(0, first.find('\n'));
      if (!first.empty() && first.back() == '\r') first.remove_suffix(1);
      banner_ = escape_bytes(first, kBannerMaxBytes, false);
    }
    bytes_received_ += got;
    inbuf_.append(buf, got);
    return Io::Done;
  }

  // Whether the step's expectations are met by inbuf_; consumes what the
  // step matched when they are.
  Expect check_expectation(const Step& s) {
    size_t consume = 0;
    if (s.banner) {
      if (inbuf_.empty()) return Expect::NotYet;
      size_t nl = inbuf_.find('\n');
      consume = nl == std::string::npos ? inbuf_.size() : nl + 1;
    } else {
      if (!s.expect.empty() && expect_end_ == std::string::npos) {
        // Resume where the last search stopped, less a needle's length for
        // a match straddling the old end.
        const size_t overlap = s.expect.size() - 1;
        const size_t from = expect_from_ > overlap ? expect_from_ - overlap : 0;
        const size_t pos = inbuf_.find(s.expect, from);
        if (pos != std::string::npos)
          expect_end_ = pos + s.expect.size();
        else
          expect_from_ = inbuf_.size();
      }
      if (s.regex && regex_end_ == std::string::npos) {
        auto scan = s.regex->scan(inbuf_, &regex_from_);
        if (scan.kind == guardant::tcp::Regex::Scan::Error) {
          finish(Result::inconclusive(s.label + ": expectRegex /" + s.regex->pattern() +
                                      "/ could not be evaluated: " + scan.error));
          return Expect::Failed;
        }
        if (scan.kind == guardant::tcp::Regex::Scan::Match) regex_end_ = scan.end;
      }
      const bool expect_ok = s.expect.empty() || expect_end_ != std::string::npos;
      const bool regex_ok = !s.regex || regex_end_ != std::string::npos;
      if (!expect_ok || !regex_ok) return Expect::NotYet;
      if (expect_end_ != std::string::npos) consume = expect_end_;
      if (regex_end_ != std::string::npos) consume = std::max(consume, regex_end_);
    }
    inbuf_.erase(0, consume);
    return Expect::Met;
  }

  // What the step waited for, for messages: "PONG" and/or /regex/.
  static std::string describe(const Step& s) {
    if (s.banner) return "a banner";
    std::string out;
    if (!s.expect.empty()) out = "\"" + escape_bytes(s.expect, kExcerptMaxBytes, true) + "\"";
    if (s.regex) {
      if (!out.empty()) out += " and ";
      // As written in the config: escaping its backslashes would misquote it.
      const std::string& p = s.regex->pattern();
      out += "a match for /" + p.substr(0, kExcerptMaxBytes) +
             (p.size() > kExcerptMaxBytes ? "..." : "") + "/";
    }
    return out;
  }

  std::string received() const {
    if (inbuf_.empty()) return "nothing";
    return std::to_string(inbuf_.size()) + " bytes: \"" +
           escape_bytes(inbuf_, kExcerptMaxBytes, true) + "\"";
  }

  void on_step_timeout() {
    const Step& s = settings_.steps[step_];
    const int64_t now = Host::now_ns();
    const std::string limit =
        format_ms(ns_to_ms(now - step_start_ns_)) + " ms" +
        (step_limited_ ? (s.timeout_ms ? " (the step's timeout)" : " (stepTimeout)")
                       : " (the check's time limit)");
    if (sending_) {
      add_ms(send_ms_, ns_to_ms(now - step_start_ns_));
      finish_connected_down(GUARDANT_REASON_TIMEOUT, "send",
                            s.label + ": only " + std::to_string(sent_) + " of " +
                                std::to_string(s.send.size()) + " bytes sent within " + limit +
                                "; the peer is not reading");
      return;
    }
    expectation_unmet(Unmet::Timeout, limit);
  }

  void expectation_unmet(Unmet why, const std::string& limit = "") {
    const Step& s = settings_.steps[step_];
    add_ms(wait_ms_, ns_to_ms(Host::now_ns() - wait_start_ns_));
    const std::string want = describe(s);
    const std::string closed = close_reason_.empty()
                                   ? "the peer closed the connection"
                                   : "the connection ended (" + close_reason_ + ")";
    std::string reason = GUARDANT_REASON_ASSERTION;
    std::string detail;
    switch (why) {
      case Unmet::Timeout:
        if (inbuf_.empty()) {
          // Silence is not a wrong answer: the peer never answered.
          reason = GUARDANT_REASON_TIMEOUT;
          detail = s.label + ": nothing received within " + limit +
                   (s.banner ? "" : "; expected " + want);
        } else {
          detail = s.label + ": expected " + want + " within " + limit + "; received " + received();
        }
        break;
      case Unmet::Closed:
        detail = inbuf_.empty()
                     ? s.label + ": " + closed + " without sending anything; expected " + want
                     : s.label + ": expected " + want + ", but " + closed + " after sending " +
                           received();
        break;
      case Unmet::Limit:
        detail = s.label + ": expected " + want + " within the first " +
                 std::to_string(settings_.max_read_bytes) + " bytes (maxReadBytes); received " +
                 received();
        break;
    }
    finish_connected_down(reason, "wait", detail);
  }

  void tls_error_after_handshake(const std::string& phase) {
    std::string errors = guardant::tcp::drain_openssl_errors();
    // TLS 1.3 servers reject a client certificate after the client's side of
    // the handshake finished, so that rejection surfaces here.
    finish_connected_down(GUARDANT_REASON_TLS_HANDSHAKE, phase,
                          settings_.steps[step_].label + ": TLS error after the handshake: " +
                              (errors.empty() ? std::string("unknown") : errors));
  }

  // ---------------------------------------------------------------------
  // Results
  // ---------------------------------------------------------------------

  void finish_up() {
    const int64_t now = Host::now_ns();
    const guardant::Address& a = addrs_[current_];
    const bool plain_connect = !settings_.tls && settings_.steps.empty();
    const double response = plain_connect ? connect_ms_ : ns_to_ms(now - attempt_start_ns_);
    std::string message = "connected to " + endpoint(a) + " in " + format_ms(connect_ms_) + " ms";
    if (tls_done_)
      message += ", " + (cert_.tls_version.empty() ? std::string("TLS") : cert_.tls_version) +
                 " in " + format_ms(tls_ms_) + " ms";
    size_t dialogue = 0;
    for (const auto& s : settings_.steps)
      if (!s.banner) ++dialogue;
    if (dialogue)
      message += ", " + std::to_string(dialogue) + (dialogue == 1 ? " step" : " steps") + " passed";
    if (banner_ && settings_.read_banner)
      message += ", banner \"" + escape_bytes(*banner_, kMessageBannerBytes, false) + "\"";
    Result r = Result::up(response, message);
    if (degraded_) {
      r.status = guardant::Status::Degraded;
      r.message = *degraded_ + "; " + message;
      r.failure = guardant::Failure{kReasonCertExpiring, "tls", *degraded_};
    }
    r.details_json = details();
    r.timings = timings(now);
    finish(std::move(r));
  }

  // Down after a connection was made: response time, details and timings
  // cover everything that happened.
  void finish_connected_down(const std::string& reason, const std::string& phase,
                             const std::string& detail) {
    const int64_t now = Host::now_ns();
    Result r = Result::down(reason, phase, detail, ns_to_ms(now - start_ns_));
    if (reason == GUARDANT_REASON_ASSERTION && phase == "connect") r.response_time_ms = connect_ms_;
    r.details_json = details();
    r.timings = timings(now);
    finish(std::move(r));
  }

  void finish_down(const std::string& reason, const std::string& phase, const std::string& detail) {
    int64_t now = Host::now_ns();
    Result r = Result::down(reason, phase, detail, ns_to_ms(now - start_ns_));
    guardant::Timings t;
    t.resolve_ms = phase_ == Phase::Resolve ? ns_to_ms(now - start_ns_) : resolve_ms_;
    t.total_ms = ns_to_ms(now - start_ns_);
    r.timings = t;
    finish(std::move(r));
  }

  std::string details() const {
    guardant::json::JsonWriter w;
    if (!addrs_.empty()) {
      const guardant::Address& a = addrs_[current_];
      w.field("ip", a.text).field("family", a.family);
    }
    w.field("port", target_.port);
    if (have_cert_) guardant::probes::write_tls_details(w, cert_, Host::wall_ms());
    if (banner_) w.field("banner", *banner_);
    if (phase_ == Phase::Dialogue && !settings_.steps.empty())
      w.field("bytesSent", bytes_sent_).field("bytesReceived", bytes_received_);
    return w.str();
  }

  guardant::Timings timings(int64_t now) const {
    guardant::Timings t;
    t.resolve_ms = resolve_ms_;
    t.connect_ms = connect_ms_;
    t.tls_ms = tls_ms_;
    t.send_ms = send_ms_;
    t.wait_ms = wait_ms_;
    t.total_ms = ns_to_ms(now - start_ns_);
    return t;
  }

  void finish(Result r) {
    phase_ = Phase::Done;
    release();
    complete(r);
  }

  // Stops everything this check holds with the host, and the socket.
  void release() noexcept {
    timer_.cancel();
    resolve_.cancel();
    close_socket();
  }

  // Unwatch first: the host must not poll a closed (or reused) descriptor.
  void close_socket() noexcept {
    watch_.reset();
    io_watch_ = false;
    io_events_ = 0;
    if (ssl_) {
      if (tls_done_) {
        // A courtesy close_notify; one non-blocking try, errors ignored.
        ERR_clear_error();
        SSL_shutdown(ssl_);
      }
      ERR_clear_error();
      SSL_free(ssl_);  // frees the BIO, which does not own the fd
      ssl_ = nullptr;
    }
    if (fd_ >= 0) {
      ::close(fd_);
      fd_ = -1;
    }
  }

  const Target target_;
  const Settings settings_;
  Phase phase_ = Phase::Idle;
  int64_t start_ns_ = 0;
  int64_t end_ns_ = 0;  // the check's own time limit
  int64_t connect_start_ns_ = 0;
  int64_t attempt_start_ns_ = 0;
  double resolve_ms_ = -1;
  double connect_ms_ = -1;
  std::vector<guardant::Address> addrs_;
  size_t next_ = 0;     // next address to try
  size_t current_ = 0;  // address of the attempt in flight (or the last one)
  std::vector<Attempt> attempts_;
  int fd_ = -1;
  bool io_watch_ = false;  // watch_ dispatches to on_io()
  uint32_t io_events_ = 0;

  // TLS
  SSL_CTX* ctx_ = nullptr;
  SSL* ssl_ = nullptr;
  guardant::tcp::VerifyCapture capture_;
  std::string verify_name_;
  int64_t tls_start_ns_ = 0;
  double tls_ms_ = -1;
  bool tls_done_ = false;
  guardant::probes::CertReport cert_;
  bool have_cert_ = false;
  std::optional<std::string> degraded_;

  // Steps
  size_t step_ = 0;
  bool step_active_ = false;
  bool step_limited_ = false;  // the step's deadline comes before the check's
  int64_t step_start_ns_ = 0;
  int64_t step_deadline_ns_ = 0;
  int64_t wait_start_ns_ = 0;
  bool sending_ = false;
  size_t sent_ = 0;
  std::string inbuf_;  // received and not consumed by a step yet
  size_t expect_from_ = 0, regex_from_ = 0;
  size_t expect_end_ = std::string::npos, regex_end_ = std::string::npos;
  std::string close_reason_;  // set when the stream ended with an error
  uint64_t bytes_sent_ = 0, bytes_received_ = 0;
  double send_ms_ = -1, wait_ms_ = -1;
  std::optional<std::string> banner_;

  guardant::Timer timer_{this};
  guardant::FdWatch watch_{this};
  guardant::Resolve resolve_{this};
};

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"guardant-tcp", GUARDANT_PLUGIN_VERSION,
                                      "TCP connect probe with TLS and send/expect steps", nullptr,
                                      &guardant::tcp::release_tls_globals}),
                guardant::probe_type<TcpCheck>("tcp",
                                               "TCP connect to host:port, optional TLS and "
                                               "send/expect steps",
                                               GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6 |
                                                   GUARDANT_CAP_TLS,
                                               guardant::tcp::kOptionsSchema))
