// A real engine core for tests: an io_context, a clock (manual or real), the
// plugin host runtime and registry. Fixture plugins are real .so files built
// by the test build (GUARDANT_TEST_FIXTURE_DIR).
#pragma once

#include <boost/asio/io_context.hpp>
#include <chrono>
#include <functional>
#include <string>
#include <type_traits>

#include "core/asio_clock.hpp"
#include "core/manual_clock.hpp"
#include "plugins/host_runtime.hpp"
#include "plugins/plugin_registry.hpp"

namespace guardant::test {

inline std::string fixture(const std::string& name) {
  return std::string(GUARDANT_TEST_FIXTURE_DIR) + "/" + name + ".so";
}

template <class ClockT>
struct Harness {
  boost::asio::io_context io;
  ClockT clock;
  engine::HostRuntime runtime{io, clock};
  engine::PluginRegistry registry{runtime};
  int late = 0;
  int duplicates = 0;

  // Runs what is still posted (completions, deferred deletes of C++-layer
  // checks) before the registry and the loop go away.
  ~Harness() { settle(); }

  Harness() : clock(make_clock()) {
    runtime.on_late_completion = [this](const std::string&) { ++late; };
    runtime.on_duplicate_completion = [this](const std::string&) { ++duplicates; };
  }

  ClockT make_clock() {
    if constexpr (std::is_constructible_v<ClockT, boost::asio::io_context&>)
      return ClockT(io);
    else
      return ClockT();
  }

  // Runs whatever is ready on the loop (posted completions) without waiting.
  void settle() {
    io.restart();
    io.poll();
  }
  // Runs the loop until pred() holds or `limit` of real time passed.
  bool run_until(const std::function<bool()>& pred,
                 std::chrono::milliseconds limit = std::chrono::seconds(5)) {
    auto end = std::chrono::steady_clock::now() + limit;
    while (!pred()) {
      if (std::chrono::steady_clock::now() > end) return false;
      io.restart();
      io.run_one_for(std::chrono::milliseconds(5));
    }
    return true;
  }
};

using ManualHarness = Harness<engine::ManualClock>;

using RealHarness = Harness<engine::AsioClock>;

}  // namespace guardant::test
