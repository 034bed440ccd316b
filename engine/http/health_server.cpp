#include "http/health_server.hpp"

#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/http.hpp>
#include <boost/json/serialize.hpp>
#include <optional>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "core/logging.hpp"

namespace guardant::engine {
namespace {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace bhttp = boost::beast::http;
using tcp = asio::ip::tcp;
using error_code = boost::system::error_code;
using Request = bhttp::request<bhttp::string_body>;
using Response = bhttp::response<bhttp::string_body>;

constexpr const char* kJson = "application/json";
constexpr const char* kPrometheusText = "text/plain; version=0.0.4";
constexpr const char* kAllow = "GET, HEAD";
constexpr const char* kServer = "guardant-worker/" GUARDANT_VERSION;

// "0.0.0.0:3099", "[::]:3099": how operators wrote it, for messages.
std::string describe(const std::string& host, uint16_t port) {
  bool v6 = host.find(':') != std::string::npos;
  return (v6 ? "[" + host + "]" : host) + ":" + std::to_string(port);
}

std::string json_error(std::string_view message) {
  return boost::json::serialize(boost::json::object{{"error", message}});
}

bool is_http_error(const error_code& ec) {
  return ec.category() == bhttp::make_error_code(bhttp::error::end_of_stream).category();
}

// Beast's string_view type differs between Boost versions; fmt and the
// standard library both take std::string_view.
std::string_view sv(beast::string_view s) {
  return {s.data(), s.size()};
}

class Session;

}  // namespace

namespace detail {

class HealthServerImpl : public std::enable_shared_from_this<HealthServerImpl> {
 public:
  HealthServerImpl(asio::io_context& io, std::string bind, uint16_t port, HealthSource& source,
                   HealthServerOptions options)
      : io_(io),
        bind_(std::move(bind)),
        port_(port),
        source_(source),
        opt_(options),
        acceptor_(io),
        retry_timer_(io),
        log_(logger("http")) {}

  Status start();
  void stop();
  uint16_t port() const { return bound_port_; }
  size_t connections() const { return sessions_.size(); }

  // For sessions.
  bool running() const { return running_; }
  const HealthServerOptions& options() const { return opt_; }
  spdlog::logger& log() { return *log_; }
  Response handle(const Request& req);
  void forget(Session* s) { sessions_.erase(s); }

 private:
  void do_accept();
  void on_accept(const error_code& ec, tcp::socket socket);

  asio::io_context& io_;
  std::string bind_;
  uint16_t port_;
  uint16_t bound_port_ = 0;
  HealthSource& source_;
  HealthServerOptions opt_;
  tcp::acceptor acceptor_;
  asio::steady_timer retry_timer_;
  bool running_ = false;
  bool saturated_ = false;
  std::unordered_map<Session*, std::weak_ptr<Session>> sessions_;
  std::shared_ptr<spdlog::logger> log_;
};

}  // namespace detail

namespace {

// One client connection: read a request, write the response, repeat while the
// client keeps the connection alive. Owned by its pending operation.
class Session : public std::enable_shared_from_this<Session> {
 public:
  Session(tcp::socket socket, std::shared_ptr<detail::HealthServerImpl> server)
      : stream_(std::move(socket)),
        // Room for a full request plus some pipelined bytes; the parser's own
        // limits answer an oversized request before this one cuts it off.
        buffer_(4 * server->options().max_request_bytes + 1024),
        server_(std::move(server)) {}
  ~Session() { server_->forget(this); }

  void start() { do_read(); }

  void close() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_both, ignored);
    stream_.close();  // cancels the pending read or write
  }

 private:
  void do_read() {
    parser_.emplace();
    parser_->header_limit(static_cast<uint32_t>(server_->options().max_request_bytes));
    parser_->body_limit(server_->options().max_request_bytes);
    stream_.expires_after(server_->options().io_timeout);
    bhttp::async_read(
        stream_, buffer_, *parser_,
        [self = shared_from_this()](const error_code& ec, size_t) { self->on_read(ec); });
  }

  void on_read(const error_code& ec) {
    if (!server_->running() || ec == asio::error::operation_aborted) return;
    if (ec == bhttp::error::end_of_stream) return shutdown();
    if (ec == beast::error::timeout) {
      server_->log().debug("closing idle or slow connection after {} ms",
                           server_->options().io_timeout.count());
      return;  // the stream is already closed
    }
    if (ec == bhttp::error::header_limit)
      return reply_error(bhttp::status::request_header_fields_too_large, "request too large");
    if (ec == bhttp::error::body_limit || ec == bhttp::error::buffer_overflow)
      return reply_error(bhttp::status::payload_too_large, "request too large");
    if (ec && is_http_error(ec) && ec != bhttp::error::partial_message)
      return reply_error(bhttp::status::bad_request, "bad request");
    if (ec) return;  // reset by peer and the like: nobody to answer

    const Request& req = parser_->get();
    res_ = server_->handle(req);
    server_->log().debug("{} {} -> {}", sv(req.method_string()), sv(req.target()),
                         res_.result_int());
    write();
  }

  void reply_error(bhttp::status status, std::string_view message) {
    res_ = Response{status, 11};
    res_.set(bhttp::field::server, kServer);
    res_.set(bhttp::field::content_type, kJson);
    res_.body() = json_error(message);
    res_.keep_alive(false);  // the rest of the stream cannot be trusted
    res_.prepare_payload();
    write();
  }

  void write() {
    stream_.expires_after(server_->options().io_timeout);
    bhttp::async_write(stream_, res_, [self = shared_from_this()](const error_code& ec, size_t) {
      self->on_write(ec);
    });
  }

  void on_write(const error_code& ec) {
    if (ec || !server_->running()) return;
    if (res_.need_eof()) return shutdown();
    do_read();
  }

  void shutdown() {
    error_code ignored;
    stream_.socket().shutdown(tcp::socket::shutdown_send, ignored);
  }

  beast::tcp_stream stream_;
  beast::flat_buffer buffer_;
  std::optional<bhttp::request_parser<bhttp::string_body>> parser_;
  Response res_;
  std::shared_ptr<detail::HealthServerImpl> server_;
};

}  // namespace

Status detail::HealthServerImpl::start() {
  if (running_) return Status::failure("already_started", "health: server already started");
  const std::string where = describe(bind_, port_);
  auto fail = [&](const std::string& what, const error_code& ec) {
    error_code ignored;
    acceptor_.close(ignored);
    return Status::failure("bind_failed", "health: " + what + " " + where + ": " + ec.message());
  };

  error_code ec;
  tcp::endpoint endpoint;
  auto address = asio::ip::make_address(bind_, ec);
  if (!ec) {
    endpoint = tcp::endpoint(address, port_);
  } else {
    // A host name such as "localhost": resolved once, at startup, where
    // blocking the loop briefly is harmless.
    tcp::resolver resolver(io_);
    auto results = resolver.resolve(bind_, std::to_string(port_), tcp::resolver::passive, ec);
    if (ec) return fail("cannot resolve", ec);
    if (results.empty()) return fail("cannot resolve", asio::error::host_not_found);
    endpoint = results.begin()->endpoint();
  }

  acceptor_.open(endpoint.protocol(), ec);
  if (ec) return fail("cannot open a socket for", ec);
  // Lets a restarted worker rebind while old connections sit in TIME_WAIT; on
  // Linux it does not allow two listeners on one port.
  acceptor_.set_option(tcp::acceptor::reuse_address(true), ec);
  acceptor_.bind(endpoint, ec);
  if (ec) return fail("cannot bind", ec);
  acceptor_.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) return fail("cannot listen on", ec);
  bound_port_ = acceptor_.local_endpoint(ec).port();

  running_ = true;
  log_->info("health endpoints listening on {}", describe(bind_, bound_port_));
  do_accept();
  return Ok{};
}

void detail::HealthServerImpl::stop() {
  if (!running_) return;
  running_ = false;
  error_code ignored;
  acceptor_.close(ignored);
  retry_timer_.cancel();
  // Hold them all first: closing must not destroy a session while we iterate.
  std::vector<std::shared_ptr<Session>> open;
  for (auto& [raw, weak] : sessions_)
    if (auto s = weak.lock()) open.push_back(std::move(s));
  for (auto& s : open) s->close();
  log_->info("health endpoints stopped; connections closed: {}", open.size());
}

void detail::HealthServerImpl::do_accept() {
  acceptor_.async_accept(io_, [self = shared_from_this()](const error_code& ec, tcp::socket s) {
    self->on_accept(ec, std::move(s));
  });
}

void detail::HealthServerImpl::on_accept(const error_code& ec, tcp::socket socket) {
  if (!running_ || ec == asio::error::operation_aborted) return;
  if (ec) {
    // Typically EMFILE: retrying at once would spin the loop, so pause.
    log_->warn("accept failed: {}; retrying in 100 ms", ec.message());
    retry_timer_.expires_after(std::chrono::milliseconds(100));
    retry_timer_.async_wait([self = shared_from_this()](const error_code& wec) {
      if (!wec && self->running_) self->do_accept();
    });
    return;
  }
  if (sessions_.size() >= opt_.max_connections) {
    if (!saturated_)
      log_->warn("{} connections open, the maximum; closing new ones until some end",
                 sessions_.size());
    saturated_ = true;
    error_code ignored;
    socket.close(ignored);
  } else {
    saturated_ = false;
    error_code ignored;
    socket.set_option(tcp::no_delay(true), ignored);
    auto s = std::make_shared<Session>(std::move(socket), shared_from_this());
    sessions_.emplace(s.get(), s);
    s->start();
  }
  do_accept();
}

Response detail::HealthServerImpl::handle(const Request& req) {
  const std::string_view target = sv(req.target());
  const std::string_view path = target.substr(0, target.find('?'));
  const bool head = req.method() == bhttp::verb::head;

  Response res{bhttp::status::ok, req.version()};
  res.set(bhttp::field::server, kServer);
  // Health answers are live state; a proxy must not serve a stale one.
  res.set(bhttp::field::cache_control, "no-store");
  res.set(bhttp::field::content_type, kJson);
  res.keep_alive(req.keep_alive());

  enum class Endpoint { Health, Ready, Metrics };
  std::optional<Endpoint> endpoint;
  if (path == "/health") endpoint = Endpoint::Health;
  if (path == "/ready") endpoint = Endpoint::Ready;
  if (path == "/metrics") endpoint = Endpoint::Metrics;

  if (!endpoint) {
    res.result(bhttp::status::not_found);
    res.body() = json_error("not found");
  } else if (req.method() != bhttp::verb::get && !head) {
    res.result(bhttp::status::method_not_allowed);
    res.set(bhttp::field::allow, kAllow);
    res.body() = json_error("method not allowed");
  } else {
    try {
      switch (*endpoint) {
        case Endpoint::Health:
          res.body() = boost::json::serialize(source_.health());
          break;
        case Endpoint::Ready: {
          Readiness r = source_.ready();
          boost::json::object o{{"ready", r.ready}};
          if (!r.ready) {
            o["reason"] = r.reason;
            res.result(bhttp::status::service_unavailable);
          }
          res.body() = boost::json::serialize(o);
          break;
        }
        case Endpoint::Metrics:
          res.set(bhttp::field::content_type, kPrometheusText);
          res.body() = source_.metrics();
          break;
      }
    } catch (const std::exception& e) {
      log_->error("{}: {}", path, e.what());
      res.result(bhttp::status::internal_server_error);
      res.set(bhttp::field::content_type, kJson);
      res.body() = json_error("internal error");
    }
  }

  res.prepare_payload();
  // HEAD: the headers GET would send, Content-Length included, and no body.
  if (head) res.body().clear();
  return res;
}

HealthServer::HealthServer(asio::io_context& io, std::string bind_address, uint16_t port,
                           HealthSource& source, HealthServerOptions options)
    : impl_(std::make_shared<detail::HealthServerImpl>(io, std::move(bind_address), port, source,
                                                       options)) {}

HealthServer::~HealthServer() {
  impl_->stop();
}

Status HealthServer::start() {
  return impl_->start();
}
uint16_t HealthServer::port() const {
  return impl_->port();
}
void HealthServer::stop() {
  impl_->stop();
}
size_t HealthServer::connections() const {
  return impl_->connections();
}

}  // namespace guardant::engine
