// Test support: an owned fd, a network namespace of the test's own, and a
// fake DNS server inside it. Name-resolution tests run there, so no query
// ever leaves the machine (the system resolver's addresses are put on the
// namespace's lo and answered by FakeDns).
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
#include <cstring>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/loopback.hpp"

namespace guardant::test {

// ---------------------------------------------------------------------------
// A network namespace of the test's own

// Runs `fn` on a thread that first moves into a new network namespace
// (unshare(CLONE_NEWNET) acts on the calling thread only; threads it starts
// inherit it). Returns "" when fn ran, else why the namespace could not be
// made (needs CAP_SYS_ADMIN, e.g. root).
inline std::string run_in_new_netns(const std::function<void()>& fn) {
  std::string skip;
  std::thread t([&] {
    if (::unshare(CLONE_NEWNET) != 0) {
      skip = std::string("cannot create a network namespace (needs root): ") + std::strerror(errno);
      return;
    }
    fn();
  });
  t.join();
  return skip;
}

// In the current (new) namespace: brings lo up. "" or the error.
inline std::string bring_loopback_up() {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::strncpy(ifr.ifr_name, "lo", IFNAMSIZ - 1);
  if (::ioctl(s.get(), SIOCGIFFLAGS, &ifr) < 0) return std::strerror(errno);
  ifr.ifr_flags |= IFF_UP;
  if (::ioctl(s.get(), SIOCSIFFLAGS, &ifr) < 0) return std::strerror(errno);
  return "";
}

// In the current (new) namespace: puts `ipv4` on lo as an alias (/32).
inline std::string add_loopback_alias(const std::string& ipv4, int n) {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  ifreq ifr{};
  std::snprintf(ifr.ifr_name, IFNAMSIZ, "lo:%d", n);
  auto* sin = reinterpret_cast<sockaddr_in*>(&ifr.ifr_addr);
  sin->sin_family = AF_INET;
  if (inet_pton(AF_INET, ipv4.c_str(), &sin->sin_addr) != 1) return "bad address " + ipv4;
  if (::ioctl(s.get(), SIOCSIFADDR, &ifr) < 0) return std::strerror(errno);
  inet_pton(AF_INET, "255.255.255.255", &sin->sin_addr);
  ::ioctl(s.get(), SIOCSIFNETMASK, &ifr);  // best effort: /32
  return "";
}

// The IPv4 name servers the system resolver uses (as glibc reads them).
inline std::vector<std::string> system_nameservers() {
  std::vector<std::string> out;
  std::ifstream in("/etc/resolv.conf");
  std::string line;
  while (std::getline(in, line)) {
    std::istringstream ss(line);
    std::string word, addr;
    if (ss >> word >> addr && word == "nameserver") {
      in_addr a{};
      if (inet_pton(AF_INET, addr.c_str(), &a) == 1) out.push_back(addr);
    }
  }
  if (out.empty()) out.push_back("127.0.0.1");  // glibc's default
  return out;
}

// A DNS server on every system name server address, inside the test's own
// namespace (the addresses are put on its lo), so the system resolver talks
// to it and no query leaves the namespace. It answers NXDOMAIN to every
// query, or stays silent.
class FakeDns {
 public:
  enum class Mode { Nxdomain, Silent };

  explicit FakeDns(Mode mode) : mode_(mode) {
    if (auto e = bring_loopback_up(); !e.empty()) {
      error_ = "lo up: " + e;
      return;
    }
    int n = 1;
    for (const auto& ns : system_nameservers()) {
      if (ns.rfind("127.", 0) != 0) {
        if (auto e = add_loopback_alias(ns, n++); !e.empty()) {
          error_ = "alias " + ns + ": " + e;
          return;
        }
      }
      Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
      sockaddr_in sa{};
      sa.sin_family = AF_INET;
      sa.sin_port = htons(53);
      inet_pton(AF_INET, ns.c_str(), &sa.sin_addr);
      if (::bind(s.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0) {
        error_ = "bind " + ns + ":53: " + std::strerror(errno);
        return;
      }
      sockets_.push_back(std::move(s));
    }
    thread_ = std::thread([this] { serve(); });
  }
  ~FakeDns() {
    stop_ = true;
    if (thread_.joinable()) thread_.join();
  }
  const std::string& error() const { return error_; }
  size_t queries() const { return queries_; }

 private:
  void serve() {
    while (!stop_) {
      std::vector<pollfd> fds;
      for (const auto& s : sockets_) fds.push_back(pollfd{s.get(), POLLIN, 0});
      if (::poll(fds.data(), fds.size(), 50) <= 0) continue;
      for (const auto& p : fds) {
        if (!(p.revents & POLLIN)) continue;
        unsigned char buf[512];
        sockaddr_storage from{};
        socklen_t len = sizeof from;
        ssize_t n = ::recvfrom(p.fd, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
        if (n < 12) continue;
        ++queries_;
        if (mode_ == Mode::Silent) continue;
        buf[2] = static_cast<unsigned char>(0x80 | (buf[2] & 0x01));  // QR, keep RD
        buf[3] = 0x83;                                                // RA, NXDOMAIN
        ::sendto(p.fd, buf, static_cast<size_t>(n), 0, reinterpret_cast<sockaddr*>(&from), len);
      }
    }
  }

  Mode mode_;
  std::vector<Fd> sockets_;
  std::thread thread_;
  std::atomic<bool> stop_{false};
  std::atomic<size_t> queries_{0};
  std::string error_;
};

}  // namespace guardant::test
