// Helpers for the tcp probe tests: loopback listeners and scripted peers
// that run on their own thread while the fake host drives the probe on the
// test's thread. Everything binds to 127.0.0.1 only.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <pthread.h>
#include <signal.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <functional>
#include <guardant/fake_host.hpp>
#include <mutex>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "support/loopback.hpp"
#include "support/probe_test.hpp"

namespace tcptest {

using namespace std::chrono_literals;

inline const std::string kPluginPath = std::string(GUARDANT_TEST_PLUGIN_DIR) + "/probe_tcp.so";

using guardant::test::Fd;
using guardant::test::open_fd_count;

// A TCP socket bound to 127.0.0.1 port 0; listening unless `listen` is false.
inline Fd bind_loopback(uint16_t* port, bool listen = true) {
  Fd fd(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in sa{};
  sa.sin_family = AF_INET;
  inet_pton(AF_INET, "127.0.0.1", &sa.sin_addr);
  if (fd.get() < 0 || ::bind(fd.get(), reinterpret_cast<sockaddr*>(&sa), sizeof sa) < 0 ||
      (listen && ::listen(fd.get(), 16) < 0)) {
    ADD_FAILURE() << "cannot open a loopback socket: " << std::strerror(errno);
    return Fd();
  }
  socklen_t len = sizeof sa;
  getsockname(fd.get(), reinterpret_cast<sockaddr*>(&sa), &len);
  *port = ntohs(sa.sin_port);
  return fd;
}

using guardant::test::closed_port;

// --- what a scripted peer does on its connection (blocking calls, bounded) ---

// Writes everything; MSG_NOSIGNAL because the probe may already be gone.
inline bool write_all(int fd, std::string_view data) {
  while (!data.empty()) {
    ssize_t n = ::send(fd, data.data(), data.size(), MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    data.remove_prefix(static_cast<size_t>(n));
  }
  return true;
}

// Reads until `needle` has arrived (returns everything read), the probe
// closes, or `timeout` passes.
inline std::string read_until(int fd, std::string_view needle,
                              std::chrono::milliseconds timeout = 3s) {
  std::string got;
  auto end = std::chrono::steady_clock::now() + timeout;
  while (got.find(needle) == std::string::npos) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[4096];
    ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n <= 0) break;
    got.append(buf, static_cast<size_t>(n));
  }
  return got;
}

// Waits (reading and discarding) until the probe closes, or `timeout`.
inline void wait_closed(int fd, std::chrono::milliseconds timeout = 3s) {
  read_until(fd, std::string_view("\0never\0", 7), timeout);
}

// Accepts connections on 127.0.0.1 and runs `handler(fd)` for each, one at
// a time, on its own thread; the fd is closed after the handler returns.
// SIGPIPE is blocked on that thread only, so a peer writing to a probe that
// left cannot kill the test, while the probe (on the test's thread) still
// would be killed by one: the probe must never raise it.
class PeerServer {
 public:
  using Handler = std::function<void(int fd)>;

  explicit PeerServer(Handler handler) : handler_(std::move(handler)) {
    listener_ = bind_loopback(&port_);
    thread_ = std::thread([this] { run(); });
  }
  ~PeerServer() {
    stop_ = true;
    thread_.join();
  }
  PeerServer(const PeerServer&) = delete;
  PeerServer& operator=(const PeerServer&) = delete;

  uint16_t port() const { return port_; }
  std::string target() const { return "127.0.0.1:" + std::to_string(port_); }
  int accepted() const { return accepted_; }
  // Waits until every accepted connection was handled and closed, so that
  // counting the process's descriptors sees only the probe's.
  bool wait_idle(std::chrono::milliseconds timeout = 3s) const {
    auto end = std::chrono::steady_clock::now() + timeout;
    while (handled_ != accepted_) {
      if (std::chrono::steady_clock::now() > end) return false;
      std::this_thread::sleep_for(1ms);
    }
    return true;
  }

  // What handlers recorded with note() (thread-safe).
  void note(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    notes_.push_back(text);
  }
  std::vector<std::string> notes() const {
    std::lock_guard<std::mutex> lock(mu_);
    return notes_;
  }

 private:
  void run() {
    sigset_t set;
    sigemptyset(&set);
    sigaddset(&set, SIGPIPE);
    pthread_sigmask(SIG_BLOCK, &set, nullptr);
    while (!stop_) {
      pollfd p{listener_.get(), POLLIN, 0};
      if (::poll(&p, 1, 20) <= 0) continue;
      Fd conn(::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC));
      if (conn.get() < 0) continue;
      ++accepted_;
      // Bounds every blocking call of a handler (TLS handshakes included).
      timeval tv{3, 0};
      setsockopt(conn.get(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
      setsockopt(conn.get(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
      handler_(conn.get());
      conn.reset();
      ++handled_;
    }
  }

  Handler handler_;
  Fd listener_;
  uint16_t port_ = 0;
  std::atomic<bool> stop_{false};
  std::atomic<int> accepted_{0};
  std::atomic<int> handled_{0};
  mutable std::mutex mu_;
  std::vector<std::string> notes_;
  std::thread thread_;
};

// Loads probe_tcp.so into a fake host and checks after each test that the
// probe handed everything back and kept the host contract.
class TcpProbeFixture : public guardant::test::ProbeTest {
 protected:
  TcpProbeFixture() : ProbeTest(kPluginPath, "tcp", std::chrono::seconds(5)) {}
};

inline bool contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

}  // namespace tcptest
