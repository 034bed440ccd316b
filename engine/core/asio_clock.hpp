#pragma once

#include <boost/asio/io_context.hpp>
#include <boost/asio/steady_timer.hpp>
#include <memory>
#include <unordered_map>

#include "core/clock.hpp"

namespace guardant::engine {

// Clock on the Boost.Asio loop: std::chrono::steady_clock and steady_timers.
class AsioClock final : public Clock {
 public:
  explicit AsioClock(boost::asio::io_context& io) : io_(io) {}
  ~AsioClock() override;

  Nanos now() const override;
  int64_t wall_ms() const override;
  TimerId call_at(Nanos when, std::function<void()> fn) override;
  bool cancel(TimerId id) override;
  size_t pending() const { return timers_.size(); }

 private:
  boost::asio::io_context& io_;
  TimerId next_id_ = 1;
  std::unordered_map<TimerId, std::unique_ptr<boost::asio::steady_timer>> timers_;
};

}  // namespace guardant::engine
