// The built-in `ping` probe: does a host answer ICMP echo, how fast, and
// how many of the echo requests get lost?
//
// Target: a host name or an IP address (IPv6 also as [addr], with an
// optional %zone), no port. Options (config JSON; null counts as absent):
//   packets              integer 1..100, default 3: echo requests to send.
//   interval             number, ms (10..60000), default 200: between two
//                        requests. 200 ms is the fastest rate iputils' ping
//                        allows unprivileged users, i.e. polite everywhere.
//   packetTimeout        number, ms (1..60000), default 1000: how long one
//                        request waits for its reply before it counts as lost.
//   packetSize           integer 0..65000, default 56: payload bytes (56 + 8
//                        header = ping's classic 64-byte ICMP message).
//   ttl                  integer 1..255, default: the system's (usually 64):
//                        TTL / hop limit of the requests.
//   timeout              number, ms (1..600000), default: the check's own
//                        timeout: time limit of the whole check.
//   degradedLossPercent  number 0..100, default 0: degraded when the loss is
//                        above it (so by default any loss is degraded).
//   downLossPercent      number 0..100, default 100: down when the loss is
//                        above it. Every request lost is always down.
//   degradedRttMs        number, ms (0..600000), default none: degraded when
//                        the average RTT is above it.
//   downRttMs            number, ms (0..600000), default none: down when the
//                        average RTT is above it.
//   ipFamily             "auto" | "ipv4" | "ipv6", default "auto".
//
// Sockets. ICMP needs either an unprivileged ICMP datagram socket
// (socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP), allowed to the groups in sysctl
// net.ipv4.ping_group_range) or a raw socket (CAP_NET_RAW); we never spawn
// `ping`. The plugin opens ONE socket per family, lazily, on the first check
// that needs it, tries datagram first and falls back to raw, shares it
// between every check in flight and closes it at plugin shutdown. It is
// watched through the host only while some check uses it, because the host
// neither shuts down nor unloads a plugin that holds a watch.
//
// Matching replies. Sequence numbers come from one per-socket space: each
// request in flight owns a distinct sequence number, so a reply finds its
// check and packet in a table. On a datagram socket the kernel replaces our
// identifier by the socket's local port and only delivers replies carrying
// it, so the sequence number is what matters; a raw socket sees every ICMP
// message reaching the machine, so there the identifier (random per plugin
// instance) must match too. The first 8 payload bytes carry a per-plugin
// nonce and a per-request counter, so even a late reply to a request whose
// sequence number has since been reused is recognised and ignored.
//
// Timing. RTT = host monotonic time when the reply is read minus the time
// just before sendmsg, in ms with sub-ms precision, less the time the reply
// waited in the socket buffer (from its kernel receive timestamp,
// SO_TIMESTAMPNS): a loop busy with other checks must not inflate the
// target's RTT. The reply's TTL comes from IP_RECVTTL / IPV6_RECVHOPLIMIT
// (or the IPv4 header on raw sockets).
//
// Results
//   up / degraded / down by the thresholds above; response time = average
//   RTT; details {ip, family, sent, received, lossPercent, rttMin, rttAvg,
//   rttMax, rttStddev, replyTtl, errors, packetSize, socket}; timings
//   {resolve, total}. Failure reasons:
//     dns_nxdomain / dns_error / dns_timeout   (phase resolve)
//     network_unreachable   every request failed to send (ENETUNREACH,
//                           EHOSTUNREACH...; phase send) or came back as an
//                           ICMP error (host unreachable, TTL exceeded; phase
//                           wait)
//     send_error            every request refused locally for another
//                           reason (EPERM from a firewall rule...; phase send)
//     packet_loss           every request lost (down), or the loss above a
//                           threshold (phase wait)
//     latency               the average RTT above a threshold (phase wait)
//     timeout               no request answered before the check's time ran
//                           out (or no time left to start)
//   inconclusive when the worker cannot ping at all: neither socket kind is
//   permitted (the message names net.ipv4.ping_group_range and CAP_NET_RAW),
//   out of descriptors or buffers, a host service refused.
#include <arpa/inet.h>
#include <linux/errqueue.h>
#include <netinet/icmp6.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <memory>
#include <optional>
#include <random>
#include <string>
#include <unordered_map>
#include <utility>
#include <vector>

#include "icmp.hpp"
#include "net_util.hpp"

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
namespace icmp = guardant::ping;

constexpr int64_t kNsPerMs = 1'000'000;
// Used only when the host gives no deadline and the config no timeout.
constexpr int64_t kDefaultTimeoutNs = 10'000 * kNsPerMs;
// Bytes of payload that identify one request (nonce + counter).
constexpr size_t kCookieLen = 8;
// Bounds the work of one readiness callback so a flood cannot starve the loop.
constexpr int kMaxReadsPerWake = 512;

constexpr const char* kOptionsSchema = R"({
  "type": "object",
  "properties": {
    "packets": {"type": "integer", "minimum": 1, "maximum": 100, "default": 3,
                "description": "Number of echo requests"},
    "interval": {"type": "number", "minimum": 10, "maximum": 60000, "default": 200,
                 "description": "Milliseconds between two echo requests"},
    "packetTimeout": {"type": "number", "minimum": 1, "maximum": 60000, "default": 1000,
                      "description": "Milliseconds one request waits for its reply"},
    "packetSize": {"type": "integer", "minimum": 0, "maximum": 65000, "default": 56,
                   "description": "Payload bytes per request"},
    "ttl": {"type": "integer", "minimum": 1, "maximum": 255,
            "description": "TTL (hop limit) of the requests; default: the system's"},
    "timeout": {"type": "number", "minimum": 1, "maximum": 600000,
                "description": "Time limit of the whole check in milliseconds"},
    "degradedLossPercent": {"type": "number", "minimum": 0, "maximum": 100, "default": 0,
                            "description": "Degraded when the loss % is above this"},
    "downLossPercent": {"type": "number", "minimum": 0, "maximum": 100, "default": 100,
                        "description": "Down when the loss % is above this"},
    "degradedRttMs": {"type": "number", "minimum": 0, "maximum": 600000,
                      "description": "Degraded when the average RTT (ms) is above this"},
    "downRttMs": {"type": "number", "minimum": 0, "maximum": 600000,
                  "description": "Down when the average RTT (ms) is above this"},
    "ipFamily": {"enum": ["auto", "ipv4", "ipv6"], "default": "auto",
                 "description": "Which addresses of the host name to ping"}
  }
})";

std::string format_ms(double ms) {
  char buf[32];
  std::snprintf(buf, sizeof buf, ms < 10 ? "%.3f" : "%.2f", ms);
  return buf;
}

std::string format_percent(double p) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.4g", p);
  return buf;
}

double ns_to_ms(int64_t ns) {
  return static_cast<double>(ns) / 1e6;
}

// Rounded to `decimals` places so details read well (3 for ms = 1 µs, 2
// for %). Dividing by a power of ten (rather than multiplying by a step
// like 0.001) gives the double nearest the decimal, which prints short.
double round_to(double v, int decimals) {
  const double scale = std::pow(10.0, decimals);
  return std::round(v * scale) / scale;
}

// ------------------------------------------------------------------------
// Target and options
// ------------------------------------------------------------------------

struct Target {
  std::string host;
  int literal_family = 0;  // 4 or 6 when an address literal, else 0
};

using guardant::probes::is_ipv4_literal;
using guardant::probes::is_ipv6_literal;

// A host name or an address; ping has no port.
Target parse_target(const std::string& text) {
  const std::string shown =
      "target '" + (text.size() > 100 ? text.substr(0, 100) + "..." : text) + "'";
  const std::string expected = "; expected a host name or an IP address";
  if (text.empty()) throw ConfigError("target is empty" + expected);
  Target t;
  if (text.front() == '[') {
    if (text.back() != ']') throw ConfigError(shown + ": ping takes no port" + expected);
    t.host = text.substr(1, text.size() - 2);
    if (!is_ipv6_literal(t.host))
      throw ConfigError(shown + ": '" + t.host + "' is not an IPv6 address");
    t.literal_family = 6;
    return t;
  }
  t.host = text;
  if (is_ipv6_literal(t.host)) {
    t.literal_family = 6;
    return t;
  }
  if (t.host.size() > 253) throw ConfigError(shown + ": host name longer than 253 characters");
  for (unsigned char c : t.host)
    if (c <= 0x20 || c == 0x7F || std::strchr("/\\?#@[]%", c))
      throw ConfigError(shown + ": invalid character in host name");
  if (t.host.find(':') != std::string::npos)
    throw ConfigError(shown + ": ping takes no port" + expected);
  if (is_ipv4_literal(t.host)) t.literal_family = 4;
  return t;
}

struct Settings {
  int packets = 3;
  double interval_ms = 200;
  double packet_timeout_ms = 1000;
  size_t packet_size = 56;
  int ttl = 0;  // 0: the system's
  std::optional<double> timeout_ms;
  double degraded_loss = 0;
  double down_loss = 100;
  std::optional<double> degraded_rtt_ms;
  std::optional<double> down_rtt_ms;
  int family = GUARDANT_FAMILY_ANY;
  std::string family_name = "auto";
};

Settings parse_options(const std::string& config_json) {
  auto opts = guardant::json::Options::parse(config_json);
  Settings s;
  s.packets = static_cast<int>(opts.integer("packets", 3, 1, 100));
  s.interval_ms = opts.number("interval", 200, 10, 60000);
  s.packet_timeout_ms = opts.number("packetTimeout", 1000, 1, 60000);
  s.packet_size = static_cast<size_t>(opts.integer("packetSize", 56, 0, 65000));
  s.ttl = static_cast<int>(opts.integer("ttl", 0, 1, 255));
  s.timeout_ms = opts.optional_number("timeout", 1, 600000);
  s.degraded_loss = opts.number("degradedLossPercent", 0, 0, 100);
  s.down_loss = opts.number("downLossPercent", 100, 0, 100);
  s.degraded_rtt_ms = opts.optional_number("degradedRttMs", 0, 600000);
  s.down_rtt_ms = opts.optional_number("downRttMs", 0, 600000);
  s.family_name = opts.one_of("ipFamily", "auto", {"auto", "ipv4", "ipv6"});
  s.family = s.family_name == "ipv4"   ? GUARDANT_FAMILY_IPV4
             : s.family_name == "ipv6" ? GUARDANT_FAMILY_IPV6
                                       : GUARDANT_FAMILY_ANY;
  // Unknown keys are not an error: the host warns about them using the
  // options schema.
  return s;
}

// What a failed send says about the target's reachability.
const char* reason_for_send_errno(int e) {
  switch (e) {
    case ENETUNREACH:
    case EHOSTUNREACH:
    case ENETDOWN:
    case EHOSTDOWN:
    case EADDRNOTAVAIL:
    case EAFNOSUPPORT:
      return GUARDANT_REASON_NETWORK_UNREACHABLE;
    default:
      return "send_error";
  }
}

// Errors that say the worker, not the network, is in trouble.
bool is_worker_errno(int e) {
  return e == EMFILE || e == ENFILE || e == ENOBUFS || e == ENOMEM || e == EAGAIN ||
         e == EWOULDBLOCK;
}

std::string read_ping_group_range() {
  // A small procfs read, only on the path where no socket could be opened.
  std::ifstream in("/proc/sys/net/ipv4/ping_group_range");
  std::string line;
  std::getline(in, line);
  return line;
}

// ------------------------------------------------------------------------
// The shared sockets
// ------------------------------------------------------------------------

class PingCheck;

// One ICMP socket of one family, shared by every check in flight.
class IcmpSocket {
 public:
  enum class Kind { Datagram, Raw };

  IcmpSocket(int family, int fd, Kind kind, uint16_t ident, uint32_t nonce)
      : family_(family), fd_(fd), kind_(kind), ident_(ident), nonce_(nonce) {}
  IcmpSocket(const IcmpSocket&) = delete;
  IcmpSocket& operator=(const IcmpSocket&) = delete;
  ~IcmpSocket() {
    watch_.reset();  // before close: the host must not poll a closed fd
    ::close(fd_);
  }

  int family() const noexcept { return family_; }
  Kind kind() const noexcept { return kind_; }
  const char* kind_name() const noexcept { return kind_ == Kind::Datagram ? "datagram" : "raw"; }
  bool v6() const noexcept { return family_ == 6; }

  // A check starts or stops using the socket. The watch exists only while
  // someone does (see the header comment). False when the host refused.
  bool attach() {
    if (users_ == 0) {
      // While idle a raw socket keeps queueing everyone's ICMP until its
      // buffer is full; a full buffer would drop the replies we are about
      // to ask for. Nothing queued now can concern a check: discard it.
      drain();
      if (!watch_.watch(fd_, GUARDANT_FD_READ, [this](uint32_t ev) { on_ready(ev); })) return false;
    }
    ++users_;
    return true;
  }
  void detach() noexcept {
    if (users_ > 0 && --users_ == 0) watch_.reset();
  }

  // Reserves a sequence number for packet `index` of `check`; nullopt when
  // all 65536 are in flight.
  std::optional<uint16_t> reserve(PingCheck* check, int index, uint32_t* counter) {
    if (pending_.size() >= 65536) return std::nullopt;
    for (;;) {
      uint16_t seq = next_seq_++;
      if (pending_.count(seq)) continue;
      *counter = next_counter_++;
      pending_.emplace(seq, Pending{check, index, *counter});
      return seq;
    }
  }
  void release(uint16_t seq) noexcept { pending_.erase(seq); }

  // The payload of a request: nonce, counter, then a filler pattern.
  std::vector<uint8_t> payload(uint32_t counter, size_t size) const {
    std::vector<uint8_t> p(size);
    uint8_t cookie[kCookieLen];
    for (int i = 0; i < 4; ++i) cookie[i] = static_cast<uint8_t>(nonce_ >> (24 - 8 * i));
    for (int i = 0; i < 4; ++i) cookie[4 + i] = static_cast<uint8_t>(counter >> (24 - 8 * i));
    for (size_t i = 0; i < size; ++i)
      p[i] = i < kCookieLen ? cookie[i] : static_cast<uint8_t>(i & 0xFF);
    return p;
  }

  // Sends one request; 0 or the errno.
  int send(const sockaddr_storage& dst, socklen_t dst_len, uint16_t seq, uint32_t counter,
           size_t size, int ttl) {
    std::vector<uint8_t> body = payload(counter, size);
    std::vector<uint8_t> pkt = icmp::build_echo_request(v6(), ident_, seq, body.data(), size);
    iovec iov{pkt.data(), pkt.size()};
    msghdr m{};
    m.msg_name = const_cast<sockaddr_storage*>(&dst);
    m.msg_namelen = dst_len;
    m.msg_iov = &iov;
    m.msg_iovlen = 1;
    // Per-request TTL through a cmsg: the socket is shared by checks with
    // different `ttl` options, so a socket option would leak between them.
    alignas(cmsghdr) unsigned char cbuf[CMSG_SPACE(sizeof(int))] = {};
    if (ttl > 0) {
      m.msg_control = cbuf;
      m.msg_controllen = sizeof cbuf;
      cmsghdr* c = CMSG_FIRSTHDR(&m);
      c->cmsg_level = v6() ? IPPROTO_IPV6 : IPPROTO_IP;
      c->cmsg_type = v6() ? IPV6_HOPLIMIT : IP_TTL;
      c->cmsg_len = CMSG_LEN(sizeof(int));
      std::memcpy(CMSG_DATA(c), &ttl, sizeof ttl);
    }
    for (;;) {
      if (::sendmsg(fd_, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
      if (errno != EINTR) return errno;
    }
  }

 private:
  struct Pending {
    PingCheck* check;
    int index;
    uint32_t counter;
  };

  void drain() noexcept;
  void on_ready(uint32_t events);
  bool read_error_queue();
  bool read_one(std::vector<uint8_t>& buf);
  void dispatch(const icmp::Message& m, const sockaddr_storage& from, int ttl, int64_t queued_ns,
                bool from_errqueue, const sock_extended_err* ee);

  const int family_;
  const int fd_;
  const Kind kind_;
  const uint16_t ident_;
  const uint32_t nonce_;
  size_t users_ = 0;
  uint16_t next_seq_ = 1;
  uint32_t next_counter_ = 1;
  std::unordered_map<uint16_t, Pending> pending_;
  guardant::FdWatch watch_{nullptr};
};

// Why a socket of a family could not be opened.
struct OpenFailure {
  enum class Kind { Permission, Unsupported, Resources } kind;
  std::string text;
};

// Plugin-wide state: the sockets, created lazily, gone at shutdown.
class Pinger {
 public:
  Pinger() {
    std::random_device rd;
    ident_ = static_cast<uint16_t>(rd());
    nonce_ = static_cast<uint32_t>(rd());
  }

  // The socket of `family` (4 or 6), opening it on first use. On failure
  // nothing is cached, so a sysctl or capability fixed later takes effect
  // at the next check.
  IcmpSocket* socket(int family, OpenFailure* failure) {
    auto& slot = family == 6 ? v6_ : v4_;
    if (slot) return slot.get();
    const int domain = family == 6 ? AF_INET6 : AF_INET;
    const int proto = family == 6 ? int{IPPROTO_ICMPV6} : int{IPPROTO_ICMP};
    int dgram_errno = 0, raw_errno = 0;
    int fd = ::socket(domain, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
    IcmpSocket::Kind kind = IcmpSocket::Kind::Datagram;
    if (fd < 0) {
      dgram_errno = errno;
      if (icmp::is_permission_errno(dgram_errno)) {
        fd = ::socket(domain, SOCK_RAW | SOCK_NONBLOCK | SOCK_CLOEXEC, proto);
        kind = IcmpSocket::Kind::Raw;
        if (fd < 0) raw_errno = errno;
      }
    }
    if (fd < 0) {
      const int e = raw_errno ? raw_errno : dgram_errno;
      if (icmp::is_permission_errno(dgram_errno) && icmp::is_permission_errno(raw_errno)) {
        *failure = {
            OpenFailure::Kind::Permission,
            icmp::permission_message(family, dgram_errno, raw_errno, read_ping_group_range(),
                                     static_cast<long>(::getegid()))};
      } else if (e == EAFNOSUPPORT) {
        *failure = {OpenFailure::Kind::Unsupported,
                    std::string("IPv") + (family == 6 ? "6" : "4") +
                        " is not available on this machine (socket: " + std::strerror(e) + ")"};
      } else {
        *failure = {OpenFailure::Kind::Resources,
                    std::string("cannot open an ICMP socket: ") + std::strerror(e)};
      }
      return nullptr;
    }
    configure(fd, family, kind);
    if (kind == IcmpSocket::Kind::Raw)
      Host::log(LogLevel::Info, std::string("ICMP") + (family == 6 ? "v6" : "") +
                                    " datagram sockets not permitted (" +
                                    std::strerror(dgram_errno) +
                                    ", see net.ipv4.ping_group_range); using a raw socket");
    slot = std::make_unique<IcmpSocket>(family, fd, kind, ident_, nonce_);
    return slot.get();
  }

 private:
  // Best effort: without these the probe still works, minus reply TTLs and
  // ICMP error reports, so failures are not fatal.
  static void configure(int fd, int family, IcmpSocket::Kind kind) {
    const int on = 1;
    // Room for the replies of many checks at once, large payloads included
    // (the default holds three 64 KB replies). Capped by net.core.rmem_max.
    const int rcvbuf = 1 << 20;
    ::setsockopt(fd, SOL_SOCKET, SO_RCVBUF, &rcvbuf, sizeof rcvbuf);
    ::setsockopt(fd, SOL_SOCKET, SO_TIMESTAMPNS, &on, sizeof on);
    if (family == 6) {
      ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVHOPLIMIT, &on, sizeof on);
      if (kind == IcmpSocket::Kind::Datagram) {
        ::setsockopt(fd, IPPROTO_IPV6, IPV6_RECVERR, &on, sizeof on);
      } else {
        // A raw ICMPv6 socket sees every ICMPv6 message of the machine
        // (neighbour discovery included); keep only what concerns echoes.
        icmp6_filter f;
        ICMP6_FILTER_SETBLOCKALL(&f);
        ICMP6_FILTER_SETPASS(icmp::kV6EchoReply, &f);
        ICMP6_FILTER_SETPASS(icmp::kV6DestUnreachable, &f);
        ICMP6_FILTER_SETPASS(icmp::kV6PacketTooBig, &f);
        ICMP6_FILTER_SETPASS(icmp::kV6TimeExceeded, &f);
        ::setsockopt(fd, IPPROTO_ICMPV6, ICMP6_FILTER, &f, sizeof f);
      }
    } else {
      ::setsockopt(fd, IPPROTO_IP, IP_RECVTTL, &on, sizeof on);
      if (kind == IcmpSocket::Kind::Datagram) {
        ::setsockopt(fd, IPPROTO_IP, IP_RECVERR, &on, sizeof on);
      } else {
        // Linux's ICMP_FILTER (linux/icmp.h, which clashes with netinet
        // headers): a bit set blocks that type. Keep replies and errors.
        constexpr int kIcmpFilter = 1;
        uint32_t blocked = ~((1u << icmp::kV4EchoReply) | (1u << icmp::kV4DestUnreachable) |
                             (1u << icmp::kV4TimeExceeded));
        ::setsockopt(fd, SOL_RAW, kIcmpFilter, &blocked, sizeof blocked);
      }
    }
  }

  uint16_t ident_ = 0;
  uint32_t nonce_ = 0;
  std::unique_ptr<IcmpSocket> v4_, v6_;
};

// A plain pointer, not a static object: if the process exits without
// shutting the plugin down (checks still in flight), no destructor may run
// at exit and call into a host that is already gone.
Pinger*& pinger_slot() {
  static Pinger* p = nullptr;
  return p;
}

Pinger& pinger() {
  auto& p = pinger_slot();
  if (!p) p = new Pinger();
  return *p;
}

// Loop thread; the host calls it only when no check, timer or watch is
// outstanding, so no check still points at a socket.
void on_shutdown() {
  delete pinger_slot();
  pinger_slot() = nullptr;
}

// ------------------------------------------------------------------------
// One check
// ------------------------------------------------------------------------

class PingCheck final : public Check {
 public:
  explicit PingCheck(Request request)
      : Check(std::move(request)),
        target_(parse_target(this->request().target)),
        settings_(parse_options(this->request().config_json)) {
    if (target_.literal_family && settings_.family != GUARDANT_FAMILY_ANY &&
        target_.literal_family != settings_.family)
      throw ConfigError("target '" + this->request().target + "' is an IPv" +
                        std::to_string(target_.literal_family) +
                        " address but option 'ipFamily' is \"" + settings_.family_name + "\"");
  }
  ~PingCheck() override { release(); }

  void start() override {
    start_ns_ = Host::now_ns();
    end_ns_ = start_ns_ + budget_ns(start_ns_);
    if (end_ns_ <= start_ns_) {
      finish_down(GUARDANT_REASON_TIMEOUT, "", "no time left before the deadline to start");
      return;
    }
    phase_ = Phase::Resolve;
    // Bounds the lookup: if it has not answered by then, dns_timeout.
    if (!timer_.start(end_ns_ - start_ns_, [this] { on_timer(); })) {
      finish(Result::inconclusive("the host refused a timer"));
      return;
    }
    if (!resolve_.start(target_.host, settings_.family,
                        [this](const guardant::Resolution& r) { on_resolved(r); }))
      finish(Result::inconclusive("the host refused to resolve '" + target_.host + "'"));
  }

  void on_cancel() override {
    phase_ = Phase::Done;
    release();
    complete(Result::inconclusive("cancelled by the host"));
  }

  // From the socket: the reply to packet `index` was read at `now` after
  // waiting `queued_ns` in the socket buffer.
  void on_reply(int index, int64_t now, int64_t queued_ns, int ttl) {
    Packet& p = packets_[static_cast<size_t>(index)];
    if (p.state != PacketState::InFlight) return;
    p.state = PacketState::Replied;
    p.rtt_ns = now - p.sent_ns;
    // The correction mixes in the wall clock, which may step: use it only
    // when it is plausible.
    if (queued_ns > 0 && queued_ns < p.rtt_ns) p.rtt_ns -= queued_ns;
    if (ttl >= 0) reply_ttl_ = ttl;
    if (all_done()) finish_ping();
  }

  // From the socket: an ICMP error (from `who`) answered packet `index`.
  void on_icmp_error(int index, const std::string& text, const std::string& who) {
    Packet& p = packets_[static_cast<size_t>(index)];
    if (p.state != PacketState::InFlight) return;
    p.state = PacketState::IcmpError;
    if (first_error_.empty())
      first_error_ =
          address_.text + ": " + text + (who.empty() ? "" : " (reported by " + who + ")");
    if (all_done()) finish_ping();
  }

  const sockaddr_storage& destination() const noexcept { return dst_; }

 private:
  enum class Phase { Idle, Resolve, Ping, Done };
  enum class PacketState {
    NotSent,
    InFlight,
    Replied,
    Lost,         // no reply within packetTimeout
    CutShort,     // still waiting when the check's time ran out
    SendError,    // the network stack refused it (errno)
    IcmpError,    // answered by an ICMP error
    WorkerError,  // never left: out of buffers or sequence numbers
  };
  struct Packet {
    PacketState state = PacketState::NotSent;
    uint16_t seq = 0;
    int64_t sent_ns = 0;
    int64_t rtt_ns = 0;
    int err = 0;
  };

  // The SDK's budget: min(timeout option, deadline minus a margin).
  int64_t budget_ns(int64_t now) const {
    return guardant::check_budget_ns(request(), settings_.timeout_ms, now, kDefaultTimeoutNs);
  }

  void on_resolved(const guardant::Resolution& r) {
    timer_.cancel();
    const int64_t now = Host::now_ns();
    resolve_ms_ = ns_to_ms(now - start_ns_);
    if (!r.ok) {
      std::string reason = r.error_reason.empty() ? "dns_error" : r.error_reason;
      std::string detail =
          r.error_detail.empty() ? "cannot resolve '" + target_.host + "'" : r.error_detail;
      finish_down(reason, "resolve", detail);
      return;
    }
    // The first address of the wanted family whose socket can be opened; a
    // family this machine lacks altogether (EAFNOSUPPORT) passes to the next.
    IcmpSocket* sock = nullptr;
    std::optional<OpenFailure> failure;
    for (const auto& a : r.addresses) {
      if (settings_.family != GUARDANT_FAMILY_ANY && a.family != settings_.family) continue;
      OpenFailure f{};
      sock = pinger().socket(a.family, &f);
      if (sock) {
        address_ = a;
        break;
      }
      failure = f;
      if (f.kind != OpenFailure::Kind::Unsupported) break;
    }
    if (!sock && !failure) {
      finish_down(GUARDANT_REASON_DNS_NXDOMAIN, "resolve",
                  "no " +
                      std::string(settings_.family == GUARDANT_FAMILY_IPV4 ? "IPv4 " : "IPv6 ") +
                      "address for '" + target_.host + "'");
      return;
    }
    if (!sock) {
      if (failure->kind == OpenFailure::Kind::Unsupported)
        finish_down(GUARDANT_REASON_NETWORK_UNREACHABLE, "send", failure->text);
      else
        finish(Result::inconclusive(failure->text));
      return;
    }
    dst_ = sockaddr_storage{};
    dst_len_ = static_cast<socklen_t>(std::min(address_.sockaddr.size(), sizeof dst_));
    std::memcpy(&dst_, address_.sockaddr.data(), dst_len_);
    // A raw IPv6 socket takes the port field as the protocol: 0 or 58 only.
    if (dst_.ss_family == AF_INET6)
      reinterpret_cast<sockaddr_in6*>(&dst_)->sin6_port = 0;
    else
      reinterpret_cast<sockaddr_in*>(&dst_)->sin_port = 0;
    if (!sock->attach()) {
      finish(Result::inconclusive("the host refused to watch the ICMP socket"));
      return;
    }
    sock_ = sock;
    phase_ = Phase::Ping;
    ping_start_ns_ = now;
    packets_.assign(static_cast<size_t>(settings_.packets), Packet{});
    on_timer();  // sends the first request and arms the timer
  }

  int64_t send_time(size_t i) const {
    return ping_start_ns_ +
           static_cast<int64_t>(std::llround(static_cast<double>(i) * settings_.interval_ms *
                                             static_cast<double>(kNsPerMs)));
  }
  int64_t packet_timeout_ns() const {
    return static_cast<int64_t>(std::llround(settings_.packet_timeout_ms * kNsPerMs));
  }

  // The one timer of a check: resolve timeout, then every send time and
  // per-request deadline, whichever comes first.
  void on_timer() {
    if (phase_ == Phase::Resolve) {
      resolve_.cancel();
      finish_down(GUARDANT_REASON_DNS_TIMEOUT, "resolve",
                  "no answer resolving '" + target_.host + "' within " +
                      format_ms(ns_to_ms(Host::now_ns() - start_ns_)) + " ms");
      return;
    }
    if (phase_ != Phase::Ping) return;
    const int64_t now = Host::now_ns();
    const int64_t timeout_ns = packet_timeout_ns();
    for (auto& p : packets_)
      if (p.state == PacketState::InFlight && now - p.sent_ns >= timeout_ns) {
        p.state = PacketState::Lost;
        sock_->release(p.seq);
      }
    if (now >= end_ns_) {
      for (auto& p : packets_)
        if (p.state == PacketState::InFlight) {
          p.state = PacketState::CutShort;
          sock_->release(p.seq);
        }
      finish_ping();
      return;
    }
    while (next_send_ < packets_.size() && send_time(next_send_) <= now) send(next_send_++);
    if (all_done()) {
      finish_ping();
      return;
    }
    int64_t next = end_ns_;
    if (next_send_ < packets_.size()) next = std::min(next, send_time(next_send_));
    for (const auto& p : packets_)
      if (p.state == PacketState::InFlight) next = std::min(next, p.sent_ns + timeout_ns);
    if (!timer_.start(std::max<int64_t>(0, next - now), [this] { on_timer(); }))
      finish(Result::inconclusive("the host refused a timer"));
  }

  void send(size_t index) {
    Packet& p = packets_[index];
    uint32_t counter = 0;
    auto seq = sock_->reserve(this, static_cast<int>(index), &counter);
    if (!seq) {
      p.state = PacketState::WorkerError;
      p.err = ENOBUFS;
      return;
    }
    p.seq = *seq;
    p.sent_ns = Host::now_ns();
    int e = sock_->send(dst_, dst_len_, p.seq, counter, settings_.packet_size, settings_.ttl);
    if (e == 0) {
      p.state = PacketState::InFlight;
      return;
    }
    sock_->release(p.seq);
    p.err = e;
    p.state = is_worker_errno(e) ? PacketState::WorkerError : PacketState::SendError;
  }

  bool all_done() const {
    if (next_send_ < packets_.size()) return false;
    for (const auto& p : packets_)
      if (p.state == PacketState::InFlight) return false;
    return true;
  }

  // Every request is answered, lost or refused, or time ran out: judge.
  void finish_ping() {
    const int64_t now = Host::now_ns();
    size_t sent = 0, received = 0, errors = 0, cut_short = 0, worker_errors = 0, not_sent = 0;
    int first_send_errno = 0, first_worker_errno = 0;
    std::vector<double> rtts;
    for (const auto& p : packets_) {
      switch (p.state) {
        case PacketState::NotSent:
          ++not_sent;
          continue;
        case PacketState::WorkerError:
          ++worker_errors;
          if (!first_worker_errno) first_worker_errno = p.err;
          continue;  // never left the machine: not the target's loss
        case PacketState::Replied:
          rtts.push_back(ns_to_ms(p.rtt_ns));
          ++received;
          break;
        case PacketState::SendError:
          ++errors;
          if (!first_send_errno) first_send_errno = p.err;
          break;
        case PacketState::IcmpError:
          ++errors;
          break;
        case PacketState::CutShort:
          ++cut_short;
          break;
        default:
          break;
      }
      ++sent;
    }
    stats_.sent = sent;
    stats_.received = received;
    stats_.errors = errors;
    stats_.loss =
        sent ? 100.0 * static_cast<double>(sent - received) / static_cast<double>(sent) : 0.0;
    if (!rtts.empty()) {
      double sum = 0, sq = 0;
      stats_.min = rtts.front();
      stats_.max = rtts.front();
      for (double v : rtts) {
        sum += v;
        stats_.min = std::min(stats_.min, v);
        stats_.max = std::max(stats_.max, v);
      }
      stats_.avg = sum / static_cast<double>(rtts.size());
      for (double v : rtts) sq += (v - stats_.avg) * (v - stats_.avg);
      stats_.stddev = std::sqrt(sq / static_cast<double>(rtts.size()));  // as ping's mdev
    }
    const std::string who = address_.text;
    std::string shortfall;
    if (not_sent)
      shortfall = " (" + std::to_string(not_sent) + " of " + std::to_string(packets_.size()) +
                  " requests not sent: the check's time ran out)";

    if (received == 0) {
      if (sent == 0 && worker_errors) {
        finish(Result::inconclusive("cannot send ICMP echo requests: " +
                                    std::string(std::strerror(first_worker_errno))));
        return;
      }
      if (sent == 0) {
        finish_stats(Result::down(GUARDANT_REASON_TIMEOUT, "send",
                                  "no time left to send an echo request to " + who,
                                  ns_to_ms(now - start_ns_)),
                     now);
        return;
      }
      if (first_send_errno) {
        finish_stats(Result::down(reason_for_send_errno(first_send_errno), "send",
                                  "cannot send to " + who + ": " + std::strerror(first_send_errno) +
                                      shortfall,
                                  ns_to_ms(now - start_ns_)),
                     now);
        return;
      }
      if (!first_error_.empty()) {
        finish_stats(Result::down(GUARDANT_REASON_NETWORK_UNREACHABLE, "wait",
                                  first_error_ + shortfall, ns_to_ms(now - start_ns_)),
                     now);
        return;
      }
      if (cut_short) {
        finish_stats(Result::down(GUARDANT_REASON_TIMEOUT, "wait",
                                  "no reply from " + who + " within the check's time limit of " +
                                      format_ms(ns_to_ms(end_ns_ - start_ns_)) + " ms" + shortfall,
                                  ns_to_ms(now - start_ns_)),
                     now);
        return;
      }
      finish_stats(
          Result::down("packet_loss", "wait",
                       "no reply from " + who + " to " + std::to_string(sent) + " echo request" +
                           (sent == 1 ? "" : "s") + " (100% loss)" + shortfall,
                       ns_to_ms(now - start_ns_)),
          now);
      return;
    }

    const std::string summary =
        std::to_string(received) + "/" + std::to_string(sent) + " replies from " + who + ", " +
        format_percent(stats_.loss) + "% loss, rtt min/avg/max " + format_ms(stats_.min) + "/" +
        format_ms(stats_.avg) + "/" + format_ms(stats_.max) + " ms" + shortfall;
    Result r = Result::up(stats_.avg, summary);
    auto cross = [&](Status status, const char* reason, const std::string& what) {
      r.status = status;
      r.message = what + " (" + summary + ")";
      r.failure = guardant::Failure{reason, "wait", r.message};
    };
    if (stats_.loss > settings_.down_loss)
      cross(Status::Down, "packet_loss",
            "loss " + format_percent(stats_.loss) + "% is above downLossPercent " +
                format_percent(settings_.down_loss));
    else if (settings_.down_rtt_ms && stats_.avg > *settings_.down_rtt_ms)
      cross(Status::Down, "latency",
            "average RTT " + format_ms(stats_.avg) + " ms is above downRttMs " +
                format_percent(*settings_.down_rtt_ms));
    else if (stats_.loss > settings_.degraded_loss)
      cross(Status::Degraded, "packet_loss",
            "loss " + format_percent(stats_.loss) + "% is above degradedLossPercent " +
                format_percent(settings_.degraded_loss));
    else if (settings_.degraded_rtt_ms && stats_.avg > *settings_.degraded_rtt_ms)
      cross(Status::Degraded, "latency",
            "average RTT " + format_ms(stats_.avg) + " ms is above degradedRttMs " +
                format_percent(*settings_.degraded_rtt_ms));
    finish_stats(std::move(r), now);
  }

  void finish_stats(Result r, int64_t now) {
    r.details_json = details();
    guardant::Timings t;
    t.resolve_ms = resolve_ms_;
    t.total_ms = ns_to_ms(now - start_ns_);
    r.timings = t;
    finish(std::move(r));
  }

  std::string details() const {
    guardant::json::JsonWriter w;
    w.field("ip", address_.text).field("family", address_.family);
    w.field("sent", stats_.sent).field("received", stats_.received);
    w.field("lossPercent", round_to(stats_.loss, 2));
    auto rtt = [&](double v) {
      return stats_.received ? std::optional<double>(round_to(v, 3)) : std::nullopt;
    };
    w.field("rttMin", rtt(stats_.min)).field("rttAvg", rtt(stats_.avg));
    w.field("rttMax", rtt(stats_.max)).field("rttStddev", rtt(stats_.stddev));
    w.field("replyTtl", reply_ttl_ >= 0 ? std::optional<int>(reply_ttl_) : std::nullopt);
    w.field("errors", stats_.errors).field("packetSize", settings_.packet_size);
    w.field("socket", sock_ ? sock_->kind_name() : "none");
    return w.str();
  }

  void finish_down(const std::string& reason, const std::string& phase, const std::string& detail) {
    const int64_t now = Host::now_ns();
    Result r = Result::down(reason, phase, detail, ns_to_ms(now - start_ns_));
    guardant::Timings t;
    t.resolve_ms = phase_ == Phase::Resolve ? ns_to_ms(now - start_ns_) : resolve_ms_;
    t.total_ms = ns_to_ms(now - start_ns_);
    r.timings = t;
    finish(std::move(r));
  }

  void finish(Result r) {
    phase_ = Phase::Done;
    release();
    complete(r);
  }

  // Hands back everything this check holds: timer, lookup, and its
  // sequence numbers and share of the socket.
  void release() noexcept {
    timer_.cancel();
    resolve_.cancel();
    if (sock_) {
      for (auto& p : packets_)
        if (p.state == PacketState::InFlight) {
          sock_->release(p.seq);
          p.state = PacketState::CutShort;
        }
      sock_->detach();
      sock_ = nullptr;
    }
  }

  struct Stats {
    size_t sent = 0, received = 0, errors = 0;
    double loss = 0, min = 0, avg = 0, max = 0, stddev = 0;
  };

  const Target target_;
  const Settings settings_;
  Phase phase_ = Phase::Idle;
  int64_t start_ns_ = 0;
  int64_t end_ns_ = 0;
  int64_t ping_start_ns_ = 0;
  double resolve_ms_ = -1;
  guardant::Address address_;
  sockaddr_storage dst_{};
  socklen_t dst_len_ = 0;
  IcmpSocket* sock_ = nullptr;
  std::vector<Packet> packets_;
  size_t next_send_ = 0;
  int reply_ttl_ = -1;
  std::string first_error_;
  Stats stats_;
  guardant::Timer timer_{this};
  guardant::Resolve resolve_{this};
};

// ------------------------------------------------------------------------
// Receiving
// ------------------------------------------------------------------------

bool same_address(const sockaddr_storage& a, const uint8_t* bytes, size_t len) {
  if (a.ss_family == AF_INET && len == 4)
    return std::memcmp(&reinterpret_cast<const sockaddr_in*>(&a)->sin_addr, bytes, 4) == 0;
  if (a.ss_family == AF_INET6 && len == 16)
    return std::memcmp(&reinterpret_cast<const sockaddr_in6*>(&a)->sin6_addr, bytes, 16) == 0;
  return false;
}

bool same_address(const sockaddr_storage& a, const sockaddr_storage& b) {
  if (a.ss_family != b.ss_family) return false;
  if (a.ss_family == AF_INET)
    return same_address(
        a, reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&b)->sin_addr),
        4);
  return same_address(
      a, reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in6*>(&b)->sin6_addr),
      16);
}

std::string address_text(const void* addr, int family) {
  char buf[INET6_ADDRSTRLEN] = {0};
  if (!inet_ntop(family == 6 ? AF_INET6 : AF_INET, addr, buf, sizeof buf)) return {};
  return buf;
}

std::string address_text(const sockaddr_storage& s) {
  if (s.ss_family == AF_INET)
    return address_text(&reinterpret_cast<const sockaddr_in*>(&s)->sin_addr, 4);
  if (s.ss_family == AF_INET6)
    return address_text(&reinterpret_cast<const sockaddr_in6*>(&s)->sin6_addr, 6);
  return {};
}

std::vector<uint8_t>& receive_buffer() {
  // One for the plugin (the loop is single-threaded): big enough for the
  // largest reply, allocated once.
  static std::vector<uint8_t> buf(65536 + 128);
  return buf;
}

void IcmpSocket::drain() noexcept {
  auto& buf = receive_buffer();
  for (int i = 0; i < 4 * kMaxReadsPerWake; ++i)
    if (::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT) < 0 && errno != EINTR &&
        errno != EHOSTUNREACH && errno != ENETUNREACH)
      break;
  for (int i = 0; i < kMaxReadsPerWake; ++i)
    if (::recv(fd_, buf.data(), buf.size(), MSG_DONTWAIT | MSG_ERRQUEUE) < 0 && errno != EINTR)
      break;
}

void IcmpSocket::on_ready(uint32_t events) {
  // Error-queue entries make the fd report an error until read, so drain
  // them first (datagram sockets with IP_RECVERR only), then the replies.
  if ((events & GUARDANT_FD_ERROR) || kind_ == Kind::Datagram)
    for (int i = 0; i < kMaxReadsPerWake && read_error_queue(); ++i) {
    }
  auto& buf = receive_buffer();
  for (int i = 0; i < kMaxReadsPerWake && users_ > 0 && read_one(buf); ++i) {
  }
}

// One error-queue message; false when there is none.
bool IcmpSocket::read_error_queue() {
  auto& buf = receive_buffer();
  sockaddr_storage from{};
  alignas(cmsghdr) unsigned char control[512];
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_name = &from;
  m.msg_namelen = sizeof from;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd_, &m, MSG_ERRQUEUE | MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EINTR) return true;
    if (errno != EAGAIN && errno != EWOULDBLOCK) {
      // Clears a pending socket error so the level-triggered watch calms.
      int err = 0;
      socklen_t len = sizeof err;
      ::getsockopt(fd_, SOL_SOCKET, SO_ERROR, &err, &len);
    }
    return false;
  }
  const sock_extended_err* ee = nullptr;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
    if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_RECVERR) ||
        (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_RECVERR))
      ee = reinterpret_cast<const sock_extended_err*>(CMSG_DATA(c));
  if (!ee) return true;
  icmp::Message msg = icmp::parse_quoted_request(v6(), buf.data(), static_cast<size_t>(n));
  dispatch(msg, from, -1, 0, true, ee);
  return true;
}

// One reply (or other message); false when there is none left.
bool IcmpSocket::read_one(std::vector<uint8_t>& buf) {
  sockaddr_storage from{};
  alignas(cmsghdr) unsigned char control[256];
  iovec iov{buf.data(), buf.size()};
  msghdr m{};
  m.msg_name = &from;
  m.msg_namelen = sizeof from;
  m.msg_iov = &iov;
  m.msg_iovlen = 1;
  m.msg_control = control;
  m.msg_controllen = sizeof control;
  ssize_t n = ::recvmsg(fd_, &m, MSG_DONTWAIT);
  if (n < 0) {
    if (errno == EINTR) return true;
    // A datagram socket with IP_RECVERR also returns the error of an ICMP
    // error once through recvmsg; the error queue tells us which request.
    if (errno == EHOSTUNREACH || errno == ENETUNREACH || errno == ECONNREFUSED ||
        errno == EMSGSIZE || errno == EHOSTDOWN || errno == ENETDOWN || errno == EPROTO)
      return true;
    return false;
  }
  int ttl = -1;
  int64_t queued_ns = 0;
  for (cmsghdr* c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c)) {
    if ((c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_TTL) ||
        (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_HOPLIMIT)) {
      int v = 0;
      std::memcpy(&v, CMSG_DATA(c), sizeof v);
      ttl = v;
    } else if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_TIMESTAMPNS) {
      // The kernel stamps arrival on the wall clock; read the wall clock
      // now to learn how long the reply sat in the buffer.
      timespec rx{}, now{};
      std::memcpy(&rx, CMSG_DATA(c), sizeof rx);
      ::clock_gettime(CLOCK_REALTIME, &now);
      queued_ns = (static_cast<int64_t>(now.tv_sec) - rx.tv_sec) * 1'000'000'000 +
                  (now.tv_nsec - rx.tv_nsec);
    }
  }
  const size_t len = static_cast<size_t>(n);
  icmp::Message msg =
      v6() ? icmp::parse_v6(buf.data(), len) : icmp::parse_v4(buf.data(), len, kind_ == Kind::Raw);
  if (ttl < 0) ttl = msg.ttl;
  dispatch(msg, from, ttl, queued_ns, false, nullptr);
  return true;
}

void IcmpSocket::dispatch(const icmp::Message& m, const sockaddr_storage& from, int ttl,
                          int64_t queued_ns, bool from_errqueue, const sock_extended_err* ee) {
  if (m.kind == icmp::Message::Kind::Other) return;
  // The kernel demultiplexes datagram sockets by identifier already; a raw
  // socket sees everyone's ICMP, so the identifier must be ours.
  if (kind_ == Kind::Raw && m.id != ident_) return;
  auto it = pending_.find(m.seq);
  if (it == pending_.end()) return;  // late, or someone else's
  const Pending p = it->second;
  // The payload starts with the cookie we sent; whatever of it came back
  // must match (an ICMP error may quote fewer bytes).
  uint8_t cookie[kCookieLen];
  std::vector<uint8_t> expected = payload(p.counter, kCookieLen);
  std::memcpy(cookie, expected.data(), kCookieLen);
  const size_t n = std::min(m.payload_len, kCookieLen);
  if (n && std::memcmp(m.payload, cookie, n) != 0) return;
  const sockaddr_storage& dst = p.check->destination();
  if (m.kind == icmp::Message::Kind::EchoReply) {
    if (!same_address(dst, from)) return;
    pending_.erase(it);
    p.check->on_reply(p.index, Host::now_ns(), queued_ns, ttl);
    return;
  }
  // An ICMP error about one of our requests.
  std::string text, who;
  if (from_errqueue) {
    // msg_name is the request's destination; the offender follows ee.
    if (!same_address(dst, from)) return;
    if (ee->ee_origin == SO_EE_ORIGIN_ICMP || ee->ee_origin == SO_EE_ORIGIN_ICMP6) {
      text = icmp::error_text(v6(), ee->ee_type, ee->ee_code);
    } else {
      text = std::strerror(static_cast<int>(ee->ee_errno));
    }
    const sockaddr* off = SO_EE_OFFENDER(ee);
    if (off->sa_family == AF_INET)
      who = address_text(&reinterpret_cast<const sockaddr_in*>(off)->sin_addr, 4);
    else if (off->sa_family == AF_INET6)
      who = address_text(&reinterpret_cast<const sockaddr_in6*>(off)->sin6_addr, 6);
  } else {
    if (!same_address(dst, m.quoted_dst, m.quoted_dst_len)) return;
    text = icmp::error_text(v6(), m.type, m.code);
    who = address_text(from);
  }
  pending_.erase(it);
  p.check->on_icmp_error(p.index, text, who);
}

}  // namespace

GUARDANT_PLUGIN((guardant::PluginInfo{"guardant-ping", GUARDANT_PLUGIN_VERSION,
                                      "ICMP echo (ping) probe", nullptr, &on_shutdown}),
                guardant::probe_type<PingCheck>("ping", "ICMP echo to a host",
                                                GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6 |
                                                    GUARDANT_CAP_NET_RAW,
                                                kOptionsSchema))
