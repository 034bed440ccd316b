// Shared by the Redis client tests: an io_context + AsioClock fixture that
// runs the loop until a condition holds (bounded), settings for a
// RedisServer, a log capture for one facility, and a throwaway PKI made with
// the openssl CLI.
#pragma once

#include <gtest/gtest.h>
#include <spdlog/sinks/ostream_sink.h>

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <memory>
#include <optional>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "core/asio_clock.hpp"
#include "core/logging.hpp"
#include "redis/redis_connection.hpp"
#include "support/redis_server.hpp"

namespace guardant::test {

using engine::Result;
using engine::redis::Reply;
using namespace std::chrono_literals;

// Fast reconnects so that tests do not wait for production backoff.
inline engine::redis::ConnectionOptions fast_backoff() {
  engine::redis::ConnectionOptions o;
  o.backoff_initial = 20ms;
  o.backoff_max = 200ms;
  return o;
}

// RedisServerOptions with extra server arguments and redis-cli arguments
// (GCC warns about partially designated initializers under -Wextra).
inline RedisServerOptions server_args(std::vector<std::string> args,
                                      std::vector<std::string> cli_args = {}) {
  RedisServerOptions o;
  o.args = std::move(args);
  o.cli_args = std::move(cli_args);
  return o;
}

inline engine::RedisSettings settings_for(const RedisServer& server) {
  engine::RedisSettings s;
  s.host = "127.0.0.1";
  s.port = server.port();
  s.connect_timeout_ms = 3000;
  return s;
}

// Everything one logger facility writes, at debug and above.
class LogCapture {
 public:
  explicit LogCapture(const std::string& facility) : log_(engine::logger(facility)) {
    sink_ = std::make_shared<spdlog::sinks::ostream_sink_mt>(out_);
    log_->sinks().push_back(sink_);
    old_level_ = log_->level();
    log_->set_level(spdlog::level::debug);
  }
  ~LogCapture() {
    auto& sinks = log_->sinks();
    sinks.erase(std::remove(sinks.begin(), sinks.end(), sink_), sinks.end());
    log_->set_level(old_level_);
  }
  std::string text() {
    log_->flush();
    return out_.str();
  }

 private:
  std::shared_ptr<spdlog::logger> log_;
  std::ostringstream out_;
  std::shared_ptr<spdlog::sinks::ostream_sink_mt> sink_;
  spdlog::level::level_enum old_level_;
};

class RedisLoopTest : public ::testing::Test {
 protected:
  boost::asio::io_context io;
  engine::AsioClock clock{io};

  // Runs the loop until pred() holds or `limit` passes; false on timeout.
  bool run_until(const std::function<bool()>& pred, std::chrono::milliseconds limit = 10s) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      if (io.stopped()) io.restart();
      if (io.run_one_for(10ms) == 0) std::this_thread::sleep_for(1ms);
    }
    return true;
  }
  // Runs the loop for `d` whatever happens.
  void run_for(std::chrono::milliseconds d) {
    auto end = std::chrono::steady_clock::now() + d;
    while (std::chrono::steady_clock::now() < end) {
      if (io.stopped()) io.restart();
      if (io.run_one_for(5ms) == 0) std::this_thread::sleep_for(1ms);
    }
  }

  std::unique_ptr<engine::redis::RedisConnection> connect(
      const engine::RedisSettings& s, const std::string& name = "guardant-test",
      const std::string& facility = "redis",
      engine::redis::ConnectionOptions options = fast_backoff()) {
    auto c =
        std::make_unique<engine::redis::RedisConnection>(io, clock, s, name, facility, options);
    c->start();
    return c;
  }

  // Issues one command and runs the loop until its reply (bounded).
  Result<Reply> call(engine::redis::RedisConnection& c, std::vector<std::string> argv,
                     std::chrono::milliseconds limit = 10s) {
    std::optional<Result<Reply>> out;
    c.command(std::move(argv), [&](Result<Reply> r) { out.emplace(std::move(r)); });
    if (!run_until([&] { return out.has_value(); }, limit))
      return engine::Error{"test_timeout", "no reply within the test's limit"};
    return std::move(*out);
  }
};

// CA, server (localhost / 127.0.0.1) and client certificates made with the
// openssl CLI in `dir`, plus a second CA that signed nothing we use.
struct TestPki {
  std::string dir;
  std::string ca, ca_key, other_ca, server_cert, server_key, client_cert, client_key;

  explicit TestPki(const std::string& d) : dir(d) {
    ca = dir + "/ca.crt";
    ca_key = dir + "/ca.key";
    other_ca = dir + "/other-ca.crt";
    server_cert = dir + "/server.crt";
    server_key = dir + "/server.key";
    client_cert = dir + "/client.crt";
    client_key = dir + "/client.key";
    self_signed("Guardant Test CA", ca_key, ca);
    self_signed("Some Other CA", dir + "/other-ca.key", other_ca);
    signed_cert("localhost", "subjectAltName=DNS:localhost,IP:127.0.0.1", server_key, server_cert);
    signed_cert("guardant-worker", "extendedKeyUsage=clientAuth", client_key, client_cert);
  }

 private:
  void openssl(const std::vector<std::string>& args) {
    auto r = run_command(find_program("openssl"), args, dir, 30s);
    if (r.code != 0) throw std::runtime_error("openssl failed: " + r.err);
  }
  void self_signed(const std::string& cn, const std::string& key, const std::string& cert) {
    openssl({"req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", cert, "-days", "2", "-subj", "/CN=" + cn});
  }
  void signed_cert(const std::string& cn, const std::string& ext, const std::string& key,
                   const std::string& cert) {
    std::string csr = cert + ".csr", extfile = cert + ".ext";
    { std::ofstream(extfile) << ext << "\n"; }
    openssl({"req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes",
             "-keyout", key, "-out", csr, "-subj", "/CN=" + cn});
    openssl({"x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-out",
             cert, "-days", "2", "-extfile", extfile});
  }
};

}  // namespace guardant::test
