#include "worker/fleet_command.hpp"

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <iostream>

#include "core/asio_clock.hpp"
#include "core/logging.hpp"
#include "fleet/worker_registry.hpp"
#include "redis/redis_connection.hpp"

namespace guardant::engine {

int list_workers(const Config& config, std::ostream& out, std::ostream& err,
                 const std::string& prefix) {
  using namespace std::chrono_literals;
  boost::asio::io_context io;
  AsioClock clock(io);
  // The connection's own retry warnings would repeat what we print below.
  logger("fleet-cli")->set_level(spdlog::level::err);
  // Declared before the connection: its destructor completes what is still
  // pending, and those callbacks look at these.
  int rc = 1;
  bool finished = false, reading = false;
  Clock::TimerId poll = 0, deadline = 0;
  redis::RedisConnection conn(io, clock, config.redis, "guardant-worker:workers-cli", "fleet-cli");
  auto finish = [&](int code) {
    if (finished) return;
    finished = true;
    rc = code;
    if (poll) clock.cancel(poll);
    if (deadline) clock.cancel(deadline);
    conn.stop();
    io.stop();
  };

  conn.on_ready([&] {
    if (reading || finished) return;
    reading = true;
    read_worker_records(conn, prefix, [&](Result<std::vector<WorkerRecord>> records) {
      if (finished) return;
      if (!records) {
        err << "guardant-worker: cannot read the worker registry from Redis at " << conn.address()
            << ": " << records.error().message << "\n";
        finish(1);
        return;
      }
      out << format_worker_table(std::move(records.value()), clock.wall_ms());
      finish(0);
    });
  });

  // The connection retries forever and reports failed attempts only through
  // last_error(), so look after each short wait: the first failed attempt
  // (refused, timed out after connect_timeout_ms, AUTH rejected) ends the
  // command instead of retrying.
  std::function<void()> check = [&] {
    poll = 0;
    if (!reading && !conn.ready() && conn.attempts() > 0 && !conn.last_error().empty()) {
      err << "guardant-worker: cannot reach Redis at " << conn.address() << ": "
          << conn.last_error() << "\n";
      finish(1);
      return;
    }
    poll = clock.call_after(10ms, check);
  };
  poll = clock.call_after(10ms, check);

  // A bound on the whole command, should a connect or a reply hang anyway
  // (connect_timeout_ms 0 means no per-attempt limit; replies have none).
  const auto connect_limit = std::chrono::milliseconds(
      config.redis.connect_timeout_ms ? config.redis.connect_timeout_ms : 5'000);
  const auto limit = connect_limit + 10s;
  deadline = clock.call_after(limit, [&] {
    deadline = 0;
    if (reading)
      err << "guardant-worker: Redis at " << conn.address() << " did not answer within "
          << limit.count() << " ms\n";
    else
      err << "guardant-worker: cannot reach Redis at " << conn.address()
          << ": no connection within " << limit.count() << " ms"
          << (conn.last_error().empty() ? "" : " (" + conn.last_error() + ")") << "\n";
    finish(1);
  });

  conn.start();
  io.run();
  conn.stop();
  return rc;
}

int list_workers(const Config& config, std::ostream& out) {
  return list_workers(config, out, std::cerr);
}

}  // namespace guardant::engine
