#include "curl_driver.hpp"

#include <sys/socket.h>

#include <new>
#include <stdexcept>
#include <string>

namespace guardant::web {
namespace {
CurlDriver* g_driver = nullptr;
}  // namespace

// One watched socket; libcurl keeps the pointer for us (curl_multi_assign).
struct CurlDriver::Socket {
  FdWatch watch;         // not bound to a check: sockets belong to the multi
  int what = 0;          // what libcurl waits for (CURL_POLL_*)
  CURL* easy = nullptr;  // the transfer it belongs to
};

void CurlDriver::init() {
  if (g_driver) return;
  // Thread-safe in this libcurl (CURL_VERSION_THREADSAFE) and reference
  // counted, so another user of libcurl in the process is not disturbed.
  CURLcode rc = curl_global_init(CURL_GLOBAL_DEFAULT);
  if (rc != CURLE_OK)
    throw std::runtime_error(std::string("curl_global_init: ") + curl_easy_strerror(rc));
  try {
    g_driver = new CurlDriver();
  } catch (...) {
    curl_global_cleanup();
    throw;
  }
}

void CurlDriver::shutdown() noexcept {
  if (!g_driver) return;
  delete g_driver;
  g_driver = nullptr;
  curl_global_cleanup();
}

CurlDriver* CurlDriver::get() noexcept {
  return g_driver;
}

CurlDriver::CurlDriver() {
  multi_ = curl_multi_init();
  if (!multi_) throw std::runtime_error("curl_multi_init failed");
  curl_multi_setopt(multi_, CURLMOPT_SOCKETFUNCTION, &CurlDriver::on_socket);
  curl_multi_setopt(multi_, CURLMOPT_SOCKETDATA, this);
  curl_multi_setopt(multi_, CURLMOPT_TIMERFUNCTION, &CurlDriver::on_timer);
  curl_multi_setopt(multi_, CURLMOPT_TIMERDATA, this);
  // Every check opens its own connection and closes it when done, so there
  // is nothing worth caching and nothing to multiplex onto.
  curl_multi_setopt(multi_, CURLMOPT_MAXCONNECTS, 1L);
  curl_multi_setopt(multi_, CURLMOPT_PIPELINING, static_cast<long>(CURLPIPE_NOTHING));
}

CurlDriver::~CurlDriver() {
  // Checks take their handles out when they finish, and the host only shuts
  // a plugin down with no check outstanding, so the multi is empty here.
  // Cleanup may still report sockets removed: the callback handles that.
  curl_multi_cleanup(multi_);
  timer_.cancel();
}

bool CurlDriver::add(CURL* easy, std::string* error) {
  CURLMcode rc = curl_multi_add_handle(multi_, easy);
  if (rc == CURLM_OK) return true;
  if (error) *error = curl_multi_strerror(rc);
  return false;
}

void CurlDriver::remove(CURL* easy) noexcept {
  curl_multi_remove_handle(multi_, easy);
}

int CurlDriver::on_socket(CURL* easy, curl_socket_t s, int what, void* userp, void* socketp) {
  auto* self = static_cast<CurlDriver*>(userp);
  auto* sock = static_cast<Socket*>(socketp);
  // Never return -1: libcurl then marks the whole multi dead, failing every
  // check in flight. A watch the host refused is logged; the affected check
  // ends by its own time limit.
  try {
    if (what == CURL_POLL_REMOVE) {
      // libcurl forgets the socket's pointer itself; the fd is closed after
      // we return, so unwatching here keeps the host off a closed fd.
      delete sock;
      return 0;
    }
    uint32_t events = ((what & CURL_POLL_IN) ? GUARDANT_FD_READ : 0u) |
                      ((what & CURL_POLL_OUT) ? GUARDANT_FD_WRITE : 0u);
    if (!sock) {
      sock = new Socket();
      if (!sock->watch.watch(s, events,
                             [self, s, sock](uint32_t ev) { self->socket_event(s, sock, ev); })) {
        delete sock;
        Host::log(LogLevel::Error, "the host refused to watch socket " + std::to_string(s));
        return 0;
      }
      curl_multi_assign(self->multi_, s, sock);
    } else {
      sock->watch.update(events);
    }
    sock->what = what;
    sock->easy = easy;
    char* priv = nullptr;
    if (easy && curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv)
      reinterpret_cast<Transfer*>(priv)->on_socket_wait(what);
  } catch (const std::exception& e) {
    Host::log(LogLevel::Error, std::string("socket callback failed: ") + e.what());
  }
  return 0;
}

int CurlDriver::on_timer(CURLM*, long timeout_ms, void* userp) {
  auto* self = static_cast<CurlDriver*>(userp);
  try {
    if (timeout_ms < 0) {
      self->timer_.cancel();
      return 0;
    }
    // Runs on a later loop iteration even for 0: libcurl must not be
    // re-entered from inside its own timer callback.
    if (!self->timer_.start(static_cast<int64_t>(timeout_ms) * 1'000'000,
                            [self] { self->timer_fired(); }))
      Host::log(LogLevel::Error, "the host refused libcurl's timer");
  } catch (const std::exception& e) {
    Host::log(LogLevel::Error, std::string("timer callback failed: ") + e.what());
  }
  return 0;
}

void CurlDriver::socket_event(curl_socket_t s, Socket* sock, uint32_t events) {
  // Writable also when the connect failed; getpeername() tells (without
  // consuming the socket error libcurl is about to read).
  sockaddr_storage peer{};
  socklen_t peer_len = sizeof peer;
  if (sock->what == CURL_POLL_OUT && (events & GUARDANT_FD_WRITE) && sock->easy &&
      ::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &peer_len) == 0) {
    char* priv = nullptr;
    if (curl_easy_getinfo(sock->easy, CURLINFO_PRIVATE, &priv) == CURLE_OK && priv)
      reinterpret_cast<Transfer*>(priv)->on_socket_writable();
  }
  int mask = ((events & GUARDANT_FD_READ) ? CURL_CSELECT_IN : 0) |
             ((events & GUARDANT_FD_WRITE) ? CURL_CSELECT_OUT : 0) |
             ((events & GUARDANT_FD_ERROR) ? CURL_CSELECT_ERR : 0);
  int running = 0;
  curl_multi_socket_action(multi_, s, mask, &running);
  deliver_done();
}

void CurlDriver::timer_fired() {
  int running = 0;
  curl_multi_socket_action(multi_, CURL_SOCKET_TIMEOUT, 0, &running);
  deliver_done();
}

void CurlDriver::deliver_done() {
  int queued = 0;
  while (CURLMsg* msg = curl_multi_info_read(multi_, &queued)) {
    if (msg->msg != CURLMSG_DONE) continue;
    // Copy out first: the message dies when its handle leaves the multi.
    CURL* easy = msg->easy_handle;
    CURLcode result = msg->data.result;
    char* priv = nullptr;
    curl_easy_getinfo(easy, CURLINFO_PRIVATE, &priv);
    auto* transfer = reinterpret_cast<Transfer*>(priv);
    if (!transfer) {
      remove(easy);
      continue;
    }
    // An exception ends that check (inconclusive), never the others.
    detail::guarded(transfer->owner_check(), [&] { transfer->on_transfer_done(result); });
  }
}

}  // namespace guardant::web
