#include "redis/transport.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/ssl.h>
#include <openssl/x509_vfy.h>
#include <sys/socket.h>

#include <boost/asio/connect.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/local/stream_protocol.hpp>
#include <boost/asio/ssl.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/write.hpp>
#include <optional>

namespace guardant::engine::redis {

namespace asio = boost::asio;
namespace ssl = boost::asio::ssl;
using boost::asio::ip::tcp;

std::string Transport::describe(const boost::system::error_code& ec) const {
  if (ec == asio::error::eof || ec == ssl::error::stream_truncated)
    return "server closed the connection";
  return ec.message();
}

std::string describe_address(const RedisSettings& s) {
  if (!s.unix_socket.empty()) return "unix:" + s.unix_socket;
  if (s.host.find(':') != std::string::npos) return "[" + s.host + "]:" + std::to_string(s.port);
  return s.host + ":" + std::to_string(s.port);
}

namespace {

bool is_ip_literal(const std::string& host) {
  boost::system::error_code ec;
  asio::ip::make_address(host, ec);
  return !ec;
}

// Keepalive so that a server that vanished without a FIN (power loss, NAT
// timeout) is noticed on an idle or blocked connection, which has no read
// timeout. Failures are ignored: keepalive is an optimisation of detection.
void tune_tcp_socket(tcp::socket& sock, const ConnectionOptions& o) {
  boost::system::error_code ec;
  sock.set_option(tcp::no_delay(true), ec);
  sock.set_option(asio::socket_base::keep_alive(true), ec);
  int fd = sock.native_handle();
  int idle = static_cast<int>(o.keepalive_idle.count());
  int interval = static_cast<int>(o.keepalive_interval.count());
  int count = o.keepalive_count;
  if (idle > 0) ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPIDLE, &idle, sizeof idle);
  if (interval > 0) ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPINTVL, &interval, sizeof interval);
  if (count > 0) ::setsockopt(fd, IPPROTO_TCP, TCP_KEEPCNT, &count, sizeof count);
}

class TcpTransport final : public Transport {
 public:
  // `tls` is set for TLS connections; the stream then wraps the socket.
  TcpTransport(asio::io_context& io, const RedisSettings& settings,
               const ConnectionOptions& options, std::shared_ptr<ssl::context> tls)
      : settings_(settings),
        options_(options),
        address_(describe_address(settings)),
        resolver_(io),
        tls_ctx_(std::move(tls)) {
    if (tls_ctx_)
      tls_stream_.emplace(io, *tls_ctx_);
    else
      plain_.emplace(io);
  }

  void connect(std::function<void(const std::string&)> done) override {
    phase_ = "resolving";
    resolver_.async_resolve(
        settings_.host, std::to_string(settings_.port),
        [this, done = std::move(done)](const boost::system::error_code& ec,
                                       tcp::resolver::results_type results) mutable {
          if (ec) {
            done("resolve " + settings_.host + ": " + ec.message());
            return;
          }
          phase_ = "connecting";
          asio::async_connect(socket(), results,
                              [this, done = std::move(done)](const boost::system::error_code& ec2,
                                                             const tcp::endpoint&) mutable {
                                if (ec2) {
                                  done("connect " + address_ + ": " + ec2.message());
                                  return;
                                }
                                tune_tcp_socket(socket(), options_);
                                if (!tls_stream_) {
                                  phase_ = "connected";
                                  done("");
                                  return;
                                }
                                handshake(std::move(done));
                              });
        });
  }

  void read_some(asio::mutable_buffer buf, IoHandler handler) override {
    if (tls_stream_)
      tls_stream_->async_read_some(buf, std::move(handler));
    else
      plain_->async_read_some(buf, std::move(handler));
  }

  void write(asio::const_buffer buf, IoHandler handler) override {
    if (tls_stream_)
      asio::async_write(*tls_stream_, buf, std::move(handler));
    else
      asio::async_write(*plain_, buf, std::move(handler));
  }

  void close() override {
    resolver_.cancel();
    boost::system::error_code ec;
    socket().close(ec);
  }

  const char* phase() const override { return phase_; }

 private:
  tcp::socket& socket() { return tls_stream_ ? tls_stream_->next_layer() : *plain_; }

  void handshake(std::function<void(const std::string&)> done) {
    phase_ = "TLS handshake";
    const auto& tls = settings_.tls;
    // The name the certificate must carry and SNI: tls.server_name, else the host.
    std::string name = tls.server_name.empty() ? settings_.host : tls.server_name;
    SSL* ssl = tls_stream_->native_handle();
    // SNI carries host names only (RFC 6066), never IP literals.
    if (!is_ip_literal(name)) SSL_set_tlsext_host_name(ssl, name.c_str());
    if (tls.verify) {
      // Asio's host_name_verification (X509_check_host / X509_check_ip_asc on
      // the leaf) does the check; when it refuses a chain OpenSSL accepted, we
      // record the reason so that the error says "hostname mismatch" rather
      // than an unspecified verify failure.
      bool ip = is_ip_literal(name);
      tls_stream_->set_verify_callback([check = ssl::host_name_verification(name), ip](
                                           bool preverified, ssl::verify_context& ctx) mutable {
        bool ok = check(preverified, ctx);
        if (preverified && !ok)
          X509_STORE_CTX_set_error(ctx.native_handle(), ip ? X509_V_ERR_IP_ADDRESS_MISMATCH
                                                           : X509_V_ERR_HOSTNAME_MISMATCH);
        return ok;
      });
    }
    tls_stream_->async_handshake(
        ssl::stream_base::client,
        [this, name, done = std::move(done)](const boost::system::error_code& ec) {
          if (!ec) {
            phase_ = "connected";
            done("");
            return;
          }
          std::string why = ec.message();
          long verify = SSL_get_verify_result(tls_stream_->native_handle());
          if (settings_.tls.verify && verify != X509_V_OK) {
            why =
                std::string("certificate verify failed: ") + X509_verify_cert_error_string(verify);
            if (verify == X509_V_ERR_HOSTNAME_MISMATCH || verify == X509_V_ERR_IP_ADDRESS_MISMATCH)
              why += " (expected '" + name + "')";
          }
          done("TLS handshake with " + address_ + " failed: " + why);
        });
  }

  RedisSettings settings_;
  ConnectionOptions options_;
  std::string address_;
  tcp::resolver resolver_;
  std::shared_ptr<ssl::context> tls_ctx_;
  std::optional<tcp::socket> plain_;
  std::optional<ssl::stream<tcp::socket>> tls_stream_;
  const char* phase_ = "resolving";
};

class UnixTransport final : public Transport {
 public:
  UnixTransport(asio::io_context& io, const RedisSettings& settings)
      : path_(settings.unix_socket), socket_(io) {}

  void connect(std::function<void(const std::string&)> done) override {
    phase_ = "connecting";
    socket_.async_connect(asio::local::stream_protocol::endpoint(path_),
                          [this, done = std::move(done)](const boost::system::error_code& ec) {
                            phase_ = "connected";
                            done(ec ? "connect unix:" + path_ + ": " + ec.message() : "");
                          });
  }
  void read_some(asio::mutable_buffer buf, IoHandler handler) override {
    socket_.async_read_some(buf, std::move(handler));
  }
  void write(asio::const_buffer buf, IoHandler handler) override {
    asio::async_write(socket_, buf, std::move(handler));
  }
  void close() override {
    boost::system::error_code ec;
    socket_.close(ec);
  }
  const char* phase() const override { return phase_; }

 private:
  std::string path_;
  asio::local::stream_protocol::socket socket_;
  const char* phase_ = "connecting";
};

Result<std::shared_ptr<ssl::context>> make_tls_context(const TlsSettings& tls) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_sslv2 |
                   ssl::context::no_sslv3 | ssl::context::no_tlsv1 | ssl::context::no_tlsv1_1);
  boost::system::error_code ec;
  if (tls.verify) {
    ctx->set_verify_mode(ssl::verify_peer, ec);
    if (!tls.ca_file.empty()) {
      ctx->load_verify_file(tls.ca_file, ec);
      if (ec)
        return Error{"tls_config",
                     "redis.tls.ca_file '" + tls.ca_file + "' cannot be loaded: " + ec.message()};
    } else {
      ctx->set_default_verify_paths(ec);
      if (ec) return Error{"tls_config", "cannot load the system CA store: " + ec.message()};
    }
  } else {
    ctx->set_verify_mode(ssl::verify_none, ec);
  }
  if (!tls.cert_file.empty()) {
    ctx->use_certificate_chain_file(tls.cert_file, ec);
    if (ec)
      return Error{"tls_config",
                   "redis.tls.cert_file '" + tls.cert_file + "' cannot be loaded: " + ec.message()};
    ctx->use_private_key_file(tls.key_file.empty() ? tls.cert_file : tls.key_file,
                              ssl::context::pem, ec);
    if (ec)
      return Error{"tls_config",
                   "redis.tls.key_file '" + tls.key_file + "' cannot be loaded: " + ec.message()};
  }
  return ctx;
}

}  // namespace

Result<std::unique_ptr<Transport>> make_transport(asio::io_context& io,
                                                  const RedisSettings& settings,
                                                  const ConnectionOptions& options) {
  if (!settings.unix_socket.empty())
    return std::unique_ptr<Transport>(std::make_unique<UnixTransport>(io, settings));
  std::shared_ptr<ssl::context> tls;
  if (settings.tls.enabled) {
    auto ctx = make_tls_context(settings.tls);
    if (!ctx) return ctx.error();
    tls = std::move(ctx.value());
  }
  return std::unique_ptr<Transport>(
      std::make_unique<TcpTransport>(io, settings, options, std::move(tls)));
}

}  // namespace guardant::engine::redis
