// Helpers for the web probe tests: loopback sockets that refuse, hang or
// never speak TLS, an nghttpd (HTTP/2) child process, and a network
// namespace of the test's own with a fake DNS server, for the outcomes
// loopback alone cannot produce (network unreachable, NXDOMAIN, a resolver
// that never answers) without sending a packet off the machine.
#pragma once

#include <arpa/inet.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <fstream>
#include <functional>
#include <memory>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/netns_dns.hpp"
#include "support/process.hpp"

namespace guardant::webtest {

using guardant::test::FakeDns;
using guardant::test::Fd;
using guardant::test::run_in_new_netns;
using guardant::test::bring_loopback_up;
using guardant::test::add_loopback_alias;
using guardant::test::system_nameservers;

struct Listener {
  Fd fd;
  uint16_t port = 0;
  std::string error;
};

// A socket bound to 127.0.0.1 port 0; listening with `backlog` unless < 0.
// A listening socket nobody accepts from still completes TCP handshakes
// (the kernel queues them): a server that connects but never speaks.
inline Listener open_listener(int backlog) {
  Listener l;
  l.fd = Fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 ||
      (backlog >= 0 && ::listen(l.fd.get(), backlog) < 0)) {
    l.error = std::strerror(errno);
    return l;
  }
  socklen_t len = sizeof sa;
  getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  l.port = ntohs(sa.sin_port);
  return l;
}

// A loopback port nobody listens on.
inline uint16_t closed_port() {
  return open_listener(-1).port;
}

// A listener whose accept queue is full, so that a new connect stays
// pending (the kernel drops the SYN): a connect timeout on loopback.
struct FullBacklog {
  Listener listener;
  std::vector<Fd> fillers;
  std::string error;
};

inline FullBacklog fill_backlog() {
  FullBacklog b;
  b.listener = open_listener(0);
  if (!b.listener.error.empty()) {
    b.error = b.listener.error;
    return b;
  }
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(b.listener.port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  for (int i = 0; i < 32; ++i) {
    Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 &&
        errno != EINPROGRESS) {
      b.error = std::string("filler connect: ") + std::strerror(errno);
      return b;
    }
    pollfd p{s.get(), POLLOUT, 0};
    int ready = ::poll(&p, 1, 200);
    b.fillers.push_back(std::move(s));
    if (ready == 0) return b;
  }
  b.error = "the kernel completed 32 connects to a listen(fd, 0) socket that never accepts";
  return b;
}

inline bool can_connect(uint16_t port) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  sa.sin_port = htons(port);
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  return ::connect(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) == 0;
}

inline std::string find_nghttpd() {
  for (const char* p : {"/usr/sbin/nghttpd", "/usr/bin/nghttpd", "/usr/local/bin/nghttpd"})
    if (::access(p, X_OK) == 0) return p;
  return "";
}

// nghttpd (Debian package nghttp2-server) serving `docroot` on 127.0.0.1:
// HTTP/2 only, over TLS with ALPN when a key and certificate are given, else
// cleartext h2c with prior knowledge. Killed with the object.
class Nghttpd {
 public:
  Nghttpd(const std::string& docroot, const std::string& scratch, const std::string& key = "",
          const std::string& cert = "") {
    std::string bin = find_nghttpd();
    if (bin.empty()) {
      error_ = "nghttpd not found: install nghttp2-server (packaging/install-deps.sh)";
      return;
    }
    // A free port, then a retry or two in case another process took it.
    for (int attempt = 0; attempt < 3 && port_ == 0; ++attempt) {
      uint16_t port = closed_port();
      std::vector<std::string> args = {"-a", "127.0.0.1", "-d", docroot};
      if (key.empty()) args.push_back("--no-tls");
      args.push_back(std::to_string(port));
      if (!key.empty()) {
        args.push_back(key);
        args.push_back(cert);
      }
      auto p = std::make_unique<guardant::test::Process>(bin, args, scratch + "/nghttpd.out",
                                                         scratch + "/nghttpd.err");
      if (!p->started()) continue;
      if (guardant::test::wait_for(
              [&] { return can_connect(port) || p->wait(std::chrono::milliseconds(0)); },
              std::chrono::seconds(5)) &&
          can_connect(port)) {
        process_ = std::move(p);
        port_ = port;
      } else {
        error_ = "nghttpd did not start: " + p->err();
      }
    }
    if (port_) error_.clear();
  }
  const std::string& error() const { return error_; }
  uint16_t port() const { return port_; }

 private:
  std::unique_ptr<guardant::test::Process> process_;
  uint16_t port_ = 0;
  std::string error_;
};

}  // namespace guardant::webtest
