#include "tcp_tls.hpp"

#include <openssl/err.h>
#include <sys/socket.h>
#include <sys/stat.h>

#include <cerrno>
#include <cstdint>
#include <ctime>
#include <guardant/probe.hpp>
#include <map>
#include <stdexcept>

namespace guardant::tcp {

namespace {

// At most this many distinct (caFile, clientCert, clientKey) contexts are
// kept; beyond it the cache starts over rather than growing with the number
// of distinct configurations a queue sends.
constexpr size_t kMaxCachedContexts = 32;

struct CachedCtx {
  std::string stamp;  // identity and mtime of the files it was built from
  SSL_CTX* ctx = nullptr;
};

std::map<std::string, CachedCtx>& ctx_cache() {
  static std::map<std::string, CachedCtx> cache;
  return cache;
}

BIO_METHOD*& bio_method_slot() {
  static BIO_METHOD* method = nullptr;
  return method;
}

std::string file_stamp(const std::string& path) {
  if (path.empty()) return "-";
  struct stat st {};
  if (::stat(path.c_str(), &st) != 0) return "?";
  return std::to_string(st.st_dev) + ":" + std::to_string(st.st_ino) + ":" +
         std::to_string(st.st_size) + ":" + std::to_string(st.st_mtim.tv_sec) + "." +
         std::to_string(st.st_mtim.tv_nsec);
}

[[noreturn]] void load_error(SSL_CTX* ctx, const std::string& text) {
  std::string why = drain_openssl_errors();
  SSL_CTX_free(ctx);
  throw ConfigError(text + (why.empty() ? "" : ": " + why));
}

SSL_CTX* build_ctx(const Settings& s) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) throw std::runtime_error("cannot create a TLS context: " + drain_openssl_errors());
  // Every handshake is a full one: timings stay comparable between checks
  // (no session resumption), as for the web probe.
  SSL_CTX_set_session_cache_mode(ctx, SSL_SESS_CACHE_OFF);
  SSL_CTX_set_options(ctx, SSL_OP_NO_TICKET | SSL_OP_IGNORE_UNEXPECTED_EOF);
  SSL_CTX_set_mode(ctx, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  if (s.ca_file.empty()) {
    if (SSL_CTX_set_default_verify_paths(ctx) != 1)
      load_error(ctx, "cannot load the system's trusted CA certificates");
  } else if (SSL_CTX_load_verify_locations(ctx, s.ca_file.c_str(), nullptr) != 1) {
    load_error(ctx, "option 'caFile': cannot load CA certificates from '" + s.ca_file + "'");
  }
  if (!s.client_cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, s.client_cert.c_str()) != 1)
      load_error(ctx,
                 "option 'clientCert': cannot load a PEM certificate from '" + s.client_cert + "'");
    const std::string& key = s.client_key.empty() ? s.client_cert : s.client_key;
    const char* option = s.client_key.empty() ? "clientCert" : "clientKey";
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      // OpenSSL already compares the key with the certificate here; say so
      // plainly rather than "cannot load".
      std::string why = drain_openssl_errors();
      SSL_CTX_free(ctx);
      if (why.find("key values mismatch") != std::string::npos)
        throw ConfigError(std::string("option '") + option + "': the private key in '" + key +
                          "' does not match the client certificate");
      throw ConfigError(std::string("option '") + option +
                        "': cannot load a PEM private key from '" + key + "'" +
                        (why.empty() ? "" : ": " + why));
    }
    if (SSL_CTX_check_private_key(ctx) != 1)
      load_error(ctx, std::string("option '") + option +
                          "': the private key does not match the client certificate");
  }
  return ctx;
}

int bio_write(BIO* b, const char* data, int len) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b)));
  BIO_clear_retry_flags(b);
  ssize_t n = ::send(fd, data, static_cast<size_t>(len), MSG_NOSIGNAL);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_write(b);
  return static_cast<int>(n);
}

int bio_read(BIO* b, char* out, int len) {
  int fd = static_cast<int>(reinterpret_cast<intptr_t>(BIO_get_data(b)));
  BIO_clear_retry_flags(b);
  ssize_t n = ::recv(fd, out, static_cast<size_t>(len), 0);
  if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) BIO_set_retry_read(b);
  return static_cast<int>(n);
}

long bio_ctrl(BIO*, int cmd, long, void*) {
  // Writes go straight to the socket, so there is never anything to flush;
  // every other control (kTLS, fd queries) is "not supported".
  return cmd == BIO_CTRL_FLUSH ? 1 : 0;
}

int bio_create(BIO* b) {
  BIO_set_init(b, 1);
  return 1;
}

}  // namespace

SSL_CTX* acquire_client_ctx(const Settings& s) {
  const std::string key = s.ca_file + '\n' + s.client_cert + '\n' + s.client_key;
  const std::string stamp =
      file_stamp(s.ca_file) + "|" + file_stamp(s.client_cert) + "|" + file_stamp(s.client_key);
  auto& cache = ctx_cache();
  auto it = cache.find(key);
  if (it != cache.end() && it->second.stamp == stamp) {
    SSL_CTX_up_ref(it->second.ctx);
    return it->second.ctx;
  }
  SSL_CTX* ctx = build_ctx(s);  // throws before the cache is touched
  if (it != cache.end()) {
    SSL_CTX_free(it->second.ctx);  // checks in flight keep their own reference
    cache.erase(it);
  }
  if (cache.size() >= kMaxCachedContexts) {
    for (auto& [k, entry] : cache) SSL_CTX_free(entry.ctx);
    cache.clear();
  }
  cache.emplace(key, CachedCtx{stamp, ctx});
  SSL_CTX_up_ref(ctx);
  return ctx;
}

void release_tls_globals() noexcept {
  for (auto& [k, entry] : ctx_cache()) SSL_CTX_free(entry.ctx);
  ctx_cache().clear();
  if (BIO_METHOD*& m = bio_method_slot()) {
    BIO_meth_free(m);
    m = nullptr;
  }
}

BIO* new_socket_bio(int fd) {
  BIO_METHOD*& method = bio_method_slot();
  if (!method) {
    int index = BIO_get_new_index();
    if (index < 0) return nullptr;
    method = BIO_meth_new(index | BIO_TYPE_SOURCE_SINK, "guardant socket");
    if (!method) return nullptr;
    BIO_meth_set_write(method, &bio_write);
    BIO_meth_set_read(method, &bio_read);
    BIO_meth_set_ctrl(method, &bio_ctrl);
    BIO_meth_set_create(method, &bio_create);
  }
  BIO* b = BIO_new(method);
  if (b) BIO_set_data(b, reinterpret_cast<void*>(static_cast<intptr_t>(fd)));
  return b;
}

void VerifyCapture::clear() noexcept {
  X509_free(leaf);
  X509_free(failing);
  leaf = failing = nullptr;
  error = 0;
  depth = -1;
}

int capture_verify_callback(int ok, X509_STORE_CTX* store) {
  if (ok) return ok;
  auto* ssl =
      static_cast<SSL*>(X509_STORE_CTX_get_ex_data(store, SSL_get_ex_data_X509_STORE_CTX_idx()));
  auto* capture = ssl ? static_cast<VerifyCapture*>(SSL_get_app_data(ssl)) : nullptr;
  if (capture && capture->error == 0) {
    capture->error = X509_STORE_CTX_get_error(store);
    capture->depth = X509_STORE_CTX_get_error_depth(store);
    if (X509* leaf = X509_STORE_CTX_get0_cert(store)) {
      X509_up_ref(leaf);
      capture->leaf = leaf;
    }
    if (X509* current = X509_STORE_CTX_get_current_cert(store)) {
      X509_up_ref(current);
      capture->failing = current;
    }
  }
  return ok;
}

TlsFailure classify_verify_error(long code, const VerifyCapture& capture,
                                 const std::string& expected_name) {
  const std::string what = X509_verify_cert_error_string(code);
  X509* about = capture.failing ? capture.failing : capture.leaf;
  probes::CertReport cert = probes::report_from_certs(about, nullptr, false);
  const std::string who = cert.present ? "certificate '" + cert.subject + "'" : "the certificate";
  const std::string where =
      capture.depth > 0 ? " (depth " + std::to_string(capture.depth) + " of the chain)" : "";
  switch (code) {
    case X509_V_ERR_CERT_HAS_EXPIRED:
      return {GUARDANT_REASON_CERT_EXPIRED,
              who + where + " expired" +
                  (cert.present ? " at " + format_utc(cert.leaf_expires_at_ms) : "")};
    case X509_V_ERR_HOSTNAME_MISMATCH:
    case X509_V_ERR_IP_ADDRESS_MISMATCH: {
      std::string names;
      for (const auto& n : cert.sans) names += (names.empty() ? "" : ", ") + n;
      return {GUARDANT_REASON_CERT_HOSTNAME,
              who + " is not valid for '" + expected_name + "'" +
                  (names.empty() ? " (it has no subject alternative names)"
                                 : " (valid for: " + names + ")")};
    }
    default:
      return {GUARDANT_REASON_TLS_HANDSHAKE,
              "certificate verification failed: " + what + ": " + who + where};
  }
}

std::string drain_openssl_errors() {
  std::string out;
  unsigned long e;
  while ((e = ERR_get_error()) != 0) {
    const char* reason = ERR_reason_error_string(e);
    std::string text;
    if (reason) {
      text = reason;
    } else {
      char buf[256];
      ERR_error_string_n(e, buf, sizeof buf);
      text = buf;
    }
    if (out.find(text) == std::string::npos) out += (out.empty() ? "" : "; ") + text;
  }
  return out;
}

std::string format_utc(int64_t ms_since_epoch) {
  time_t secs = static_cast<time_t>(ms_since_epoch / 1000);
  struct tm tm {};
  if (!gmtime_r(&secs, &tm)) return std::to_string(ms_since_epoch) + " ms";
  char buf[32];
  std::strftime(buf, sizeof buf, "%Y-%m-%dT%H:%M:%SZ", &tm);
  return buf;
}

}  // namespace guardant::tcp
