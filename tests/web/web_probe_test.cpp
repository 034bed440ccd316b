// The `web` probe, loaded from the built probe_web.so through the fake host
// exactly as a third-party plugin would be, against servers the test starts
// on 127.0.0.1 / ::1 (its own HTTP(S) server, nghttpd for HTTP/2) and, for
// what loopback cannot show, inside a network namespace of its own. No
// traffic leaves the machine.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <chrono>
#include <filesystem>
#include <fstream>
#include <guardant/fake_host.hpp>
#include <guardant/json.hpp>
#include <set>
#include <string>
#include <vector>

#include "support/probe_test.hpp"
#include "test_pki.hpp"
#include "test_server.hpp"
#include "web_test_util.hpp"

using guardant::Status;
using guardant::testing::CheckRun;
using guardant::testing::FakeHost;
using namespace std::chrono_literals;
namespace json = guardant::json;
namespace wt = guardant::webtest;

namespace {

const std::string kPluginPath = std::string(GUARDANT_TEST_PLUGIN_DIR) + "/probe_web.so";

bool contains(const std::string& s, const std::string& part) {
  return s.find(part) != std::string::npos;
}

// Every phase that happened is >= 0 and together they make the total.
void expect_phases_add_up(const CheckRun& r) {
  ASSERT_TRUE(r.timings.has_value());
  const auto& t = *r.timings;
  double sum = 0;
  for (double p : {t.resolve_ms, t.connect_ms, t.tls_ms, t.wait_ms, t.transfer_ms})
    if (p >= 0) sum += p;
  EXPECT_NEAR(sum, t.total_ms, 0.01)
      << "resolve " << t.resolve_ms << " connect " << t.connect_ms << " tls " << t.tls_ms
      << " wait " << t.wait_ms << " transfer " << t.transfer_ms;
  EXPECT_DOUBLE_EQ(r.response_time_ms, t.total_ms);
  EXPECT_LT(t.send_ms, 0.0);  // not measured separately: part of wait
}

std::string json_str(const std::string& s) {
  return json::quote(s);
}

// The fake host with the probe loaded; after each test nothing may be left
// outstanding and the host contract must hold.
class WebProbeBase : public guardant::test::ProbeTest {
 protected:
  WebProbeBase() : ProbeTest(kPluginPath, "web", 10s) {}
  // One check; once it has ended nothing of it may be left with the host.
  CheckRun run(const std::string& target, const std::string& config = "{}",
               std::chrono::nanoseconds timeout = 10s) {
    CheckRun r = ProbeTest::run(target, config, timeout);
    expect_nothing_outstanding(config);
    return r;
  }
};

class WebProbe : public WebProbeBase {
 protected:
  void SetUp() override {
    WebProbeBase::SetUp();
    ASSERT_TRUE(server_.error().empty()) << server_.error();
  }
  wt::TestServer server_;
};

}  // namespace

// ---------------------------------------------------------------------------
// Plain HTTP

TEST_F(WebProbe, DescribesItself) {
  EXPECT_STREQ(desc_->name, "guardant-web");
  EXPECT_STREQ(desc_->version, GUARDANT_EXPECTED_PLUGIN_VERSION);
  ASSERT_EQ(desc_->probe_type_count, 1u);
  const guardant_probe_type& t = desc_->probe_types[0];
  EXPECT_STREQ(t.name, "web");
  EXPECT_EQ(t.capability_flags, GUARDANT_CAP_IPV4 | GUARDANT_CAP_IPV6 | GUARDANT_CAP_TLS);
  ASSERT_NE(t.options_schema_json, nullptr);
  auto schema = json::parse(t.options_schema_json);
  for (const char* key :
       {"timeout",         "method",       "headers",        "body",      "httpVersion",
        "followRedirects", "maxRedirects", "expectedStatus", "keyword",   "invertKeyword",
        "regex",           "invertRegex",  "headerRegex",    "jsonPath",  "expectedValue",
        "maxBodyBytes",    "basicAuth",    "bearerToken",    "proxy",     "tlsVerify",
        "servername",      "caFile",       "clientCert",     "clientKey", "degradedAboveMs",
        "certExpiryDays",  "ipFamily"})
    EXPECT_TRUE(schema["properties"].find(key)) << key;
}

TEST_F(WebProbe, UpWithBodyDetailsAndTimings) {
  CheckRun r = run(server_.url("/ok"));
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_TRUE(r.completed);
  EXPECT_FALSE(r.timed_out);
  ASSERT_EQ(r.status, Status::Up) << r.message << " / " << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 200);
  EXPECT_TRUE(r.failure_reason.empty());
  EXPECT_TRUE(contains(r.message, "HTTP 200 in ")) << r.message;
  EXPECT_GT(r.response_time_ms, 0.0);
  EXPECT_LT(r.response_time_ms, 2000.0);

  auto d = r.details();
  EXPECT_EQ(d["ip"].as_string(), "127.0.0.1");
  EXPECT_EQ(d["family"].as_int64(), 4);
  EXPECT_EQ(d["port"].as_int64(), server_.port());
  EXPECT_EQ(d["method"].as_string(), "GET");
  EXPECT_EQ(d["httpVersion"].as_string(), "1.1");
  EXPECT_EQ(d["redirects"].as_int64(), 0);
  EXPECT_EQ(d["finalUrl"].as_string(), server_.url("/ok"));
  EXPECT_EQ(d["bodyBytes"].as_int64(), static_cast<int64_t>(std::strlen(wt::kOkBody)));
  EXPECT_EQ(d["contentType"].as_string(), "text/plain");
  EXPECT_TRUE(d["tls"].is_null());  // plain http

  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->resolve_ms, 0.0);
  EXPECT_GE(r.timings->connect_ms, 0.0);
  EXPECT_LT(r.timings->tls_ms, 0.0);  // no TLS on http
  EXPECT_GE(r.timings->wait_ms, 0.0);
  EXPECT_GE(r.timings->transfer_ms, 0.0);
  expect_phases_add_up(r);

  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].method, "GET");  // never a silent HEAD
  EXPECT_EQ(reqs[0].target, "/ok");
  EXPECT_EQ(reqs[0].header("User-Agent"), "Guardant-Worker/" GUARDANT_EXPECTED_PLUGIN_VERSION);
}

TEST_F(WebProbe, UpThroughAHostNameResolvedByTheHost) {
  // localhost comes from /etc/hosts: no DNS query leaves the machine.
  CheckRun r =
      run("http://localhost:" + std::to_string(server_.port()) + "/ok", R"({"ipFamily":"ipv4"})");
  ASSERT_EQ(r.status, Status::Up) << r.message << " / " << r.failure_detail;
  EXPECT_EQ(r.details()["ip"].as_string(), "127.0.0.1");
  EXPECT_EQ(r.details()["family"].as_int64(), 4);
  EXPECT_GE(r.timings->resolve_ms, 0.0);
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].header("Host"), "localhost:" + std::to_string(server_.port()));
}

TEST_F(WebProbe, EveryCheckOpensAFreshConnection) {
  for (int i = 0; i < 3; ++i) ASSERT_EQ(run(server_.url("/ok")).status, Status::Up);
  EXPECT_EQ(server_.connections(), 3u);
}

TEST_F(WebProbe, ServiceUnavailableIsHttpStatus) {
  CheckRun r = run(server_.url("/status/503"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "http_status");
  EXPECT_EQ(r.failure_phase, "assert");
  EXPECT_EQ(r.failure_detail, "HTTP 503, expected 200-299");
  EXPECT_EQ(r.message, "HTTP 503, expected 200-299");
  EXPECT_EQ(r.protocol_code, 503);
  expect_phases_add_up(r);
  EXPECT_GE(r.timings->transfer_ms, 0.0);  // the whole response was read
}

TEST_F(WebProbe, NotFoundIsHttpStatusUnlessExpected) {
  CheckRun r = run(server_.url("/status/404"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "http_status");
  EXPECT_EQ(r.protocol_code, 404);
  r = run(server_.url("/status/404"), R"({"expectedStatus":404})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 404);
}

TEST_F(WebProbe, ExpectedStatusListsClassesAndRanges) {
  struct Case {
    std::string config;
    std::string path;
    bool up;
    std::string detail;
  };
  const Case cases[] = {
      {R"({"expectedStatus":[200,204]})", "/status/204", true, ""},
      {R"({"expectedStatus":"4xx"})", "/status/418", true, ""},
      {R"({"expectedStatus":"500-503"})", "/status/503", true, ""},
      {R"({"expectedStatus":"201"})", "/status/201", true, ""},
      {R"({"expectedStatus":[200,"3xx","500-502"]})", "/status/503", false,
       "HTTP 503, expected 200, 3xx, 500-502"},
      {R"({"expectedStatus":"2xx"})", "/status/301", false, "HTTP 301, expected 2xx"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(server_.url(c.path), c.config);
    EXPECT_EQ(r.status, c.up ? Status::Up : Status::Down) << c.config << ": " << r.failure_detail;
    if (!c.up) {
      EXPECT_EQ(r.failure_detail, c.detail) << c.config;
    }
  }
}

TEST_F(WebProbe, FollowsARedirectChain) {
  CheckRun r = run(server_.url("/redirect/3"));
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 200);
  auto d = r.details();
  EXPECT_EQ(d["redirects"].as_int64(), 3);
  EXPECT_EQ(d["finalUrl"].as_string(), server_.url("/redirect/0"));
  EXPECT_EQ(server_.requests().size(), 4u);
  EXPECT_EQ(server_.connections(), 4u);  // a fresh connection per hop too
  expect_phases_add_up(r);
}

TEST_F(WebProbe, RedirectNotFollowedIsJudgedByItsStatus) {
  CheckRun r = run(server_.url("/redirect/2"), R"({"followRedirects":false})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "http_status");
  EXPECT_EQ(r.failure_detail, "HTTP 302, expected 200-299");
  EXPECT_EQ(r.details()["redirects"].as_int64(), 0);
  EXPECT_EQ(r.details()["redirectUrl"].as_string(), server_.url("/redirect/1"));
  EXPECT_EQ(server_.requests().size(), 1u);

  r = run(server_.url("/redirect/2"), R"({"followRedirects":false,"expectedStatus":"3xx"})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 302);
}

TEST_F(WebProbe, RedirectHopLimit) {
  CheckRun r = run(server_.url("/redirect/5"), R"({"maxRedirects":2})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "too_many_redirects");
  EXPECT_EQ(r.failure_phase, "assert");
  EXPECT_TRUE(contains(r.failure_detail, "more than 2 redirects")) << r.failure_detail;
  EXPECT_EQ(r.details()["redirects"].as_int64(), 2);
  // Exactly at the limit is fine.
  r = run(server_.url("/redirect/2"), R"({"maxRedirects":2})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(server_.url("/redirect/1"), R"({"maxRedirects":0})");
  EXPECT_EQ(r.failure_reason, "too_many_redirects");
}

TEST_F(WebProbe, CookiesSetAlongARedirectAreSentOn) {
  CheckRun r = run(server_.url("/cookie-set"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(WebProbe, SlowResponseTimesOutWaitingForTheFirstByte) {
  CheckRun r = run(server_.url("/slow/3000"), R"({"timeout":300})");
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_FALSE(r.timed_out) << "the probe must answer before the host's deadline";
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail, "waiting for the first byte")) << r.failure_detail;
  EXPECT_GE(r.response_time_ms, 295.0);
  EXPECT_LT(r.elapsed_ms, 1500.0);
  expect_phases_add_up(r);
  EXPECT_LT(r.timings->transfer_ms, 0.0);  // never got there
  EXPECT_GE(r.timings->wait_ms, 250.0);
}

TEST_F(WebProbe, HostDeadlineBoundsTheCheck) {
  // No timeout option and a 1 s host deadline: the probe ends on its own,
  // with the precise phase, a little before the host would give up.
  CheckRun r = run(server_.url("/slow/5000"), "{}", 1s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.failure_reason, "timeout");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_LT(r.elapsed_ms, 1000.0);
  EXPECT_GT(r.elapsed_ms, 800.0);
  r = run(server_.url("/slow/5000"), R"({"timeout":60000})", 1s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_LT(r.elapsed_ms, 1000.0);
}

TEST_F(WebProbe, ResponseStallingMidBodyTimesOutInTransfer) {
  CheckRun r = run(server_.url("/stall"), R"({"timeout":500})");
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout");
  EXPECT_EQ(r.failure_phase, "transfer");
  EXPECT_TRUE(contains(r.failure_detail, "stalled")) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 200);
  EXPECT_EQ(r.details()["bodyBytes"].as_int64(), 1000);
  expect_phases_add_up(r);
  EXPECT_GE(r.timings->transfer_ms, 400.0);
}

TEST_F(WebProbe, ConnectionClosedMidBody) {
  CheckRun r = run(server_.url("/partial"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "connection_closed");
  EXPECT_EQ(r.failure_phase, "transfer");
  EXPECT_EQ(r.details()["bodyBytes"].as_int64(), 1000);
}

TEST_F(WebProbe, ConnectionClosedWithoutAnswer) {
  CheckRun r = run(server_.url("/close"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "connection_closed");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail, "without answering")) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 0);
}

TEST_F(WebProbe, HugeBodyStopsAtTheLimit) {
  // Default limit 1 MiB; the server offers 8 MiB.
  CheckRun r = run(server_.url("/huge/8388608"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "body_limit");
  EXPECT_EQ(r.failure_phase, "transfer");
  EXPECT_TRUE(contains(r.failure_detail, "1048576")) << r.failure_detail;
  EXPECT_LE(r.details()["bodyBytes"].as_int64(), 1048576 + 65536);
  // Chunked (no Content-Length up front) is cut the same way.
  r = run(server_.url("/huge-chunked/8388608"), R"({"maxBodyBytes":100000})");
  EXPECT_EQ(r.failure_reason, "body_limit");
  // Within the limit it is read whole.
  r = run(server_.url("/huge/2000000"), R"({"maxBodyBytes":2000000})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.details()["bodyBytes"].as_int64(), 2000000);
}

TEST_F(WebProbe, ClosedPortIsConnectRefused) {
  uint16_t port = wt::closed_port();
  CheckRun r = run("http://127.0.0.1:" + std::to_string(port) + "/");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "connect_refused") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "connect");
  EXPECT_TRUE(contains(r.failure_detail, "refused")) << r.failure_detail;
  EXPECT_EQ(r.details()["ip"].as_string(), "127.0.0.1");
  EXPECT_EQ(r.details()["port"].as_int64(), port);
  expect_phases_add_up(r);
  EXPECT_LT(r.timings->wait_ms, 0.0);
}

TEST_F(WebProbe, ConnectTimeoutAgainstAFullBacklog) {
  wt::FullBacklog b = wt::fill_backlog();
  if (!b.error.empty()) GTEST_SKIP() << "cannot make a connect hang on loopback: " << b.error;
  CheckRun r =
      run("http://127.0.0.1:" + std::to_string(b.listener.port) + "/", R"({"timeout":300})");
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "connect_timeout") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "connect");
  expect_phases_add_up(r);
  EXPECT_GE(r.timings->connect_ms, 250.0);
}

TEST_F(WebProbe, DegradedAboveAResponseTimeThreshold) {
  CheckRun r = run(server_.url("/slow/150"), R"({"degradedAboveMs":50})");
  EXPECT_EQ(r.status, Status::Degraded) << r.message;
  EXPECT_EQ(r.failure_reason, "slow_response");
  EXPECT_TRUE(contains(r.failure_detail, "degradedAboveMs 50.00 ms")) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 200);
  r = run(server_.url("/ok"), R"({"degradedAboveMs":5000})");
  EXPECT_EQ(r.status, Status::Up);
}

TEST_F(WebProbe, MethodsAndBodiesAreSentAsConfigured) {
  CheckRun r = run(server_.url("/echo"), R"({"method":"POST","body":"a=1&b=2"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(server_.url("/echo"),
          R"({"method":"put","body":{"hello":"world"},"headers":{"X-Test":"yes"}})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(server_.url("/echo"), R"({"method":"HEAD"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.details()["bodyBytes"].as_int64(), 0);
  EXPECT_EQ(r.details()["method"].as_string(), "HEAD");
  r = run(server_.url("/echo"), R"({"method":"DELETE"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(server_.url("/echo"), R"({"method":"POST"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;

  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 5u);
  EXPECT_EQ(reqs[0].method, "POST");
  EXPECT_EQ(reqs[0].body, "a=1&b=2");
  EXPECT_TRUE(reqs[0].header("Expect").empty());  // no 100-continue round trip
  EXPECT_EQ(reqs[1].method, "PUT");
  EXPECT_EQ(reqs[1].body, R"({"hello":"world"})");
  EXPECT_EQ(reqs[1].header("Content-Type"), "application/json");
  EXPECT_EQ(reqs[1].header("X-Test"), "yes");
  EXPECT_EQ(reqs[2].method, "HEAD");
  EXPECT_EQ(reqs[3].method, "DELETE");
  EXPECT_EQ(reqs[4].method, "POST");
  EXPECT_EQ(reqs[4].header("Content-Length"), "0");
}

TEST_F(WebProbe, HeadersReplaceDefaultsAndMayComeAsAJsonString) {
  CheckRun r =
      run(server_.url("/ok"),
          R"({"headers":{"User-Agent":"custom-agent/1","Accept":"text/plain","X-Empty":""}})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(server_.url("/ok"), R"({"headers":"{\"X-From-String\":\"1\"}"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 2u);
  EXPECT_EQ(reqs[0].header("User-Agent"), "custom-agent/1");
  EXPECT_EQ(reqs[0].header("Accept"), "text/plain");
  bool has_empty = false;
  for (const auto& [n, v] : reqs[0].headers) has_empty |= n == "X-Empty" && v.empty();
  EXPECT_TRUE(has_empty);
  EXPECT_EQ(reqs[1].header("X-From-String"), "1");
}

TEST_F(WebProbe, KeywordAndItsInverse) {
  EXPECT_EQ(run(server_.url("/ok"), R"({"keyword":"status ok"})").status, Status::Up);
  CheckRun r = run(server_.url("/ok"), R"({"keyword":"Status OK"})");  // case-sensitive
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_EQ(r.failure_phase, "assert");
  EXPECT_TRUE(contains(r.failure_detail, "keyword \"Status OK\" not found in the body"))
      << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 200);
  r = run(server_.url("/ok"), R"({"keyword":"status ok","invertKeyword":true})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_TRUE(contains(r.failure_detail, "found in the body (invertKeyword)")) << r.failure_detail;
  EXPECT_EQ(run(server_.url("/ok"), R"({"keyword":"error","invertKeyword":true})").status,
            Status::Up);
}

TEST_F(WebProbe, RegexAndItsInverse) {
  EXPECT_EQ(run(server_.url("/ok"), R"({"regex":"status\\s+ok$"})").status, Status::Up);
  EXPECT_EQ(run(server_.url("/ok"), R"({"regex":"(?i)STATUS OK"})").status, Status::Up);
  EXPECT_EQ(run(server_.url("/json"), R"({"regex":"\"count\":\\d+"})").status, Status::Up);
  CheckRun r = run(server_.url("/ok"), R"({"regex":"^status"})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "does not match the body")) << r.failure_detail;
  r = run(server_.url("/ok"), R"({"regex":"ok","invertRegex":true})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_TRUE(contains(r.failure_detail, "(invertRegex)")) << r.failure_detail;
  EXPECT_EQ(run(server_.url("/ok"), R"({"regex":"fail|error","invertRegex":true})").status,
            Status::Up);
}

TEST_F(WebProbe, PathologicalRegexIsBoundedNotAHang) {
  // Catastrophic backtracking over 200 kB: PCRE2's limits end it quickly and
  // the check is inconclusive (the worker could not judge), not a hang.
  auto t0 = std::chrono::steady_clock::now();
  CheckRun r = run(server_.url("/huge/200000"), R"({"regex":"(x+x+)+\\d"})");
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  EXPECT_EQ(r.status, Status::Inconclusive) << r.failure_detail;
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "could not be evaluated")) << r.failure_detail;
  EXPECT_LT(ms, 3000);
  // A ".*" over a long line is fine (std::regex would overflow the stack).
  r = run(server_.url("/huge/1000000"), R"({"regex":"^x.*x$"})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(WebProbe, HeaderRegex) {
  EXPECT_EQ(run(server_.url("/headers"), R"({"headerRegex":{"x-guardant":"^probe-ok$"}})").status,
            Status::Up);
  EXPECT_EQ(run(server_.url("/headers"), R"({"headerRegex":"Cache-Control: no-store"})").status,
            Status::Up);
  EXPECT_EQ(
      run(server_.url("/headers"), R"({"headerRegex":["Content-Type: ^text/","X-Guardant: ok$"]})")
          .status,
      Status::Up);
  CheckRun r = run(server_.url("/headers"), R"({"headerRegex":{"X-Guardant":"^broken"}})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "response header 'X-Guardant' does not match"))
      << r.failure_detail;
  r = run(server_.url("/headers"), R"({"headerRegex":{"X-Missing":"."}})");
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "'X-Missing' is missing")) << r.failure_detail;
  // Only the final response's headers count, not a redirect's.
  r = run(server_.url("/redirect/1"), R"({"headerRegex":{"Location":"."}})");
  EXPECT_EQ(r.failure_reason, "assertion");
}

TEST_F(WebProbe, JsonPathChecks) {
  struct Case {
    std::string config;
    bool up;
    std::string detail;
  };
  const Case cases[] = {
      {R"({"jsonPath":"$.status","expectedValue":"ok"})", true, ""},
      {R"({"jsonPath":"data.items[0].ok","expectedValue":true})", true, ""},
      {R"({"jsonPath":"$.data.items[0].n","expectedValue":3})", true, ""},
      {R"({"jsonPath":"$.count","expectedValue":"42"})", true, ""},  // compared as text too
      {R"({"jsonPath":"$['odd key'][2]","expectedValue":3})", true, ""},
      {R"({"jsonPath":"$.data.items","expectedValue":[{"ok":true,"n":3},{"ok":false}]})", true, ""},
      {R"({"jsonPath":"$.version"})", true, ""},  // exists
      {R"({"jsonPath":"$.data.items[1].ok","expectedValue":true})", false,
       "jsonPath \"$.data.items[1].ok\" is false, expected true"},
      {R"({"jsonPath":"$.status","expectedValue":"down"})", false,
       "jsonPath \"$.status\" is \"ok\", expected \"down\""},
      {R"({"jsonPath":"$.nothing"})", false, "jsonPath \"$.nothing\" not found in the body"},
      {R"({"jsonPath":"$.data.items[7]"})", false, "not found in the body"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(server_.url("/json"), c.config);
    EXPECT_EQ(r.status, c.up ? Status::Up : Status::Down) << c.config << ": " << r.failure_detail;
    if (!c.up) {
      EXPECT_EQ(r.failure_reason, "assertion") << c.config;
      EXPECT_TRUE(contains(r.failure_detail, c.detail)) << c.config << ": " << r.failure_detail;
    }
  }
  CheckRun r = run(server_.url("/notjson"), R"({"jsonPath":"$.status","expectedValue":"ok"})");
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "the body is not JSON")) << r.failure_detail;
}

TEST_F(WebProbe, BasicAndBearerAuthAreSentAndNeverShown) {
  const std::string password = "pa55-w0rd-secret";
  CheckRun r = run(server_.url("/auth"),
                   R"({"basicAuth":{"username":"alice","password":")" + password + R"("}})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  const std::string token = "tok-abc-123-secret";
  CheckRun r2 = run(server_.url("/auth"), R"({"bearerToken":")" + token + R"("})");
  ASSERT_EQ(r2.status, Status::Up) << r2.failure_detail;
  CheckRun r3 = run(server_.url("/auth"));
  EXPECT_EQ(r3.failure_detail, "HTTP 401, expected 200-299");

  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 3u);
  EXPECT_EQ(reqs[0].header("Authorization"), "Basic YWxpY2U6cGE1NS13MHJkLXNlY3JldA==");
  EXPECT_EQ(reqs[1].header("Authorization"), "Bearer " + token);
  for (const CheckRun* c : {&r, &r2, &r3}) {
    for (const std::string& secret : {password, token, std::string("YWxpY2U6cGE1NS13MHJk")}) {
      EXPECT_FALSE(contains(c->message, secret));
      EXPECT_FALSE(contains(c->details_json, secret));
      EXPECT_FALSE(contains(c->failure_detail, secret));
    }
  }
  for (const auto& l : host_.logs()) {
    EXPECT_FALSE(contains(l.message, password));
    EXPECT_FALSE(contains(l.message, token));
  }
}

TEST_F(WebProbe, CredentialsInTheTargetNeverAppearInResults) {
  std::string target =
      "http://bob:hunter2-secret@127.0.0.1:" + std::to_string(server_.port()) + "/auth";
  CheckRun r = run(target);
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.details()["finalUrl"].as_string(), server_.url("/auth"));
  EXPECT_FALSE(contains(r.details_json, "hunter2"));
  EXPECT_FALSE(contains(r.message, "hunter2"));
  // Also when the check fails, and in config errors.
  r = run("http://bob:hunter2-secret@127.0.0.1:" + std::to_string(wt::closed_port()) + "/");
  EXPECT_EQ(r.failure_reason, "connect_refused");
  EXPECT_FALSE(contains(r.details_json + r.message + r.failure_detail, "hunter2"));
  r = run("ftp://bob:hunter2-secret@127.0.0.1/");
  EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG);
  EXPECT_FALSE(contains(r.start_error, "hunter2")) << r.start_error;
}

TEST_F(WebProbe, ProxyIsUsedWhenConfiguredAndOnlyThen) {
  // The test server also acts as an HTTP proxy (it answers absolute-form
  // requests itself), so the target's name is never resolved.
  const std::string proxy = "http://127.0.0.1:" + std::to_string(server_.port());
  CheckRun r = run("http://proxied.guardant.test/ok",
                   R"({"proxy":)" + json_str(proxy) + R"(,"keyword":"via proxy"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  auto reqs = server_.requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].target, "http://proxied.guardant.test/ok");

  // A proxy in the environment is ignored.
  const std::string dead_proxy = "http://127.0.0.1:" + std::to_string(wt::closed_port());
  ::setenv("http_proxy", dead_proxy.c_str(), 1);
  ::setenv("HTTP_PROXY", dead_proxy.c_str(), 1);
  r = run(server_.url("/ok"));
  ::unsetenv("http_proxy");
  ::unsetenv("HTTP_PROXY");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;

  // A proxy that refuses is a connect failure that says so.
  r = run("http://proxied.guardant.test/ok", R"({"proxy":)" + json_str(dead_proxy) + "}");
  EXPECT_EQ(r.failure_reason, "connect_refused");
  EXPECT_TRUE(contains(r.failure_detail, "proxy")) << r.failure_detail;
}

TEST_F(WebProbe, Ipv6Loopback) {
  wt::TestServer::Options o;
  o.ipv6 = true;
  wt::TestServer v6(o);
  if (!v6.error().empty()) GTEST_SKIP() << "no IPv6 loopback on this machine: " << v6.error();
  CheckRun r = run(v6.url("/ok"), R"({"ipFamily":"ipv6"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.details()["ip"].as_string(), "::1");
  EXPECT_EQ(r.details()["family"].as_int64(), 6);
  r = run(v6.url("/ok"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(WebProbe, ManyChecksInFlightOnOneThread) {
  // 200 checks against a 300 ms response, all started before any finishes,
  // driven by the one loop thread: together they take about 300 ms, not 60 s.
  constexpr int kChecks = 200;
  std::vector<uint64_t> ids;
  auto t0 = std::chrono::steady_clock::now();
  for (int i = 0; i < kChecks; ++i)
    ids.push_back(host_.start_check("web", server_.url("/slow/300"), "{}", 20s));
  host_.run_until(
      [&] {
        for (auto id : ids)
          if (!host_.check_run(id).released) return false;
        return true;
      },
      20s);
  auto ms =
      std::chrono::duration_cast<std::chrono::milliseconds>(std::chrono::steady_clock::now() - t0)
          .count();
  int up = 0;
  for (auto id : ids) up += host_.check_run(id).status == Status::Up;
  EXPECT_EQ(up, kChecks);
  EXPECT_LT(ms, 5000);
  EXPECT_EQ(server_.connections(), static_cast<size_t>(kChecks));
}

TEST_F(WebProbe, CancelReleasesEverything) {
  uint64_t id = host_.start_check("web", server_.url("/slow/5000"), "{}", 20s);
  host_.run_until([&] { return server_.requests().size() == 1; }, 5s);
  EXPECT_GE(host_.outstanding_watches(), 1u);
  host_.cancel(id);
  host_.settle();
  CheckRun r = host_.check_run(id);
  EXPECT_TRUE(r.released);
  EXPECT_EQ(r.status, Status::Inconclusive);
}

TEST_F(WebProbe, UnknownOptionsWarnOnceWithASuggestion) {
  CheckRun r = run(server_.url("/ok"), R"({"tiemout":1000,"keywrd":"x"})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(server_.url("/ok"), R"({"tiemout":1000})");
  EXPECT_EQ(r.status, Status::Up);
  int timeout_warnings = 0, keyword_warnings = 0;
  for (const auto& l : host_.logs()) {
    if (contains(l.message, "unknown option 'tiemout' ignored (did you mean 'timeout'?)")) {
      ++timeout_warnings;
      EXPECT_EQ(l.level, guardant::LogLevel::Warn);
    }
    if (contains(l.message, "unknown option 'keywrd'")) ++keyword_warnings;
  }
  EXPECT_EQ(timeout_warnings, 1);
  EXPECT_EQ(keyword_warnings, 1);
}

TEST_F(WebProbe, WrongOptionsAreInvalidConfigNamingTheOption) {
  struct Case {
    std::string config;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"timeout":"ten"})", "option 'timeout' must be a number, got string"},
      {R"({"timeout":0})", "option 'timeout' must be a number between 1 and 600000"},
      {R"({"method":5})", "option 'method' must be a string, got number"},
      {R"({"method":"GE T"})", "option 'method' must be an HTTP method"},
      {R"({"headers":[1]})", "option 'headers' must be an object of strings, got array"},
      {R"({"headers":{"X":1}})", "option 'headers.X' must be a string, got number"},
      {R"({"headers":{"X":"a\r\nInjected: 1"}})", "has a line break"},
      {R"({"headers":{"Bad Name":"1"}})", "invalid header name"},
      {R"({"body":5})", "option 'body' must be a string, an object or an array, got number"},
      {R"({"method":"HEAD","body":"x"})", "option 'body' cannot be sent with method HEAD"},
      {R"({"httpVersion":"3"})", R"(option 'httpVersion' must be one of "auto", "1.1", "2")"},
      {R"({"httpVersion":2})", "option 'httpVersion' must be one of"},
      {R"({"followRedirects":"yes"})", "option 'followRedirects' must be a boolean, got string"},
      {R"({"maxRedirects":100})", "option 'maxRedirects' must be an integer between 0 and 50"},
      {R"({"expectedStatus":true})", "option 'expectedStatus' must be a number, a string or an"},
      {R"({"expectedStatus":"abc"})", "option 'expectedStatus' must hold status codes"},
      {R"({"expectedStatus":700})", "between 100 and 599"},
      {R"({"expectedStatus":"300-200"})", "low-high"},
      {R"({"expectedStatus":[]})", "option 'expectedStatus' must not be an empty array"},
      {R"({"keyword":1})", "option 'keyword' must be a string, got number"},
      {R"({"invertKeyword":1})", "option 'invertKeyword' must be a boolean"},
      {R"({"invertKeyword":true})", "option 'invertKeyword' needs option 'keyword'"},
      {R"({"regex":"(unclosed"})", "option 'regex' is not a valid regular expression"},
      {R"({"invertRegex":"no"})", "option 'invertRegex' must be a boolean"},
      {R"({"headerRegex":5})", "option 'headerRegex' must be an object"},
      {R"({"headerRegex":"no colon"})", "must be \"Header-Name: regex\""},
      {R"({"headerRegex":{"X":"("}})", "option 'headerRegex.X' is not a valid regular"},
      {R"({"jsonPath":5})", "option 'jsonPath' must be a string, got number"},
      {R"({"jsonPath":"$..x"})", "option 'jsonPath' is not a valid JSON path"},
      {R"({"jsonPath":"$.a[x]"})", "option 'jsonPath' is not a valid JSON path"},
      {R"({"expectedValue":1})", "option 'expectedValue' needs option 'jsonPath'"},
      {R"({"maxBodyBytes":-1})", "option 'maxBodyBytes' must be an integer between 0 and"},
      {R"({"maxBodyBytes":"1MB"})", "option 'maxBodyBytes' must be an integer, got string"},
      {R"({"basicAuth":"alice:pw"})", "option 'basicAuth' must be an object"},
      {R"({"basicAuth":{"password":"pw"}})", "option 'basicAuth.username' must be a string"},
      {R"({"basicAuth":{"username":"a","password":5}})",
       "option 'basicAuth.password' must be a string, got number"},
      {R"({"bearerToken":5})", "option 'bearerToken' must be a string, got number"},
      {R"({"bearerToken":"t","basicAuth":{"username":"a"}})", "cannot be combined"},
      {R"({"proxy":5})", "option 'proxy' must be a string"},
      {R"({"proxy":"ftp://x"})", "option 'proxy' must be a URL starting with http://"},
      {R"({"tlsVerify":"false"})", "option 'tlsVerify' must be a boolean, got string"},
      {R"({"servername":"bad name"})", "option 'servername' must be a host name"},
      {R"({"sni":7})", "option 'sni' must be a string"},
      {R"({"caFile":"/nonexistent/ca.pem"})", "option 'caFile' cannot read"},
      {R"({"clientCert":3})", "option 'clientCert' must be a string"},
      {R"({"clientKey":"/nonexistent/k.pem"})", "option 'clientKey' cannot read"},
      {R"({"degradedAboveMs":"slow"})", "option 'degradedAboveMs' must be a number"},
      {R"({"certExpiryDays":-1})", "option 'certExpiryDays' must be a number between 0 and 3650"},
      {R"({"ipFamily":"ipx"})", R"(option 'ipFamily' must be one of "auto", "ipv4", "ipv6")"},
      {R"({"ipFamily":"ipv6"})", "is an IPv4 address but option 'ipFamily' is \"ipv6\""},
      {"[]", "config must be a JSON object, got array"},
      {"{oops", "config is not valid JSON"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(server_.url("/ok"), c.config);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.config;
    EXPECT_TRUE(contains(r.start_error, c.expected))
        << "config " << c.config << " gave: " << r.start_error;
  }
  EXPECT_TRUE(server_.requests().empty()) << "a refused check must not send anything";
}

TEST_F(WebProbe, BadTargetsAreInvalidConfig) {
  struct Case {
    std::string target;
    std::string expected;
  };
  const Case cases[] = {
      {"", "target is empty"},
      {"127.0.0.1:80", "target must be an http:// or https:// URL"},
      {"ftp://127.0.0.1/", "target must be an http:// or https:// URL"},
      {"file:///etc/passwd", "target must be an http:// or https:// URL"},
      {"http://", "target is not a valid URL"},
      {"http://exa mple.com/", "target is not a valid URL"},
      {"http://127.0.0.1:99999/", "target is not a valid URL"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(c.target);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.target;
    EXPECT_TRUE(contains(r.start_error, c.expected))
        << "target '" << c.target << "' gave: " << r.start_error;
  }
}

TEST_F(WebProbe, NotHttpIsAProtocolError) {
  CheckRun r = run(server_.url("/garbage"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "protocol_error") << r.failure_detail;
  EXPECT_FALSE(r.failure_detail.empty());
}

TEST_F(WebProbe, H2cPriorKnowledgeAgainstAnHttp11ServerFails) {
  // The server does not speak HTTP/2: option httpVersion "2" must not pass.
  // (libcurl reports the HTTP/1.1 answer it cannot parse as an empty reply.)
  CheckRun r = run(server_.url("/ok"), R"({"httpVersion":"2","timeout":2000})");
  EXPECT_EQ(r.status, Status::Down) << r.message;
  EXPECT_TRUE(r.failure_reason == "protocol_error" || r.failure_reason == "connection_closed")
      << r.failure_reason << ": " << r.failure_detail;
}

// ---------------------------------------------------------------------------
// TLS, with certificates made for the run

namespace {

struct Pki {
  wt::TestPki pki;
  wt::Cert ca, leaf, expired, wrong_name, self_signed, soon, ca_soon, leaf_under_soon_ca, named,
      client_ca, client;
  std::string ca_bundle;  // both CAs
};

Pki* g_pki = nullptr;

}  // namespace

class WebTls : public WebProbeBase {
 protected:
  static void SetUpTestSuite() {
    auto* p = new Pki();
    auto ca = wt::CertSpec::named("Guardant Test CA");
    ca.is_ca = true;
    ca.not_after = 3650L * 86400;
    p->ca = p->pki.make("ca", ca);
    auto leaf = wt::CertSpec::named("localhost", {"localhost"}, {"127.0.0.1", "::1"});
    p->leaf = p->pki.make("leaf", leaf, &p->ca);
    wt::CertSpec expired = leaf;
    expired.not_before = -30L * 86400;
    expired.not_after = -2L * 86400;
    p->expired = p->pki.make("expired", expired, &p->ca);
    auto wrong = wt::CertSpec::named("elsewhere.example", {"elsewhere.example"});
    p->wrong_name = p->pki.make("wrong", wrong, &p->ca);
    p->self_signed = p->pki.make("self", leaf);
    wt::CertSpec soon = leaf;
    soon.not_after = 5L * 86400;
    p->soon = p->pki.make("soon", soon, &p->ca);
    auto ca_soon = wt::CertSpec::named("Guardant Short-lived CA");
    ca_soon.is_ca = true;
    ca_soon.not_after = 5L * 86400;
    p->ca_soon = p->pki.make("ca-soon", ca_soon);
    p->leaf_under_soon_ca = p->pki.make("leaf-soon-ca", leaf, &p->ca_soon);
    auto named = wt::CertSpec::named("guardant.test", {"guardant.test"});
    p->named = p->pki.make("named", named, &p->ca);
    auto client_ca = wt::CertSpec::named("Guardant Client CA");
    client_ca.is_ca = true;
    p->client_ca = p->pki.make("client-ca", client_ca);
    auto client = wt::CertSpec::named("probe-client");
    client.client = true;
    p->client = p->pki.make("client", client, &p->client_ca);
    p->ca_bundle = p->pki.bundle("cas", {&p->ca, &p->ca_soon});
    g_pki = p;
  }
  static void TearDownTestSuite() {
    delete g_pki;
    g_pki = nullptr;
  }

  std::unique_ptr<wt::TestServer> serve(const wt::Cert& cert, bool require_client = false) {
    wt::TestServer::Options o;
    o.tls = true;
    o.cert_file = cert.cert_file;
    o.key_file = cert.key_file;
    o.require_client_cert = require_client;
    o.client_ca_file = g_pki->client_ca.cert_file;
    auto s = std::make_unique<wt::TestServer>(o);
    EXPECT_TRUE(s->error().empty()) << s->error();
    return s;
  }
  std::string with_ca(const std::string& extra = "") {
    return R"({"caFile":)" + json_str(g_pki->ca.cert_file) + extra + "}";
  }
};

TEST_F(WebTls, ValidCertificateFromOwnCa) {
  auto s = serve(g_pki->leaf);
  CheckRun r = run(s->url("/ok"), with_ca());
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  auto d = r.details();
  const auto& tls = d["tls"];
  ASSERT_TRUE(tls.is_object()) << r.details_json;
  EXPECT_TRUE(tls["chainVerified"].as_bool());
  EXPECT_TRUE(contains(tls["subject"].as_string(), "CN=localhost")) << tls["subject"].as_string();
  EXPECT_TRUE(contains(tls["issuer"].as_string(), "CN=Guardant Test CA"));
  std::set<std::string> sans;
  for (const auto& v : tls["sans"].as_array()) sans.insert(v.as_string());
  EXPECT_TRUE(sans.count("localhost"));
  EXPECT_TRUE(sans.count("127.0.0.1"));
  EXPECT_TRUE(contains(tls["version"].as_string(), "TLSv1."));
  const int64_t now_ms = std::chrono::duration_cast<std::chrono::milliseconds>(
                             std::chrono::system_clock::now().time_since_epoch())
                             .count();
  EXPECT_NEAR(static_cast<double>(tls["leafExpiresAt"].as_int64()), now_ms + 365.0 * 86400000,
              86400000.0);
  EXPECT_EQ(tls["chainExpiresAt"].as_int64(), tls["leafExpiresAt"].as_int64());
  EXPECT_GT(tls["daysLeft"].as_number(), 360.0);

  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GT(r.timings->tls_ms, 0.0);
  EXPECT_GE(r.timings->connect_ms, 0.0);
  expect_phases_add_up(r);

  auto reqs = s->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_FALSE(reqs[0].session_reused);
}

TEST_F(WebTls, NoTlsSessionIsResumed) {
  auto s = serve(g_pki->leaf);
  for (int i = 0; i < 3; ++i) ASSERT_EQ(run(s->url("/ok"), with_ca()).status, Status::Up);
  for (const auto& r : s->requests()) EXPECT_FALSE(r.session_reused);
  EXPECT_EQ(s->connections(), 3u);
}

TEST_F(WebTls, UnknownCaIsATlsHandshakeFailure) {
  auto s = serve(g_pki->leaf);
  // First with the CA, then without: libcurl caches CA stores per multi
  // handle, and that cache must not make the second check pass.
  ASSERT_EQ(run(s->url("/ok"), with_ca()).status, Status::Up);
  CheckRun r = run(s->url("/ok"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  expect_phases_add_up(r);
  EXPECT_GE(r.timings->tls_ms, 0.0);
  EXPECT_LT(r.timings->wait_ms, 0.0);
}

TEST_F(WebTls, SelfSignedWithoutCaFailsAndPassesWithVerifyOff) {
  auto s = serve(g_pki->self_signed);
  CheckRun r = run(s->url("/ok"), with_ca());
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "self")) << r.failure_detail;
  r = run(s->url("/ok"), R"({"tlsVerify":false})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  auto tls = r.details()["tls"];
  ASSERT_TRUE(tls.is_object());
  EXPECT_FALSE(tls["chainVerified"].as_bool());
}

TEST_F(WebTls, ExpiredCertificate) {
  auto s = serve(g_pki->expired);
  CheckRun r = run(s->url("/ok"), with_ca());
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "cert_expired") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "certificate has expired")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "CN=localhost")) << r.failure_detail;
  auto tls = r.details()["tls"];
  ASSERT_TRUE(tls.is_object()) << r.details_json;
  EXPECT_LT(tls["daysLeft"].as_number(), -1.0);
  // With verification off the check passes but says the chain expired.
  r = run(s->url("/ok"), R"({"tlsVerify":false})");
  EXPECT_EQ(r.status, Status::Degraded) << r.failure_detail;
  EXPECT_EQ(r.failure_reason, "cert_expiring");
  EXPECT_TRUE(contains(r.failure_detail, "expired")) << r.failure_detail;
}

TEST_F(WebTls, WrongHostName) {
  auto s = serve(g_pki->wrong_name);
  CheckRun r = run(s->url("/ok"), with_ca());
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "cert_hostname") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  r = run(s->url("/ok"), with_ca(R"(,"tlsVerify":false)"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(WebTls, ServernameSetsSniAndTheNameChecked) {
  auto s = serve(g_pki->named);
  CheckRun r = run(s->url("/ok"), with_ca(R"(,"servername":"guardant.test")"));
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  EXPECT_EQ(r.details()["ip"].as_string(), "127.0.0.1");
  auto reqs = s->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_EQ(reqs[0].sni, "guardant.test");
  EXPECT_EQ(reqs[0].header("Host"), "guardant.test:" + std::to_string(s->port()));
  // "sni" is the same option.
  r = run(s->url("/ok"), with_ca(R"(,"sni":"guardant.test")"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  // Without it the certificate does not match the address.
  r = run(s->url("/ok"), with_ca());
  EXPECT_EQ(r.failure_reason, "cert_hostname") << r.failure_detail;
  // Through a host name resolved by the host as well.
  r = run("https://localhost:" + std::to_string(s->port()) + "/ok",
          with_ca(R"(,"servername":"guardant.test","ipFamily":"ipv4")"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(WebTls, ClientCertificate) {
  auto s = serve(g_pki->leaf, /*require_client=*/true);
  CheckRun r = run(s->url("/ok"), with_ca(R"(,"clientCert":)" + json_str(g_pki->client.cert_file) +
                                          R"(,"clientKey":)" + json_str(g_pki->client.key_file)));
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  auto reqs = s->requests();
  ASSERT_EQ(reqs.size(), 1u);
  EXPECT_TRUE(reqs[0].client_cert);
  r = run(s->url("/ok"), with_ca());
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "tls_handshake") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
}

TEST_F(WebTls, CertificateExpiringSoonIsDegraded) {
  auto s = serve(g_pki->soon);
  CheckRun r = run(s->url("/ok"), with_ca());
  EXPECT_EQ(r.status, Status::Degraded) << r.failure_detail;
  EXPECT_EQ(r.failure_reason, "cert_expiring");
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "the certificate chain expires in ")) << r.failure_detail;
  double days = r.details()["tls"]["daysLeft"].as_number();
  EXPECT_GT(days, 4.9);
  EXPECT_LT(days, 5.01);
  EXPECT_TRUE(contains(r.failure_detail, "certExpiryDays 14")) << r.failure_detail;
  EXPECT_EQ(r.protocol_code, 200);
  r = run(s->url("/ok"), with_ca(R"(,"certExpiryDays":3)"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(s->url("/ok"), with_ca(R"(,"certExpiryDays":0)"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(WebTls, ExpiryIsTheVerifiedChainsEarliest) {
  // The leaf is good for a year, the CA that signed it for 5 days.
  auto s = serve(g_pki->leaf_under_soon_ca);
  CheckRun r = run(s->url("/ok"), R"({"caFile":)" + json_str(g_pki->ca_bundle) + "}");
  EXPECT_EQ(r.status, Status::Degraded) << r.failure_reason << ": " << r.failure_detail;
  EXPECT_EQ(r.failure_reason, "cert_expiring");
  auto tls = r.details()["tls"];
  ASSERT_TRUE(tls.is_object());
  EXPECT_TRUE(tls["chainVerified"].as_bool());
  EXPECT_LT(tls["chainExpiresAt"].as_int64(), tls["leafExpiresAt"].as_int64());
  EXPECT_LT(tls["daysLeft"].as_number(), 6.0);
}

TEST_F(WebTls, HandshakeThatNeverHappensTimesOutInTls) {
  // A listener nobody accepts from: TCP connects, the ClientHello is never
  // answered.
  wt::Listener l = wt::open_listener(16);
  ASSERT_TRUE(l.error.empty()) << l.error;
  CheckRun r = run("https://127.0.0.1:" + std::to_string(l.port) + "/", R"({"timeout":400})");
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "tls");
  EXPECT_TRUE(contains(r.failure_detail, "TLS handshake")) << r.failure_detail;
  expect_phases_add_up(r);
  EXPECT_GE(r.timings->tls_ms, 300.0);
}

TEST_F(WebTls, RedirectFromHttpToHttps) {
  auto s = serve(g_pki->leaf);
  wt::TestServer plain;
  ASSERT_TRUE(plain.error().empty());
  CheckRun r = run(plain.url("/to?" + s->url("/ok")), with_ca());
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  auto d = r.details();
  EXPECT_EQ(d["redirects"].as_int64(), 1);
  EXPECT_EQ(d["finalUrl"].as_string(), s->url("/ok"));
  EXPECT_TRUE(d["tls"].is_object());
  EXPECT_GT(r.timings->tls_ms, 0.0);
  expect_phases_add_up(r);
}

TEST_F(WebTls, HttpVersion2IsAssertedOnAnHttp11Server) {
  auto s = serve(g_pki->leaf);
  CheckRun r = run(s->url("/ok"), with_ca(R"(,"httpVersion":"2")"));
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "the server spoke HTTP/1.1, expected HTTP/2"))
      << r.failure_detail;
  r = run(s->url("/ok"), with_ca(R"(,"httpVersion":"1.1")"));
  EXPECT_EQ(r.status, Status::Up);
  EXPECT_EQ(r.details()["httpVersion"].as_string(), "1.1");
}

// ---------------------------------------------------------------------------
// HTTP/2 against nghttpd

class WebHttp2 : public WebTls {
 protected:
  void SetUp() override {
    WebTls::SetUp();
    docroot_ = g_pki->pki.dir() + "/htdocs";
    std::filesystem::create_directories(docroot_);
    std::ofstream(docroot_ + "/index.html") << "<h1>guardant h2 ok</h1>\n";
  }
  std::string docroot_;
};

TEST_F(WebHttp2, H2cWithPriorKnowledge) {
  wt::Nghttpd h2(docroot_, g_pki->pki.dir());
  ASSERT_TRUE(h2.error().empty()) << h2.error();
  const std::string url = "http://127.0.0.1:" + std::to_string(h2.port()) + "/index.html";
  CheckRun r = run(url, R"({"httpVersion":"2","keyword":"guardant h2 ok"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  EXPECT_EQ(r.details()["httpVersion"].as_string(), "2");
  expect_phases_add_up(r);
}

TEST_F(WebHttp2, H2OverTlsWithAlpn) {
  wt::Nghttpd h2(docroot_, g_pki->pki.dir(), g_pki->leaf.key_file, g_pki->leaf.cert_file);
  ASSERT_TRUE(h2.error().empty()) << h2.error();
  const std::string url = "https://127.0.0.1:" + std::to_string(h2.port()) + "/index.html";
  // "auto" negotiates HTTP/2 when offered.
  CheckRun r = run(url, with_ca(R"(,"keyword":"guardant h2 ok")"));
  ASSERT_EQ(r.status, Status::Up) << r.failure_reason << ": " << r.failure_detail;
  EXPECT_EQ(r.details()["httpVersion"].as_string(), "2");
  EXPECT_TRUE(r.details()["tls"]["chainVerified"].as_bool());
  EXPECT_GT(r.timings->tls_ms, 0.0);
  expect_phases_add_up(r);
  r = run(url, with_ca(R"(,"httpVersion":"2")"));
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run("https://127.0.0.1:" + std::to_string(h2.port()) + "/missing", with_ca());
  EXPECT_EQ(r.failure_reason, "http_status");
  EXPECT_EQ(r.protocol_code, 404);
}

// ---------------------------------------------------------------------------
// In a network namespace of the test's own: unreachable networks and a DNS
// server the test controls (the system resolver's addresses live on the
// namespace's own lo), so nothing leaves the machine.

namespace {

// Loads the probe in a FakeHost on the calling thread, runs `body`, and
// checks nothing is left outstanding.
void with_probe(const std::function<void(FakeHost&)>& body) {
  FakeHost host;
  ASSERT_NE(host.load(kPluginPath), nullptr) << host.last_error();
  body(host);
  host.settle();
  EXPECT_EQ(host.outstanding_timers(), 0u);
  EXPECT_EQ(host.outstanding_watches(), 0u);
  EXPECT_EQ(host.outstanding_resolves(), 0u);
  EXPECT_EQ(host.outstanding_checks(), 0u);
  for (const auto& v : host.violations()) ADD_FAILURE() << "host contract violation: " << v;
}

}  // namespace

TEST(WebNetns, NetworkUnreachable) {
  std::string skip = wt::run_in_new_netns([] {
    ASSERT_EQ(wt::bring_loopback_up(), "");
    with_probe([](FakeHost& host) {
      // No route to anything but lo in this namespace.
      CheckRun r = host.run_check("web", "http://192.0.2.1/", "{}", 5s);
      EXPECT_EQ(r.status, Status::Down);
      EXPECT_EQ(r.failure_reason, "network_unreachable") << r.failure_detail;
      EXPECT_EQ(r.failure_phase, "connect");
    });
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST(WebNetns, NxdomainFromTheResolver) {
  std::string skip = wt::run_in_new_netns([] {
    wt::FakeDns dns(wt::FakeDns::Mode::Nxdomain);
    ASSERT_TRUE(dns.error().empty()) << dns.error();
    with_probe([&](FakeHost& host) {
      CheckRun r = host.run_check("web", "http://nothing.guardant.test/", "{}", 10s);
      EXPECT_EQ(r.status, Status::Down);
      EXPECT_EQ(r.failure_reason, "dns_nxdomain") << r.failure_detail;
      EXPECT_EQ(r.failure_phase, "resolve");
      EXPECT_TRUE(contains(r.failure_detail, "nothing.guardant.test")) << r.failure_detail;
      ASSERT_TRUE(r.timings.has_value());
      EXPECT_GE(r.timings->resolve_ms, 0.0);
      EXPECT_LT(r.timings->connect_ms, 0.0);

      // A redirect to a name libcurl resolves itself ends the same way.
      wt::TestServer server;
      ASSERT_TRUE(server.error().empty()) << server.error();
      r = host.run_check("web", server.url("/to?http://gone.guardant.test/"), "{}", 10s);
      EXPECT_EQ(r.failure_reason, "dns_nxdomain") << r.failure_detail;
      EXPECT_EQ(r.failure_phase, "resolve");
    });
    EXPECT_GT(dns.queries(), 0u);
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}

TEST(WebNetns, ResolverThatNeverAnswersIsDnsTimeout) {
  std::string skip = wt::run_in_new_netns([] {
    wt::FakeDns dns(wt::FakeDns::Mode::Silent);
    ASSERT_TRUE(dns.error().empty()) << dns.error();
    with_probe([&](FakeHost& host) {
      CheckRun r = host.run_check("web", "http://silent.guardant.test/", R"({"timeout":400})", 5s);
      EXPECT_FALSE(r.timed_out);
      EXPECT_EQ(r.status, Status::Down);
      EXPECT_EQ(r.failure_reason, "dns_timeout") << r.failure_detail;
      EXPECT_EQ(r.failure_phase, "resolve");
      EXPECT_GE(r.response_time_ms, 390.0);
      EXPECT_LT(r.elapsed_ms, 2000.0);
    });
  });
  if (!skip.empty()) GTEST_SKIP() << skip;
}
