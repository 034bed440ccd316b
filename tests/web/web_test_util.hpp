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

#include "support/loopback.hpp"
#include "support/netns_dns.hpp"
#include "support/process.hpp"

namespace guardant::webtest {

using guardant::test::add_loopback_alias;
using guardant::test::bring_loopback_up;
using guardant::test::FakeDns;
using guardant::test::Fd;
using guardant::test::run_in_new_netns;
using guardant::test::system_nameservers;

using guardant::test::closed_port;
using guardant::test::fill_backlog;
using guardant::test::FullBacklog;
using guardant::test::Listener;

// A listener on 127.0.0.1 with `backlog` (none when < 0). A listening socket
// nobody accepts from still completes TCP handshakes (the kernel queues
// them): a server that connects but never speaks.
inline Listener open_listener(int backlog) {
  return guardant::test::open_listener(AF_INET, "127.0.0.1", backlog);
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
