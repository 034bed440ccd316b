// The `tcp` probe, loaded from the built probe_tcp.so through the fake host
// exactly as a third-party plugin would be. Every target is on loopback: the
// tests never leave the machine.
#include <arpa/inet.h>
#include <dirent.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstring>
#include <guardant/fake_host.hpp>
#include <guardant/json.hpp>
#include <string>
#include <vector>

#include "support/loopback.hpp"
#include "support/netns_dns.hpp"
#include "support/probe_test.hpp"

using guardant::Status;
using guardant::testing::CheckRun;
using guardant::testing::FakeHost;
using namespace std::chrono_literals;
namespace json = guardant::json;

using guardant::test::closed_port;
using guardant::test::Fd;
using guardant::test::fill_backlog;
using guardant::test::FullBacklog;
using guardant::test::Listener;
using guardant::test::open_fd_count;
using guardant::test::open_listener;

namespace {

const std::string kPluginPath = std::string(GUARDANT_TEST_PLUGIN_DIR) + "/probe_tcp.so";

class TcpProbe : public guardant::test::ProbeTest {
 protected:
  TcpProbe() : ProbeTest(kPluginPath, "tcp", 5s) {}
};

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

}  // namespace

TEST_F(TcpProbe, DescribesItself) {
  EXPECT_STREQ(desc_->name, "guardant-tcp");
  EXPECT_STREQ(desc_->version, GUARDANT_EXPECTED_PLUGIN_VERSION);
  ASSERT_EQ(desc_->probe_type_count, 1u);
  const guardant_probe_type& t = desc_->probe_types[0];
  EXPECT_STREQ(t.name, "tcp");
  EXPECT_EQ(t.capability_flags, GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6 | GUARDANT_CAP_TLS);
  ASSERT_NE(t.options_schema_json, nullptr);
  auto schema = json::parse(t.options_schema_json);
  for (const char* option :
       {"timeout", "ipFamily", "tls", "tlsVerify", "servername", "caFile", "clientCert",
        "clientKey", "certExpiryDays", "readBanner", "sendData", "expectData", "expectRegex",
        "steps", "maxReadBytes", "stepTimeout", "expectClosed"})
    EXPECT_TRUE(schema["properties"][option].is_object()) << option;
}

TEST_F(TcpProbe, UpAgainstALocalListener) {
  Listener l = open_listener(AF_INET, "127.0.0.1", 16);
  ASSERT_TRUE(l.error.empty()) << l.error;
  const std::string endpoint = "127.0.0.1:" + std::to_string(l.port);
  size_t fds_before = open_fd_count();

  CheckRun r = run(endpoint, R"({"timeout":2000})");
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_TRUE(r.completed);
  EXPECT_FALSE(r.timed_out);
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_GT(r.response_time_ms, 0.0);
  EXPECT_LT(r.response_time_ms, 1000.0);
  EXPECT_TRUE(starts_with(r.message, "connected to " + endpoint + " in ")) << r.message;
  EXPECT_NE(r.message.find(" ms"), std::string::npos) << r.message;
  EXPECT_TRUE(r.failure_reason.empty());

  auto d = r.details();
  EXPECT_EQ(d["ip"].as_string(), "127.0.0.1");
  EXPECT_EQ(d["family"].as_int64(), 4);
  EXPECT_EQ(d["port"].as_int64(), l.port);

  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->resolve_ms, 0.0);
  EXPECT_DOUBLE_EQ(r.timings->connect_ms, r.response_time_ms);
  EXPECT_GE(r.timings->total_ms, r.timings->connect_ms + r.timings->resolve_ms - 1e-6);
  EXPECT_LT(r.timings->tls_ms, 0.0);  // did not happen

  host_.settle();
  EXPECT_EQ(open_fd_count(), fds_before) << "the probe leaked a socket";
}

TEST_F(TcpProbe, UpThroughAHostName) {
  Listener l = open_listener(AF_INET, "127.0.0.1", 16);
  ASSERT_TRUE(l.error.empty()) << l.error;
  CheckRun r = run("localhost:" + std::to_string(l.port), R"({"ipFamily":"ipv4"})");
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_EQ(r.details()["ip"].as_string(), "127.0.0.1");
}

TEST_F(TcpProbe, ClosedPortIsRefused) {
  uint16_t port = closed_port();
  CheckRun r = run("127.0.0.1:" + std::to_string(port));
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "connect_refused") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "connect");
  EXPECT_NE(r.failure_detail.find("refused"), std::string::npos) << r.failure_detail;
  EXPECT_EQ(r.details()["port"].as_int64(), port);
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->connect_ms, 0.0);
}

TEST_F(TcpProbe, UpOnIpv6Loopback) {
  Listener l = open_listener(AF_INET6, "::1", 16);
  if (!l.error.empty()) GTEST_SKIP() << "no IPv6 loopback on this machine: " << l.error;
  const std::string endpoint = "[::1]:" + std::to_string(l.port);
  CheckRun r = run(endpoint);
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_TRUE(starts_with(r.message, "connected to " + endpoint + " in ")) << r.message;
  EXPECT_EQ(r.details()["ip"].as_string(), "::1");
  EXPECT_EQ(r.details()["family"].as_int64(), 6);
  // Asking for IPv6 explicitly works too.
  r = run(endpoint, R"({"ipFamily":"ipv6"})");
  EXPECT_EQ(r.status, Status::Up) << r.message;
}

TEST_F(TcpProbe, UnresolvableNameIsNxdomain) {
  // In a namespace of the test's own with a fake DNS server: no query leaves
  // the machine.
  std::string skip = guardant::test::run_in_new_netns([] {
    guardant::test::FakeDns dns(guardant::test::FakeDns::Mode::Nxdomain);
    ASSERT_TRUE(dns.error().empty()) << dns.error();
    FakeHost host;
    ASSERT_NE(host.load(kPluginPath), nullptr) << host.last_error();
    CheckRun r = host.run_check("tcp", "nothing.guardant.test:80", "{}", 10s);
    ASSERT_TRUE(r.started()) << r.start_error;
    EXPECT_EQ(r.status, Status::Down);
    EXPECT_EQ(r.failure_reason, "dns_nxdomain") << r.failure_detail;
    EXPECT_EQ(r.failure_phase, "resolve");
    EXPECT_NE(r.failure_detail.find("nothing.guardant.test"), std::string::npos);
    ASSERT_TRUE(r.timings.has_value());
    EXPECT_GE(r.timings->resolve_ms, 0.0);
    EXPECT_LT(r.timings->connect_ms, 0.0);  // never got there
    EXPECT_GT(dns.queries(), 0u);
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST_F(TcpProbe, BadTargetsAreInvalidConfig) {
  struct Case {
    std::string target;
    std::string expected;
  };
  const Case cases[] = {
      {"nohost", "target 'nohost' has no port; expected host:port or [ipv6]:port"},
      {"host:99999", "target 'host:99999': port must be a number between 1 and 65535"},
      {"host:0", "port must be a number between 1 and 65535"},
      {"host:http", "port must be a number between 1 and 65535"},
      {"host:", "has no port"},
      {"::1:80", "an IPv6 address must be in brackets, e.g. [::1]:443"},
      {"[::1]", "has no port"},
      {"[::1:80", "has no closing ']'"},
      {"[example.com]:80", "'example.com' is not an IPv6 address"},
      {":80", "has no host"},
      {"bad host:80", "invalid character in host name"},
      {"", "target is empty"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(c.target);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.target;
    EXPECT_NE(r.start_error.find(c.expected), std::string::npos)
        << "target '" << c.target << "' gave: " << r.start_error;
  }
}

TEST_F(TcpProbe, WrongOptionsAreInvalidConfigNamingTheOption) {
  uint16_t port = closed_port();
  const std::string target = "127.0.0.1:" + std::to_string(port);
  struct Case {
    std::string config;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"timeout":"ten"})", "option 'timeout' must be a number, got string"},
      {R"({"timeout":0})", "option 'timeout' must be a number between 1 and 600000"},
      {R"({"timeout":-5})", "option 'timeout' must be a number between 1 and 600000"},
      {R"({"ipFamily":"ipx"})", R"(option 'ipFamily' must be one of "auto", "ipv4", "ipv6")"},
      {R"({"ipFamily":6})", "option 'ipFamily' must be one of"},
      {"[]", "config must be a JSON object, got array"},
      {"{oops", "config is not valid JSON"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(target, c.config);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.config;
    EXPECT_NE(r.start_error.find(c.expected), std::string::npos)
        << "config " << c.config << " gave: " << r.start_error;
  }
}

TEST_F(TcpProbe, AddressLiteralOfTheOtherFamilyIsInvalidConfig) {
  CheckRun r = run("127.0.0.1:80", R"({"ipFamily":"ipv6"})");
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
  EXPECT_NE(r.start_error.find("option 'ipFamily'"), std::string::npos) << r.start_error;
  r = run("[::1]:80", R"({"ipFamily":"ipv4"})");
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
}

TEST_F(TcpProbe, UnknownOptionsAreNotAnError) {
  Listener l = open_listener(AF_INET, "127.0.0.1", 16);
  ASSERT_TRUE(l.error.empty()) << l.error;
  CheckRun r = run("127.0.0.1:" + std::to_string(l.port), R"({"timeout":1000,"tiemout":5})");
  EXPECT_EQ(r.status, Status::Up) << r.start_error << r.message;
}

TEST_F(TcpProbe, ConnectTimeoutAgainstAFullBacklog) {
  FullBacklog b = fill_backlog();
  if (!b.error.empty()) GTEST_SKIP() << "cannot make a connect hang on loopback: " << b.error;
  size_t fds_before = open_fd_count();
  CheckRun r = run("127.0.0.1:" + std::to_string(b.listener.port), R"({"timeout":300})", 5s);
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_FALSE(r.timed_out) << "the probe must answer before the host's deadline";
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "connect_timeout") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "connect");
  EXPECT_NE(r.failure_detail.find("127.0.0.1:" + std::to_string(b.listener.port)),
            std::string::npos);
  EXPECT_GE(r.response_time_ms, 299.0);
  EXPECT_LT(r.elapsed_ms, 2000.0);
  host_.settle();
  EXPECT_EQ(open_fd_count(), fds_before) << "the probe leaked its socket";
}

TEST_F(TcpProbe, HostDeadlineBoundsTheCheckTimeout) {
  FullBacklog b = fill_backlog();
  if (!b.error.empty()) GTEST_SKIP() << "cannot make a connect hang on loopback: " << b.error;
  // No timeout option and a 1 s host deadline: the probe must end on its own,
  // with the precise reason, a little (50 ms) before the host gives up.
  const std::string target = "127.0.0.1:" + std::to_string(b.listener.port);
  CheckRun r = run(target, "{}", 1s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.failure_reason, "connect_timeout") << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 1000.0);
  EXPECT_GT(r.elapsed_ms, 800.0);
  // A timeout option longer than the deadline is capped the same way.
  r = run(target, R"({"timeout":60000})", 1s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.failure_reason, "connect_timeout") << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 1000.0);
}

TEST_F(TcpProbe, CancelClosesTheSocketAndReleasesEverything) {
  FullBacklog b = fill_backlog();
  if (!b.error.empty()) GTEST_SKIP() << "cannot make a connect hang on loopback: " << b.error;
  size_t fds_before = open_fd_count();
  uint64_t id = host_.start_check("tcp", "127.0.0.1:" + std::to_string(b.listener.port),
                                  R"({"timeout":10000})", 20s);
  // Let it resolve and start connecting.
  host_.run_until([&] { return host_.outstanding_watches() == 1; }, 2s);
  EXPECT_EQ(host_.outstanding_watches(), 1u);
  EXPECT_EQ(host_.outstanding_timers(), 1u);
  EXPECT_EQ(open_fd_count(), fds_before + 1);
  host_.cancel(id);
  host_.settle();
  CheckRun r = host_.check_run(id);
  EXPECT_TRUE(r.released);
  EXPECT_EQ(r.status, Status::Inconclusive);
  EXPECT_EQ(open_fd_count(), fds_before);
}
