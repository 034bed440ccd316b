// The built-in `tcp` probe: is something accepting TCP connections at
// host:port, and how long does the handshake take?
//
// Target: `host:port` or `[ipv6]:port`. Options (config JSON):
//   timeout   number, ms (1..600000): the check's own time limit.
//   ipFamily  "auto" | "ipv4" | "ipv6": which addresses of the name to use.
//
// Flow: resolve through the host (never blocks the loop), then a
// non-blocking connect to each address in the resolver's order until one
// succeeds or time runs out. Each attempt gets an equal share of the time
// left, so one black-holed address cannot starve the others. The outcome of
// a connect is read with SO_ERROR once the socket turns writable.
//
// The check's own time limit is min(option timeout, time to the host's
// deadline minus a small margin): the probe ends with the precise reason
// (dns_timeout, connect_timeout) before the host's deadline would record a
// generic timeout.
//
// Results
//   up    response time = the successful connect's duration; message
//         "connected to 127.0.0.1:8080 in 0.21 ms"; details {ip, family,
//         port}; timings {resolve, connect, total}.
//   down  dns_nxdomain / dns_error / dns_timeout (phase resolve);
//         connect_refused / connect_timeout / network_unreachable /
//         connect_error (phase connect, reason of the last address tried,
//         every attempt in the detail); timeout when no time was left to
//         start at all. Response time = time until the failure.
//   inconclusive  the worker itself could not run the check (out of file
//         descriptors or memory, a host service refused).
#include <arpa/inet.h>
#include <netinet/in.h>
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
#include <utility>
#include <vector>

#ifndef GUARDANT_PLUGIN_VERSION
#define GUARDANT_PLUGIN_VERSION "0.0.0-dev"
#endif

namespace {

using guardant::Check;
using guardant::ConfigError;
using guardant::Host;
using guardant::Request;
using guardant::Result;

constexpr int64_t kNsPerMs = 1'000'000;
// Used only when the host gives no deadline and the config no timeout.
constexpr int64_t kDefaultTimeoutNs = 10'000 * kNsPerMs;
constexpr double kMaxTimeoutMs = 600'000;

constexpr const char* kOptionsSchema = R"({
  "type": "object",
  "properties": {
    "timeout": {"type": "number", "minimum": 1, "maximum": 600000,
                "description": "Time limit of the check in milliseconds"},
    "ipFamily": {"enum": ["auto", "ipv4", "ipv6"], "default": "auto",
                 "description": "Which addresses of the host name to connect to"}
  }
})";

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ms);
  return buf;
}

double ns_to_ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

struct Target {
  std::string host;
  uint16_t port = 0;
  int literal_family = 0;  // 4 or 6 when host is an address literal, else 0
};

bool is_ipv4_literal(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

bool is_ipv6_literal(const std::string& s) {
  in6_addr a{};
  std::string addr = s.substr(0, s.find('%'));  // allow a zone: fe80::1%eth0
  return inet_pton(AF_INET6, addr.c_str(), &a) == 1;
}

// Parses `host:port` or `[ipv6]:port`. Throws ConfigError saying what is
// wrong and what is expected.
Target parse_target(const std::string& text) {
  const std::string shown =
      "target '" + (text.size() > 100 ? text.substr(0, 100) + "..." : text) + "'";
  const std::string expected = "; expected host:port or [ipv6]:port";
  if (text.empty()) throw ConfigError("target is empty" + expected);

  Target t;
  std::string port_text;
  if (text[0] == '[') {
    size_t close = text.find(']');
    if (close == std::string::npos) throw ConfigError(shown + " has no closing ']'" + expected);
    t.host = text.substr(1, close - 1);
    if (!is_ipv6_literal(t.host))
      throw ConfigError(shown + ": '" + t.host + "' is not an IPv6 address");
    t.literal_family = 6;
    if (close + 1 == text.size()) throw ConfigError(shown + " has no port" + expected);
    if (text[close + 1] != ':') throw ConfigError(shown + ": expected ':' after ']'" + expected);
    port_text = text.substr(close + 2);
  } else {
    size_t colon = text.rfind(':');
    if (colon == std::string::npos) throw ConfigError(shown + " has no port" + expected);
    if (text.find(':') != colon)
      throw ConfigError(shown + ": an IPv6 address must be in brackets, e.g. [::1]:443");
    t.host = text.substr(0, colon);
    port_text = text.substr(colon + 1);
    if (t.host.empty()) throw ConfigError(shown + " has no host" + expected);
    if (t.host.size() > 253) throw ConfigError(shown + ": host name longer than 253 characters");
    for (unsigned char c : t.host)
      if (c <= 0x20 || c == 0x7F || std::strchr("/\\?#@[]%", c))
        throw ConfigError(shown + ": invalid character in host name");
    if (is_ipv4_literal(t.host)) t.literal_family = 4;
  }
  if (port_text.empty()) throw ConfigError(shown + " has no port" + expected);
  bool digits = port_text.size() <= 5 && std::all_of(port_text.begin(), port_text.end(),
                                                     [](char c) { return c >= '0' && c <= '9'; });
  long port = digits ? std::stol(port_text) : 0;
  if (port < 1 || port > 65535)
    throw ConfigError(shown + ": port must be a number between 1 and 65535");
  t.port = static_cast<uint16_t>(port);
  return t;
}

struct Settings {
  std::optional<double> timeout_ms;
  int family = GUARDANT_FAMILY_ANY;
  std::string family_name = "auto";
};

Settings parse_options(const std::string& config_json) {
  auto opts = guardant::json::Options::parse(config_json);
  Settings s;
  s.timeout_ms = opts.optional_number("timeout", 1, kMaxTimeoutMs);
  s.family_name = opts.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
  s.family = s.family_name == "ipv4"   ? GUARDANT_FAMILY_IPV4
             : s.family_name == "ipv6" ? GUARDANT_FAMILY_IPV6
                                       : GUARDANT_FAMILY_ANY;
  // Unknown keys are not an error: the host warns about them using the
  // options schema.
  return s;
}

// What a failed connect errno means for the target.
const char* reason_for_errno(int e) {
  switch (e) {
    case ECONNREFUSED:
      return GUARDANT_REASON_CONNECT_REFUSED;
    case ETIMEDOUT:
      return GUARDANT_REASON_CONNECT_TIMEOUT;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
    case EADDRNOTAVAIL:  // e.g. no IPv6 address configured on this machine
    case EAFNOSUPPORT:   // the family is disabled on this machine
      return GUARDANT_REASON_NETWORK_UNREACHABLE;
    default:
      return "connect_error";
  }
}

// Errors that say the worker, not the target, is in trouble.
bool is_worker_errno(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM;
}

class TcpCheck final : public Check {
 public:
  explicit TcpCheck(Request request)
      : Check(std::move(request)),
        target_(parse_target(this->request().target)),
        settings_(parse_options(this->request().config_json)) {
    if (target_.literal_family && settings_.family != GUARDANT_FAMILY_ANY &&
        target_.literal_family != settings_.family)
      throw ConfigError("target '" + this->request().target + "' is an IPv" +
                        std::to_string(target_.literal_family) +
                        " address but option 'ipFamily' is \"" + settings_.family_name + "\"");
  }
  ~TcpCheck() override { close_socket(); }

  void start() override {
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
  enum class Phase { Idle, Resolve, Connect, Done };

  struct Attempt {
    std::string endpoint;  // 127.0.0.1:80 or [::1]:80
    std::string reason;
    std::string detail;
  };

  // min(option timeout, time to the host's deadline minus a margin). The
  // margin (5% of the time left, 2..50 ms) lets our result reach the host
  // before its deadline fires.
  int64_t budget_ns(int64_t now) const {
    int64_t budget = kDefaultTimeoutNs;
    const bool has_deadline = request().deadline_ns > 0;
    if (settings_.timeout_ms)
      budget = static_cast<int64_t>(std::llround(*settings_.timeout_ms * kNsPerMs));
    if (has_deadline) {
      int64_t to_deadline = request().deadline_ns - now;
      int64_t margin = std::clamp<int64_t>(to_deadline / 20, 2 * kNsPerMs, 50 * kNsPerMs);
      int64_t by_deadline = to_deadline - margin;
      budget = settings_.timeout_ms ? std::min(budget, by_deadline) : by_deadline;
    }
    return budget;
  }

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
      default:
        finish_down(GUARDANT_REASON_TIMEOUT, "", "the check's time limit ran out");
    }
  }

  void record_failure(size_t index, int e) {
    std::string ep = endpoint(addrs_[index]);
    std::string detail = e == ECONNREFUSED ? "connection refused by " + ep
                                           : ep + ": " + std::string(std::strerror(e));
    attempts_.push_back(Attempt{std::move(ep), reason_for_errno(e), std::move(detail)});
  }

  void on_connected() {
    int64_t now = Host::now_ns();
    double connect_ms = ns_to_ms(now - attempt_start_ns_);
    close_socket();
    const guardant::Address& a = addrs_[current_];
    Result r = Result::up(connect_ms,
                          "connected to " + endpoint(a) + " in " + format_ms(connect_ms) + " ms");
    r.details_json = details(a);
    r.timings = timings(connect_ms, now);
    finish(std::move(r));
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
    if (next_ < addrs_.size())
      detail += " (" + std::to_string(addrs_.size() - next_) + " more address" +
                (addrs_.size() - next_ == 1 ? "" : "es") + " not tried: out of time)";
    Result r = Result::down(last.reason, "connect", detail, ns_to_ms(now - start_ns_));
    r.details_json = details(addrs_[current_]);
    r.timings = timings(ns_to_ms(now - connect_start_ns_), now);
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

  std::string details(const guardant::Address& a) const {
    guardant::json::JsonWriter w;
    w.field("ip", a.text).field("family", a.family).field("port", target_.port);
    return w.str();
  }

  guardant::Timings timings(double connect_ms, int64_t now) const {
    guardant::Timings t;
    t.resolve_ms = resolve_ms_;
    t.connect_ms = connect_ms;
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
  std::vector<guardant::Address> addrs_;
  size_t next_ = 0;     // next address to try
  size_t current_ = 0;  // address of the attempt in flight (or the last one)
  std::vector<Attempt> attempts_;
  int fd_ = -1;
  guardant::Timer timer_{this};
  guardant::FdWatch watch_{this};
  guardant::Resolve resolve_{this};
};

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"guardant-tcp", GUARDANT_PLUGIN_VERSION,
                                      "TCP connect probe with timings"}),
                guardant::probe_type<TcpCheck>("tcp", "TCP connect to host:port",
                                               GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6,
                                               kOptionsSchema))
