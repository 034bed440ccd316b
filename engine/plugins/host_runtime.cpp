#include "plugins/host_runtime.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>
#include <boost/asio/post.hpp>
#include <cstring>
#include <vector>

#include "core/logging.hpp"

namespace guardant::engine {
namespace {

// Shared state of one fd watch. Pending waits hold a reference, so it lives
// until the last of them has run, even after the plugin unwatched.
struct WatchState {
  guardant_host* host;
  int fd;
  uint32_t events;
  guardant_fd_cb cb;
  void* user;
  bool active = true;
  bool waiting_read = false;
  bool waiting_write = false;
  boost::asio::posix::stream_descriptor sd;
  WatchState(guardant_host* h, boost::asio::io_context& io, int f, uint32_t ev, guardant_fd_cb c,
             void* u)
      : host(h), fd(f), events(ev), cb(c), user(u), sd(io, f) {}
};

}  // namespace
}  // namespace guardant::engine

// The opaque handles the plugin holds.
struct guardant_timer {
  guardant_host* host;
  guardant::engine::Clock::TimerId id = 0;
};
struct guardant_fd_watch {
  std::shared_ptr<guardant::engine::WatchState> state;
};
// Kept alive by the pending resolve handler; the plugin's pointer is valid
// until the callback starts or resolve_cancel returns.
struct guardant_resolve_op {
  guardant_host* host;
  guardant_resolve_cb cb;
  void* user;
  bool cancelled = false;
  guardant::engine::Nanos started{};
  boost::asio::ip::tcp::resolver resolver;
  guardant_resolve_op(guardant_host* h, boost::asio::io_context& io, guardant_resolve_cb c, void* u)
      : host(h), cb(c), user(u), resolver(io) {}
};

namespace guardant::engine {
namespace {

HostRuntime& rt(guardant_host* h) {
  return *h->runtime;
}

bool loop_only(guardant_host* h, const char* what) {
  if (rt(h).on_loop_thread()) return true;
  logger("plugins")->error("plugin {} called {} off the loop thread; refused", h->plugin_name,
                           what);
  return false;
}

void api_log(guardant_host* h, guardant_log_level level, const char* message) {
  static const spdlog::level::level_enum map[] = {spdlog::level::trace, spdlog::level::debug,
                                                  spdlog::level::info, spdlog::level::warn,
                                                  spdlog::level::err};
  auto lvl = (level >= 0 && level <= 4) ? map[level] : spdlog::level::info;
  logger("plugin:" + h->plugin_name)->log(lvl, "{}", message ? message : "");
}

int64_t api_monotonic_ns(guardant_host* h) {
  return rt(h).clock().now().count();
}
int64_t api_wall_ms(guardant_host* h) {
  return rt(h).clock().wall_ms();
}

guardant_timer* api_timer_start(guardant_host* h, int64_t delay_ns, guardant_timer_cb cb,
                                void* user) {
  if (!cb || !loop_only(h, "timer_start")) return nullptr;
  auto* t = new guardant_timer{h};
  h->activity.timers.insert(t);
  t->id = rt(h).clock().call_after(Nanos{delay_ns < 0 ? 0 : delay_ns}, [t, cb, user] {
    t->host->activity.timers.erase(t);
    delete t;  // the handle is invalid once the callback starts
    cb(user);
  });
  return t;
}

void api_timer_cancel(guardant_host* h, guardant_timer* t) {
  if (!t || !loop_only(h, "timer_cancel")) return;
  if (rt(h).clock().cancel(t->id)) {
    h->activity.timers.erase(t);
    delete t;
  }
}

void arm_watch(const std::shared_ptr<WatchState>& w);

void on_fd_ready(const std::shared_ptr<WatchState>& w, uint32_t which,
                 const boost::system::error_code& ec) {
  (which == GUARDANT_FD_READ ? w->waiting_read : w->waiting_write) = false;
  if (!w->active || ec == boost::asio::error::operation_aborted) return;
  if (!(w->events & which)) return;  // no longer wanted: not re-armed
  w->cb(w->user, w->fd, which | (ec ? GUARDANT_FD_ERROR : 0u));
  if (w->active) arm_watch(w);  // level-triggered: wait again while watched
}

void arm_watch(const std::shared_ptr<WatchState>& w) {
  using boost::asio::posix::descriptor_base;
  if ((w->events & GUARDANT_FD_READ) && !w->waiting_read) {
    w->waiting_read = true;
    w->sd.async_wait(descriptor_base::wait_read, [w](const boost::system::error_code& ec) {
      on_fd_ready(w, GUARDANT_FD_READ, ec);
    });
  }
  if ((w->events & GUARDANT_FD_WRITE) && !w->waiting_write) {
    w->waiting_write = true;
    w->sd.async_wait(descriptor_base::wait_write, [w](const boost::system::error_code& ec) {
      on_fd_ready(w, GUARDANT_FD_WRITE, ec);
    });
  }
}

guardant_fd_watch* api_fd_watch(guardant_host* h, int fd, uint32_t events, guardant_fd_cb cb,
                                void* user) {
  if (fd < 0 || !cb || !loop_only(h, "fd_watch")) return nullptr;
  std::shared_ptr<WatchState> w;
  try {
    w = std::make_shared<WatchState>(h, rt(h).io(), fd, events, cb, user);
  } catch (const std::exception& e) {
    logger("plugins")->error("plugin {}: cannot watch fd {}: {}", h->plugin_name, fd, e.what());
    return nullptr;
  }
  arm_watch(w);
  auto* handle = new guardant_fd_watch{std::move(w)};
  h->activity.watches.insert(handle);
  return handle;
}

guardant_rc api_fd_watch_update(guardant_host* h, guardant_fd_watch* handle, uint32_t events) {
  if (!handle || !loop_only(h, "fd_watch_update")) return GUARDANT_ERR_REFUSED;
  handle->state->events = events;
  arm_watch(handle->state);
  return GUARDANT_OK;
}

void api_fd_unwatch(guardant_host* h, guardant_fd_watch* handle) {
  if (!handle || !loop_only(h, "fd_unwatch")) return;
  auto& w = *handle->state;
  w.active = false;
  // release() cancels pending waits and gives the fd back without closing it:
  // the plugin owns its descriptors.
  w.sd.release();
  h->activity.watches.erase(handle);
  delete handle;
}

guardant_rc api_post(guardant_host* h, guardant_post_cb cb, void* user) {
  if (!cb) return GUARDANT_ERR_REFUSED;
  if (rt(h).shutting_down()) return GUARDANT_ERR_REFUSED;
  boost::asio::post(rt(h).io(), [cb, user] { cb(user); });
  return GUARDANT_OK;
}

guardant_rc api_complete(guardant_host* h, guardant_check* check,
                         const guardant_check_result* result) {
  if (!check || !result) return GUARDANT_ERR_REFUSED;
  if (check->completed.exchange(true)) {
    boost::asio::post(rt(h).io(), [h, type = check->type_name] {
      if (rt(h).on_duplicate_completion) rt(h).on_duplicate_completion(type);
    });
    return GUARDANT_ERR_REFUSED;
  }
  // Copy now: the result is borrowed for this call only.
  auto copy = copy_result(result);
  // Deliver on the loop, never re-entrantly from inside start_check.
  boost::asio::post(rt(h).io(), [h, check, copy = std::move(copy)]() mutable {
    h->activity.checks.erase(check);
    if (check->abandoned) {
      if (rt(h).on_late_completion) rt(h).on_late_completion(check->type_name);
    } else if (check->on_complete) {
      check->on_complete(std::move(copy));
    }
    delete check;
  });
  return GUARDANT_OK;
}

guardant_resolve_op* api_resolve(guardant_host* h, const char* name, guardant_family family,
                                 guardant_resolve_cb cb, void* user) {
  if (!name || !cb || !loop_only(h, "resolve")) return nullptr;
  auto st = std::make_shared<guardant_resolve_op>(h, rt(h).io(), cb, user);
  st->started = rt(h).clock().now();
  h->activity.resolves++;
  using boost::asio::ip::tcp;
  // No AI_ADDRCONFIG: it would hide ::1 on hosts whose only IPv6 is loopback.
  auto flags = tcp::resolver::numeric_service;
  auto handler = [st](const boost::system::error_code& ec, tcp::resolver::results_type results) {
    if (st->cancelled) return;
    st->host->activity.resolves--;
    std::vector<sockaddr_storage> storage;
    std::vector<std::string> texts;
    std::vector<guardant_address> addrs;
    guardant_resolve_result r{};
    r.struct_size = sizeof r;
    r.abi_major = GUARDANT_ABI_MAJOR;
    r.abi_minor = GUARDANT_ABI_MINOR;
    r.elapsed_ms = static_cast<double>((rt(st->host).clock().now() - st->started).count()) / 1e6;
    std::string detail;
    if (!ec) {
      for (const auto& entry : results) {
        auto ep = entry.endpoint();
        auto text = ep.address().to_string();
        bool dup = false;
        for (auto& t : texts) dup = dup || t == text;
        if (dup) continue;
        sockaddr_storage ss{};
        std::memcpy(&ss, ep.data(), ep.size());
        storage.push_back(ss);
        texts.push_back(std::move(text));
      }
      for (size_t i = 0; i < storage.size(); ++i) {
        guardant_address a{};
        a.struct_size = sizeof a;
        a.abi_major = GUARDANT_ABI_MAJOR;
        a.abi_minor = GUARDANT_ABI_MINOR;
        a.family = storage[i].ss_family == AF_INET6 ? GUARDANT_FAMILY_IPV6 : GUARDANT_FAMILY_IPV4;
        a.sockaddr_len =
            storage[i].ss_family == AF_INET6 ? sizeof(sockaddr_in6) : sizeof(sockaddr_in);
        a.sockaddr = &storage[i];
        a.text = texts[i].c_str();
        addrs.push_back(a);
      }
    }
    if (ec || addrs.empty()) {
      // EAI_AGAIN is what getaddrinfo says when the resolver did not answer.
      bool nx =
          !ec || ec == boost::asio::error::host_not_found || ec == boost::asio::error::no_data;
      r.rc = GUARDANT_ERR_INTERNAL;
      r.error_reason = nx ? GUARDANT_REASON_DNS_NXDOMAIN
                       : ec == boost::asio::error::host_not_found_try_again
                           ? GUARDANT_REASON_DNS_TIMEOUT
                           : "dns_error";
      detail = ec ? ec.message() : "no address of the requested family";
      r.error_detail = detail.c_str();
    } else {
      r.rc = GUARDANT_OK;
      r.count = addrs.size();
      r.addresses = addrs.data();
    }
    st->cb(st->user, &r);
  };
  if (family == GUARDANT_FAMILY_IPV4)
    st->resolver.async_resolve(tcp::v4(), name, "0", flags, handler);
  else if (family == GUARDANT_FAMILY_IPV6)
    st->resolver.async_resolve(tcp::v6(), name, "0", flags, handler);
  else
    st->resolver.async_resolve(name, "0", flags, handler);
  return st.get();
}

void api_resolve_cancel(guardant_host* h, guardant_resolve_op* op) {
  if (!op || !loop_only(h, "resolve_cancel")) return;
  if (!op->cancelled) {
    op->cancelled = true;
    op->resolver.cancel();
    h->activity.resolves--;
  }
}

}  // namespace

HostRuntime::HostRuntime(boost::asio::io_context& io, Clock& clock)
    : io_(io), clock_(clock), loop_thread_(std::this_thread::get_id()) {}

guardant_host_api HostRuntime::make_api(guardant_host& ctx) {
  ctx.runtime = this;
  guardant_host_api api{};
  api.struct_size = sizeof api;
  api.abi_major = GUARDANT_ABI_MAJOR;
  api.abi_minor = GUARDANT_ABI_MINOR;
  api.host = &ctx;
  api.log = &api_log;
  api.monotonic_ns = &api_monotonic_ns;
  api.wall_ms = &api_wall_ms;
  api.timer_start = &api_timer_start;
  api.timer_cancel = &api_timer_cancel;
  api.fd_watch = &api_fd_watch;
  api.fd_watch_update = &api_fd_watch_update;
  api.fd_unwatch = &api_fd_unwatch;
  api.post = &api_post;
  api.complete = &api_complete;
  api.resolve = &api_resolve;
  api.resolve_cancel = &api_resolve_cancel;
  return api;
}

CheckResult copy_result(const guardant_check_result* r) {
  CheckResult out;
  if (r->struct_size < offsetof(guardant_check_result, timings)) {
    return CheckResult::failed(CheckStatus::Inconclusive, GUARDANT_REASON_WORKER_ERROR, "",
                               "plugin returned a truncated result struct");
  }
  switch (r->status) {
    case GUARDANT_STATUS_UP:
      out.status = CheckStatus::Up;
      break;
    case GUARDANT_STATUS_DOWN:
      out.status = CheckStatus::Down;
      break;
    case GUARDANT_STATUS_DEGRADED:
      out.status = CheckStatus::Degraded;
      break;
    case GUARDANT_STATUS_INCONCLUSIVE:
      out.status = CheckStatus::Inconclusive;
      break;
    default:
      return CheckResult::failed(CheckStatus::Inconclusive, GUARDANT_REASON_WORKER_ERROR, "",
                                 "plugin returned an invalid status " + std::to_string(r->status));
  }
  out.protocol_code = r->protocol_code;
  out.response_time_ms =
      std::isfinite(r->response_time_ms) && r->response_time_ms >= 0 ? r->response_time_ms : 0;
  if (r->message) out.message = r->message;
  if (r->failure_reason) {
    out.failure = CheckFailure{r->failure_reason, r->failure_phase ? r->failure_phase : "",
                               r->failure_detail ? r->failure_detail : ""};
  } else if (out.status != CheckStatus::Up) {
    // A non-up result always says why, even when the plugin forgot to.
    out.failure =
        CheckFailure{out.status == CheckStatus::Degraded ? "degraded" : "unknown", "", out.message};
  }
  if (r->details_json) out.details_json = r->details_json;
  if (GUARDANT_HAS_FIELD(r, guardant_check_result, timings) && r->timings &&
      r->timings->struct_size >= sizeof(guardant_timings)) {
    const auto& t = *r->timings;
    out.timings = CheckTimings{t.resolve_ms, t.connect_ms,  t.tls_ms,  t.send_ms,
                               t.wait_ms,    t.transfer_ms, t.total_ms};
  }
  return out;
}

}  // namespace guardant::engine
