// Small network helpers shared by the built-in probes (header-only; not part
// of the SDK).
#pragma once

#include <arpa/inet.h>
#include <guardant/probe.h>
#include <netinet/in.h>

#include <cerrno>
#include <string>

namespace guardant::probes {

// What an errno from connect() (or a send) says about the target.
inline const char* connect_reason_for_errno(long e) {
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

inline bool is_ipv4_literal(const std::string& s) {
  in_addr a{};
  return inet_pton(AF_INET, s.c_str(), &a) == 1;
}

// Accepts a zone suffix (fe80::1%eth0).
inline bool is_ipv6_literal(const std::string& s) {
  in6_addr a{};
  const std::string addr = s.substr(0, s.find('%'));
  return inet_pton(AF_INET6, addr.c_str(), &a) == 1;
}

}  // namespace guardant::probes
