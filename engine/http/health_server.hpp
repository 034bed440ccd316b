// The worker's HTTP endpoints for orchestrators and Prometheus: /health,
// /ready and /metrics, served by Boost.Beast on the engine's io_context (no
// threads of its own). The server adds no content: every body comes from a
// HealthSource the worker implements.
#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/json/object.hpp>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>

#include "core/result.hpp"

namespace guardant::engine {

namespace detail {
class HealthServerImpl;
}

struct Readiness {
  bool ready = false;
  std::string reason;  // why not ready; ignored when ready
};

// What the endpoints report. Called on the loop thread, one request at a
// time; an exception becomes a 500 for that request only.
class HealthSource {
 public:
  virtual ~HealthSource() = default;
  // Body of GET /health, served as is.
  virtual boost::json::object health() = 0;
  // GET /ready: 200 {"ready":true} or 503 {"ready":false,"reason":...}.
  virtual Readiness ready() = 0;
  // Body of GET /metrics, Prometheus text format 0.0.4.
  virtual std::string metrics() = 0;
};

// A HealthSource made of three functions, for wiring without a new class.
class HealthCallbacks final : public HealthSource {
 public:
  HealthCallbacks(std::function<boost::json::object()> health, std::function<Readiness()> ready,
                  std::function<std::string()> metrics)
      : health_(std::move(health)), ready_(std::move(ready)), metrics_(std::move(metrics)) {}
  boost::json::object health() override { return health_(); }
  Readiness ready() override { return ready_(); }
  std::string metrics() override { return metrics_(); }

 private:
  std::function<boost::json::object()> health_;
  std::function<Readiness()> ready_;
  std::function<std::string()> metrics_;
};

struct HealthServerOptions {
  // Per request, including the idle time of a kept-alive connection, and per
  // response write: a stalled client cannot hold a slot for longer.
  std::chrono::milliseconds io_timeout{10'000};
  // Further connections are closed on accept, so a flood cannot exhaust the
  // worker's file descriptors, which its checks need.
  size_t max_connections = 256;
  // Request header limit and body limit, each (431 / 413 beyond).
  size_t max_request_bytes = 8 * 1024;
};

class HealthServer {
 public:
  // `source` must outlive the server; the server must be destroyed (or
  // stopped) before `io`.
  HealthServer(boost::asio::io_context& io, std::string bind_address, uint16_t port,
               HealthSource& source, HealthServerOptions options = {});
  ~HealthServer();  // stop()
  HealthServer(const HealthServer&) = delete;
  HealthServer& operator=(const HealthServer&) = delete;

  // Binds and listens, then accepts on the loop. Fails with code "bind_failed"
  // and a message such as
  //   health: cannot bind 0.0.0.0:3099: Address already in use
  Status start();
  // The bound port (the chosen one when constructed with port 0); 0 before start().
  uint16_t port() const;
  // Closes the acceptor and every connection; pending handlers finish with
  // operation_aborted and io_context::run() can return. Idempotent. Loop
  // thread only (post it from elsewhere).
  void stop();
  // Connections currently open. Loop thread only.
  size_t connections() const;

 private:
  // Shared with every pending operation, so a handler that completes after
  // the server is gone still finds valid state.
  std::shared_ptr<detail::HealthServerImpl> impl_;
};

}  // namespace guardant::engine
