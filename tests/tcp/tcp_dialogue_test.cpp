// The tcp probe's plain-text features against scripted loopback peers:
// banner, send/expect (exact and regex), multi-step dialogues, the read
// limit, step timeouts, "must be closed" mode, and option validation.
#include <gtest/gtest.h>

#include <guardant/json.hpp>
#include <string>
#include <thread>

#include "tcp_test_support.hpp"

using guardant::Status;
using guardant::testing::CheckRun;
using namespace std::chrono_literals;
using tcptest::contains;
using tcptest::PeerServer;
using tcptest::read_until;
using tcptest::wait_closed;
using tcptest::write_all;

namespace {

class TcpDialogue : public tcptest::TcpProbeFixture {};
class TcpClosedMode : public tcptest::TcpProbeFixture {};
class TcpOptions : public tcptest::TcpProbeFixture {};

// A peer that greets with `banner` and then waits for the probe to leave.
PeerServer::Handler greeter(std::string banner) {
  return [banner](int fd) {
    write_all(fd, banner);
    wait_closed(fd);
  };
}

// A peer that waits for `request` and answers `reply`, then waits.
PeerServer::Handler responder(std::string request, std::string reply) {
  return [request, reply](int fd) {
    read_until(fd, request);
    write_all(fd, reply);
    wait_closed(fd);
  };
}

}  // namespace

TEST_F(TcpDialogue, BannerIsReportedInDetailsAndMessage) {
  PeerServer peer(greeter("SSH-2.0-Guardant_test\r\nmore after the first line\r\n"));
  size_t fds_before = tcptest::open_fd_count();
  CheckRun r = run(peer.target(), R"({"readBanner":true})");
  ASSERT_TRUE(r.started()) << r.start_error;
  ASSERT_EQ(r.status, Status::Up) << r.message;
  EXPECT_EQ(r.details()["banner"].as_string(), "SSH-2.0-Guardant_test");
  EXPECT_TRUE(contains(r.message, "banner \"SSH-2.0-Guardant_test\"")) << r.message;
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->connect_ms, 0.0);
  EXPECT_GE(r.timings->wait_ms, 0.0);
  EXPECT_LT(r.timings->send_ms, 0.0);  // nothing was sent
  EXPECT_LT(r.timings->tls_ms, 0.0);
  EXPECT_GE(r.response_time_ms, r.timings->connect_ms);
  host_.settle();
  EXPECT_TRUE(peer.wait_idle());
  EXPECT_EQ(tcptest::open_fd_count(), fds_before) << "the probe leaked its socket";
}

TEST_F(TcpDialogue, BannerEscapesControlBytesAndIsTruncated) {
  std::string banner = std::string("\x01hello\tworld\x7f\xff", 14) + std::string(300, 'A') + "\r\n";
  PeerServer peer(greeter(banner));
  CheckRun r = run(peer.target(), R"({"readBanner":true})");
  ASSERT_EQ(r.status, Status::Up) << r.message;
  // The first 256 bytes, escaped, then "..." for the cut.
  EXPECT_EQ(r.details()["banner"].as_string(),
            "\\x01hello\\tworld\\x7f\\xff" + std::string(256 - 14, 'A') + "...");
}

TEST_F(TcpDialogue, BannerFromAPeerThatSaysNothingIsATimeout) {
  PeerServer peer([](int fd) { wait_closed(fd); });
  CheckRun r = run(peer.target(), R"({"readBanner":true,"stepTimeout":200})");
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail, "banner: nothing received within")) << r.failure_detail;
}

TEST_F(TcpDialogue, SendThenExpectSucceeds) {
  PeerServer peer(responder("PING\r\n", "+PONG\r\n"));
  CheckRun r = run(peer.target(), R"({"sendData":"PING\r\n","expectData":"PONG"})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_TRUE(contains(r.message, "1 step passed")) << r.message;
  auto d = r.details();
  EXPECT_EQ(d["bytesSent"].as_int64(), 6);
  EXPECT_EQ(d["bytesReceived"].as_int64(), 7);
  // Expect steps that read data report what came first as the banner too.
  EXPECT_EQ(d["banner"].as_string(), "+PONG");
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->send_ms, 0.0);
  EXPECT_GE(r.timings->wait_ms, 0.0);
  EXPECT_GE(r.timings->total_ms, r.timings->connect_ms + r.timings->wait_ms - 1e-6);
}

TEST_F(TcpDialogue, ExpectMismatchShowsExpectedAndEscapedExcerpt) {
  PeerServer peer(responder("PING\r\n", "-ERR unknown command \"PING\"\r\n"));
  CheckRun r =
      run(peer.target(), R"({"sendData":"PING\r\n","expectData":"PONG","stepTimeout":300})");
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail, "step 1: expected \"PONG\" within ")) << r.failure_detail;
  EXPECT_TRUE(
      contains(r.failure_detail, "received 29 bytes: \"-ERR unknown command \\\"PING\\\"\\r\\n\""))
      << r.failure_detail;
  EXPECT_EQ(r.details()["banner"].as_string(), "-ERR unknown command \"PING\"");
}

TEST_F(TcpDialogue, PeerClosingBeforeTheExpectedDataIsDown) {
  PeerServer peer([](int fd) {
    read_until(fd, "\n");
    write_all(fd, "BYE\r\n");  // and close
  });
  CheckRun r = run(peer.target(), R"({"sendData":"HELLO\n","expectData":"WELCOME"})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail,
                       "expected \"WELCOME\", but the peer closed the "
                       "connection after sending 5 bytes: \"BYE\\r\\n\""))
      << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 2000.0) << "a close must end the wait at once";
}

TEST_F(TcpDialogue, PeerClosingWithoutAWordIsDown) {
  PeerServer peer([](int) {});  // accept and close
  CheckRun r = run(peer.target(), R"({"expectData":"220"})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail,
                       "closed the connection without sending anything; "
                       "expected \"220\""))
      << r.failure_detail;
  EXPECT_FALSE(r.details().as_object().empty());
  EXPECT_TRUE(r.details()["banner"].is_null());
}

TEST_F(TcpDialogue, RegexExpect) {
  PeerServer peer(greeter("220 mail.example.test ESMTP ready\r\n"));
  CheckRun r = run(peer.target(), R"({"expectRegex":"^220 [a-z.]+ ESMTP"})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;

  PeerServer closing([](int fd) { write_all(fd, "554 go away\r\n"); });
  r = run(closing.target(), R"({"expectRegex":"^2\\d\\d "})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "a match for /^2\\d\\d /")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "\"554 go away\\r\\n\"")) << r.failure_detail;
}

TEST_F(TcpDialogue, ExactAndRegexTogetherMustBothMatch) {
  PeerServer peer(greeter("+OK version=7.2.4\r\n"));
  CheckRun r = run(peer.target(), R"({"expectData":"+OK","expectRegex":"version=7\\.\\d+"})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  r = run(peer.target(), R"({"expectData":"+OK","expectRegex":"version=8\\.","stepTimeout":200})");
  EXPECT_EQ(r.failure_reason, "assertion") << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "expected \"+OK\" and a match for /version=8\\./"))
      << r.failure_detail;
}

TEST_F(TcpDialogue, MatchesSplitAcrossReadsAreFound) {
  PeerServer peer([](int fd) {
    write_all(fd, "xxPO");
    std::this_thread::sleep_for(80ms);
    write_all(fd, "NG HELLO 4");
    std::this_thread::sleep_for(80ms);
    write_all(fd, "2\r\n");
    wait_closed(fd);
  });
  CheckRun r =
      run(peer.target(), R"({"steps":[{"expect":"PONG"},{"expectRegex":"HELLO \\d{2}\\r\\n"}]})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_EQ(r.details()["bytesReceived"].as_int64(), 17);
}

TEST_F(TcpDialogue, MultiStepDialogue) {
  PeerServer peer([&](int fd) {
    write_all(fd, "220 smtp.test ready\r\n");
    std::string ehlo = read_until(fd, "\r\n");
    write_all(fd, "250-smtp.test\r\n250 OK\r\n");
    std::string quit = read_until(fd, "\r\n");
    write_all(fd, "221 bye\r\n");
    wait_closed(fd, 1s);
    // The handler runs on the server's thread: record, assert later.
    peer.note(ehlo);
    peer.note(quit);
  });
  CheckRun r = run(peer.target(), R"({
    "readBanner": true,
    "steps": [
      {"send": "EHLO probe\r\n", "expect": "250 OK"},
      {"send": "QUIT\r\n", "expectRegex": "(?m)^221 "}
    ]})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_TRUE(contains(r.message, "2 steps passed")) << r.message;
  EXPECT_TRUE(contains(r.message, "banner \"220 smtp.test ready\"")) << r.message;
  auto d = r.details();
  EXPECT_EQ(d["banner"].as_string(), "220 smtp.test ready");
  EXPECT_EQ(d["bytesSent"].as_int64(), 12 + 6);
  EXPECT_EQ(d["bytesReceived"].as_int64(), 21 + 23 + 9);
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->send_ms, 0.0);
  EXPECT_GE(r.timings->wait_ms, 0.0);
  // Wait until the peer recorded what it got.
  for (int i = 0; i < 200 && peer.notes().size() < 2; ++i) std::this_thread::sleep_for(10ms);
  auto notes = peer.notes();
  ASSERT_EQ(notes.size(), 2u);
  EXPECT_EQ(notes[0], "EHLO probe\r\n");
  EXPECT_EQ(notes[1], "QUIT\r\n");
}

TEST_F(TcpDialogue, FailingLaterStepIsNamed) {
  PeerServer peer([](int fd) {
    write_all(fd, "220 ready\r\n");
    read_until(fd, "\r\n");
    write_all(fd, "500 what?\r\n");
    wait_closed(fd);
  });
  CheckRun r = run(peer.target(), R"({"expectData":"220",
    "steps":[{"send":"HELO x\r\n","expect":"250","timeout":200}]})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_TRUE(contains(r.failure_detail, "step 2: expected \"250\" within ")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "(the step's timeout)")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "received 19 bytes: \" ready\\r\\n500 what?\\r\\n\""))
      << r.failure_detail;
}

TEST_F(TcpDialogue, BytesAfterAMatchCarryOverToTheNextStep) {
  PeerServer peer(greeter("A1\r\nB2\r\nC3\r\n"));
  CheckRun r = run(peer.target(), R"({"steps":[{"expect":"A1"},{"expect":"B2"},
    {"expectRegex":"^\\r\\nC\\d"}]})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(TcpDialogue, ReadLimitStopsLookingAndNeverReadsPastIt) {
  PeerServer peer([](int fd) {
    read_until(fd, "\n");
    write_all(fd, std::string(10000, 'x') + "PONG\r\n");
    wait_closed(fd);
  });
  CheckRun r = run(peer.target(), R"({"sendData":"GO\n","expectData":"PONG","maxReadBytes":1000})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail, "within the first 1000 bytes (maxReadBytes)"))
      << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "received 1000 bytes: \"xxxx")) << r.failure_detail;
  EXPECT_EQ(r.details()["bytesReceived"].as_int64(), 1000);
  EXPECT_LT(r.elapsed_ms, 2000.0);

  // Within the limit the same reply passes.
  r = run(peer.target(), R"({"sendData":"GO\n","expectData":"PONG","maxReadBytes":20000})");
  EXPECT_EQ(r.status, Status::Up) << r.failure_detail;
}

TEST_F(TcpDialogue, StepTimeoutWhenThePeerNeverAnswers) {
  PeerServer peer([](int fd) { wait_closed(fd, 5s); });
  CheckRun r =
      run(peer.target(), R"({"sendData":"PING\r\n","expectData":"PONG","stepTimeout":200})", 5s);
  ASSERT_TRUE(r.started()) << r.start_error;
  EXPECT_FALSE(r.timed_out) << "the step's limit must end the check, not the host's deadline";
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "timeout") << r.failure_detail;
  EXPECT_EQ(r.failure_phase, "wait");
  EXPECT_TRUE(contains(r.failure_detail, "step 1: nothing received within ")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "(stepTimeout); expected \"PONG\"")) << r.failure_detail;
  EXPECT_GE(r.elapsed_ms, 195.0);
  EXPECT_LT(r.elapsed_ms, 1500.0);
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->wait_ms, 190.0);
}

TEST_F(TcpDialogue, CheckTimeoutBoundsAStepWithoutItsOwnLimit) {
  PeerServer peer([](int fd) { wait_closed(fd, 5s); });
  CheckRun r = run(peer.target(), R"({"expectData":"hello","timeout":300})", 5s);
  EXPECT_FALSE(r.timed_out);
  EXPECT_EQ(r.failure_reason, "timeout") << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "(the check's time limit)")) << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 1500.0);
}

TEST_F(TcpDialogue, EmptyAndNullTextOptionsCountAsUnset) {
  PeerServer peer([](int fd) { wait_closed(fd, 1s); });
  CheckRun r =
      run(peer.target(), R"({"sendData":"","expectData":null,"expectRegex":"","steps":null})");
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_FALSE(contains(r.message, "step")) << r.message;
  EXPECT_DOUBLE_EQ(r.response_time_ms, r.timings->connect_ms);
}

TEST_F(TcpDialogue, PeerGoneWhileSendingIsDownWithoutSigpipe) {
  PeerServer peer([](int fd) {
    // Reset the connection at once: the probe's writes then fail (EPIPE or
    // ECONNRESET); a SIGPIPE would kill this test process.
    read_until(fd, "zzzz", 1s);  // the probe is sending
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  });
  const std::string big(4 * 1024 * 1024, 'z');
  CheckRun r = run(peer.target(), R"({"sendData":")" + big + R"(","expectData":"ok"})");
  EXPECT_EQ(r.status, Status::Down);
  // Either the write fails, or (when the kernel took all of it before the
  // reset) the read that follows sees the connection end.
  EXPECT_EQ(r.failure_reason, "assertion") << r.failure_detail;
  EXPECT_TRUE(r.failure_phase == "send" || r.failure_phase == "wait") << r.failure_phase;
}

TEST_F(TcpClosedMode, ClosedPortIsUp) {
  uint16_t port = tcptest::closed_port();
  CheckRun r = run("127.0.0.1:" + std::to_string(port), R"({"expectClosed":true})");
  ASSERT_TRUE(r.started()) << r.start_error;
  ASSERT_EQ(r.status, Status::Up) << r.failure_detail;
  EXPECT_TRUE(contains(r.message, "port " + std::to_string(port) + " is closed as required"))
      << r.message;
  EXPECT_TRUE(contains(r.message, "refused")) << r.message;
  EXPECT_TRUE(r.failure_reason.empty());
  ASSERT_TRUE(r.timings.has_value());
  EXPECT_GE(r.timings->connect_ms, 0.0);
}

TEST_F(TcpClosedMode, OpenPortIsDown) {
  PeerServer peer([](int fd) { wait_closed(fd, 1s); });
  CheckRun r = run(peer.target(), R"({"expectClosed":true})");
  EXPECT_EQ(r.status, Status::Down);
  EXPECT_EQ(r.failure_reason, "assertion");
  EXPECT_EQ(r.failure_phase, "connect");
  EXPECT_TRUE(contains(r.failure_detail, "port is open")) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, peer.target())) << r.failure_detail;
  EXPECT_EQ(r.details()["port"].as_int64(), peer.port());
  EXPECT_DOUBLE_EQ(r.response_time_ms, r.timings->connect_ms);
}

TEST_F(TcpOptions, WrongTypesAreInvalidConfigNamingTheOption) {
  const std::string target = "127.0.0.1:" + std::to_string(tcptest::closed_port());
  struct Case {
    std::string config;
    std::string expected;
  };
  const Case cases[] = {
      {R"({"tls":"yes"})", "option 'tls' must be a boolean, got string"},
      {R"({"tlsVerify":1})", "option 'tlsVerify' must be a boolean, got number"},
      {R"({"servername":5})", "option 'servername' must be a string, got number"},
      {R"({"servername":"a b"})", "option 'servername' contains an invalid character"},
      {R"({"caFile":true})", "option 'caFile' must be a string, got boolean"},
      {R"({"clientCert":[]})", "option 'clientCert' must be a string, got array"},
      {R"({"clientKey":{}})", "option 'clientKey' must be a string, got object"},
      {R"({"clientKey":"/k.pem"})", "option 'clientKey' needs option 'clientCert'"},
      {R"({"certExpiryDays":"14"})", "option 'certExpiryDays' must be a number, got string"},
      {R"({"certExpiryDays":-1})", "option 'certExpiryDays' must be a number between 0 and 3650"},
      {R"({"readBanner":"true"})", "option 'readBanner' must be a boolean, got string"},
      {R"({"sendData":42})", "option 'sendData' must be a string, got number"},
      {R"({"expectData":false})", "option 'expectData' must be a string, got boolean"},
      {R"({"expectRegex":1})", "option 'expectRegex' must be a string, got number"},
      {R"({"expectRegex":"(unclosed"})", "option 'expectRegex' is not a valid regular expression"},
      {R"({"steps":{}})", "option 'steps' must be an array of objects, got object"},
      {R"({"steps":["PING"]})", "option 'steps[0]' must be an object, got string"},
      {R"({"steps":[{"send":1}]})", "option 'steps[0].send' must be a string, got number"},
      {R"({"steps":[{"expect":"a"},{"expct":"b"}]})",
       "option 'steps[1]' has an unknown key 'expct'; known: send, expect, expectRegex, timeout"},
      {R"({"steps":[{}]})", "option 'steps[0]' needs at least one of 'send', 'expect'"},
      {R"({"steps":[{"expect":"a","timeout":"1s"}]})",
       "option 'steps[0].timeout' must be a number, got string"},
      {R"({"steps":[{"expect":"a","timeout":0}]})",
       "option 'steps[0].timeout' must be a number between 1 and 600000"},
      {R"({"steps":[{"expectRegex":"[a"}]})",
       "option 'steps[0].expectRegex' is not a valid regular expression"},
      {R"({"maxReadBytes":"1k"})", "option 'maxReadBytes' must be an integer, got string"},
      {R"({"maxReadBytes":1.5})", "option 'maxReadBytes' must be an integer between 1 and"},
      {R"({"maxReadBytes":0})", "option 'maxReadBytes' must be an integer between 1 and"},
      {R"({"stepTimeout":"1s"})", "option 'stepTimeout' must be a number, got string"},
      {R"({"expectClosed":"yes"})", "option 'expectClosed' must be a boolean, got string"},
      {R"({"expectClosed":true,"tls":true})",
       "option 'expectClosed' cannot be combined with 'tls'"},
      {R"({"expectClosed":true,"sendData":"x"})",
       "option 'expectClosed' cannot be combined with 'sendData'"},
      {R"({"expectClosed":true,"readBanner":true})",
       "option 'expectClosed' cannot be combined with 'readBanner'"},
      {R"({"tls":true,"caFile":"/nonexistent/guardant-ca.pem"})",
       "option 'caFile': cannot load CA certificates from '/nonexistent/guardant-ca.pem'"},
      {R"({"tls":true,"clientCert":"/nonexistent/guardant-client.pem"})",
       "option 'clientCert': cannot load a PEM certificate from"},
  };
  for (const auto& c : cases) {
    CheckRun r = run(target, c.config);
    EXPECT_EQ(r.start_rc, GUARDANT_ERR_INVALID_CONFIG) << c.config;
    EXPECT_TRUE(contains(r.start_error, c.expected))
        << "config " << c.config << " gave: " << r.start_error;
  }
}

TEST_F(TcpOptions, TlsOptionsWithoutTlsAreIgnored) {
  PeerServer peer([](int fd) { wait_closed(fd, 1s); });
  CheckRun r = run(peer.target(), R"({"tlsVerify":false,"caFile":"/nonexistent/ca.pem"})");
  EXPECT_EQ(r.status, Status::Up) << r.start_error << r.failure_detail;
  EXPECT_TRUE(r.details()["tls"].is_null());
}

TEST_F(TcpOptions, PathologicalRegexIsInconclusiveNotAHang) {
  PeerServer peer(greeter(std::string(40, 'a') + "!"));
  CheckRun r = run(peer.target(), R"({"expectRegex":"^(a|aa|a?a)+$","stepTimeout":2000})");
  // PCRE2's match limit stops the backtracking long before the step's time.
  EXPECT_EQ(r.status, Status::Inconclusive) << r.failure_detail;
  EXPECT_TRUE(contains(r.failure_detail, "could not be evaluated")) << r.failure_detail;
  EXPECT_LT(r.elapsed_ms, 1500.0);
}
