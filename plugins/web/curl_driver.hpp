// One libcurl multi handle per plugin, driven by the host's event loop.
//
// libcurl tells us which sockets to watch (CURLMOPT_SOCKETFUNCTION) and when
// to call it back (CURLMOPT_TIMERFUNCTION); we map those onto host fd
// watches and one host timer, and feed events back with
// curl_multi_socket_action(). Finished transfers are read with
// curl_multi_info_read() and handed to their owner. So every check is a
// handle in one multi on the loop thread: no thread per check, nothing
// blocking the loop. (Names the host did not resolve for us, e.g. after a
// redirect to another host or a proxy's name, go through libcurl's threaded
// resolver, whose helper thread reports back through a socket we watch.)
//
// Loop thread only. Never call into the driver from inside a libcurl
// callback (write, header...): libcurl forbids re-entering the multi there.
#pragma once

#include <curl/curl.h>

#include <guardant/probe.hpp>

namespace guardant::web {

// Whoever owns an easy handle in the multi; stored in CURLOPT_PRIVATE.
class Transfer {
 public:
  // The transfer finished (successfully or not). Called from the driver,
  // outside any libcurl callback; the handle is still in the multi.
  virtual void on_transfer_done(CURLcode result) = 0;
  // The owning check, for routing exceptions to it; may be nullptr.
  virtual Check* owner_check() noexcept = 0;
  // libcurl asked to wait on one of the transfer's sockets (CURL_POLL_*).
  // Inside libcurl: record, do not act.
  virtual void on_socket_wait(int what) noexcept = 0;
  // A socket libcurl waited on for writing only (a connect in progress)
  // became writable: the TCP connect is done. Called just before libcurl
  // hears of it.
  virtual void on_socket_writable() noexcept = 0;

 protected:
  ~Transfer() = default;
};

class CurlDriver {
 public:
  // Created by the plugin's on_init, destroyed by on_shutdown.
  static void init();
  static void shutdown() noexcept;
  static CurlDriver* get() noexcept;

  // Adds an easy handle whose CURLOPT_PRIVATE is a Transfer*. False (with
  // libcurl's text in *error) when the multi refused it.
  bool add(CURL* easy, std::string* error);
  // Takes an easy handle out of the multi (idempotent for a handle that
  // is not in it). The handle's sockets are released synchronously.
  void remove(CURL* easy) noexcept;
  CURLM* multi() const noexcept { return multi_; }

  CurlDriver(const CurlDriver&) = delete;
  CurlDriver& operator=(const CurlDriver&) = delete;

 private:
  CurlDriver();
  ~CurlDriver();

  struct Socket;
  static int on_socket(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp);
  static int on_timer(CURLM* multi, long timeout_ms, void* userp);
  void socket_event(curl_socket_t s, Socket* sock, uint32_t events);
  void timer_fired();
  void deliver_done();

  CURLM* multi_ = nullptr;
  Timer timer_;  // libcurl's one timeout; not bound to a check
};

}  // namespace guardant::web
