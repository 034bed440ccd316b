// The `ping` probe, loaded from the built probe_ping.so through the fake
// host as a third-party plugin would be. Every target here is on loopback
// (127.0.0.1, ::1) or a name that cannot resolve: nothing leaves the
// machine. Latency, loss and unreachable networks are tested in the test's
// own network namespaces (ping_netns_test.cpp).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/capability.h>
#include <poll.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstring>
#include <guardant/fake_host.hpp>
#include <guardant/json.hpp>
#include <string>
#include <thread>
#include <vector>

#include "icmp.hpp"
#include "ping_test_util.hpp"
#include "support/netns_dns.hpp"
#include "support/probe_test.hpp"

using guardant::Status;
using guardant::testing::CheckRun;
using guardant::testing::FakeHost;
using namespace std::chrono_literals;
namespace json = guardant::json;
namespace icmp = guardant::ping;
using ping_test::icmp_socket_count;
using ping_test::kPluginPath;

namespace {

bool starts_with(const std::string& s, const std::string& prefix) {
  return s.compare(0, prefix.size(), prefix) == 0;
}

class PingProbe : public guardant::test::ProbeTest {
 protected:
  // Between checks the plugin holds nothing with the host: the shared
  // socket's watch exists only while a check uses it (checked in TearDown).
  PingProbe() : ProbeTest(kPluginPath, "ping", 10s) {}

  // A ping that must work: skips the test when the worker may not ping at
  // all on this machine (the reason is the probe's own message).
  CheckRun run_up(const std::string& target, const std::string& config = "{}",
                  std::chrono::nanoseconds timeout = 10s) {
    CheckRun r = run(target, config, timeout);
    EXPECT_TRUE(r.started()) << r.start_error;
    return r;
  }
};

#define SKIP_IF_NO_PERMISSION(r)                                                 \
  do {                                                                           \
    if (ping_test::is_permission_problem(r))                                     \
      GTEST_SKIP() << "this process may not open ICMP sockets: " << (r).message; \
  } while (0)

// The plausible-statistics checks every successful loopback ping must pass.
void expect_loopback_stats(const CheckRun& r, int packets) {
  ASSERT_EQ(r.status, Status::Up) << r.message << " / " << r.failure_detail;
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.failure_reason.empty()) << r.failure_reason;
  auto d = r.details();
  EXPECT_EQ(d["sent"].as_int64(), packets);
  EXPECT_EQ(d["received"].as_int64(), packets);
  EXPECT_EQ(d["lossPercent"].as_number(), 0.0);
  EXPECT_EQ(d["errors"].as_int64(), 0);
  const double mn = d["rttMin"].as_number(), avg = d["rttAvg"].as_number(),
               mx = d["rttMax"].as_number(), sd = d["rttStddev"].as_number();
  EXPECT_GT(avg, 0.0);
  EXPECT_LE(mn, avg);
  EXPECT_LE(avg, mx);
  EXPECT_LT(mx, 100.0) << "loopback RTT of 100 ms or more is not plausible";
  EXPECT_GE(sd, 0.0);
  EXPECT_LE(sd, mx - mn + 0.001);
  // Response time is the average RTT (details are rounded to 1 µs).
  EXPECT_NEAR(r.response_time_ms, avg, 0.001);
  EXPECT_TRUE(d["replyTtl"].is_integer()) << r.details_json;
  const std::string kind = d["socket"].as_string();
  EXPECT_TRUE(kind == "datagram" || kind == "raw") << kind;
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->resolve_ms, 0.0);
  EXPECT_GE(r.timings->total_ms, r.timings->resolve_ms);
  EXPECT_LT(r.timings->connect_ms, 0.0);  // no such phase
}

}  // namespace

TEST_F(PingProbe, DescribesItself) {
  EXPECT_STREQ(desc_->name, "guardant-ping");
  EXPECT_STREQ(desc_->version, GUARDANT_EXPECTED_PLUGIN_VERSION);
  ASSERT_EQ(desc_->probe_type_count, 1u);
  const guardant_probe_type& t = desc_->probe_types[0];
  EXPECT_STREQ(t.name, "ping");
  EXPECT_EQ(t.capability_flags, GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6 | GUARDANT_CAP_NET_RAW);
  ASSERT_NE(t.options_schema_json, nullptr);
  auto schema = json::parse(t.options_schema_json);
  for (const char* key :
       {"packets", "interval", "packetTimeout", "packetSize", "ttl", "timeout",
        "degradedLossPercent", "downLossPercent", "degradedRttMs", "downRttMs", "ipFamily"})
    EXPECT_TRUE(schema["properties"][key].is_object()) << key;
  EXPECT_EQ(schema["properties"]["packets"]["default"].as_int64(), 3);
}

TEST_F(PingProbe, UpOnIpv4LoopbackWithThreePackets) {
  CheckRun r = run_up("127.0.0.1", R"({"packets":3,"interval":50})");
  SKIP_IF_NO_PERMISSION(r);
  expect_loopback_stats(r, 3);
  auto d = r.details();
  EXPECT_EQ(d["ip"].as_string(), "127.0.0.1");
  EXPECT_EQ(d["family"].as_int64(), 4);
  EXPECT_EQ(d["packetSize"].as_int64(), 56);
  // The kernel answers with its default TTL and loopback does not route.
  std::string ttl = ping_test::read_proc("/proc/sys/net/ipv4/ip_default_ttl");
  if (!ttl.empty()) {
    EXPECT_EQ(d["replyTtl"].as_int64(), std::stoi(ttl));
  }
  EXPECT_TRUE(starts_with(r.message, "3/3 replies from 127.0.0.1, 0% loss, rtt min/avg/max "))
      << r.message;
  // Two 50 ms intervals separate three requests.
  EXPECT_GE(r.timings->total_ms, 100.0);
  EXPECT_LT(r.timings->total_ms, 1000.0);
}

TEST_F(PingProbe, UpOnIpv6Loopback) {
  std::string problem = ping_test::ipv6_loopback_problem();
  if (!problem.empty()) GTEST_SKIP() << "no IPv6 loopback on this machine: " << problem;
  CheckRun r = run_up("::1", R"({"interval":20})");
  SKIP_IF_NO_PERMISSION(r);
  expect_loopback_stats(r, 3);
  auto d = r.details();
  EXPECT_EQ(d["ip"].as_string(), "::1");
  EXPECT_EQ(d["family"].as_int64(), 6);
  std::string hops = ping_test::read_proc("/proc/sys/net/ipv6/conf/lo/hop_limit");
  if (!hops.empty()) {
    EXPECT_EQ(d["replyTtl"].as_int64(), std::stoi(hops));
  }
  // Brackets and an explicit family work too.
  r = run_up("[::1]", R"({"ipFamily":"ipv6","packets":1})");
  expect_loopback_stats(r, 1);
}

TEST_F(PingProbe, HostNameIsResolvedThroughTheHost) {
  CheckRun r = run_up("localhost", R"({"ipFamily":"ipv4","packets":1})");
  SKIP_IF_NO_PERMISSION(r);
  expect_loopback_stats(r, 1);
  EXPECT_EQ(r.details()["ip"].as_string(), "127.0.0.1");
}

TEST_F(PingProbe, ChecksInFlightTogetherShareOneSocketAndGetTheirOwnReplies) {
  const bool v6 = ping_test::ipv6_loopback_problem().empty();
  const size_t families = v6 ? 2 : 1;
  const size_t sockets_before = icmp_socket_count();
  std::vector<uint64_t> ids;
  for (int i = 0; i < 8; ++i)
    ids.push_back(host_.start_check(
        "ping", (v6 && i % 2) ? "::1" : "127.0.0.1",
        R"({"packets":4,"interval":30,"packetSize":)" + std::to_string(16 + i) + "}", 10s));
  // Once every lookup has answered, every check is pinging.
  host_.run_until(
      [&] { return host_.outstanding_resolves() == 0 && host_.outstanding_watches() == families; },
      5s);
  CheckRun first = host_.check_run(ids[0]);
  if (first.released) SKIP_IF_NO_PERMISSION(first);
  EXPECT_EQ(host_.outstanding_watches(), families) << "one watched socket per family";
  EXPECT_EQ(icmp_socket_count(), sockets_before + families)
      << "one socket per family, not per check: " << ping_test::fd_listing();

  host_.run_until(
      [&] {
        for (auto id : ids)
          if (!host_.check_run(id).released) return false;
        return true;
      },
      10s);
  for (size_t i = 0; i < ids.size(); ++i) {
    CheckRun r = host_.check_run(ids[i]);
    SCOPED_TRACE("check " + std::to_string(i));
    expect_loopback_stats(r, 4);
    EXPECT_EQ(r.details()["packetSize"].as_int64(), static_cast<int64_t>(16 + i));
  }
  // Idle again: the socket stays open for the next check, unwatched.
  host_.settle();
  EXPECT_EQ(host_.outstanding_watches(), 0u);
  EXPECT_EQ(icmp_socket_count(), sockets_before + families);
}

TEST(PingLifecycle, SocketStaysOpenBetweenChecksAndClosesAtPluginShutdown) {
  // Its own host: two hosts loading the same .so would share its state.
  ASSERT_EQ(icmp_socket_count(), 0u) << ping_test::fd_listing();
  {
    FakeHost host;
    ASSERT_NE(host.load(kPluginPath), nullptr) << host.last_error();
    EXPECT_EQ(icmp_socket_count(), 0u) << "sockets are opened lazily, by the first check";
    CheckRun r = host.run_check("ping", "127.0.0.1", R"({"packets":1})", 5s);
    if (ping_test::is_permission_problem(r))
      GTEST_SKIP() << "this process may not open ICMP sockets: " << r.message;
    EXPECT_EQ(r.status, Status::Up) << r.message;
    host.settle();
    EXPECT_EQ(icmp_socket_count(), 1u);
    r = host.run_check("ping", "127.0.0.1", R"({"packets":1})", 5s);
    EXPECT_EQ(r.status, Status::Up) << r.message;
    host.settle();
    EXPECT_EQ(icmp_socket_count(), 1u) << "the second check reuses the socket";
    EXPECT_EQ(host.outstanding_watches(), 0u);
  }
  EXPECT_EQ(icmp_socket_count(), 0u) << "shutdown closes the socket";
}

TEST_F(PingProbe, PayloadSizesFromZeroToLarge) {
  for (int size : {0, 1, 7, 8, 9, 1472, 65000}) {
    SCOPED_TRACE("packetSize " + std::to_string(size));
    CheckRun r = run_up("127.0.0.1",
                        R"({"packets":2,"interval":10,"packetSize":)" + std::to_string(size) + "}");
    SKIP_IF_NO_PERMISSION(r);
    expect_loopback_stats(r, 2);
    EXPECT_EQ(r.details()["packetSize"].as_int64(), size);
  }
}

TEST_F(PingProbe, TtlOptionIsAcceptedOnLoopback) {
  // Loopback delivers locally whatever the TTL: this checks that the
  // per-request TTL cmsg is accepted (the namespace tests check its value).
  CheckRun r = run_up("127.0.0.1", R"({"packets":2,"interval":10,"ttl":1})");
  SKIP_IF_NO_PERMISSION(r);
  expect_loopback_stats(r, 2);
}

TEST_F(PingProbe, RttThresholdsMakeItDegradedOrDown) {
  // Any RTT is above 0 ms.
  CheckRun r = run_up("127.0.0.1", R"({"packets":2,"interval":10,"degradedRttMs":0})");
  SKIP_IF_NO_PERMISSION(r);
  EXPECT_EQ(r.status, Status::Degraded) << r.message;
  EXPECT_EQ(r.failure_reason, "latency");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_NE(r.failure_detail.find("is above degradedRttMs 0"), std::string::npos)
      << r.failure_detail;
  EXPECT_EQ(r.details()["received"].as_int64(), 2);
  EXPECT_GT(r.response_time_ms, 0.0);

  r = run_up("127.0.0.1", R"({"packets":2,"interval":10,"degradedRttMs":0,"downRttMs":0})");
  EXPECT_EQ(r.status, Status::Down) << r.message;
  EXPECT_EQ(r.failure_reason, "latency");
  EXPECT_NE(r.failure_detail.find("is above downRttMs 0"), std::string::npos) << r.failure_detail;

  // Generous thresholds leave it up.
  r = run_up("127.0.0.1", R"({"packets":2,"interval":10,"degradedRttMs":500,"downRttMs":1000})");
  EXPECT_EQ(r.status, Status::Up) << r.message;
}

TEST_F(PingProbe, HostDeadlineBoundsTheCheck) {
  // Ten requests a second apart cannot fit in a 1 s deadline: the probe
  // sends what fits and answers, with its own result, before the host gives
  // up.
  CheckRun r = run_up("127.0.0.1", R"({"packets":10,"interval":300})", 1s);
  SKIP_IF_NO_PERMISSION(r);
  EXPECT_FALSE(r.timed_out);
  EXPECT_TRUE(r.completed);
  EXPECT_EQ(r.status, Status::Up) << r.message;
  EXPECT_LT(r.elapsed_ms, 1000.0);
  EXPECT_GT(r.elapsed_ms, 900.0);
  auto d = r.details();
  EXPECT_EQ(d["sent"].as_int64(), 4);  // at 0, 300, 600 and 900 ms
  EXPECT_EQ(d["received"].as_int64(), 4);
  EXPECT_NE(r.message.find("6 of 10 requests not sent"), std::string::npos) << r.message;
  // The timeout option bounds it the same way.
  r = run_up("127.0.0.1", R"({"packets":10,"interval":300,"timeout":400})", 10s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.details()["sent"].as_int64(), 2);
  EXPECT_LT(r.elapsed_ms, 1000.0);
}

TEST_F(PingProbe, ReplyWaitingInTheSocketBufferDoesNotInflateTheRtt) {
  uint64_t id = host_.start_check("ping", "127.0.0.1", R"({"packets":1})", 10s);
  // Once the socket is watched the request is out (it goes at once).
  host_.run_until([&] { return host_.outstanding_watches() == 1 || host_.check_run(id).released; },
                  2s);
  CheckRun early = host_.check_run(id);
  if (early.released) SKIP_IF_NO_PERMISSION(early);
  // A loop busy elsewhere: the reply arrives and waits in the buffer.
  std::this_thread::sleep_for(100ms);
  host_.wait_check(id);
  CheckRun r = host_.check_run(id);
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_GE(r.elapsed_ms, 100.0);
  EXPECT_LT(r.details()["rttMax"].as_number(), 20.0)
      << "the kernel's receive timestamp, not the time the loop got to it, ends the RTT: "
      << r.details_json;
}

TEST_F(PingProbe, CancelReleasesEverything) {
  uint64_t id = host_.start_check("ping", "127.0.0.1", R"({"packets":100,"interval":1000})", 200s);
  host_.run_until([&] { return host_.outstanding_watches() == 1 || host_.check_run(id).released; },
                  2s);
  CheckRun early = host_.check_run(id);
  if (early.released) SKIP_IF_NO_PERMISSION(early);
  EXPECT_EQ(host_.outstanding_watches(), 1u);
  EXPECT_EQ(host_.outstanding_timers(), 1u);  // one timer per check, whatever is pending
  host_.cancel(id);
  host_.settle();
  CheckRun r = host_.check_run(id);
  EXPECT_TRUE(r.released);
  EXPECT_EQ(r.status, Status::Inconclusive);
  EXPECT_EQ(host_.outstanding_watches(), 0u);
  EXPECT_EQ(host_.outstanding_timers(), 0u);
}

TEST_F(PingProbe, UnresolvableNameIsNxdomain) {
  // In a namespace of the test's own with a fake DNS server: no query leaves
  // the machine.
  std::string skip = guardant::test::run_in_new_netns([] {
    guardant::test::FakeDns dns(guardant::test::FakeDns::Mode::Nxdomain);
    ASSERT_TRUE(dns.error().empty()) << dns.error();
    FakeHost host;
    ASSERT_NE(host.load(kPluginPath), nullptr) << host.last_error();
    CheckRun r = host.run_check("ping", "nothing.guardant.test", "{}", 10s);
    ASSERT_TRUE(r.started()) << r.start_error;
    EXPECT_EQ(r.status, Status::Down);
    EXPECT_EQ(r.failure_reason, "dns_nxdomain") << r.failure_detail;
    EXPECT_EQ(r.failure_phase, "resolve");
    EXPECT_NE(r.failure_detail.find("nothing.guardant.test"), std::string::npos);
    ASSERT_TRUE(r.timings.has_value());
    EXPECT_GE(r.timings->resolve_ms, 0.0);
    EXPECT_GT(dns.queries(), 0u);
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST_F(PingProbe, WrongOptionsAreInvalidConfigNamingTheOption) {
  struct Case {
    std::string config;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"packets":"3"})", "option 'packets' must be an integer, got string"},
      {R"({"packets":0})", "option 'packets' must be an integer between 1 and 100"},
      {R"({"packets":101})", "option 'packets' must be an integer between 1 and 100"},
      {R"({"packets":2.5})", "option 'packets' must be an integer between 1 and 100"},
      {R"({"interval":true})", "option 'interval' must be a number, got boolean"},
      {R"({"interval":5})", "option 'interval' must be a number between 10 and 60000"},
      {R"({"packetTimeout":"1s"})", "option 'packetTimeout' must be a number, got string"},
      {R"({"packetTimeout":0})", "option 'packetTimeout' must be a number between 1 and 60000"},
      {R"({"packetSize":-1})", "option 'packetSize' must be an integer between 0 and 65000"},
      {R"({"packetSize":65001})", "option 'packetSize' must be an integer between 0 and 65000"},
      {R"({"packetSize":[]})", "option 'packetSize' must be an integer, got array"},
      {R"({"ttl":0})", "option 'ttl' must be an integer between 1 and 255"},
      {R"({"ttl":256})", "option 'ttl' must be an integer between 1 and 255"},
      {R"({"ttl":"64"})", "option 'ttl' must be an integer, got string"},
      {R"({"timeout":"ten"})", "option 'timeout' must be a number, got string"},
      {R"({"timeout":0})", "option 'timeout' must be a number between 1 and 600000"},
      {R"({"degradedLossPercent":101})",
       "option 'degradedLossPercent' must be a number between 0 and 100"},
      {R"({"downLossPercent":"50%"})", "option 'downLossPercent' must be a number, got string"},
      {R"({"degradedRttMs":-1})", "option 'degradedRttMs' must be a number between 0 and 600000"},
      {R"({"downRttMs":{}})", "option 'downRttMs' must be a number, got object"},
      {R"({"ipFamily":"ipx"})", R"(option 'ipFamily' must be one of "auto", "ipv4", "ipv6")"},
      {"[]", "config must be a JSON object, got array"},
      {"{oops", "config is not valid JSON"},
  };
  for (const auto& c : cases) {
    CheckRun r = run("127.0.0.1", c.config);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.config;
    EXPECT_NE(r.start_error.find(c.expected), std::string::npos)
        << "config " << c.config << " gave: " << r.start_error;
  }
}

TEST_F(PingProbe, NullOptionsMeanDefaults) {
  CheckRun r = run_up("127.0.0.1", R"({"packets":null,"interval":10,"ttl":null})");
  SKIP_IF_NO_PERMISSION(r);
  expect_loopback_stats(r, 3);
}

TEST_F(PingProbe, BadTargetsAreInvalidConfig) {
  struct Case {
    std::string target;
    std::string expected;
  };
  const Case cases[] = {
      {"", "target is empty; expected a host name or an IP address"},
      {"example.com:80", "target 'example.com:80': ping takes no port"},
      {"[::1]:80", "ping takes no port"},
      {"[example.com]", "'example.com' is not an IPv6 address"},
      {"bad host", "invalid character in host name"},
      {"http://example.com", "invalid character in host name"},
      {std::string(254, 'a'), "host name longer than 253 characters"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(c.target);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.target;
    EXPECT_NE(r.start_error.find(c.expected), std::string::npos)
        << "target '" << c.target << "' gave: " << r.start_error;
  }
}

TEST_F(PingProbe, AddressLiteralOfTheOtherFamilyIsInvalidConfig) {
  CheckRun r = run("127.0.0.1", R"({"ipFamily":"ipv6"})");
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
  EXPECT_NE(r.start_error.find("option 'ipFamily'"), std::string::npos) << r.start_error;
  r = run("::1", R"({"ipFamily":"ipv4"})");
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
}

TEST_F(PingProbe, UnknownOptionsAreNotAnError) {
  CheckRun r = run_up("127.0.0.1", R"({"packets":1,"pakcets":5})");
  SKIP_IF_NO_PERMISSION(r);
  EXPECT_EQ(r.status, Status::Up) << r.start_error << r.message;
}

// ------------------------------------------------------------------------
// The wire format (icmp.hpp, compiled into the probe and into this test)
// ------------------------------------------------------------------------

TEST(PingIcmp, ChecksumOfAnEchoRequest) {
  const uint8_t payload[] = {'a', 'b', 'c'};
  auto pkt = icmp::build_echo_request(false, 0x1234, 0x0001, payload, sizeof payload);
  ASSERT_EQ(pkt.size(), 11u);
  EXPECT_EQ(pkt[0], 8);
  EXPECT_EQ(icmp::read16(&pkt[4]), 0x1234);
  EXPECT_EQ(icmp::read16(&pkt[6]), 0x0001);
  // Summing a message with its checksum in place gives 0.
  EXPECT_EQ(icmp::checksum(pkt.data(), pkt.size()), 0);
  // RFC 1071's worked example: 00 01 f2 03 f4 f5 f6 f7 sums to ddf2.
  const uint8_t rfc[] = {0x00, 0x01, 0xf2, 0x03, 0xf4, 0xf5, 0xf6, 0xf7};
  EXPECT_EQ(icmp::checksum(rfc, sizeof rfc), static_cast<uint16_t>(~0xddf2));
  // ICMPv6: the kernel checksums; type 128.
  auto v6 = icmp::build_echo_request(true, 7, 9, nullptr, 0);
  EXPECT_EQ(v6[0], 128);
  EXPECT_EQ(icmp::read16(&v6[2]), 0);
}

TEST(PingIcmp, ParsesAnIpv4ReplyWithAndWithoutIpHeader) {
  std::vector<uint8_t> ip(20, 0);
  ip[0] = 0x45;
  ip[8] = 57;  // TTL
  ip[9] = 1;   // ICMP
  const uint8_t body[] = {1, 2, 3, 4};
  auto echo = icmp::build_echo_request(false, 0xBEEF, 42, body, sizeof body);
  echo[0] = 0;  // echo reply
  std::vector<uint8_t> raw = ip;
  raw.insert(raw.end(), echo.begin(), echo.end());

  auto m = icmp::parse_v4(raw.data(), raw.size(), true);
  EXPECT_EQ(m.kind, icmp::Message::Kind::EchoReply);
  EXPECT_EQ(m.id, 0xBEEF);
  EXPECT_EQ(m.seq, 42);
  EXPECT_EQ(m.ttl, 57);
  ASSERT_EQ(m.payload_len, 4u);
  EXPECT_EQ(std::memcmp(m.payload, body, 4), 0);

  m = icmp::parse_v4(echo.data(), echo.size(), false);
  EXPECT_EQ(m.kind, icmp::Message::Kind::EchoReply);
  EXPECT_EQ(m.ttl, -1);

  // Our own request looping back on a raw socket is not a reply.
  echo[0] = 8;
  EXPECT_EQ(icmp::parse_v4(echo.data(), echo.size(), false).kind, icmp::Message::Kind::Other);
  // Truncated.
  EXPECT_EQ(icmp::parse_v4(raw.data(), 25, true).kind, icmp::Message::Kind::Other);
}

TEST(PingIcmp, ParsesAnIpv4ErrorQuotingOurRequest) {
  // Host unreachable from 10.0.0.1 about our request to 10.0.0.9.
  std::vector<uint8_t> outer(20, 0);
  outer[0] = 0x45;
  outer[9] = 1;
  std::vector<uint8_t> err = {3, 1, 0, 0, 0, 0, 0, 0};
  std::vector<uint8_t> quoted_ip(20, 0);
  quoted_ip[0] = 0x45;
  quoted_ip[9] = 1;
  const uint8_t dst[] = {10, 0, 0, 9};
  std::memcpy(&quoted_ip[16], dst, 4);
  auto req = icmp::build_echo_request(false, 0x0102, 7, nullptr, 0);
  std::vector<uint8_t> pkt = outer;
  pkt.insert(pkt.end(), err.begin(), err.end());
  pkt.insert(pkt.end(), quoted_ip.begin(), quoted_ip.end());
  pkt.insert(pkt.end(), req.begin(), req.end());

  auto m = icmp::parse_v4(pkt.data(), pkt.size(), true);
  EXPECT_EQ(m.kind, icmp::Message::Kind::Error);
  EXPECT_EQ(m.type, 3);
  EXPECT_EQ(m.code, 1);
  EXPECT_EQ(m.id, 0x0102);
  EXPECT_EQ(m.seq, 7);
  ASSERT_EQ(m.quoted_dst_len, 4u);
  EXPECT_EQ(std::memcmp(m.quoted_dst, dst, 4), 0);
  EXPECT_EQ(icmp::error_text(false, m.type, m.code), "host unreachable");
  EXPECT_EQ(icmp::error_text(false, 11, 0), "TTL exceeded in transit");
}

TEST(PingIcmp, ParsesIpv6RepliesAndErrors) {
  auto reply = icmp::build_echo_request(true, 5, 6, nullptr, 0);
  reply[0] = 129;
  auto m = icmp::parse_v6(reply.data(), reply.size());
  EXPECT_EQ(m.kind, icmp::Message::Kind::EchoReply);
  EXPECT_EQ(m.seq, 6);

  std::vector<uint8_t> pkt = {1, 3, 0, 0, 0, 0, 0, 0};  // address unreachable
  std::vector<uint8_t> quoted_ip(40, 0);
  quoted_ip[0] = 0x60;
  quoted_ip[6] = 58;
  quoted_ip[39] = 2;  // destination ...::2
  auto req = icmp::build_echo_request(true, 5, 6, nullptr, 0);
  pkt.insert(pkt.end(), quoted_ip.begin(), quoted_ip.end());
  pkt.insert(pkt.end(), req.begin(), req.end());
  m = icmp::parse_v6(pkt.data(), pkt.size());
  EXPECT_EQ(m.kind, icmp::Message::Kind::Error);
  EXPECT_EQ(m.seq, 6);
  ASSERT_EQ(m.quoted_dst_len, 16u);
  EXPECT_EQ(m.quoted_dst[15], 2);
  EXPECT_EQ(icmp::error_text(true, m.type, m.code), "address unreachable");

  // A neighbour advertisement (136) is nothing to a pinger.
  std::vector<uint8_t> na = {136, 0, 0, 0, 0, 0, 0, 0};
  EXPECT_EQ(icmp::parse_v6(na.data(), na.size()).kind, icmp::Message::Kind::Other);
}

// ------------------------------------------------------------------------
// Neither socket kind permitted
// ------------------------------------------------------------------------

TEST(PingPermission, MessageNamesTheSysctlAndTheCapability) {
  std::string m = icmp::permission_message(4, EACCES, EPERM, "1\t0\n", 1000);
  EXPECT_NE(m.find("net.ipv4.ping_group_range"), std::string::npos) << m;
  EXPECT_NE(m.find("= \"1 0\""), std::string::npos) << m;
  EXPECT_NE(m.find("group 1000"), std::string::npos) << m;
  EXPECT_NE(m.find("CAP_NET_RAW"), std::string::npos) << m;
  EXPECT_NE(m.find(std::strerror(EACCES)), std::string::npos) << m;
  EXPECT_NE(m.find(std::strerror(EPERM)), std::string::npos) << m;
  EXPECT_NE(m.find("sysctl -w net.ipv4.ping_group_range=\"1000 1000\""), std::string::npos) << m;

  std::string m6 = icmp::permission_message(6, EACCES, EPERM, "", 5);
  EXPECT_TRUE(starts_with(m6, "cannot open an ICMPv6 socket")) << m6;
  // One sysctl governs both families' datagram sockets; say so.
  EXPECT_NE(m6.find("net.ipv4.ping_group_range, which also governs ICMPv6"), std::string::npos)
      << m6;
  EXPECT_NE(m6.find("CAP_NET_RAW"), std::string::npos);
}

namespace {

// In a forked child: a fresh network namespace (whose ping_group_range
// defaults to "1 0", i.e. nobody) and no CAP_NET_RAW, then a ping through
// the fake host. Returns "SKIP <why>" or "<status> <reason>\n<message>".
std::string ping_without_permission() {
  std::string notes;
  if (::unshare(CLONE_NEWNET) == 0) {
    // Be explicit rather than rely on the kernel's default for a new netns.
    std::FILE* f = std::fopen("/proc/sys/net/ipv4/ping_group_range", "w");
    if (f) {
      std::fputs("1 0", f);
      std::fclose(f);
    }
  } else {
    notes = std::string("(unshare(CLONE_NEWNET): ") + std::strerror(errno) + ") ";
  }
  __user_cap_header_struct hdr{_LINUX_CAPABILITY_VERSION_3, 0};
  __user_cap_data_struct data[2] = {};
  if (::syscall(SYS_capget, &hdr, data) == 0) {
    const unsigned idx = CAP_NET_RAW / 32, bit = 1u << (CAP_NET_RAW % 32);
    data[idx].effective &= ~bit;
    data[idx].permitted &= ~bit;
    data[idx].inheritable &= ~bit;
    ::syscall(SYS_capset, &hdr, data);
  }
  int probe = ::socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
  if (probe >= 0) {
    ::close(probe);
    return "SKIP cannot drop CAP_NET_RAW in a child " + notes;
  }
  probe = ::socket(AF_INET, SOCK_DGRAM, IPPROTO_ICMP);
  if (probe >= 0) {
    ::close(probe);
    return "SKIP net.ipv4.ping_group_range admits this process's group and could not be "
           "narrowed in a private network namespace " +
           notes;
  }
  FakeHost host;
  if (!host.load(kPluginPath)) return "ERROR " + host.last_error();
  CheckRun r = host.run_check("ping", "127.0.0.1", R"({"packets":1})", 5s);
  if (!r.started()) return "ERROR start: " + r.start_error;
  return std::to_string(static_cast<int>(r.status)) + " " + r.failure_reason + "\n" + r.message;
}

}  // namespace

TEST(PingPermission, NeitherSocketKindAllowedIsInconclusiveNamingBoth) {
  int fds[2];
  ASSERT_EQ(::pipe2(fds, O_CLOEXEC), 0);
  pid_t pid = ::fork();
  ASSERT_GE(pid, 0) << std::strerror(errno);
  if (pid == 0) {
    ::close(fds[0]);
    std::string out = ping_without_permission();
    size_t off = 0;
    while (off < out.size()) {
      ssize_t n = ::write(fds[1], out.data() + off, out.size() - off);
      if (n <= 0) break;
      off += static_cast<size_t>(n);
    }
    ::_exit(0);
  }
  ::close(fds[1]);
  std::string out;
  auto end = std::chrono::steady_clock::now() + 20s;
  for (;;) {
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fds[0], POLLIN, 0};
    if (::poll(&p, 1, static_cast<int>(left.count())) <= 0) break;
    char buf[1024];
    ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  ::close(fds[0]);
  // The pipe closes a moment before the child is reapable: wait for it,
  // bounded.
  int status = 0;
  pid_t done = 0;
  while ((done = ::waitpid(pid, &status, WNOHANG)) == 0 && std::chrono::steady_clock::now() < end)
    std::this_thread::sleep_for(5ms);
  if (done == 0) {
    ::kill(pid, SIGKILL);
    ::waitpid(pid, &status, 0);
    FAIL() << "the child did not finish within 20 s; output so far: " << out;
  }
  if (starts_with(out, "SKIP ")) GTEST_SKIP() << out.substr(5);
  ASSERT_FALSE(starts_with(out, "ERROR")) << out;
  const std::string expected_head =
      std::to_string(static_cast<int>(Status::Inconclusive)) + " worker_error\n";
  ASSERT_TRUE(starts_with(out, expected_head)) << out;
  const std::string message = out.substr(expected_head.size());
  EXPECT_NE(message.find("net.ipv4.ping_group_range"), std::string::npos) << message;
  EXPECT_NE(message.find("CAP_NET_RAW"), std::string::npos) << message;
  EXPECT_TRUE(starts_with(message, "cannot open an ICMP socket")) << message;
}
