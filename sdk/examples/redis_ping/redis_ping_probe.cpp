// Example third-party probe `redis`: is a Redis server at host:port alive
// and answering commands? Built only from the installed SDK (see
// CMakeLists.txt next to this file); the worker loads it like any plugin.
//
// Target: `host:port`, `[ipv6]:port`, or `host` (port 6379).
// Options (the check's config JSON):
//
//   option    type                     default       meaning
//   timeout   number, ms (1..600000)   the check's   limit for the whole check
//   ipFamily  "auto"|"ipv4"|"ipv6"     "auto"        which resolved addresses to use
//   username  string                   none          ACL user for AUTH (needs password)
//   password  string                   none          AUTH before PING; never echoed
//
// Flow, all on the host's loop and never blocking it: resolve through the
// host, a non-blocking connect to each address in turn (each gets an equal
// share of the time left), then AUTH (when a password is set) and PING sent
// together as RESP arrays, and the replies read line by line. `up` when the
// server answers +PONG; responseTime is the PING round trip.
//
// Results
//   up    message "PONG from 127.0.0.1:6379 in 0.12 ms"; details {ip, family,
//         port, auth}; timings {resolve, connect, wait, total}.
//   down  dns_* (resolve); connect_refused / connect_timeout /
//         network_unreachable / connect_error (connect, the last address's
//         reason); assertion (wait) when the server answers an error (e.g.
//         NOAUTH, WRONGPASS, LOADING; its text is in the detail) or anything
//         but +OK/+PONG; connection_closed (wait) when it hangs up first;
//         timeout (wait) when no answer comes in time.
//   inconclusive  the worker could not run the check (no sockets left, a
//         host service refused).
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#ifndef REDIS_PING_VERSION
#define REDIS_PING_VERSION "0.0.0-dev"
#endif

namespace {

using guardant::Check;
using guardant::Host;
using guardant::Request;
using guardant::Result;

constexpr int64_t kNsPerMs = 1'000'000;
constexpr int64_t kDefaultTimeoutNs = 10'000 * kNsPerMs;
constexpr uint16_t kDefaultPort = 6379;
// A reply line longer than this is not a reply to PING or AUTH.
constexpr size_t kMaxReplyBytes = 4096;

struct Target {
  std::string host;
  uint16_t port = kDefaultPort;
};

// "host:port", "[v6]:port", "host" or a bare IPv6 literal ("::1").
Target parse_target(const std::string& text) {
  Target t;
  std::string port;
  if (!text.empty() && text.front() == '[') {
    const size_t close = text.find(']');
    if (close == std::string::npos)
      throw guardant::ConfigError("target '" + text + "': missing ']'");
    t.host = text.substr(1, close - 1);
    if (close + 1 < text.size()) {
      if (text[close + 1] != ':')
        throw guardant::ConfigError("target '" + text + "': expected ':' after ']'");
      port = text.substr(close + 2);
    }
  } else if (const size_t colon = text.rfind(':');
             colon != std::string::npos && text.find(':') == colon) {
    t.host = text.substr(0, colon);
    port = text.substr(colon + 1);
  } else {
    t.host = text;  // no port, or an IPv6 literal without brackets
  }
  if (t.host.empty()) throw guardant::ConfigError("target '" + text + "': missing host");
  if (!port.empty()) {
    char* end = nullptr;
    const unsigned long n = std::strtoul(port.c_str(), &end, 10);
    if (*end != '\0' || n == 0 || n > 65535)
      throw guardant::ConfigError("target '" + text + "': port must be 1-65535");
    t.port = static_cast<uint16_t>(n);
  }
  return t;
}

// One RESP array of bulk strings: the way redis-cli sends commands.
std::string resp_command(std::initializer_list<std::string> args) {
  std::string out = "*" + std::to_string(args.size()) + "\r\n";
  for (const auto& a : args) out += "$" + std::to_string(a.size()) + "\r\n" + a + "\r\n";
  return out;
}

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.2f", ms);
  return buf;
}

double ms_since(int64_t start_ns) {
  return static_cast<double>(Host::now_ns() - start_ns) / 1e6;
}

const char* connect_reason(int e) {
  switch (e) {
    case ECONNREFUSED:
      return GUARDANT_REASON_CONNECT_REFUSED;
    case ETIMEDOUT:
      return GUARDANT_REASON_CONNECT_TIMEOUT;
    case ENETUNREACH:
    case EHOSTUNREACH:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
      return GUARDANT_REASON_NETWORK_UNREACHABLE;
    default:
      return "connect_error";
  }
}

class RedisPingCheck final : public Check {
 public:
  explicit RedisPingCheck(Request request)
      : Check(std::move(request)), target_(parse_target(this->request().target)) {
    const auto opts = guardant::json::Options::parse(this->request().config_json);
    timeout_ms_ = opts.optional_number("timeout", 1, 600000);
    const std::string family = opts.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
    family_ = family == "ipv4"   ? GUARDANT_FAMILY_IPV4
              : family == "ipv6" ? GUARDANT_FAMILY_IPV6
                                 : GUARDANT_FAMILY_ANY;
    username_ = opts.string("username", "");
    password_ = opts.string("password", "");
    if (!username_.empty() && password_.empty())
      throw guardant::ConfigError("option 'username' needs option 'password'");
  }

  ~RedisPingCheck() override { close_socket(); }

  void start() override {
    start_ns_ = Host::now_ns();
    end_ns_ =
        start_ns_ + guardant::check_budget_ns(request(), timeout_ms_, start_ns_, kDefaultTimeoutNs);
    if (end_ns_ <= start_ns_) return down(GUARDANT_REASON_TIMEOUT, "", "no time left to start");
    if (!timer_.start(end_ns_ - start_ns_, [this] { on_timeout(); }))
      return finish(Result::inconclusive("the host refused a timer"));
    if (!resolve_.start(target_.host, family_,
                        [this](const guardant::Resolution& r) { on_resolved(r); }))
      finish(Result::inconclusive("the host refused to resolve '" + target_.host + "'"));
  }

  void on_cancel() override { finish(Result::inconclusive("cancelled by the host")); }

 private:
  enum class Phase { Resolve, Connect, Wait };

  // --- resolve and connect ------------------------------------------------

  void on_resolved(const guardant::Resolution& r) {
    resolve_ms_ = ms_since(start_ns_);
    if (!r.ok) {
      return down(
          r.error_reason.empty() ? "dns_error" : r.error_reason, "resolve",
          r.error_detail.empty() ? "cannot resolve '" + target_.host + "'" : r.error_detail);
    }
    for (const auto& a : r.addresses)
      if (family_ == GUARDANT_FAMILY_ANY || a.family == family_) addrs_.push_back(a);
    if (addrs_.empty())
      return down(GUARDANT_REASON_DNS_NXDOMAIN, "resolve",
                  "no usable address for '" + target_.host + "'");
    phase_ = Phase::Connect;
    connect_start_ns_ = Host::now_ns();
    connect_next();
  }

  // Tries the next address with an equal share of the time left.
  void connect_next() {
    while (next_ < addrs_.size()) {
      const int64_t now = Host::now_ns();
      if (now >= end_ns_) break;
      current_ = next_++;
      const int64_t share = (end_ns_ - now) / static_cast<int64_t>(addrs_.size() - current_);
      if (begin_connect(now + share)) return;
    }
    down(last_reason_.empty() ? GUARDANT_REASON_CONNECT_TIMEOUT : last_reason_, "connect",
         last_detail_.empty() ? "no answer from " + endpoint() : last_detail_);
  }

  // True when a connect is in flight (or the check ended); false when this
  // address failed at once.
  bool begin_connect(int64_t attempt_end_ns) {
    const guardant::Address& a = addrs_[current_];
    sockaddr_storage ss{};
    const size_t len = std::min(a.sockaddr.size(), sizeof ss);
    std::memcpy(&ss, a.sockaddr.data(), len);
    if (ss.ss_family == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port = htons(target_.port);
    else
      reinterpret_cast<sockaddr_in*>(&ss)->sin_port = htons(target_.port);

    fd_ = ::socket(ss.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd_ < 0) {
      const int e = errno;
      if (e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM) {
        finish(Result::inconclusive(std::string("cannot create a socket: ") + std::strerror(e)));
        return true;
      }
      return connect_failed(e);
    }
    if (::connect(fd_, reinterpret_cast<const sockaddr*>(&ss), static_cast<socklen_t>(len)) == 0) {
      on_connected();
      return true;
    }
    if (errno != EINPROGRESS) return connect_failed(errno);
    // This attempt's share of the time; the check's own timer still bounds all.
    if (!attempt_timer_.start(attempt_end_ns - Host::now_ns(), [this] {
          close_socket();
          last_reason_ = GUARDANT_REASON_CONNECT_TIMEOUT;
          last_detail_ = "no answer from " + endpoint();
          connect_next();
        })) {
      finish(Result::inconclusive("the host refused a timer"));
      return true;
    }
    if (!watch_.watch(fd_, GUARDANT_FD_WRITE, [this](uint32_t) { on_connect_ready(); })) {
      finish(Result::inconclusive("the host refused to watch a socket"));
      return true;
    }
    return true;
  }

  bool connect_failed(int e) {
    close_socket();
    last_reason_ = connect_reason(e);
    last_detail_ = endpoint() + ": " + std::strerror(e);
    return false;
  }

  void on_connect_ready() {
    int err = 0;
    socklen_t len = sizeof err;
    if (::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len) != 0) err = errno;
    if (err == EINPROGRESS) return;  // spurious wake-up
    attempt_timer_.cancel();
    if (err != 0) {
      connect_failed(err);
      return connect_next();
    }
    on_connected();
  }

  // --- the dialogue ---------------------------------------------------------

  void on_connected() {
    attempt_timer_.cancel();
    connect_ms_ = ms_since(connect_start_ns_);
    phase_ = Phase::Wait;
    if (!password_.empty()) {
      out_ = username_.empty() ? resp_command({"AUTH", password_})
                               : resp_command({"AUTH", username_, password_});
      expected_.emplace_back("+OK");
    }
    out_ += resp_command({"PING"});
    expected_.emplace_back("+PONG");
    send_start_ns_ = Host::now_ns();
    if (!watch_.watch(fd_, GUARDANT_FD_WRITE | GUARDANT_FD_READ,
                      [this](uint32_t events) { on_io(events); }))
      finish(Result::inconclusive("the host refused to watch a socket"));
  }

  void on_io(uint32_t events) {
    if ((events & GUARDANT_FD_WRITE) && !out_.empty() && !send_pending()) return;
    if (out_.empty()) watch_.update(GUARDANT_FD_READ);
    if (events & (GUARDANT_FD_READ | GUARDANT_FD_ERROR)) receive();
  }

  // Sends what is left of out_; false when the check ended.
  bool send_pending() {
    while (!out_.empty()) {
      const ssize_t n = ::send(fd_, out_.data(), out_.size(), MSG_NOSIGNAL);
      if (n > 0) {
        out_.erase(0, static_cast<size_t>(n));
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return true;
      down("connection_closed", "send",
           endpoint() + " closed the connection while the command was sent");
      return false;
    }
    return true;
  }

  void receive() {
    char buf[1024];
    while (true) {
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n > 0) {
        in_.append(buf, static_cast<size_t>(n));
        if (!consume_replies()) return;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) return;
      return down("connection_closed", "wait",
                  endpoint() + " closed the connection before answering PING");
    }
  }

  // Matches complete reply lines against what each command must answer;
  // false when the check ended.
  bool consume_replies() {
    size_t eol;
    while ((eol = in_.find("\r\n")) != std::string::npos) {
      const std::string line = in_.substr(0, eol);
      in_.erase(0, eol + 2);
      const std::string want = expected_.front();
      expected_.erase(expected_.begin());
      if (line != want) {
        // A server's error text is safe to show; it never contains our password.
        std::string detail = endpoint() + " answered " + (want == "+OK" ? "AUTH" : "PING") +
                             " with '" + printable(line) + "'";
        if (line.rfind("-NOAUTH", 0) == 0) detail += " (set option 'password')";
        down(GUARDANT_REASON_ASSERTION, "wait", detail);
        return false;
      }
      if (expected_.empty()) {
        succeed();
        return false;
      }
    }
    if (in_.size() > kMaxReplyBytes) {
      down(GUARDANT_REASON_ASSERTION, "wait",
           endpoint() + " sent " + std::to_string(in_.size()) +
               " bytes without a line end: not a Redis server?");
      return false;
    }
    return true;
  }

  // --- results --------------------------------------------------------------

  void on_timeout() {
    switch (phase_) {
      case Phase::Resolve:
        return down(GUARDANT_REASON_DNS_TIMEOUT, "resolve",
                    "no answer resolving '" + target_.host + "'");
      case Phase::Connect:
        return down(GUARDANT_REASON_CONNECT_TIMEOUT, "connect", "no answer from " + endpoint());
      case Phase::Wait:
        return down(GUARDANT_REASON_TIMEOUT, "wait",
                    endpoint() + " did not answer PING within " +
                        format_ms(ms_since(send_start_ns_)) + " ms");
    }
  }

  void succeed() {
    const double rtt = ms_since(send_start_ns_);
    Result r = Result::up(rtt, "PONG from " + endpoint() + " in " + format_ms(rtt) + " ms");
    r.details_json = details();
    r.timings = timings(rtt);
    finish(std::move(r));
  }

  void down(const std::string& reason, const std::string& phase, const std::string& detail) {
    Result r = Result::down(reason, phase, detail, ms_since(start_ns_));
    if (!addrs_.empty()) r.details_json = details();
    r.timings = timings(phase_ == Phase::Wait ? ms_since(send_start_ns_) : -1);
    finish(std::move(r));
  }

  void finish(Result r) {
    resolve_.cancel();
    timer_.cancel();
    attempt_timer_.cancel();
    close_socket();
    complete(r);
  }

  std::string details() const {
    const guardant::Address& a = addrs_[current_];
    guardant::json::JsonWriter w;
    w.field("ip", a.text).field("family", a.family).field("port", target_.port);
    w.field("auth", !password_.empty());
    return w.str();
  }

  guardant::Timings timings(double wait_ms) const {
    guardant::Timings t;
    t.resolve_ms = resolve_ms_;
    t.connect_ms = connect_ms_;
    t.wait_ms = wait_ms;
    t.total_ms = ms_since(start_ns_);
    return t;
  }

  std::string endpoint() const {
    if (addrs_.empty()) return target_.host + ":" + std::to_string(target_.port);
    const guardant::Address& a = addrs_[current_];
    return (a.family == GUARDANT_FAMILY_IPV6 ? "[" + a.text + "]" : a.text) + ":" +
           std::to_string(target_.port);
  }

  static std::string printable(const std::string& s) {
    std::string out;
    for (const char c : s.substr(0, 120)) out += (c >= 0x20 && c < 0x7f) ? c : '?';
    return out;
  }

  // The watch goes before the descriptor closes.
  void close_socket() {
    watch_.reset();
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }

  Target target_;
  std::optional<double> timeout_ms_;
  int family_ = GUARDANT_FAMILY_ANY;
  std::string username_, password_;

  Phase phase_ = Phase::Resolve;
  int64_t start_ns_ = 0, end_ns_ = 0, connect_start_ns_ = 0, send_start_ns_ = 0;
  double resolve_ms_ = -1, connect_ms_ = -1;
  std::vector<guardant::Address> addrs_;
  size_t next_ = 0, current_ = 0;
  std::string last_reason_, last_detail_;

  int fd_ = -1;
  std::string out_, in_;
  std::vector<std::string> expected_;  // reply lines still owed, in order

  guardant::Timer timer_{this};          // the whole check
  guardant::Timer attempt_timer_{this};  // one address's share
  guardant::Resolve resolve_{this};
  guardant::FdWatch watch_{this};
};

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"example-redis-ping", REDIS_PING_VERSION,
                                      "Redis PING probe (Guardant SDK example)"}),
                guardant::probe_type<RedisPingCheck>("redis", "Redis AUTH + PING round trip",
                                                     GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6))
