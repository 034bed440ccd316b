// OpenSSL plumbing for the `tcp` probe's implicit TLS: client contexts,
// a socket BIO that cannot raise SIGPIPE, certificate capture on a failed
// verification, and the mapping of verification errors to reasons.
// Loop thread only, like every other part of a check.
#pragma once

#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdint>
#include <string>

#include "tcp_options.hpp"
#include "tls_report.hpp"

namespace guardant::tcp {

// A client SSL_CTX for these settings (a new reference: SSL_CTX_free it).
// Contexts are cached per (caFile, clientCert, clientKey) and rebuilt when
// one of the files changes, so the CA store is not re-read from disk for
// every check. Throws ConfigError naming the option whose file cannot be
// loaded.
SSL_CTX* acquire_client_ctx(const Settings& s);

// Frees the cached contexts and the BIO method (plugin shutdown).
void release_tls_globals() noexcept;

// A BIO over the non-blocking socket `fd` (not owned). OpenSSL's own socket
// BIO writes with write(2), which raises SIGPIPE when the peer has gone, and
// the worker must not die of a probe target closing early; this one uses
// send(MSG_NOSIGNAL). nullptr when out of memory.
BIO* new_socket_bio(int fd);

// What the verify callback saw at the first verification error, so that a
// failed handshake can still report the certificate it failed on.
struct VerifyCapture {
  X509* leaf = nullptr;     // owned reference
  X509* failing = nullptr;  // owned reference: the certificate the error is about
  int error = 0;            // X509_V_ERR_*
  int depth = -1;
  VerifyCapture() = default;
  VerifyCapture(const VerifyCapture&) = delete;
  VerifyCapture& operator=(const VerifyCapture&) = delete;
  ~VerifyCapture() { clear(); }
  void clear() noexcept;
};

// SSL_set_verify callback; expects SSL_set_app_data(ssl, VerifyCapture*).
// Returns OpenSSL's verdict unchanged.
int capture_verify_callback(int ok, X509_STORE_CTX* store);

struct TlsFailure {
  std::string reason;  // cert_expired | cert_hostname | tls_handshake
  std::string detail;
};

// Reason and text for a certificate verification error `code`.
// `expected_name` is the host name or address the certificate had to match.
TlsFailure classify_verify_error(long code, const VerifyCapture& capture,
                                 const std::string& expected_name);

// The reasons in this thread's OpenSSL error queue, joined, and the queue
// emptied (it is shared with every other TLS user on the loop thread).
std::string drain_openssl_errors();

// "2026-05-01T12:00:00Z"
std::string format_utc(int64_t ms_since_epoch);

}  // namespace guardant::tcp
