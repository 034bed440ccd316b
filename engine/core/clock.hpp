// Time as an injected dependency: a monotonic clock with timers. Production
// code uses AsioClock (the event loop's steady timers); tests use ManualClock
// and advance time by hand, so a 30-second timeout is a microsecond test.
#pragma once

#include <chrono>
#include <cstdint>
#include <functional>

namespace guardant::engine {

using Nanos = std::chrono::nanoseconds;

class Clock {
 public:
  using TimerId = uint64_t;
  virtual ~Clock() = default;

  // Monotonic time since an arbitrary origin. Loop thread or any thread.
  virtual Nanos now() const = 0;
  // Wall clock, milliseconds since the Unix epoch.
  virtual int64_t wall_ms() const = 0;
  // Runs fn on the loop at or after `when` (monotonic). Loop thread only.
  virtual TimerId call_at(Nanos when, std::function<void()> fn) = 0;
  // Returns false when the timer already fired or was cancelled. After it
  // returns the callback will not run. Loop thread only.
  virtual bool cancel(TimerId id) = 0;

  TimerId call_after(Nanos delay, std::function<void()> fn) {
    return call_at(now() + delay, std::move(fn));
  }
};

}  // namespace guardant::engine
