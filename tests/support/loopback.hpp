// Test support on loopback: an owned fd, listeners on free ports, a closed
// port, a listener whose accept queue is full (a connect that stays
// pending, i.e. a connect timeout without leaving the machine), and the
// process's open-fd count for leak checks.
#pragma once

#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>
#include <utility>
#include <vector>

namespace guardant::test {

// Owns a descriptor.
class Fd {
 public:
  explicit Fd(int fd = -1) : fd_(fd) {}
  Fd(Fd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  Fd& operator=(Fd&& o) noexcept {
    reset();
    fd_ = std::exchange(o.fd_, -1);
    return *this;
  }
  ~Fd() { reset(); }
  void reset() {
    if (fd_ >= 0) ::close(fd_);
    fd_ = -1;
  }
  int get() const { return fd_; }

 private:
  int fd_;
};

struct Listener {
  Fd fd;
  uint16_t port = 0;
  std::string error;  // why it could not be opened
};

// A socket bound to `addr` port 0; listening with `backlog` unless < 0.
inline Listener open_listener(int family, const char* addr, int backlog) {
  Listener l;
  l.fd = Fd(::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (l.fd.get() < 0) {
    l.error = std::string("socket: ") + std::strerror(errno);
    return l;
  }
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET6) {
    auto* s6 = reinterpret_cast<sockaddr_in6*>(&ss);
    s6->sin6_family = AF_INET6;
    inet_pton(AF_INET6, addr, &s6->sin6_addr);
    len = sizeof *s6;
  } else {
    auto* s4 = reinterpret_cast<sockaddr_in*>(&ss);
    s4->sin_family = AF_INET;
    inet_pton(AF_INET, addr, &s4->sin_addr);
    len = sizeof *s4;
  }
  if (::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    l.error = std::string("bind ") + addr + ": " + std::strerror(errno);
    l.fd.reset();
    return l;
  }
  if (backlog >= 0 && ::listen(l.fd.get(), backlog) < 0) {
    l.error = std::string("listen: ") + std::strerror(errno);
    l.fd.reset();
    return l;
  }
  len = sizeof ss;
  getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&ss), &len);
  l.port = ntohs(family == AF_INET6 ? reinterpret_cast<sockaddr_in6*>(&ss)->sin6_port
                                    : reinterpret_cast<sockaddr_in*>(&ss)->sin_port);
  return l;
}

// A loopback port nobody listens on: bound, then closed.
inline uint16_t closed_port() {
  Listener l = open_listener(AF_INET, "127.0.0.1", -1);
  EXPECT_TRUE(l.error.empty()) << l.error;
  return l.port;
}

inline size_t open_fd_count() {
  size_t n = 0;
  if (DIR* d = opendir("/proc/self/fd")) {
    while (readdir(d)) ++n;
    closedir(d);
  }
  return n;
}

// A loopback listener whose accept queue is full, so that a new connect to it
// stays pending (the kernel drops the SYN): a connect timeout without leaving
// the machine. `error` says why it could not be arranged.
struct FullBacklog {
  Listener listener;
  std::vector<Fd> fillers;
  std::string error;
};

inline FullBacklog fill_backlog() {
  FullBacklog b;
  b.listener = open_listener(AF_INET, "127.0.0.1", 0);
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
    if (ready == 0) return b;  // this one stays pending: the queue is full
  }
  b.error = "the kernel completed 32 connects to a listen(fd, 0) socket that never accepts";
  return b;
}

}  // namespace guardant::test
