// ICMP echo wire format and the texts built from it, for the `ping` probe.
//
// Pure functions over bytes (no sockets, no host): they are compiled into
// the probe and, because the probe's symbols are hidden, included by the
// tests directly to check them against hand-made packets.
//
// What a receive hands us depends on the socket kind and family:
//   IPv4 raw       IPv4 header + ICMP message
//   IPv4 datagram  ICMP message (the kernel strips the IP header)
//   IPv6 raw/dgram ICMPv6 message (IPv6 sockets never see the IP header)
// and an ICMP error (destination unreachable, time exceeded) quotes the
// offending packet: its IP header, then at least the 8-byte echo header.
#ifndef GUARDANT_PLUGINS_PING_ICMP_HPP
#define GUARDANT_PLUGINS_PING_ICMP_HPP

#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

namespace guardant::ping {

constexpr size_t kEchoHeaderLen = 8;
constexpr size_t kIpv6HeaderLen = 40;
constexpr uint8_t kIcmpProto = 1;
constexpr uint8_t kIcmpv6Proto = 58;

// Message types (RFC 792, RFC 4443).
constexpr uint8_t kV4EchoReply = 0;
constexpr uint8_t kV4DestUnreachable = 3;
constexpr uint8_t kV4EchoRequest = 8;
constexpr uint8_t kV4TimeExceeded = 11;
constexpr uint8_t kV6DestUnreachable = 1;
constexpr uint8_t kV6PacketTooBig = 2;
constexpr uint8_t kV6TimeExceeded = 3;
constexpr uint8_t kV6EchoRequest = 128;
constexpr uint8_t kV6EchoReply = 129;

inline uint16_t read16(const uint8_t* p) noexcept {
  return static_cast<uint16_t>((p[0] << 8) | p[1]);
}
inline void write16(uint8_t* p, uint16_t v) noexcept {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v & 0xFF);
}

// The Internet checksum (RFC 1071) of `len` bytes, ready to store
// big-endian. Summing a message that carries its checksum gives 0.
inline uint16_t checksum(const uint8_t* data, size_t len) noexcept {
  uint32_t sum = 0;
  size_t i = 0;
  for (; i + 1 < len; i += 2) sum += read16(data + i);
  if (i < len) sum += static_cast<uint32_t>(data[i]) << 8;
  while (sum >> 16) sum = (sum & 0xFFFF) + (sum >> 16);
  return static_cast<uint16_t>(~sum & 0xFFFF);
}

// An echo request: 8-byte header + payload. The IPv4 checksum is filled in
// because raw IPv4 sockets send what we give them; for ICMPv6 the kernel
// computes it over the pseudo-header we cannot see, so it stays 0.
inline std::vector<uint8_t> build_echo_request(bool v6, uint16_t id, uint16_t seq,
                                               const uint8_t* payload, size_t payload_len) {
  std::vector<uint8_t> out(kEchoHeaderLen + payload_len, 0);
  out[0] = v6 ? kV6EchoRequest : kV4EchoRequest;
  write16(&out[4], id);
  write16(&out[6], seq);
  if (payload_len) std::memcpy(&out[kEchoHeaderLen], payload, payload_len);
  if (!v6) write16(&out[2], checksum(out.data(), out.size()));
  return out;
}

// What one received message is, as far as a pinger cares.
struct Message {
  enum class Kind {
    Other,      // not for us: another type, truncated, or unparsable
    EchoReply,  // an answer to an echo request
    Error,      // an ICMP error quoting one of our echo requests
  };
  Kind kind = Kind::Other;
  uint8_t type = 0, code = 0;  // of the message itself (the error's type for errors)
  uint16_t id = 0, seq = 0;    // of the echo (quoted one for errors)
  // Echo payload (for errors: whatever of the quoted request's payload came back).
  const uint8_t* payload = nullptr;
  size_t payload_len = 0;
  int ttl = -1;  // IPv4 raw only: TTL from the IP header
  // Errors only: the quoted request's destination (4 or 16 bytes).
  uint8_t quoted_dst[16] = {};
  size_t quoted_dst_len = 0;
};

namespace detail {
// Parses an echo header + payload starting at p (n bytes) into m, for a
// message of the echo `type` wanted. False when it is not one.
inline bool parse_echo(const uint8_t* p, size_t n, uint8_t wanted, Message& m) noexcept {
  if (n < kEchoHeaderLen || p[0] != wanted || p[1] != 0) return false;
  m.id = read16(p + 4);
  m.seq = read16(p + 6);
  m.payload = p + kEchoHeaderLen;
  m.payload_len = n - kEchoHeaderLen;
  return true;
}
}  // namespace detail

// An ICMPv4 message, preceded by its IPv4 header when `with_ip_header`
// (raw sockets).
inline Message parse_v4(const uint8_t* p, size_t n, bool with_ip_header) noexcept {
  Message m;
  if (with_ip_header) {
    if (n < 20 || (p[0] >> 4) != 4) return m;
    size_t ihl = static_cast<size_t>(p[0] & 0x0F) * 4;
    if (ihl < 20 || n < ihl || p[9] != kIcmpProto) return m;
    m.ttl = p[8];
    p += ihl;
    n -= ihl;
  }
  if (n < kEchoHeaderLen) return m;
  m.type = p[0];
  m.code = p[1];
  if (m.type == kV4EchoReply) {
    if (detail::parse_echo(p, n, kV4EchoReply, m)) m.kind = Message::Kind::EchoReply;
    return m;
  }
  if (m.type != kV4DestUnreachable && m.type != kV4TimeExceeded) return m;
  // The quoted packet: IPv4 header of our request, then its echo header.
  const uint8_t* q = p + kEchoHeaderLen;
  size_t qn = n - kEchoHeaderLen;
  if (qn < 20 || (q[0] >> 4) != 4) return m;
  size_t qihl = static_cast<size_t>(q[0] & 0x0F) * 4;
  if (qihl < 20 || qn < qihl || q[9] != kIcmpProto) return m;
  std::memcpy(m.quoted_dst, q + 16, 4);
  m.quoted_dst_len = 4;
  const uint8_t type = m.type, code = m.code;
  if (!detail::parse_echo(q + qihl, qn - qihl, kV4EchoRequest, m)) return m;
  m.type = type;
  m.code = code;
  m.kind = Message::Kind::Error;
  return m;
}

// An ICMPv6 message (never with the IPv6 header in front).
inline Message parse_v6(const uint8_t* p, size_t n) noexcept {
  Message m;
  if (n < kEchoHeaderLen) return m;
  m.type = p[0];
  m.code = p[1];
  if (m.type == kV6EchoReply) {
    if (detail::parse_echo(p, n, kV6EchoReply, m)) m.kind = Message::Kind::EchoReply;
    return m;
  }
  if (m.type != kV6DestUnreachable && m.type != kV6TimeExceeded && m.type != kV6PacketTooBig)
    return m;
  // The quoted packet: our request's IPv6 header (we send no extension
  // headers, so ICMPv6 follows directly), then its echo header.
  const uint8_t* q = p + kEchoHeaderLen;
  size_t qn = n - kEchoHeaderLen;
  if (qn < kIpv6HeaderLen || (q[0] >> 4) != 6 || q[6] != kIcmpv6Proto) return m;
  std::memcpy(m.quoted_dst, q + 24, 16);
  m.quoted_dst_len = 16;
  const uint8_t type = m.type, code = m.code;
  if (!detail::parse_echo(q + kIpv6HeaderLen, qn - kIpv6HeaderLen, kV6EchoRequest, m)) return m;
  m.type = type;
  m.code = code;
  m.kind = Message::Kind::Error;
  return m;
}

// Our own echo request as the kernel hands it back in an error-queue
// message of a datagram socket (IP_RECVERR / IPV6_RECVERR): the echo header
// and payload we sent.
inline Message parse_quoted_request(bool v6, const uint8_t* p, size_t n) noexcept {
  Message m;
  if (detail::parse_echo(p, n, v6 ? kV6EchoRequest : kV4EchoRequest, m))
    m.kind = Message::Kind::Error;
  return m;
}

// "host unreachable", "TTL exceeded in transit"... for an ICMP error.
inline std::string error_text(bool v6, uint8_t type, uint8_t code) {
  if (!v6) {
    if (type == kV4TimeExceeded)
      return code == 1 ? "fragment reassembly time exceeded" : "TTL exceeded in transit";
    if (type == kV4DestUnreachable) {
      switch (code) {
        case 0:
          return "network unreachable";
        case 1:
          return "host unreachable";
        case 2:
          return "protocol unreachable";
        case 3:
          return "port unreachable";
        case 4:
          return "fragmentation needed";
        case 6:
          return "destination network unknown";
        case 7:
          return "destination host unknown";
        case 9:
        case 10:
        case 13:
          return "communication administratively prohibited";
        default:
          return "destination unreachable (code " + std::to_string(code) + ")";
      }
    }
    return "ICMP error type " + std::to_string(type) + " code " + std::to_string(code);
  }
  if (type == kV6TimeExceeded)
    return code == 1 ? "fragment reassembly time exceeded" : "hop limit exceeded in transit";
  if (type == kV6PacketTooBig) return "packet too big";
  if (type == kV6DestUnreachable) {
    switch (code) {
      case 0:
        return "no route to destination";
      case 1:
        return "communication administratively prohibited";
      case 3:
        return "address unreachable";
      case 4:
        return "port unreachable";
      case 5:
        return "source address failed ingress/egress policy";
      case 6:
        return "reject route to destination";
      default:
        return "destination unreachable (code " + std::to_string(code) + ")";
    }
  }
  return "ICMPv6 error type " + std::to_string(type) + " code " + std::to_string(code);
}

// The text of an unusable ICMP socket: which of the two ways in is closed
// and how to open one. `dgram_errno`/`raw_errno` are what socket() said for
// SOCK_DGRAM and SOCK_RAW, `range` the text of net.ipv4.ping_group_range
// ("" when unreadable) and `gid` the process's effective group.
inline std::string permission_message(int family, int dgram_errno, int raw_errno,
                                      const std::string& range, long gid) {
  const bool v6 = family == 6;
  std::string range_shown = range;
  for (auto& c : range_shown)
    if (c == '\t' || c == '\n') c = ' ';
  while (!range_shown.empty() && range_shown.back() == ' ') range_shown.pop_back();
  std::string m = std::string("cannot open an ICMP") + (v6 ? "v6" : "") + " socket: ";
  m += "unprivileged ICMP datagram sockets are not allowed (socket: " +
       std::string(std::strerror(dgram_errno)) + "; group " + std::to_string(gid) +
       " is not inside sysctl net.ipv4.ping_group_range";
  if (!range_shown.empty()) m += " = \"" + range_shown + "\"";
  m += ", which also governs ICMPv6 datagram sockets) and raw ICMP sockets need the capability "
       "CAP_NET_RAW (socket: " +
       std::string(std::strerror(raw_errno)) +
       "). Fix either: sysctl -w net.ipv4.ping_group_range=\"" + std::to_string(gid) + " " +
       std::to_string(gid) +
       "\" (persist it in /etc/sysctl.d), or give the worker CAP_NET_RAW (systemd: "
       "AmbientCapabilities=CAP_NET_RAW)";
  return m;
}

// True when socket() failing with `e` means "not allowed" rather than "not
// possible": the next kind of socket may still work.
inline bool is_permission_errno(int e) noexcept {
  return e == EACCES || e == EPERM || e == EPROTONOSUPPORT || e == ESOCKTNOSUPPORT;
}

}  // namespace guardant::ping

#endif  // GUARDANT_PLUGINS_PING_ICMP_HPP
