// Helpers shared by the ping probe tests.
#ifndef GUARDANT_TESTS_PING_TEST_UTIL_HPP
#define GUARDANT_TESTS_PING_TEST_UTIL_HPP

#include <arpa/inet.h>
#include <dirent.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <guardant/fake_host.hpp>
#include <string>

namespace ping_test {

inline const std::string kPluginPath = std::string(GUARDANT_TEST_PLUGIN_DIR) + "/probe_ping.so";

struct Cmd {
  int rc = -1;
  std::string out;  // stdout and stderr
};

// Runs a shell command bounded to 10 s (coreutils `timeout`), capturing its
// output.
inline Cmd sh(const std::string& command) {
  Cmd c;
  std::string full = "timeout 10 " + command + " 2>&1";
  FILE* p = ::popen(full.c_str(), "r");
  if (!p) {
    c.out = std::string("popen: ") + std::strerror(errno);
    return c;
  }
  char buf[512];
  size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) c.out.append(buf, n);
  int status = ::pclose(p);
  c.rc = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  while (!c.out.empty() && (c.out.back() == '\n' || c.out.back() == ' ')) c.out.pop_back();
  return c;
}

inline size_t open_fd_count() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (::readdir(d)) ++n;
    ::closedir(d);
  }
  return n;
}

// ICMP sockets (raw or datagram, either family) open in this process: the
// probe's shared sockets. Counting only these keeps the tests blind to
// descriptors glibc or gtest open and close on their own.
inline size_t icmp_socket_count() {
  size_t n = 0;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    const int self = ::dirfd(d);
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      int fd = std::atoi(e->d_name);
      if (fd == self) continue;
      int proto = -1;
      socklen_t len = sizeof proto;
      if (::getsockopt(fd, SOL_SOCKET, SO_PROTOCOL, &proto, &len) == 0 &&
          (proto == IPPROTO_ICMP || proto == IPPROTO_ICMPV6))
        ++n;
    }
    ::closedir(d);
  }
  return n;
}

// "fd -> target" for every open descriptor, for failure messages.
inline std::string fd_listing() {
  std::string out;
  if (DIR* d = ::opendir("/proc/self/fd")) {
    while (dirent* e = ::readdir(d)) {
      if (e->d_name[0] == '.') continue;
      char target[256] = {0};
      std::string link = std::string("/proc/self/fd/") + e->d_name;
      if (::readlink(link.c_str(), target, sizeof target - 1) < 0) continue;
      out += std::string(e->d_name) + "->" + target + " ";
    }
    ::closedir(d);
  }
  return out;
}

// The first line of a /proc file, "" when unreadable.
inline std::string read_proc(const std::string& path) {
  std::ifstream in(path);
  std::string line;
  std::getline(in, line);
  return line;
}

// Why this machine has no usable IPv6 loopback, or "" when it has one.
inline std::string ipv6_loopback_problem() {
  int fd = ::socket(AF_INET6, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return std::string("socket(AF_INET6): ") + std::strerror(errno);
  sockaddr_in6 a{};
  a.sin6_family = AF_INET6;
  a.sin6_addr = in6addr_loopback;
  std::string problem;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) < 0)
    problem = std::string("bind [::1]: ") + std::strerror(errno);
  ::close(fd);
  return problem;
}

// The text a ping result gives when the worker may not open ICMP sockets
// at all; tests that need pings skip with it.
inline bool is_permission_problem(const guardant::testing::CheckRun& r) {
  return r.status == guardant::Status::Inconclusive &&
         r.message.find("ping_group_range") != std::string::npos;
}

}  // namespace ping_test

#endif  // GUARDANT_TESTS_PING_TEST_UTIL_HPP
