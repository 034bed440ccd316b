// Header-only C++ layer over <guardant/probe.h>, compiled into the plugin.
//
// What it gives a plugin author:
//  - `guardant::Check`: derive one class per probe type, implement start();
//    call complete() once. Completion is single-shot: later calls are ignored.
//  - RAII `Timer`, `FdWatch` and `Resolve` bound to a check: destroying or
//    resetting them cancels the host-side operation, so nothing fires into a
//    dead object.
//  - Every callback from the host goes through a noexcept trampoline. An
//    exception escaping start() or a callback becomes an `inconclusive`
//    result carrying the exception's text; `guardant::ConfigError` thrown from
//    start() refuses the check as invalid configuration (the job fails
//    without retry, with the message naming the option).
//  - GUARDANT_PLUGIN(...) exports the entry point and builds the descriptor.
//
// Nothing C++ crosses the boundary: the host only sees the C structs.
#ifndef GUARDANT_PROBE_HPP
#define GUARDANT_PROBE_HPP

#include <guardant/probe.h>

#include <atomic>
#include <cstdio>
#include <cstring>
#include <exception>
#include <functional>
#include <initializer_list>
#include <memory>
#include <optional>
#include <stdexcept>
#include <string>
#include <utility>
#include <vector>

namespace guardant {

enum class Status : int32_t {
  Up = GUARDANT_STATUS_UP,
  Down = GUARDANT_STATUS_DOWN,
  Degraded = GUARDANT_STATUS_DEGRADED,
  Inconclusive = GUARDANT_STATUS_INCONCLUSIVE,
};

enum class LogLevel : int32_t {
  Trace = GUARDANT_LOG_TRACE,
  Debug = GUARDANT_LOG_DEBUG,
  Info = GUARDANT_LOG_INFO,
  Warn = GUARDANT_LOG_WARN,
  Error = GUARDANT_LOG_ERROR,
};

// Thrown from Check::start() when the check's options are wrong. The message
// should name the option, e.g. "option 'timeout' must be a number".
class ConfigError : public std::runtime_error {
 public:
  using std::runtime_error::runtime_error;
};

struct Failure {
  std::string reason;  // one of GUARDANT_REASON_*
  std::string phase;   // resolve | connect | tls | send | wait | transfer | assert
  std::string detail;
};

struct Timings {
  double resolve_ms = -1, connect_ms = -1, tls_ms = -1, send_ms = -1, wait_ms = -1,
         transfer_ms = -1, total_ms = -1;
};

struct Result {
  Status status = Status::Inconclusive;
  int32_t protocol_code = 0;
  double response_time_ms = 0;
  std::string message;
  std::optional<Failure> failure;
  std::string details_json;  // a JSON object text, or empty
  std::optional<Timings> timings;

  static Result up(double response_time_ms, std::string message) {
    Result r;
    r.status = Status::Up;
    r.response_time_ms = response_time_ms;
    r.message = std::move(message);
    return r;
  }
  static Result down(std::string reason, std::string phase, std::string detail,
                     double response_time_ms = 0) {
    Result r;
    r.status = Status::Down;
    r.response_time_ms = response_time_ms;
    r.message = detail;
    r.failure = Failure{std::move(reason), std::move(phase), std::move(detail)};
    return r;
  }
  static Result inconclusive(std::string detail) {
    Result r;
    r.status = Status::Inconclusive;
    r.message = detail;
    r.failure = Failure{GUARDANT_REASON_WORKER_ERROR, "", std::move(detail)};
    return r;
  }
};

struct Request {
  std::string check_id;
  std::string probe_type;
  std::string target;
  std::string config_json;
  int64_t deadline_ns = 0;
  int64_t timeout_ms = 0;

  static Request from(const guardant_check_request* r) {
    Request q;
    q.check_id = r->check_id ? r->check_id : "";
    q.probe_type = r->probe_type ? r->probe_type : "";
    q.target = r->target ? r->target : "";
    q.config_json = r->config_json ? r->config_json : "{}";
    q.deadline_ns = r->deadline_ns;
    q.timeout_ms = r->timeout_ms;
    return q;
  }
};

namespace detail {
// One per plugin .so (hidden visibility keeps it private to the plugin).
inline const guardant_host_api*& host_slot() noexcept {
  static const guardant_host_api* api = nullptr;
  return api;
}
}  // namespace detail

// Host services for code that is not tied to one check.
struct Host {
  static const guardant_host_api* api() noexcept { return detail::host_slot(); }
  // Any thread.
  static void log(LogLevel level, const std::string& message) noexcept {
    if (auto* a = api()) a->log(a->host, static_cast<int32_t>(level), message.c_str());
  }
  // Any thread. Host monotonic clock (ns), the clock of deadlines.
  static int64_t now_ns() noexcept { return api() ? api()->monotonic_ns(api()->host) : 0; }
  static int64_t wall_ms() noexcept { return api() ? api()->wall_ms(api()->host) : 0; }
  // Any thread. Runs fn on the loop thread; false when the host refused.
  static bool post(std::function<void()> fn) {
    auto* a = api();
    if (!a) return false;
    auto* heap = new std::function<void()>(std::move(fn));
    auto rc = a->post(
        a->host,
        [](void* u) noexcept {
          std::unique_ptr<std::function<void()>> f(static_cast<std::function<void()>*>(u));
          try {
            (*f)();
          } catch (const std::exception& e) {
            Host::log(LogLevel::Error, std::string("posted function threw: ") + e.what());
          } catch (...) {
            Host::log(LogLevel::Error, "posted function threw a non-standard exception");
          }
        },
        heap);
    if (rc != GUARDANT_OK) {
      delete heap;
      return false;
    }
    return true;
  }
};

// How long a check may run, starting at `now_ns`: min(the probe's own
// timeout option, time to the host's deadline minus a margin). The margin
// (5% of the time left, 2..50 ms) lets the probe's own, more precise result
// reach the host before the host's deadline records a generic `timeout`.
// Without a deadline (FakeHost calls without one) `fallback_ns` applies.
inline int64_t check_budget_ns(const Request& request, std::optional<double> timeout_ms,
                               int64_t now_ns, int64_t fallback_ns = 10'000'000'000) {
  constexpr int64_t kNsPerMs = 1'000'000;
  int64_t budget = fallback_ns;
  if (timeout_ms) budget = static_cast<int64_t>(*timeout_ms * kNsPerMs + 0.5);
  if (request.deadline_ns > 0) {
    const int64_t to_deadline = request.deadline_ns - now_ns;
    int64_t margin = to_deadline / 20;
    if (margin < 2 * kNsPerMs) margin = 2 * kNsPerMs;
    if (margin > 50 * kNsPerMs) margin = 50 * kNsPerMs;
    const int64_t by_deadline = to_deadline - margin;
    budget = timeout_ms ? (budget < by_deadline ? budget : by_deadline) : by_deadline;
  }
  return budget;
}

class Check;

namespace detail {
// Runs a callback of a check, turning an exception into an inconclusive
// result. Defined after Check.
template <class F>
void guarded(Check* owner, F&& fn) noexcept;
}  // namespace detail

// One-shot timer. Loop thread only. Cancelled when reset or destroyed.
class Timer {
 public:
  explicit Timer(Check* owner = nullptr) : owner_(owner) {}
  Timer(const Timer&) = delete;
  Timer& operator=(const Timer&) = delete;
  ~Timer() { cancel(); }

  // Replaces any pending timer. Returns false when the host refused.
  bool start(int64_t delay_ns, std::function<void()> fn) {
    cancel();
    fn_ = std::move(fn);
    auto* a = Host::api();
    handle_ = a->timer_start(a->host, delay_ns < 0 ? 0 : delay_ns, &Timer::fire, this);
    return handle_ != nullptr;
  }
  void cancel() noexcept {
    if (handle_) {
      auto* a = Host::api();
      a->timer_cancel(a->host, handle_);
      handle_ = nullptr;
    }
  }
  bool pending() const noexcept { return handle_ != nullptr; }

 private:
  static void fire(void* user) noexcept {
    auto* self = static_cast<Timer*>(user);
    self->handle_ = nullptr;  // invalid once the callback starts
    auto fn = self->fn_;      // the callback may restart or destroy the timer
    detail::guarded(self->owner_, fn);
  }
  Check* owner_;
  guardant_timer* handle_ = nullptr;
  std::function<void()> fn_;
};

// Watches a descriptor the plugin owns. Loop thread only. Unwatched (never
// closed) when reset or destroyed: close the fd after the watch.
class FdWatch {
 public:
  explicit FdWatch(Check* owner = nullptr) : owner_(owner) {}
  FdWatch(const FdWatch&) = delete;
  FdWatch& operator=(const FdWatch&) = delete;
  ~FdWatch() { reset(); }

  bool watch(int fd, uint32_t events, std::function<void(uint32_t events)> fn) {
    reset();
    fn_ = std::move(fn);
    auto* a = Host::api();
    handle_ = a->fd_watch(a->host, fd, events, &FdWatch::fire, this);
    return handle_ != nullptr;
  }
  bool update(uint32_t events) noexcept {
    auto* a = Host::api();
    return handle_ && a->fd_watch_update(a->host, handle_, events) == GUARDANT_OK;
  }
  void reset() noexcept {
    if (handle_) {
      auto* a = Host::api();
      a->fd_unwatch(a->host, handle_);
      handle_ = nullptr;
    }
  }
  bool active() const noexcept { return handle_ != nullptr; }

 private:
  static void fire(void* user, int, uint32_t events) noexcept {
    auto* self = static_cast<FdWatch*>(user);
    auto fn = self->fn_;
    detail::guarded(self->owner_, [&] { fn(events); });
  }
  Check* owner_;
  guardant_fd_watch* handle_ = nullptr;
  std::function<void(uint32_t)> fn_;
};

struct Address {
  int family = 0;  // 4 or 6
  std::vector<unsigned char> sockaddr;
  std::string text;
};

struct Resolution {
  bool ok = false;
  std::vector<Address> addresses;
  std::string error_reason;  // dns_nxdomain | dns_error
  std::string error_detail;
  double elapsed_ms = 0;
};

// Non-blocking name resolution through the host. Loop thread only.
class Resolve {
 public:
  explicit Resolve(Check* owner = nullptr) : owner_(owner) {}
  Resolve(const Resolve&) = delete;
  Resolve& operator=(const Resolve&) = delete;
  ~Resolve() { cancel(); }

  bool start(const std::string& name, int family, std::function<void(const Resolution&)> fn) {
    cancel();
    fn_ = std::move(fn);
    auto* a = Host::api();
    op_ = a->resolve(a->host, name.c_str(), family, &Resolve::fire, this);
    return op_ != nullptr;
  }
  void cancel() noexcept {
    if (op_) {
      auto* a = Host::api();
      a->resolve_cancel(a->host, op_);
      op_ = nullptr;
    }
  }
  bool pending() const noexcept { return op_ != nullptr; }

 private:
  static void fire(void* user, const guardant_resolve_result* r) noexcept {
    auto* self = static_cast<Resolve*>(user);
    self->op_ = nullptr;
    auto fn = self->fn_;
    detail::guarded(self->owner_, [&] {
      Resolution res;
      res.ok = r->rc == GUARDANT_OK && r->count > 0;
      res.elapsed_ms = r->elapsed_ms;
      if (r->error_reason) res.error_reason = r->error_reason;
      if (r->error_detail) res.error_detail = r->error_detail;
      for (size_t i = 0; i < r->count; ++i) {
        const auto& in = r->addresses[i];
        Address out;
        out.family = in.family;
        auto* p = static_cast<const unsigned char*>(in.sockaddr);
        out.sockaddr.assign(p, p + in.sockaddr_len);
        out.text = in.text ? in.text : "";
        res.addresses.push_back(std::move(out));
      }
      fn(res);
    });
  }
  Check* owner_;
  guardant_resolve_op* op_ = nullptr;
  std::function<void(const Resolution&)> fn_;
};

// Base class of one check in flight. The C++ layer creates one per
// start_check (CheckT must be constructible from Request) and deletes it on
// the loop after it completed.
class Check {
 public:
  explicit Check(Request request) : request_(std::move(request)) {}
  Check(const Check&) = delete;
  Check& operator=(const Check&) = delete;
  virtual ~Check() = default;

  // Loop thread. Begin the check; complete() now or later. Throw
  // ConfigError for bad options (before starting any work).
  virtual void start() = 0;
  // Loop thread. The host gave up (deadline or shutdown). The default
  // completes at once; override to stop work first.
  virtual void on_cancel() { complete(Result::inconclusive("cancelled by the host")); }

  // Any thread (but one thread at a time). Single-shot: only the first call
  // delivers; later calls are ignored.
  void complete(const Result& r) noexcept {
    if (completed_.exchange(true) || !handle_) return;
    guardant_timings t{};
    guardant_check_result c{};
    c.struct_size = sizeof c;
    c.abi_major = GUARDANT_ABI_MAJOR;
    c.abi_minor = GUARDANT_ABI_MINOR;
    c.status = static_cast<int32_t>(r.status);
    c.protocol_code = r.protocol_code;
    c.response_time_ms = r.response_time_ms;
    c.message = r.message.empty() ? nullptr : r.message.c_str();
    if (r.failure) {
      c.failure_reason = r.failure->reason.c_str();
      c.failure_phase = r.failure->phase.empty() ? nullptr : r.failure->phase.c_str();
      c.failure_detail = r.failure->detail.c_str();
    }
    c.details_json = r.details_json.empty() ? nullptr : r.details_json.c_str();
    if (r.timings) {
      t.struct_size = sizeof t;
      t.abi_major = GUARDANT_ABI_MAJOR;
      t.abi_minor = GUARDANT_ABI_MINOR;
      t.resolve_ms = r.timings->resolve_ms;
      t.connect_ms = r.timings->connect_ms;
      t.tls_ms = r.timings->tls_ms;
      t.send_ms = r.timings->send_ms;
      t.wait_ms = r.timings->wait_ms;
      t.transfer_ms = r.timings->transfer_ms;
      t.total_ms = r.timings->total_ms;
      c.timings = &t;
    }
    auto* a = Host::api();
    // complete() releases the handle; handle_ is never read again after the
    // exchange above, so it needs no reset (and no second atomic).
    a->complete(a->host, handle_, &c);
    // Delete on the loop, after whatever callback we are in has returned.
    // If the host refuses the post it is shutting down; the object is then
    // left for process exit rather than deleted under a running callback.
    Host::post([this] { delete this; });
  }
  bool completed() const noexcept { return completed_; }
  const Request& request() const noexcept { return request_; }
  // Milliseconds left until the host's deadline (may be negative).
  double remaining_ms() const noexcept {
    return static_cast<double>(request_.deadline_ns - Host::now_ns()) / 1e6;
  }

 private:
  template <class CheckT>
  friend struct ProbeTypeOps;
  Request request_;
  guardant_check* handle_ = nullptr;
  // Atomic: a plugin thread may complete while the loop checks it in a callback.
  std::atomic<bool> completed_{false};
};

namespace detail {
inline void write_err(char* err, size_t len, const std::string& text) noexcept {
  if (!err || len == 0) return;
  std::snprintf(err, len, "%s", text.c_str());
}

template <class F>
void guarded(Check* owner, F&& fn) noexcept {
  if (owner && owner->completed()) return;  // nothing may fire into a finished check
  try {
    fn();
  } catch (const std::exception& e) {
    if (owner)
      owner->complete(Result::inconclusive(std::string("probe threw: ") + e.what()));
    else
      Host::log(LogLevel::Error, std::string("callback threw: ") + e.what());
  } catch (...) {
    if (owner)
      owner->complete(Result::inconclusive("probe threw a non-standard exception"));
    else
      Host::log(LogLevel::Error, "callback threw a non-standard exception");
  }
}
}  // namespace detail

// The C trampolines for one probe type implemented by CheckT.
template <class CheckT>
struct ProbeTypeOps {
  static guardant_rc start(void*, guardant_check* handle, const guardant_check_request* req,
                           void** check_user, char* err, size_t err_len) noexcept {
    CheckT* check = nullptr;
    try {
      check = new CheckT(Request::from(req));
    } catch (const ConfigError& e) {
      detail::write_err(err, err_len, e.what());
      return GUARDANT_ERR_INVALID_CONFIG;
    } catch (const std::exception& e) {
      detail::write_err(err, err_len, e.what());
      return GUARDANT_ERR_INTERNAL;
    } catch (...) {
      detail::write_err(err, err_len, "probe constructor threw");
      return GUARDANT_ERR_INTERNAL;
    }
    check->handle_ = handle;
    *check_user = static_cast<Check*>(check);
    try {
      check->start();
    } catch (const ConfigError& e) {
      if (!check->completed()) {
        detail::write_err(err, err_len, e.what());
        check->handle_ = nullptr;  // not started: the host keeps the handle
        delete check;
        return GUARDANT_ERR_INVALID_CONFIG;
      }
    } catch (const std::exception& e) {
      check->complete(Result::inconclusive(std::string("probe threw: ") + e.what()));
    } catch (...) {
      check->complete(Result::inconclusive("probe threw a non-standard exception"));
    }
    return GUARDANT_OK;
  }
  static void cancel(void*, guardant_check*, void* check_user) noexcept {
    auto* check = static_cast<Check*>(check_user);
    if (check->completed()) return;
    try {
      check->on_cancel();
    } catch (...) {
    }
    // Whatever on_cancel did, the handle must be released.
    check->complete(Result::inconclusive("cancelled by the host"));
  }
};

// Describes a probe type implemented by CheckT, for GUARDANT_PLUGIN.
template <class CheckT>
guardant_probe_type probe_type(const char* name, const char* description, uint64_t flags,
                               const char* options_schema_json = nullptr) {
  guardant_probe_type t{};
  t.struct_size = sizeof t;
  t.abi_major = GUARDANT_ABI_MAJOR;
  t.abi_minor = GUARDANT_ABI_MINOR;
  t.name = name;
  t.description = description;
  t.capability_flags = flags;
  t.options_schema_json = options_schema_json;
  t.type_user = nullptr;
  t.start_check = &ProbeTypeOps<CheckT>::start;
  t.cancel_check = &ProbeTypeOps<CheckT>::cancel;
  return t;
}

struct PluginInfo {
  const char* name;
  const char* version;
  const char* description;
  // Optional, loop thread. Runs once in init after the host API is set; an
  // exception refuses the plugin with its text.
  void (*on_init)() = nullptr;
  // Optional, loop thread. Runs once before unload.
  void (*on_shutdown)() = nullptr;
  uint16_t min_host_abi_minor = 0;
};

namespace detail {
inline void (*&shutdown_slot() noexcept)() {
  static void (*fn)() = nullptr;
  return fn;
}
inline void shutdown_trampoline() {
  try {
    if (auto fn = shutdown_slot()) fn();
  } catch (...) {
  }
  host_slot() = nullptr;
}

inline const guardant_plugin_desc* init_plugin(const guardant_host_api* host, char* err,
                                               size_t err_len, const PluginInfo& info,
                                               std::initializer_list<guardant_probe_type> types) {
  if (!host) {
    write_err(err, err_len, "no host API");
    return nullptr;
  }
  if (host->abi_major != GUARDANT_ABI_MAJOR) {
    write_err(err, err_len,
              "plugin built for ABI " + std::to_string(GUARDANT_ABI_MAJOR) + "." +
                  std::to_string(GUARDANT_ABI_MINOR) + ", host provides " +
                  std::to_string(host->abi_major) + "." + std::to_string(host->abi_minor));
    return nullptr;
  }
  static std::vector<guardant_probe_type> type_storage;
  static guardant_plugin_desc desc{};
  try {
    host_slot() = host;
    type_storage.assign(types.begin(), types.end());
    desc.struct_size = sizeof desc;
    desc.abi_major = GUARDANT_ABI_MAJOR;
    desc.abi_minor = GUARDANT_ABI_MINOR;
    desc.min_host_abi_minor = info.min_host_abi_minor;
    desc.name = info.name;
    desc.version = info.version;
    desc.description = info.description;
    desc.probe_type_count = type_storage.size();
    desc.probe_types = type_storage.data();
    desc.shutdown = &shutdown_trampoline;
    shutdown_slot() = info.on_shutdown;
    if (info.on_init) info.on_init();
    return &desc;
  } catch (const std::exception& e) {
    write_err(err, err_len, std::string("plugin init failed: ") + e.what());
  } catch (...) {
    write_err(err, err_len, "plugin init failed");
  }
  host_slot() = nullptr;
  return nullptr;
}
}  // namespace detail

}  // namespace guardant

// Exports the plugin entry point. Usage, once per plugin:
//   GUARDANT_PLUGIN((guardant::PluginInfo{"guardant-tcp", "1.0.0", "TCP probe"}),
//                   guardant::probe_type<TcpCheck>("tcp", "TCP connect", GUARDANT_CAP_IPV4))
#define GUARDANT_PLUGIN(INFO, ...)                                                     \
  extern "C" GUARDANT_EXPORT const guardant_plugin_desc* guardant_plugin_init(         \
      const guardant_host_api* host, char* err, size_t err_len) {                      \
    try {                                                                              \
      return ::guardant::detail::init_plugin(host, err, err_len, INFO, {__VA_ARGS__}); \
    } catch (...) {                                                                    \
      ::guardant::detail::write_err(err, err_len, "plugin init threw");                \
      return nullptr;                                                                  \
    }                                                                                  \
  }

#endif  // GUARDANT_PROBE_HPP
