#pragma once

#include <map>
#include <utility>

#include "core/clock.hpp"

namespace guardant::engine {

// A clock that moves only when told to. advance() runs the callbacks that
// fall due, in time order, with now() set to each one's due time.
class ManualClock final : public Clock {
 public:
  explicit ManualClock(Nanos start = Nanos{1'000'000'000},
                       int64_t wall_start_ms = 1'764'849'600'000)
      : now_(start), wall_origin_ms_(wall_start_ms - start.count() / 1'000'000) {}

  Nanos now() const override { return now_; }
  int64_t wall_ms() const override { return wall_origin_ms_ + now_.count() / 1'000'000; }
  TimerId call_at(Nanos when, std::function<void()> fn) override {
    auto id = next_id_++;
    timers_.emplace(std::pair{when, id}, std::move(fn));
    return id;
  }
  bool cancel(TimerId id) override {
    for (auto it = timers_.begin(); it != timers_.end(); ++it)
      if (it->first.second == id) {
        timers_.erase(it);
        return true;
      }
    return false;
  }
  // Moves time forward by `d`, firing every timer due on the way.
  void advance(Nanos d) { advance_to(now_ + d); }
  void advance_to(Nanos t) {
    while (!timers_.empty() && timers_.begin()->first.first <= t) {
      auto node = timers_.extract(timers_.begin());
      if (node.key().first > now_) now_ = node.key().first;
      node.mapped()();
    }
    if (t > now_) now_ = t;
  }
  size_t pending() const { return timers_.size(); }

 private:
  Nanos now_;
  int64_t wall_origin_ms_;
  TimerId next_id_ = 1;
  std::map<std::pair<Nanos, TimerId>, std::function<void()>> timers_;
};

}  // namespace guardant::engine
