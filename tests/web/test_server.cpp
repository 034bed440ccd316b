#include "test_server.hpp"

#include <openssl/ssl.h>

#include <atomic>
#include <boost/asio.hpp>
#include <boost/asio/ssl.hpp>
#include <cctype>
#include <chrono>
#include <cstdio>
#include <thread>

namespace guardant::webtest {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using asio::awaitable;
using asio::use_awaitable;

std::string RecordedRequest::header(const std::string& name) const {
  for (const auto& [n, v] : headers) {
    if (n.size() != name.size()) continue;
    bool same = true;
    for (size_t i = 0; i < n.size(); ++i)
      if (std::tolower(static_cast<unsigned char>(n[i])) !=
          std::tolower(static_cast<unsigned char>(name[i])))
        same = false;
    if (same) return v;
  }
  return "";
}

// io is declared first so that it is destroyed last: its destructor
// destroys the suspended coroutines, whose sockets still need it.
struct TestServer::Impl {
  asio::io_context io;
  std::unique_ptr<asio::ssl::context> ssl;
  tcp::acceptor acceptor{io};
  std::thread thread;
  mutable std::mutex mu;
  std::vector<RecordedRequest> requests;
  std::atomic<size_t> connections{0};
  std::atomic<size_t> failed_handshakes{0};

  void record(const RecordedRequest& r) {
    std::lock_guard<std::mutex> lock(mu);
    requests.push_back(r);
  }

  static std::string response(int code, const std::string& body,
                              const std::vector<std::string>& extra = {},
                              const std::string& type = "text/plain") {
    std::string head = "HTTP/1.1 " + std::to_string(code) + " Test\r\n";
    head += "Content-Type: " + type + "\r\n";
    head += "Content-Length: " + std::to_string(body.size()) + "\r\n";
    for (const auto& h : extra) head += h + "\r\n";
    head += "Connection: close\r\n\r\n";
    return head + body;
  }

  template <class Stream>
  static awaitable<void> write(Stream& s, const std::string& data) {
    co_await asio::async_write(s, asio::buffer(data), use_awaitable);
  }

  static std::string hex(long n) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%lx", n);
    return buf;
  }

  template <class Stream>
  static awaitable<void> wait_for_close(Stream& s) {
    char buf[256];
    for (;;) co_await s.async_read_some(asio::buffer(buf), use_awaitable);
  }

  static awaitable<void> sleep_ms(long ms) {
    asio::steady_timer t(co_await asio::this_coro::executor);
    t.expires_after(std::chrono::milliseconds(ms));
    co_await t.async_wait(use_awaitable);
  }

  // The answer to a request that needs no timing tricks, or "" when the
  // path is one of the special ones below. (Kept out of the coroutine: GCC
  // 12 cannot keep initializer lists across a co_await.)
  static std::string plain_answer(const RecordedRequest& req, const std::string& path,
                                  const std::string& query) {
    const std::string& t = req.target;
    if (t.rfind("http://", 0) == 0 || t.rfind("https://", 0) == 0)
      return response(200, "via proxy " + t);
    auto number_after = [&](const std::string& prefix) {
      return std::stol(path.substr(prefix.size()));
    };
    if (path == "/ok") return response(200, kOkBody);
    if (path.rfind("/status/", 0) == 0) {
      long code = number_after("/status/");
      return response(static_cast<int>(code), "status " + std::to_string(code));
    }
    if (path.rfind("/redirect/", 0) == 0) {
      long n = number_after("/redirect/");
      if (n <= 0) return response(200, "arrived");
      return response(302, "moved", {"Location: /redirect/" + std::to_string(n - 1)});
    }
    if (path == "/to") return response(302, "moved", {"Location: " + query});
    if (path == "/json") return response(200, kJsonBody, {}, "application/json");
    if (path == "/garbage") return "SSH-2.0-NotHttp\r\n";
    if (path == "/notjson") return response(200, "this is { not json", {}, "application/json");
    if (path == "/headers")
      return response(200, "headers",
                      {"X-Guardant: probe-ok", "Cache-Control: no-store, max-age=0"});
    if (path == "/echo") return response(200, req.method + "\n" + req.body);
    if (path == "/auth") {
      if (req.header("Authorization").empty())
        return response(401, "who are you", {"WWW-Authenticate: Basic realm=\"t\""});
      return response(200, "welcome");
    }
    if (path == "/cookie-set")
      return response(302, "moved", {"Set-Cookie: guardant=1; Path=/", "Location: /cookie-check"});
    if (path == "/cookie-check") {
      bool has = req.header("Cookie").find("guardant=1") != std::string::npos;
      return response(has ? 200 : 403, has ? "cookie ok" : "no cookie");
    }
    if (path.rfind("/slow/", 0) == 0 || path.rfind("/huge", 0) == 0 || path == "/stall" ||
        path == "/partial" || path == "/close")
      return "";
    return response(404, "not found");
  }

  template <class Stream>
  awaitable<void> answer(Stream& s, RecordedRequest& req) {
    const std::string& t = req.target;
    std::string path = t.substr(0, t.find('?'));
    std::string query = t.find('?') == std::string::npos ? "" : t.substr(t.find('?') + 1);
    std::string reply = plain_answer(req, path, query);
    if (!reply.empty()) {
      co_await write(s, reply);
      co_return;
    }
    if (path.rfind("/slow/", 0) == 0) {
      co_await sleep_ms(std::stol(path.substr(6)));
      co_await write(s, response(200, "slow"));
    } else if (path.rfind("/huge/", 0) == 0) {
      long n = std::stol(path.substr(6));
      co_await write(s,
                     "HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\n"
                     "Content-Length: " +
                         std::to_string(n) + "\r\nConnection: close\r\n\r\n");
      std::string chunk(64 * 1024, 'x');
      for (long sent = 0; sent < n;) {
        long k = std::min<long>(n - sent, static_cast<long>(chunk.size()));
        co_await write(s, chunk.substr(0, static_cast<size_t>(k)));
        sent += k;
      }
    } else if (path.rfind("/huge-chunked/", 0) == 0) {
      long n = std::stol(path.substr(14));
      co_await write(s,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     "Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n");
      std::string chunk(64 * 1024, 'x');
      for (long sent = 0; sent < n;) {
        long k = std::min<long>(n - sent, static_cast<long>(chunk.size()));
        co_await write(s, hex(k) + "\r\n" + chunk.substr(0, static_cast<size_t>(k)) + "\r\n");
        sent += k;
      }
      co_await write(s, "0\r\n\r\n");
    } else if (path == "/stall" || path == "/partial") {
      co_await write(s,
                     "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n"
                     "Content-Length: 100000\r\nConnection: close\r\n\r\n" +
                         std::string(1000, 'y'));
      if (path == "/stall") co_await wait_for_close(s);
    }
    // "/close": nothing; the caller closes the connection.
  }

  // Reads one request (head and Content-Length body), records and answers it.
  template <class Stream>
  awaitable<void> serve(Stream& s, RecordedRequest& req) {
    std::string buf;
    size_t head_end = co_await asio::async_read_until(s, asio::dynamic_buffer(buf, 64 * 1024),
                                                      "\r\n\r\n", use_awaitable);
    std::string head = buf.substr(0, head_end);
    buf.erase(0, head_end);
    size_t line_end = head.find("\r\n");
    std::string line = head.substr(0, line_end);
    size_t sp1 = line.find(' '), sp2 = line.rfind(' ');
    req.method = line.substr(0, sp1);
    req.target = sp1 == sp2 ? "" : line.substr(sp1 + 1, sp2 - sp1 - 1);
    req.version = line.substr(sp2 + 1);
    for (size_t pos = line_end + 2; pos < head.size();) {
      size_t end = head.find("\r\n", pos);
      if (end == std::string::npos || end == pos) break;
      std::string h = head.substr(pos, end - pos);
      size_t colon = h.find(':');
      if (colon != std::string::npos) {
        std::string value = h.substr(colon + 1);
        value.erase(0, value.find_first_not_of(' '));
        req.headers.emplace_back(h.substr(0, colon), value);
      }
      pos = end + 2;
    }
    std::string cl = req.header("Content-Length");
    if (!cl.empty()) {
      size_t want = std::stoul(cl);
      if (buf.size() < want)
        co_await asio::async_read(s, asio::dynamic_buffer(buf),
                                  asio::transfer_exactly(want - buf.size()), use_awaitable);
      req.body = buf.substr(0, want);
    }
    record(req);
    co_await answer(s, req);
  }

  awaitable<void> handle_plain(tcp::socket sock) {
    try {
      RecordedRequest req;  // (not a by-value coroutine argument: GCC 12 frees those twice)
      co_await serve(sock, req);
    } catch (...) {
    }
    boost::system::error_code ec;
    sock.shutdown(tcp::socket::shutdown_both, ec);
  }

  awaitable<void> handle_tls(tcp::socket sock) {
    asio::ssl::stream<tcp::socket> s(std::move(sock), *ssl);
    try {
      co_await s.async_handshake(asio::ssl::stream_base::server, use_awaitable);
    } catch (...) {
      ++failed_handshakes;
      co_return;
    }
    RecordedRequest req;
    SSL* native = s.native_handle();
    if (const char* name = SSL_get_servername(native, TLSEXT_NAMETYPE_host_name)) req.sni = name;
    if (X509* peer = SSL_get1_peer_certificate(native)) {
      req.client_cert = true;
      X509_free(peer);
    }
    req.session_reused = SSL_session_reused(native) == 1;
    try {
      co_await serve(s, req);
      co_await s.async_shutdown(use_awaitable);
    } catch (...) {
    }
  }

  awaitable<void> accept_loop(bool tls) {
    for (;;) {
      tcp::socket sock = co_await acceptor.async_accept(use_awaitable);
      ++connections;
      if (tls)
        asio::co_spawn(io, handle_tls(std::move(sock)), asio::detached);
      else
        asio::co_spawn(io, handle_plain(std::move(sock)), asio::detached);
    }
  }
};

TestServer::TestServer(Options options) : options_(std::move(options)) {
  impl_ = std::make_shared<Impl>();
  try {
    if (options_.tls) {
      impl_->ssl = std::make_unique<asio::ssl::context>(asio::ssl::context::tls_server);
      impl_->ssl->use_certificate_chain_file(options_.cert_file);
      impl_->ssl->use_private_key_file(options_.key_file, asio::ssl::context::pem);
      if (options_.require_client_cert) {
        impl_->ssl->load_verify_file(options_.client_ca_file);
        impl_->ssl->set_verify_mode(asio::ssl::verify_peer |
                                    asio::ssl::verify_fail_if_no_peer_cert);
      }
    }
    auto addr = asio::ip::make_address(options_.ipv6 ? "::1" : "127.0.0.1");
    tcp::endpoint ep(addr, 0);
    impl_->acceptor.open(ep.protocol());
    impl_->acceptor.bind(ep);
    impl_->acceptor.listen(1024);
    port_ = impl_->acceptor.local_endpoint().port();
  } catch (const std::exception& e) {
    error_ = e.what();
    return;
  }
  asio::co_spawn(impl_->io, impl_->accept_loop(options_.tls), asio::detached);
  impl_->thread = std::thread([impl = impl_.get()] { impl->io.run(); });
}

TestServer::~TestServer() {
  if (!impl_) return;
  impl_->io.stop();
  if (impl_->thread.joinable()) impl_->thread.join();
  boost::system::error_code ec;
  impl_->acceptor.close(ec);
  impl_.reset();  // closes every connection still open
}

std::string TestServer::url(const std::string& path) const {
  std::string host = options_.ipv6 ? "[::1]" : "127.0.0.1";
  return std::string(options_.tls ? "https" : "http") + "://" + host + ":" + std::to_string(port_) +
         path;
}

std::vector<RecordedRequest> TestServer::requests() const {
  std::lock_guard<std::mutex> lock(impl_->mu);
  return impl_->requests;
}

size_t TestServer::connections() const {
  return impl_->connections;
}

size_t TestServer::failed_handshakes() const {
  return impl_->failed_handshakes;
}

}  // namespace guardant::webtest
