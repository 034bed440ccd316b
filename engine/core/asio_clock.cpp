#include "core/asio_clock.hpp"

namespace guardant::engine {

AsioClock::~AsioClock() {
  timers_.clear();
}

Nanos AsioClock::now() const {
  return std::chrono::duration_cast<Nanos>(std::chrono::steady_clock::now().time_since_epoch());
}

int64_t AsioClock::wall_ms() const {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

Clock::TimerId AsioClock::call_at(Nanos when, std::function<void()> fn) {
  auto id = next_id_++;
  auto timer = std::make_unique<boost::asio::steady_timer>(
      io_, std::chrono::steady_clock::time_point(
               std::chrono::duration_cast<std::chrono::steady_clock::duration>(when)));
  timer->async_wait([this, id, fn = std::move(fn)](const boost::system::error_code& ec) {
    if (ec) return;  // cancelled: the entry is already gone
    auto it = timers_.find(id);
    if (it == timers_.end()) return;
    // Keep the timer object alive until this handler returns.
    auto self = std::move(it->second);
    timers_.erase(it);
    fn();
  });
  timers_.emplace(id, std::move(timer));
  return id;
}

bool AsioClock::cancel(TimerId id) {
  auto it = timers_.find(id);
  if (it == timers_.end()) return false;
  // Destroying a steady_timer cancels its wait; the handler then runs with
  // operation_aborted and returns without touching the map.
  timers_.erase(it);
  return true;
}

}  // namespace guardant::engine
