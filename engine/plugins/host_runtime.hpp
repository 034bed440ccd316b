// The host side of the probe ABI: the services table (guardant_host_api) that
// every plugin receives, implemented on the worker's Boost.Asio loop and its
// injected Clock. One HostRuntime serves all plugins; each plugin gets its own
// guardant_host context so logs carry its name and its outstanding work
// (checks, timers, fd watches, resolves) is counted, which is what makes
// "never unload a busy plugin" enforceable.
#pragma once

#include <guardant/probe.h>

#include <atomic>
#include <boost/asio/io_context.hpp>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <unordered_set>

#include "core/check_result.hpp"
#include "core/clock.hpp"

namespace guardant::engine {
class HostRuntime;

}  // namespace guardant::engine
struct guardant_check;
struct guardant_timer;
struct guardant_fd_watch;
struct guardant_resolve_op;

namespace guardant::engine {
// Outstanding work of one plugin. Loop thread only: completions from plugin
// threads are posted to the loop before they touch it.
struct PluginActivity {
  // Started and not yet released by complete(); owned here, so a handle a
  // plugin never releases stays reachable instead of leaking.
  std::unordered_set<guardant_check*> checks;
  // Likewise for timers and fd watches; resolves only need counting (the
  // pending resolver handler owns its state).
  std::unordered_set<guardant_timer*> timers;
  std::unordered_set<guardant_fd_watch*> watches;
  size_t resolves = 0;
  bool idle() const { return checks.empty() && timers.empty() && watches.empty() && resolves == 0; }
};
}  // namespace guardant::engine

// The opaque C handles, defined by the host.
struct guardant_host {
  guardant::engine::HostRuntime* runtime;
  std::string plugin_name;
  guardant::engine::PluginActivity activity;
};

struct guardant_check {
  guardant_host* host = nullptr;
  std::string type_name;
  const guardant_probe_type* type = nullptr;
  void* check_user = nullptr;
  // Set by the first complete(), from any thread; later ones are refused.
  std::atomic<bool> completed{false};
  // Loop thread: the host stopped waiting (deadline or shutdown); the result,
  // when it comes, is dropped and counted.
  bool abandoned = false;
  std::function<void(guardant::engine::CheckResult)> on_complete;
};

namespace guardant::engine {

class HostRuntime {
 public:
  HostRuntime(boost::asio::io_context& io, Clock& clock);
  HostRuntime(const HostRuntime&) = delete;
  HostRuntime& operator=(const HostRuntime&) = delete;

  // The services table for one plugin context. Both must outlive the plugin.
  guardant_host_api make_api(guardant_host& ctx);

  // After this, post() is refused so plugin threads stop feeding the loop.
  void begin_shutdown() { shutting_down_ = true; }
  bool shutting_down() const { return shutting_down_; }
  bool on_loop_thread() const { return std::this_thread::get_id() == loop_thread_; }
  // The thread that runs the io_context; defaults to the constructing one.
  void set_loop_thread(std::thread::id id) { loop_thread_ = id; }

  // Called on the loop for a result that arrived after the host gave up.
  std::function<void(const std::string& type)> on_late_completion;
  // Called for a second complete() of the same check.
  std::function<void(const std::string& type)> on_duplicate_completion;

  boost::asio::io_context& io() { return io_; }
  Clock& clock() { return clock_; }

 private:
  boost::asio::io_context& io_;
  Clock& clock_;
  std::atomic<bool> shutting_down_{false};
  std::thread::id loop_thread_;
};

// Copies a plugin's result into owned memory, repairing what is invalid (an
// unknown status becomes inconclusive with a note) so bad plugin output can
// never corrupt a result record.
CheckResult copy_result(const guardant_check_result* r);

}  // namespace guardant::engine
