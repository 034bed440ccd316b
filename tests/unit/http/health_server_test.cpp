#include "http/health_server.hpp"

#include <gtest/gtest.h>

#include <atomic>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/parse.hpp>
#include <chrono>
#include <future>
#include <memory>
#include <stdexcept>
#include <thread>

namespace guardant::engine {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using namespace std::chrono_literals;

class TestSource final : public HealthSource {
 public:
  std::atomic<bool> is_ready{false};
  std::atomic<bool> fail{false};
  std::atomic<int> health_calls{0};

  boost::json::object health() override {
    ++health_calls;
    if (fail) throw std::runtime_error("source broke");
    return {{"status", "ok"}, {"workerId", "w-1"}, {"inFlight", 2}};
  }
  Readiness ready() override {
    if (is_ready) return {true, ""};
    return {false, "redis: not connected"};
  }
  std::string metrics() override { return "# TYPE x_total counter\nx_total 1\n"; }
};

struct Reply {
  error_code ec;
  unsigned status = 0;
  std::string content_type;
  std::string content_length;
  std::string allow;
  std::string cache_control;
  std::string body;
  bool keep_alive = false;
};

Reply failed(error_code ec) {
  Reply r;
  r.ec = ec;
  return r;
}

std::string field(const bhttp::response<bhttp::string_body>& r, bhttp::field f) {
  auto v = r[f];
  return std::string(v.data(), v.size());
}

// A Beast client on its own io_context, so every operation has a timeout and
// a broken server fails the test instead of hanging it.
class Client {
 public:
  explicit Client(uint16_t port) : port_(port) {}

  error_code connect() {
    error_code result = asio::error::would_block;
    stream_.expires_after(5s);
    stream_.async_connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port_),
                          [&](const error_code& ec) { result = ec; });
    run();
    return result;
  }

  error_code send(bhttp::verb method, const std::string& target, bool keep_alive = true,
                  const std::string& body = {}) {
    bhttp::request<bhttp::string_body> req{method, target, 11};
    req.set(bhttp::field::host, "127.0.0.1");
    req.keep_alive(keep_alive);
    if (!body.empty()) {
      req.body() = body;
      req.prepare_payload();
    }
    error_code result = asio::error::would_block;
    stream_.expires_after(5s);
    bhttp::async_write(stream_, req, [&](const error_code& ec, size_t) { result = ec; });
    run();
    return result;
  }

  error_code send_raw(const std::string& bytes) {
    error_code result = asio::error::would_block;
    stream_.expires_after(5s);
    asio::async_write(stream_, asio::buffer(bytes),
                      [&](const error_code& ec, size_t) { result = ec; });
    run();
    return result;
  }

  Reply receive(bool head = false) {
    bhttp::response_parser<bhttp::string_body> parser;
    parser.skip(head);  // a HEAD response has Content-Length but no body
    Reply r;
    r.ec = asio::error::would_block;
    stream_.expires_after(5s);
    bhttp::async_read(stream_, buffer_, parser, [&](const error_code& ec, size_t) { r.ec = ec; });
    run();
    if (r.ec) return r;
    const auto& res = parser.get();
    r.status = res.result_int();
    r.content_type = field(res, bhttp::field::content_type);
    r.content_length = field(res, bhttp::field::content_length);
    r.allow = field(res, bhttp::field::allow);
    r.cache_control = field(res, bhttp::field::cache_control);
    r.body = res.body();
    r.keep_alive = res.keep_alive();
    return r;
  }

  Reply roundtrip(bhttp::verb method, const std::string& target, bool keep_alive = true) {
    if (auto ec = send(method, target, keep_alive)) return failed(ec);
    return receive(method == bhttp::verb::head);
  }

 private:
  void run() {
    io_.restart();
    io_.run();
  }

  uint16_t port_;
  asio::io_context io_;
  beast::tcp_stream stream_{io_};
  beast::flat_buffer buffer_;
};

Reply get(uint16_t port, const std::string& target, bhttp::verb method = bhttp::verb::get) {
  Client c(port);
  if (auto ec = c.connect()) return failed(ec);
  return c.roundtrip(method, target, false);
}

// The server runs on its io_context in a background thread, as the worker's
// loop would; the test thread plays the clients.
class HealthServerTest : public ::testing::Test {
 protected:
  void start(HealthServerOptions options = {}) {
    server_ = std::make_unique<HealthServer>(io_, "127.0.0.1", 0, source_, options);
    auto st = server_->start();
    ASSERT_TRUE(st.ok()) << st.error().message;
    port_ = server_->port();
    ASSERT_NE(port_, 0);
    done_ = std::async(std::launch::async, [this] { io_.run(); });
  }

  void TearDown() override {
    if (done_.valid()) {
      EXPECT_TRUE(stop_and_wait()) << "io_context.run() did not return";
    }
  }

  // Stops the server on its loop; true when run() returned by itself.
  bool stop_and_wait() {
    asio::post(io_, [this] { server_->stop(); });
    bool returned = done_.wait_for(5s) == std::future_status::ready;
    if (!returned) {
      io_.stop();
      done_.wait();
    }
    done_.get();
    return returned;
  }

  // Runs fn on the server's loop and returns its result.
  template <class F>
  auto on_loop(F fn) {
    std::packaged_task<decltype(fn())()> task(fn);
    auto f = task.get_future();
    asio::post(io_, [&task] { task(); });
    return f.get();
  }

  asio::io_context io_;
  TestSource source_;
  std::unique_ptr<HealthServer> server_;
  uint16_t port_ = 0;
  std::future<void> done_;
};

TEST_F(HealthServerTest, HealthReturnsSourceJson) {
  start();
  auto r = get(port_, "/health");
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(r.cache_control, "no-store");
  auto body = boost::json::parse(r.body).as_object();
  EXPECT_EQ(body, (boost::json::object{{"status", "ok"}, {"workerId", "w-1"}, {"inFlight", 2}}));
}

TEST_F(HealthServerTest, ReadyFlipsFrom503To200) {
  start();
  auto r = get(port_, "/ready");
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 503u);
  EXPECT_EQ(r.content_type, "application/json");
  EXPECT_EQ(boost::json::parse(r.body),
            (boost::json::object{{"ready", false}, {"reason", "redis: not connected"}}));

  source_.is_ready = true;
  r = get(port_, "/ready");
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.body, R"({"ready":true})");
}

TEST_F(HealthServerTest, MetricsIsPrometheusText) {
  start();
  auto r = get(port_, "/metrics");
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 200u);
  EXPECT_EQ(r.content_type, "text/plain; version=0.0.4");
  EXPECT_EQ(r.body, "# TYPE x_total counter\nx_total 1\n");
}

TEST_F(HealthServerTest, QueryStringIgnored) {
  start();
  EXPECT_EQ(get(port_, "/health?verbose=1&x=y").status, 200u);
  EXPECT_EQ(get(port_, "/metrics?name[]=x").status, 200u);
}

TEST_F(HealthServerTest, UnknownPathIs404Json) {
  start();
  for (auto method : {bhttp::verb::get, bhttp::verb::post}) {
    auto r = get(port_, "/nope", method);
    ASSERT_FALSE(r.ec) << r.ec.message();
    EXPECT_EQ(r.status, 404u);
    EXPECT_EQ(r.content_type, "application/json");
    EXPECT_EQ(r.body, R"({"error":"not found"})");
  }
  EXPECT_EQ(get(port_, "/health/").status, 404u);
  EXPECT_EQ(get(port_, "/").status, 404u);
}

TEST_F(HealthServerTest, OtherMethodsAre405WithAllow) {
  start();
  for (auto method :
       {bhttp::verb::post, bhttp::verb::put, bhttp::verb::delete_, bhttp::verb::options}) {
    for (const char* path : {"/health", "/ready", "/metrics"}) {
      auto r = get(port_, path, method);
      ASSERT_FALSE(r.ec) << r.ec.message();
      EXPECT_EQ(r.status, 405u) << path;
      EXPECT_EQ(r.allow, "GET, HEAD");
      EXPECT_EQ(r.body, R"({"error":"method not allowed"})");
    }
  }
  EXPECT_EQ(source_.health_calls, 0);  // a refused method never reaches the source
}

TEST_F(HealthServerTest, PostWithBodyIs405) {
  start();
  Client c(port_);
  ASSERT_FALSE(c.connect());
  ASSERT_FALSE(c.send(bhttp::verb::post, "/ready", true, R"({"ready":true})"));
  auto r = c.receive();
  EXPECT_EQ(r.status, 405u);
  // The body was consumed, so the connection is still usable.
  EXPECT_EQ(c.roundtrip(bhttp::verb::get, "/health").status, 200u);
}

TEST_F(HealthServerTest, HeadHasHeadersButNoBody) {
  start();
  auto full = get(port_, "/health");
  for (const char* path : {"/health", "/metrics", "/ready"}) {
    Client c(port_);
    ASSERT_FALSE(c.connect());
    auto r = c.roundtrip(bhttp::verb::head, path);
    ASSERT_FALSE(r.ec) << r.ec.message();
    EXPECT_EQ(r.body, "") << path;
    if (std::string(path) == "/health") {
      EXPECT_EQ(r.status, 200u);
      EXPECT_EQ(r.content_type, "application/json");
      EXPECT_EQ(r.content_length, std::to_string(full.body.size()));
    }
    if (std::string(path) == "/ready") {
      EXPECT_EQ(r.status, 503u);
    }
    // Nothing stray after the headers: the connection carries on cleanly.
    EXPECT_EQ(c.roundtrip(bhttp::verb::get, "/metrics").body, source_.metrics());
  }
}

TEST_F(HealthServerTest, KeepAliveServesSeveralRequestsOnOneConnection) {
  start();
  Client c(port_);
  ASSERT_FALSE(c.connect());
  auto a = c.roundtrip(bhttp::verb::get, "/health");
  ASSERT_FALSE(a.ec) << a.ec.message();
  EXPECT_EQ(a.status, 200u);
  EXPECT_TRUE(a.keep_alive);
  auto b = c.roundtrip(bhttp::verb::get, "/metrics");
  ASSERT_FALSE(b.ec) << b.ec.message();
  EXPECT_EQ(b.status, 200u);
  EXPECT_EQ(source_.health_calls, 1);
  EXPECT_EQ(on_loop([&] { return server_->connections(); }), 1u);

  // Connection: close is honoured: answered, then closed by the server.
  auto last = c.roundtrip(bhttp::verb::get, "/ready", false);
  EXPECT_EQ(last.status, 503u);
  EXPECT_FALSE(last.keep_alive);
  EXPECT_TRUE(c.receive().ec);  // end of stream
}

TEST_F(HealthServerTest, SourceExceptionIs500AndServerCarriesOn) {
  start();
  source_.fail = true;
  Client c(port_);
  ASSERT_FALSE(c.connect());
  auto r = c.roundtrip(bhttp::verb::get, "/health");
  EXPECT_EQ(r.status, 500u);
  EXPECT_EQ(r.body, R"({"error":"internal error"})");
  source_.fail = false;
  EXPECT_EQ(c.roundtrip(bhttp::verb::get, "/health").status, 200u);
}

TEST_F(HealthServerTest, MalformedRequestIs400) {
  start();
  Client c(port_);
  ASSERT_FALSE(c.connect());
  ASSERT_FALSE(c.send_raw("THIS IS NOT HTTP\r\n\r\n"));
  auto r = c.receive();
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 400u);
  EXPECT_FALSE(r.keep_alive);
}

TEST_F(HealthServerTest, OversizedRequestIsRefused) {
  start({.max_request_bytes = 1024});
  Client c(port_);
  ASSERT_FALSE(c.connect());
  ASSERT_FALSE(c.send_raw("GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + std::string(4000, 'a') +
                          "\r\n\r\n"));
  auto r = c.receive();
  ASSERT_FALSE(r.ec) << r.ec.message();
  EXPECT_EQ(r.status, 431u);
  EXPECT_FALSE(r.keep_alive);
  EXPECT_EQ(source_.health_calls, 0);

  Client d(port_);
  ASSERT_FALSE(d.connect());
  ASSERT_FALSE(d.send(bhttp::verb::post, "/health", true, std::string(4000, 'b')));
  EXPECT_EQ(d.receive().status, 413u);
}

TEST_F(HealthServerTest, IdleConnectionClosedAfterTimeout) {
  start({.io_timeout = 200ms});
  Client c(port_);
  ASSERT_FALSE(c.connect());
  auto t0 = std::chrono::steady_clock::now();
  auto r = c.receive();  // the server closes first; the client waits up to 5 s
  auto waited = std::chrono::steady_clock::now() - t0;
  EXPECT_TRUE(r.ec);
  EXPECT_NE(r.ec, beast::error::timeout) << "server never closed the connection";
  EXPECT_GE(waited, 150ms);
  EXPECT_LT(waited, 3s);
}

TEST_F(HealthServerTest, ConnectionCapRefusesExtraConnections) {
  start({.max_connections = 2});
  Client a(port_), b(port_), c(port_);
  ASSERT_FALSE(a.connect());
  ASSERT_EQ(a.roundtrip(bhttp::verb::get, "/health").status, 200u);
  ASSERT_FALSE(b.connect());
  ASSERT_EQ(b.roundtrip(bhttp::verb::get, "/health").status, 200u);

  ASSERT_FALSE(c.connect());  // the kernel accepts; the server closes it at once
  (void)c.send(bhttp::verb::get, "/health");
  EXPECT_TRUE(c.receive().ec);
  EXPECT_EQ(on_loop([&] { return server_->connections(); }), 2u);

  // Existing connections are unaffected, and a slot frees when one ends.
  EXPECT_EQ(a.roundtrip(bhttp::verb::get, "/ready").status, 503u);
  EXPECT_EQ(b.roundtrip(bhttp::verb::get, "/ready", false).status, 503u);
  auto deadline = std::chrono::steady_clock::now() + 3s;
  unsigned status = 0;
  while (status != 200 && std::chrono::steady_clock::now() < deadline) {
    status = get(port_, "/health").status;
    if (status != 200) {
      std::this_thread::sleep_for(20ms);
    }
  }
  EXPECT_EQ(status, 200u);
}

TEST_F(HealthServerTest, StopClosesOpenConnectionsSoRunReturns) {
  start();  // default 10 s read timeout: run() must not wait for it
  Client idle(port_);
  ASSERT_FALSE(idle.connect());
  ASSERT_EQ(idle.roundtrip(bhttp::verb::get, "/health").status, 200u);
  auto t0 = std::chrono::steady_clock::now();
  EXPECT_TRUE(stop_and_wait());
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_TRUE(idle.roundtrip(bhttp::verb::get, "/health").ec);
  Client late(port_);
  EXPECT_TRUE(late.connect());  // the acceptor is closed
}

TEST(HealthServerLoop, StopFromTheLoopLetsRunReturnOnThisThread) {
  asio::io_context io;
  TestSource source;
  HealthServer server(io, "127.0.0.1", 0, source);
  ASSERT_TRUE(server.start().ok());

  // Connected before run(): the server accepts it once the loop turns and
  // then sits in a read with a 10 s timeout.
  asio::io_context client_io;
  tcp::socket client(client_io);
  client.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), server.port()));

  size_t open_at_stop = 0;
  asio::steady_timer timer(io, 200ms);
  timer.async_wait([&](const error_code&) {
    open_at_stop = server.connections();
    server.stop();
    server.stop();  // idempotent
  });
  auto t0 = std::chrono::steady_clock::now();
  io.run();
  EXPECT_LT(std::chrono::steady_clock::now() - t0, 2s);
  EXPECT_EQ(open_at_stop, 1u);
  EXPECT_EQ(server.connections(), 0u);
}

TEST(HealthServerBind, PortInUseIsAClearError) {
  asio::io_context io;
  tcp::acceptor squatter(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  const uint16_t port = squatter.local_endpoint().port();

  TestSource source;
  HealthServer server(io, "127.0.0.1", port, source);
  auto st = server.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().code, "bind_failed");
  EXPECT_EQ(st.error().message,
            "health: cannot bind 127.0.0.1:" + std::to_string(port) + ": Address already in use");
  EXPECT_EQ(server.port(), 0);
}

TEST(HealthServerBind, TwoServersOnePort) {
  asio::io_context io;
  TestSource source;
  HealthServer first(io, "127.0.0.1", 0, source);
  ASSERT_TRUE(first.start().ok());
  HealthServer second(io, "127.0.0.1", first.port(), source);
  auto st = second.start();
  ASSERT_FALSE(st.ok());
  EXPECT_NE(st.error().message.find("Address already in use"), std::string::npos);
  EXPECT_FALSE(first.start().ok());  // already started
}

TEST(HealthServerBind, InvalidAddressFails) {
  asio::io_context io;
  TestSource source;
  // An address of this host's that is not configured cannot be bound.
  HealthServer server(io, "192.0.2.1", 0, source);
  auto st = server.start();
  ASSERT_FALSE(st.ok());
  EXPECT_EQ(st.error().message.rfind("health: cannot bind 192.0.2.1:0: ", 0), 0u)
      << st.error().message;
}

TEST(HealthServerBind, DestroyWithoutStartOrRun) {
  asio::io_context io;
  TestSource source;
  { HealthServer unstarted(io, "127.0.0.1", 0, source); }
  {
    HealthServer started(io, "127.0.0.1", 0, source);
    ASSERT_TRUE(started.start().ok());
  }
  io.run();  // only the aborted accept is left; it must not touch freed state
}

}  // namespace
}  // namespace guardant::engine
