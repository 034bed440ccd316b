// Header-only fake host: unit-test a probe plugin without the worker.
//
//   guardant::testing::FakeHost host;
//   auto* desc = host.init(&guardant_plugin_init);     // probe compiled into the test
//   // or: auto* desc = host.load("/path/probe_tcp.so");
//   ASSERT_NE(desc, nullptr) << host.last_error();
//   auto r = host.run_check("tcp", "127.0.0.1:8080", R"({"timeout":1000})",
//                           std::chrono::seconds(5));
//   EXPECT_EQ(r.status, guardant::Status::Up);
//   EXPECT_EQ(host.outstanding_timers(), 0u);
//
// It implements every guardant_host_api function with the same contract as
// the worker, on a small poll() loop that runs on the thread that created
// the FakeHost (the "loop thread"):
//  - log: captured (logs()), and echoed to stderr when asked.
//  - monotonic_ns: the real steady clock, or a manual clock (use_manual_clock,
//    advance) for timer-driven probes; wall_ms: the real clock.
//  - timers: one-shot, fired in due-time order (ties in start order).
//  - fd watches: level-triggered via ppoll(); error/hang-up reported as
//    GUARDANT_FD_ERROR together with the watched events.
//  - post: a thread-safe queue plus an eventfd that wakes the loop.
//  - complete: records the result (deep copy), checks it, counts a second
//    completion and a completion after the deadline ("late").
//  - resolve: getaddrinfo. Numeric addresses never reach DNS; names are
//    looked up on a helper thread whose answer is posted back. The callback
//    never runs inside resolve(). EAI_NONAME/EAI_NODATA/EAI_ADDRFAMILY map
//    to dns_nxdomain, anything else to dns_error.
//
// Contract violations a real host would refuse or crash on (a loop-only call
// from another thread, cancelling a fired timer, completing twice, closing a
// watched fd, invalid details_json...) are recorded in violations() instead,
// so a test can assert there were none.
//
// Linux only (eventfd, ppoll). Requires C++17. Needs libdl on old glibc.
#ifndef GUARDANT_FAKE_HOST_HPP
#define GUARDANT_FAKE_HOST_HPP

#include <arpa/inet.h>
#include <dlfcn.h>
#include <fcntl.h>
#include <guardant/probe.h>
#include <netdb.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <functional>
#include <guardant/json.hpp>
#include <guardant/probe.hpp>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <thread>
#include <utility>
#include <vector>

namespace guardant::testing {

struct LogEntry {
  LogLevel level;
  std::string plugin;  // the plugin's name, or "" before its init returned
  std::string message;
};

// What one check produced, as the host recorded it.
struct CheckRun {
  // start_check's return code and error text. When not GUARDANT_OK the check
  // never started and the other fields are defaults.
  guardant_rc start_rc = GUARDANT_OK;
  std::string start_error;
  bool completed = false;  // a result arrived before the deadline
  bool timed_out = false;  // the deadline passed first; cancel_check was called
  bool released = false;   // complete() was called (after a timeout: dropped)

  // The plugin's result; on a timeout what the host records instead
  // (down, "timeout").
  Status status = Status::Inconclusive;
  int32_t protocol_code = 0;
  double response_time_ms = 0;
  std::string message;
  std::string failure_reason;
  std::string failure_phase;
  std::string failure_detail;
  std::string details_json;  // as sent, "" when NULL
  std::optional<Timings> timings;
  double elapsed_ms = 0;  // host time from start_check to the result or the deadline

  bool started() const noexcept { return start_rc == GUARDANT_OK; }
  // details_json parsed; an empty object when there were none. Throws
  // json::ParseError when the plugin sent invalid JSON.
  json::Value details() const {
    return details_json.empty() ? json::Value(json::Object{}) : json::parse(details_json);
  }
};

class FakeHost {
 public:
  struct Options {
    bool log_to_stderr = false;  // echo plugin logs and violations to stderr
    // How long a timed-out check may take to call complete() after
    // cancel_check before it is reported as a violation (real time).
    std::chrono::milliseconds cancel_grace{2000};
  };

  FakeHost() : FakeHost(Options{}) {}
  explicit FakeHost(Options options)
      : options_(options), loop_thread_(std::this_thread::get_id()), inbox_(new Inbox) {}
  FakeHost(const FakeHost&) = delete;
  FakeHost& operator=(const FakeHost&) = delete;

  // Runs what is still posted (e.g. the C++ layer's deferred deletes), then
  // shuts the plugins down and unloads them. With work still outstanding a
  // plugin is neither shut down nor unloaded (its callbacks could still run),
  // as in the worker; this is printed to stderr.
  ~FakeHost() {
    settle();
    size_t outstanding = outstanding_timers() + outstanding_watches() + outstanding_resolves() +
                         outstanding_checks();
    for (auto it = plugins_.rbegin(); it != plugins_.rend(); ++it) {
      auto& p = **it;
      if (outstanding) {
        std::fprintf(stderr,
                     "[fake-host] not unloading plugin '%s': %zu timers, %zu watches, %zu "
                     "resolves, %zu checks outstanding\n",
                     p.name.c_str(), outstanding_timers(), outstanding_watches(),
                     outstanding_resolves(), outstanding_checks());
        continue;
      }
      if (p.desc && p.desc->shutdown) p.desc->shutdown();
      if (p.dl) dlclose(p.dl);
    }
    inbox_->close();
  }

  // ---------------------------------------------------------------------
  // Loading
  // ---------------------------------------------------------------------

  // Initialises a plugin whose entry point is linked into the test (e.g.
  // &guardant_plugin_init from GUARDANT_PLUGIN). Returns its descriptor, or
  // nullptr with the reason in last_error() (init failed, or the descriptor
  // breaks the ABI rules the worker enforces).
  const guardant_plugin_desc* init(guardant_plugin_init_fn fn) { return init_slot(fn, nullptr); }

  // dlopen()s a plugin .so and initialises it. nullptr with last_error() on
  // failure (dlerror's text for a missing file or unresolved symbol).
  const guardant_plugin_desc* load(const std::string& path) {
    if (!on_loop("load")) return nullptr;
    void* dl = dlopen(path.c_str(), RTLD_NOW | RTLD_LOCAL);
    if (!dl) {
      const char* e = dlerror();
      last_error_ = "cannot load " + path + ": " + (e ? e : "unknown dlopen error");
      return nullptr;
    }
    dlerror();
    void* sym = dlsym(dl, GUARDANT_PLUGIN_ENTRY_SYMBOL);
    if (!sym) {
      last_error_ = path + " does not export " + GUARDANT_PLUGIN_ENTRY_SYMBOL;
      dlclose(dl);
      return nullptr;
    }
    guardant_plugin_init_fn fn;
    static_assert(sizeof fn == sizeof sym, "function and object pointers differ in size");
    std::memcpy(&fn, &sym, sizeof fn);
    return init_slot(fn, dl);
  }

  const std::string& last_error() const noexcept { return last_error_; }

  // A host API table not tied to a loaded plugin, for calling the C services
  // directly in tests of the host or of code below the C++ layer.
  const guardant_host_api* raw_api() {
    if (!raw_slot_) {
      raw_slot_ = std::make_unique<Slot>();
      fill_api(*raw_slot_);
      raw_slot_->name = "raw";
    }
    return &raw_slot_->api;
  }

  // ---------------------------------------------------------------------
  // Running checks
  // ---------------------------------------------------------------------

  // Starts a check of `probe_type` with deadline now + timeout and runs the
  // loop until the plugin completes it or the deadline passes. On the
  // deadline it records a timeout, calls cancel_check and keeps running (up
  // to Options::cancel_grace) until complete() releases the handle. Before
  // returning it runs what was posted meanwhile, so that objects the plugin
  // deletes on the loop are gone when the counters are read.
  CheckRun run_check(const std::string& probe_type, const std::string& target,
                     const std::string& config_json = "{}",
                     std::chrono::nanoseconds timeout = std::chrono::seconds(10)) {
    uint64_t id = start_check(probe_type, target, config_json, timeout);
    wait_check(id);
    return check_run(id);
  }

  // The steps of run_check, for tests that act while a check is running.
  // start_check returns an id for wait_check/check_run/cancel.
  uint64_t start_check(const std::string& probe_type, const std::string& target,
                       const std::string& config_json, std::chrono::nanoseconds timeout) {
    auto rec = std::make_unique<CheckRec>();
    CheckRec* c = rec.get();
    {
      std::lock_guard<std::mutex> lock(mu_);
      c->id = next_id_++;
      checks_.emplace(c->id, std::move(rec));
    }
    if (!on_loop("start_check")) {
      c->run.start_rc = GUARDANT_ERR_REFUSED;
      c->run.start_error = "start_check called off the loop thread";
      return c->id;
    }
    const guardant_probe_type* type = find_type(probe_type);
    if (!type) {
      c->run.start_rc = GUARDANT_ERR_REFUSED;
      c->run.start_error = "no probe type '" + probe_type + "' is loaded";
      return c->id;
    }
    c->type = type;
    c->check_id = "fake-" + std::to_string(c->id);
    c->probe_type = probe_type;
    c->target = target;
    c->config = config_json;
    c->start_ns = now_ns();
    c->deadline_ns = c->start_ns + static_cast<int64_t>(timeout.count());

    guardant_check_request req{};
    req.struct_size = sizeof req;
    req.abi_major = GUARDANT_ABI_MAJOR;
    req.abi_minor = GUARDANT_ABI_MINOR;
    req.check_id = c->check_id.c_str();
    req.probe_type = c->probe_type.c_str();
    req.target = c->target.c_str();
    req.config_json = c->config.c_str();
    req.deadline_ns = c->deadline_ns;
    req.timeout_ms = std::chrono::duration_cast<std::chrono::milliseconds>(timeout).count();

    char err[1024] = {0};
    {
      std::lock_guard<std::mutex> lock(mu_);
      c->starting = true;
    }
    guardant_rc rc = type->start_check(type->type_user, handle_of<guardant_check>(c->id), &req,
                                       &c->check_user, err, sizeof err);
    err[sizeof err - 1] = '\0';
    std::lock_guard<std::mutex> lock(mu_);
    c->starting = false;
    c->run.start_rc = rc;
    if (rc != GUARDANT_OK) {
      c->run.start_error = err;
      if (c->completions > 0)
        violation_locked("check " + c->check_id + ": complete() called but start_check failed");
      if (rc == GUARDANT_ERR_INVALID_CONFIG && c->run.start_error.empty())
        violation_locked("check " + c->check_id + ": invalid config refused without a reason");
      return c->id;
    }
    c->started = true;
    return c->id;
  }

  // Runs the loop until check `id` completes or its deadline passes (see
  // run_check).
  void wait_check(uint64_t id) {
    CheckRec* c = find_check(id);
    if (!c || !c->started || !on_loop("wait_check")) return;
    for (;;) {
      if (released(c)) break;
      int64_t now = now_ns();
      if (now >= c->deadline_ns) {
        time_out(c);
        break;
      }
      if (manual_) {
        // Virtual time only moves when told to. Jump to the next timer (or the
        // deadline) once the loop is idle and no real-time work (sockets,
        // lookups) is pending; otherwise wait in real time, but never longer
        // than the check's own timeout.
        size_t n = run_once(std::chrono::milliseconds(1));
        if (released(c)) break;
        bool real_work = outstanding_resolves() > 0 || active_watches() > 0;
        auto real_elapsed = std::chrono::steady_clock::now() - c->real_start;
        bool real_budget_spent = real_elapsed.count() >= c->deadline_ns - c->start_ns;
        if (n == 0 && inbox_->empty() && (!real_work || real_budget_spent)) {
          int64_t target = c->deadline_ns;
          if (auto due = next_timer_due()) target = std::min(target, *due);
          advance_to(target);
        }
      } else {
        run_once(std::chrono::nanoseconds(c->deadline_ns - now));
      }
    }
    settle();
  }

  // What check `id` produced so far (see CheckRun).
  CheckRun check_run(uint64_t id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = checks_.find(id);
    return it == checks_.end() ? CheckRun{} : it->second->run;
  }

  // Calls the probe type's cancel_check for a running check, as the worker
  // does on shutdown. The check stays outstanding until the plugin completes.
  void cancel(uint64_t id) {
    CheckRec* c = find_check(id);
    if (!c || !c->started || released(c) || !on_loop("cancel")) return;
    if (c->type->cancel_check)
      c->type->cancel_check(c->type->type_user, handle_of<guardant_check>(c->id), c->check_user);
  }

  // ---------------------------------------------------------------------
  // The loop (loop thread only)
  // ---------------------------------------------------------------------

  // One iteration: waits up to `max_wait` (less when a timer is due or
  // something was posted) for fd events, then dispatches fd callbacks, posted
  // functions and due timers. Returns how many callbacks ran.
  size_t run_once(std::chrono::nanoseconds max_wait) {
    if (!on_loop("run_once")) return 0;
    int64_t wait = std::max<int64_t>(0, max_wait.count());
    if (!inbox_->empty()) wait = 0;
    if (auto due = next_timer_due()) {
      int64_t until = *due - now_ns();
      if (manual_) {
        if (until <= 0) wait = 0;  // manual time does not pass while we sleep
      } else {
        wait = std::min(wait, std::max<int64_t>(0, until));
      }
    }

    std::vector<pollfd> fds;
    std::vector<uint64_t> ids;
    fds.push_back(pollfd{inbox_->fd(), POLLIN, 0});
    ids.push_back(0);
    for (const auto& [wid, w] : watches_) {
      if (!w.events) continue;  // paused
      short ev = 0;
      if (w.events & GUARDANT_FD_READ) ev |= POLLIN;
      if (w.events & GUARDANT_FD_WRITE) ev |= POLLOUT;
      fds.push_back(pollfd{w.fd, ev, 0});
      ids.push_back(wid);
    }
    timespec ts{static_cast<time_t>(wait / 1000000000), static_cast<long>(wait % 1000000000)};
    int n = ppoll(fds.data(), fds.size(), &ts, nullptr);
    if (n < 0 && errno != EINTR) violation("ppoll failed: " + std::string(std::strerror(errno)));

    size_t ran = 0;
    if (n > 0 && fds[0].revents) inbox_->reset_wake();
    for (size_t i = 1; n > 0 && i < fds.size(); ++i) {
      if (!fds[i].revents) continue;
      // An earlier callback may have removed or changed this watch.
      auto it = watches_.find(ids[i]);
      if (it == watches_.end() || !it->second.events) continue;
      const Watch w = it->second;
      short re = fds[i].revents;
      if (re & POLLNVAL)
        violation("fd " + std::to_string(w.fd) + " was closed while still watched");
      uint32_t events = 0;
      if ((re & POLLIN) && (w.events & GUARDANT_FD_READ)) events |= GUARDANT_FD_READ;
      if ((re & POLLOUT) && (w.events & GUARDANT_FD_WRITE)) events |= GUARDANT_FD_WRITE;
      if (re & (POLLERR | POLLHUP | POLLNVAL)) events |= GUARDANT_FD_ERROR | w.events;
      if (!events) continue;
      w.cb(w.user, w.fd, events);
      ++ran;
    }
    ran += drain_inbox();
    ran += fire_due_timers();
    return ran;
  }

  // Runs the loop until done() or `budget` of real time passed. Returns
  // done().
  bool run_until(const std::function<bool()>& done, std::chrono::nanoseconds budget) {
    auto end = std::chrono::steady_clock::now() + budget;
    while (!done()) {
      auto left = end - std::chrono::steady_clock::now();
      if (left <= std::chrono::nanoseconds::zero()) return done();
      run_once(std::min<std::chrono::nanoseconds>(left, std::chrono::milliseconds(10)));
    }
    return true;
  }

  // Runs what is posted until nothing more is (bounded, in case a plugin
  // keeps re-posting).
  void settle() {
    if (std::this_thread::get_id() != loop_thread_) return;
    for (int i = 0; i < 100 && !inbox_->empty(); ++i) run_once(std::chrono::nanoseconds::zero());
  }

  // ---------------------------------------------------------------------
  // Clock
  // ---------------------------------------------------------------------

  // Host monotonic time in ns (the clock of deadline_ns).
  int64_t now_ns() const noexcept {
    if (manual_) return manual_now_.load();
    return std::chrono::duration_cast<std::chrono::nanoseconds>(
               std::chrono::steady_clock::now().time_since_epoch())
        .count();
  }
  // Switches to a clock that only moves with advance(). Meant for probes that
  // wait on timers; real sockets and lookups still take real time.
  void use_manual_clock(int64_t start_ns = 1'000'000'000) {
    manual_now_ = start_ns;
    manual_ = true;
  }
  // Manual clock: moves time forward by `d`, firing due timers in order at
  // their due times and running what they post. Loop thread only.
  void advance(std::chrono::nanoseconds d) {
    if (!manual_) {
      violation("advance() needs use_manual_clock()");
      return;
    }
    advance_to(manual_now_.load() + static_cast<int64_t>(d.count()));
  }

  // ---------------------------------------------------------------------
  // Inspection
  // ---------------------------------------------------------------------

  size_t outstanding_timers() const noexcept { return timers_.size(); }
  size_t outstanding_watches() const noexcept { return watches_.size(); }
  size_t outstanding_resolves() const noexcept { return resolves_.size(); }
  // Started checks whose handle complete() has not released yet.
  size_t outstanding_checks() const {
    std::lock_guard<std::mutex> lock(mu_);
    size_t n = 0;
    for (const auto& [id, c] : checks_)
      if (c->started && c->completions == 0) ++n;
    return n;
  }
  size_t pending_posts() const { return inbox_->size(); }
  // complete() calls after the host recorded a timeout (dropped).
  size_t late_completions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return late_completions_;
  }
  // complete() calls for a handle already released (a contract violation).
  size_t double_completions() const {
    std::lock_guard<std::mutex> lock(mu_);
    return double_completions_;
  }
  std::vector<LogEntry> logs() const {
    std::lock_guard<std::mutex> lock(log_mu_);
    return logs_;
  }
  // True when some log message contains `text`.
  bool logged(std::string_view text) const {
    std::lock_guard<std::mutex> lock(log_mu_);
    for (const auto& e : logs_)
      if (e.message.find(text) != std::string::npos) return true;
    return false;
  }
  void clear_logs() {
    std::lock_guard<std::mutex> lock(log_mu_);
    logs_.clear();
  }
  std::vector<std::string> violations() const {
    std::lock_guard<std::mutex> lock(mu_);
    return violations_;
  }

 private:
  // Per-plugin API table; `api.host` points at its Slot so that log lines
  // carry the plugin's name.
  struct Slot {
    guardant_host_api api{};
    FakeHost* host = nullptr;
    std::string name;
    const guardant_plugin_desc* desc = nullptr;
    void* dl = nullptr;
  };

  struct Timer {
    int64_t due;
    guardant_timer_cb cb;
    void* user;
  };
  struct Watch {
    int fd;
    uint32_t events;
    guardant_fd_cb cb;
    void* user;
  };
  struct ResolveOp {
    guardant_resolve_cb cb;
    void* user;
    int64_t start_ns;
  };
  // What getaddrinfo said, carried from the lookup thread to the loop.
  struct Lookup {
    std::string name;
    int family = GUARDANT_FAMILY_ANY;
    int gai_rc = 0;
    int sys_errno = 0;
    std::vector<sockaddr_storage> addrs;
    std::vector<socklen_t> lens;
  };
  struct CheckRec {
    uint64_t id = 0;
    const guardant_probe_type* type = nullptr;
    void* check_user = nullptr;
    std::string check_id, probe_type, target, config;
    int64_t start_ns = 0, deadline_ns = 0;
    std::chrono::steady_clock::time_point real_start = std::chrono::steady_clock::now();
    bool starting = false, started = false, timed_out = false;
    int completions = 0;
    CheckRun run;
  };

  // Posted work, shared with lookup threads so that a thread finishing after
  // the host is gone finds a closed inbox instead of a dangling host.
  class Inbox {
   public:
    Inbox() : efd_(eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC)) {
      if (efd_ < 0) throw std::runtime_error(std::string("eventfd: ") + std::strerror(errno));
    }
    ~Inbox() { ::close(efd_); }
    Inbox(const Inbox&) = delete;
    Inbox& operator=(const Inbox&) = delete;

    bool push(std::function<void()> fn) {
      {
        std::lock_guard<std::mutex> lock(mu_);
        if (closed_) return false;
        items_.push_back(std::move(fn));
      }
      wake();
      return true;
    }
    std::deque<std::function<void()>> take() {
      std::lock_guard<std::mutex> lock(mu_);
      return std::exchange(items_, {});
    }
    void close() {
      std::lock_guard<std::mutex> lock(mu_);
      closed_ = true;
      items_.clear();
    }
    bool empty() const {
      std::lock_guard<std::mutex> lock(mu_);
      return items_.empty();
    }
    size_t size() const {
      std::lock_guard<std::mutex> lock(mu_);
      return items_.size();
    }
    void wake() noexcept {
      uint64_t one = 1;
      // EAGAIN only when the counter is saturated, i.e. already readable.
      if (::write(efd_, &one, sizeof one) < 0) {
      }
    }
    void reset_wake() noexcept {
      uint64_t v;
      if (::read(efd_, &v, sizeof v) < 0) {
      }
    }
    int fd() const noexcept { return efd_; }

   private:
    mutable std::mutex mu_;
    std::deque<std::function<void()>> items_;
    bool closed_ = false;
    int efd_;
  };

  template <class H>
  static H* handle_of(uint64_t id) noexcept {
    // Ids are never reused, so a stale handle is recognised, not confused
    // with a newer object.
    return reinterpret_cast<H*>(static_cast<uintptr_t>(id));
  }
  template <class H>
  static uint64_t id_of(H* handle) noexcept {
    return static_cast<uint64_t>(reinterpret_cast<uintptr_t>(handle));
  }
  static FakeHost& self(guardant_host* h) noexcept { return *reinterpret_cast<Slot*>(h)->host; }

  void fill_api(Slot& s) {
    s.host = this;
    auto& a = s.api;
    a.struct_size = sizeof a;
    a.abi_major = GUARDANT_ABI_MAJOR;
    a.abi_minor = GUARDANT_ABI_MINOR;
    a.host = reinterpret_cast<guardant_host*>(&s);
    a.log = &api_log;
    a.monotonic_ns = &api_monotonic_ns;
    a.wall_ms = &api_wall_ms;
    a.timer_start = &api_timer_start;
    a.timer_cancel = &api_timer_cancel;
    a.fd_watch = &api_fd_watch;
    a.fd_watch_update = &api_fd_watch_update;
    a.fd_unwatch = &api_fd_unwatch;
    a.post = &api_post;
    a.complete = &api_complete;
    a.resolve = &api_resolve;
    a.resolve_cancel = &api_resolve_cancel;
  }

  const guardant_plugin_desc* init_slot(guardant_plugin_init_fn fn, void* dl) {
    if (!on_loop("init")) {
      if (dl) dlclose(dl);
      return nullptr;
    }
    auto slot = std::make_unique<Slot>();
    fill_api(*slot);
    slot->dl = dl;
    char err[1024] = {0};
    const guardant_plugin_desc* desc = fn ? fn(&slot->api, err, sizeof err) : nullptr;
    err[sizeof err - 1] = '\0';
    if (!desc) {
      last_error_ = err[0] ? err : "plugin init returned NULL without a reason";
      if (dl) dlclose(dl);
      return nullptr;
    }
    std::string problem = vet(*desc);
    if (!problem.empty()) {
      last_error_ = problem;
      if (desc->struct_size >= sizeof(guardant_plugin_desc) && desc->shutdown) desc->shutdown();
      if (dl) dlclose(dl);
      return nullptr;
    }
    slot->desc = desc;
    slot->name = desc->name;
    last_error_.clear();
    plugins_.push_back(std::move(slot));
    return desc;
  }

  // The checks the worker makes on a descriptor before using it.
  std::string vet(const guardant_plugin_desc& d) const {
    if (d.struct_size < sizeof(guardant_plugin_desc))
      return "plugin descriptor too small (" + std::to_string(d.struct_size) + " bytes)";
    if (d.abi_major != GUARDANT_ABI_MAJOR)
      return "plugin built for ABI major " + std::to_string(d.abi_major) + ", host has " +
             std::to_string(GUARDANT_ABI_MAJOR);
    if (d.min_host_abi_minor > GUARDANT_ABI_MINOR)
      return "plugin needs host ABI minor " + std::to_string(d.min_host_abi_minor) + ", host has " +
             std::to_string(GUARDANT_ABI_MINOR);
    if (!d.name || !*d.name) return "plugin has no name";
    if (!d.version || !*d.version) return "plugin '" + std::string(d.name) + "' has no version";
    if (d.probe_type_count == 0 || !d.probe_types)
      return "plugin '" + std::string(d.name) + "' declares no probe types";
    for (size_t i = 0; i < d.probe_type_count; ++i) {
      const guardant_probe_type* t = type_at(d, i);
      if (t->struct_size < sizeof(guardant_probe_type)) return "probe type entry too small";
      std::string name = t->name ? t->name : "";
      bool valid = !name.empty() && name.size() <= 32;
      for (char ch : name)
        if (!((ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') || ch == '_' || ch == '-'))
          valid = false;
      if (!valid) return "invalid probe type name '" + name + "' (want [a-z0-9_-]{1,32})";
      if (!t->start_check) return "probe type '" + name + "' has no start_check";
      if (find_type(name)) return "probe type '" + name + "' is already provided";
      for (size_t j = 0; j < i; ++j)
        if (name == type_at(d, j)->name) return "probe type '" + name + "' declared twice";
    }
    return {};
  }

  // Entries are struct_size apart: a plugin built against a later minor may
  // append fields to guardant_probe_type.
  static const guardant_probe_type* type_at(const guardant_plugin_desc& d, size_t i) noexcept {
    size_t stride = d.probe_types->struct_size;
    return reinterpret_cast<const guardant_probe_type*>(
        reinterpret_cast<const unsigned char*>(d.probe_types) + i * stride);
  }

  const guardant_probe_type* find_type(const std::string& name) const {
    for (const auto& p : plugins_)
      for (size_t i = 0; i < p->desc->probe_type_count; ++i) {
        const guardant_probe_type* t = type_at(*p->desc, i);
        if (name == t->name) return t;
      }
    return nullptr;
  }

  CheckRec* find_check(uint64_t id) const {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = checks_.find(id);
    return it == checks_.end() ? nullptr : it->second.get();
  }
  bool released(CheckRec* c) const {
    std::lock_guard<std::mutex> lock(mu_);
    return c->completions > 0;
  }

  void time_out(CheckRec* c) {
    {
      std::lock_guard<std::mutex> lock(mu_);
      if (c->completions > 0) return;  // completed from another thread just in time
      c->timed_out = true;
      auto& r = c->run;
      r.timed_out = true;
      r.status = Status::Down;
      r.failure_reason = GUARDANT_REASON_TIMEOUT;
      r.failure_phase.clear();
      r.failure_detail = "no result within " +
                         std::to_string((c->deadline_ns - c->start_ns) / 1000000) +
                         " ms (host deadline)";
      r.message = r.failure_detail;
      r.elapsed_ms = static_cast<double>(c->deadline_ns - c->start_ns) / 1e6;
    }
    if (c->type->cancel_check)
      c->type->cancel_check(c->type->type_user, handle_of<guardant_check>(c->id), c->check_user);
    // The cancel grace is real time: with a manual clock nothing else moves.
    if (!run_until([&] { return released(c); }, options_.cancel_grace))
      violation("check " + c->check_id + " not released by complete() within " +
                std::to_string(options_.cancel_grace.count()) + " ms after cancel_check");
  }

  bool on_loop(const char* what) {
    if (std::this_thread::get_id() == loop_thread_) return true;
    violation(std::string(what) + " called off the loop thread");
    return false;
  }
  void violation(const std::string& text) {
    std::lock_guard<std::mutex> lock(mu_);
    violation_locked(text);
  }
  void violation_locked(const std::string& text) {
    violations_.push_back(text);
    if (options_.log_to_stderr) std::fprintf(stderr, "[fake-host] VIOLATION: %s\n", text.c_str());
  }

  size_t active_watches() const noexcept {
    size_t n = 0;
    for (const auto& [id, w] : watches_)
      if (w.events) ++n;
    return n;
  }

  std::optional<int64_t> next_timer_due() const {
    if (by_due_.empty()) return std::nullopt;
    return by_due_.begin()->first.first;
  }

  size_t drain_inbox() {
    size_t ran = 0;
    for (auto& fn : inbox_->take()) {
      fn();
      ++ran;
    }
    return ran;
  }

  // Fires timers due now that were started before this call; a timer a
  // callback starts with delay 0 waits for the next iteration, so a probe
  // re-arming itself cannot starve fds and posts.
  size_t fire_due_timers() {
    size_t ran = 0;
    const int64_t now = now_ns();
    const uint64_t cutoff = next_id_.load();
    while (!by_due_.empty()) {
      auto it = by_due_.begin();
      auto [due, id] = it->first;
      if (due > now || id >= cutoff) break;
      Timer t = timers_.at(id);
      by_due_.erase(it);
      timers_.erase(id);  // the handle is invalid once the callback starts
      t.cb(t.user);
      ++ran;
    }
    return ran;
  }

  void advance_to(int64_t target) {
    for (;;) {
      auto due = next_timer_due();
      if (!due || *due > target) break;
      if (*due > manual_now_.load()) manual_now_ = *due;
      fire_due_timers();
      drain_inbox();
    }
    if (target > manual_now_.load()) manual_now_ = target;
    run_once(std::chrono::nanoseconds::zero());
  }

  // --- resolve -----------------------------------------------------------

  static bool is_numeric_address(const std::string& name) {
    unsigned char buf[sizeof(in6_addr)];
    if (inet_pton(AF_INET, name.c_str(), buf) == 1) return true;
    std::string v6 = name.substr(0, name.find('%'));  // fe80::1%eth0
    return inet_pton(AF_INET6, v6.c_str(), buf) == 1;
  }

  static Lookup lookup(std::string name, int family, bool numeric_only) {
    Lookup r;
    r.name = std::move(name);
    r.family = family;
    addrinfo hints{};
    hints.ai_family = family == GUARDANT_FAMILY_IPV4   ? AF_INET
                      : family == GUARDANT_FAMILY_IPV6 ? AF_INET6
                                                       : AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;  // one entry per address
    hints.ai_flags = numeric_only ? AI_NUMERICHOST : 0;
    addrinfo* res = nullptr;
    r.gai_rc = getaddrinfo(r.name.c_str(), nullptr, &hints, &res);
    r.sys_errno = errno;
    for (addrinfo* p = res; r.gai_rc == 0 && p; p = p->ai_next) {
      if (p->ai_family != AF_INET && p->ai_family != AF_INET6) continue;
      sockaddr_storage ss{};
      std::memcpy(&ss, p->ai_addr, p->ai_addrlen);
      bool dup = false;
      for (size_t i = 0; i < r.addrs.size(); ++i)
        if (r.lens[i] == p->ai_addrlen && std::memcmp(&r.addrs[i], &ss, p->ai_addrlen) == 0)
          dup = true;
      if (dup) continue;
      r.addrs.push_back(ss);
      r.lens.push_back(p->ai_addrlen);
    }
    if (res) freeaddrinfo(res);
    return r;
  }

  void deliver_resolve(uint64_t id, const Lookup& l) {
    auto it = resolves_.find(id);
    if (it == resolves_.end()) return;  // cancelled
    ResolveOp op = it->second;
    resolves_.erase(it);

    std::vector<std::string> texts(l.addrs.size());
    std::vector<guardant_address> addrs(l.addrs.size());
    for (size_t i = 0; i < l.addrs.size(); ++i) {
      char host[NI_MAXHOST] = {0};
      getnameinfo(reinterpret_cast<const sockaddr*>(&l.addrs[i]), l.lens[i], host, sizeof host,
                  nullptr, 0, NI_NUMERICHOST);
      texts[i] = host;
      auto& a = addrs[i];
      a.struct_size = sizeof a;
      a.abi_major = GUARDANT_ABI_MAJOR;
      a.abi_minor = GUARDANT_ABI_MINOR;
      a.family = l.addrs[i].ss_family == AF_INET6 ? GUARDANT_FAMILY_IPV6 : GUARDANT_FAMILY_IPV4;
      a.sockaddr_len = l.lens[i];
      a.sockaddr = &l.addrs[i];
      a.text = texts[i].c_str();
    }
    guardant_resolve_result r{};
    r.struct_size = sizeof r;
    r.abi_major = GUARDANT_ABI_MAJOR;
    r.abi_minor = GUARDANT_ABI_MINOR;
    r.elapsed_ms = static_cast<double>(now_ns() - op.start_ns) / 1e6;
    std::string reason, detail;
    const char* fam = l.family == GUARDANT_FAMILY_IPV4   ? "IPv4 "
                      : l.family == GUARDANT_FAMILY_IPV6 ? "IPv6 "
                                                         : "";
    if (l.gai_rc == 0 && !addrs.empty()) {
      r.rc = GUARDANT_OK;
      r.count = addrs.size();
      r.addresses = addrs.data();
    } else {
      r.rc = GUARDANT_ERR_INTERNAL;
      bool nx = l.gai_rc == 0 || l.gai_rc == EAI_NONAME;
#ifdef EAI_NODATA
      nx = nx || l.gai_rc == EAI_NODATA;
#endif
#ifdef EAI_ADDRFAMILY
      nx = nx || l.gai_rc == EAI_ADDRFAMILY;
#endif
      reason = nx ? GUARDANT_REASON_DNS_NXDOMAIN : "dns_error";
      if (nx)
        detail = "no " + std::string(fam) + "address for '" + l.name + "'";
      else
        detail = "cannot resolve '" + l.name + "': " +
                 (l.gai_rc == EAI_SYSTEM ? std::strerror(l.sys_errno) : gai_strerror(l.gai_rc));
      r.error_reason = reason.c_str();
      r.error_detail = detail.c_str();
    }
    op.cb(op.user, &r);
  }

  // --- the C entry points ------------------------------------------------

  static void api_log(guardant_host* h, guardant_log_level level, const char* message) {
    auto* slot = reinterpret_cast<Slot*>(h);
    FakeHost& host = *slot->host;
    if (!message) host.violation("log() with a NULL message");
    std::string text = message ? message : "";
    if (host.options_.log_to_stderr) {
      static const char* const kNames[] = {"trace", "debug", "info", "warn", "error"};
      const char* lvl = level >= 0 && level <= 4 ? kNames[level] : "?";
      std::fprintf(stderr, "[fake-host] %s %s: %s\n", lvl, slot->name.c_str(), text.c_str());
    }
    std::lock_guard<std::mutex> lock(host.log_mu_);
    host.logs_.push_back(LogEntry{static_cast<LogLevel>(level), slot->name, std::move(text)});
  }

  static int64_t api_monotonic_ns(guardant_host* h) {
    return self(h).now_ns();
  }

  static int64_t api_wall_ms(guardant_host*) {
    return std::chrono::duration_cast<std::chrono::milliseconds>(
               std::chrono::system_clock::now().time_since_epoch())
        .count();
  }

  static guardant_timer* api_timer_start(guardant_host* h, int64_t delay_ns, guardant_timer_cb cb,
                                         void* user) {
    FakeHost& host = self(h);
    if (!host.on_loop("timer_start")) return nullptr;
    if (!cb) {
      host.violation("timer_start() with a NULL callback");
      return nullptr;
    }
    uint64_t id = host.next_id_++;
    int64_t due = host.now_ns() + std::max<int64_t>(0, delay_ns);
    host.timers_.emplace(id, Timer{due, cb, user});
    host.by_due_.emplace(std::make_pair(due, id), id);
    return handle_of<guardant_timer>(id);
  }

  static void api_timer_cancel(guardant_host* h, guardant_timer* t) {
    FakeHost& host = self(h);
    if (!host.on_loop("timer_cancel")) return;
    uint64_t id = id_of(t);
    auto it = host.timers_.find(id);
    if (it == host.timers_.end()) {
      host.violation("timer_cancel() on a timer that already fired or was cancelled");
      return;
    }
    host.by_due_.erase(std::make_pair(it->second.due, id));
    host.timers_.erase(it);
  }

  static guardant_fd_watch* api_fd_watch(guardant_host* h, int fd, uint32_t events,
                                         guardant_fd_cb cb, void* user) {
    FakeHost& host = self(h);
    if (!host.on_loop("fd_watch")) return nullptr;
    if (fd < 0 || fcntl(fd, F_GETFD) < 0) {
      host.violation("fd_watch() on invalid fd " + std::to_string(fd));
      return nullptr;
    }
    if (!cb) {
      host.violation("fd_watch() with a NULL callback");
      return nullptr;
    }
    uint64_t id = host.next_id_++;
    host.watches_.emplace(id, Watch{fd, events & (GUARDANT_FD_READ | GUARDANT_FD_WRITE), cb, user});
    return handle_of<guardant_fd_watch>(id);
  }

  static guardant_rc api_fd_watch_update(guardant_host* h, guardant_fd_watch* w, uint32_t events) {
    FakeHost& host = self(h);
    if (!host.on_loop("fd_watch_update")) return GUARDANT_ERR_REFUSED;
    auto it = host.watches_.find(id_of(w));
    if (it == host.watches_.end()) {
      host.violation("fd_watch_update() on an unknown watch");
      return GUARDANT_ERR_REFUSED;
    }
    it->second.events = events & (GUARDANT_FD_READ | GUARDANT_FD_WRITE);
    return GUARDANT_OK;
  }

  static void api_fd_unwatch(guardant_host* h, guardant_fd_watch* w) {
    FakeHost& host = self(h);
    if (!host.on_loop("fd_unwatch")) return;
    if (host.watches_.erase(id_of(w)) == 0) host.violation("fd_unwatch() on an unknown watch");
  }

  static guardant_rc api_post(guardant_host* h, guardant_post_cb cb, void* user) {
    FakeHost& host = self(h);
    if (!cb) {
      host.violation("post() with a NULL callback");
      return GUARDANT_ERR_REFUSED;
    }
    return host.inbox_->push([cb, user] { cb(user); }) ? GUARDANT_OK : GUARDANT_ERR_REFUSED;
  }

  static guardant_rc api_complete(guardant_host* h, guardant_check* check,
                                  const guardant_check_result* result) {
    FakeHost& host = self(h);
    std::unique_lock<std::mutex> lock(host.mu_);
    auto it = host.checks_.find(id_of(check));
    if (it == host.checks_.end() || !(it->second->started || it->second->starting)) {
      host.violation_locked("complete() with an unknown check handle");
      return GUARDANT_ERR_REFUSED;
    }
    CheckRec& c = *it->second;
    if (++c.completions > 1) {
      ++host.double_completions_;
      host.violation_locked("check " + c.check_id + ": complete() called more than once");
      return GUARDANT_ERR_REFUSED;
    }
    c.run.released = true;
    if (c.timed_out) {
      ++host.late_completions_;  // dropped, as the worker does
    } else {
      host.copy_result(c, result);
    }
    lock.unlock();
    host.inbox_->wake();  // a result from another thread ends the loop's wait
    return GUARDANT_OK;
  }

  // Called with mu_ held.
  void copy_result(CheckRec& c, const guardant_check_result* in) {
    auto& r = c.run;
    r.completed = true;
    r.elapsed_ms = static_cast<double>(now_ns() - c.start_ns) / 1e6;
    const std::string who = "check " + c.check_id + ": ";
    if (!in) {
      violation_locked(who + "complete() with a NULL result");
      r.status = Status::Inconclusive;
      r.failure_reason = GUARDANT_REASON_WORKER_ERROR;
      return;
    }
    if (!GUARDANT_HAS_FIELD(in, guardant_check_result, status)) {
      violation_locked(who + "result struct_size too small");
      return;
    }
    if (in->status < GUARDANT_STATUS_UP || in->status > GUARDANT_STATUS_INCONCLUSIVE)
      violation_locked(who + "invalid status " + std::to_string(in->status));
    r.status = static_cast<Status>(in->status);
    auto str = [](const char* s) { return s ? std::string(s) : std::string(); };
    if (GUARDANT_HAS_FIELD(in, guardant_check_result, protocol_code))
      r.protocol_code = in->protocol_code;
    if (GUARDANT_HAS_FIELD(in, guardant_check_result, response_time_ms))
      r.response_time_ms = in->response_time_ms;
    if (GUARDANT_HAS_FIELD(in, guardant_check_result, message)) r.message = str(in->message);
    if (GUARDANT_HAS_FIELD(in, guardant_check_result, failure_detail)) {
      r.failure_reason = str(in->failure_reason);
      r.failure_phase = str(in->failure_phase);
      r.failure_detail = str(in->failure_detail);
    }
    if (in->status != GUARDANT_STATUS_UP && r.failure_reason.empty())
      violation_locked(who + "not up but no failure_reason");
    if (GUARDANT_HAS_FIELD(in, guardant_check_result, details_json) && in->details_json) {
      r.details_json = in->details_json;
      try {
        if (!json::parse(r.details_json).is_object())
          violation_locked(who + "details_json is not a JSON object");
      } catch (const json::ParseError& e) {
        violation_locked(who + "details_json: " + e.what());
      }
    }
    if (GUARDANT_HAS_FIELD(in, guardant_check_result, timings) && in->timings) {
      const guardant_timings* t = in->timings;
      Timings out;
      if (GUARDANT_HAS_FIELD(t, guardant_timings, total_ms)) {
        out.resolve_ms = t->resolve_ms;
        out.connect_ms = t->connect_ms;
        out.tls_ms = t->tls_ms;
        out.send_ms = t->send_ms;
        out.wait_ms = t->wait_ms;
        out.transfer_ms = t->transfer_ms;
        out.total_ms = t->total_ms;
      } else {
        violation_locked(who + "timings struct_size too small");
      }
      r.timings = out;
    }
  }

  static guardant_resolve_op* api_resolve(guardant_host* h, const char* name,
                                          guardant_family family, guardant_resolve_cb cb,
                                          void* user) {
    FakeHost& host = self(h);
    if (!host.on_loop("resolve")) return nullptr;
    if (!name || !cb) {
      host.violation("resolve() with a NULL name or callback");
      return nullptr;
    }
    if (family != GUARDANT_FAMILY_ANY && family != GUARDANT_FAMILY_IPV4 &&
        family != GUARDANT_FAMILY_IPV6) {
      host.violation("resolve() with unknown family " + std::to_string(family));
      return nullptr;
    }
    uint64_t id = host.next_id_++;
    host.resolves_.emplace(id, ResolveOp{cb, user, host.now_ns()});
    std::string n = name;
    std::shared_ptr<Inbox> inbox = host.inbox_;
    FakeHost* hp = &host;
    if (is_numeric_address(n)) {
      // No DNS for a literal, and no thread: getaddrinfo with AI_NUMERICHOST
      // does not block. Still delivered through the loop, never inline.
      auto l = std::make_shared<Lookup>(lookup(n, family, true));
      inbox->push([hp, id, l] { hp->deliver_resolve(id, *l); });
    } else {
      // Detached: a slow lookup must not hold up the test. The closure holds
      // only the inbox; once the host is gone the push is refused and `hp`
      // is never used.
      std::thread([inbox, hp, id, n, family] {
        auto l = std::make_shared<Lookup>(lookup(n, family, false));
        inbox->push([hp, id, l] { hp->deliver_resolve(id, *l); });
      }).detach();
    }
    return handle_of<guardant_resolve_op>(id);
  }

  static void api_resolve_cancel(guardant_host* h, guardant_resolve_op* op) {
    FakeHost& host = self(h);
    if (!host.on_loop("resolve_cancel")) return;
    if (host.resolves_.erase(id_of(op)) == 0)
      host.violation("resolve_cancel() on a lookup that already answered or was cancelled");
  }

  Options options_;
  std::thread::id loop_thread_;
  std::shared_ptr<Inbox> inbox_;
  std::string last_error_;
  std::vector<std::unique_ptr<Slot>> plugins_;
  std::unique_ptr<Slot> raw_slot_;

  std::atomic<bool> manual_{false};
  std::atomic<int64_t> manual_now_{0};
  // Ids for every handle kind; starts at 1 so no handle is NULL.
  std::atomic<uint64_t> next_id_{1};

  // Loop-thread state.
  std::map<uint64_t, Timer> timers_;
  std::map<std::pair<int64_t, uint64_t>, uint64_t> by_due_;
  std::map<uint64_t, Watch> watches_;
  std::map<uint64_t, ResolveOp> resolves_;

  // Shared with complete() and other any-thread calls.
  mutable std::mutex mu_;
  std::map<uint64_t, std::unique_ptr<CheckRec>> checks_;
  size_t late_completions_ = 0;
  size_t double_completions_ = 0;
  std::vector<std::string> violations_;

  mutable std::mutex log_mu_;
  std::vector<LogEntry> logs_;
};

}  // namespace guardant::testing

#endif  // GUARDANT_FAKE_HOST_HPP
