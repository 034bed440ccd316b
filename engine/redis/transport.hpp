// The byte stream under a RedisConnection: TCP, TLS over TCP, or a unix
// socket, all on the Asio loop. Internal to engine_redis.
#pragma once

#include <boost/asio/buffer.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/system/error_code.hpp>
#include <functional>
#include <memory>
#include <string>

#include "config/config.hpp"
#include "core/result.hpp"
#include "redis/redis_connection.hpp"

namespace guardant::engine::redis {

// One connection attempt's stream. Loop thread only. The caller keeps the
// Transport and every buffer passed to read_some/write alive until the
// handler has run (handlers run even after close(), with operation_aborted).
class Transport {
 public:
  using IoHandler = std::function<void(const boost::system::error_code&, size_t)>;
  virtual ~Transport() = default;

  // Resolves, connects and, for TLS, handshakes. `done` gets "" on success or
  // an operator-readable reason ("connect 127.0.0.1:6390: Connection refused").
  virtual void connect(std::function<void(const std::string& error)> done) = 0;
  // One read of at most the buffer's size.
  virtual void read_some(boost::asio::mutable_buffer buf, IoHandler handler) = 0;
  // Writes the whole buffer.
  virtual void write(boost::asio::const_buffer buf, IoHandler handler) = 0;
  // Cancels everything outstanding and closes; idempotent.
  virtual void close() = 0;
  // What connect() is doing now: "resolving", "connecting", "TLS handshake"; for timeout messages.
  virtual const char* phase() const = 0;
  // A read or write error as a sentence fragment ("server closed the connection").
  virtual std::string describe(const boost::system::error_code& ec) const;
};

// "127.0.0.1:6379", "[::1]:6379" or "unix:/run/redis.sock".
std::string describe_address(const RedisSettings& settings);

// Builds the transport the settings ask for; fails when TLS files cannot be
// loaded (the message names the file and the setting).
Result<std::unique_ptr<Transport>> make_transport(boost::asio::io_context& io,
                                                  const RedisSettings& settings,
                                                  const ConnectionOptions& options);

}  // namespace guardant::engine::redis
