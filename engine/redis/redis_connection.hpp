// One pipelined connection to Redis on the worker's Boost.Asio loop.
//
// Threading and ownership contract:
// - Every member function, and every callback this class makes (ReplyCallback,
//   on_ready, on_down), runs on the thread running the io_context given to the
//   constructor (the loop thread). Nothing here is thread-safe; other threads
//   must boost::asio::post onto the loop first. No call ever blocks.
// - Callbacks are never invoked re-entrantly from inside command()/pipeline()
//   (a command issued while not ready completes later, posted on the loop).
// - Callbacks may issue new commands, call stop(), or destroy nothing but
//   themselves: destroying the RedisConnection from inside one of its own
//   callbacks is not allowed (post the destruction instead).
// - stop() and the destructor complete every pending command synchronously with
//   "stopped". Declare a RedisConnection after the members its callbacks use,
//   so it is destroyed (and its callbacks run) while they are still alive.
//   After the destructor returns, no callback of this connection runs again,
//   including ones already posted.
// - The io_context and the Clock must outlive the RedisConnection.
// - Blocking commands (BLPOP, BZPOPMIN ...) hold up every later reply on the
//   same connection; give them a dedicated RedisConnection. There is no client
//   side read timeout, so a long block never drops the connection.
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <vector>

#include "config/config.hpp"
#include "core/clock.hpp"
#include "core/result.hpp"
#include "redis/reply.hpp"

namespace guardant::engine::redis {

// Knobs that are not operator configuration (tests shorten the backoff).
struct ConnectionOptions {
  // Reconnect delay: starts at backoff_initial, doubles per failed attempt up
  // to backoff_max, each delay randomised by +-backoff_jitter (fraction).
  std::chrono::milliseconds backoff_initial{100};
  std::chrono::milliseconds backoff_max{5'000};
  double backoff_jitter = 0.2;
  // TCP keepalive probes, so a silently vanished server (or NAT state) is
  // noticed even on an idle or blocked connection: first probe after idle,
  // then every interval, drop after count unanswered probes.
  std::chrono::seconds keepalive_idle{30};
  std::chrono::seconds keepalive_interval{10};
  int keepalive_count = 3;
};

class RedisConnection {
 public:
  // `client_name` is sent with CLIENT SETNAME after connecting (empty: none).
  // `facility` is the spdlog facility for this connection's logs.
  RedisConnection(boost::asio::io_context& io, Clock& clock, RedisSettings settings,
                  std::string client_name, std::string facility = "redis",
                  ConnectionOptions options = {});
  ~RedisConnection();  // stop(): pending commands complete with "stopped"

  RedisConnection(const RedisConnection&) = delete;
  RedisConnection& operator=(const RedisConnection&) = delete;

  // Connects now; on failure or drop reconnects forever with capped
  // exponential backoff plus jitter until stop(). Calling it while started
  // does nothing; after stop() it starts over.
  void start();
  // Closes the connection and cancels reconnecting; pending commands complete
  // with "stopped" before stop() returns. on_down is not called. Idempotent.
  void stop();

  // Connected and AUTH, SELECT and CLIENT SETNAME done.
  bool ready() const;
  // Why the connection is not ready: the last connect failure or drop reason,
  // e.g. "connect 127.0.0.1:6390: Connection refused" or
  // "AUTH failed for user 'x': WRONGPASS ...". Never contains the password.
  // Empty while ready.
  const std::string& last_error() const;
  // Successful handshakes so far (tests, metrics).
  uint64_t connects() const;
  // Connection attempts so far, successful or not.
  uint64_t attempts() const;
  // "127.0.0.1:6379" or "unix:/path", for messages.
  const std::string& address() const;

  // Called on the loop after every successful (re)connect handshake, and after
  // every drop of a ready connection (not on stop()). One subscriber each;
  // setting again replaces.
  void on_ready(std::function<void()> fn);
  void on_down(std::function<void(const std::string& why)> fn);

  // Sends one command. When ready it is written at once (many commands may be
  // in flight; replies are matched in order). When not ready the callback gets
  // "not_connected" (or "stopped" after stop()), posted, never called inside
  // command(). `cb` may be empty (fire and forget).
  void command(std::vector<std::string> argv, ReplyCallback cb);
  // Several commands in one write. The callback gets one Result<Reply> per
  // command, in order; an error reply is an Error "redis" in its slot. If the
  // connection drops first, the replies that arrived keep their values and the
  // others get the "disconnected" error; not ready: every slot gets the
  // "not_connected" error. An empty `commands` completes (posted) with {}.
  void pipeline(std::vector<std::vector<std::string>> commands,
                std::function<void(std::vector<Result<Reply>>)> cb);

  // Commands written and waiting for their reply (tests, metrics).
  size_t in_flight() const;

  class Impl;

 private:
  std::shared_ptr<Impl> impl_;
};

}  // namespace guardant::engine::redis
